/* Generational mark-compact with conservative stack roots
 * (collectors/mc_gen_holes.c: holes_stay_young, young_boundary; mc_gen.c: the hole floor):
 * young collections run with stack_roots=conservative; objects a stack
 * word pins near the allocation frontier stay in place through young and
 * full collections; what is allocated after a collection, into the holes
 * the pins left or above the top, is never old from birth; the space does
 * not grow by a young generation per collection; a small heap whose newest
 * object is always pinned does not run out; several mutators under
 * verify=1 (the remembered set checked around every young collection). */
#include <stdio.h>
#include <stdlib.h>

#include "collectors/mc.h"
#include "heap/heap.h"
#include "heap/object.h"
#include "support_gen.h"
#include "support_heap.h"

#define MiB ((size_t)1 << 20)
/* generational=1, the default, spelt out: 2 would leave generations off
 * with conservative roots. */
#define CONS "stack_roots=conservative,generational=1"

static const char *const collectors[] = {"mark_compact", "concurrent_compact"};
#define NCOLL 2

static const mc_gen *gens(fh_heap *h) { return &h->mc->gen; }
static int in_old(fh_heap *h, const void *p) {
  return h->mc && gens(h)->valid && (uintptr_t)p >= h->bump[h->active].space.begin &&
         (uintptr_t)p < gens(h)->old_end;
}
static size_t space_used(fh_heap *h) { return bump_space_used(&h->bump[h->active]); }

/* Every walk point of the active space (bump_space.starts: what a
 * conservative stack word's object is found from) below top is an object
 * or filler start, walking headers from the space's start.  Called with
 * the world running but this thread the only mutator, its TLAB's tail
 * being one filler-less run above the last start it claimed: the walk
 * stops at the first zero header. */
static int walk_points_are_starts(fh_heap *h) {
  bump_space *b = &h->bump[h->active];
  if (!b->starts.words) return 1;
  uintptr_t s = b->space.begin, top = atomic_load(&b->top);
  uintptr_t p = bitmap_next_set(&b->starts, s, top);
  while (p && s < top) {
    if (p < s) return 0; /* a walk point inside the object walked over */
    if (p == s) p = bitmap_next_set(&b->starts, s + 8, top);
    size_t n = obj_bytes(*(const uint64_t *)s);
    if (!n) return 1; /* the TLAB's unused tail */
    s += n;
  }
  return 1;
}

static fh_heap *cons_heap(int c, const char *rest, test_types *ty, fh_thread **t) {
  char spec[200];
  snprintf(spec, sizeof spec, "%s,%s", CONS, rest);
  if (c == 1 && !test_have_uffd()) return test_heap_attached("mark_compact", spec, ty, t);
  return test_heap_attached(collectors[c], spec, ty, t);
}

