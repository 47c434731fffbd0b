#include "support_configs.h"

#include <stdio.h>

const test_config test_configs[] = {
    {"semispace", "", {FH_COLLECT_SEMISPACE, FH_COLLECT_SEMISPACE}},
    {"mark_sweep", "", {FH_COLLECT_MARK_SWEEP, FH_COLLECT_HSPACE_COMPACT}},
    {"mark_compact", "", {FH_COLLECT_MARK_COMPACT, FH_COLLECT_SEMISPACE}},
    {"concurrent_compact", ",uffd_sigbus=1",
     {FH_COLLECT_CONCURRENT_COMPACT, FH_COLLECT_MARK_SWEEP}},
    {"concurrent_compact", ",uffd_sigbus=0",
     {FH_COLLECT_CONCURRENT_COMPACT, FH_COLLECT_MARK_COMPACT}},
    /* Explicit default collections are whole-heap ones; young collections
     * run when the heap triggers them (tests/test_gen_semispace.c covers
     * them on purpose). */
    {"gen_semispace", "", {FH_COLLECT_DEFAULT, FH_COLLECT_SEMISPACE}},
    /* mark_compact and concurrent_compact are generational by default
     * (their explicit collections above are full ones; young ones run
     * when the heap triggers them, tests/test_gen_mark_compact.c asks for
     * them): the same without generations, every collection full. */
    {"mark_compact", ",generational=0", {FH_COLLECT_DEFAULT, FH_COLLECT_YOUNG}},
};
const size_t test_nconfigs = sizeof test_configs / sizeof *test_configs;

fh_heap *test_config_heap(const test_config *c, test_types *ty, fh_thread **t) {
  char rest[256];
  snprintf(rest, sizeof rest, "heap_max=64M,verify=1%s", c->extra);
  return test_heap_attached(c->collector, rest, ty, t);
}

void test_config_collect(const test_config *c, fh_thread *t, int i) {
  assert_int_equal(fh_collect(t, c->kinds[i % 2]), 0);
}

void test_config_teardown(fh_heap *h, fh_thread *t) {
  fh_thread_detach(t);
  fh_heap_destroy(h);
}
