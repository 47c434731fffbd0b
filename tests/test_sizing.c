/* Heap sizing (issue 19, heap/sizer.[ch] and heap_set_trigger): what the
 * allocation budget between collections is computed from, and that
 * resident memory follows live data down under heap_policy=adaptive.
 * Every check reads the heap's own figures (the gc callback's live and
 * target, fh_get_stats' resident bytes), never timing. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectors/mc.h"
#include "heap/barrier.h"
#include "heap/heap.h"
#include "spaces/reserve.h"
#include "support_heap.h"

#define MiB ((size_t)1 << 20)

static const char *const collectors[] = {"semispace",          "mark_sweep",   "mark_compact",
                                         "concurrent_compact", "gen_semispace"};

typedef struct targets {
  size_t live, target;
  unsigned ends;
} targets;

static void on_end(fh_heap *h, const fh_gc_event *e, void *user) {
  (void)h;
  if (!e->end || e->young) return;
  targets *t = user;
  t->live = e->live_after;
  t->target = e->heap_target;
  t->ends++;
}

/* The budget after a full collection with `big` bytes of live large
 * objects beside the same 2 MiB of small ones. */
static size_t sqrt_live; /* the live data the last budget_exp's sqrt rule took */
static size_t budget_exp(const char *collector, const char *policy, size_t big, const char *exp,
                         size_t *live_out) {
  test_types ty;
  fh_thread *t;
  char rest[160];
  snprintf(rest, sizeof rest,
           "heap_max=512M,min_alloc_trigger=1M,growth_factor_pct=300,heap_policy=%s%s%s", policy,
           strcmp(policy, "adaptive") == 0 ? ",heap_expansiveness=" : "",
           strcmp(policy, "adaptive") == 0 ? exp : "");
  fh_heap *h = test_heap_attached(collector, rest, &ty, &t);
  targets tg = {0};
  fh_set_gc_callback(h, on_end, &tg);
  tnode *head = NULL;
  void *blob = NULL;
  fh_push_root(t, (void **)&head);
  fh_push_root(t, (void **)&blob);
  test_list_build(t, &ty, &head, (2 * MiB) / 48);
  if (big) {
    blob = fh_alloc(t, ty.bytes, big);
    assert_non_null(blob);
    assert_true(los_contains(&h->los, blob));
  }
  /* The same garbage before each collection: the adaptive rule's measured
   * allocation rate forgets the array's allocation (each measurement
   * weighs half). */
  for (int i = 0; i < 6; i++) {
    for (int g = 0; g < 20000; g++) test_node(t, &ty, g);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
  }
  assert_true(tg.ends >= 6);
  assert_true(tg.live >= big + MiB);
  size_t budget = tg.target - tg.live;
  if (live_out) *live_out = tg.live;
  sqrt_live = h->sizer.last_live;
  fh_set_gc_callback(h, NULL, NULL);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return budget;
}

static size_t budget_with(const char *collector, const char *policy, size_t big) {
  return budget_exp(collector, policy, big, "4M", NULL);
}

/* heap_policy=fixed sizes the heap from all live data, large objects
 * included (as ART and Whippet do): a live 32 MiB array buys 64 MiB more
 * budget at growth_factor_pct=300 (budget_exp's, not the default), on every
 * collector. */
static void fixed_budget_counts_large_objects(void **state) {
  (void)state;
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    if (strcmp(collectors[c], "concurrent_compact") == 0 && !test_have_uffd()) continue;
    size_t without = budget_with(collectors[c], "fixed", 0);
    size_t with = budget_with(collectors[c], "fixed", 32 * MiB);
    fprintf(stderr, "%-18s budget %zu KiB without a 32 MiB array, %zu KiB with it\n",
            collectors[c], without >> 10, with >> 10);
    assert_true(with >= without + 62 * MiB);
    assert_true(with <= without + 66 * MiB);
  }
}

/* heap_policy=adaptive: the array is traced as one object and never moved,
 * so MemBalancer's sqrt(live) leaves it out. */
static void large_objects_do_not_enlarge_the_adaptive_budget(void **state) {
  (void)state;
  /* A constant small enough that neither budget meets the bound (2x live). */
  size_t without = budget_exp("mark_compact", "adaptive", 0, "1M", NULL);
  size_t l_without = sqrt_live;
  size_t with = budget_exp("mark_compact", "adaptive", 32 * MiB, "1M", NULL);
  size_t l_with = sqrt_live;
  fprintf(stderr,
          "adaptive: the sqrt rule took %zu KiB live without a 32 MiB array, %zu KiB with it "
          "(budgets %zu and %zu KiB)\n",
          l_without >> 10, l_with >> 10, without >> 10, with >> 10);
  /* What the rule was given, not what it made of it: the budgets also
   * follow the allocation and collection rates each heap measured, which
   * differ between the two (on a loaded machine by 4x: a bound of 3x on
   * their ratio failed 1 run in 40).  The rule itself is checked with
   * fixed rates below. */
  assert_true(l_without >= MiB && l_with >= MiB);
  assert_true(l_with < l_without + MiB); /* the 32 MiB array is left out */
}

