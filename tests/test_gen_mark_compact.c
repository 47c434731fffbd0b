/* Generational mark-compact (collectors/mc_gen.h) on mark_compact and
 * concurrent_compact: young collections keep what old objects reach
 * through fh_write_ref, objects reach the old generation after two
 * collections and never move again in young ones, promoted holders of
 * young objects keep dirty cards; pins, identity hashes, ephemerons,
 * finalizers, large and non-moving holders across young collections;
 * several mutators under verify=1.  The remembered set (cards, a missing
 * barrier): test_gen_cards.c; the policy and the option:
 * test_gen_budget.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "collectors/mc.h"
#include "heap/barrier.h"
#include "heap/gen_policy.h"
#include "heap/heap.h"
#include "heap/sys.h"
#include "support_gen.h"
#include "support_heap.h"

#define MiB ((size_t)1 << 20)


/* Mid after one collection, old after two; an old object never moves in
 * young collections; young and full counts. */
static void test_promotion_after_two_collections(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=32M,verify=1", &ty, &t);
    tnode *a = NULL, *b = NULL;
    fh_push_root(t, (void **)&a);
    fh_push_root(t, (void **)&b);
    test_gen_garbage(t, &ty, 1000);
    a = test_node(t, &ty, 7);
    b = test_node(t, &ty, 8);
    fh_write_ref(t, a, (void **)&a->next, b);
    test_gen_garbage(t, &ty, 1000);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_true(test_gen_in_mid(h, a) && test_gen_in_mid(h, b));
    assert_false(test_gen_in_old(h, a));
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_true(test_gen_in_old(h, a) && test_gen_in_old(h, b));
    tnode *was = a;
    for (int i = 0; i < 4; i++) {
      test_gen_garbage(t, &ty, 2000);
      fh_write_ref(t, a, (void **)&a->other, test_node(t, &ty, 100 + (uint64_t)i));
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
      assert_ptr_equal(a, was); /* old: never moved by a young collection */
      assert_ptr_equal(a->next, b);
      assert_int_equal(((tnode *)a->other)->value, 100 + (uint64_t)i);
    }
    assert_int_equal(a->value, 7);
    assert_int_equal(a->check, test_check(7));
    assert_int_equal(b->check, test_check(8));
    fh_stats s;
    fh_get_stats(h, &s);
    assert_int_equal(s.young_collections, 6);
    assert_int_equal(s.full_collections, 0);
    assert_true(s.bytes_promoted >= 2 * sizeof(tnode));
    assert_true(s.young_pause_ns_total > 0 && s.young_pause_ns_max > 0);
    /* An explicit default collection is full: everything it keeps is old. */
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    fh_get_stats(h, &s);
    assert_int_equal(s.full_collections, 1);
    assert_true(test_gen_in_old(h, a) && test_gen_in_old(h, a->other));
    assert_int_equal(((tnode *)a->other)->check, test_check(103));
    char buf[8192];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    fh_dump(h, f);
    fclose(f);
    assert_non_null(strstr(buf, "generations:"));
    fh_pop_roots(t, 2);
    test_gen_done(h, t);
  }
}

/* A slid full collection keeps its youngest survivors young (mid) when
 * they are a good part of what it keeps (mc_gen.c: keep_mid_boundary): a
 * structure half built when it came is freed by the next young collection
 * once dropped, instead of staying old until another full one.  The old
 * objects that point to it keep dirty cards (verify=1 checks them after
 * the cycle), and what still points to it survives the young collection. */
