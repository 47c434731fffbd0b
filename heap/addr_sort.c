/* See heap/addr_sort.h. */
#include "heap/addr_sort.h"

#include <stdlib.h>
#include <string.h>

#define DIGIT_BITS 11
#define DIGITS (1u << DIGIT_BITS)
/* Below this, insertion sort. */
#define SMALL 32

static int cmp_addr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return (x > y) - (x < y);
}

static void insertion(uintptr_t *v, size_t n) {
  for (size_t i = 1; i < n; i++) {
    uintptr_t x = v[i];
    size_t j = i;
    for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
    v[j] = x;
  }
}

int addr_sort(uintptr_t *v, size_t n) {
  if (n <= SMALL) {
    insertion(v, n);
    return 0;
  }
  uintptr_t lo = v[0], diff = 0;
  for (size_t i = 1; i < n; i++)
    if (v[i] < lo) lo = v[i];
  for (size_t i = 0; i < n; i++) diff |= v[i] - lo;
  if (!diff) return 0; /* all equal */
  unsigned shift = (unsigned)__builtin_ctzll(diff), top = 64u - (unsigned)__builtin_clzll(diff);
  uintptr_t *tmp = malloc(n * sizeof *tmp);
  size_t *count = malloc(DIGITS * sizeof *count);
  if (!tmp || !count) {
    free(tmp);
    free(count);
    qsort(v, n, sizeof *v, cmp_addr);
    return -1;
  }
  uintptr_t *src = v, *dst = tmp;
  for (unsigned s = shift; s < top; s += DIGIT_BITS) {
    memset(count, 0, DIGITS * sizeof *count);
    for (size_t i = 0; i < n; i++) count[((src[i] - lo) >> s) & (DIGITS - 1)]++;
    size_t sum = 0;
    for (size_t d = 0; d < DIGITS; d++) {
      size_t c = count[d];
      count[d] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; i++) dst[count[((src[i] - lo) >> s) & (DIGITS - 1)]++] = src[i];
    uintptr_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != v) memcpy(v, src, n * sizeof *v);
  free(tmp);
  free(count);
  return 0;
}
