/* Shared by the image tests: a set of types covering every kind of type an
 * image can hold, a small graph over them with a check, temporary paths, and
 * raw file helpers for the corruption tests. */
#ifndef FH_TEST_IMAGE_H_
#define FH_TEST_IMAGE_H_

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "faultheap.h"
#include "heap/heap.h"
#include "heap/image_format.h"
#include "support_heap.h"

typedef struct pair { struct pair *a, *b; uint64_t value; } pair;  /* refs at 0, 8 */
typedef struct blob { uint64_t x, y, z; } blob;                      /* no refs */
/* vec: variable size, a ref at offset 0 then raw words */

typedef struct img_types { uint32_t pair, blob, vec, bytes, refs; } img_types;

static const uint32_t pair_offs[] = {0, 8};
static const uint32_t vec_offs[] = {0};

static inline void img_register(fh_heap *h, img_types *ty) {
  fh_type tp = {.name = "pair", .size = sizeof(pair), .nrefs = 2, .ref_offsets = pair_offs};
  fh_type tb = {.name = "blob", .size = sizeof(blob)};
  fh_type tv = {.name = "vec", .size = 0, .nrefs = 1, .ref_offsets = vec_offs};
  fh_type ts = {.name = "bytes", .size = 0};
  fh_type tr = {.name = "refs", .size = 0, .flags = FH_TYPE_REF_ARRAY};
  assert_int_not_equal(ty->pair = fh_register_type(h, &tp), 0);
  assert_int_not_equal(ty->blob = fh_register_type(h, &tb), 0);
  assert_int_not_equal(ty->vec = fh_register_type(h, &tv), 0);
  assert_int_not_equal(ty->bytes = fh_register_type(h, &ts), 0);
  assert_int_not_equal(ty->refs = fh_register_type(h, &tr), 0);
}

static inline fh_heap *img_heap(const char *spec) {
  fh_options o;
  fh_options_init(&o);
  if (spec && fh_options_parse(&o, spec) < 0) fail_msg("spec %s: %s", spec, fh_last_error());
  fh_heap *h = fh_heap_create(&o);
  if (!h) fail_msg("fh_heap_create(%s): %s", spec ? spec : "", fh_last_error());
  return h;
}

/* Whether a first load gets the preferred base: not under ThreadSanitizer,
 * whose shadow memory covers it (the loader always relocates there). */
static inline int img_base_expected(void) { return !test_sanitizer_is("tsan"); }
/* fork() under ThreadSanitizer: jemalloc's fork handler holds more locks
 * than TSan's deadlock detector tracks (64), and TSan aborts. */
#define skip_fork_under_tsan() \
  test_skip_under_tsan("jemalloc's fork handler holds more locks than TSan tracks")

static inline char *img_path(const char *name) {
  static char buf[4][256];
  static int k;
  char *p = buf[k++ & 3];
  snprintf(p, 256, "%s/fh_test_image_%d_%s.img", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
           (int)getpid(), name);
  return p;
}

/* The graph: roots[0] a cycle of NPAIR pairs whose b fields point at a
 * shared blob / vec / bytes / refs object in turn; roots[1] = NULL;
 * roots[2] the refs array (shared with the cycle); roots[3] a non-moving
 * pair pointing into the cycle. */
#define NPAIR 300
#define NROOTS 4

