/* fhbench stackscan: what conservative stack roots cost a collection.
 *
 * N mutator threads each fill STACK KiB of their stack with a frame of
 * words (one in 16 a pointer to one of the thread's 64 objects, start or
 * interior; the rest integers, as an interpreter's frames hold), then park
 * at safepoints; the main thread runs collections over a 50k-object live
 * set.  Run with stack_roots=precise and =conservative, alternating, on
 * the same work.  Reported: the scan's time per collection and per 64 KiB
 * of stack read (issue 18's target: <= 20 us), and the mean pause with
 * each (target: 8 threads of 64 KiB add <= 0.2 ms).  In conservative mode
 * every thread checks its objects at the end (they were only on its
 * stack). */
#include "bench.h"

#include <faultheap.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { OBJS = 64, LIVE = 50000 };

typedef struct scan_job {
  fh_heap *h;
  uint32_t node;
  size_t stack_words;
  int conservative;
  atomic_int *ready, *done;
  int ok;
} scan_job;

typedef struct bnode {
  struct bnode *next;
  uint64_t value, pad;
} bnode;

/* The frame: the words live on this function's stack until done. */
__attribute__((noinline)) static int hold_frame(scan_job *j, fh_thread *t) {
  bnode *objs[OBJS];
  for (int i = 0; i < OBJS; i++) {
    objs[i] = fh_alloc(t, j->node, sizeof(bnode));
    if (!objs[i]) return 0;
    objs[i]->value = (uint64_t)i * 977;
  }
  volatile uintptr_t *frame = __builtin_alloca(j->stack_words * sizeof(uintptr_t));
  for (size_t i = 0; i < j->stack_words; i++)
    frame[i] = i % 16 == 0 ? (uintptr_t)objs[(i / 16) % OBJS] + 8 * (i % 3)
                           : (uintptr_t)i * 2654435761u;
  /* Blocked (as a thread waiting for I/O would be), not spinning at
   * safepoints: eight spinning threads on two CPUs made the pauses
   * measure the scheduler.  Blocking saves the registers and stack top
   * just as parking does. */
  fh_enter_blocking(t);
  atomic_fetch_add(j->ready, 1);
  while (!atomic_load(j->done)) usleep(1000);
  fh_leave_blocking(t);
  int ok = 1;
  if (j->conservative)
    for (int i = 0; i < OBJS; i++) ok &= objs[i]->value == (uint64_t)i * 977;
  ok &= frame[0] == (uintptr_t)objs[0]; /* keeps frame and objs alive to here */
  return ok;
}

static void *scan_thread(void *arg) {
  scan_job *j = arg;
  fh_thread *t = fh_thread_attach(j->h);
  if (!t) {
    atomic_fetch_add(j->ready, 1);
    return NULL;
  }
  j->ok = hold_frame(j, t);
  fh_thread_detach(t);
  return NULL;
}

typedef struct scan_result {
  double pause_ms, scan_us, words, pinned;
} scan_result;

static int run_mode(const char *collector, int conservative, int nthreads, size_t stack_kib,
                    int collections, scan_result *out) {
  fh_heap *h = wk_heap_create_with("stackscan", collector, (size_t)256 << 20,
                                   conservative ? "stack_roots=conservative"
                                                : "stack_roots=precise");
  if (!h) return -1;
  static const uint32_t refs[] = {0};
  uint32_t node = fh_register_type(h, &(fh_type){.name = "node", .size = sizeof(bnode),
                                                 .nrefs = 1, .ref_offsets = refs});
  uint32_t arr = fh_register_type(h, &(fh_type){.name = "arr", .flags = FH_TYPE_REF_ARRAY});
  fh_thread *t = fh_thread_attach(h);
  /* A global root, not a local: the main thread's own stack should not
   * pin the 400 KB array (what is measured is the threads' stacks). */
  static void **live;
  live = NULL;
  fh_root_add(h, (void **)&live);
  live = fh_alloc(t, arr, LIVE * sizeof(void *));
  for (int i = 0; i < LIVE && live; i++) fh_write_ref(t, live, &live[i], fh_alloc(t, node, sizeof(bnode)));
  atomic_int ready = 0, done = 0;
  scan_job *jobs = calloc((size_t)nthreads, sizeof *jobs);
  pthread_t *th = calloc((size_t)nthreads, sizeof *th);
  size_t words = stack_kib * 1024 / sizeof(uintptr_t);
  fh_enter_blocking(t);
  for (int i = 0; i < nthreads; i++) {
    jobs[i] = (scan_job){h, node, words, conservative, &ready, &done, 0};
    pthread_create(&th[i], NULL, scan_thread, &jobs[i]);
  }
  while (atomic_load(&ready) < nthreads) usleep(1000);
  fh_leave_blocking(t);
  fh_stats s0, s1;
  fh_get_stats(h, &s0);
  for (int c = 0; c < collections; c++) {
    fh_collect(t, FH_COLLECT_DEFAULT);
    fh_gc_wait(h);
  }
  fh_get_stats(h, &s1);
  atomic_store(&done, 1);
  fh_enter_blocking(t);
  int ok = 1;
  for (int i = 0; i < nthreads; i++) {
    pthread_join(th[i], NULL);
    ok &= jobs[i].ok;
  }
  fh_leave_blocking(t);
  double n = (double)(s1.collections - s0.collections);
  out->pause_ms = (double)(s1.pause_ns_total - s0.pause_ns_total) / 1e6 / n;
  out->scan_us = (double)(s1.stack_scan_ns_total - s0.stack_scan_ns_total) / 1e3 / n;
  out->words = (double)(s1.stack_words_scanned - s0.stack_words_scanned) / n;
  out->pinned = (double)s1.pinned_last;
  fh_root_remove(h, (void **)&live);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  free(jobs);
  free(th);
  if (!ok) fprintf(stderr, "stackscan: a thread's objects were damaged\n");
  return ok ? 0 : -1;
}

