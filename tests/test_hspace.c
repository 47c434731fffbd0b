/* Homogeneous space compaction (collector=mark_sweep): every live object of
 * the main malloc space moves to the backup space with its contents and
 * size intact, every reference to it is updated (global roots, thread root
 * stacks, the root scanner, other objects, non-moving objects), the old
 * space's memory goes back to the system, and the roles swap.  The three
 * triggers (explicit, background, fragmentation-caused allocation failure),
 * the minimum interval, and a compaction that cannot complete.  The heaps
 * here have no large-object space (los_threshold=0): large objects in the
 * malloc space are what fragments it and what compaction must move. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support_heap.h"

#include "heap/heap.h"
#include "heap/object.h"

static void *global_slot;
static void *scanned_slot;
static void scan(fh_visit_fn visit, void *ctx, void *user) {
  (void)user;
  visit(&scanned_slot, ctx);
}

static uint64_t content_hash(const void *p, size_t n) {
  uint64_t x = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) x = (x ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
  return x;
}

static void fill_bytes(void *p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) ((unsigned char *)p)[i] = (unsigned char)(seed * 31 + i * 7);
}

static int in_space(malloc_space *m, const void *p) { return space_contains(&m->space, p); }

/* A graph that every kind of holder points into, with garbage between its
 * objects; after compaction it is checked object by object. */
typedef struct graph {
  tnode *list;      /* via a thread root: 3000 nodes */
  void **array;     /* via the global root: 200 slots of byte objects and nodes */
  tnode *nm;        /* non-moving node, via the root scanner, -> malloc nodes */
  uint64_t hashes[200];
  size_t sizes[200];
} graph;

static void build_graph(fh_thread *t, const test_types *ty, graph *g) {
  for (uint64_t i = 0; i < 3000; i++) {
    tnode *n = test_node(t, ty, i);
    fh_write_ref(t, n, (void **)&n->next, g->list);
    g->list = n;
    for (int k = 0; k < 3; k++) test_node(t, ty, 0xdead); /* garbage between */
  }
  g->array = fh_alloc(t, ty->array, 200 * sizeof(void *));
  global_slot = g->array;
  for (int i = 0; i < 200; i++) {
    size_t n = i % 10 == 0 ? 20000 + (size_t)i * 100 : 1 + (size_t)i * 13;
    void *b = fh_alloc(t, ty->bytes, n);
    assert_non_null(b);
    fill_bytes(b, n, (uint64_t)i);
    g->sizes[i] = n;
    g->hashes[i] = content_hash(b, n);
    fh_write_ref(t, g->array, &g->array[i], b);
    fh_alloc(t, ty->bytes, 100 + (size_t)i); /* garbage */
  }
  g->nm = fh_alloc_nonmoving(t, ty->node, sizeof(tnode));
  g->nm->value = 77;
  scanned_slot = g->nm;
  fh_write_ref(t, g->nm, (void **)&g->nm->next, g->list);                 /* -> malloc */
  fh_write_ref(t, g->nm, (void **)&g->nm->other, g->list->next->next);   /* -> malloc */
  /* a malloc node that points back at the non-moving one */
  fh_write_ref(t, g->list, (void **)&g->list->other, g->nm);
}

static void check_graph(fh_heap *h, graph *g, int expect_in_main) {
  malloc_space *main = heap_main_malloc(h);
  uint64_t expect = 2999;
  size_t pairs = 0, near = 0;
  for (tnode *n = g->list; n; n = n->next, expect--) {
    assert_int_equal(n->value, expect);
    assert_int_equal(n->check, test_check(expect));
    assert_int_equal(fh_object_size(n), sizeof(tnode));
    if (expect_in_main) assert_true(in_space(main, n));
    if (n->next) {
      pairs++;
      intptr_t d = (intptr_t)n->next - (intptr_t)n;
      near += d > -4096 && d < 4096;
    }
  }
  assert_int_equal(expect, (uint64_t)-1);
  /* depth-first copying puts a list's nodes next to each other */
  if (expect_in_main) assert_true(near * 10 >= pairs * 9);
  assert_ptr_equal(global_slot, g->array);
  for (int i = 0; i < 200; i++) {
    void *b = g->array[i];
    assert_int_equal(fh_object_size(b), g->sizes[i]);
    assert_int_equal(content_hash(b, g->sizes[i]), g->hashes[i]);
    if (expect_in_main) assert_true(in_space(main, b));
  }
  assert_ptr_equal(scanned_slot, g->nm);
  assert_int_equal(g->nm->value, 77);
  assert_ptr_equal(g->nm->next, g->list);
  assert_ptr_equal(g->nm->other, g->list->next->next);
  assert_ptr_equal(g->list->other, g->nm);
}

