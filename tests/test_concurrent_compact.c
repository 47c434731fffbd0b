/* Concurrent compaction through userfaultfd, in both fault modes: the graph
 * survives while mutators fault pages in right after the flip; fh_collect
 * returns with the phase still open and fh_gc_wait waits for its end;
 * allocation during the phase goes above the registered range; the moving
 * space stays one VMA; several mutator threads with verify=1; read() into a
 * heap object mid-compaction (inside fh_critical_begin/end in SIGBUS mode,
 * bare in handler-thread mode). */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collectors/mc.h"
#include "heap/heap.h"
#include "mc_graph.h"
#include "uffd/uffd.h"

static fh_heap *concurrent_heap(int sigbus, const char *extra) {
  char spec[256];
  snprintf(spec, sizeof spec, "collector=concurrent_compact,uffd_sigbus=%d,%s", sigbus, extra);
  fh_heap *h = test_heap(spec);
  assert_ptr_equal(h->collector, &concurrent_compact_collector);
  test_register(h, &graph_ty);
  return h;
}

/* Mutator touches everything right after the flip, while the worker is
 * held back: every page it reads is missing and built on its fault. */
static void graph_through_faults(int sigbus) {
  setenv("FH_MC_WORKER_DELAY_MS", "gate", 1);
  fh_heap *h = concurrent_heap(sigbus, "heap_max=64M,min_alloc_trigger=60M,verify=1");
  fh_thread *t = fh_thread_attach(h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  graph_build(t, &graph_ty, &g, 30000);
  bump_space *b = &h->bump[h->active];
  for (int cycle = 0; cycle < 2; cycle++) {
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    assert_true(mc_phase_open(h)); /* returned after the pause */
    uintptr_t top_at_flip = atomic_load(&b->top);
    assert_int_equal(top_at_flip % 4096, 0);
    assert_int_equal(graph_check(&graph_ty, &g), 0);
    /* New objects come from above the registered range. */
    tnode *fresh = test_node(t, &graph_ty, 77);
    assert_true((uintptr_t)fresh > top_at_flip);
    fh_gc_wait(h);
    assert_false(mc_phase_open(h));
    assert_int_equal(graph_check(&graph_ty, &g), 0);
    assert_int_equal(fresh->value, 77);
    assert_int_equal(fh_uffd_count_vmas((void *)b->space.begin, b->space.end - b->space.begin), 1);
    for (int i = 0; i < 20000; i++) graph_garbage(t, &graph_ty, (size_t)i);
  }
  fh_stats st;
  fh_get_stats(h, &st);
  assert_true(st.uffd_faults > 0);
  assert_true(st.uffd_fault_ns_max > 0);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fh_dump(h, f);
  fclose(f);
  assert_non_null(strstr(text, sigbus ? "SIGBUS handler" : "handler thread"));
  free(text);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  unsetenv("FH_MC_WORKER_DELAY_MS");
}

static void test_sigbus_mode_graph(void **s) {
  (void)s;
  test_skip_without_uffd();
  graph_through_faults(1);
}

static void test_handler_thread_mode_graph(void **s) {
  (void)s;
  test_skip_without_uffd();
  graph_through_faults(0);
}

/* Without any mutator access, the worker alone finishes the phase. */
static void test_worker_alone_and_gc_wait(void **s) {
  (void)s;
  test_skip_without_uffd();
  fh_heap *h = concurrent_heap(1, "heap_max=32M,min_alloc_trigger=30M");
  fh_thread *t = fh_thread_attach(h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  graph_build(t, &graph_ty, &g, 10000);
  assert_int_equal(fh_collect(t, FH_COLLECT_CONCURRENT_COMPACT), 0);
  fh_gc_wait(h);
  assert_int_equal(graph_check(&graph_ty, &g), 0);
  /* Alone, the worker stages runs in consumed from-space and moves them in
   * where the kernel has UFFDIO_MOVE (the graph has garbage to reuse). */
  if (h->mc->use_move && fh_uffd_has_move(h->mc->uffd)) assert_true(h->mc->moved_pages > 0);
  /* A collection right after another waits for the first phase to end. */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_int_equal(graph_check(&graph_ty, &g), 0);
  /* Nothing died since the last cycle: the whole space is a dense prefix,
   * fixed in place in from-space and moved back. */
  if (h->mc->use_move && fh_uffd_has_move(h->mc->uffd)) {
    assert_true(h->mc->t.dense_pages == 0); /* tables cleared at the end */
    assert_true(h->mc->in_place_pages > 0);
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h); /* with the phase possibly still open */
}

/* A nearly full space: the compacted data ends inside the space's last
 * 2 MiB, so the flip's anon_vma byte (register_destination) falls in the
 * same PMD as registered pages.  Written with huge pages on, it could fault
 * in a 2 MiB page of zeroes over them, and their builds would then find
 * them present (EEXIST) and leave the zeroes.  The mutator reads every
 * object during the phase and after it. */
#define FULL_OBJ_BYTES 4000
static void nearly_full_space(fh_collect_kind kind) {
  setenv("FH_MC_WORKER_DELAY_MS", "gate", 1); /* the mutator's faults build the pages */
  fh_heap *h = concurrent_heap(1, "heap_max=16M,min_alloc_trigger=16M,verify=1");
  fh_thread *t = fh_thread_attach(h);
  bump_space *b = &h->bump[h->active];
  size_t cap = b->space.end - b->space.begin;
  assert_int_equal(cap, (size_t)16 << 20);
  size_t n = (cap - ((size_t)3 << 19)) / (FULL_OBJ_BYTES + 8 + sizeof(void *)); /* ~14.5 MiB */
  void **table = fh_alloc(t, graph_ty.array, n * sizeof(void *));
  assert_non_null(table);
  fh_push_root(t, (void **)&table);
  for (size_t i = 0; i < n; i++) {
    if (i % 64 == 0) assert_non_null(fh_alloc(t, graph_ty.bytes, 2000)); /* garbage: slide */
    unsigned char *o = fh_alloc(t, graph_ty.bytes, FULL_OBJ_BYTES);
    assert_non_null(o);
    for (size_t k = 0; k < FULL_OBJ_BYTES; k++) o[k] = (unsigned char)(i * 7 + k);
    fh_write_ref(t, table, &table[i], o);
  }
  assert_int_equal(fh_collect(t, kind), 0);
  uintptr_t top = atomic_load(&b->top);
  assert_true(top > b->space.end - ((size_t)2 << 20)); /* the case this test is for */
  assert_true(top < b->space.end);
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n; i++) {
      const unsigned char *o = table[i];
      assert_int_equal(fh_object_size(table[i]), FULL_OBJ_BYTES);
      for (size_t k = 0; k < FULL_OBJ_BYTES; k += 499)
        assert_int_equal(o[k], (unsigned char)(i * 7 + k));
    }
    fh_gc_wait(h);
  }
  assert_int_equal(fh_uffd_count_vmas((void *)b->space.begin, cap), 1);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_nearly_full_space(void **s) {
  (void)s;
  test_skip_without_uffd();
  nearly_full_space(FH_COLLECT_CONCURRENT_COMPACT);
}

/* The stop-the-world build registers the destination the same way. */
static void test_nearly_full_space_stop_the_world(void **s) {
  (void)s;
  test_skip_without_uffd();
  nearly_full_space(FH_COLLECT_MARK_COMPACT);
}

/* Whether the VMA holding addr has flag `flag` ("hg": MADV_HUGEPAGE,
 * "nh": MADV_NOHUGEPAGE) in /proc/self/smaps. */
static int vma_has_flag(uintptr_t addr, const char *flag) {
  FILE *f = fopen("/proc/self/smaps", "r");
  assert_non_null(f);
  char line[512];
  int in = 0, found = -1;
  while (found < 0 && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = addr >= lo && addr < hi;
    } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      char want[8];
      snprintf(want, sizeof want, " %s", flag);
      found = strstr(line, want) != NULL;
    }
  }
  fclose(f);
  assert_true(found >= 0);
  return found;
}

