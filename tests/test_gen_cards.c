/* Generational mark-compact's remembered set (collectors/mc_gen.h,
 * collectors/mc_slide.c), on mark_compact and concurrent_compact: an old
 * object's reference to a young one is found through its dirty card and
 * the card stays dirty while the referent is younger; many old holders;
 * verify=1 names a store that bypassed fh_write_ref; a young slide that
 * keeps the mid generation in place updates it on its dirty cards only.
 * The rest of the generations: test_gen_mark_compact.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "collectors/mc.h"
#include "heap/barrier.h"
#include "heap/heap.h"
#include "support_gen.h"
#include "support_heap.h"


/* The remembered set: an old object's only reference to a young one is
 * found through its dirty card; the card stays dirty while the referent is
 * younger, and is clean once both are old.  A holder promoted with its
 * young referent still mid keeps a dirty card. */
static void test_remembered_set(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=32M,verify=1", &ty, &t);
    tnode *old = test_node(t, &ty, 1);
    fh_push_root(t, (void **)&old);
    fh_collect(t, FH_COLLECT_YOUNG);
    fh_collect(t, FH_COLLECT_YOUNG);
    assert_true(test_gen_in_old(h, old));
    assert_false(test_gen_card_dirty(h, old));
    for (int round = 0; round < 5; round++) {
      tnode *y = test_node(t, &ty, 100 + (uint64_t)round);
      fh_write_ref(t, old, (void **)&old->other, y);
      test_gen_garbage(t, &ty, 5000);
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
      y = old->other;
      assert_true(test_gen_in_mid(h, y));
      assert_int_equal(y->check, test_check(100 + (uint64_t)round));
      assert_true(test_gen_card_dirty(h, old));
    }
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_true(test_gen_in_old(h, old->other));
    assert_false(test_gen_card_dirty(h, old));
    assert_int_equal(((tnode *)old->other)->value, 104);
    /* head becomes old while its tail is mid: head's card is dirty. */
    tnode *head = test_node(t, &ty, 1);
    fh_write_ref(t, old, (void **)&old->next, head);
    test_gen_garbage(t, &ty, 3000);
    fh_collect(t, FH_COLLECT_YOUNG);
    head = old->next;
    assert_true(test_gen_in_mid(h, head));
    tnode *tail = test_node(t, &ty, 2);
    fh_write_ref(t, head, (void **)&head->next, tail);
    test_gen_garbage(t, &ty, 3000);
    fh_collect(t, FH_COLLECT_YOUNG);
    head = old->next;
    assert_true(test_gen_in_old(h, head));
    assert_true(test_gen_in_mid(h, head->next));
    assert_true(test_gen_card_dirty(h, head));
    test_gen_garbage(t, &ty, 3000);
    fh_collect(t, FH_COLLECT_YOUNG);
    assert_int_equal(((tnode *)old->next)->next->value, 2);
    assert_int_equal(((tnode *)old->next)->next->check, test_check(2));
    fh_pop_roots(t, 1);
    test_gen_done(h, t);
  }
}

/* A long old list whose nodes each get a young object, many cards, with
 * garbage between: everything reachable survives young collections. */
static void test_many_old_holders(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,verify=1", &ty, &t);
    tnode *list = NULL;
    fh_push_root(t, (void **)&list);
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
      tnode *n = test_node(t, &ty, (uint64_t)i);
      fh_write_ref(t, n, (void **)&n->next, list);
      list = n;
      if (i % 3 == 0) test_node(t, &ty, 0);
    }
    fh_collect(t, FH_COLLECT_DEFAULT); /* all old */
    fh_gc_wait(h);
    assert_true(test_gen_in_old(h, list));
    for (int round = 0; round < 4; round++) {
      int k = 0;
      for (tnode *n = list; n; n = n->next, k++)
        if ((k + round) % 7 == 0)
          fh_write_ref(t, n, (void **)&n->other, test_node(t, &ty, 1000000 + (uint64_t)k));
      test_gen_garbage(t, &ty, 20000);
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
      k = 0;
      for (tnode *n = list; n; n = n->next, k++) {
        assert_int_equal(n->check, test_check(n->value));
        if (n->other) assert_int_equal(((tnode *)n->other)->check, test_check(n->other->value));
      }
      assert_int_equal(k, N);
    }
    fh_pop_roots(t, 1);
    test_gen_done(h, t);
  }
}

/* A store into an old object that bypasses fh_write_ref: verify=1 names
 * the holder before the young collection loses the referent. */
static void test_verify_catches_missing_barrier(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++)
    if (c == 0 || test_have_uffd()) test_gen_missing_barrier(test_gen_mc_collectors[c], test_gen_in_old);
}

/* The setup of the two tests below: a list of MID_LIST nodes (values
 * MID_LIST-1 .. 0 from *head, a root) made mid by a young collection,
 * three holders in it (near the head, in the middle, near the tail) and
 * *far between the first two, garbage after them, then each holder given
 * a fresh node of value base + k (was[k]) through fh_write_ref. */