static void test_full_keeps_young_survivors(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=64M,verify=1", &ty, &t);
  tnode *old = NULL, *young = NULL;
  fh_push_root(t, (void **)&old);
  fh_push_root(t, (void **)&young);
  for (int i = 0; i < 20000; i++) { /* about 0.6 MiB of old list */
    tnode *n = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->next, old);
    old = n;
  }
  fh_collect(t, FH_COLLECT_DEFAULT);
  fh_collect(t, FH_COLLECT_YOUNG);
  assert_true(test_gen_in_old(h, old));
  for (int i = 0; i < 60000; i++) { /* about 1.8 MiB, allocated since */
    tnode *n = test_node(t, &ty, 1000000u + (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->next, young);
    young = n;
  }
  fh_write_ref(t, old, (void **)&old->other, young); /* old -> young */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_true(test_gen_in_old(h, old));
  assert_true(test_gen_in_mid(h, young)); /* kept young: not promoted by the full one */
  assert_true(test_gen_card_dirty(h, old));
  assert_ptr_equal(old->other, young);
  /* Dropped by the root, still held by the old node: survives a young
   * collection (found through the card), becomes old. */
  young = NULL;
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  tnode *y = old->other;
  assert_true(test_gen_in_old(h, y));
  long k = 0;
  for (; y; y = y->next, k++) assert_int_equal(y->check, test_check(y->value));
  assert_int_equal(k, 60000);
  /* Built again and dropped after a full collection kept it young: the
   * next young collection frees it. */
  fh_write_ref(t, old, (void **)&old->other, NULL);
  for (int i = 0; i < 60000; i++) {
    tnode *n = test_node(t, &ty, 2000000u + (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->next, young);
    young = n;
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_true(test_gen_in_mid(h, young));
  young = NULL;
  size_t before = bump_space_used(&h->bump[h->active]);
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  size_t after = bump_space_used(&h->bump[h->active]);
  assert_true(before - after >= 60000 * sizeof(tnode));
  fh_pop_roots(t, 2);
  test_gen_done(h, t);
}

/* What a slid full collection kept young is counted in what it left
 * (old_after_full), and the young collection that promotes it does not
 * make the old generation "grow": Whippet's quads at 5x ran a full
 * collection that freed nothing right after that promotion. */
static void test_kept_mid_promotion_is_not_growth(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=64M,verify=1", &ty, &t);
  tnode *old = NULL, *young = NULL;
  fh_push_root(t, (void **)&old);
  fh_push_root(t, (void **)&young);
  for (int i = 0; i < 20000; i++) { /* about 0.6 MiB of old list */
    tnode *n = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->next, old);
    old = n;
  }
  fh_collect(t, FH_COLLECT_DEFAULT);
  fh_collect(t, FH_COLLECT_YOUNG);
  assert_true(test_gen_in_old(h, old));
  for (int i = 0; i < 200000; i++) { /* about 6 MiB, past the 4 MiB floor */
    tnode *n = test_node(t, &ty, 1000000u + (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->next, young);
    young = n;
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_true(test_gen_in_mid(h, young)); /* kept young by the full collection */
  const gen_policy_in *l = &(&h->mc->gen)->last;
  assert_true(l->old_after_full >= 200000 * sizeof(tnode));
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_true(test_gen_in_old(h, young)); /* promoted now */
  /* Not the list: at most the dead wood promoted with it (fillers of the
   * slide's dense prefix, within 1/32 of it: collectors/fwd_wood.c). */
  assert_true(l->promoted_since_full <= 200000 * sizeof(tnode) / 32);
  gen_policy_in in = *l;
  in.heap_max = 64 * MiB;
  assert_true(gen_policy_choose(&in).why != GEN_WHY_OLD_GREW);
  long k = 0;
  for (tnode *y = young; y; y = y->next, k++) assert_int_equal(y->check, test_check(y->value));
  assert_int_equal(k, 200000);
  fh_pop_roots(t, 2);
  test_gen_done(h, t);
}

/* A pinned object left near the top by a full collection makes the old
 * generation's range mostly a hole: the budget grows from the old
 * generation's live bytes, not from that range (each young cycle tripled
 * the budget of fhscheme's small loop before). */
static void test_old_range_hole_is_not_live(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,verify=1", &ty, &t);
    tnode *keep = NULL;
    fh_push_root(t, (void **)&keep);
    test_gen_garbage(t, &ty, 40000);
    keep = test_node(t, &ty, 1);
    assert_int_equal(fh_pin(t, keep), 0);
    test_gen_garbage(t, &ty, 2000);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    assert_true((&h->mc->gen)->valid && (&h->mc->gen)->old_end > (uintptr_t)keep);
    for (int i = 0; i < 4; i++) {
      test_gen_garbage(t, &ty, 20000);
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
      assert_int_equal(keep->check, test_check(1));
      assert_true(h->live_after_gc < 512 * 1024);
    }
    fh_unpin(t, keep);
    fh_pop_roots(t, 1);
    test_gen_done(h, t);
  }
}

/* Old objects of many sizes (nodes, reference arrays of 1 to 300 slots
 * spanning several cards, byte objects between and among them) made old
 * by a full collection, then young collections, each after new nodes were
 * stored into scattered slots of scattered old objects: every referent
 * survives, forwarded, round after round.  The old generation's objects
 * are found on their cards from walk points (per page after the full
 * collection, per card once walked) and the objects marking logged are
 * the only ones the update reads (collectors/mc_gen.c): a walk point in
 * the middle of an object or an unlogged holder loses or misreads a
 * referent here (verify=1 also checks the cards). */
static void test_old_objects_of_many_sizes(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,verify=1", &ty, &t);
    enum { N = 3000, STORES = 700, ROUNDS = 6 };
    void **tab = fh_alloc(t, ty.array, N * sizeof(void *));
    assert_non_null(tab);
    fh_push_root(t, (void **)&tab);
    uint64_t rng = 0x2545F4914F6CDD1Dull;
#define NEXT() (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17)
    for (int i = 0; i < N; i++) {
      void *o;
      if (i % 4 == 0)
        o = test_node(t, &ty, (uint64_t)i);
      else if (i % 4 == 2)
        o = fh_alloc(t, ty.bytes, 8 + NEXT() % 1500);
      else
        o = fh_alloc(t, ty.array, (1 + NEXT() % 300) * sizeof(void *));
      assert_non_null(o);
      fh_write_ref(t, tab, &tab[i], o);
      assert_non_null(fh_alloc(t, ty.bytes, 8 + NEXT() % 700)); /* garbage between */
    }
    fh_collect(t, FH_COLLECT_DEFAULT); /* all old */
    fh_gc_wait(h);
    assert_true(test_gen_in_old(h, tab[N - 1]));
    for (int round = 0; round < ROUNDS; round++) {
      for (int k = 0; k < STORES; k++) {
        int i = (int)(NEXT() % N);
        if (i % 4 == 2) continue; /* no references */
        uint64_t v = 1000000u * (uint64_t)(round + 1) + (uint64_t)k;
        tnode *y = test_node(t, &ty, v);
        void *o = tab[i]; /* re-read: the allocation may have collected */
        if (i % 4 == 0) {
          fh_write_ref(t, o, (void **)&((tnode *)o)->other, y);
        } else {
          size_t slots = fh_object_size(o) / sizeof(void *);
          fh_write_ref(t, o, &((void **)o)[NEXT() % slots], y);
        }
        if (k % 8 == 0) test_gen_garbage(t, &ty, 20);
      }
      test_gen_garbage(t, &ty, 2000);
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
      /* Every referent, stored in this round or before, is a whole node. */
      size_t found = 0;
      for (int i = 0; i < N; i++) {
        void *o = tab[i];
        if (i % 4 == 2) continue;
        size_t slots = i % 4 == 0 ? 1 : fh_object_size(o) / sizeof(void *);
        for (size_t j = 0; j < slots; j++) {
          tnode *y = i % 4 == 0 ? ((tnode *)o)->other : ((void **)o)[j];
          if (!y) continue;
          assert_true(y->value >= 1000000u);
          assert_int_equal(y->check, test_check(y->value));
          found++;
        }
      }
      assert_true(found > (size_t)STORES / 2);
    }
#undef NEXT
    fh_pop_roots(t, 1);
    test_gen_done(h, t);
  }
}

/* Ephemerons and finalizers: a young collection keeps what old objects
 * hold (old keys are live by assumption, old finalizable objects are not
 * finalized); a young key that dies clears its ephemeron; a full
 * collection clears and finalizes the old ones. */
static void test_weak_and_finalizers(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=32M,verify=1", &ty, &t);
    tnode *key = test_node(t, &ty, 5), *fin = NULL, *k = NULL;
    void *e_old = NULL, *e_young = NULL;
    fh_push_root(t, (void **)&key);
    fh_push_root(t, (void **)&fin);
    fh_push_root(t, &e_old);
    fh_push_root(t, &e_young);
    fh_push_root(t, (void **)&k);
    fin = test_node(t, &ty, 6);
    assert_int_equal(fh_finalizer_attach(t, fin, (void *)(uintptr_t)66), 0);
    e_old = fh_ephemeron_new(t, key, NULL);
    fh_collect(t, FH_COLLECT_YOUNG);
    fh_collect(t, FH_COLLECT_YOUNG);
    assert_true(test_gen_in_old(h, key) && test_gen_in_old(h, fin) && test_gen_in_old(h, e_old));
    fh_ephemeron_set_value(t, e_old, test_node(t, &ty, 11));
    key = NULL, fin = NULL;
    k = test_node(t, &ty, 1);
    e_young = fh_ephemeron_new(t, k, test_node(t, &ty, 12));
    k = NULL; /* a young key that dies */
    test_gen_garbage(t, &ty, 2000);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_non_null(fh_ephemeron_key(t, e_old));
    tnode *v = fh_ephemeron_value(t, e_old);
    assert_true(v && v->value == 11 && v->check == test_check(11));
    assert_null(fh_ephemeron_key(t, e_young));
    assert_null(fh_ephemeron_value(t, e_young));
    void *obj, *data;
    assert_int_equal(fh_finalizer_pop(t, &obj, &data), 0);
    /* A young finalizable object that dies is finalized by a young one. */
    k = test_node(t, &ty, 9);
    assert_int_equal(fh_finalizer_attach(t, k, (void *)(uintptr_t)99), 0);
    k = NULL;
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
    assert_int_equal((uintptr_t)data, 99);
    assert_int_equal(((tnode *)obj)->check, test_check(9));
    obj = NULL;
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    assert_null(fh_ephemeron_key(t, e_old));
    assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
    assert_int_equal((uintptr_t)data, 66);
    fh_pop_roots(t, 5);
    test_gen_done(h, t);
  }
}

