/* What pinned objects leave behind a compacting cycle (issue 18): the gaps
 * below pinned ranges and the dead words inside them become holes that
 * the allocator fills before the space grows (collectors/mc_holes.c), and
 * what memory they and the allocation window above the top keep resident
 * (collectors/mc_publish.c, mc_prefault.c). */
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "collectors/mc.h"
#include "heap/heap.h"
#include "heap/sizer.h"
#include "support_heap.h"

static size_t moving_used(fh_heap *h) { return bump_space_used(&h->bump[h->active]); }

/* Resident pages of [lo, hi) (page-aligned). */
static size_t resident_pages(uintptr_t lo, uintptr_t hi) {
  size_t n = (hi - lo) / 4096, resident = 0;
  unsigned char *vec = malloc(n ? n : 1);
  assert_non_null(vec);
  assert_int_equal(mincore((void *)lo, hi - lo, vec), 0);
  for (size_t i = 0; i < n; i++) resident += vec[i] & 1;
  free(vec);
  return resident;
}

/* ---- the allocation window after a slide below a pin ---- */

/* A pin near the old top (a stack word, with conservative roots) keeps the
 * new top there and leaves the trigger's worth of hole below it, which
 * TLAB refills take first: the worker must not prefault another window
 * above the pin (it did: 4 MiB resident that nothing used, fhscheme's
 * small programs at 16 MiB instead of 12). */
