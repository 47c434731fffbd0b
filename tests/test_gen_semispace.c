/* The generational semi-space collector (collector=gen_semispace): objects
 * that survived a collection are promoted into the non-moving space at the
 * next one; young collections find old-to-young references through dirty
 * cards, keep the cards of promoted objects that still point into the
 * young space dirty, and never clear what they did not trace (weak
 * references to old objects, finalizers of old objects); the young-or-full
 * policy on its own; verify=1 catches a store that bypassed fh_write_ref;
 * several mutators under verify=1. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "heap/barrier.h"
#include "heap/gen_policy.h"
#include "heap/heap.h"
#include "support_gen.h"
#include "support_heap.h"

#define MiB ((size_t)1 << 20)

static int in_old(fh_heap *h, const void *p) { return space_contains(&h->non_moving.space, p); }
static int in_young(fh_heap *h, const void *p) { return heap_in_bump(h, h->active, p); }
static int card_dirty(fh_heap *h, const void *obj) { return *card_for(h, (uintptr_t)obj) != 0; }

static fh_heap *gen_heap(const char *rest, test_types *ty, fh_thread **t) {
  return test_heap_attached("gen_semispace", rest, ty, t);
}

/* Survive one collection: copied; a second: promoted, contents intact. */
static void test_promotion_after_two_collections(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = gen_heap("heap_max=32M,verify=1", &ty, &t);
  tnode *a = test_node(t, &ty, 7), *b = NULL;
  fh_push_root(t, (void **)&a);
  fh_push_root(t, (void **)&b);
  b = test_node(t, &ty, 8);
  fh_write_ref(t, a, (void **)&a->next, b);
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_true(in_young(h, a));
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_true(in_old(h, a) && in_old(h, b));
  assert_ptr_equal(a->next, b);
  assert_int_equal(a->value, 7);
  assert_int_equal(a->check, test_check(7));
  assert_int_equal(b->check, test_check(8));
  fh_stats s;
  fh_get_stats(h, &s);
  assert_int_equal(s.young_collections, 2);
  assert_int_equal(s.full_collections, 0);
  assert_true(s.bytes_promoted >= 2 * sizeof(tnode));
  assert_true(s.young_pause_ns_total > 0 && s.young_pause_ns_max > 0);
  /* An explicit default collection is a full one. */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_get_stats(h, &s);
  assert_int_equal(s.full_collections, 1);
  assert_int_equal(s.young_collections + s.full_collections, s.collections);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* An old object's only reference to a young one is found through its dirty
 * card; once the young object is promoted too, the card is cleaned.  A
 * promoted object that still points into the young space keeps its card
 * dirty. */
static void test_remembered_set(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = gen_heap("heap_max=32M,verify=1", &ty, &t);
  tnode *old = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&old);
  fh_collect(t, FH_COLLECT_YOUNG);
  fh_collect(t, FH_COLLECT_YOUNG);
  assert_true(in_old(h, old));
  assert_false(card_dirty(h, old)); /* nothing young in it */
  for (int round = 0; round < 5; round++) {
    tnode *y = test_node(t, &ty, 100 + (uint64_t)round);
    fh_write_ref(t, old, (void **)&old->other, y);
    for (int g = 0; g < 5000; g++) test_node(t, &ty, 0); /* garbage */
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    y = old->other;
    assert_true(in_young(h, y));
    assert_int_equal(y->value, 100 + (uint64_t)round);
    assert_int_equal(y->check, test_check(100 + (uint64_t)round));
    assert_true(card_dirty(h, old)); /* still points into the young space */
  }
  /* Promoted at the next one: nothing young left in old. */
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_true(in_old(h, old->other));
  assert_false(card_dirty(h, old));
  assert_int_equal(((tnode *)old->other)->value, 104);
  /* A chain promoted in one collection, its tail still young: the
   * promoted holder of the young tail keeps a dirty card. */
  tnode *head = test_node(t, &ty, 1);
  fh_write_ref(t, old, (void **)&old->next, head);
  fh_collect(t, FH_COLLECT_YOUNG); /* head: copied, aged */
  head = old->next;
  tnode *tail = test_node(t, &ty, 2);
  fh_write_ref(t, head, (void **)&head->next, tail);
  fh_collect(t, FH_COLLECT_YOUNG); /* head promoted, tail copied */
  head = old->next;
  assert_true(in_old(h, head));
  assert_true(in_young(h, head->next));
  assert_true(card_dirty(h, head));
  assert_int_equal(head->next->value, 2);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A young collection does not clear what it did not trace: an ephemeron
 * whose key is old (unreachable, but old objects are live by assumption)
 * keeps key and value; an old finalizable object is not finalized.  The
 * next full collection clears and finalizes them. */
static void test_weak_old_keys(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = gen_heap("heap_max=32M,verify=1", &ty, &t);
  tnode *key = test_node(t, &ty, 5), *fin = NULL;
  void *e_young = NULL, *e_old = NULL;
  fh_push_root(t, (void **)&key);
  fh_push_root(t, (void **)&fin);
  fh_push_root(t, &e_young);
  fh_push_root(t, &e_old);
  fin = test_node(t, &ty, 6);
  assert_int_equal(fh_finalizer_attach(t, fin, (void *)(uintptr_t)66), 0);
  e_old = fh_ephemeron_new(t, key, NULL);
  fh_collect(t, FH_COLLECT_YOUNG);
  fh_collect(t, FH_COLLECT_YOUNG);
  assert_true(in_old(h, key) && in_old(h, fin) && in_old(h, e_old));
  /* An old ephemeron gets a young value (through its dirty card); a young
   * ephemeron has the old key. */
  tnode *v1 = test_node(t, &ty, 11);
  fh_ephemeron_set_value(t, e_old, v1);
  tnode *v2 = test_node(t, &ty, 12);
  e_young = fh_ephemeron_new(t, key, v2);
  key = NULL, fin = NULL; /* old and unreachable */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_non_null(fh_ephemeron_key(t, e_old));
    assert_ptr_equal(fh_ephemeron_key(t, e_young), fh_ephemeron_key(t, e_old));
    tnode *a = fh_ephemeron_value(t, e_old), *b = fh_ephemeron_value(t, e_young);
    assert_true(a && b && a->value == 11 && b->value == 12);
    assert_int_equal(a->check, test_check(11));
    void *obj, *data;
    assert_int_equal(fh_finalizer_pop(t, &obj, &data), 0);
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_null(fh_ephemeron_key(t, e_old));
  assert_null(fh_ephemeron_value(t, e_old));
  assert_null(fh_ephemeron_key(t, e_young));
  void *obj, *data;
  assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
  assert_int_equal((uintptr_t)data, 66);
  assert_int_equal(((tnode *)obj)->value, 6);
  fh_pop_roots(t, 4);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A young key that dies clears its ephemeron in a young collection; a
 * young finalizable object is finalized (kept alive for it, with its
 * ephemeron entry); the old value of a cleared ephemeron is not its
 * concern. */
static void test_weak_young_keys(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = gen_heap("heap_max=32M,verify=1", &ty, &t);
  void *e = NULL;
  tnode *k = test_node(t, &ty, 1), *oldv = NULL;
  fh_push_root(t, &e);
  fh_push_root(t, (void **)&k);
  fh_push_root(t, (void **)&oldv);
  oldv = test_node(t, &ty, 2);
  fh_collect(t, FH_COLLECT_YOUNG);
  fh_collect(t, FH_COLLECT_YOUNG);
  assert_true(in_old(h, oldv));
  /* A key that dies young: its ephemeron clears, the old value stays. */
  k = test_node(t, &ty, 1);
  e = fh_ephemeron_new(t, k, oldv);
  k = NULL;
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_null(fh_ephemeron_key(t, e));
  assert_null(fh_ephemeron_value(t, e));
  /* A finalizable key that dies young: kept alive for its finalizer (copied,
   * not promoted), with its ephemeron entry; cleared once popped. */
  k = test_node(t, &ty, 1);
  e = fh_ephemeron_new(t, k, oldv);
  assert_int_equal(fh_finalizer_attach(t, k, (void *)(uintptr_t)9), 0);
  k = NULL;
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  void *obj, *data;
  assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
  assert_int_equal((uintptr_t)data, 9);
  assert_ptr_equal(fh_ephemeron_key(t, e), obj);
  assert_ptr_equal(fh_ephemeron_value(t, e), oldv);
  obj = NULL;
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0); /* e promoted, k garbage */
  assert_true(in_old(h, e));
  assert_null(fh_ephemeron_key(t, e));
  assert_null(fh_ephemeron_value(t, e));
  assert_int_equal(oldv->check, test_check(2));
  fh_pop_roots(t, 3);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Zygote objects are old too: their dirty cards keep young objects alive
 * through young collections (and stay dirty: they are never cleaned). */
static void test_zygote_holder(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = gen_heap("heap_max=32M,verify=1", &ty, &t);
  tnode *z = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&z);
  assert_int_equal(fh_prefork(t), 0);
  fh_postfork_parent(h);
  assert_true(space_contains(&h->zygote.space, z));
  for (int round = 0; round < 4; round++) {
    fh_write_ref(t, z, (void **)&z->other, test_node(t, &ty, 10 + (uint64_t)round));
    for (int g = 0; g < 3000; g++) test_node(t, &ty, 0);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    tnode *o = z->other;
    assert_true(in_old(h, o));
    assert_int_equal(o->value, 10 + (uint64_t)round);
    assert_int_equal(o->check, test_check(10 + (uint64_t)round));
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A large object (the large-object space: old from birth) keeps young
 * objects through young collections, and after full ones, whose sweep
 * clears large objects' cards (they are dirtied again where they point
 * into the young space). */
static void test_large_holder(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = gen_heap("heap_max=32M,verify=1", &ty, &t);
  enum { N = 4096 }; /* 32 KiB of slots: above los_threshold */
  void **big = fh_alloc(t, ty.array, N * sizeof(void *));
  fh_push_root(t, (void **)&big);
  assert_true(los_contains(&h->los, big));
  for (int round = 0; round < 6; round++) {
    for (int i = round; i < N; i += 97)
      fh_write_ref(t, big, &big[i], test_node(t, &ty, (uint64_t)(i * 10 + round)));
    for (int g = 0; g < 3000; g++) test_node(t, &ty, 0);
    assert_int_equal(fh_collect(t, round % 3 == 2 ? FH_COLLECT_DEFAULT : FH_COLLECT_YOUNG), 0);
    for (int r = 0; r <= round; r++)
      for (int i = r; i < N; i += 97) {
        tnode *n = big[i];
        assert_non_null(n);
        assert_int_equal(n->check, test_check(n->value));
      }
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A pinned young object is not moved: that cycle slides the active space
 * in place (as semispace does) and counts as a full collection. */
static void test_pinned_young(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = gen_heap("heap_max=32M,verify=1", &ty, &t);
  tnode *p = test_node(t, &ty, 3);
  fh_push_root(t, (void **)&p);
  for (int g = 0; g < 5000; g++) test_node(t, &ty, 0);
  assert_int_equal(fh_pin(t, p), 0);
  tnode *was = p;
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_ptr_equal(p, was);
  fh_stats s;
  fh_get_stats(h, &s);
  assert_int_equal(s.full_collections, 1);
  fh_unpin(t, p);
  /* Survived: promoted by the next collection. */
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_true(in_old(h, p));
  assert_int_equal(p->check, test_check(3));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* The policy alone. */
static void test_policy(void **st) {
  (void)st;
  gen_policy_in in = {.heap_max = 256 * MiB};
  assert_true(gen_policy_choose(&in).young);
  in.explicit_full = 1;
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_EXPLICIT);
  in.requested_young = 1; /* FH_COLLECT_YOUNG wins */
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_REQUESTED_YOUNG);
  in = (gen_policy_in){.heap_max = 256 * MiB, .alloc_failure = 1};
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_ALLOC_FAILURE);
  in = (gen_policy_in){.heap_max = 256 * MiB, .promote_failed = 1};
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_PROMOTE_FULL);
  /* Old grew by half of itself since the last full: full. */
  in = (gen_policy_in){.heap_max = 256 * MiB, .old_after_full = 100 * MiB,
                       .promoted_since_full = 49 * MiB};
  assert_true(gen_policy_choose(&in).young);
  in.promoted_since_full = 50 * MiB;
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_OLD_GREW);
  /* A small old generation: at least min(1 MiB, heap_max / 16). */
  assert_int_equal(gen_policy_old_threshold(0, 256 * MiB), 1 * MiB);
  assert_int_equal(gen_policy_old_threshold(0, 8 * MiB), MiB / 2);
  /* The last young collection freed under 10%: full. */
  in = (gen_policy_in){.heap_max = 256 * MiB, .young_collected = 1000, .young_freed = 99};
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_FREED_LITTLE);
  in.young_freed = 100;
  assert_true(gen_policy_choose(&in).young);
  /* ...unless the last full one freed little too: all stays live, and
   * only the old generation's growth brings the next full one. */
  in = (gen_policy_in){.heap_max = 256 * MiB, .young_collected = 1000, .young_freed = 99,
                       .full_freed_little = 1, .old_after_full = 100 * MiB};
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_YOUNG);
  in.promoted_since_full = 50 * MiB;
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_OLD_GREW);
}