/* Large, non-moving and pinned objects, identity hashes. */
static void test_other_holders_pins_hashes(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=32M,verify=1", &ty, &t);
    enum { N = 4096 };
    void **big = fh_alloc(t, ty.array, N * sizeof(void *));
    tnode *nm = NULL, *p = NULL, *hashed = NULL;
    fh_push_root(t, (void **)&big);
    fh_push_root(t, (void **)&nm);
    fh_push_root(t, (void **)&p);
    fh_push_root(t, (void **)&hashed);
    assert_true(los_contains(&h->los, big));
    nm = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
    nm->value = 1, nm->check = test_check(1);
    hashed = test_node(t, &ty, 42);
    uint64_t hash = fh_object_hash(t, hashed);
    for (int round = 0; round < 6; round++) {
      for (int i = round; i < N; i += 97)
        fh_write_ref(t, big, &big[i], test_node(t, &ty, (uint64_t)(i * 10 + round)));
      fh_write_ref(t, nm, (void **)&nm->other, test_node(t, &ty, 500 + (uint64_t)round));
      test_gen_garbage(t, &ty, 1000);
      p = test_node(t, &ty, 77);
      test_gen_garbage(t, &ty, 1000);
      assert_int_equal(fh_pin(t, p), 0);
      tnode *pwas = p;
      fh_collect_kind k = round % 3 == 2 ? FH_COLLECT_DEFAULT : FH_COLLECT_YOUNG;
      assert_int_equal(fh_collect(t, k), 0);
      fh_gc_wait(h);
      assert_ptr_equal(p, pwas);
      assert_int_equal(p->check, test_check(77));
      fh_unpin(t, p);
      assert_int_equal(fh_object_hash(t, hashed), hash);
      assert_int_equal(hashed->check, test_check(42));
      assert_int_equal(((tnode *)nm->other)->value, 500 + (uint64_t)round);
      for (int r = 0; r <= round; r++)
        for (int i = r; i < N; i += 97) {
          tnode *n = big[i];
          assert_non_null(n);
          assert_int_equal(n->check, test_check(n->value));
        }
    }
    fh_stats s;
    fh_get_stats(h, &s);
    assert_true(s.young_collections >= 4);
    fh_pop_roots(t, 4);
    test_gen_done(h, t);
  }
}

