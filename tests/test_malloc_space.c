/* Malloc spaces at the space level: jemalloc's memory (objects and its own
 * metadata) stays inside the space's reserved range, a reset really gives
 * the pages back, the allocation bitmap is exact through explicit tcaches,
 * a mark_sweep heap serves fh_alloc from its main malloc space, and the
 * size classes arenas' ranges are sized with are jemalloc's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap/heap.h"
#include "heap/object.h"
#include "spaces/arena.h"
#include "spaces/malloc_space.h"
#include "spaces/reserve.h"
#include "support_heap.h"

#define RANGE ((size_t)32 << 20)

typedef struct fixture {
  uintptr_t begin;
  malloc_space s;
} fixture;

static void setup(fixture *f, size_t limit) {
  f->begin = reserve_range(RANGE, FH_PMD, 0);
  assert_true(f->begin != 0);
  assert_int_equal(reserve_commit(f->begin, RANGE), 0);
  assert_int_equal(malloc_space_init(&f->s, "test malloc space", f->begin, RANGE, limit), 0);
}

static void teardown(fixture *f) {
  malloc_space_destroy(&f->s);
  reserve_release(f->begin, RANGE);
}

static int inside(const fixture *f, const void *p, size_t bytes) {
  return (uintptr_t)p >= f->begin && (uintptr_t)p + bytes <= f->begin + RANGE;
}

/* arena_size_class computes what jemalloc's nallocx says (heap creation
 * sizes arenas' ranges with it without calling jemalloc). */
static void test_size_class_is_jemallocs(void **state) {
  (void)state;
  for (size_t s = 1; s < ((size_t)1 << 34); s = s < 4096 ? s + 1 : s + s / 7 + 1)
    assert_int_equal(arena_size_class(s), nallocx(s, 0));
}

static void test_memory_stays_in_range(void **state) {
  (void)state;
  fixture f;
  setup(&f, RANGE); /* the limit is the range: only jemalloc can run out */
  static const size_t sizes[] = {8, 24, 100, 1000, 5000, 40000, 300000, 2u << 20};
  size_t n = 0, bytes = 0;
  for (;;) {
    size_t payload = sizes[n % (sizeof sizes / sizeof sizes[0])];
    void *o = malloc_space_alloc(&f.s, 1, payload, -1);
    if (!o) break;
    assert_true(inside(&f, obj_header(o), malloc_object_bytes(payload)));
    assert_int_equal((uintptr_t)obj_header(o) & 15, 0);
    assert_int_equal(hdr_payload(*obj_header(o)), payload);
    assert_int_equal(hdr_type(*obj_header(o)), 1);
    assert_true(f.s.space.ops->is_object(&f.s.space, o));
    /* zeroed payload */
    const unsigned char *b = o;
    assert_int_equal(b[0] | b[payload - 1], 0);
    memset(o, 0xAB, payload);
    n++;
    bytes += malloc_object_bytes(payload);
  }
  /* Exhaustion came from the range (the limit was never reached), and
   * jemalloc's extents, metadata included, never left it. */
  assert_true(n > 20);
  assert_true(bytes <= RANGE);
  assert_true(malloc_space_frontier(&f.s) <= f.begin + RANGE);
  assert_int_equal(malloc_space_used(&f.s), bytes);
  /* The walk sees exactly the objects allocated. */
  teardown(&f);
}

static void count_cb(void *obj, void *ctx) {
  (void)obj;
  (*(size_t *)ctx)++;
}

static void test_reset_returns_pages(void **state) {
  (void)state;
  fixture f;
  setup(&f, RANGE);
  for (int i = 0; i < 16 * 1024; i++) {
    void *o = malloc_space_alloc(&f.s, 1, 1000, -1);
    assert_non_null(o);
    memset(o, 1, 1000);
  }
  size_t walked = 0;
  f.s.space.ops->walk(&f.s.space, count_cb, &walked);
  assert_int_equal(walked, 16 * 1024);
  assert_true(malloc_space_resident(&f.s) >= (size_t)15 << 20);
  assert_int_equal(malloc_space_reset(&f.s), 0);
  /* jemalloc forgot everything, the range was discarded, the bitmaps too */
  assert_int_equal(malloc_space_used(&f.s), 0);
  assert_true(reserve_resident(f.begin, f.begin + RANGE) < ((size_t)1 << 20));
  walked = 0;
  f.s.space.ops->walk(&f.s.space, count_cb, &walked);
  assert_int_equal(walked, 0);
  /* and the space works again, from the start of its range */
  void *o = malloc_space_alloc(&f.s, 1, 1000, -1);
  assert_non_null(o);
  assert_true(inside(&f, o, 1000));
  const unsigned char *b = o;
  assert_int_equal(b[0] | b[999], 0);
  teardown(&f);
}

