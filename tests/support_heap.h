/* Helpers shared by the heap tests: a heap from a spec string, and two
 * common types (a linked node and a variable-size reference array). */
#ifndef FH_TEST_SUPPORT_HEAP_H_
#define FH_TEST_SUPPORT_HEAP_H_

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
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
/* n live nodes pushed onto the list *head (a root), each through fh_write_ref. */
void test_list_build(fh_thread *t, const test_types *ty, tnode **head, size_t n);
void test_ring_build(fh_thread *t, const test_types *ty, test_ring *g, size_t n,
                     unsigned nonmoving_every, unsigned garbage);

/* The collection kinds a heap of `collector` can run, cycled through by i:
 * a mark-sweep heap alternates mark-sweep and homogeneous compaction, the
 * others run the default and every bump-space kind plus mark-sweep. */
fh_collect_kind test_collect_kind(const char *collector, int i);

/* The resident bytes of h's spaces (fh_get_stats). */
size_t test_spaces_resident(fh_heap *h);

/* A heap from a spec (NULL: defaults); fails the test on error. */
fh_heap *test_heap(const char *spec);
/* test_heap("collector=<collector>,<rest>") with the common types
 * registered in *ty and the calling thread attached in *t. */
fh_heap *test_heap_attached(const char *collector, const char *rest, test_types *ty,
                            fh_thread **t);
void test_register(fh_heap *h, test_types *ty);
/* The same without cmocka (for a forked child): 1 when all registered. */
int test_register_types(fh_heap *h, test_types *ty);
/* A heap from a spec without cmocka (for a forked child): NULL, with the
 * reason on stderr, on error. */
fh_heap *test_child_heap(const char *spec);
tnode *test_node(fh_thread *t, const test_types *ty, uint64_t value);
static inline uint64_t test_check(uint64_t v) { return v * 0x9E3779B97F4A7C15ull ^ 0x5bd1e995; }

/* ---- sanitizers and capabilities ---- */

/* Whether FH_TEST_SANITIZER names this sanitizer ("tsan", "asan"). */
int test_sanitizer_is(const char *name);
/* Whether the tests run under any sanitizer (FH_TEST_SANITIZER set). */
int test_sanitized(void);
/* Under TSan: says "skipped under TSan: <why>" and skips the test (cmocka's
 * skip() longjmps out of the test, so this works from a helper). */
void test_skip_under_tsan(const char *why);
/* Whether userfaultfd and MREMAP_DONTUNMAP work here; the skip says why. */
int test_have_uffd(void);
void test_skip_without_uffd(void);
/* concurrent_compact's slide-or-flip policy (read when a heap's compactor
 * is set up): let it choose, with the flip's fixed cost flip_cost_us;
 * and back to the suites' default, a flip every time. */
void test_policy_choose(const char *flip_cost_us);
void test_policy_flip_always(void);

/* ---- scenarios in forked children ----
 *
 * A child has no cmocka (its state belongs to the parent): it reports a
 * failed check with a line on stderr naming the place and fh_last_error(),
 * and an exit status.  SCENARIO_CHECK returns 1 from a scenario function
 * (one test_run_isolated may run in this process); CHILD_CHECK _exits 1,
 * for code that only ever runs in a forked child. */
void test_child_report(const char *file, int line, const char *expr);
#define SCENARIO_CHECK(c)                                                                \
  do {                                                                                   \
    if (!(c)) {                                                                          \
      test_child_report(__FILE__, __LINE__, #c);                                         \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)
#define CHILD_CHECK(c)                                                                   \
  do {                                                                                   \
    if (!(c)) {                                                                          \
      test_child_report(__FILE__, __LINE__, #c);                                         \
      _exit(1);                                                                          \
    }                                                                                    \
  } while (0)

/* In a freshly forked child that builds its own heap: fatal signals back to
 * SIG_DFL (cmocka's handlers would go on running the suite in the child)
 * and alarm(timeout_s), so a crash or a hang is the child's wait status. */
void test_child_signals(unsigned timeout_s);
/* fn(arg) in a forked child set up by test_child_signals; the child's exit
 * code is fn's result.  Returns the wait status. */
int test_run_forked(int (*fn)(void *), void *arg, unsigned timeout_s);
/* The same, but under TSan fn runs in this process (no new threads in the
 * child of a multi-threaded process there); its result is returned as the
 * wait status of a child that exited with it. */
int test_run_isolated(int (*fn)(void *), void *arg, unsigned timeout_s);
/* 1 when status is a clean exit 0; otherwise 0 with how the child ended in
 * why ("child exited with 3", "child killed by signal 14 (hung: alarm)"). */
int test_child_ok(int status, char *why, size_t n);
/* Fails the test with "<what>: <how the child ended>" unless it exited 0. */
void test_assert_child_ok_at(int status, const char *what, const char *file, int line);
#define test_assert_child_ok(status, what) \
  test_assert_child_ok_at(status, what, __FILE__, __LINE__)

#endif
