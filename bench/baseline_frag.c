/* The fragmentation workload against a peer allocator, built once per
 * allocator by bench/baselines.mk as build/bench/frag-<variant>:
 *   -DFRAG_GLIBC     glibc malloc, purged with malloc_trim(0)
 *   -DFRAG_JEMALLOC  linked with -ljemalloc, purged with arena.<all>.purge
 *   -DFRAG_MIMALLOC  linked with -lmimalloc, purged with mi_collect(true)
 * Allocates the plan's ~1 GiB (every byte written), frees the 90% the plan
 * drops, purges, and prints one line:
 *   "frag variant=V live_bytes=N rss_full=N rss_after_free=N rss_bytes=N purge_ms=X failures=N"
 * where the rss figures are this process's resident bytes minus what it had
 * before the first allocation. */
#include <stdlib.h>
#include <time.h>

#include "frag_core.h"

#if defined(FRAG_JEMALLOC)
#include <jemalloc/jemalloc.h>
#define FRAG_VARIANT "jemalloc"
static void purge(void) {
  char name[64];
  snprintf(name, sizeof name, "arena.%u.purge", 4096u); /* MALLCTL_ARENAS_ALL */
  mallctl(name, NULL, NULL, NULL, 0);
}
#elif defined(FRAG_MIMALLOC)
#include <mimalloc.h>
#define FRAG_VARIANT "mimalloc"
static void purge(void) {
  mi_collect(true);
  usleep(100 * 1000);
  mi_collect(true);
}
#elif defined(FRAG_GLIBC)
#include <malloc.h>
#define FRAG_VARIANT "glibc"
static void purge(void) { malloc_trim(0); }
#else
#error "define one of FRAG_GLIBC, FRAG_JEMALLOC, FRAG_MIMALLOC"
#endif

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  (void)argv;
  if (argc > 1) {
    fprintf(stderr, "usage: frag-%s (no arguments; fhbench fragmentation runs it)\n",
            FRAG_VARIANT);
    return 2;
  }
  frag_plan p;
  if (frag_plan_make(&p) < 0) {
    fprintf(stderr, "frag-%s: cannot map the side tables\n", FRAG_VARIANT);
    return 1;
  }
  size_t base = frag_rss();
  for (size_t i = 0; i < p.n; i++) {
    void *o = malloc(p.sizes[i]);
    if (!o) {
      fprintf(stderr, "frag-%s: out of memory\n", FRAG_VARIANT);
      return 1;
    }
    memset(o, frag_fill(i), p.sizes[i]);
    p.ptrs[i] = o;
  }
  size_t full = frag_rss() - base;
  for (size_t i = 0; i < p.n; i++)
    if (!p.keep[i]) {
      free(p.ptrs[i]);
      p.ptrs[i] = NULL;
    }
  size_t after_free = frag_rss() - base;
  double t0 = now_ms();
  purge();
  double purge_ms = now_ms() - t0;
  size_t after_purge = frag_rss() - base;
  size_t bad = frag_check(&p, NULL);
  printf("frag variant=%s live_bytes=%zu rss_full=%zu rss_after_free=%zu rss_bytes=%zu "
         "purge_ms=%.1f failures=%zu\n",
         FRAG_VARIANT, p.live_bytes, full, after_free, after_purge, purge_ms, bad);
  return bad ? 1 : 0;
}