static void test_sweep_through_tcache_is_exact(void **state) {
  (void)state;
  fixture f;
  setup(&f, RANGE);
  int tc = arena_tcache_create();
  assert_true(tc >= 0);
  enum { N = 20000 };
  static void *objs[N];
  for (int i = 0; i < N; i++) {
    objs[i] = malloc_space_alloc(&f.s, 1, (size_t)(16 + (i % 7) * 24), tc);
    assert_non_null(objs[i]);
  }
  size_t live = 0;
  for (int i = 0; i < N; i += 3) {
    malloc_space_mark(&f.s, objs[i]);
    live += malloc_object_bytes(hdr_payload(*obj_header(objs[i])));
  }
  arena_tcache_flush(tc);
  size_t before = malloc_space_used(&f.s);
  size_t freed = malloc_space_sweep(&f.s, tc);
  assert_int_equal(before - freed, live);
  assert_int_equal(malloc_space_used(&f.s), live);
  for (int i = 0; i < N; i++)
    assert_int_equal(f.s.space.ops->is_object(&f.s.space, objs[i]), i % 3 == 0);
  /* marks were cleared by the sweep: a second sweep frees everything */
  assert_int_equal(malloc_space_sweep(&f.s, tc), live);
  assert_int_equal(malloc_space_used(&f.s), 0);
  /* freed slots are reused: the frontier does not grow for a refill */
  uintptr_t frontier = malloc_space_frontier(&f.s);
  for (int i = 0; i < N; i++) assert_non_null(malloc_space_alloc(&f.s, 1, 16, tc));
  assert_true(malloc_space_frontier(&f.s) == frontier);
  arena_tcache_flush(tc);
  arena_tcache_destroy(tc);
  teardown(&f);
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

/* The shared sweep (malloc_space_sweep_begin/_step) interleaved with
 * allocation, as a mutator (small steps through its tcache, no flush) and
 * the sweeper thread (bigger steps, flushed) do it: objects allocated
 * between steps are never in the dead bitmap, so only the unmarked old ones
 * go, and every word is claimed exactly once. */
static void test_shared_sweep_interleaved_with_allocation(void **state) {
  (void)state;
  fixture f;
  setup(&f, RANGE);
  int tc = arena_tcache_create(), gc_tc = arena_tcache_create();
  assert_true(tc >= 0 && gc_tc >= 0);
  enum { N = 20000 };
  static void *old[N], *young[N];
  for (int i = 0; i < N; i++) {
    old[i] = malloc_space_alloc(&f.s, 1, (size_t)(16 + (i % 5) * 8), tc);
    assert_non_null(old[i]);
  }
  size_t live = 0;
  for (int i = 0; i < N; i += 3) {
    malloc_space_mark(&f.s, old[i]);
    live += malloc_object_bytes(hdr_payload(*obj_header(old[i])));
  }
  size_t before = malloc_space_used(&f.s);
  malloc_space_sweep_begin(&f.s, malloc_space_frontier(&f.s), live);
  assert_true(f.s.sweep_total > 8);
  size_t words = 0, young_bytes = 0;
  int ny = 0;
  while (malloc_space_sweep_pending(&f.s)) {
    size_t mutator = malloc_space_sweep_step(&f.s, 2, tc, 0);
    size_t sweeper = malloc_space_sweep_step(&f.s, 3, gc_tc, 1);
    assert_true(mutator <= 2 && sweeper <= 3 && mutator + sweeper > 0);
    words += mutator + sweeper;
    assert_int_equal(atomic_load(&f.s.sweep_done), words);
    for (int k = 0; k < 50 && ny < N; k++, ny++) {
      young[ny] = malloc_space_alloc(&f.s, 1, 24, tc); /* often a region just freed */
      assert_non_null(young[ny]);
      young_bytes += malloc_object_bytes(24);
    }
  }
  assert_int_equal(words, f.s.sweep_total);
  assert_int_equal(malloc_space_sweep_step(&f.s, 1, tc, 0), 0);
  /* a dead old object's region may hold a young object now */
  qsort(young, (size_t)ny, sizeof *young, cmp_ptr);
  for (int i = 0; i < N; i++) {
    int reused = bsearch(&old[i], young, (size_t)ny, sizeof *young, cmp_ptr) != NULL;
    assert_false(i % 3 == 0 && reused); /* a live object's region is never handed out */
    assert_int_equal(f.s.space.ops->is_object(&f.s.space, old[i]), i % 3 == 0 || reused);
  }
  for (int i = 0; i < ny; i++) {
    assert_true(f.s.space.ops->is_object(&f.s.space, young[i]));
    assert_int_equal(hdr_payload(*obj_header(young[i])), 24);
  }
  assert_int_equal(malloc_space_used(&f.s), live + young_bytes);
  assert_int_equal(atomic_load(&f.s.sweep_freed), before - live);
  /* The sweep leaves no mark behind (the next marking starts from a clear
   * bitmap), and the allocation bits are exactly the objects. */
  uintptr_t frontier = malloc_space_frontier(&f.s);
  assert_int_equal(bitmap_next_set(&f.s.mark_bits, f.s.space.begin, frontier), 0);
  size_t objects = 0;
  for (uintptr_t p = bitmap_next_set(&f.s.alloc_bits, f.s.space.begin, frontier); p;
       p = bitmap_next_set(&f.s.alloc_bits, p + MS_GRANULE, frontier))
    objects++;
  size_t expect = (size_t)ny;
  for (int i = 0; i < N; i += 3) expect++;
  assert_int_equal(objects, expect);
  arena_tcache_flush(tc);
  arena_tcache_destroy(tc);
  arena_tcache_destroy(gc_tc);
  teardown(&f);
}

static void test_mark_sweep_heap_allocates_in_main_space(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=64M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  malloc_space *main_ms = heap_main_malloc(h);
  for (int i = 0; i < 1000; i++) {
    tnode *n = test_node(t, &ty, (uint64_t)i);
    assert_true(space_contains(&main_ms->space, n));
    assert_int_equal(fh_object_size(n), sizeof(tnode));
    assert_int_equal(n->next, NULL);
  }
  void *big = fh_alloc(t, ty.bytes, (size_t)3 << 20);
  assert_non_null(big);
  /* Above los_threshold: the large-object space, not the malloc space. */
  assert_true(los_contains(&h->los, big));
  /* the inline path never bumps: the thread's buffer stays empty */
  fh__thread_fast *fast = (fh__thread_fast *)t;
  assert_true(fast->tlab_cursor == fast->tlab_limit);
  fh_stats s;
  fh_get_stats(h, &s);
  int main_seen = 0, backup_seen = 0;
  for (unsigned i = 0; i < s.nspaces; i++) {
    /* The 3 MiB object is in the large-object space, the nodes in main. */
    main_seen += strstr(s.spaces[i].name, "main malloc") != NULL && s.spaces[i].used > 0;
    main_seen += strstr(s.spaces[i].name, "large object") != NULL && s.spaces[i].used > (3u << 20);
    backup_seen += strstr(s.spaces[i].name, "backup malloc") != NULL && s.spaces[i].used == 0;
  }
  assert_int_equal(main_seen, 2);
  assert_int_equal(backup_seen, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* jemalloc's count of small bytes the arena has handed out (to objects or
 * to tcaches), after refreshing its statistics. */
static size_t arena_small_allocated(const malloc_space *ms) {
  uint64_t epoch = 1;
  size_t len = sizeof epoch;
  mallctl("epoch", &epoch, &len, &epoch, len);
  char name[64];
  snprintf(name, sizeof name, "stats.arenas.%u.small.allocated", ms->arena.index);
  size_t v = 0;
  len = sizeof v;
  assert_int_equal(mallctl(name, &v, &len, NULL, 0), 0);
  return v;
}

/* Small objects of alternating sizes come from runs (and used to come
 * from jemalloc batches): they stay intact, and once all objects are dead
 * the explicit collection leaves no run and, the tcaches flushed, the
 * arena holds nothing. */
static void test_batches_leave_nothing_behind(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=64M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  malloc_space *main_ms = heap_main_malloc(h);
  tnode *keep = NULL;
  fh_push_root(t, (void **)&keep);
  for (int round = 0; round < 300; round++) {
    for (int k = 0; k < 7; k++) {
      tnode *n = test_node(t, &ty, (uint64_t)(round * 8 + k));
      fh_write_ref(t, n, (void **)&n->next, keep);
      keep = n;
    }
    uint8_t *b = fh_alloc(t, ty.bytes, 40 + (size_t)(round % 5) * 16);
    assert_non_null(b);
    memset(b, 0xEE, 40);
    if (round % 100 == 99) assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  }
  size_t n = 0;
  for (tnode *p = keep; p; p = p->next, n++) assert_int_equal(p->check, test_check(p->value));
  assert_int_equal(n, 300 * 7);
  keep = NULL;
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  assert_int_equal(atomic_load(&main_ms->used), 0);
  assert_int_equal(atomic_load(&main_ms->runs), 0);
  malloc_heap_flush_tcaches(h); /* ours: nobody else allocates */
  assert_int_equal(arena_small_allocated(main_ms), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A sweep keeps warm only the empty runs the next cycle could fill (twice
 * its budget's worth plus 16) and discards the others' pages.  3 MiB of
 * nodes die at once, the next collection is triggered by allocation
 * (verify=1 sweeps it in the pause) and its budget is 512 KiB: the main
 * space keeps about 1.5 MiB of runs resident, not the 3 MiB that held the
 * dead nodes.  Before, every empty run stayed resident for good, and runs
 * that threads took from jemalloc while the sweeper was ahead of them
 * piled up: fhscheme on mark_sweep grew to 60 MiB for 0.1 MiB live. */
static void test_sweep_keeps_only_spare_runs(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=64M,verify=1,"
                         "min_alloc_trigger=512K,growth_factor_pct=200");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  malloc_space *main_ms = heap_main_malloc(h);
  tnode *keep = NULL, *doomed = NULL;
  fh_push_root(t, (void **)&keep);
  fh_push_root(t, (void **)&doomed);
  for (int i = 0; i < 16; i++) {
    tnode *n = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->next, keep);
    keep = n;
  }
  for (int i = 0; i < (3 << 20) / (int)(sizeof(tnode) + 8); i++) {
    tnode *n = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->next, doomed);
    doomed = n;
  }
  size_t runs_full = atomic_load(&main_ms->runs);
  assert_true(runs_full > 80);
  doomed = NULL;
  fh_stats s0, s1;
  fh_get_stats(h, &s0);
  do { /* garbage until allocation triggers a collection */
    assert_non_null(test_node(t, &ty, 1));
    fh_get_stats(h, &s1);
  } while (s1.collections == s0.collections);
  size_t spare = 2 * (h->gc_trigger / MS_RUN_BYTES) + 16;
  size_t resident = malloc_space_resident(main_ms);
  /* The spare runs, the live nodes' and the thread's own, and jemalloc's
   * metadata. */
  assert_true(resident <= (spare + 4) * MS_RUN_BYTES + ((size_t)256 << 10));
  assert_true(resident < runs_full * MS_RUN_BYTES / 2);
  size_t n = 0;
  for (tnode *p = keep; p; p = p->next, n++) assert_int_equal(p->check, test_check(p->value));
  assert_int_equal(n, 16);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_size_class_is_jemallocs),
      cmocka_unit_test(test_memory_stays_in_range),
      cmocka_unit_test(test_reset_returns_pages),
      cmocka_unit_test(test_sweep_through_tcache_is_exact),
      cmocka_unit_test(test_shared_sweep_interleaved_with_allocation),
      cmocka_unit_test(test_mark_sweep_heap_allocates_in_main_space),
      cmocka_unit_test(test_batches_leave_nothing_behind),
      cmocka_unit_test(test_sweep_keeps_only_spare_runs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
