/* GCBench (Ellis, Kovac, Boehm): the workload body, shared by every
 * allocator variant so that all of them run the same code.
 *
 * Included once per program, after the includer has defined the allocator
 * interface:
 *   static void *gcb_new_node(void);          zeroed gcb_node
 *   static double *gcb_new_doubles(size_t n); n doubles
 *   static void gcb_store(void *obj, void **field, void *value);
 *   static void gcb_root(void **slot);        slot survives allocations
 *   static void gcb_unroot(size_t n);         drop the last n root slots
 *   static void gcb_free_tree(void *tree);    explicit free (or nothing)
 *   static void gcb_free_doubles(double *a);
 *   static void gcb_poll(void);               safepoint in long loops
 *
 * Rooting discipline (what a moving collector needs, free for the others):
 * any gcb_new_* may move every object, so a pointer that must outlive an
 * allocation is kept in a root slot (a `void *` local registered with
 * gcb_root) and re-read from the slot after each allocation.  Reads need no
 * barrier; every reference store into an object goes through gcb_store, but
 * those that initialise the node gcb_new_node just returned, before any
 * other allocation: plain stores, which every allocator here allows
 * (faultheap.h: fh_write_ref), as Whippet's and the Benchmarks Game's
 * programs write them.
 *
 * Shape, as in research/baselines.md section 1: a stretch tree of depth 18
 * (built and dropped), a long-lived tree of depth 16 and an array of 500k
 * doubles kept live throughout; then for depths 4, 6, .., 16,
 * 2*treeSize(18)/treeSize(d) trees built top-down (populate: allocate the
 * children, then recurse) and as many bottom-up (make_tree: build the
 * children, then the parent), each dropped (freed) after use.
 *
 * Every tree built is counted and the array is checked at the end, so a fast
 * wrong answer fails.  The counting walks are not part of the time: the
 * clock stops around them, to stay comparable with the figures measured
 * without them. */
#ifndef FH_GCBENCH_CORE_H_
#define FH_GCBENCH_CORE_H_

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define GCB_STRETCH_DEPTH 18
#define GCB_LONG_LIVED_DEPTH 16
#define GCB_ARRAY_SIZE 500000
#define GCB_MIN_DEPTH 4
#define GCB_MAX_DEPTH 16

/* the references are `void *` so that a collector updating them as void *
 * never aliases a differently typed pointer */
typedef struct gcb_node {
  void *left, *right;
  int i, j;
} gcb_node;
_Static_assert(sizeof(gcb_node) == 24, "GCBench nodes are 24 bytes");

typedef struct gcb_result {
  double ms;        /* the benchmark body, without the verification walks */
  double verify_ms; /* the counting walks and the array check */
  long trees;       /* trees built and checked */
  int failures;     /* wrong counts or array values */
} gcb_result;

static uint64_t gcb_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long gcb_tree_size(int depth) { return (1L << (depth + 1)) - 1; }

static long gcb_iterations(int depth) {
  return 2 * gcb_tree_size(GCB_STRETCH_DEPTH) / gcb_tree_size(depth);
}

static long gcb_count(const void *node) {
  if (node == NULL) return 0;
  const gcb_node *n = node;
  return 1 + gcb_count(n->left) + gcb_count(n->right);
}

/* Top-down: *slot is a rooted node; give it `depth` levels below it. */
static void gcb_populate(int depth, void **slot) {
  if (depth <= 0) return;
  depth--;
  void *child = gcb_new_node();
  gcb_store(*slot, &((gcb_node *)*slot)->left, child);
  child = gcb_new_node(); /* may have moved *slot: re-read it */
  gcb_store(*slot, &((gcb_node *)*slot)->right, child);
  /* the children are reachable from *slot; `child` is a root only so that
   * the recursion can find its node again after it moves */
  gcb_root(&child);
  child = ((gcb_node *)*slot)->left;
  gcb_populate(depth, &child);
  child = ((gcb_node *)*slot)->right;
  gcb_populate(depth, &child);
  gcb_unroot(1);
}