#define SPEC "collector=mark_sweep,los_threshold=0,heap_max=64M,verify=1,hspace_min_interval_ms=0"

/* A mark-sweep heap holding build_graph's graph in *g, reached from the
 * thread's root stack, the global slot and the root scanner. */
static fh_heap *graph_heap(test_types *ty, fh_thread **t, graph *g) {
  fh_heap *h = test_heap(SPEC);
  test_register(h, ty);
  fh_root_add(h, &global_slot);
  fh_set_root_scanner(h, scan, NULL);
  *t = fh_thread_attach(h);
  memset(g, 0, sizeof *g);
  fh_push_root(*t, (void **)&g->list);
  build_graph(*t, ty, g);
  return h;
}

/* Ten nodes, values 109 down to 100, prepended to *list (a root). */
static void list_of_ten(fh_thread *t, const test_types *ty, tnode **list) {
  for (uint64_t i = 0; i < 10; i++) {
    tnode *n = test_node(t, ty, 100 + i);
    fh_write_ref(t, n, (void **)&n->next, *list);
    *list = n;
  }
}

static void graph_heap_destroy(fh_heap *h, fh_thread *t) {
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_set_root_scanner(h, NULL, NULL);
  fh_root_remove(h, &global_slot);
  fh_heap_destroy(h);
}

static void test_compaction_moves_and_fixes_everything(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  static graph g;
  fh_heap *h = graph_heap(&ty, &t, &g);
  /* g.array is reached through global_slot only; keep our copy in step */
  malloc_space *old_main = heap_main_malloc(h);
  void *old_list = g.list;
  fh_stats s0;
  fh_get_stats(h, &s0);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0);
  g.array = global_slot;
  malloc_space *new_main = heap_main_malloc(h);
  assert_ptr_not_equal(new_main, old_main);
  assert_ptr_not_equal(g.list, old_list);
  check_graph(h, &g, 1);
  /* the old space is empty and its pages are gone */
  assert_int_equal(atomic_load(&old_main->used), 0);
  /* what stays is the recreated arena's own metadata */
  if (malloc_space_resident(old_main) > (256u << 10))
    fail_msg("old main space: %zu bytes resident after the reset", malloc_space_resident(old_main));
  assert_ptr_equal(heap_backup_malloc(h), old_main);
  fh_stats s1;
  fh_get_stats(h, &s1);
  assert_true(s1.bytes_moved > s0.bytes_moved);
  assert_true(s1.bytes_freed > s0.bytes_freed); /* the garbage went too */
  /* and back again: the roles alternate, allocation continues */
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0);
  g.array = global_slot;
  assert_ptr_equal(heap_main_malloc(h), old_main);
  check_graph(h, &g, 1);
  tnode *n = test_node(t, &ty, 5);
  assert_true(in_space(heap_main_malloc(h), n));
  graph_heap_destroy(h, t);
}

/* The backup space cannot hold the live data: nothing moves, nothing
 * changes, the error says why, and it is not retried until the live size
 * changes. */
