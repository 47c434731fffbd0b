#include "support_heap.h"

#include <stdio.h>
#include <string.h>

fh_heap *test_heap(const char *spec) {
  fh_options o;
  fh_options_init(&o);
  if (spec && fh_options_parse(&o, spec) < 0) fail_msg("options '%s': %s", spec, fh_last_error());
  fh_heap *h = fh_heap_create(&o);
  if (!h) fail_msg("heap '%s': %s", spec ? spec : "", fh_last_error());
  return h;
}

fh_heap *test_heap_attached(const char *collector, const char *rest, test_types *ty,
                            fh_thread **t) {
  char spec[512];
  snprintf(spec, sizeof spec, "collector=%s,%s", collector, rest);
  fh_heap *h = test_heap(spec);
  test_register(h, ty);
  *t = fh_thread_attach(h);
  assert_non_null(*t);
  return h;
}

void test_register(fh_heap *h, test_types *ty) {
  static const uint32_t node_refs[] = {0, 8};
  ty->node = fh_register_type(
      h, &(fh_type){.name = "tnode", .size = sizeof(tnode), .nrefs = 2, .ref_offsets = node_refs});
  ty->array = fh_register_type(h, &(fh_type){.name = "refarray", .flags = FH_TYPE_REF_ARRAY});
  ty->bytes = fh_register_type(h, &(fh_type){.name = "bytes"});
  assert_true(ty->node && ty->array && ty->bytes);
}

tnode *test_node(fh_thread *t, const test_types *ty, uint64_t value) {
  tnode *n = fh_alloc(t, ty->node, sizeof(tnode));
  if (!n) fail_msg("fh_alloc: %s", fh_last_error());
  n->value = value;
  n->check = test_check(value);
  return n;
}

void test_ring_build(fh_thread *t, const test_types *ty, test_ring *g, size_t n,
                     unsigned nonmoving_every, unsigned garbage) {
  g->n = n;
  g->arr = fh_alloc(t, ty->array, n * sizeof(void *));
  assert_non_null(g->arr);
  fh_push_root(t, (void **)&g->arr);
  for (size_t i = 0; i < n; i++) {
    tnode *x = i % nonmoving_every == 0 ? fh_alloc_nonmoving(t, ty->node, sizeof(tnode))
                                        : test_node(t, ty, i);
    assert_non_null(x);
    x->value = i;
    x->check = test_check(i);
    fh_write_ref(t, g->arr, &g->arr[i], x);
    for (unsigned k = 0; k < garbage; k++) test_node(t, ty, 0);
  }
  for (size_t i = 0; i < n; i++) {
    tnode *x = g->arr[i];
    fh_write_ref(t, x, (void **)&x->next, g->arr[(i + 1) % n]);
  }
}

fh_collect_kind test_collect_kind(const char *collector, int i) {
  if (strcmp(collector, "mark_sweep") == 0)
    return i % 2 ? FH_COLLECT_HSPACE_COMPACT : FH_COLLECT_MARK_SWEEP;
  static const fh_collect_kind k[] = {FH_COLLECT_DEFAULT, FH_COLLECT_SEMISPACE,
                                      FH_COLLECT_MARK_COMPACT, FH_COLLECT_CONCURRENT_COMPACT,
                                      FH_COLLECT_MARK_SWEEP};
  return k[i % 5];
}
