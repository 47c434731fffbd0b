#include "spaces/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "heap/error.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

static fh_arena *arena_of(extent_hooks_t *h) { return ((arena_hooks *)h)->owner; }

/* Extents are carved in address order from the frontier.  A request for a
 * specific address (jemalloc growing an extent in place) succeeds only when
 * that address is the frontier. */
static void *hook_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t alignment,
                        bool *zero, bool *commit, unsigned arena_ind) {
  (void)arena_ind;
  fh_arena *a = arena_of(h);
  uintptr_t old = atomic_load(&a->frontier), start, next;
  do {
    start = new_addr ? (uintptr_t)new_addr : align_up(old, alignment ? alignment : FH_PAGE);
    if (new_addr && (uintptr_t)new_addr != old) return NULL;
    next = start + size;
    if (next > a->end || next < start) return NULL;
  } while (!atomic_compare_exchange_weak(&a->frontier, &old, next));
  /* A guarded part (verify=1: arena_guard) becomes accessible again; the
   * extent is whole pages.  If that fails the extent is lost to the range
   * (the frontier moved past it), and jemalloc is told there is none. */
  uintptr_t guarded = atomic_load(&a->guarded_end);
  if (start < guarded &&
      sys_mprotect((void *)start, (next < guarded ? next : guarded) - start,
                   PROT_READ | PROT_WRITE) != 0)
    return NULL;
  /* Memory past the frontier has never been handed out since the range was
   * last discarded, so it reads as zero. */
  *zero = true;
  *commit = true;
  return (void *)start;
}

/* Refusing deallocation makes jemalloc retain the extent for reuse: memory
 * never leaves the range. */
static bool hook_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed,
                        unsigned arena_ind) {
  (void)h, (void)addr, (void)size, (void)committed, (void)arena_ind;
  return true;
}

static void hook_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed,
                         unsigned arena_ind) {
  (void)h, (void)committed, (void)arena_ind;
  reserve_discard((uintptr_t)addr, size);
}

/* The range is mapped read-write once; commit is a no-op and decommit is
 * refused so jemalloc purges instead. */
static bool hook_commit(extent_hooks_t *h, void *addr, size_t size, size_t offset,
                        size_t length, unsigned arena_ind) {
  (void)h, (void)addr, (void)size, (void)offset, (void)length, (void)arena_ind;
  return false;
}
static bool hook_decommit(extent_hooks_t *h, void *addr, size_t size, size_t offset,
                          size_t length, unsigned arena_ind) {
  (void)h, (void)addr, (void)size, (void)offset, (void)length, (void)arena_ind;
  return true;
}
static bool hook_purge_forced(extent_hooks_t *h, void *addr, size_t size, size_t offset,
                              size_t length, unsigned arena_ind) {
  (void)h, (void)size, (void)arena_ind;
  reserve_discard((uintptr_t)addr + offset, length);
  return false; /* purged: pages read as zero */
}
static bool hook_split(extent_hooks_t *h, void *addr, size_t size, size_t size_a, size_t size_b,
                       bool committed, unsigned arena_ind) {
  (void)h, (void)addr, (void)size, (void)size_a, (void)size_b, (void)committed, (void)arena_ind;
  return false;
}
static bool hook_merge(extent_hooks_t *h, void *addr_a, size_t size_a, void *addr_b,
                       size_t size_b, bool committed, unsigned arena_ind) {
  (void)h, (void)addr_a, (void)size_a, (void)addr_b, (void)size_b, (void)committed,
      (void)arena_ind;
  return false;
}

void arena_open(fh_arena *a, uintptr_t begin, size_t size) {
  memset(a, 0, sizeof *a);
  a->begin = begin;
  a->end = begin + size;
  atomic_store(&a->frontier, begin);
}

int arena_start(fh_arena *a) {
  a->hooks = malloc(sizeof *a->hooks);
  if (!a->hooks) {
    fh_error_set("out of memory creating a jemalloc arena");
    return -1;
  }
  a->hooks->hooks = (extent_hooks_t){hook_alloc,  hook_dalloc, hook_destroy,      hook_commit,
                                     hook_decommit, NULL,      hook_purge_forced, hook_split,
                                     hook_merge};
  a->hooks->owner = a;
  extent_hooks_t *hp = &a->hooks->hooks;
  size_t sz = sizeof a->index;
  int err = sys_mallctl("arenas.create", &a->index, &sz, &hp, sizeof hp);
  if (err) {
    free(a->hooks);
    a->hooks = NULL;
    fh_error_set("jemalloc arenas.create failed: %s", strerror(err));
    return -1;
  }
  return 0;
}

#ifdef FH_JEMALLOC_PRIVATE
/* The private jemalloc's options (Makefile: JE_PRIVATE; its weak
 * malloc_conf and malloc_conf_2_conf_harder, renamed: the second is read
 * after MALLOC_CONF, which is meant for the process's own jemalloc and
 * must not bring these back).  Every allocation of the heap names its arena
 * and either no tcache or an explicit one, so jemalloc's automatic
 * per-thread caches and arenas would only hold memory, and setting them
 * up at a thread's first call is what jemalloc cannot survive when mmap
 * fails there: the thread's arena (created on demand, one per thread up
 * to 4 per CPU) is left NULL, and its tcache, or an explicit one, which
 * is tied to that arena, crashes in tcache_arena_associate
 * (tests/test_urcu.c).  So: no automatic tcaches, and one automatic arena
 * (arena 0, made at initialisation), which every thread shares.
 * MALLOC_CONF may set other options. */
#define PRIVATE_JEMALLOC_CONF "tcache:false,narenas:1"
const char *fh_je_malloc_conf = PRIVATE_JEMALLOC_CONF;
const char *fh_je_malloc_conf_2_conf_harder = PRIVATE_JEMALLOC_CONF;
#endif