/* FH_MC_THP=0 must mark the space MADV_NOHUGEPAGE, not leave it unflagged:
 * on a host whose THP setting is "always" an unflagged space still gets
 * huge pages, and the flip's anon_vma byte (register_destination, at the
 * first page above the registered range) would then fault one in over
 * registered pages.  Default: MADV_HUGEPAGE, also after a cycle, unless
 * the embedder asked for an allocation window under two huge pages. */
static void test_huge_page_flag_of_the_space(void **s) {
  (void)s;
  test_skip_without_uffd();
  const char *was = getenv("FH_MC_THP"); /* the caller's, restored after */
  char *saved = was ? strdup(was) : NULL;
  for (int off = 0; off < 2; off++) {
    setenv("FH_MC_THP", off ? "0" : "1", 1);
    fh_heap *h = concurrent_heap(1, "heap_max=32M,min_alloc_trigger=30M");
    fh_thread *t = fh_thread_attach(h);
    graph g = {0};
    fh_push_root(t, (void **)&g.table);
    graph_build(t, &graph_ty, &g, 2000);
    assert_int_equal(fh_collect(t, FH_COLLECT_CONCURRENT_COMPACT), 0);
    fh_gc_wait(h);
    assert_int_equal(graph_check(&graph_ty, &g), 0);
    uintptr_t begin = h->bump[h->active].space.begin;
    assert_int_equal(vma_has_flag(begin, "hg"), !off);
    assert_int_equal(vma_has_flag(begin, "nh"), off);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  /* Huge pages allowed, but a window asked for under two of them
   * (min_alloc_trigger=1M): 4 KiB pages, as MADV_NOHUGEPAGE. */
  setenv("FH_MC_THP", "1", 1);
  fh_heap *h = concurrent_heap(1, "heap_max=32M,min_alloc_trigger=1M");
  fh_thread *t = fh_thread_attach(h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  graph_build(t, &graph_ty, &g, 2000);
  uintptr_t begin = h->bump[h->active].space.begin;
  for (int c = 0; c < 2; c++) {
    assert_int_equal(fh_collect(t, FH_COLLECT_CONCURRENT_COMPACT), 0);
    fh_gc_wait(h);
    assert_int_equal(graph_check(&graph_ty, &g), 0);
    assert_int_equal(h->mc->thp, 0);
    assert_int_equal(vma_has_flag(begin, "hg"), 0);
    assert_int_equal(vma_has_flag(begin, "nh"), 1);
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  if (saved) setenv("FH_MC_THP", saved, 1);
  else unsetenv("FH_MC_THP");
  free(saved);
}

/* From-space goes back while the phase runs even when the GC worker gets
 * no CPU: here it is held back (the gate, until fh_gc_wait) while the
 * mutator faults every page in, and the pages those builds stopped
 * reading must still be given back (by the releaser thread, which the
 * completed batches wake), not wait for the worker.  Fails if release is
 * left to the worker. */
#define RELEASE_TEST_WAIT_MS 10000
static void test_from_space_released_while_worker_waits(void **s) {
  (void)s;
  test_skip_without_uffd();
  setenv("FH_MC_WORKER_DELAY_MS", "gate", 1); /* unset by the teardown */
  fh_heap *h = concurrent_heap(1, "heap_max=96M,min_alloc_trigger=90M");
  fh_thread *t = fh_thread_attach(h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  graph_build(t, &graph_ty, &g, 60000);
  assert_int_equal(fh_collect(t, FH_COLLECT_CONCURRENT_COMPACT), 0);
  from_ledger *l = &h->mc->ledger;
  assert_true(l->npages > 2 * LEDGER_RELEASE_PAGES); /* enough for batches */
  assert_int_equal(graph_check(&graph_ty, &g), 0); /* faults every page in */
  size_t released = 0;
  uint64_t t0 = heap_now_ns();
  while (heap_now_ns() - t0 < RELEASE_TEST_WAIT_MS * 1000000ull &&
         (released = atomic_load(&l->released_pages)) < LEDGER_RELEASE_PAGES)
    usleep(1000);
  /* Seen while the worker was still held (the gate opens in fh_gc_wait). */
  assert_true(released >= LEDGER_RELEASE_PAGES);
  assert_true(mc_phase_open(h));
  fh_gc_wait(h);
  assert_int_equal(graph_check(&graph_ty, &g), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static int unset_worker_delay(void **s) {
  (void)s;
  unsetenv("FH_MC_WORKER_DELAY_MS");
  return 0;
}

/* A traced type whose trace function reads a tag in the middle of the
 * object (on its second page) before visiting the other words.  Objects
 * of it that span pages in the dense prefix must stay readable in
 * from-space until the cycle ends: the worker fixes the dense prefix in
 * place and moves its pages back with UFFDIO_MOVE, and a page moved out
 * would make a later page's trace read zeros and leave its references
 * unforwarded (found in review; FH_MC_MOVE=0 hid it). */
#define DT_PAYLOAD (20 * 1024)
#define DT_TAG_WORD (6000 / 8)
#define DT_TAG 0x123456789abcdef5ull
static _Atomic int dt_bad_tags;

static void trace_tagged(void *obj, size_t size, fh_visit_fn visit, void *ctx) {
  uint64_t *w = obj;
  if (size <= DT_TAG_WORD * 8 || w[DT_TAG_WORD] != DT_TAG) {
    atomic_fetch_add(&dt_bad_tags, 1);
    return;
  }
  for (size_t i = 0; i < size / 8; i++)
    if (i != DT_TAG_WORD) visit((void **)&w[i], ctx);
}

static void test_dense_traced_objects_spanning_pages(void **s) {
  (void)s;
  test_skip_without_uffd();
  fh_heap *h = concurrent_heap(1, "heap_max=64M,min_alloc_trigger=60M");
  uint32_t ty = fh_register_type(h, &(fh_type){.name = "tagged", .trace = trace_tagged});
  assert_true(ty != 0);
  fh_thread *t = fh_thread_attach(h);
  enum { N = 200 };
  void **objs = calloc(N, sizeof *objs), **targets = calloc(N, sizeof *targets);
  for (int i = 0; i < N; i++) fh_push_root(t, &objs[i]);
  for (int i = 0; i < N; i++) fh_push_root(t, &targets[i]);
  for (int i = 0; i < N; i++) { /* all live, at the bottom: the dense prefix */
    uint64_t *p = fh_alloc(t, ty, DT_PAYLOAD);
    assert_non_null(p);
    p[DT_TAG_WORD] = DT_TAG;
    objs[i] = p;
  }
  for (int i = 0; i < N; i++) { /* garbage, then targets that move */
    assert_non_null(fh_alloc(t, ty, 4096));
    uint64_t *q = fh_alloc(t, ty, 8192);
    assert_non_null(q);
    q[DT_TAG_WORD] = DT_TAG;
    targets[i] = q;
  }
  for (int i = 0; i < N; i++) {
    if (i) fh_write_ref(t, objs[i], &((void **)objs[i])[0], objs[i - 1]);
    fh_write_ref(t, objs[i], &((void **)objs[i])[16384 / 8], targets[i]);
  }
  atomic_store(&dt_bad_tags, 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_CONCURRENT_COMPACT), 0);
  fh_enter_blocking(t);
  fh_gc_wait(h);
  fh_leave_blocking(t);
  assert_int_equal(atomic_load(&dt_bad_tags), 0);
  for (int i = 0; i < N; i++) {
    uint64_t *p = objs[i];
    assert_int_equal(p[DT_TAG_WORD], DT_TAG);
    assert_ptr_equal(((void **)p)[16384 / 8], targets[i]);
    if (i) assert_ptr_equal(((void **)p)[0], objs[i - 1]);
  }
  fh_pop_roots(t, 2 * N);
  free(objs), free(targets);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_stress_sigbus(void **s) {
  (void)s;
  test_skip_without_uffd();
  setenv("FH_MC_WORKER_DELAY_MS", "2", 1); /* mutators race the worker */
  run_mutators("collector=concurrent_compact,uffd_sigbus=1,heap_max=48M,verify=1,"
               "min_alloc_trigger=2M",
               3, 6);
  unsetenv("FH_MC_WORKER_DELAY_MS");
}

static void test_stress_handler_thread(void **s) {
  (void)s;
  test_skip_without_uffd();
  setenv("FH_MC_WORKER_DELAY_MS", "2", 1); /* mutators race the worker */
  run_mutators("collector=concurrent_compact,uffd_sigbus=0,heap_max=48M,verify=1,"
               "min_alloc_trigger=2M",
               3, 6);
  unsetenv("FH_MC_WORKER_DELAY_MS");
}

/* read() from a pipe into a heap object whose page is still missing. */
static void read_into_object(int sigbus) {
  setenv("FH_MC_WORKER_DELAY_MS", "gate", 1);
  fh_heap *h = concurrent_heap(sigbus, "heap_max=32M,min_alloc_trigger=30M");
  fh_thread *t = fh_thread_attach(h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  graph_build(t, &graph_ty, &g, 4000);
  unsigned char *buf = fh_alloc(t, graph_ty.bytes, 3 * 4096);
  assert_non_null(buf);
  fh_push_root(t, (void **)&buf);
  /* The uffd is opened by the first cycle: learn whether kernel-mode
   * faults are served (thread mode on a fd without UFFD_USER_MODE_ONLY). */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  if (!sigbus && !fh_uffd_kernel_faults(h->mc->uffd)) {
    fh_pop_roots(t, 2);
    fh_thread_detach(t);
    fh_heap_destroy(h);
    unsetenv("FH_MC_WORKER_DELAY_MS");
    fprintf(stderr, "kernel-mode faults not served by this uffd: skipped\n");
    skip();
  }
  for (int i = 0; i < 3000; i++) graph_garbage(t, &graph_ty, (size_t)i);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  unsigned char msg[3 * 4096];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = (unsigned char)(i * 7 + 1);
  assert_int_equal(write(fds[1], msg, sizeof msg), (ssize_t)sizeof msg);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_true(mc_phase_open(h));
  ssize_t got;
  if (sigbus) {
    void *p = fh_critical_begin(t, buf);
    got = read(fds[0], p, sizeof msg);
    fh_critical_end(t, buf);
  } else {
    got = read(fds[0], buf, sizeof msg); /* the kernel's fault blocks and is served */
  }
  assert_int_equal(got, (ssize_t)sizeof msg);
  assert_memory_equal(buf, msg, sizeof msg);
  assert_int_equal(fh_object_size(buf), sizeof msg);
  assert_int_equal(graph_check(&graph_ty, &g), 0);
  fh_gc_wait(h);
  assert_memory_equal(buf, msg, sizeof msg);
  close(fds[0]);
  close(fds[1]);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  unsetenv("FH_MC_WORKER_DELAY_MS");
}

static void test_read_into_object_critical_sigbus(void **s) {
  (void)s;
  test_skip_without_uffd();
  read_into_object(1);
}

static void test_read_into_object_bare_handler_thread(void **s) {
  (void)s;
  test_skip_without_uffd();
  read_into_object(0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigbus_mode_graph),
      cmocka_unit_test(test_handler_thread_mode_graph),
      cmocka_unit_test(test_worker_alone_and_gc_wait),
      cmocka_unit_test_teardown(test_from_space_released_while_worker_waits, unset_worker_delay),
      cmocka_unit_test(test_dense_traced_objects_spanning_pages),
      cmocka_unit_test_teardown(test_nearly_full_space, unset_worker_delay),
      cmocka_unit_test_teardown(test_nearly_full_space_stop_the_world, unset_worker_delay),
      cmocka_unit_test(test_huge_page_flag_of_the_space),
      cmocka_unit_test(test_stress_sigbus),
      cmocka_unit_test(test_stress_handler_thread),
      cmocka_unit_test(test_read_into_object_critical_sigbus),
      cmocka_unit_test(test_read_into_object_bare_handler_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
