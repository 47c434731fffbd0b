/* The prefix of the collected range that keeps its addresses in a slide
 * (collectors/fwd_wood.c, collectors/mc_slide.c): when nothing moves the
 * reference pass is skipped, and a dead stretch stays as dead wood below
 * a long dense run instead of sliding the run down. */
#include "collectors/mc.h"
#include "heap/heap.h"
#include "support_heap.h"

/* Nothing dead among or below the live objects: no live word changes
 * address, so the pass that rewrites references is skipped (its time is
 * 0), and every reference still holds its referent.  Then some dead
 * objects among them: everything above the first slides, and the pass
 * runs. */
static void test_nothing_moves_no_update_pass(void **s) {
  (void)s;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=32M,min_alloc_trigger=30M,verify=1", &ty, &t);
  const size_t n = 20000;
  void **tab = fh_alloc_nonmoving(t, ty.array, n * sizeof(void *));
  assert_non_null(tab);
  fh_push_root(t, (void **)&tab);
  for (int round = 0; round < 2; round++) {
    for (size_t i = round; i < n; i += round + 1) fh_write_ref(t, tab, &tab[i], test_node(t, &ty, i));
    for (size_t i = 0; i < n; i++)
      fh_write_ref(t, tab[i], (void **)&((tnode *)tab[i])->next, tab[(i * 7 + 1) % n]);
    assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
    if (round == 0) {
      assert_int_equal(h->mc->slide_move_bytes, 0); /* copied in the pause */
      assert_int_equal(h->mc->slide_update_ns, 0);
    } else {
      /* Every other node replaced: the first half of them are garbage. */
      assert_true(h->mc->slide_move_bytes > 0);
      assert_true(h->mc->slide_update_ns > 0);
    }
    for (size_t i = 0; i < n; i++) {
      tnode *nd = tab[i];
      assert_int_equal(nd->value, i);
      assert_int_equal(nd->check, test_check(i));
      assert_ptr_equal(nd->next, tab[(i * 7 + 1) % n]);
    }
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A dead stretch below a long live run stays as dead wood, although it
 * passes 1/32 of the prefix up to its end (collectors/fwd_wood.c,
 * FWD_WOOD_RUN_MIN): 64 KiB of garbage under a 12 MiB list, nothing
 * moves and the update pass is skipped.  Under a 2 MiB list the same
 * garbage is won back: the list slides down; so it is under a 12 MiB list
 * with a dead node after every fourth (a fifth of it dead: the bound does
 * not hold again above the stretch). */
static void test_long_run_keeps_its_place(void **s) {
  (void)s;
  const size_t runs[3] = {(size_t)12 << 20, (size_t)2 << 20, (size_t)12 << 20};
  for (int k = 0; k < 3; k++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h =
        test_heap_attached("mark_compact", "heap_max=128M,min_alloc_trigger=100M,verify=1", &ty, &t);
    tnode *head = NULL;
    fh_push_root(t, (void **)&head);
    for (size_t i = 0; i < 64 * 1024 / (sizeof(tnode) + 8); i++) test_node(t, &ty, i); /* garbage */
    size_t n = runs[k] / (sizeof(tnode) + 8);
    if (k < 2) {
      test_list_build(t, &ty, &head, n);
    } else {
      for (size_t i = 0; i < n; i++) {
        tnode *x = test_node(t, &ty, i);
        fh_write_ref(t, x, (void **)&x->next, head);
        head = x;
        if (i % 4 == 3) test_node(t, &ty, i); /* garbage */
      }
    }
    uintptr_t was = (uintptr_t)head;
    assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
    if (k == 0) {
      assert_int_equal((uintptr_t)head, was);
      assert_int_equal(h->mc->slide_move_bytes, 0);
      assert_int_equal(h->mc->slide_update_ns, 0);
    } else {
      assert_true((uintptr_t)head < was);
      assert_true(h->mc->slide_move_bytes > 0);
    }
    size_t len = 0;
    for (tnode *x = head; x; x = x->next, len++) assert_int_equal(x->check, test_check(x->value));
    assert_int_equal(len, n);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nothing_moves_no_update_pass),
      cmocka_unit_test(test_long_run_keeps_its_place),
  };
  return cmocka_run_group_tests_name("dense_prefix", tests, NULL, NULL);
}
