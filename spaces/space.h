/* The common face of every space: a named address range with a small
 * vtable.  Collectors dispatch on `kind`; statistics, dumping and heap
 * verification go through the vtable. */
#ifndef FH_SPACE_H_
#define FH_SPACE_H_

#include <stddef.h>
#include <stdint.h>

typedef enum {
  SPACE_BUMP,       /* moving: bump-pointer allocation, TLABs */
  SPACE_NON_MOVING, /* jemalloc arena, mark-sweep */
  SPACE_MALLOC,     /* jemalloc arena, mark-sweep + homogeneous compaction */
  SPACE_IMMUNE,     /* image and zygote: never collected */
  SPACE_LARGE,      /* large objects on whole pages: mark-sweep, never moved */
} fh_space_kind;

typedef struct fh_space fh_space;
typedef void (*fh_object_fn)(void *obj, void *ctx);

typedef struct fh_space_ops {
  size_t (*used)(const fh_space *s);     /* bytes of objects (incl. headers) */
  size_t (*resident)(const fh_space *s); /* bytes of resident pages */
  /* Every object (fillers excluded) in address order; the world is stopped. */
  void (*walk)(fh_space *s, fh_object_fn fn, void *ctx);
  /* Is obj (a payload pointer) the start of an object?  World stopped. */
  int (*is_object)(const fh_space *s, const void *obj);
} fh_space_ops;

struct fh_space {
  const char *name;
  fh_space_kind kind;
  uintptr_t begin, end; /* reserved range; end - begin is the capacity */
  const fh_space_ops *ops;
};

static inline int space_contains(const fh_space *s, const void *p) {
  return (uintptr_t)p >= s->begin && (uintptr_t)p < s->end;
}

#endif