int arena_create(fh_arena *a, uintptr_t begin, size_t size) {
  arena_open(a, begin, size);
  return arena_start(a);
}

size_t arena_size_class(size_t bytes) {
  /* Four classes per doubling: above 2^k, multiples of 2^(k-2), and of
   * 16 bytes at least (8 for the smallest). */
  if (bytes <= 8) return 8;
  unsigned k = 63u - (unsigned)__builtin_clzll((unsigned long long)(bytes - 1));
  size_t step = k >= 6 ? (size_t)1 << (k - 2) : 16;
  return (bytes + step - 1) & ~(step - 1);
}

size_t arena_range_bytes(size_t limit) {
  /* jemalloc's first metadata block: HUGEPAGE-aligned and sized (base.c). */
  size_t meta = FH_PMD;
  /* The largest allocation: its size class, plus the large pad
   * (cache-oblivious placement) of a page. */
  size_t largest = arena_size_class(limit) + FH_PAGE;
  /* Filled with smaller objects instead, size classes waste up to a fifth
   * of the bytes they hand out (limit / 4 of the range), and the metadata
   * may need a second block (more extents than the first one describes).
   * Only address space: untouched pages cost nothing. */
  size_t slack = limit / 4 + FH_PMD;
  return align_up(meta + largest + slack, FH_PMD);
}

static void arena_ctl(fh_arena *a, const char *op) {
  if (!a->hooks) return; /* never started: nothing to do */
  char name[64];
  snprintf(name, sizeof name, "arena.%u.%s", a->index, op);
  sys_mallctl(name, NULL, NULL, NULL, 0);
}

void arena_destroy(fh_arena *a) {
  if (!a->hooks) return; /* opened, never started: jemalloc never knew it */
  /* jemalloc forgets the arena; our range is unmapped by the heap after. */
  char name[64];
  snprintf(name, sizeof name, "arena.%u.destroy", a->index);
  if (sys_mallctl(name, NULL, NULL, NULL, 0) == 0) { /* else jemalloc may still call the hooks */
    free(a->hooks);
    a->hooks = NULL;
  }
}

void *arena_alloc(fh_arena *a, size_t bytes) {
  return sys_mallocx(bytes, MALLOCX_ARENA(a->index) | MALLOCX_TCACHE_NONE | MALLOCX_ZERO |
                                MALLOCX_ALIGN(16));
}

void arena_free(fh_arena *a, void *p) {
  (void)a;
  dallocx(p, MALLOCX_TCACHE_NONE);
}

/* Harmless if it fails: the free pages stay resident until the next purge. */
void arena_purge(fh_arena *a) { arena_ctl(a, "purge"); }

int arena_guard(fh_arena *a, uintptr_t upto) {
  uintptr_t from = align_up(atomic_load(&a->frontier), FH_PAGE);
  if (upto > a->end) upto = a->end;
  if (upto <= from) return 0;
  if (sys_mprotect((void *)from, upto - from, PROT_NONE) != 0) return -1;
  /* Never lowered: what an earlier guard protected beyond upto still is. */
  if (upto > atomic_load(&a->guarded_end)) atomic_store(&a->guarded_end, upto);
  return 0;
}

int arena_reset(fh_arena *a) {
  uintptr_t begin = a->begin;
  size_t size = a->end - a->begin;
  uintptr_t used_end = atomic_load(&a->frontier);
  /* Pages past the frontier may still be PROT_NONE from arena_guard: the
   * new arena must keep unguarding them as its frontier passes (forgetting
   * this, jemalloc later handed out extents there, and a mutator zeroing a
   * run or homogeneous compaction copying into one faulted). */
  uintptr_t guarded = atomic_load(&a->guarded_end);
  char name[64];
  snprintf(name, sizeof name, "arena.%u.destroy", a->index);
  int err = sys_mallctl(name, NULL, NULL, NULL, 0);
  if (err) {
    /* The arena still owns its memory: touching the range would corrupt it. */
    fh_error_set("jemalloc %s failed: %s", name, strerror(err));
    return -1;
  }
  /* Destroying discards retained extents through hook_destroy; whatever
   * jemalloc kept as metadata is gone with the arena, so the whole carved
   * part of the range is now ours to discard. */
  reserve_discard(begin, used_end - begin);
  free(a->hooks);
  if (arena_create(a, begin, size) < 0) {
    a->end = 0; /* nothing left to destroy */
    fh_error_prefix("cannot recreate the jemalloc arena after a reset");
    return -1;
  }
  atomic_store(&a->guarded_end, guarded);
  return 0;
}

int arena_tcache_create(void) {
  unsigned id;
  size_t sz = sizeof id;
  int err = sys_mallctl("tcache.create", &id, &sz, NULL, 0);
  if (err) {
    fh_error_set("jemalloc tcache.create failed: %s", strerror(err));
    return -1;
  }
  return (int)id;
}

int arena_tcache_flush(int tcache) {
  if (tcache < 0) return 0;
  unsigned id = (unsigned)tcache;
  int err = sys_mallctl("tcache.flush", NULL, NULL, &id, sizeof id);
  if (err) {
    fh_error_set("jemalloc tcache.flush failed: %s", strerror(err));
    return -1;
  }
  return 0;
}

void arena_tcache_destroy(int tcache) {
  if (tcache < 0) return;
  unsigned id = (unsigned)tcache;
  /* Harmless if it fails: the id is forgotten, so whatever the cache still
   * holds is never handed out again (a leak of a few free regions). */
  sys_mallctl("tcache.destroy", NULL, NULL, &id, sizeof id);
}
