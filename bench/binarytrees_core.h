/* binary-trees (the Computer Language Benchmarks Game program): the
 * workload body, with the allocator interface of gcbench_core.h (include
 * that first; the nodes are its gcb_node, of which binary-trees uses the
 * two references).
 *
 * For max depth n (at least min depth + 2 = 6): a stretch tree of depth
 * n + 1 built, checked and dropped; a long-lived tree of depth n kept;
 * then for d = 4, 6, .., n, 2^(n - d + 4) trees of depth d built bottom-up,
 * each checked (its nodes counted) and dropped; the long-lived tree
 * checked last.  Every tree is checked against its size, so a fast wrong
 * answer fails; the counting is part of the time, as in the original. */
#ifndef FH_BINARYTREES_CORE_H_
#define FH_BINARYTREES_CORE_H_

#define BT_MIN_DEPTH 4

static inline long bt_expected_trees(int n) {
  if (n < BT_MIN_DEPTH + 2) n = BT_MIN_DEPTH + 2;
  long trees = 2;
  for (int d = BT_MIN_DEPTH; d <= n; d += 2) trees += 1L << (n - d + BT_MIN_DEPTH);
  return trees;
}

/* Build, count, drop: 1 if the count was wrong. */
static int bt_check(void *tree, int depth, gcb_result *r) {
  r->trees++;
  long got = gcb_count(tree), want = gcb_tree_size(depth);
  if (got == want) return 0;
  if (r->failures++ < 5)
    fprintf(stderr, "binarytrees: a tree of depth %d has %ld nodes, want %ld\n", depth, got, want);
  return 1;
}

static void bt_run(int n, gcb_result *r) {
  if (n < BT_MIN_DEPTH + 2) n = BT_MIN_DEPTH + 2;
  r->ms = r->verify_ms = 0;
  r->trees = 0;
  r->failures = 0;
  uint64_t t0 = gcb_now_ns();
  void *tree = gcb_make_tree(n + 1);
  bt_check(tree, n + 1, r);
  gcb_free_tree(tree);
  tree = NULL;
  void *long_lived = gcb_make_tree(n);
  gcb_root(&long_lived);
  gcb_root(&tree);
  for (int d = BT_MIN_DEPTH; d <= n; d += 2) {
    long iterations = 1L << (n - d + BT_MIN_DEPTH);
    for (long i = 0; i < iterations; i++) {
      tree = gcb_make_tree(d);
      bt_check(tree, d, r);
      gcb_free_tree(tree);
      tree = NULL;
    }
  }
  bt_check(long_lived, n, r);
  r->ms = (double)(gcb_now_ns() - t0) / 1e6;
  gcb_free_tree(long_lived);
  gcb_unroot(2);
}

#endif