static void test_failed_compaction_changes_nothing(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  static graph g;
  fh_heap *h = graph_heap(&ty, &t, &g);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0); /* only live objects left */
  malloc_space *main = heap_main_malloc(h), *backup = heap_backup_malloc(h);
  size_t used = atomic_load(&main->used);
  size_t saved_limit = backup->limit;
  backup->limit = used / 2; /* as if the backup space were too small */
  void *list = g.list;
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), -1);
  assert_non_null(strstr(fh_last_error(), "cannot hold the live data"));
  assert_ptr_equal(heap_main_malloc(h), main);
  assert_ptr_equal(g.list, list);
  assert_int_equal(atomic_load(&main->used), used);
  assert_int_equal(atomic_load(&backup->used), 0);
  check_graph(h, &g, 1);
  /* the same live size: refused at once, with the reason */
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), -1);
  assert_non_null(strstr(fh_last_error(), "live size is unchanged"));
  assert_non_null(strstr(fh_last_error(), "cannot hold"));
  /* fh_dump says so too */
  char *dump = NULL;
  size_t dump_len = 0;
  FILE *f = open_memstream(&dump, &dump_len);
  fh_dump(h, f);
  fclose(f);
  assert_non_null(strstr(dump, "homogeneous compaction: fragmentation"));
  assert_non_null(strstr(dump, "the last attempt failed"));
  free(dump);
  /* the live size changes: tried again (and, with room, done) */
  backup->limit = saved_limit;
  tnode *extra = test_node(t, &ty, 1234);
  fh_write_ref(t, g.list, (void **)&g.list->other, extra);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0);
  g.array = global_slot;
  assert_ptr_equal(heap_main_malloc(h), backup);
  assert_int_equal(g.list->other->value, 1234);
  fh_write_ref(t, g.list, (void **)&g.list->other, g.nm);
  check_graph(h, &g, 1);
  graph_heap_destroy(h, t);
}

/* Fill the main space with small nodes, keep one in 16 (so every slab keeps
 * a few survivors and no slab can be reused for other sizes), collect. */
static tnode *fragment(fh_thread *t, const test_types *ty, size_t bytes) {
  tnode *keep = NULL, *drop = NULL;
  fh_push_root(t, (void **)&keep);
  fh_push_root(t, (void **)&drop);
  size_t n = bytes / 48;
  for (uint64_t i = 0; i < n; i++) {
    tnode *x = test_node(t, ty, i);
    if (i % 16 == 0) {
      fh_write_ref(t, x, (void **)&x->next, keep);
      keep = x;
    } else {
      fh_write_ref(t, x, (void **)&x->next, drop);
      drop = x;
    }
  }
  drop = NULL;
  fh_pop_roots(t, 2);
  return keep;
}

static double fragmentation(fh_heap *h) {
  malloc_space *m = heap_main_malloc(h);
  double used = (double)atomic_load(&m->used), res = (double)malloc_space_resident(m);
  return (res - used) / used;
}

/* An allocation that fails for fragmentation compacts (hspace_compact_on_oom=1)
 * and then succeeds; with the option off it fails and says why.  The space
 * is first carved almost to its limit by small objects that stay one in
 * sixteen live (no collection in between: min_alloc_trigger is past
 * heap_max), so every slab keeps some: the rest of the range (the slack
 * spaces/arena.h leaves for size classes and metadata) cannot hold 7 MiB
 * of large objects. */
