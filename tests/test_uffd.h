/* Shared helpers of the tests/test_uffd_*.c suites (header-only: the
 * Makefile links every tests/support_*.c into every test, which these do not
 * need). */
#ifndef FH_TEST_UFFD_H_
#define FH_TEST_UFFD_H_

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "faultheap.h"
#include "uffd/uffd.h"
#include "uffd/uffd_abi.h"

#define PG FH_UFFD_PAGE

/* Skip (with a message) when this process has no userfaultfd at all, or
 * lacks the capability bits the test needs. */
#define UFFD_REQUIRE(bits)                                                     \
  do {                                                                         \
    if ((fh_capabilities() & (FH_CAP_UFFD | (bits))) !=                        \
        (unsigned)(FH_CAP_UFFD | (bits))) {                                    \
      print_message("skipped: userfaultfd capability missing: ");             \
      fh_uffd_print_caps(stdout);                                              \
      skip();                                                                  \
    }                                                                          \
  } while (0)

static inline void *map_anon(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  assert_true(p != MAP_FAILED);
  return p;
}

/* The content every test page i of a "from-space" carries. */
static inline uint64_t pattern(size_t page, size_t word) {
  return ((uint64_t)page << 32) ^ (word * 0x9E3779B97F4A7C15ull) ^ 0x5a5a;
}

static inline void fill_pattern(void *base, size_t npages) {
  for (size_t p = 0; p < npages; p++) {
    uint64_t *w = (uint64_t *)((char *)base + p * PG);
    for (size_t i = 0; i < PG / 8; i++)
      w[i] = pattern(p, i);
  }
}

static inline int page_has_pattern(const void *page, size_t p) {
  const uint64_t *w = page;
  for (size_t i = 0; i < PG / 8; i++)
    if (w[i] != pattern(p, i))
      return 0;
  return 1;
}

static inline int page_is_zero(const void *page) {
  const uint64_t *w = page;
  for (size_t i = 0; i < PG / 8; i++)
    if (w[i])
      return 0;
  return 1;
}

#endif