/* The rule itself, with the measured rates fixed (ratio 2: 2 bytes
 * allocated per ns, 1 ns of collection per live byte), so no timing
 * enters: sqrt(live x expansiveness x ratio), large objects out of the
 * square root but in the bound (fixed's budget, 2x at growth_factor_pct=300),
 * never under min_alloc_trigger. */
static void adaptive_rule_from_fixed_rates(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=512M,heap_policy=adaptive,"
                         "heap_expansiveness=4M,min_alloc_trigger=1M,growth_factor_pct=300");
  h->sizer.folded = 1; /* nothing measured to fold in */
  h->sizer.alloc_bytes_per_ns = 2.0;
  h->sizer.gc_ns_per_byte = 1.0;
  double e64 = (double)sizer_extra(h, 64 * MiB, 64 * MiB);
  double e16 = (double)sizer_extra(h, 16 * MiB, 16 * MiB);
  assert_true(fabs(e64 - sqrt(64.0 * MiB * 4.0 * MiB * 2.0)) < 4096); /* 23.7 MiB */
  assert_true(fabs(e64 / e16 - 2.0) < 0.001); /* 4x the live data, 2x the room */
  /* A live 32 MiB array beside 2 MiB: the same budget as without it. */
  assert_int_equal(sizer_extra(h, 2 * MiB, 34 * MiB), sizer_extra(h, 2 * MiB, 2 * MiB));
  /* Relative room is larger for the smaller heap. */
  assert_true(e16 / (16.0 * MiB) > e64 / (64.0 * MiB));
  /* The bounds: fixed's budget of all live data, min_alloc_trigger. */
  h->sizer.alloc_bytes_per_ns = 1e6;
  assert_int_equal(sizer_extra(h, 2 * MiB, 34 * MiB), 2 * 34 * MiB);
  assert_int_equal(sizer_extra(h, 2 * MiB, 2 * MiB), 2 * 2 * MiB);
  h->opt.growth_factor_pct = 150; /* the bound follows fixed's factor */
  assert_int_equal(sizer_extra(h, 2 * MiB, 34 * MiB), 17 * MiB);
  h->opt.growth_factor_pct = 300;
  h->sizer.alloc_bytes_per_ns = 1e-9;
  assert_int_equal(sizer_extra(h, 64 * MiB, 64 * MiB), MiB);
  fh_heap_destroy(h);
}

/* heap_policy=adaptive gives at most the budget heap_policy=fixed would,
 * (growth_factor_pct - 100)% of all live data, large objects included (2x
 * at budget_exp's growth_factor_pct=300): with a constant that puts the sqrt rule far past it, 2 MiB
 * of nodes get 2x that, and beside a live 32 MiB array 2x the whole.  (The
 * bound was 4x the traced live data only: 8 MiB either way, and on
 * Whippet's quads at 5x that filled heap_max; then 3x all live data, a
 * third more than fixed, which held more memory than fixed on fhbench
 * phases.) */
static void adaptive_budget_is_at_most_fixeds(void **state) {
  (void)state;
  size_t live0, live1;
  size_t without = budget_exp("mark_compact", "adaptive", 0, "1T", &live0);
  size_t with = budget_exp("mark_compact", "adaptive", 32 * MiB, "1T", &live1);
  fprintf(stderr, "adaptive, unbounded constant: budget %zu KiB for %zu KiB live, %zu KiB for "
                  "%zu KiB with a 32 MiB array\n", without >> 10, live0 >> 10, with >> 10,
          live1 >> 10);
  assert_true(live1 >= live0 + 32 * MiB);
  assert_true(without >= 2 * live0 - 4096 && without <= 2 * live0 + 4096);
  assert_true(with >= 2 * live1 - 4096 && with <= 2 * live1 + 4096);
  /* fixed's budget for the same heap */
  size_t fixed = budget_with("mark_compact", "fixed", 32 * MiB);
  assert_true(with <= fixed + 4096);
}

/* ---- resident memory follows live data down (adaptive) ---- */

/* 48 MiB live, then 1 MiB: by the third collection after the fall the
 * spaces hold no more than the heap target (live data plus the budget to
 * the next collection), a fraction of what they held before. */
