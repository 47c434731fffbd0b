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

/* A heap from a spec (NULL: defaults); fails the test on error. */
fh_heap *test_heap(const char *spec);
void test_register(fh_heap *h, test_types *ty);
tnode *test_node(fh_thread *t, const test_types *ty, uint64_t value);
static inline uint64_t test_check(uint64_t v) { return v * 0x9E3779B97F4A7C15ull ^ 0x5bd1e995; }

#endif