enum { MID_LIST = 20000 };
static void mid_list_with_holders(fh_heap *h, fh_thread *t, const test_types *ty, tnode **head,
                                  tnode *holders[3], tnode **far, uint64_t base, tnode *was[3]) {
  test_list_build(t, ty, head, MID_LIST);
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_true(test_gen_in_mid(h, *head));
  int i = 0;
  for (tnode *x = *head; x; x = x->next, i++) {
    if (i == 5) holders[0] = x;
    if (i == MID_LIST / 4) *far = x;
    if (i == MID_LIST / 2) holders[1] = x;
    if (i == MID_LIST - 2) holders[2] = x;
  }
  assert_non_null(holders[2]);
  test_gen_garbage(t, ty, 20000);
  for (int k = 0; k < 3; k++) {
    was[k] = test_node(t, ty, base + (uint64_t)k);
    fh_write_ref(t, holders[k], (void **)&holders[k]->other, was[k]);
  }
}

/* The end of the two tests: each holder's node intact (value base + k),
 * every node of the list from head intact, MID_LIST of them; head's root
 * popped, the heap gone. */
static void check_mid_list_and_done(fh_heap *h, fh_thread *t, tnode *head, tnode *holders[3],
                                    uint64_t base) {
  for (int k = 0; k < 3; k++) {
    tnode *y = holders[k]->other;
    assert_int_equal(y->value, base + (uint64_t)k);
    assert_int_equal(y->check, test_check(base + (uint64_t)k));
  }
  size_t n = 0;
  for (tnode *x = head; x; x = x->next, n++) assert_int_equal(x->check, test_check(x->value));
  assert_int_equal(n, MID_LIST);
  fh_pop_roots(t, 1);
  test_gen_done(h, t);
}

/* The two tests below: a mid list with holders given young objects over
 * garbage, then a collection of `kind` (young, or full with the policy
 * choosing between slide and flip); the older objects stay in place and
 * are updated on their dirty cards only, the young ones slide down, and
 * verify=1 checks every reference after. */
static void older_updated_by_cards(int c, fh_collect_kind kind, uint64_t base) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,verify=1", &ty, &t);
  tnode *head = NULL, *holders[3] = {NULL, NULL, NULL}, *far = NULL, *was[3];
  fh_push_root(t, (void **)&head);
  mid_list_with_holders(h, t, &ty, &head, holders, &far, base, was);
  uintptr_t mid_before = (uintptr_t)holders[1];
  uint64_t slides = h->mc->slide_cycles;
  assert_int_equal(fh_collect(t, kind), 0);
  fh_gc_wait(h);
  assert_int_equal(h->mc->slide_cycles, slides + 1); /* slid, not flipped */
  assert_true(h->mc->update_by_cards > 0);
  assert_int_equal((uintptr_t)holders[1], mid_before); /* roots aside, mid did not move */
  for (int k = 0; k < 3; k++) assert_ptr_not_equal(holders[k]->other, was[k]); /* slid down */
  check_mid_list_and_done(h, t, head, holders, base);
}

/* A young cycle whose mid generation all stays in place while young
 * survivors move down over garbage updates the mid objects on their dirty
 * cards only (mc_update_floor): those that were given young objects since
 * the last collection point to them where they moved, the others still to
 * each other. */
static void test_mid_in_place_updated_by_cards(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) older_updated_by_cards(c, FH_COLLECT_YOUNG, 500);
}

/* A full cycle does the same (mc_update_floor: the mid end it started
 * from), and concurrent_compact's policy then slides rather than flips:
 * the update it weighs is the young objects', not the heap's
 * (whippet-quads' full cycles flipped a dense 13 MiB tree).  verify=1 also
 * checks the cards before the cycle. */
static void test_full_cycle_updates_by_cards(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_policy_choose("2000"); /* the default flip cost: the policy chooses */
    older_updated_by_cards(c, FH_COLLECT_DEFAULT, 900);
    test_policy_flip_always();
  }
}

/* A young cycle that promotes the mid generation finds the promoted
 * objects that point into the new mid generation on the cards that were
 * dirty before it (mc_gen.c: promoted_on_cards), not by visiting every
 * promoted object: the holders given young objects since the last
 * collection keep dirty cards, a promoted object far from them does not,
 * and the next young cycles, which mark from those cards, keep the young
 * objects (verify=1 checks the remembered set after each). */
static void test_promoted_holders_found_on_cards(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,verify=1", &ty, &t);
    tnode *head = NULL, *holders[3] = {NULL, NULL, NULL}, *far = NULL, *was[3];
    fh_push_root(t, (void **)&head);
    mid_list_with_holders(h, t, &ty, &head, holders, &far, 700, was);
    size_t before = h->mc->gen.promotions_on_cards;
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_int_equal(h->mc->gen.promotions_on_cards, before + 1);
    assert_true(test_gen_in_old(h, far));
    assert_false(test_gen_card_dirty(h, far));
    for (int k = 0; k < 3; k++) {
      assert_true(test_gen_in_old(h, holders[k]));
      assert_true(test_gen_in_mid(h, holders[k]->other));
      assert_true(test_gen_card_dirty(h, holders[k]));
    }
    for (int round = 0; round < 2; round++) {
      test_gen_garbage(t, &ty, 20000);
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    }
    for (int k = 0; k < 3; k++) assert_true(test_gen_in_old(h, holders[k]->other));
    check_mid_list_and_done(h, t, head, holders, 700);
  }
}

