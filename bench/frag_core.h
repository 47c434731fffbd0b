/* The fragmentation workload's plan, shared by faultheap (wl_fragmentation.c)
 * and the malloc baselines (baseline_frag.c) so every allocator sees the
 * same sizes in the same order and keeps the same objects:
 *   - sizes exp(U(ln 16, ln 4096)) from a fixed xorshift64* seed, until
 *     1 GiB of requested bytes (about 1.46 million objects);
 *   - a seeded Fisher-Yates shuffle picks the 10% that stay live.
 * The side tables live in one mmap(MAP_POPULATE) made before the baseline
 * RSS is read, so they are not counted as heap memory. */
#ifndef FH_FRAG_CORE_H_
#define FH_FRAG_CORE_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FRAG_TOTAL_BYTES ((size_t)1 << 30)
#define FRAG_MAX_OBJECTS ((size_t)3 << 20) /* far above the ~1.46M needed */

typedef struct frag_plan {
  size_t n;           /* objects */
  uint32_t *sizes;    /* [n] requested bytes */
  uint8_t *keep;      /* [n] 1 = stays live */
  void **ptrs;        /* [n] the allocator's pointers; NULL once dropped */
  size_t live_bytes;  /* requested bytes of the kept objects */
  size_t total_bytes; /* requested bytes of all objects */
} frag_plan;

static inline uint64_t frag_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* 0, or -1 when the side tables cannot be mapped. */
static inline int frag_plan_make(frag_plan *p) {
  size_t bytes = FRAG_MAX_OBJECTS * (sizeof(uint32_t) + 1 + sizeof(void *) + sizeof(uint32_t));
  char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) return -1;
  memset(p, 0, sizeof *p);
  p->ptrs = (void **)mem;
  p->sizes = (uint32_t *)(mem + FRAG_MAX_OBJECTS * sizeof(void *));
  uint32_t *perm = p->sizes + FRAG_MAX_OBJECTS;
  p->keep = (uint8_t *)(perm + FRAG_MAX_OBJECTS);
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  const double lo = log(16.0), hi = log(4096.0);
  while (p->total_bytes < FRAG_TOTAL_BYTES && p->n < FRAG_MAX_OBJECTS) {
    double u = (double)(frag_next(&seed) >> 11) * (1.0 / 9007199254740992.0);
    uint32_t sz = (uint32_t)exp(lo + u * (hi - lo));
    if (sz < 16) sz = 16;
    if (sz > 4096) sz = 4096;
    p->sizes[p->n++] = sz;
    p->total_bytes += sz;
  }
  for (size_t i = 0; i < p->n; i++) perm[i] = (uint32_t)i;
  uint64_t seed2 = 0xD1B54A32D192ED03ull;
  for (size_t i = p->n - 1; i > 0; i--) {
    size_t j = (size_t)(frag_next(&seed2) % (i + 1));
    uint32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (size_t i = 0; i < p->n / 10; i++) {
    p->keep[perm[i]] = 1;
    p->live_bytes += p->sizes[perm[i]];
  }
  return 0;
}

/* The byte every byte of object i holds. */
static inline uint8_t frag_fill(size_t i) { return (uint8_t)(i * 131 + 7); }

/* Count the kept objects whose size or contents are wrong. */
static inline size_t frag_check(const frag_plan *p, size_t (*size_of)(const void *)) {
  size_t bad = 0;
  for (size_t i = 0; i < p->n; i++) {
    if (!p->keep[i]) continue;
    const uint8_t *o = p->ptrs[i];
    size_t sz = p->sizes[i];
    if (!o || (size_of && size_of(o) != sz) || o[0] != frag_fill(i) || o[sz - 1] != frag_fill(i) ||
        o[sz / 2] != frag_fill(i))
      bad++;
  }
  return bad;
}

/* Resident bytes of this process (statm). */
static inline size_t frag_rss(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (!f) return 0;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

#endif
