/* heap/addr_sort.c: the pin set's sort gives what qsort gives, for the
 * shapes pins take (few, many, repeated, spread over spaces far apart). */
#include <stdlib.h>
#include <string.h>

#include "heap/addr_sort.h"
#include "support_heap.h"

static int cmp(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return (x > y) - (x < y);
}

static void check(uintptr_t *v, size_t n) {
  uintptr_t *want = malloc(n * sizeof *want + 1);
  assert_non_null(want);
  memcpy(want, v, n * sizeof *v);
  qsort(want, n, sizeof *want, cmp);
  assert_int_equal(addr_sort(v, n), 0);
  assert_memory_equal(v, want, n * sizeof *v);
  free(want);
}

static void sorts_like_qsort(void **state) {
  (void)state;
  static uintptr_t v[20000];
  uint64_t x = 88172645463325252ull;
  static const size_t sizes[] = {0, 1, 2, 31, 32, 33, 1000, 20000};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    size_t n = sizes[s];
    for (int shape = 0; shape < 4; shape++) {
      for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uintptr_t base = 0x7f0000000000ull + (shape == 3 ? (x >> 60) << 32 : 0);
        switch (shape) {
        case 0: v[i] = base + ((x & 0xffffff) << 3); break;      /* one space */
        case 1: v[i] = base + ((x & 0xf) << 3); break;           /* many repeats */
        case 2: v[i] = base + ((n - i) << 5); break;             /* descending */
        default: v[i] = base + ((x & 0xfffff) << 4); break;      /* spaces far apart */
        }
      }
      check(v, n);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(sorts_like_qsort)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