static void resident_falls_under(const char *collector) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=256M,heap_policy=adaptive", &ty, &t);
  targets tg = {0};
  fh_set_gc_callback(h, on_end, &tg);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  test_list_build(t, &ty, &head, (48 * MiB) / 40);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  size_t before = test_spaces_resident(h);
  assert_true(before >= 48 * MiB);
  /* The fall: keep the first 1 MiB of the list. */
  tnode *x = head;
  for (size_t i = 1; i < MiB / 40; i++) x = x->next;
  x->next = NULL;
  for (int i = 0; i < 3; i++) {
    for (int g = 0; g < 100000; g++) test_node(t, &ty, g);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
  }
  size_t after = test_spaces_resident(h);
  fprintf(stderr, "%-18s resident %zu KiB at 48 MiB live, %zu KiB at %zu KiB live (target %zu KiB)\n",
          collector, before >> 10, after >> 10, tg.live >> 10, tg.target >> 10);
  assert_true(tg.live < 2 * MiB);
  assert_true(after <= tg.target + 2 * MiB);
  assert_true(after < before / 2);
  fh_set_gc_callback(h, NULL, NULL);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void adaptive_resident_follows_live_down(void **state) {
  (void)state;
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    if (strcmp(collectors[c], "concurrent_compact") == 0 && !test_have_uffd()) continue;
    resident_falls_under(collectors[c]);
  }
}

/* ---- the collection cost counts the heap threads' CPU time ---- */

/* CPU time the heap's threads spend between two pauses (a concurrent
 * phase, a sweeper) is part of the collection's cost: one second of it
 * charged after a pause raises the measured cost per live byte by half a
 * second's worth (the smoothing weighs the newest measurement half). */