static inline void img_build(fh_thread *t, const img_types *ty, void **roots) {
  for (int i = 0; i < NROOTS; i++) roots[i] = NULL;
  for (int i = 0; i < NROOTS; i++) fh_push_root(t, &roots[i]);
  blob *bl = NULL;
  fh_push_root(t, (void **)&bl);
  bl = fh_alloc(t, ty->blob, sizeof(blob));
  bl->x = 1, bl->y = 2, bl->z = 3;
  void **vec = fh_alloc(t, ty->vec, 40);
  fh_write_ref(t, vec, &vec[0], bl);
  for (int i = 1; i < 5; i++) ((uint64_t *)vec)[i] = 1000 + (uint64_t)i;
  fh_push_root(t, (void **)&vec);
  unsigned char *by = fh_alloc(t, ty->bytes, 13);
  for (int i = 0; i < 13; i++) by[i] = (unsigned char)(i * 7);
  fh_push_root(t, (void **)&by);
  void **arr = fh_alloc(t, ty->refs, 4 * sizeof(void *) + 3); /* trailing partial word */
  roots[2] = arr;
  fh_write_ref(t, arr, &arr[0], bl);
  fh_write_ref(t, arr, &arr[1], vec);
  fh_write_ref(t, arr, &arr[2], by);
  fh_write_ref(t, arr, &arr[3], NULL);
  ((unsigned char *)arr)[32] = 0xAB, ((unsigned char *)arr)[34] = 0xCD;
  pair *first = fh_alloc(t, ty->pair, sizeof(pair));
  roots[0] = first;
  first->value = 0;
  pair *prev = first;
  fh_push_root(t, (void **)&prev);
  for (int i = 1; i < NPAIR; i++) {
    pair *p = fh_alloc(t, ty->pair, sizeof(pair));
    p->value = (uint64_t)i;
    first = roots[0]; /* may have moved */
    fh_write_ref(t, prev, (void **)&prev->a, p);
    prev = p;
  }
  first = roots[0];
  fh_write_ref(t, prev, (void **)&prev->a, first); /* close the cycle */
  void *shared[4] = {bl, vec, by, roots[2]};
  pair *p = first;
  for (int i = 0; i < NPAIR; i++, p = p->a) {
    arr = roots[2];
    shared[0] = ((void **)arr)[0], shared[1] = ((void **)arr)[1], shared[2] = ((void **)arr)[2];
    shared[3] = arr;
    fh_write_ref(t, p, (void **)&p->b, shared[i % 4]);
  }
  pair *pin = fh_alloc_nonmoving(t, ty->pair, sizeof(pair));
  pin->value = 777;
  fh_write_ref(t, pin, (void **)&pin->a, roots[0]);
  roots[3] = pin;
  fh_pop_roots(t, 4 + NROOTS);
}

static inline void img_check(const img_types *ty, void **roots) {
  pair *first = roots[0];
  assert_non_null(first);
  assert_null(roots[1]);
  void **arr = roots[2];
  assert_int_equal(fh_object_type(arr), ty->refs);
  assert_int_equal(fh_object_size(arr), 4 * sizeof(void *) + 3);
  assert_int_equal(((unsigned char *)arr)[32], 0xAB);
  assert_int_equal(((unsigned char *)arr)[34], 0xCD);
  blob *bl = arr[0];
  void **vec = arr[1];
  unsigned char *by = arr[2];
  assert_null(arr[3]);
  assert_int_equal(fh_object_type(bl), ty->blob);
  assert_true(bl->x == 1 && bl->y == 2 && bl->z == 3);
  assert_int_equal(fh_object_type(vec), ty->vec);
  assert_int_equal(fh_object_size(vec), 40);
  assert_ptr_equal(vec[0], bl);
  for (int i = 1; i < 5; i++) assert_int_equal(((uint64_t *)vec)[i], 1000 + (uint64_t)i);
  assert_int_equal(fh_object_type(by), ty->bytes);
  assert_int_equal(fh_object_size(by), 13);
  for (int i = 0; i < 13; i++) assert_int_equal(by[i], (unsigned char)(i * 7));
  void *shared[4] = {bl, vec, by, arr};
  pair *p = first;
  for (int i = 0; i < NPAIR; i++, p = p->a) {
    assert_int_equal(fh_object_type(p), ty->pair);
    assert_int_equal(p->value, (uint64_t)i);
    assert_ptr_equal(p->b, shared[i % 4]);
  }
  assert_ptr_equal(p, first);
  pair *pin = roots[3];
  assert_int_equal(pin->value, 777);
  assert_ptr_equal(pin->a, first);
}

/* Save the standard graph from a fresh heap into `path`. */
static inline void img_save_standard(const char *path) {
  fh_heap *h = img_heap("heap_max=16M,non_moving_max=4M");
  img_types ty;
  img_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void *roots[NROOTS];
  img_build(t, &ty, roots);
  for (int i = 0; i < NROOTS; i++) fh_push_root(t, &roots[i]);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* moves things first */
  img_check(&ty, roots);
  if (fh_image_save(t, path, roots, NROOTS) < 0) fail_msg("fh_image_save: %s", fh_last_error());
  fh_pop_roots(t, NROOTS);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static inline uint8_t *img_read(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(*n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, *n, f), *n);
  fclose(f);
  return b;
}

static inline void img_write(const char *path, const uint8_t *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  fclose(f);
}

static inline void img_fix_crc(uint8_t *b, size_t n) {
  image_header h;
  memcpy(&h, b, sizeof h);
  h.crc32c = image_file_crc(b, n);
  memcpy(b, &h, sizeof h);
}

#endif
