/* Ephemerons and finalizable objects in the spaces that are never
 * collected: the zygote (fh_prefork) and the image.  An ephemeron whose key
 * lies there never clears; a value stored into such an ephemeron later is
 * kept alive and followed through moves (a dirty card); ephemerons survive
 * an image round trip with their key and value. */
#include <string.h>

#include "test_image.h"

static void collect_all_kinds(fh_thread *t, const char *collector, int rounds) {
  for (int i = 0; i < rounds; i++) {
    assert_int_equal(fh_collect(t, test_collect_kind(collector, i)), 0);
    fh_gc_wait(thread_heap(t));
  }
}

static void zygote_case(const char *collector) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=32M,verify=1", &ty, &t);
  void *e = NULL, *e_young = NULL;
  tnode *key = test_node(t, &ty, 1), *value = NULL;
  fh_push_root(t, &e);
  fh_push_root(t, &e_young);
  fh_push_root(t, (void **)&key);
  value = test_node(t, &ty, 2);
  e = fh_ephemeron_new(t, key, value);
  value = NULL;
  assert_int_equal(fh_prefork(t), 0);
  fh_postfork_parent(h);
  /* e, key and value are zygote objects now.  A new (movable) ephemeron on
   * the zygote key, and a new movable value stored into the zygote one. */
  e_young = fh_ephemeron_new(t, key, NULL);
  tnode *fresh = test_node(t, &ty, 3);
  fh_ephemeron_set_value(t, e, fresh);
  key = NULL; /* no root reaches the key any more: it still never dies */
  collect_all_kinds(t, collector, 6);
  tnode *k = fh_ephemeron_key(t, e), *v = fh_ephemeron_value(t, e);
  assert_non_null(k);
  assert_int_equal(k->value, 1);
  assert_non_null(v);
  assert_int_equal(v->value, 3); /* kept and followed through the dirty card */
  assert_int_equal(v->check, test_check(3));
  assert_ptr_equal(fh_ephemeron_key(t, e_young), k);
  fh_pop_roots(t, 3);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_zygote_ephemerons(void **st) {
  (void)st;
  zygote_case("semispace");
  zygote_case("mark_sweep");
  zygote_case("mark_compact");
  zygote_case("concurrent_compact");
}

/* Saved: an ephemeron whose key is also saved (its value with it), and a
 * weak reference to a saved pair.  Loaded: both read as saved, never clear,
 * and accept new movable values. */
static void test_image_round_trip(void **st) {
  (void)st;
  const char *path = img_path("weak");
  {
    fh_heap *h = img_heap("heap_max=16M");
    img_types ty;
    img_register(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    void *roots[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) fh_push_root(t, &roots[i]);
    pair *k = fh_alloc(t, ty.pair, sizeof(pair));
    k->value = 41;
    roots[0] = k;
    pair *v = fh_alloc(t, ty.pair, sizeof(pair));
    v->value = 42;
    roots[1] = fh_ephemeron_new(t, roots[0], v);
    roots[2] = fh_ephemeron_new(t, roots[0], NULL);
    assert_int_equal(fh_image_save(t, path, roots, 3), 0);
    fh_pop_roots(t, 3);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  const char *collectors[] = {"semispace", "gen_semispace", "mark_sweep", "mark_compact", "concurrent_compact"};
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    char spec[512];
    snprintf(spec, sizeof spec, "collector=%s,heap_max=16M,verify=1,image_path=%s",
             collectors[c], path);
    fh_heap *h = img_heap(spec);
    img_types ty;
    img_register(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    void **roots;
    assert_int_equal(fh_image_roots(h, &roots), 3);
    pair *k = fh_ephemeron_key(t, roots[1]);
    assert_ptr_equal(k, roots[0]);
    assert_int_equal(k->value, 41);
    assert_int_equal(((pair *)fh_ephemeron_value(t, roots[1]))->value, 42);
    assert_ptr_equal(fh_ephemeron_key(t, roots[2]), roots[0]);
    pair *fresh = fh_alloc(t, ty.pair, sizeof(pair));
    fresh->value = 43;
    fh_ephemeron_set_value(t, roots[2], fresh);
    fresh = NULL;
    /* A new movable ephemeron on an image key. */
    void *e = fh_ephemeron_new(t, roots[0], NULL);
    fh_push_root(t, &e);
    collect_all_kinds(t, collectors[c], 6);
    assert_ptr_equal(fh_ephemeron_key(t, e), roots[0]);
    pair *v = fh_ephemeron_value(t, roots[2]);
    assert_non_null(v);
    assert_int_equal(v->value, 43);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zygote_ephemerons),
      cmocka_unit_test(test_image_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