/* Bottom-up.  The result is valid until the caller's next allocation. */
static void *gcb_make_tree(int depth) {
  if (depth <= 0) return gcb_new_node();
  void *left = gcb_make_tree(depth - 1);
  gcb_root(&left);
  void *right = gcb_make_tree(depth - 1);
  gcb_root(&right);
  gcb_node *node = gcb_new_node();
  node->left = left; /* initialising stores (above) */
  node->right = right;
  gcb_unroot(2);
  return node;
}

/* Counts `tree` against `want` with the clock stopped; returns 1 if wrong. */
static int gcb_check_tree(const void *tree, int depth, const char *what,
                          gcb_result *r) {
  uint64_t t0 = gcb_now_ns();
  long got = gcb_count(tree), want = gcb_tree_size(depth);
  r->verify_ms += (double)(gcb_now_ns() - t0) / 1e6;
  r->trees++;
  if (got == want) return 0;
  if (r->failures++ < 5)
    fprintf(stderr, "gcbench: %s of depth %d has %ld nodes, want %ld\n", what,
            depth, got, want);
  return 1;
}

static double gcb_array_value(long i) { return 1.0 / (double)(i + 1); }

static void gcb_run(gcb_result *r) {
  r->ms = r->verify_ms = 0;
  r->trees = 0;
  r->failures = 0;
  uint64_t t0 = gcb_now_ns();

  void *tree = NULL, *long_lived = NULL, *array = NULL;
  gcb_root(&tree);

  /* stretch the heap: one big tree, dropped at once */
  tree = gcb_make_tree(GCB_STRETCH_DEPTH);
  gcb_check_tree(tree, GCB_STRETCH_DEPTH, "stretch tree", r);
  gcb_free_tree(tree);
  tree = NULL;

  /* live throughout */
  long_lived = gcb_new_node();
  gcb_root(&long_lived);
  gcb_populate(GCB_LONG_LIVED_DEPTH, &long_lived);
  array = gcb_new_doubles(GCB_ARRAY_SIZE);
  gcb_root(&array);
  for (long i = 0; i < GCB_ARRAY_SIZE; i++) {
    /* no allocation in this loop, so let a collector that waits for this
     * thread (a concurrent compactor's flip) in now and then */
    if ((i & 0xffff) == 0) gcb_poll();
    ((double *)array)[i] = gcb_array_value(i);
  }

  for (int d = GCB_MIN_DEPTH; d <= GCB_MAX_DEPTH; d += 2) {
    long n = gcb_iterations(d);
    for (long k = 0; k < n; k++) {
      tree = gcb_new_node();
      gcb_populate(d, &tree);
      gcb_check_tree(tree, d, "top-down tree", r);
      gcb_free_tree(tree);
      tree = NULL;

      tree = gcb_make_tree(d);
      gcb_check_tree(tree, d, "bottom-up tree", r);
      gcb_free_tree(tree);
      tree = NULL;
    }
  }

  /* the live data survived every collection intact */
  gcb_check_tree(long_lived, GCB_LONG_LIVED_DEPTH, "long-lived tree", r);
  uint64_t v0 = gcb_now_ns();
  long bad = 0;
  for (long i = 0; i < GCB_ARRAY_SIZE; i++) {
    if ((i & 0xffff) == 0) gcb_poll();
    bad += ((double *)array)[i] != gcb_array_value(i);
  }
  r->verify_ms += (double)(gcb_now_ns() - v0) / 1e6;
  if (bad) {
    fprintf(stderr, "gcbench: %ld of %d array values are wrong\n", bad, GCB_ARRAY_SIZE);
    r->failures++;
  }

  r->ms = (double)(gcb_now_ns() - t0) / 1e6 - r->verify_ms;
  gcb_free_tree(long_lived);
  gcb_free_doubles(array);
  gcb_unroot(3);
}

#endif