int wl_stackscan(int argc, char **argv) {
  static const char *const with_value[] = {"--threads", "--stack-kib", "--collections",
                                           "--collector", "--runs", NULL};
  static const char *const bare[] = {"--help", "-h", NULL};
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h") ||
      bench_check_flags(argc, argv, with_value, bare) != 0) {
    printf("usage: fhbench stackscan [--threads N] [--stack-kib K] [--collections C]\n"
           "                         [--collector X] [--runs R]\n"
           "N threads (default 8) park holding K KiB (64) of stack words, 1 in 16 a\n"
           "pointer to one of their objects; C collections (50) of a 50k-object heap\n"
           "with stack_roots=precise and =conservative, alternating, R rounds (5).\n"
           "Prints the scan time per collection and per 64 KiB of stack, and the\n"
           "mean pause of each mode (medians over rounds).\n");
    return 0;
  }
  const char *nt = bench_flag(argc, argv, "--threads"), *kib = bench_flag(argc, argv, "--stack-kib");
  const char *nc = bench_flag(argc, argv, "--collections");
  const char *collector = bench_flag(argc, argv, "--collector");
  int nthreads = nt ? atoi(nt) : 8, collections = nc ? atoi(nc) : 50;
  size_t stack_kib = kib ? (size_t)atol(kib) : 64;
  int runs = bench_runs_flag(argc, argv, 5);
  if (nthreads < 0 || nthreads > 256 || collections < 1 || stack_kib < 1 || stack_kib > 4096 ||
      runs < 1)
    return 2;
  double *pause[2], *scan_us = calloc((size_t)runs, sizeof(double)),
                    *per64 = calloc((size_t)runs, sizeof(double)), words = 0, pinned = 0;
  for (int m = 0; m < 2; m++) pause[m] = calloc((size_t)runs, sizeof(double));
  for (int r = 0; r < runs; r++)
    for (int k = 0; k < 2; k++) {
      int m = (r + k) % 2; /* alternate which mode runs first */
      bench_progress("stackscan: round %d/%d, %s", r + 1, runs, m ? "conservative" : "precise");
      scan_result res;
      if (run_mode(collector, m, nthreads, stack_kib, collections, &res) < 0) return 1;
      pause[m][r] = res.pause_ms;
      if (m) {
        scan_us[r] = res.scan_us;
        per64[r] = res.words > 0 ? res.scan_us / (res.words * sizeof(uintptr_t) / 65536.0) : 0;
        words = res.words;
        pinned = res.pinned;
      }
    }
  bench_progress_done();
  bench_print_header(stdout);
  double pp = bench_median(pause[0], (size_t)runs), pc = bench_median(pause[1], (size_t)runs);
  printf("stackscan: %d threads x %zu KiB of stack, %d collections (%s), %d rounds\n", nthreads,
         stack_kib, collections, collector ? collector : "default collector", runs);
  printf("  conservative scan: %.1f us per collection (%.0f words, %.0f objects pinned), "
         "%.2f us per 64 KiB of stack\n",
         bench_median(scan_us, (size_t)runs), words, pinned, bench_median(per64, (size_t)runs));
  printf("  mean pause: precise %.3f ms, conservative %.3f ms (%+.3f ms)\n", pp, pc, pc - pp);
  for (int m = 0; m < 2; m++) free(pause[m]);
  free(scan_us);
  free(per64);
  return 0;
}
