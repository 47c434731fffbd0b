/* Loading a heap image at heap creation (image_path=).  heap.c's
 * map_spaces() opens and validates the file first (image_load_open), sizes
 * and places the reservation from it (trying the image's preferred base),
 * then installs the image at the reservation's start (image_load_install):
 * types registered in the image's id order, the objects section mapped
 * MAP_PRIVATE from the file, relocated by the bitmap when the base was
 * taken, roots resolved. */
#ifndef FH_IMAGE_LOAD_H_
#define FH_IMAGE_LOAD_H_

#include "heap/heap.h"
#include "heap/image_validate.h"

typedef struct image_load {
  int fd;
  uint8_t *file; /* read-only mapping of the whole file, for validation */
  size_t bytes;
  image_parsed parsed;
} image_load;

/* trust: IMAGE_TRUST_* from image_trust= (image_validate_trusting);
 * IMAGE_TRUST_UNCHANGED counts only for a file whose stamp still holds. */
int image_load_open(image_load *ld, const char *path, int trust);
/* Bytes the image occupies at the reservation's start (a 2 MiB multiple). */
size_t image_load_region_bytes(const image_load *ld);
uintptr_t image_load_preferred_base(const image_load *ld);
/* Map the image at `at` (the reservation's start) into h->image. */
int image_load_install(fh_heap *h, image_load *ld, uintptr_t at);
void image_load_close(image_load *ld);

/* ---- image_cards.c ---- */
/* Visit every reference slot of an image object that lies in a dirty card:
 * the only way a collector learns of references out of the image. */
void image_visit_dirty_refs(fh_heap *h, fh_visit_fn visit, void *ctx);

#endif
