/* Small heaps and recovery after a full heap.
 *
 * - Every collector works at the smallest heap_max the options accept (and
 *   at 2M): a heap fills with small objects, recovers after they die, and
 *   fills again.
 * - A mark-sweep heap that was full of live data which then all died can
 *   allocate a quarter of heap_max at once, and an object as large as the
 *   heap, however recently a homogeneous compaction ran
 *   (hspace_compact_on_oom=1 and 0).
 *
 * Each scenario runs in a forked child bounded by alarm(): a crash or a
 * hang is reported as a failure of that scenario, not of the suite.  The
 * child reports with its exit status and a line on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support_heap.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static const char *const collectors[] = {"semispace", "gen_semispace", "mark_sweep", "mark_compact",
                                         "concurrent_compact"};

typedef struct scenario {
  const char *collector;
  size_t heap_max;
  int compact_on_oom;
} scenario;

/* 1 when fn(sc) succeeded in a child (under TSan in this process instead:
 * TSan takes jemalloc's mutexes, re-initialized by its fork handler in the
 * child, for ones still held, "double lock"); otherwise says why on stderr
 * (every scenario runs, so one run shows all that fail). */
static int child_ok(int (*fn)(void *), const scenario *sc) {
  char why[96];
  if (test_child_ok(test_run_isolated(fn, (void *)sc, 60), why, sizeof why)) return 1;
  fprintf(stderr, "%s heap_max=%zuK oom=%d: %s\n", sc->collector, sc->heap_max >> 10,
          sc->compact_on_oom, why);
  return 0;
}

/* Allocate tnodes kept live in a chain from *head until fh_alloc fails (or
 * `max` of them); returns the count. */
static size_t fill_chain(fh_thread *t, const test_types *ty, tnode **head, size_t max) {
  size_t n = 0;
  while (n < max) {
    tnode *x = fh_alloc(t, ty->node, sizeof(tnode));
    if (!x) break;
    x->value = n;
    fh_write_ref(t, x, (void **)&x->next, *head);
    *head = x;
    n++;
  }
  return n;
}

/* ---- defect 9: the smallest heaps work with every collector ---- */

static int small_heap_cycle(void *arg) {
  const scenario *sc = arg;
  char spec[256];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=%zuK", sc->collector, sc->heap_max >> 10);
  fh_heap *h = test_child_heap(spec);
  if (!h) return 1;
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  if (!t) return 2;
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  /* heap_max covers semispace's two halves: it holds half as many. */
  int semi = strstr(sc->collector, "semispace") != NULL; /* gen_semispace too */
  size_t cap = (semi ? sc->heap_max / 2 : sc->heap_max) / (sizeof(tnode) + 8);
  size_t n1 = fill_chain(t, &ty, &head, cap + 1);
  /* At least half the heap holds objects (a bump heap of heap_max has room
   * for exactly cap; a malloc space loses some to size classes). */
  /* gen_semispace: what it promoted needs no copy reserve, so up to all of
   * heap_max holds objects. */
  size_t most = strcmp(sc->collector, "gen_semispace") == 0 ? 2 * cap : cap;
  if (n1 < cap / 2 || n1 > most) {
    fprintf(stderr, "%s: %zu objects of %zu fit in the first fill: %s\n", spec, n1, cap,
            fh_last_error());
    return 3;
  }
  head = NULL;
  if (fh_collect(t, FH_COLLECT_DEFAULT) < 0) {
    fprintf(stderr, "%s: collect: %s\n", spec, fh_last_error());
    return 4;
  }
  size_t n2 = fill_chain(t, &ty, &head, n1);
  if (n2 < n1) {
    fprintf(stderr, "%s: %zu objects after the collection, %zu before: %s\n", spec, n2, n1,
            fh_last_error());
    return 5;
  }
  /* Everything dead again; a collection forced by allocation recovers too. */
  head = NULL;
  size_t n3 = fill_chain(t, &ty, &head, n1);
  if (n3 < n1) {
    fprintf(stderr, "%s: %zu objects after an allocation-triggered collection, %zu before: %s\n",
            spec, n3, n1, fh_last_error());
    return 6;
  }
  /* And once they died, one object as large as the heap. */
  head = NULL;
  /* (semispace: half, as heap_max covers both halves) */
  size_t largest = semi ? sc->heap_max / 2 : sc->heap_max;
  if (!fh_alloc(t, ty.bytes, largest - 16)) {
    fprintf(stderr, "%s: an object of %zu bytes: %s\n", spec, largest - 16, fh_last_error());
    return 7;
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

static void test_small_heaps_every_collector(void **state) {
  (void)state;
  static const size_t sizes[] = {1 * MiB, 2 * MiB};
  int failed = 0;
  for (size_t c = 0; c < sizeof collectors / sizeof collectors[0]; c++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      failed += !child_ok(small_heap_cycle, &(scenario){collectors[c], sizes[s], 1});
  assert_int_equal(failed, 0);
}

/* The smallest heap_max the options accept is the one documented. */
static void test_documented_minimum_is_accepted(void **state) {
  (void)state;
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, "heap_max=1M"), 0);
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, "heap_max=1020K"), -1);
  assert_non_null(strstr(fh_last_error(), "heap_max"));
}

