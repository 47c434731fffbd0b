/* A checkable object graph for the compaction tests (test_mark_compact.c,
 * test_concurrent_compact.c): a rooted table of nodes; node i links to node
 * next_of(i) and owns an "other" object (a reference array pointing back at
 * nodes, or a byte array of a size and pattern derived from i, some of them
 * spanning several pages); garbage of every size is allocated in between so
 * that compaction really slides.  graph_check verifies contents, sizes,
 * types and identity (which object points at which) from a C-side model. */
#ifndef FH_TEST_MC_GRAPH_H_
#define FH_TEST_MC_GRAPH_H_

#include <stdlib.h>
#include <string.h>

#include "support_heap.h"

typedef struct graph {
  void **table; /* a refarray object; the caller roots &table */
  size_t n;
} graph;

static inline size_t graph_next_of(size_t i, size_t n) { return (i * 7 + 3) % n; }
static inline size_t graph_bytes_size(size_t i) {
  return i % 97 == 0 ? 3 * 4096 + 8 * (i % 50) : 8 + (i % 13) * 8 + (i % 3);
}
static inline int graph_other_is_array(size_t i) { return i % 3 == 0; }
static inline size_t graph_array_len(size_t i) { return 1 + i % 9; }

static inline void graph_garbage(fh_thread *t, const test_types *ty, size_t i) {
  if (i % 5 == 0) test_node(t, ty, 0xdead);
  void *g = fh_alloc(t, ty->bytes, 16 + (i % 31) * 8);
  assert_non_null(g);
  if (i % 211 == 0) assert_non_null(fh_alloc(t, ty->bytes, 9000)); /* a large dead one */
}

/* Build the graph into *g (g->table must be a root slot of t already). */
static inline void graph_build(fh_thread *t, const test_types *ty, graph *g, size_t n) {
  g->n = n;
  g->table = fh_alloc(t, ty->array, n * sizeof(void *));
  assert_non_null(g->table);
  for (size_t i = 0; i < n; i++) {
    tnode *nd = test_node(t, ty, i);
    fh_write_ref(t, g->table, &g->table[i], nd);
    graph_garbage(t, ty, i);
  }
  for (size_t i = 0; i < n; i++) {
    void *other;
    if (graph_other_is_array(i)) {
      size_t len = graph_array_len(i);
      void **a = fh_alloc(t, ty->array, len * sizeof(void *));
      assert_non_null(a);
      for (size_t k = 0; k < len; k++) fh_write_ref(t, a, &a[k], g->table[(i + k) % n]);
      other = a;
    } else {
      size_t sz = graph_bytes_size(i);
      unsigned char *b = fh_alloc(t, ty->bytes, sz);
      assert_non_null(b);
      for (size_t k = 0; k < sz; k++) b[k] = (unsigned char)(i + k * 31);
      other = b;
    }
    tnode *nd = g->table[i]; /* `other` is not rooted: link it before allocating */
    fh_write_ref(t, nd, (void **)&nd->other, other);
    fh_write_ref(t, nd, (void **)&nd->next, g->table[graph_next_of(i, n)]);
    graph_garbage(t, ty, i + 1);
  }
}

/* Returns 0 when everything matches, else the failing index + 1. */
static inline size_t graph_check(const test_types *ty, const graph *g) {
  size_t n = g->n;
  if (fh_object_type(g->table) != ty->array || fh_object_size(g->table) != n * sizeof(void *))
    return (size_t)-1;
  for (size_t i = 0; i < n; i++) {
    tnode *nd = g->table[i];
    if (fh_object_type(nd) != ty->node || nd->value != i || nd->check != test_check(i)) return i + 1;
    if (nd->next != g->table[graph_next_of(i, n)]) return i + 1;
    void *o = nd->other;
    if (graph_other_is_array(i)) {
      void **a = o;
      size_t len = graph_array_len(i);
      if (fh_object_type(a) != ty->array || fh_object_size(a) != len * sizeof(void *)) return i + 1;
      for (size_t k = 0; k < len; k++)
        if (a[k] != g->table[(i + k) % n]) return i + 1;
    } else {
      unsigned char *b = o;
      size_t sz = graph_bytes_size(i);
      if (fh_object_type(b) != ty->bytes || fh_object_size(b) != sz) return i + 1;
      for (size_t k = 0; k < sz; k++)
        if (b[k] != (unsigned char)(i + k * 31)) return i + 1;
    }
  }
  return 0;
}

#include <pthread.h>

static test_types graph_ty; /* the types of the heap under test */

/* ---- several mutators, triggered collections, verify=1 ---- */

typedef struct mt_arg {
  fh_heap *h;
  int id;
  int rounds;
  size_t failed;
} mt_arg;


static inline void *mc_mutator(void *p) {
  mt_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  for (int r = 0; r < a->rounds && !a->failed; r++) {
    graph_build(t, &graph_ty, &g, 1500 + 100 * (size_t)a->id);
    for (int k = 0; k < 4 && !a->failed; k++) {
      for (int i = 0; i < 2000; i++) graph_garbage(t, &graph_ty, (size_t)i);
      a->failed = graph_check(&graph_ty, &g);
      /* mutate: relink through the barrier, and keep the model in step */
      for (size_t i = 0; i < g.n; i++) {
        tnode *n = g.table[i];
        fh_write_ref(t, n, (void **)&n->next, g.table[graph_next_of(i, g.n)]);
      }
    }
    if (r % 2 == 0 && fh_collect(t, FH_COLLECT_DEFAULT) < 0) a->failed = (size_t)-2;
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

/* Run n mutator threads (graph, garbage, relinking, checks, explicit
 * collections among triggered ones) on a heap made from spec. */
static inline void run_mutators(const char *spec, int n, int rounds) {
  fh_heap *h = test_heap(spec);
  test_register(h, &graph_ty);
  pthread_t th[8];
  mt_arg args[8];
  for (int i = 0; i < n; i++) {
    args[i] = (mt_arg){h, i, rounds, 0};
    pthread_create(&th[i], NULL, mc_mutator, &args[i]);
  }
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < n; i++)
    if (args[i].failed) fail_msg("mutator %d: graph check failed at %zu", i, args[i].failed);
  fh_stats st;
  fh_get_stats(h, &st);
  assert_true(st.collections >= 3);
  if (getenv("FH_TEST_VERBOSE")) fh_dump(h, stderr);
  fh_heap_destroy(h);
}

#endif
