/* Helpers shared by the heap tests: a heap from a spec string, and two
 * common types (a linked node and a variable-size reference array). */
#ifndef FH_TEST_SUPPORT_HEAP_H_
#define FH_TEST_SUPPORT_HEAP_H_

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "faultheap.h"

typedef struct tnode {
  struct tnode *next;  /* ref at offset 0 */
  struct tnode *other; /* ref at offset 8 */
  uint64_t value;
  uint64_t check;      /* a function of value, to detect torn copies */
} tnode;

typedef struct test_types {
  uint32_t node;  /* tnode */
  uint32_t array; /* variable-size void *[] */
  uint32_t bytes; /* variable-size, no references */
} test_types;

/* A ring of n tnodes held by a reference array that is pushed as a root of
 * t: node i has value i and next = node i + 1 (mod n); every
 * nonmoving_every-th node is allocated non-moving, and `garbage` dead nodes
 * follow each one so the heap is fragmented. */
typedef struct test_ring {
  void **arr;
  size_t n;
} test_ring;
void test_ring_build(fh_thread *t, const test_types *ty, test_ring *g, size_t n,
                     unsigned nonmoving_every, unsigned garbage);

/* The collection kinds a heap of `collector` can run, cycled through by i:
 * a mark-sweep heap alternates mark-sweep and homogeneous compaction, the
 * others run the default and every bump-space kind plus mark-sweep. */
fh_collect_kind test_collect_kind(const char *collector, int i);

/* A heap from a spec (NULL: defaults); fails the test on error. */
fh_heap *test_heap(const char *spec);
/* test_heap("collector=<collector>,<rest>") with the common types
 * registered in *ty and the calling thread attached in *t. */
fh_heap *test_heap_attached(const char *collector, const char *rest, test_types *ty,
                            fh_thread **t);
void test_register(fh_heap *h, test_types *ty);
tnode *test_node(fh_thread *t, const test_types *ty, uint64_t value);
static inline uint64_t test_check(uint64_t v) { return v * 0x9E3779B97F4A7C15ull ^ 0x5bd1e995; }

#endif