#define FRAG_BYTES ((size_t)7 << 20)
#define FRAG_BIGS 120 /* 60000 bytes each: 6.9 MiB */
static void test_allocation_failure_trigger(void **state) {
  (void)state;
  for (int on = 0; on <= 1; on++) {
    char spec[200];
    snprintf(spec, sizeof spec,
             "collector=mark_sweep,los_threshold=0,heap_max=8M,min_alloc_trigger=16M,hspace_min_interval_ms=0,"
             "hspace_compact_on_oom=%d", on);
    fh_heap *h = test_heap(spec);
    test_types ty;
    test_register(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    tnode *keep = fragment(t, &ty, FRAG_BYTES);
    fh_push_root(t, (void **)&keep);
    assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
    malloc_space *first = heap_main_malloc(h);
    void *bigs = fh_alloc(t, ty.array, FRAG_BIGS * sizeof(void *));
    fh_push_root(t, &bigs);
    int got = 0;
    for (; got < FRAG_BIGS; got++) {
      void *b = fh_alloc(t, ty.bytes, 60000);
      if (!b) break;
      fh_write_ref(t, bigs, &((void **)bigs)[got], b);
    }
    if (on) {
      assert_int_equal(got, FRAG_BIGS); /* they fit after compacting */
      assert_ptr_not_equal(heap_main_malloc(h), first);
      /* A triggered compaction gives the old space back after its pause,
       * on a helper thread that fh_gc_wait waits for. */
      fh_gc_wait(h);
      assert_ptr_equal(heap_backup_malloc(h), first);
      assert_int_equal(atomic_load(&first->used), 0);
      if (malloc_space_resident(first) > (256u << 10))
        fail_msg("old main space: %zu bytes resident", malloc_space_resident(first));
      /* and the next compaction (explicit) can use it at once */
      assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0);
      assert_ptr_equal(heap_main_malloc(h), first);
    } else {
      if (got >= FRAG_BIGS) fail_msg("all %d large objects fit without compacting", got);
      assert_non_null(strstr(fh_last_error(), "fragmentation"));
      assert_ptr_equal(heap_main_malloc(h), first);
    }
    uint64_t i = 0;
    for (tnode *x = keep; x; x = x->next, i++) assert_int_equal(x->check, test_check(x->value));
    assert_int_equal(i, FRAG_BYTES / 48 / 16 + (FRAG_BYTES / 48 % 16 != 0));
    fh_pop_roots(t, 2);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* Wait (polling safepoints, as a mutator must) until the main space
 * changes or `ms` pass. */
static int wait_for_swap(fh_thread *t, fh_heap *h, malloc_space *before, int ms) {
  for (int i = 0; i < ms; i++) {
    if (heap_main_malloc(h) != before) return 1;
    fh_enter_blocking(t);
    usleep(1000);
    fh_leave_blocking(t);
  }
  return heap_main_malloc(h) != before;
}

static void test_background_trigger(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,los_threshold=0,heap_max=32M,verify=1,hspace_min_interval_ms=0,"
                         "hspace_fragmentation_pct=50");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  /* Not fragmented: going to the background compacts nothing. */
  tnode *keep = NULL;
  fh_push_root(t, (void **)&keep);
  for (int i = 0; i < 20000; i++) {
    tnode *x = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, x, (void **)&x->next, keep);
    keep = x;
  }
  malloc_space *first = heap_main_malloc(h);
  assert_true(fragmentation(h) < 0.5);
  fh_set_background(h, 1);
  assert_false(wait_for_swap(t, h, first, 200));
  fh_set_background(h, 0);
  /* Fragmented: it compacts on a heap thread while we poll. */
  keep = NULL;
  keep = fragment(t, &ty, (size_t)8 << 20);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  assert_true(fragmentation(h) > 0.5);
  fh_set_background(h, 1);
  assert_true(wait_for_swap(t, h, first, 5000));
  assert_true(fragmentation(h) < 0.5);
  uint64_t n = 0;
  for (tnode *x = keep; x; x = x->next, n++) assert_int_equal(x->check, test_check(x->value));
  assert_int_equal(n, ((size_t)8 << 20) / 48 / 16 + 1);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h); /* joins the background thread */
}

/* Background compactions respect hspace_min_interval_ms; explicit ones do
 * not, and neither does one an allocation needs (a rate limit must not
 * fail an allocation that a compaction satisfies). */
