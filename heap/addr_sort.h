/* Sorting addresses (the pin set, every collection that has pins).
 *
 * glibc's qsort calls its comparison through a pointer for each of its
 * n log n steps: with 3,000 pins (fhbench pins, 1% of 300k nodes) it was
 * ~0.15 ms of each collection, 4% of a semispace cycle.  A least-
 * significant-digit radix sort over the bits in which the addresses
 * differ (11 bits a pass: two or three passes for one heap) is linear. */
#ifndef FH_ADDR_SORT_H_
#define FH_ADDR_SORT_H_

#include <stddef.h>
#include <stdint.h>

/* Sort v[0 .. n) ascending.  0, or -1 when no scratch memory could be had
 * (v is then sorted by qsort instead: the result is the same). */
int addr_sort(uintptr_t *v, size_t n);

#endif