/* Non-moving holders packed on consecutive cards (a ring, every fourth
 * node non-moving): each holder's slots are forwarded once, though the
 * non-moving allocation bitmap's 16-byte granule puts an object starting
 * 8 bytes before a card on that card's lookup too (they were forwarded
 * twice: references into the middle of objects). */
static void test_nonmoving_ring(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,non_moving_max=32M,verify=1", &ty, &t);
    test_ring g;
    test_ring_build(t, &ty, &g, 4000, 4, 2);
    for (int r = 0; r < 4; r++) {
      test_gen_garbage(t, &ty, 50000);
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
      for (size_t i = 0; i < g.n; i++) {
        tnode *x = g.arr[i];
        assert_int_equal(x->value, i);
        assert_ptr_equal(x->next, g.arr[(i + 1) % g.n]);
      }
    }
    fh_pop_roots(t, 1);
    test_gen_done(h, t);
  }
}

/* An old reference array longer than marking's array chunk (512 slots)
 * whose young referents sit past its first chunk only: marking logs it
 * for the update although its first chunk found nothing (the rest waits
 * as a continuation), so every referent is forwarded; once more with two
 * markers in the young cycles (FH_MC_MARK_THREADS), whose bitmaps start
 * at the floor's page (forwarding.c: fwd_marker_base) and must still be
 * merged whole. */