static void test_min_interval(void **state) {
  (void)state;
  fh_heap *h = test_heap(
      "collector=mark_sweep,los_threshold=0,heap_max=8M,min_alloc_trigger=16M,hspace_min_interval_ms=600000");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0); /* explicit: no interval */
  tnode *keep = fragment(t, &ty, FRAG_BYTES);
  fh_push_root(t, (void **)&keep);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  malloc_space *m = heap_main_malloc(h);
  void *bigs = fh_alloc(t, ty.array, FRAG_BIGS * sizeof(void *));
  fh_push_root(t, &bigs);
  int got = 0;
  for (void *b; got < FRAG_BIGS && (b = fh_alloc(t, ty.bytes, 60000)); got++)
    fh_write_ref(t, bigs, &((void **)bigs)[got], b);
  if (got < FRAG_BIGS) fail_msg("%d large objects fit: %s", got, fh_last_error());
  assert_ptr_not_equal(heap_main_malloc(h), m); /* compacted, 0 ms after the last one */
  fh_gc_wait(h);
  /* Fragmented again, but a background request is refused for the
   * interval. */
  bigs = NULL;
  tnode *keep2 = fragment(t, &ty, (size_t)4 << 20);
  fh_push_root(t, (void **)&keep2);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  m = heap_main_malloc(h);
  fh_set_background(h, 1);
  assert_false(wait_for_swap(t, h, m, 100));
  fh_pop_roots(t, 1);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* fh_set_background from one mutator while another collects in a loop:
 * the request must never wait for the GC lock on the mutator's behalf (the
 * collector would wait for that mutator to park: a deadlock). */
typedef struct toggler {
  fh_heap *h;
  _Atomic int stop;
} toggler;

static void *collect_loop(void *p) {
  toggler *tg = p;
  fh_thread *t = fh_thread_attach(tg->h);
  for (int i = 0; i < 300; i++) assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  atomic_store(&tg->stop, 1);
  fh_thread_detach(t);
  return NULL;
}

static void test_background_request_during_collections(void **state) {
  (void)state;
  alarm(60); /* a deadlock fails the test instead of hanging the suite */
  fh_heap *h = test_heap("collector=mark_sweep,los_threshold=0,heap_max=16M,hspace_min_interval_ms=0,"
                         "hspace_fragmentation_pct=0");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *keep = fragment(t, &ty, (size_t)2 << 20);
  fh_push_root(t, (void **)&keep);
  toggler tg = {h, 0};
  pthread_t th;
  pthread_create(&th, NULL, collect_loop, &tg);
  size_t n = 0;
  while (!atomic_load(&tg.stop)) {
    fh_set_background(h, 1);
    fh_safepoint(t);
    fh_set_background(h, 0);
    test_node(t, &ty, 1);
    n++;
  }
  pthread_join(th, NULL);
  assert_true(n > 0);
  uint64_t i = 0;
  for (tnode *x = keep; x; x = x->next, i++) assert_int_equal(x->check, test_check(x->value));
  assert_int_equal(i, ((size_t)2 << 20) / 48 / 16 + (((size_t)2 << 20) / 48 % 16 != 0));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  alarm(0);
}

/* References from an image space (immune, never moved or marked) into the
 * main malloc space are found through its dirty cards and updated. */
