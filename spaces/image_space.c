#include "spaces/image_space.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heap/object.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

static size_t image_used(const fh_space *s) { return s->end - s->begin; }

static size_t image_resident(const fh_space *s) { return reserve_resident(s->begin, s->end); }

static void image_walk(fh_space *s, fh_object_fn fn, void *ctx) {
  for (uintptr_t p = s->begin; p < s->end;) {
    uint64_t h = *(uint64_t *)p;
    fn(obj_from_start(p), ctx);
    p += obj_bytes(h);
  }
}

static int image_is_object(const fh_space *s, const void *obj) {
  const image_space *is = (const image_space *)s;
  uintptr_t a = (uintptr_t)obj;
  if (a < s->begin + FH_HEADER_BYTES || a >= s->end || (a & 7)) return 0;
  return bitmap_test(&is->starts, a - FH_HEADER_BYTES - s->begin);
}

static const fh_space_ops image_ops = {image_used, image_resident, image_walk, image_is_object};

void image_space_init(image_space *s, uintptr_t begin, size_t bytes, size_t mapped) {
  s->space = (fh_space){"image space", SPACE_IMMUNE, begin, begin + bytes, &image_ops};
  s->mapped = mapped;
}

void image_space_destroy(image_space *s) {
  if (s->starts.words) bitmap_destroy(&s->starts);
  if (s->file) sys_munmap((void *)s->file, s->file_bytes); /* a failure leaks the mapping */
  free(s->roots);
  if (s->has_memfd) close(s->memfd);
  memset(s, 0, sizeof *s);
}