/* Allocation-triggered collections follow the policy: a workload whose
 * old generation keeps growing gets both young and full collections, and
 * fh_dump says so. */
static void test_policy_in_heap(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = gen_heap("heap_max=32M,verify=1", &ty, &t);
  test_gen_policy_workload(h, t, &ty);
  char buf[4096];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  fh_dump(h, f);
  fclose(f);
  assert_non_null(strstr(buf, "generations:"));
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A store into an old object that bypasses fh_write_ref: verify=1 names
 * the holder before the young collection loses the referent. */
static void test_verify_catches_missing_barrier(void **st) {
  (void)st;
  test_gen_missing_barrier("gen_semispace", in_old);
}

/* Several mutators, old structures grown with young objects, verify=1
 * (tests/support_gen.h). */
static void test_multi_mutator_stress(void **st) {
  (void)st;
  test_gen_stress("collector=gen_semispace,heap_max=24M,verify=1", 60000, 5000, 3);
}

/* A large object is born with its card dirty (its first stores may be
 * plain); the young collection after it clears the card of one that
 * holds nothing young (gen_cards_clean), and keeps the card of one that
 * holds a young object until that object is promoted. */
static void test_large_object_cards_settle(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = gen_heap("heap_max=64M,verify=1", &ty, &t);
  void **empty = NULL, **holder = NULL;
  fh_push_root(t, (void **)&empty);
  fh_push_root(t, (void **)&holder);
  test_gen_large_cards_first_young(h, t, &ty, &empty, &holder); /* holder[7] copied, young */
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_true(in_old(h, holder[7]));
  assert_false(card_dirty(h, holder));
  tnode *n = holder[7];
  assert_int_equal(n->check, test_check(7));
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_promotion_after_two_collections),
      cmocka_unit_test(test_remembered_set),
      cmocka_unit_test(test_weak_old_keys),
      cmocka_unit_test(test_weak_young_keys),
      cmocka_unit_test(test_zygote_holder),
      cmocka_unit_test(test_large_holder),
      cmocka_unit_test(test_pinned_young),
      cmocka_unit_test(test_policy),
      cmocka_unit_test(test_policy_in_heap),
      cmocka_unit_test(test_verify_catches_missing_barrier),
      cmocka_unit_test(test_multi_mutator_stress),
      cmocka_unit_test(test_large_object_cards_settle),
  };
  return cmocka_run_group_tests_name("gen_semispace", tests, NULL, NULL);
}