static void done(fh_heap *h, fh_thread *t) {
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* n dead nodes, then one more returned: the newest object, which the
 * caller keeps in a local only, so that the collection's stack scan pins
 * it near the frontier with the garbage below it (a hole once slid). */
__attribute__((noinline)) static tnode *garbage_then_node(fh_thread *t, const test_types *ty,
                                                          int n, uint64_t v) {
  for (int i = 0; i < n; i++) test_node(t, ty, 0);
  return test_node(t, ty, v);
}

/* A list kept in root slots becomes old; then, each round, 2 MiB of
 * garbage with the newest node held by a stack word only, an old and a
 * non-moving holder of it, and a young collection (a full one every
 * eighth round: mark_compact slides it and ends the old generation at its
 * first hole, concurrent_compact flips it and strands its holes).  The
 * pinned node stays in place and intact, and so does the last round's;
 * the node allocated right after each collection is not in the old
 * generation (it went into a hole the pin left, which the old generation
 * ends below, or above the top: on main, with generational=1, a full
 * collection's holes were old from birth); and the space's range does not
 * grow by a young generation per collection.  verify=1 checks the
 * remembered set after every young collection and split full one. */
static void test_fresh_objects_not_old(void **st) {
  (void)st;
  for (int c = 0; c < NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = cons_heap(c, "heap_max=96M,verify=1", &ty, &t);
    tnode *old = NULL;
    fh_push_root(t, (void **)&old);
    /* a non-moving holder of this round's and the last round's pinned
     * nodes: its card too must be dirty while they are young or mid */
    tnode *nm = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
    assert_non_null(nm);
    fh_push_root(t, (void **)&nm);
    for (int i = 0; i < 5000; i++) {
      tnode *n = test_node(t, &ty, (uint64_t)i);
      fh_write_ref(t, n, (void **)&n->next, old);
      old = n;
    }
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    size_t used0 = 0;
    tnode *volatile first = NULL; /* the first object after the last collection */
    uint64_t first_v = 0;
    uintptr_t first_at = 0;
    enum { ROUNDS = 24, GARBAGE = 65536 }; /* 2 MiB of 32-byte nodes */
    for (int r = 0; r < ROUNDS; r++) {
      tnode *volatile pinned = garbage_then_node(t, &ty, GARBAGE, 1000u + (uint64_t)r);
      uintptr_t at = (uintptr_t)pinned;
      /* an old holder of the pinned young node: its card must stay dirty */
      fh_write_ref(t, old, (void **)&old->other, pinned);
      fh_write_ref(t, nm, (void **)&nm->next, nm->other);
      fh_write_ref(t, nm, (void **)&nm->other, pinned);
      int full = r % 8 == 7;
      assert_int_equal(fh_collect(t, full ? FH_COLLECT_DEFAULT : FH_COLLECT_YOUNG), 0);
      fh_gc_wait(h);
      assert_int_equal((uintptr_t)pinned, at);
      assert_int_equal(pinned->check, test_check(1000u + (uint64_t)r));
      assert_ptr_equal(old->other, pinned);
      assert_ptr_equal(nm->other, pinned);
      if (r) assert_int_equal(nm->next->check, test_check(1000u + (uint64_t)r - 1));
      /* The last round's first object, allocated at the old generation's
       * end (the hole it begins), stayed pinned by its local: its chunk
       * begins below that end, among old objects, and the walk point the
       * cycle noted for its range must be an object start there. */
      if (first) {
        assert_int_equal((uintptr_t)first, first_at);
        assert_int_equal(first->check, test_check(first_v));
      }
      assert_true(walk_points_are_starts(h));
      tnode *fresh = test_node(t, &ty, 7 + (uint64_t)r);
      assert_false(in_old(h, fresh));
      first = fresh, first_v = 7 + (uint64_t)r, first_at = (uintptr_t)fresh;
      /* 1-7 survivors of 32 bytes after it and 0-63 words of garbage: the
       * next boundaries fall anywhere in a chunk */
      for (int k = 0; k <= r % 7; k++) {
        tnode *n = test_node(t, &ty, 5000u + (uint64_t)k);
        fh_write_ref(t, n, (void **)&n->next, old->next);
        fh_write_ref(t, old, (void **)&old->next, n);
      }
      fh_alloc(t, ty.bytes, (size_t)(r * 37 % 64) * 8);
      if (r == 1) used0 = space_used(h);
    }
    for (tnode *n = old; n; n = n->next) assert_int_equal(n->check, test_check(n->value));
    /* One young generation of slack per full collection's strand (three),
     * and one more; a strand at each young collection would be ten more. */
    assert_true(space_used(h) <= used0 + 4 * GARBAGE * sizeof(tnode) * 2);
    fh_stats s;
    fh_get_stats(h, &s);
    assert_true(s.young_collections >= ROUNDS - ROUNDS / 8);
    fh_pop_roots(t, 2);
    done(h, t);
  }
}

/* A heap of 8 MiB whose newest object is always pinned by a stack word:
 * 256 MiB of garbage allocated with no failure.  A collection caused by a
 * failing allocation hands its holes out (old from birth) instead of
 * stranding them: the same pin would keep the same gap, and the retry
 * would fail with the memory free. */
static void test_small_heap_does_not_run_out(void **st) {
  (void)st;
  for (int c = 0; c < NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = cons_heap(c, "heap_max=8M", &ty, &t);
    tnode *volatile newest = NULL;
    for (int r = 0; r < 128; r++) {
      newest = garbage_then_node(t, &ty, 65536, (uint64_t)r);
      assert_non_null(newest);
      assert_int_equal(newest->check, test_check((uint64_t)r));
    }
    fh_stats s;
    fh_get_stats(h, &s);
    assert_true(s.young_collections > 0);
    done(h, t);
  }
}

/* Several mutators (tests/support_gen.h) whose locals pin their newest
 * nodes at every collection, young and full, under verify=1: the
 * remembered set is checked before and after every young collection and
 * every object is intact at the end. */
static void test_multi_mutator_conservative(void **st) {
  (void)st;
  for (int c = 0; c < NCOLL; c++) {
    if (c == 1 && !test_have_uffd()) continue;
    char spec[160];
    snprintf(spec, sizeof spec, "collector=%s,heap_max=24M,verify=1,%s", collectors[c], CONS);
    test_gen_stress(spec, test_sanitized() ? 20000 : 60000, 4000, 4);
    /* concurrent_compact's full cycles slide too when they may */
    if (c == 1) {
      test_policy_choose("2000");
      test_gen_stress(spec, test_sanitized() ? 20000 : 60000, 4000, 4);
      test_policy_flip_always();
    }
  }
}

/* A binary tree of depth d, built bottom-up with fh_write_ref (the
 * generational barrier), held by the C stack only. */
__attribute__((noinline)) static tnode *make_tree(fh_thread *t, const test_types *ty, int d) {
  tnode *n = test_node(t, ty, (uint64_t)d);
  if (d > 0) {
    tnode *l = make_tree(t, ty, d - 1);
    fh_write_ref(t, n, (void **)&n->next, l);
    tnode *r = make_tree(t, ty, d - 1);
    fh_write_ref(t, n, (void **)&n->other, r);
  }
  return n;
}

static size_t tree_nodes(const tnode *n) {
  return n ? 1 + tree_nodes(n->next) + tree_nodes(n->other) : 0;
}

/* binary-trees (the Benchmarks Game's shape) in a heap capped at 24 MiB,
 * the stacks pinning the newest node at the top of a full space: the young
 * cycles' card walks do work in proportion to the old objects they find
 * on dirty cards.  On main (before this test), a walk point left inside a
 * stranded gap, once the gap was handed out old from birth, made every
 * dirty card walk again from the gap's start: at depth 20 the run took
 * minutes instead of seconds, nearly all of it in the card walks (here:
 * 2.2 billion steps for 2 million objects).  And the heap does not run
 * out: concurrent_compact's collection for a failed allocation flipped,
 * leaving the gap under the pinned top unbuilt, and failed with 7 of 24
 * MiB live. */
static void test_card_walks_stay_linear(void **st) {
  (void)st;
  for (int c = 0; c < NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = cons_heap(c, "heap_max=24M", &ty, &t);
    enum { DEPTH = 16 };
    tnode *volatile longlived = make_tree(t, &ty, DEPTH);
    for (int d = 4; d <= DEPTH; d += 2) {
      int iters = 1 << (DEPTH - d + 4);
      for (int i = 0; i < iters; i++) {
        tnode *volatile tmp = make_tree(t, &ty, d);
        assert_int_equal(tree_nodes(tmp), ((size_t)2 << d) - 1);
      }
    }
    assert_int_equal(tree_nodes(longlived), ((size_t)2 << DEPTH) - 1);
    const mc_gen *g = gens(h);
    fh_stats s;
    fh_get_stats(h, &s);
    assert_true(s.young_collections > 0);
    /* Each dirty card's walk starts at most a card below it: a few steps
     * per object found (32-byte nodes: 16 per card). */
    assert_true(g->card_steps <= 4 * g->card_objects + 100000);
    done(h, t);
  }
}

/* Over an old generation of 4 MiB, a young generation of gap bytes of
 * garbage, a pinned node, run bytes of live nodes above it, and dead
 * bytes of nodes that are live at the first young collection and dead at
 * the second.  The first keeps the pinned node and the run mid; the
 * second, which would promote them, ends the old generation at the top
 * unless that costs more than keeping them mid once more
 * (mc_gen_holes.c: hole_below, young_hole_cost): then the gap under the pinned
 * node (old from then on, counted as the old generation's growth with
 * what dies of the run: the next collection would be a full one) stays
 * young, and the next collection the trigger starts is young.  young:
 * whether the run should stay young. */
static void gap_under_run(size_t gap, size_t run_bytes, size_t dead, int young) {
  for (int c = 0; c < NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = cons_heap(c, "heap_max=256M,min_alloc_trigger=64M,verify=1", &ty, &t);
    enum { NDEAD = 64 };
    tnode *old = NULL, *run = NULL, *dying[NDEAD] = {NULL};
    fh_push_root(t, (void **)&old);
    fh_push_root(t, (void **)&run);
    for (int i = 0; i < NDEAD; i++) fh_push_root(t, (void **)&dying[i]);
    test_list_build(t, &ty, &old, (4 * MiB) / sizeof(tnode));
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    for (size_t i = 0; i < gap / sizeof(tnode); i++) test_node(t, &ty, 0);
    tnode *pinned = test_node(t, &ty, 42);
    assert_int_equal(fh_pin(t, pinned), 0);
    test_list_build(t, &ty, &run, run_bytes / sizeof(tnode));
    for (int i = 0; i < NDEAD; i++)
      test_list_build(t, &ty, &dying[i], dead / NDEAD / sizeof(tnode));
    for (int i = 0; i < 2; i++) {
      assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
      fh_gc_wait(h);
      assert_true(gens(h)->valid);
      /* The run's oldest node, just above the pinned one (its newest may
       * be pinned by a stack word, above a hole of its own). */
      tnode *oldest = run;
      while (oldest->next) oldest = oldest->next;
      assert_int_equal(in_old(h, pinned), i == 1 && !young);
      assert_int_equal(in_old(h, oldest), i == 1 && !young);
      for (int k = 0; k < NDEAD; k++) dying[k] = NULL;
    }
    fh_stats s0, s1;
    fh_get_stats(h, &s0);
    assert_int_equal(fh_collect(t, FH_COLLECT_TRIGGERED), 0);
    fh_gc_wait(h);
    fh_get_stats(h, &s1);
    if (young) assert_int_equal(s1.young_collections, s0.young_collections + 1);
    assert_int_equal(pinned->check, test_check(42));
    fh_unpin(t, pinned);
    size_t n = 0;
    for (tnode *p = run; p; p = p->next, n++) assert_int_equal(p->check, test_check(p->value));
    assert_int_equal(n, run_bytes / sizeof(tnode));
    fh_pop_roots(t, 2 + NDEAD);
    done(h, t);
  }
}

/* 7 MiB of gap under 1.5 MiB of live nodes that stay live: GCBench with
 * conservative roots stranded such a gap (6.8 MiB under 1.15 MiB) and
 * ran four more full collections than with precise roots.  Fails when a
 * byte of the old generation's growth weighs one mark. */
static void test_big_gap_stays_young(void **st) {
  (void)st;
  gap_under_run(7 * MiB, 3 * MiB / 2, 0, 1);
}

/* 3 MiB of gap under 2 MiB of live nodes, in a mid generation most of
 * which (6 MiB) died: binary-trees with conservative roots promoted its
 * tree under construction (which then died) and stranded the gap below
 * it, and every other collection was a full one.  Fails when a byte kept
 * mid counts as eight marks whatever the survival. */
static void test_gap_under_short_lived_run_stays_young(void **st) {
  (void)st;
  gap_under_run(3 * MiB, 2 * MiB, 6 * MiB, 1);
}

/* 256 KiB of gap under 6 MiB of live nodes that stay live: keeping them
 * mid would mark them again at every young cycle for a small gap; they
 * are promoted. */
static void test_small_gap_under_live_run_is_promoted(void **st) {
  (void)st;
  gap_under_run(256 << 10, 6 * MiB, 0, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fresh_objects_not_old),
      cmocka_unit_test(test_small_heap_does_not_run_out),
      cmocka_unit_test(test_multi_mutator_conservative),
      cmocka_unit_test(test_card_walks_stay_linear),
      cmocka_unit_test(test_big_gap_stays_young),
      cmocka_unit_test(test_gap_under_short_lived_run_stays_young),
      cmocka_unit_test(test_small_gap_under_live_run_is_promoted),
  };
  return cmocka_run_group_tests_name("gen_conservative", tests, NULL, NULL);
}