static void test_old_array_tail_and_helpers(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    for (int helpers = 0; helpers < 2; helpers++) {
      test_types ty;
      fh_thread *t;
      /* los_threshold: the array stays in the bump space */
      fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,verify=1,los_threshold=64K", &ty, &t);
      enum { N = 4096, FIRST = 600 };
      tnode *old = NULL;
      fh_push_root(t, (void **)&old);
      for (int i = 0; i < 20000; i++) { /* an old generation of some size */
        tnode *n = test_node(t, &ty, (uint64_t)i);
        fh_write_ref(t, n, (void **)&n->next, old);
        old = n;
      }
      void **arr = fh_alloc(t, ty.array, N * sizeof(void *));
      assert_non_null(arr);
      fh_push_root(t, (void **)&arr);
      fh_collect(t, FH_COLLECT_DEFAULT); /* old, or mid if a slide keeps them young */
      fh_gc_wait(h);
      fh_collect(t, FH_COLLECT_YOUNG);
      fh_collect(t, FH_COLLECT_YOUNG);
      assert_true(test_gen_in_old(h, arr) && test_gen_in_old(h, old));
      if (helpers) setenv("FH_MC_MARK_THREADS", "2", 1);
      for (int round = 0; round < 4; round++) {
        for (int i = FIRST + round; i < N; i += 97)
          fh_write_ref(t, arr, &arr[i], test_node(t, &ty, (uint64_t)(i * 10 + round)));
        test_gen_garbage(t, &ty, 5000);
        assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
        for (int i = FIRST + round; i < N; i += 97) {
          tnode *y = arr[i];
          assert_true(test_gen_in_mid(h, y));
          assert_int_equal(y->value, (uint64_t)(i * 10 + round));
          assert_int_equal(y->check, test_check(y->value));
        }
      }
      unsetenv("FH_MC_MARK_THREADS");
      int k = 0;
      for (tnode *n = old; n; n = n->next, k++) assert_int_equal(n->check, test_check(n->value));
      assert_int_equal(k, 20000);
      fh_stats s;
      fh_get_stats(h, &s);
      assert_int_equal(s.full_collections, 1); /* the explicit one */
      fh_pop_roots(t, 2);
      test_gen_done(h, t);
    }
  }
}

/* A young collection keeps the pages its young generation used resident
 * (mark_compact.c: publish_slid), up to the next trigger's worth: the
 * mutators refill that range before the next young collection, and a
 * discard there cost a madvise in the pause and a fault per page after it
 * (binary-trees: a third of its time).  12 MiB of garbage under a 16 MiB
 * trigger: the sizer's quarter window (4 MiB) would discard 8 of them. */
static void test_young_keeps_pages_resident(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,min_alloc_trigger=16M,growth_factor_pct=110", &ty, &t);
    tnode *a = test_node(t, &ty, 1);
    fh_push_root(t, (void **)&a);
    fh_collect(t, FH_COLLECT_YOUNG);
    fh_gc_wait(h);
    fh_stats s0;
    fh_get_stats(h, &s0);
    bump_space *b = &h->bump[h->active];
    uintptr_t before = atomic_load(&b->top);
    size_t bytes = 0;
    while (bytes < 12 * MiB) {
      assert_non_null(fh_alloc(t, ty.bytes, 4000));
      bytes += 4000 + 8;
    }
    fh_stats s1;
    fh_get_stats(h, &s1);
    assert_int_equal(s1.collections, s0.collections); /* under the trigger */
    uintptr_t used = atomic_load(&b->top);
    assert_true(used - before >= 12 * MiB);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    fh_get_stats(h, &s1);
    assert_int_equal(s1.young_collections, s0.young_collections + 1);
    uintptr_t top = atomic_load(&b->top);
    uintptr_t lo = (top + 4095) & ~(uintptr_t)4095, hi = used & ~(uintptr_t)4095;
    assert_true(b->dirty_end >= hi);
    size_t pages = (hi - lo) / 4096, resident = 0;
    unsigned char *vec = malloc(pages);
    assert_non_null(vec);
    assert_int_equal(mincore((void *)lo, hi - lo, vec), 0);
    for (size_t i = 0; i < pages; i++) resident += vec[i] & 1;
    free(vec);
    assert_int_equal(resident, pages);
    assert_int_equal(a->check, test_check(1));
    fh_pop_roots(t, 1);
    test_gen_done(h, t);
  }
}

