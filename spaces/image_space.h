/* The image space: objects mapped from a heap image file (MAP_PRIVATE, so
 * writes are copy-on-write) at the start of the heap's reservation.  It is
 * immune: nothing is allocated in it and its objects are never moved or
 * freed.  An object-starts bitmap, built while the loader validates the
 * file, answers is_object; walking follows the header words, which the
 * loader has checked back to back.
 *
 * The card table covers it like every space: the mutator's fh_write_ref
 * dirties the card of an image object it writes, and collectors find
 * references out of the image only through those cards
 * (image_visit_dirty_refs), so a collection never reads, let alone writes,
 * a clean image page. */
#ifndef FH_IMAGE_SPACE_H_
#define FH_IMAGE_SPACE_H_

#include "spaces/bitmap.h"
#include "spaces/space.h"

typedef struct image_space {
  fh_space space;    /* [begin, begin + objects bytes); ops NULL: no image */
  fh_bitmap starts;  /* one bit per 8 bytes, indexed by offset from begin:
                        an object's header word */
  size_t mapped;     /* bytes mapped from the file (page-rounded) */
  size_t nobjects;
  void **roots;      /* fh_image_roots */
  size_t nroots;
  int relocated;     /* mapped away from the preferred base */
  int trusted;       /* image_trust=same_build took: no per-reference checks */
  const uint8_t *file; /* the loader's read-only mapping of the file, kept */
  size_t file_bytes;   /* while `starts` reads its saved bitmap (trusted) */
  int has_memfd;     /* image_share=memfd relocated the image into ... */
  int memfd;         /* ... this sealed memfd, kept open for children */
} image_space;

void image_space_init(image_space *s, uintptr_t begin, size_t bytes, size_t mapped);
void image_space_destroy(image_space *s);
static inline int image_space_present(const image_space *s) { return s->space.ops != NULL; }

#endif