static void test_no_prefault_above_a_pin_with_room_below(void **s) {
  (void)s;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=256M,min_alloc_trigger=4M", &ty, &t);
  for (int i = 0; i < 100000; i++) test_node(t, &ty, (uint64_t)i); /* ~4 MiB, all dead */
  tnode *pin = test_node(t, &ty, 7);
  fh_push_root(t, (void **)&pin);
  assert_int_equal(fh_pin(t, pin), 0);
  uintptr_t at = (uintptr_t)pin;
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  assert_ptr_equal((void *)at, pin);
  assert_int_equal(h->mc->slid, 1);
  assert_true(h->gc_trigger <= ((size_t)4 << 20));
  /* What the worker was told to fault in past the slide's pages (the
   * hole's 4 MiB cover the window), and what it did: given time to run
   * before mc_join_worker, which would stop it. */
  assert_true(h->mc->pf_want < ((size_t)1 << 20));
  usleep(100 * 1000);
  mc_join_worker(h->mc);
  uintptr_t lo = (at + ((size_t)1 << 20)) & ~(uintptr_t)4095, hi = lo + ((size_t)2 << 20);
  assert_int_equal(resident_pages(lo, hi), 0);
  /* the hole is used: the space does not grow past the pin by a window */
  for (int i = 0; i < 50000; i++) test_node(t, &ty, (uint64_t)i);
  assert_true(moving_used(h) < at - h->bump[h->active].space.begin + ((size_t)1 << 20));
  fh_unpin(t, pin);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* SPREAD_N small nodes, every SPREAD_EVERY-th pinned (into pins), the
 * rest garbage: pinned ranges spread evenly with ~2 KiB holes between. */
enum { SPREAD_N = 100000, SPREAD_EVERY = 64 };
static size_t pin_spread(fh_thread *t, test_types *ty, tnode **pins) {
  size_t np = 0;
  for (int i = 0; i < SPREAD_N; i++) {
    tnode *n = test_node(t, ty, (uint64_t)i);
    if (i % SPREAD_EVERY == 0) {
      pins[np] = n;
      assert_int_equal(fh_pin(t, n), 0);
      np++;
    }
  }
  return np;
}

/* The holes handed to the allocator at the cycle's end. */
static size_t bump_hole_bytes(const bump_space *b) {
  size_t bytes = 0;
  for (size_t k = 0; k < b->nholes; k++) bytes += b->holes[k].hi - b->holes[k].lo;
  return bytes;
}

/* Pins spread evenly (every 64th of 100k small nodes, the rest dead)
 * leave 1,500 holes of ~2 KiB that together cover the next allocation
 * window: nothing is to be prefaulted above the top.  Only the first 64
 * holes were counted, and a whole window (here 1.5 MiB; 6 MiB in fhbench
 * pins, a third of its resident memory) was faulted in above the top
 * while the holes served the allocations. */
static void test_every_hole_counts_against_the_window(void **s) {
  (void)s;
  /* 4 MB of nodes: no collection before the explicit one */
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=256M,min_alloc_trigger=6M", &ty, &t);
  static tnode *pins[SPREAD_N / SPREAD_EVERY + 1];
  size_t np = pin_spread(t, &ty, pins);
  fh_stats st;
  fh_get_stats(h, &st);
  assert_int_equal(st.collections, 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  assert_int_equal(h->mc->slid, 1);
  for (size_t k = 0; k < np; k++) assert_int_equal(pins[k]->value, (uint64_t)(k * SPREAD_EVERY));
  /* The holes as handed to the allocator in the pause (the cycle's tables
   * are cleared by a pool thread after it) */
  const bump_space *b = &h->bump[h->active];
  size_t hole_bytes = bump_hole_bytes(b);
  assert_true(b->nholes > MC_PREFAULT_HOLES);
  assert_true(hole_bytes >= sizer_resident_window(h));
  assert_int_equal(h->mc->pf_want, 0);
  for (size_t k = 0; k < np; k++) fh_unpin(t, pins[k]);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* The same after a flip (concurrent_compact): the worker faults in the
 * first holes, and faulted in the rest of a whole window above the top as
 * well, as if those 64 were all the holes there were. */
static void test_every_hole_counts_after_a_flip(void **s) {
  (void)s;
  test_skip_without_uffd();
  setenv("FH_MC_SLIDE", "0", 1);
  test_types ty;
  fh_thread *t;
  fh_heap *h =
      test_heap_attached("concurrent_compact", "heap_max=256M,min_alloc_trigger=6M", &ty, &t);
  static tnode *pins[SPREAD_N / SPREAD_EVERY + 1];
  size_t np = pin_spread(t, &ty, pins);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_false(h->mc->slid);
  for (size_t k = 0; k < np; k++) assert_int_equal(pins[k]->value, (uint64_t)(k * SPREAD_EVERY));
  const bump_space *b = &h->bump[h->active];
  size_t hole_bytes = bump_hole_bytes(b);
  size_t window = sizer_resident_window(h);
  assert_true(b->nholes > MC_PREFAULT_HOLES && hole_bytes >= window);
  assert_int_equal(h->mc->pf_above, 0);
  /* what the worker did, once it is done */
  usleep(100 * 1000);
  mc_join_worker(h->mc);
  uintptr_t lo = (atomic_load(&b->top) + 4095) & ~(uintptr_t)4095, hi = lo + window;
  assert_true(resident_pages(lo, hi) * 4096 < ((size_t)256 << 10));
  for (size_t k = 0; k < np; k++) fh_unpin(t, pins[k]);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- the holes' own pages ---- */

/* A pinned object at the top of a space whose data then died (a stack
 * word on one of the newest objects, with conservative roots) leaves one
 * gap below it as large as the space was: its pages held the dead
 * objects, and past the allocation expected before the next collection
 * (hole_window, taken from the first holes up) they go back to the
 * kernel, the first hole's filler header excepted; the pages refills will
 * take stay.  fhscheme's destruct kept an 8 MiB gap resident under a 3
 * MiB window.  Then the gap serves allocations as before (verify=1), and
 * the space does not grow past the pin. */
static void test_hole_pages_past_the_window_go_back(void **s) {
  (void)s;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(
      "mark_compact", "heap_max=256M,heap_policy=fixed,min_alloc_trigger=2M,verify=1", &ty, &t);
  tnode *head = NULL, *pin = NULL;
  fh_push_root(t, (void **)&head);
  fh_push_root(t, (void **)&pin);
  test_list_build(t, &ty, &head, 400 * 1000); /* ~16 MiB, promoted on the way */
  pin = test_node(t, &ty, 7);
  assert_int_equal(fh_pin(t, pin), 0);
  uintptr_t at = (uintptr_t)pin, begin = h->bump[h->active].space.begin;
  assert_true(at - begin > ((size_t)12 << 20));
  head = NULL;
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  assert_ptr_equal((void *)at, pin);
  assert_int_equal(h->mc->slid, 1);
  const bump_space *b = &h->bump[h->active];
  assert_true(b->nholes >= 1);
  bump_hole g = b->holes[0];
  size_t keep = h->mc->hole_window + h->mc->hole_window / 8;
  assert_true(g.hi - g.lo > 4 * keep); /* the case at hand: a gap far past the window */
  /* the window's pages stay (they held objects: resident), the rest went
   * back but its filler's header page */
  uintptr_t tail_lo = (g.lo + keep + 4095) & ~(uintptr_t)4095, tail_hi = g.hi & ~(uintptr_t)4095;
  assert_int_equal(resident_pages(tail_lo, tail_hi), 0);
  uintptr_t head_lo = (g.lo + 4095) & ~(uintptr_t)4095, head_hi = (g.lo + keep) & ~(uintptr_t)4095;
  assert_int_equal(resident_pages(head_lo, head_hi), (head_hi - head_lo) / 4096);
  /* refills take the gap (1.6 MiB: under the trigger, no collection), its
   * discarded pages reading as zero */
  fh_stats st0, st1;
  fh_get_stats(h, &st0);
  for (int i = 0; i < 40 * 1000; i++) {
    tnode *n = test_node(t, &ty, (uint64_t)i);
    assert_null(n->next);
    assert_null(n->other);
  }
  fh_get_stats(h, &st1);
  assert_int_equal(st1.collections, st0.collections);
  assert_true(moving_used(h) <= at - begin + ((size_t)64 << 10));
  assert_int_equal(pin->value, 7);
  fh_unpin(t, pin);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_prefault_above_a_pin_with_room_below),
      cmocka_unit_test(test_every_hole_counts_against_the_window),
      cmocka_unit_test(test_every_hole_counts_after_a_flip),
      cmocka_unit_test(test_hole_pages_past_the_window_go_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
