#include "support_heap.h"

#include <stdio.h>

fh_heap *test_heap(const char *spec) {
  fh_options o;
  fh_options_init(&o);
  if (spec && fh_options_parse(&o, spec) < 0) fail_msg("options '%s': %s", spec, fh_last_error());
  fh_heap *h = fh_heap_create(&o);
  if (!h) fail_msg("heap '%s': %s", spec ? spec : "", fh_last_error());
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
