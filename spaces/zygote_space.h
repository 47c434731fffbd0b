/* The zygote space (ART's name): the heap as it was when the program called
 * fh_prefork, frozen so that forked children share its pages copy-on-write.
 *
 * It occupies the start of the non-moving space's reservation: the
 * non-moving objects that lived there (the frozen jemalloc arena's extents)
 * followed by the bump region that zygote compaction filled with the
 * program's movable objects.  A later fh_prefork (a second generation, as
 * Pitchfork's reforking does) freezes the then-current non-moving space and
 * a new region after it, so the space grows upward and stays one range.
 *
 * Immune: nothing is allocated in it, and its objects never move or die.
 * What an object is comes from an object-start bitmap kept outside the
 * space (one bit per 8 bytes of the whole non-moving reservation), so no
 * metadata of the collector ever lives in zygote pages, and walking it never
 * mistakes the frozen arenas' own jemalloc metadata or free extents for
 * objects.  References from zygote objects to newer objects exist only
 * where the mutator stored them with fh_write_ref, which dirtied the card:
 * collections find them through zygote_visit_dirty_refs. */
#ifndef FH_ZYGOTE_SPACE_H_
#define FH_ZYGOTE_SPACE_H_

#include "spaces/arena.h"
#include "spaces/bitmap.h"
#include "spaces/space.h"

#define ZYGOTE_MAX_GENERATIONS 16

typedef struct zygote_space {
  fh_space space;    /* [begin, end of the last copied object); ops NULL: none */
  fh_bitmap starts;  /* object headers, granule 8, over [begin, range_end) */
  uintptr_t range_end; /* end of the non-moving reservation */
  size_t used;       /* object bytes, headers included */
  size_t nobjects;
  /* The non-moving arenas frozen by each generation: jemalloc still owns
   * their extents (destroying an arena discards its memory, objects
   * included), so they are kept, never allocated from or swept again, and
   * destroyed with the heap. */
  fh_arena frozen[ZYGOTE_MAX_GENERATIONS];
  unsigned nfrozen;
  unsigned generations; /* fh_prefork calls that built it */
} zygote_space;

static inline int zygote_space_present(const zygote_space *z) { return z->space.ops != NULL; }
/* Map the start bitmap over [begin, range_end) (first fh_prefork).  The
 * space stays absent (ops NULL) until zygote_space_publish.  0 or -1 + error. */
int zygote_space_prepare(zygote_space *z, uintptr_t begin, uintptr_t range_end);
/* Make the space [begin, end) visible (heap_spaces lists it from now on). */
void zygote_space_publish(zygote_space *z, uintptr_t end);
/* Take over a non-moving space's arena (a struct copy; arena_moved points
 * its hooks at the copy).  0 or -1 + error (too many generations). */
int zygote_space_freeze_arena(zygote_space *z, const fh_arena *a);
void zygote_space_destroy(zygote_space *z);
/* Record an object whose header is at `start`. */
static inline void zygote_space_add_object(zygote_space *z, uintptr_t start, size_t bytes) {
  bitmap_set(&z->starts, start);
  z->used += bytes;
  z->nobjects++;
}

#endif