/* The stores that initialise a fresh object may be plain stores while the
 * thread calls nothing in between but fh_write_ref, the root-slot calls
 * and fh_object_size/type (faultheap.h): wherever the object was born, the
 * next young collections see its references.  Born
 * in a hole below a pinned object, among the mid generation (fhscheme's
 * cons right after such a cycle: the TLAB in the hole, the referent, too
 * large for the TLAB, at the top), in the large-object space, and in the
 * non-moving space; each holds the only reference to a young object.
 * Without their cards dirty from birth (heap/alloc.c) verify=1 stops at
 * the clean card, and without verify the young referents are freed. */
static void test_plain_initialising_stores(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,verify=1", &ty, &t);
    tnode *keep = test_node(t, &ty, 1), *pin = NULL, *in_hole = NULL, *nm = NULL, *y = NULL;
    void **large = NULL, **top = NULL;
    fh_push_root(t, (void **)&keep);
    test_gen_garbage(t, &ty, 2000);
    pin = test_node(t, &ty, 2);
    fh_push_root(t, (void **)&pin);
    fh_push_root(t, (void **)&in_hole);
    fh_push_root(t, (void **)&nm);
    fh_push_root(t, (void **)&large);
    fh_push_root(t, (void **)&top);
    fh_push_root(t, (void **)&y);
    assert_int_equal(fh_pin(t, pin), 0);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    /* The TLAB now lies in the hole below the pinned node; use it up to
     * where the next object still fits. */
    test_node(t, &ty, 0);
    while (t->fast.tlab_limit - t->fast.tlab_cursor > 2 * sizeof(tnode)) test_node(t, &ty, 0);
    top = fh_alloc(t, ty.array, 9 << 10); /* past tlab_size / 4: at the top */
    top[0] = keep;
    in_hole = test_node(t, &ty, 3);
    in_hole->other = (tnode *)top;
    assert_true((uintptr_t)in_hole < h->mc->gen.mid_end);
    assert_true((uintptr_t)top >= h->mc->gen.mid_end);
    /* Large and non-moving objects, each given a young node. */
    y = test_node(t, &ty, 4);
    large = fh_alloc(t, ty.array, 16 << 10);
    assert_non_null(large);
    large[0] = y;
    y = test_node(t, &ty, 5);
    nm = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
    assert_non_null(nm);
    nm->other = y;
    top = NULL;
    y = NULL;
    fh_unpin(t, pin);
    for (int r = 0; r < 3; r++) {
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
      test_gen_garbage(t, &ty, 20000);
    }
    void **o = (void **)in_hole->other;
    assert_int_equal(fh_object_type(o), ty.array);
    assert_ptr_equal(o[0], keep);
    tnode *a = large[0], *b = nm->other;
    assert_int_equal(fh_object_type(a), ty.node);
    assert_int_equal(a->check, test_check(4));
    assert_int_equal(fh_object_type(b), ty.node);
    assert_int_equal(b->check, test_check(5));
    fh_pop_roots(t, 7);
    test_gen_done(h, t);
  }
}

/* A large object is born with its card dirty (its first stores may be
 * plain); a young collection that finds nothing young in it clears the
 * card, so later young collections skip it (heap/large_objects.h:
 * heap_los_card_settled), while one that holds a young object keeps its
 * card until that object is old. */
static void test_large_object_cards_settle(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,verify=1", &ty, &t);
    void **empty = NULL, **holder = NULL;
    fh_push_root(t, (void **)&empty);
    fh_push_root(t, (void **)&holder);
    test_gen_large_cards_first_young(h, t, &ty, &empty, &holder); /* holder[7] now mid */
    test_gen_garbage(t, &ty, 20000);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    test_gen_garbage(t, &ty, 20000);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_false(test_gen_card_dirty(h, holder)); /* the node is old */
    tnode *n = holder[7];
    assert_int_equal(n->check, test_check(7));
    fh_pop_roots(t, 2);
    test_gen_done(h, t);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_remembered_set),
      cmocka_unit_test(test_many_old_holders),
      cmocka_unit_test(test_verify_catches_missing_barrier),
      cmocka_unit_test(test_mid_in_place_updated_by_cards),
      cmocka_unit_test(test_full_cycle_updates_by_cards),
      cmocka_unit_test(test_promoted_holders_found_on_cards),
      cmocka_unit_test(test_plain_initialising_stores),
      cmocka_unit_test(test_large_object_cards_settle),
  };
  return cmocka_run_group_tests_name("gen_cards", tests, NULL, NULL);
}