static void cost_counts_gc_thread_cpu(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=256M,heap_policy=adaptive", &ty, &t);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  test_list_build(t, &ty, &head, (4 * MiB) / 40);
  for (int i = 0; i < 3; i++) assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  double before = h->sizer.gc_ns_per_byte;
  size_t live = h->sizer.last_live;
  assert_true(live >= 4 * MiB - 4096);
  atomic_fetch_add(&h->pool.user_ns, 1000000000ull); /* as if a phase ran */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* folds it in */
  double after = h->sizer.gc_ns_per_byte, expect = 0.5 * 1e9 / (double)live;
  fprintf(stderr, "cost %.3f -> %.3f ns per live byte (expected +%.1f)\n", before, after, expect);
  assert_true(after >= before / 2 + expect * 0.99);
  assert_true(after <= before / 2 + expect * 1.01 + 50.0); /* + the pause itself */
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- the allocation window kept resident after a compaction ---- */

/* The moving space's resident bytes over its whole range, above the top
 * too (fh_get_stats counts up to the top only). */
static size_t moving_resident(fh_heap *h) {
  const fh_space *sp = &h->bump[h->active].space;
  return reserve_resident(sp->begin, sp->end);
}

/* Live data falls from 8 MiB to 1 MiB among 48 MiB of garbage, a 64 MiB
 * budget: after the collection the space keeps resident the live data and
 * a quarter of the budget (sizer_resident_window), not the whole budget.
 * It used to keep all of it (the slid-away pages up to the trigger's
 * worth, or a 32 MiB prefault after a flip), so after a fall resident
 * memory stayed at live + budget for the whole cycle (fhbench phases: 3.3x
 * live). */
static void window_after(const char *collector) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(
      collector, "heap_max=256M,min_alloc_trigger=64M,generational=0", &ty, &t);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  const size_t n = 8 * MiB / 40, keep = MiB / 40;
  test_list_build(t, &ty, &head, n);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  tnode *cut = head;
  for (size_t k = 1; k < keep; k++) cut = cut->next;
  fh_write_ref(t, cut, (void **)&cut->next, NULL);
  while (heap_used_bytes(h) < 49 * MiB) assert_non_null(test_node(t, &ty, 7));
  size_t before = moving_resident(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  /* What the worker faults in after the phase (mc_plan_prefault's plan:
   * joining the worker would stop it early). */
  assert_non_null(h->mc);
  assert_true(h->mc->pf_want <= sizer_resident_window(h));
  if (h->mc->slid) mc_join_worker(h->mc); /* a slide's prefault: none here */
  size_t after = moving_resident(h), window = sizer_resident_window(h);
  fprintf(stderr, "%-18s moving space resident %zu KiB before, %zu KiB after (trigger %zu KiB, "
                  "window %zu KiB)\n",
          collector, before >> 10, after >> 10, h->gc_trigger >> 10, window >> 10);
  assert_true(before >= 48 * MiB);
  assert_true(h->gc_trigger >= 64 * MiB);
  assert_true(window == 16 * MiB);
  /* live (1 MiB), the window, its 2 MiB rounding and a few pages (a flip:
   * the window's prefault may still be under way, bounded by the plan) */
  assert_true(after <= window + 4 * MiB);
  size_t k = 0;
  for (tnode *x = head; x; x = x->next) assert_int_equal(x->value, n - 1 - k++);
  assert_int_equal(k, keep);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* The same budget over a steady 1 MiB of live data: a full slide keeps
 * the whole next allocation window resident, as a young one does (the
 * mutators refill it before the next collection; handing it back and
 * faulting it in again cost a fifth of whippet-mt-gcbench's collector
 * system time, collectors/mc_publish.c: live_fell). */
static void steady_full_slide_keeps_the_window(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(
      "mark_compact", "heap_max=256M,min_alloc_trigger=64M,generational=0", &ty, &t);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  test_list_build(t, &ty, &head, MiB / 40);
  size_t before = 0;
  for (int c = 0; c < 2; c++) {
    while (heap_used_bytes(h) < 49 * MiB) assert_non_null(test_node(t, &ty, 7));
    before = moving_resident(h);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  }
  size_t after = moving_resident(h);
  fprintf(stderr, "steady: moving space resident %zu KiB before, %zu KiB after\n", before >> 10,
          after >> 10);
  assert_true(h->mc->slid);
  assert_true(after + 2 * MiB >= before);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void compaction_keeps_a_quarter_of_the_window(void **state) {
  (void)state;
  window_after("mark_compact"); /* slides */
  if (test_have_uffd()) window_after("concurrent_compact"); /* flips (support_heap.c) */
}

/* 16 MiB of old data, then young collections: the mark and live bitmaps
 * and the forwarding chunks of the old generation (1/16 of its bytes),
 * which no young cycle reads, are not resident.  The full collection's
 * slide had kept them, zeroed, and every young cycle after it too until
 * the next full one (collectors/forwarding.c: release_below_floor). */
static void young_cycles_release_tables_below_floor(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=256M,min_alloc_trigger=8M,generational=1",
                                  &ty, &t);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  test_list_build(t, &ty, &head, 16 * MiB / 48);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* full: the list is old */
  fh_stats s0, s1;
  fh_get_stats(h, &s0);
  /* Three: the full slide may keep its youngest survivors mid, the next
   * young cycle promotes them, and the one after has its floor above them
   * (a cycle releases what lies below its own floor). */
  for (int k = 0; k < 3; k++) {
    for (int g = 0; g < 20000; g++) assert_non_null(test_node(t, &ty, g));
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  }
  fh_get_stats(h, &s1);
  assert_true(s1.young_collections >= s0.young_collections + 1);
  const fwd_tables *ft = &h->mc->t;
  size_t old = h->mc->gen.old_end - ft->begin;
  assert_true(old >= 12 * MiB); /* 40-byte nodes */
  size_t bits = align_down(old / 64, FH_PAGE), chunks = align_down(old / 512 * sizeof(fwd_chunk), FH_PAGE);
  size_t mark = reserve_resident((uintptr_t)ft->mark.words, (uintptr_t)ft->mark.words + bits);
  size_t live = reserve_resident((uintptr_t)ft->live.words, (uintptr_t)ft->live.words + bits);
  size_t ch = reserve_resident((uintptr_t)ft->chunks, (uintptr_t)ft->chunks + chunks);
  fprintf(stderr, "old generation %zu KiB: its tables resident: mark %zu of %zu KiB, live %zu, "
                  "chunks %zu of %zu\n", old >> 10, mark >> 10, bits >> 10, live >> 10, ch >> 10,
          chunks >> 10);
  assert_true(mark <= FH_PAGE && live <= FH_PAGE && ch <= FH_PAGE);
  size_t k = 0, n = 16 * MiB / 48;
  for (tnode *x = head; x; x = x->next) assert_int_equal(x->value, n - 1 - k++);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Live data falls from 64 MiB to 1 MiB: the slide that finds it keeps
 * its tables resident only as far as the next cycle can reach (the new
 * top plus the window it was granted), and the cards of the space it
 * vacated go back; both used to stay resident, zeroed, over all 64 MiB
 * (fhbench phases after its fall: 3.4 MiB of tables and 1.4 MiB of cards
 * beside 18 MiB of live data). */
static void a_fall_releases_tables_and_cards_beyond_the_window(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(
      "mark_compact", "heap_max=256M,min_alloc_trigger=8M,generational=0", &ty, &t);
  tnode *head = NULL, *keep = NULL;
  fh_push_root(t, (void **)&head);
  fh_push_root(t, (void **)&keep);
  test_list_build(t, &ty, &keep, MiB / 48);
  test_list_build(t, &ty, &head, 64 * MiB / 48); /* every store dirties a card */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  head = NULL; /* the fall */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  if (h->mc) mc_join_worker(h->mc); /* the tables are cleared after the pause */
  const fwd_tables *ft = &h->mc->t;
  uintptr_t reach = ft->begin + 16 * MiB, end = ft->begin + 64 * MiB;
  assert_true(atomic_load(&h->bump[h->active].top) + h->gc_trigger < reach);
  size_t off = (reach - ft->begin) / 64, len = (end - reach) / 64;
  size_t mark = reserve_resident((uintptr_t)ft->mark.words + off, (uintptr_t)ft->mark.words + off + len);
  size_t live = reserve_resident((uintptr_t)ft->live.words + off, (uintptr_t)ft->live.words + off + len);
  size_t coff = (reach - ft->begin) / 512 * sizeof(fwd_chunk), clen = (end - reach) / 512 * sizeof(fwd_chunk);
  size_t ch = reserve_resident((uintptr_t)ft->chunks + coff, (uintptr_t)ft->chunks + coff + clen);
  size_t cards = reserve_resident((uintptr_t)card_for(h, reach), (uintptr_t)card_for(h, end));
  fprintf(stderr, "beyond the next window (16-64 MiB): mark %zu KiB, live %zu, chunks %zu, cards %zu "
                  "resident\n", mark >> 10, live >> 10, ch >> 10, cards >> 10);
  assert_true(mark <= FH_PAGE && live <= FH_PAGE && ch <= FH_PAGE && cards <= 2 * FH_PAGE);
  size_t k = 0, n = MiB / 48;
  for (tnode *x = keep; x; x = x->next) assert_int_equal(x->value, n - 1 - k++);
  assert_int_equal(k, n);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Generational mark-compact keeps a walk point per card of the old
 * generation (1/64 of its bytes).  A full cycle that finds live data
 * fallen from 64 MiB to 1 MiB hands back the points past its new top:
 * they described a generation that is gone, and used to stay resident
 * (fhbench phases: 3 MiB of them after its fall). */
static void a_full_cycle_releases_walk_points_past_the_top(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(
      "mark_compact", "heap_max=256M,min_alloc_trigger=8M,generational=1", &ty, &t);
  tnode *head = NULL, *keep = NULL;
  fh_push_root(t, (void **)&head);
  fh_push_root(t, (void **)&keep);
  test_list_build(t, &ty, &keep, MiB / 48);
  test_list_build(t, &ty, &head, 64 * MiB / 48);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_non_null(h->mc);
  const mc_gen *g = &h->mc->gen;
  assert_non_null(g->walk);
  size_t lo = 16 * MiB / FH_CARD_BYTES * sizeof(uintptr_t), hi = 64 * MiB / FH_CARD_BYTES * sizeof(uintptr_t);
  size_t before = reserve_resident((uintptr_t)g->walk + lo, (uintptr_t)g->walk + hi);
  head = NULL; /* the fall */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  mc_join_worker(h->mc);
  assert_true(atomic_load(&h->bump[h->active].top) < h->mc->t.begin + 16 * MiB);
  size_t after = reserve_resident((uintptr_t)g->walk + lo, (uintptr_t)g->walk + hi);
  fprintf(stderr, "walk points for 16-64 MiB of the space: %zu KiB resident before the fall, %zu after\n",
          before >> 10, after >> 10);
  assert_true(before >= 64 << 10);
  assert_true(after <= FH_PAGE);
  size_t k = 0, n = MiB / 48;
  for (tnode *x = keep; x; x = x->next) assert_int_equal(x->value, n - 1 - k++);
  assert_int_equal(k, n);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A page resident far above the top (zeroes: what a prefault's last huge
 * page or a larger heap before a fall leaves there) goes back at the next
 * full cycle: a slide hands back everything above the window it keeps,
 * and a flip, which moves the whole space aside, hands back all of
 * from-space, not only what lay below the old top. */
static void full_cycle_releases_pages_above_the_window(const char *collector) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=256M,min_alloc_trigger=8M,generational=0",
                                  &ty, &t);
  tnode *keep = NULL;
  fh_push_root(t, (void **)&keep);
  test_list_build(t, &ty, &keep, MiB / 48);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_non_null(h->mc);
  mc_join_worker(h->mc);
  const fh_space *sp = &h->bump[h->active].space;
  uintptr_t stale = sp->begin + 128 * MiB;
  assert_true(stale + FH_PMD <= sp->end);
  *(volatile char *)stale = 0;
  assert_true(reserve_resident(stale, stale + FH_PMD) >= FH_PAGE);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  mc_join_worker(h->mc);
  size_t space = reserve_resident(stale, stale + FH_PMD);
  size_t shadow = reserve_resident(h->mc->shadow + 128 * MiB, h->mc->shadow + 128 * MiB + FH_PMD);
  fprintf(stderr, "%s (%s): a page 128 MiB up: %zu KiB resident in the space, %zu in from-space\n",
          collector, h->mc->slid ? "slid" : "flipped", space >> 10, shadow >> 10);
  assert_true(space == 0 && shadow == 0);
  size_t k = 0, n = MiB / 48;
  for (tnode *x = keep; x; x = x->next) assert_int_equal(x->value, n - 1 - k++);
  assert_int_equal(k, n);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void full_cycles_release_pages_above_the_window(void **state) {
  (void)state;
  full_cycle_releases_pages_above_the_window("mark_compact");
  if (test_have_uffd()) {
    test_policy_flip_always(); /* the suites' default: a flip */
    full_cycle_releases_pages_above_the_window("concurrent_compact");
  }
}

/* ---- the collection cost weighs each collection by its size ---- */

/* Collections of 32 MiB live at 1 ns a byte, then the one that finds live
 * data fallen to 1.5 MiB and pays 100 ms walking the big heap: the cost
 * per byte the next budget uses is the smoothed cost over the smoothed
 * live bytes (about 4 ns), not the smoothed per-byte ratios (half of 64 ns
 * a byte), which quadrupled the budget of the collections after a fall.
 * The sizer is driven directly, with the heap idle. */
static void cost_weighs_collections_by_size(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=256M,heap_policy=adaptive");
  uint64_t t = 1000000000ull;
  for (int i = 0; i < 8; i++) {
    sizer_pause_start(h, t);
    sizer_extra(h, 32 * MiB, 32 * MiB);
    t += 33554432; /* 32 MiB at 1 ns a byte */
    sizer_pause_end(h, 33554432, t);
    t += 100000000;
  }
  double steady = h->sizer.gc_ns_per_byte;
  sizer_pause_start(h, t);
  sizer_extra(h, 3 * MiB / 2, 3 * MiB / 2); /* the fall */
  t += 100000000;
  sizer_pause_end(h, 100000000, t);
  t += 100000000;
  sizer_pause_start(h, t);
  sizer_extra(h, 3 * MiB / 2, 3 * MiB / 2); /* folds the fall's cost in */
  double after = h->sizer.gc_ns_per_byte;
  fprintf(stderr, "cost per live byte %.2f ns, %.2f ns after the fall\n", steady, after);
  assert_true(steady > 0.95 && steady < 1.05);
  /* (32 + 100) ms / 2 over (32 + 1.5) MiB / 2 */
  assert_true(after > 3.5 && after < 4.2);
  fh_heap_destroy(h);
}

/* ---- homogeneous compaction packs the copy ---- */

static uint64_t lcg(uint64_t *x) {
  *x = *x * 6364136223846793005ull + 1442695040888963407ull;
  return *x >> 33;
}

static int blob_ok(const unsigned char *b, size_t n, size_t i) {
  for (size_t k = 0; k < n; k += 61)
    if (b[k] != (unsigned char)(i * 7 + k)) return 0;
  return 1;
}

/* Objects of 16..4096 bytes (log-uniform), a tenth kept: after a
 * homogeneous compaction the main space's resident pages are within 7% of
 * its used bytes (1.05x; 1.107x when each object took a jemalloc size
 * class).  Then small
 * objects are allocated into the packed runs' holes while mark-sweeps
 * run (verify=1): every kept object keeps its bytes, which needs the
 * marking to record the cover of objects larger than the mutators' run
 * objects. */
static void hspace_copy_is_packed(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_sweep", "heap_max=512M,min_alloc_trigger=512M,verify=1",
                                  &ty, &t);
  enum { N = 120000, KEEP = N / 10 };
  void **keep = fh_alloc(t, ty.array, KEEP * sizeof(void *));
  assert_non_null(keep);
  fh_push_root(t, (void **)&keep);
  uint64_t x = 42;
  size_t kept = 0;
  for (size_t i = 0; i < N; i++) {
    size_t n = (size_t)(16.0 * pow(256.0, (double)lcg(&x) / 2147483648.0));
    unsigned char *b = fh_alloc(t, ty.bytes, n);
    assert_non_null(b);
    for (size_t k = 0; k < n; k += 61) b[k] = (unsigned char)(kept * 7 + k);
    if (i % 10 == 0 && kept < KEEP) fh_write_ref(t, keep, &keep[kept++], b);
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0);
  malloc_space *m = heap_main_malloc(h);
  size_t used = atomic_load(&m->used), resident = m->space.ops->resident(&m->space);
  fprintf(stderr, "compacted: %zu KiB used, %zu KiB resident (%.3fx)\n", used >> 10,
          resident >> 10, (double)resident / (double)used);
  assert_true(used >= 8 * MiB);
  assert_true(resident * 100 <= used * 107); /* 1.107x in size classes */
  for (size_t i = 0; i < kept; i++)
    assert_true(blob_ok(keep[i], fh_object_size(keep[i]), i));
  /* Small objects into the runs' holes, across mark-sweeps. */
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < kept; i += 2) keep[i] = i % 4 ? keep[i] : NULL; /* some die */
    assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
    for (int g = 0; g < 200000; g++) {
      unsigned char *b = fh_alloc(t, ty.bytes, 16 + (size_t)(g % 20) * 16);
      assert_non_null(b);
      memset(b, 0xee, fh_object_size(b));
    }
    for (size_t i = 0; i < kept; i++)
      if (keep[i]) assert_true(blob_ok(keep[i], fh_object_size(keep[i]), i));
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- a flip's two copies fit under heap_max ---- */

/* How an explicit collection of a concurrent_compact heap
 * holding `live` bytes among `used` bytes in all, with flips preferred by
 * the policy.  The live list is interleaved with its share of the garbage
 * so that all of it slides: a list left dense at the space's start would
 * move nothing, and a slide that moves nothing costs no more than its
 * marking (mc_update_bytes), whatever the policy prefers. */
static void flip_or_slide(const char *rest, size_t live, size_t used, char *how, size_t n) {
  test_types ty;
  fh_thread *t;
  /* The policy chooses (support_heap.c forces flips), and prefers them. */
  setenv("FH_MC_SLIDE", "choose", 1);
  setenv("FH_MC_FLIP_COST_US", "1", 1);
  fh_heap *h = test_heap_attached("concurrent_compact", rest, &ty, &t);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  size_t dead_per_live = used / live - 1;
  for (size_t i = 0; i < live / 40; i++) {
    for (size_t g = 0; g < dead_per_live; g++) assert_non_null(test_node(t, &ty, 7));
    tnode *x = test_node(t, &ty, i);
    fh_write_ref(t, x, (void **)&x->next, head);
    head = x;
  }
  while (heap_used_bytes(h) < used) assert_non_null(test_node(t, &ty, 7));
  uint64_t before = h->collections;
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_int_equal(h->collections, before + 1);
  setenv("FH_MC_SLIDE", "0", 1); /* read when the first collection sets up */
  unsetenv("FH_MC_FLIP_COST_US");
  /* fh_dump names the last cycle's mode. */
  char *dump = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&dump, &len);
  assert_non_null(f);
  fh_dump(h, f);
  fclose(f);
  const char *line = strstr(dump, "last cycle");
  assert_non_null(line);
  snprintf(how, n, "%.*s", (int)strcspn(line, ";\n"), line);
  free(dump);
  size_t k = 0;
  for (tnode *x = head; x; x = x->next) assert_int_equal(x->value, (live / 40) - 1 - k++);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void flip_needs_room_for_both_copies(void **state) {
  (void)state;
  test_skip_without_uffd();
  char how[128];
  /* 8 MiB live among 24 MiB: the old pages, the copy and another 16 MiB
   * allocated meanwhile need 48 MiB. */
  flip_or_slide("heap_max=40M,min_alloc_trigger=64M", 8 * MiB, 24 * MiB, how, sizeof how);
  fprintf(stderr, "heap_max 40 MiB: %s\n", how);
  assert_non_null(strstr(how, "no room under heap_max"));
  flip_or_slide("heap_max=256M,min_alloc_trigger=64M", 8 * MiB, 24 * MiB, how, sizeof how);
  fprintf(stderr, "heap_max 256 MiB: %s\n", how);
  assert_non_null(strstr(how, "last cycle concurrent"));
  /* The rule itself. */
  fh_heap *h = test_heap("collector=concurrent_compact,heap_max=64M");
  /* The old pages, the copy and another cycle's garbage: 2 x old_used. */
  assert_int_equal(sizer_flip_fits(h, 32 * MiB, 8 * MiB), 1);
  assert_int_equal(sizer_flip_fits(h, 33 * MiB, 8 * MiB), 0);
  assert_int_equal(sizer_flip_fits(h, 20 * MiB, 30 * MiB), 1); /* live capped by old_used */
  assert_int_equal(sizer_flip_fits(h, SIZE_MAX - MiB, 2 * MiB), 0); /* no wrap */
  assert_int_equal(sizer_flip_fits(h, 2 * MiB, SIZE_MAX), 1);
  fh_heap_destroy(h);
}

/* A compacting collector's window at the cap (sizer_moving_room): the
 * moving space at its fullest plus its side tables (1/16 of it) fit in
 * what heap_max leaves beside the other spaces, and with huge pages the
 * window stops a claim's margin short of a huge page's end, so that the
 * mutators never fault in a huge page they use a sliver of. */
static void moving_room_counts_tables_and_huge_pages(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=24M");
  const size_t lim = 24 * MiB, occ = 8 * MiB + 12345, other = 4 * MiB;
  size_t r = sizer_moving_room(h, occ, other, 0);
  size_t full = occ + r;
  assert_true(full + full / 16 + other <= lim);
  assert_true(full + full / 16 + other > lim - 64 * 1024); /* no more than that off */
  size_t margin = h->opt.tlab_size + h->opt.los_threshold + FH_PAGE;
  size_t rt = sizer_moving_room(h, occ, other, 1);
  assert_true(rt < r && rt >= r / 2);
  assert_int_equal((occ + rt + margin) % FH_PMD, 0); /* the last claim ends at a huge page */
  /* Room that rounding would more than halve stays as it was. */
  const size_t near = 18 * MiB - 256 * 1024; /* the next boundary, 256 KiB on */
  size_t small = sizer_moving_room(h, near, other - MiB, 0);
  assert_true(small > MiB);
  assert_int_equal(sizer_moving_room(h, near, other - MiB, 1), small);
  /* Full: nothing. */
  assert_int_equal(sizer_moving_room(h, 20 * MiB, other, 1), 0);
  fh_heap_destroy(h);
}

/* End to end: a mark_compact heap at its cap (heap_max = 2x live, the
 * shape of Whippet's benchmarks at 2x) sets its trigger so that the moving
 * space, its tables and the large objects stay under heap_max. */
static void trigger_at_the_cap_leaves_room_for_tables(void **state) {
  (void)state;
  const char *cs[] = {"mark_compact", "concurrent_compact"};
  for (size_t c = 0; c < 2; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(cs[c], "heap_max=24M", &ty, &t);
    tnode *head = NULL;
    void *blob = NULL;
    fh_push_root(t, (void **)&head);
    fh_push_root(t, (void **)&blob);
    blob = fh_alloc(t, ty.bytes, 4 * MiB);
    assert_non_null(blob);
    test_list_build(t, &ty, &head, (6 * MiB) / 48);
    for (int g = 0; g < 200000; g++) test_node(t, &ty, g);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    size_t occ = bump_space_used(&h->bump[h->active]), nm = heap_nonmoving_used(h);
    size_t full = occ + h->gc_trigger;
    fprintf(stderr, "%s: moving %zu KiB, trigger %zu KiB, others %zu KiB\n", cs[c],
            occ >> 10, h->gc_trigger >> 10, nm >> 10);
    assert_true(h->gc_trigger >= MiB);
    assert_true(full + full / 16 + nm <= 24 * MiB);
    /* Live data nearly at the cap: the tables do not fit beside it, and
     * still half the room is left to allocate (not a collection every
     * TLAB). */
    test_list_build(t, &ty, &head, (16 * MiB) / 48);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    size_t room = 24 * MiB - h->live_after_gc;
    fprintf(stderr, "%s near the cap: live %zu KiB, trigger %zu KiB\n", cs[c],
            h->live_after_gc >> 10, h->gc_trigger >> 10);
    assert_true(h->live_after_gc > 22 * MiB); /* + 1/16 of the moving part: past the cap */
    assert_true(h->gc_trigger >= room / 2 && h->gc_trigger < room);
    fh_pop_roots(t, 2);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(fixed_budget_counts_large_objects),
      cmocka_unit_test(large_objects_do_not_enlarge_the_adaptive_budget),
      cmocka_unit_test(adaptive_rule_from_fixed_rates),
      cmocka_unit_test(adaptive_budget_is_at_most_fixeds),
      cmocka_unit_test(flip_needs_room_for_both_copies),
      cmocka_unit_test(adaptive_resident_follows_live_down),
      cmocka_unit_test(cost_counts_gc_thread_cpu),
      cmocka_unit_test(cost_weighs_collections_by_size),
      cmocka_unit_test(compaction_keeps_a_quarter_of_the_window),
      cmocka_unit_test(steady_full_slide_keeps_the_window),
      cmocka_unit_test(young_cycles_release_tables_below_floor),
      cmocka_unit_test(a_fall_releases_tables_and_cards_beyond_the_window),
      cmocka_unit_test(a_full_cycle_releases_walk_points_past_the_top),
      cmocka_unit_test(full_cycles_release_pages_above_the_window),
      cmocka_unit_test(hspace_copy_is_packed),
      cmocka_unit_test(moving_room_counts_tables_and_huge_pages),
      cmocka_unit_test(trigger_at_the_cap_leaves_room_for_tables),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
