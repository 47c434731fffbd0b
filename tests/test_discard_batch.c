/* Batched MADV_DONTNEED (spaces/discard_batch.c): exactly the queued pages
 * read as zero afterwards and no other page changes, whether ranges join,
 * stay apart, overflow the vector (more than DISCARD_BATCH_MAX ranges) or
 * the per-call byte cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "spaces/discard_batch.h"
#include "spaces/reserve.h"

#define PAGES 3000

static uint8_t *filled_region(void) {
  uint8_t *p = mmap(NULL, (size_t)PAGES * FH_PAGE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  for (size_t i = 0; i < PAGES; i++) memset(p + i * FH_PAGE, (int)(i % 251) + 1, FH_PAGE);
  return p;
}

/* Every page: zero if discarded, its fill byte otherwise. */
static void check_region(const uint8_t *p, const uint8_t *discarded) {
  for (size_t i = 0; i < PAGES; i++) {
    uint8_t want = discarded[i] ? 0 : (uint8_t)(i % 251 + 1);
    const uint8_t *pg = p + i * FH_PAGE;
    assert_int_equal(pg[0], want);
    assert_int_equal(pg[FH_PAGE - 1], want);
  }
}

static void test_scattered_and_joined_ranges(void **s) {
  (void)s;
  uint8_t *p = filled_region();
  static uint8_t discarded[PAGES];
  memset(discarded, 0, sizeof discarded);
  static discard_batch b; /* zeroed: an empty batch */
  /* Every third page alone (more ranges than one vector holds), then a
   * run given as adjacent pieces that join into one range. */
  for (size_t i = 0; i < 2400; i += 3) {
    discard_batch_add(&b, (uintptr_t)(p + i * FH_PAGE), FH_PAGE);
    discarded[i] = 1;
  }
  for (size_t i = 2500; i < 2600; i++) {
    discard_batch_add(&b, (uintptr_t)(p + i * FH_PAGE), FH_PAGE);
    discarded[i] = 1;
  }
  discard_batch_flush(&b);
  assert_int_equal(b.n, 0);
  assert_int_equal(b.bytes, 0);
  check_region(p, discarded);
  discard_batch_flush(&b); /* flushing an empty batch does nothing */
  check_region(p, discarded);
  munmap(p, (size_t)PAGES * FH_PAGE);
}

static void test_joined_ranges_make_one_entry(void **s) {
  (void)s;
  uint8_t *p = filled_region();
  static discard_batch b;
  for (size_t i = 10; i < 20; i++) discard_batch_add(&b, (uintptr_t)(p + i * FH_PAGE), FH_PAGE);
  assert_int_equal(b.n, 1);
  assert_int_equal(b.bytes, 10 * FH_PAGE);
  discard_batch_add(&b, (uintptr_t)(p + 30 * FH_PAGE), 2 * FH_PAGE);
  assert_int_equal(b.n, 2);
  discard_batch_flush(&b);
  static uint8_t discarded[PAGES];
  memset(discarded, 0, sizeof discarded);
  memset(discarded + 10, 1, 10);
  memset(discarded + 30, 1, 2);
  check_region(p, discarded);
  munmap(p, (size_t)PAGES * FH_PAGE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scattered_and_joined_ranges),
      cmocka_unit_test(test_joined_ranges_make_one_entry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
