/* The collector configurations a feature test runs under: every collector
 * with two collection kinds each (a mark-sweep heap alternates mark-sweep
 * and homogeneous compaction), the concurrent compactor in both fault
 * modes. */
#ifndef FH_TEST_SUPPORT_CONFIGS_H_
#define FH_TEST_SUPPORT_CONFIGS_H_

#include "support_heap.h"

typedef struct test_config {
  const char *collector; /* the collector= option */
  const char *extra;     /* more options, each with a leading comma */
  fh_collect_kind kinds[2];
} test_config;

extern const test_config test_configs[];
extern const size_t test_nconfigs;

/* heap_max=64M,verify=1 and the configuration's options; the common types
 * registered in *ty, the calling thread attached in *t. */
fh_heap *test_config_heap(const test_config *c, test_types *ty, fh_thread **t);
/* Collection i (kinds[i % 2]).  Not waited for: after a concurrent
 * compaction's pause the checks that follow read pages the compactor
 * builds meanwhile, which must show what the pause decided. */
void test_config_collect(const test_config *c, fh_thread *t, int i);
void test_config_teardown(fh_heap *h, fh_thread *t);

#endif