/* The other jemalloc-backed spaces at their minimum: a 1 MiB non-moving
 * space holds 1 MiB of objects, and fh_malloc serves a 1 MiB heap. */
static int small_nonmoving(void *arg) {
  const scenario *sc = arg;
  char spec[256];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=1M,non_moving_max=1M", sc->collector);
  fh_heap *h = test_child_heap(spec);
  if (!h) return 1;
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  if (!t) return 2;
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  for (int round = 0; round < 2; round++) {
    size_t n = 0;
    for (tnode *x; (x = fh_alloc_nonmoving(t, ty.node, sizeof(tnode))); n++) {
      fh_write_ref(t, x, (void **)&x->next, head);
      head = x;
    }
    head = NULL; /* dies: the next round fills the space again */
    if (n < (MiB / 48) * 9 / 10) {
      fprintf(stderr, "%s: %zu non-moving objects fit (round %d): %s\n", spec, n, round,
              fh_last_error());
      return 3;
    }
    if (fh_collect(t, FH_COLLECT_DEFAULT) < 0) return 4;
  }
  /* Filling the heap collects a few times, not at every allocation (the
   * semispace trigger once left no room once non-moving objects passed
   * half the heap: 21,850 collections, 37 s under ASan). */
  fh_stats st;
  fh_get_stats(h, &st);
  if (st.collections > 100) {
    fprintf(stderr, "%s: %llu collections to fill the non-moving space twice\n", spec,
            (unsigned long long)st.collections);
    return 6;
  }
  void *p = fh_malloc(h, 512 * KiB);
  if (!p) {
    fprintf(stderr, "%s: fh_malloc: %s\n", spec, fh_last_error());
    return 5;
  }
  fh_free(h, p);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

static void test_small_nonmoving_and_native(void **state) {
  (void)state;
  int failed = 0;
  for (size_t c = 0; c < sizeof collectors / sizeof collectors[0]; c++)
    failed += !child_ok(small_nonmoving, &(scenario){collectors[c], MiB, 1});
  assert_int_equal(failed, 0);
}

/* ---- defect 10: a mark-sweep heap recovers once its data died ---- */

static int mark_sweep_recovers(void *arg) {
  const scenario *sc = arg;
  char spec[256];
  snprintf(spec, sizeof spec, "collector=mark_sweep,heap_max=%zuK,hspace_compact_on_oom=%d",
           sc->heap_max >> 10, sc->compact_on_oom);
  fh_heap *h = test_child_heap(spec);
  if (!h) return 1;
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  if (!t) return 2;
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  /* Live data of mixed sizes until the heap is full: nodes, each holding a
   * byte object of 16 B to 8 KiB. */
  size_t n = 0, live = 0;
  for (;; n++) {
    tnode *x = fh_alloc(t, ty.node, sizeof(tnode));
    if (!x) break;
    fh_write_ref(t, x, (void **)&x->next, head);
    head = x;
    size_t sz = (size_t)16 << (n % 10);
    void *b = fh_alloc(t, ty.bytes, sz);
    if (!b) break;
    fh_write_ref(t, head, (void **)&head->other, b);
    live += sz + sizeof(tnode);
  }
  if (live < sc->heap_max / 2) {
    fprintf(stderr, "%s: only %zu live bytes fit: %s\n", spec, live, fh_last_error());
    return 3;
  }
  head = NULL; /* all of it dies */
  if (fh_collect(t, FH_COLLECT_DEFAULT) < 0) {
    fprintf(stderr, "%s: collect: %s\n", spec, fh_last_error());
    return 4;
  }
  /* At once: no sleep past hspace_min_interval_ms. */
  void *big = fh_alloc(t, ty.bytes, sc->heap_max / 4);
  if (!big) {
    fprintf(stderr, "%s: heap_max/4 after the data died: %s\n", spec, fh_last_error());
    return 5;
  }
  big = NULL;
  /* An object as large as the heap (its header included), without an
   * explicit collection first: the allocation's own collection frees the
   * quarter. */
  size_t largest = sc->heap_max - 16;
  big = fh_alloc(t, ty.bytes, largest);
  if (!big) {
    fprintf(stderr, "%s: an object of %zu bytes in the empty heap: %s\n", spec, largest,
            fh_last_error());
    return 6;
  }
  big = NULL;
  /* And small objects again, up to the first fill's count of nodes. */
  size_t again = fill_chain(t, &ty, &head, n);
  if (again < n) {
    fprintf(stderr, "%s: %zu nodes after the big objects died, %zu before: %s\n", spec, again, n,
            fh_last_error());
    return 7;
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

static void test_mark_sweep_recovers_after_full(void **state) {
  (void)state;
  static const size_t sizes[] = {4 * MiB, 16 * MiB, 64 * MiB};
  int failed = 0;
  for (int oom = 1; oom >= 0; oom--)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      failed += !child_ok(mark_sweep_recovers, &(scenario){"mark_sweep", sizes[s], oom});
  assert_int_equal(failed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_documented_minimum_is_accepted),
      cmocka_unit_test(test_small_heaps_every_collector),
      cmocka_unit_test(test_small_nonmoving_and_native),
      cmocka_unit_test(test_mark_sweep_recovers_after_full),
  };
  return cmocka_run_group_tests_name("small_heap", tests, NULL, NULL);
}