static unsigned long pool_tasks(fh_heap *h) {
  pthread_mutex_lock(&h->pool.lock);
  unsigned long n = h->pool.tasks_total;
  pthread_mutex_unlock(&h->pool.lock);
  return n;
}

/* A young cycle's end-of-cycle clearing is a few microseconds (its tables
 * are kept): once measured, it runs in the pause rather than waking a
 * pool thread (whose wakeup cost more system time than the work), even
 * with an old generation far above the 2 MiB that always ends inline.
 * With one GC thread nothing else in a young slide that needs no
 * prefault starts a task, and a steady young cycle makes no madvise:
 * its tables are resident from the last one. */
static void test_young_end_in_the_pause(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_gen_mc_heap(c, "heap_max=64M,gc_threads=1,min_alloc_trigger=16M", &ty, &t);
    tnode *list = NULL;
    fh_push_root(t, (void **)&list);
    test_list_build(t, &ty, &list, 200000); /* 6 MiB with headers */
    for (int i = 0; i < 2; i++) assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* full */
    fh_gc_wait(h);
    unsigned long tasks = 0;
    fh_stats s0, s1;
    fh_get_stats(h, &s0);
    for (int i = 0; i < 6; i++) {
      /* Past the window a slide prefaults (a quarter of the trigger), so
       * there is nothing to prefault, which would want the task; under
       * the trigger, so no other collection comes. */
      test_gen_garbage(t, &ty, (int)((h->gc_trigger / 4 + MiB) / (sizeof(tnode) + 8)));
      if (i == 2) {
        tasks = pool_tasks(h); /* measured by now, both ways */
        sys_fault_arm(SYS_MADVISE, 0, 0, 0); /* counting only */
      }
      /* The last young end's measured cost decides (MC_INLINE_END_NS, 50
       * us of wall time): a preemption inside it on a loaded machine would
       * hand the next end to a pool thread.  What is tested is where a
       * cheap end runs. */
      h->mc->end_ns[1] = 1;
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    }
    sys_fault_disarm();
    /* and no system call either: the tables these cycles write are the
     * ones the last kept resident, the page holding the kept end too. */
    assert_int_equal(sys_fault_calls(SYS_MADVISE), 0);
    fh_get_stats(h, &s1);
    assert_int_equal(s1.young_collections, s0.young_collections + 6);
    assert_true(h->mc->old_used > ((size_t)2 << 20));
    assert_int_equal(pool_tasks(h), tasks);
    size_t n = 0;
    for (tnode *p = list; p; p = p->next) assert_int_equal(p->check, test_check(p->value)), n++;
    assert_int_equal(n, 200000);
    fh_pop_roots(t, 1);
    test_gen_done(h, t);
  }
}

/* Several mutators, old structures grown with young objects, verify=1
 * (tests/support_gen.h). */
static void test_multi_mutator_stress(void **st) {
  (void)st;
  for (int c = 0; c < TEST_GEN_NCOLL; c++) {
    if (c == 1 && !test_have_uffd()) continue;
    char spec[128];
    snprintf(spec, sizeof spec, "collector=%s,heap_max=24M,verify=1", test_gen_mc_collectors[c]);
    test_gen_stress(spec, test_sanitized() ? 20000 : 60000, 4000, 4);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_promotion_after_two_collections),
      cmocka_unit_test(test_full_keeps_young_survivors),
      cmocka_unit_test(test_kept_mid_promotion_is_not_growth),
      cmocka_unit_test(test_old_objects_of_many_sizes),
      cmocka_unit_test(test_weak_and_finalizers),
      cmocka_unit_test(test_other_holders_pins_hashes),
      cmocka_unit_test(test_old_range_hole_is_not_live),
      cmocka_unit_test(test_nonmoving_ring),
      cmocka_unit_test(test_multi_mutator_stress),
      cmocka_unit_test(test_old_array_tail_and_helpers),
      cmocka_unit_test(test_young_keeps_pages_resident),
      cmocka_unit_test(test_young_end_in_the_pause),
  };
  return cmocka_run_group_tests_name("gen_mark_compact", tests, NULL, NULL);
}
