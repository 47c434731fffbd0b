/* fhbench idhash: what fh_object_hash costs (issue target: an already
 * hashed object costs a call of at most 10 ns; objects never hashed pay
 * nothing, which no figure here can show: the allocation and marking paths
 * are unchanged, see gcbench and pause). */
#include "bench.h"

#include <faultheap.h>
#include <stdio.h>
#include <stdlib.h>

#define N 1024
#define REPS 20000

static double per_call(fh_thread *t, void **objs, int size_instead) {
  volatile uint64_t sink = 0;
  double best = 1e30;
  for (int run = 0; run < 5; run++) {
    double t0 = bench_now_ns();
    uint64_t acc = 0;
    for (int r = 0; r < REPS; r++)
      for (int i = 0; i < N; i++)
        acc += size_instead ? fh_object_size(objs[i]) : fh_object_hash(t, objs[i]);
    double ns = (bench_now_ns() - t0) / ((double)REPS * N);
    sink += acc;
    if (ns < best) best = ns;
  }
  (void)sink;
  return best;
}

int wl_idhash(int argc, char **argv) {
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h")) {
    printf("usage: fhbench idhash\n"
           "ns per fh_object_hash: the first hash, an already hashed object in place\n"
           "and moved (carrying its hash word), and fh_object_size on the same 1024\n"
           "cached objects for comparison (the same argument check, no hashing); the\n"
           "best of 5 runs of 20000 x 1024 calls, per collector.\n");
    return 0;
  }
  bench_print_header(stdout);
  static const char *const collectors[] = {"semispace", "mark_compact", "concurrent_compact",
                                            "mark_sweep"};
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    fh_heap *h = wk_heap_create("idhash", collectors[c], (size_t)64 << 20); /* FH_OPTIONS too */
    if (!h) return 1;
    uint32_t ty = fh_register_type(h, &(fh_type){.name = "obj", .size = 24});
    uint32_t arr = fh_register_type(h, &(fh_type){.name = "arr", .flags = FH_TYPE_REF_ARRAY});
    fh_thread *t = fh_thread_attach(h);
    void **objs = fh_alloc(t, arr, N * sizeof(void *));
    fh_push_root(t, (void **)&objs);
    for (int i = 0; i < N; i++) {
      void *x = fh_alloc(t, ty, 24);
      fh_write_ref(t, objs, &objs[i], x);
    }
    double t0 = bench_now_ns();
    for (int i = 0; i < N; i++) fh_object_hash(t, objs[i]);
    double first = (bench_now_ns() - t0) / N;
    double in_place = per_call(t, objs, 0);
    double size = per_call(t, objs, 1);
    fh_collect(t, FH_COLLECT_DEFAULT); /* moving collectors: now HASH_MOVED */
    double moved = per_call(t, objs, 0);
    printf("%-14s first hash %6.1f ns   hashed %5.2f ns   hashed+moved %5.2f ns   "
           "fh_object_size %5.2f ns\n",
           collectors[c], first, in_place, moved, size);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  return 0;
}
