/* fh_mmu: minimum mutator utilisation over sliding windows (Cheng and
 * Blelloch, "A parallel, real-time garbage collector", PLDI 2001), from a
 * list of intervals in which the mutator made no progress.
 *
 * After clipping, sorting and merging the stalls into disjoint intervals,
 * the stalled time inside a window [s, s + w) is a piecewise linear
 * function of s whose slope changes only where s or s + w crosses an
 * interval's end.  It rises while the window's right edge is inside a stall
 * and its left edge is not, so its maxima are where a window starts at a
 * stall's beginning or ends at a stall's end (or at the span's ends): those
 * are the only windows evaluated, each in O(log n) with prefix sums. */
#include <stdlib.h>
#include <string.h>

#include "heap/error.h"
#include "faultheap.h"

static int by_begin(const void *a, const void *b) {
  const fh_interval *x = a, *y = b;
  return x->begin_ns < y->begin_ns ? -1 : x->begin_ns > y->begin_ns;
}

/* Stalled time in [B, x) over the merged intervals iv[0..n) with
 * cum[i] the stalled time of iv[0..i). */
static uint64_t stalled_before(const fh_interval *iv, const uint64_t *cum, size_t n, uint64_t x) {
  size_t lo = 0, hi = n; /* first interval beginning at or after x */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (iv[mid].begin_ns < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return 0;
  const fh_interval *last = &iv[lo - 1]; /* begins before x: in part or whole */
  uint64_t end = last->end_ns < x ? last->end_ns : x;
  return cum[lo - 1] + (end - last->begin_ns);
}

double fh_mmu(const fh_interval *stalls, size_t n, uint64_t begin_ns, uint64_t end_ns,
              uint64_t window_ns) {
  if ((n && !stalls) || !window_ns) {
    fh_error_set("fh_mmu: %s", window_ns ? "stalls is NULL" : "window_ns is 0");
    return -1.0;
  }
  if (end_ns <= begin_ns || n == 0) return 1.0;
  fh_interval *iv = malloc(n * sizeof *iv);
  uint64_t *cum = malloc((n + 1) * sizeof *cum);
  if (!iv || !cum) {
    free(iv);
    free(cum);
    fh_error_set("fh_mmu: out of memory for %zu intervals", n);
    return -1.0;
  }
  /* Clip to the span, drop empty ones, sort, merge overlapping ones. */
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t b = stalls[i].begin_ns > begin_ns ? stalls[i].begin_ns : begin_ns;
    uint64_t e = stalls[i].end_ns < end_ns ? stalls[i].end_ns : end_ns;
    if (b < e) iv[m++] = (fh_interval){b, e};
  }
  qsort(iv, m, sizeof *iv, by_begin);
  size_t k = 0;
  for (size_t i = 0; i < m; i++) {
    if (k && iv[i].begin_ns <= iv[k - 1].end_ns) {
      if (iv[i].end_ns > iv[k - 1].end_ns) iv[k - 1].end_ns = iv[i].end_ns;
    } else {
      iv[k++] = iv[i];
    }
  }
  cum[0] = 0;
  for (size_t i = 0; i < k; i++) cum[i + 1] = cum[i] + (iv[i].end_ns - iv[i].begin_ns);
  uint64_t span = end_ns - begin_ns;
  double mmu;
  if (window_ns >= span) {
    mmu = 1.0 - (double)cum[k] / (double)span; /* the one window: the span */
  } else {
    uint64_t last_start = end_ns - window_ns, worst = 0;
    /* The span's two ends, then each stall's beginning and end. */
    for (size_t i = 0; i <= 2 * k + 1; i++) {
      uint64_t s;
      if (i == 0)
        s = begin_ns;
      else if (i == 1)
        s = last_start;
      else if (i % 2 == 0)
        s = iv[(i - 2) / 2].begin_ns;
      else
        s = iv[(i - 2) / 2].end_ns >= begin_ns + window_ns ? iv[(i - 2) / 2].end_ns - window_ns
                                                            : begin_ns;
      if (s > last_start) s = last_start;
      uint64_t st = stalled_before(iv, cum, k, s + window_ns) - stalled_before(iv, cum, k, s);
      if (st > worst) worst = st;
    }
    mmu = 1.0 - (double)worst / (double)window_ns;
  }
  free(iv);
  free(cum);
  return mmu;
}
