/* fhbench roots: what precise rooting costs an interpreter's frame, and
 * fh_object_type inline against its out-of-line check.
 *
 * Frames: a noinline function that roots 4 locals, calls an opaque function
 * (through a volatile pointer, as eval would call into the rest of the
 * interpreter), and pops them; pushed as 4 fh_push_root calls, as one
 * FH_PUSH_ROOTS, as a mark + FH_PUSH_ROOTS + reset, and not at all (the
 * frame's own cost).  `objdump -d build/fhbench` on frame_push_root /
 * frame_push_roots shows the instructions.
 *
 * fh_object_type: the inline call against fh_object_type_slow (the
 * out-of-line check, which was all of fh_object_type before it was
 * inline) on the same 1024 objects, per collector, and on non-moving
 * objects (always the out-of-line check). */
#include "bench.h"

#include <faultheap.h>
#include <stdio.h>
#include <stdlib.h>

#define FRAMES 20000000L
#define N 1024
#define REPS 20000

static void opaque_fn(void *a, void *b, void *c, void *d) { (void)a, (void)b, (void)c, (void)d; }
static void (*volatile opaque)(void *, void *, void *, void *) = opaque_fn;

__attribute__((noinline)) static void frame_none(fh_thread *t, void *x) {
  (void)t;
  void *a = x, *b = x, *c = x, *d = x;
  opaque(a, b, c, d);
}

__attribute__((noinline)) static void frame_push_root(fh_thread *t, void *x) {
  void *a = x, *b = x, *c = x, *d = x;
  fh_push_root(t, &a);
  fh_push_root(t, &b);
  fh_push_root(t, &c);
  fh_push_root(t, &d);
  opaque(a, b, c, d);
  fh_pop_roots(t, 4);
}

__attribute__((noinline)) static void frame_push_roots(fh_thread *t, void *x) {
  void *a = x, *b = x, *c = x, *d = x;
  FH_PUSH_ROOTS(t, &a, &b, &c, &d);
  opaque(a, b, c, d);
  fh_pop_roots(t, 4);
}

__attribute__((noinline)) static void frame_mark_reset(fh_thread *t, void *x) {
  void *a = x, *b = x, *c = x, *d = x;
  size_t m = fh_root_mark(t);
  FH_PUSH_ROOTS(t, &a, &b, &c, &d);
  opaque(a, b, c, d);
  fh_root_reset(t, m);
}

static double per_frame(void (*frame)(fh_thread *, void *), fh_thread *t, void *x) {
  double best = 1e30;
  for (int run = 0; run < 5; run++) {
    double t0 = (double)bench_now_ns();
    for (long i = 0; i < FRAMES; i++) frame(t, x);
    double ns = ((double)bench_now_ns() - t0) / (double)FRAMES;
    if (ns < best) best = ns;
  }
  return best;
}

static double per_type(void **objs, int slow) {
  volatile uint64_t sink = 0;
  double best = 1e30;
  for (int run = 0; run < 5; run++) {
    double t0 = (double)bench_now_ns();
    uint64_t acc = 0;
    for (int r = 0; r < REPS; r++)
      for (int i = 0; i < N; i++) acc += slow ? fh_object_type_slow(objs[i]) : fh_object_type(objs[i]);
    double ns = ((double)bench_now_ns() - t0) / ((double)REPS * N);
    sink += acc;
    if (ns < best) best = ns;
  }
  (void)sink;
  return best;
}

int wl_roots(int argc, char **argv) {
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h")) {
    printf("usage: fhbench roots\n"
           "ns per interpreter-like frame rooting 4 locals: 4 fh_push_root vs one\n"
           "FH_PUSH_ROOTS vs mark + FH_PUSH_ROOTS + reset vs no rooting (best of 5 runs\n"
           "of 2*10^7 frames); ns per fh_object_type inline vs out of line on 1024\n"
           "cached objects, per collector (best of 5 runs of 20000 x 1024 calls).\n");
    return 0;
  }
  bench_print_header(stdout);
  int bad = 0;
  {
    fh_heap *h = fh_heap_create(NULL);
    if (!h) {
      fprintf(stderr, "%s\n", fh_last_error());
      return 1;
    }
    fh_thread *t = fh_thread_attach(h);
    size_t depth = fh_root_mark(t);
    double none = per_frame(frame_none, t, h);
    double one_by_one = per_frame(frame_push_root, t, h);
    double at_once = per_frame(frame_push_roots, t, h);
    double marked = per_frame(frame_mark_reset, t, h);
    bad |= fh_root_mark(t) != depth;
    printf("frame rooting 4 locals: none %5.2f ns   4 x fh_push_root %5.2f ns   "
           "FH_PUSH_ROOTS %5.2f ns   mark+FH_PUSH_ROOTS+reset %5.2f ns\n",
           none, one_by_one, at_once, marked);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  static const char *const collectors[] = {"semispace", "mark_compact", "concurrent_compact",
                                            "mark_sweep"};
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    fh_heap *h = wk_heap_create("roots", collectors[c], (size_t)64 << 20); /* FH_OPTIONS too */
    if (!h) return 1;
    uint32_t ty = fh_register_type(h, &(fh_type){.name = "obj", .size = 24});
    uint32_t arr = fh_register_type(h, &(fh_type){.name = "arr", .flags = FH_TYPE_REF_ARRAY});
    fh_thread *t = fh_thread_attach(h);
    void **objs = NULL, **nm = NULL;
    FH_PUSH_ROOTS(t, (void **)&objs, (void **)&nm); /* before the allocations that may move them */
    objs = fh_alloc(t, arr, N * sizeof(void *));
    nm = fh_alloc(t, arr, N * sizeof(void *));
    for (int i = 0; i < N; i++) {
      fh_write_ref(t, objs, &objs[i], fh_alloc(t, ty, 24));
      fh_write_ref(t, nm, &nm[i], fh_alloc_nonmoving(t, ty, 24));
    }
    for (int i = 0; i < N; i++) bad |= fh_object_type(objs[i]) != ty || fh_object_type(nm[i]) != ty;
    double fast = per_type(objs, 0), slow = per_type(objs, 1);
    double nm_fast = per_type(nm, 0), nm_slow = per_type(nm, 1);
    printf("%-19s fh_object_type inline %5.2f ns  out of line %5.2f ns   "
           "non-moving objects: %5.2f / %5.2f ns\n",
           collectors[c], fast, slow, nm_fast, nm_slow);
    fh_pop_roots(t, 2);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  if (bad) fprintf(stderr, "fhbench roots: wrong answer\n");
  return bad;
}
