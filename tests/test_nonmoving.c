/* The non-moving space: objects never move, dead ones are swept, its
 * memory stays inside its own range, references into and out of it are
 * traced and updated. */
#include <string.h>

#include "support_heap.h"

#include "heap/heap.h"

static void test_pinned_and_swept(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=32M,non_moving_max=8M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  fh_stats s;
  fh_get_stats(h, &s);
  uintptr_t lo = 0, hi = 0;
  for (unsigned i = 0; i < s.nspaces; i++)
    if (strstr(s.spaces[i].name, "non-moving")) lo = 1, hi = s.spaces[i].capacity;
  assert_true(lo);
  (void)hi;

  tnode *pinned = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
  assert_non_null(pinned);
  fh_push_root(t, (void **)&pinned);
  tnode *const where = pinned;
  /* a movable child referenced only from the pinned object */
  tnode *child = test_node(t, &ty, 7);
  fh_write_ref(t, pinned, (void **)&pinned->next, child);
  /* garbage non-moving objects */
  for (int i = 0; i < 10000; i++) assert_non_null(fh_alloc_nonmoving(t, ty.bytes, 100));
  fh_get_stats(h, &s);
  uint64_t freed_before = s.bytes_freed;
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_get_stats(h, &s);
  assert_ptr_equal(pinned, where);                  /* did not move */
  assert_int_equal(pinned->next->value, 7);         /* child moved, ref updated */
  assert_true(s.bytes_freed - freed_before >= 10000 * 100); /* garbage swept */
  /* freed memory is reused: many rounds stay within the 8 MiB space */
  for (int r = 0; r < 20; r++)
    for (int i = 0; i < 10000; i++) assert_non_null(fh_alloc_nonmoving(t, ty.bytes, 100));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_objects_stay_in_range_and_full_space_errors(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=64M,non_moving_max=4M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void **keep = fh_alloc(t, ty.array, 8192 * sizeof(void *));
  fh_push_root(t, (void **)&keep);
  uintptr_t min = UINTPTR_MAX, max = 0;
  size_t n = 0;
  for (; n < 8192; n++) {
    void *p = fh_alloc_nonmoving(t, ty.bytes, 1000);
    if (!p) break;
    fh_write_ref(t, keep, &keep[n], p);
    if ((uintptr_t)p < min) min = (uintptr_t)p;
    if ((uintptr_t)p > max) max = (uintptr_t)p;
  }
  assert_true(n > 3900 && n < 8192); /* ran out at 4 MiB (1008 bytes each) */
  assert_non_null(strstr(fh_last_error(), "non-moving space full"));
  /* all inside the space's own part of its range (4 MiB, plus the room
   * jemalloc's metadata and size classes take: spaces/arena.h); the rest of
   * the range is kept for a zygote space (heap_max more) */
  fh_space *nm = &h->non_moving.space;
  assert_true(min >= nm->begin && max < nm->begin + arena_range_bytes(4u << 20));
  assert_true(nm->end - nm->begin >= arena_range_bytes(4u << 20) + h->opt.heap_max);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pinned_and_swept),
      cmocka_unit_test(test_objects_stay_in_range_and_full_space_errors),
  };
  return cmocka_run_group_tests_name("non-moving", tests, NULL, NULL);
}
