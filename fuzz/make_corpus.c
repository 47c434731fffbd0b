/* Writes the fuzzer's seed corpus: a few small valid images covering every
 * kind of type (fixed with refs, fixed without, variable with refs,
 * variable without, reference arrays), NULL roots, shared and cyclic
 * references.  Usage: make_corpus DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faultheap.h"

static const uint32_t pair_offs[] = {0, 8};
static const uint32_t vec_offs[] = {0};

static void save(fh_thread *t, const char *dir, const char *name, void **roots, size_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.img", dir, name);
  if (fh_image_save(t, path, roots, n) < 0) {
    fprintf(stderr, "make_corpus: %s: %s\n", path, fh_last_error());
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  fh_options o;
  fh_options_init(&o);
  o.heap_max = 4 << 20;
  o.non_moving_max = 1 << 20;
  o.collector = FH_SEMISPACE;
  fh_heap *h = fh_heap_create(&o);
  if (!h) return 1;
  fh_type tp = {.name = "pair", .size = 24, .nrefs = 2, .ref_offsets = pair_offs};
  fh_type tb = {.name = "blob", .size = 16};
  fh_type tv = {.name = "vec", .nrefs = 1, .ref_offsets = vec_offs};
  fh_type ts = {.name = "bytes"};
  fh_type tr = {.name = "refs", .flags = FH_TYPE_REF_ARRAY};
  uint32_t pair = fh_register_type(h, &tp), blob = fh_register_type(h, &tb),
           vec = fh_register_type(h, &tv), bytes = fh_register_type(h, &ts),
           refs = fh_register_type(h, &tr);
  fh_thread *t = fh_thread_attach(h);
  void *r[6] = {0};
  for (int i = 0; i < 6; i++) fh_push_root(t, &r[i]);
  save(t, argv[1], "empty", r, 0);
  save(t, argv[1], "null-roots", r, 3);
  r[0] = fh_alloc(t, blob, 16);
  ((uint64_t *)r[0])[0] = 7;
  save(t, argv[1], "one-blob", r, 1);
  r[1] = fh_alloc(t, pair, 24);
  fh_write_ref(t, r[1], (void **)r[1], r[1]); /* self cycle */
  fh_write_ref(t, r[1], (void **)r[1] + 1, r[0]);
  r[2] = fh_alloc(t, vec, 40);
  fh_write_ref(t, r[2], (void **)r[2], r[1]);
  r[3] = fh_alloc(t, bytes, 5);
  memcpy(r[3], "hello", 5);
  r[4] = fh_alloc(t, refs, 4 * 8 + 4);
  for (int i = 0; i < 4; i++) fh_write_ref(t, r[4], (void **)r[4] + i, r[i]);
  save(t, argv[1], "every-kind", r, 5);
  /* a longer list, objects spanning several cards */
  r[5] = NULL;
  for (int i = 0; i < 200; i++) {
    void *p = fh_alloc(t, pair, 24);
    fh_write_ref(t, p, (void **)p, r[5]);
    fh_write_ref(t, p, (void **)p + 1, r[i % 5]);
    r[5] = p;
  }
  save(t, argv[1], "list", r, 6);
  fh_pop_roots(t, 6);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  (void)pair, (void)bytes;
  return 0;
}