static void test_image_refs_are_updated(void **state) {
  (void)state;
  /* ThreadSanitizer refuses the image loader's mapping at the image's
   * preferred base ("mmap at bad address"); test_image.c meets the same. */
  test_skip_under_tsan("the image loader's mapping at its preferred base");
  char path[] = "/tmp/fh_test_hspace_image_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  fh_heap *h = test_heap("collector=mark_sweep,los_threshold=0,heap_max=16M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *list = NULL;
  fh_push_root(t, (void **)&list);
  list_of_ten(t, &ty, &list);
  void *root = list;
  assert_int_equal(fh_image_save(t, path, &root, 1), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);

  char spec[256];
  snprintf(spec, sizeof spec, "collector=mark_sweep,los_threshold=0,heap_max=16M,verify=1,image_path=%s", path);
  h = test_heap(spec);
  test_register(h, &ty);
  t = fh_thread_attach(h);
  void **roots;
  assert_int_equal(fh_image_roots(h, &roots), 1);
  tnode *img = roots[0];
  assert_false(space_contains(&heap_main_malloc(h)->space, img));
  int i = 0;
  for (tnode *n = img; n; n = n->next, i++) {
    for (int k = 0; k < 50; k++) test_node(t, &ty, 0xdead); /* garbage */
    tnode *fresh = test_node(t, &ty, 1000 + (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->other, fresh); /* only the image holds it */
  }
  assert_int_equal(i, 10);
  malloc_space *before = heap_main_malloc(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0);
  assert_ptr_not_equal(heap_main_malloc(h), before);
  i = 0;
  for (tnode *n = img; n; n = n->next, i++) {
    assert_int_equal(n->value, 109 - (uint64_t)i);
    assert_true(space_contains(&heap_main_malloc(h)->space, n->other));
    assert_int_equal(n->other->value, 1000 + (uint64_t)i);
    assert_int_equal(n->other->check, test_check(1000 + (uint64_t)i));
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0); /* and they stay alive */
  for (tnode *n = img; n; n = n->next)
    assert_int_equal(n->other->check, test_check(n->other->value));
  fh_thread_detach(t);
  fh_heap_destroy(h);
  unlink(path);
}

/* The same for the zygote space: after fh_prefork the surviving objects are
 * immune; stores into them of fresh malloc-space objects are found through
 * their dirty cards and updated when those objects move. */
static void test_zygote_refs_are_updated(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,los_threshold=0,heap_max=16M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *list = NULL;
  fh_push_root(t, (void **)&list);
  list_of_ten(t, &ty, &list);
  if (fh_prefork(t) < 0) fail_msg("fh_prefork: %s", fh_last_error());
  fh_postfork_parent(h); /* no fork: the parent goes on */
  assert_false(space_contains(&heap_main_malloc(h)->space, list));
  int i = 0;
  for (tnode *n = list; n; n = n->next, i++) {
    for (int k = 0; k < 50; k++) test_node(t, &ty, 0xdead);
    tnode *fresh = test_node(t, &ty, 1000 + (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->other, fresh); /* only the zygote object holds it */
  }
  assert_int_equal(i, 10);
  malloc_space *before = heap_main_malloc(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0);
  assert_ptr_not_equal(heap_main_malloc(h), before);
  i = 0;
  for (tnode *n = list; n; n = n->next, i++) {
    assert_int_equal(n->value, 109 - (uint64_t)i);
    assert_true(space_contains(&heap_main_malloc(h)->space, n->other));
    assert_int_equal(n->other->value, 1000 + (uint64_t)i);
    assert_int_equal(n->other->check, test_check(1000 + (uint64_t)i));
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  for (tnode *n = list; n; n = n->next) assert_int_equal(n->other->check, test_check(n->other->value));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* fh_heap_destroy from a mutator that is still attached (a misuse) while a
 * background compaction waits for that very mutator to park: refused with
 * an error, not a hang; after detaching, destroying works. */
static void test_destroy_while_background_waits(void **state) {
  (void)state;
  alarm(60);
  fh_heap *h = test_heap("collector=mark_sweep,los_threshold=0,heap_max=16M,hspace_min_interval_ms=0,"
                         "hspace_fragmentation_pct=0");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *keep = fragment(t, &ty, (size_t)2 << 20);
  fh_push_root(t, (void **)&keep);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  fh_set_background(h, 1); /* the job now waits for us to reach a safepoint */
  fh_heap_destroy(h);
  assert_non_null(strstr(fh_last_error(), "still attached"));
  fh_pop_roots(t, 1);
  fh_thread_detach(t); /* blocking: the job runs, then ends */
  fh_heap_destroy(h);
  alarm(0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_compaction_moves_and_fixes_everything),
      cmocka_unit_test(test_failed_compaction_changes_nothing),
      cmocka_unit_test(test_allocation_failure_trigger),
      cmocka_unit_test(test_background_trigger),
      cmocka_unit_test(test_min_interval),
      cmocka_unit_test(test_background_request_during_collections),
      cmocka_unit_test(test_image_refs_are_updated),
      cmocka_unit_test(test_zygote_refs_are_updated),
      cmocka_unit_test(test_destroy_while_background_waits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
