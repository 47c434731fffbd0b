/* Runs: small objects of a malloc space carved by the heap from 28 KiB
 * jemalloc allocations instead of one jemalloc call each (see
 * malloc_space.h and docs/architecture.md, "Runs").
 *
 * A run is one large jemalloc allocation of MS_RUN_BYTES, page-aligned.
 * Objects of any size up to MS_RUN_OBJ_MAX are bump-allocated into its
 * holes (heap/malloc_heap.c); each is an object like any other of the
 * space (allocation bit, header), so marking, walks, conservative lookups
 * and compaction see no difference.  The sweep frees a dead run object by
 * clearing its bit: no jemalloc call.  A run whose objects all died goes
 * back to jemalloc (or waits on the empty list for reuse); one with room
 * waits on the partial list.
 *
 * Which pages are runs: run_page, one byte per page of the range (the
 * first page of a run is 1, the next 2, ...).  Run state and list links
 * are kept per first page.  The run belongs to whoever claims its first
 * bitmap word in a sweep; anyone else skips its pages. */
#include <string.h>

#include "heap/sys.h"
#include "spaces/malloc_space.h"
#include "spaces/reserve.h"

/* jemalloc adds a pad page to a large allocation (opt.cache_oblivious);
 * page alignment keeps it from randomising the start, and 7 pages + pad
 * make a 32 KiB extent, so runs tile the range without gaps. */
#define RUN_FLAGS (MALLOCX_ALIGN(FH_PAGE) | MALLOCX_TCACHE_NONE)

static size_t run_index(const malloc_space *s, uintptr_t run) {
  return (run - s->space.begin) / FH_PAGE;
}
static uintptr_t run_addr(const malloc_space *s, size_t page) {
  return s->space.begin + page * FH_PAGE;
}

int malloc_runs_init(malloc_space *s) {
  size_t pages = (s->space.end - s->space.begin) / FH_PAGE;
  s->run_table_pages = pages;
  s->run_page = reserve_map_table(align_up(pages, FH_PAGE));
  s->run_state = reserve_map_table(align_up(pages, FH_PAGE));
  s->run_cold = reserve_map_table(align_up(pages, FH_PAGE));
  s->run_next = reserve_map_table(align_up(pages * sizeof(uint32_t), FH_PAGE));
  pthread_mutex_init(&s->run_lock, NULL);
  s->run_lock_ready = 1;
  if (!s->run_page || !s->run_state || !s->run_cold || !s->run_next) return -1;
  return 0;
}

void malloc_runs_destroy(malloc_space *s) {
  size_t pages = s->run_table_pages;
  if (s->run_page) sys_munmap((void *)s->run_page, align_up(pages, FH_PAGE));
  if (s->run_state) sys_munmap((void *)s->run_state, align_up(pages, FH_PAGE));
  if (s->run_cold) sys_munmap((void *)s->run_cold, align_up(pages, FH_PAGE));
  if (s->run_next) sys_munmap(s->run_next, align_up(pages * sizeof(uint32_t), FH_PAGE));
  s->run_page = s->run_state = s->run_cold = NULL;
  s->run_next = NULL;
  if (s->run_lock_ready) pthread_mutex_destroy(&s->run_lock);
  s->run_lock_ready = 0;
}

uintptr_t malloc_run_new(malloc_space *s) {
  if (!s->arena.end || !s->run_page) return 0;
  void *p = sys_mallocx(MS_RUN_BYTES, MALLOCX_ARENA(s->arena.index) | RUN_FLAGS);
  if (!p) return 0;
  size_t page = run_index(s, (uintptr_t)p);
  /* Left by objects that were here before (not in a run, or in a run that
   * was not looked at since): the new run is one hole. */
  malloc_run_clear_cover(s, (uintptr_t)p);
  atomic_store_explicit(&s->run_state[page], MS_RUN_HELD, memory_order_relaxed);
  atomic_store_explicit(&s->run_cold[page], 0, memory_order_relaxed);
  for (unsigned i = 0; i < MS_RUN_PAGES; i++)
    atomic_store_explicit(&s->run_page[page + i], (uint8_t)(i + 1), memory_order_relaxed);
  atomic_fetch_add_explicit(&s->runs, 1, memory_order_relaxed);
  return (uintptr_t)p;
}

/* The run holds no object (and no thread allocates in it). */
static void run_free(malloc_space *s, size_t page) {
  /* The tables first: once jemalloc has the memory it may hand it to a
   * thread as a new run, which writes them again. */
  for (unsigned i = 0; i < MS_RUN_PAGES; i++)
    atomic_store_explicit(&s->run_page[page + i], 0, memory_order_relaxed);
  atomic_store_explicit(&s->run_state[page], 0, memory_order_relaxed);
  atomic_fetch_sub_explicit(&s->runs, 1, memory_order_relaxed);
  sdallocx((void *)run_addr(s, page), MS_RUN_BYTES, RUN_FLAGS);
}

static void run_push(malloc_space *s, size_t page, int empty) {
  pthread_mutex_lock(&s->run_lock);
  uint32_t *head = empty ? &s->run_empty : &s->run_partial;
  s->run_next[page] = *head;
  *head = (uint32_t)(page + 1);
  s->run_nempty += (size_t)empty;
  atomic_store_explicit(&s->run_state[page], MS_RUN_LISTED, memory_order_relaxed);
  pthread_mutex_unlock(&s->run_lock);
}

uintptr_t malloc_run_pop(malloc_space *s) {
  if (!s->run_page) return 0;
  pthread_mutex_lock(&s->run_lock);
  uint32_t *head = s->run_partial ? &s->run_partial : &s->run_empty;
  uint32_t top = *head;
  if (top) {
    *head = s->run_next[top - 1];
    if (head == &s->run_empty) s->run_nempty--;
    atomic_store_explicit(&s->run_state[top - 1], MS_RUN_HELD, memory_order_relaxed);
    atomic_store_explicit(&s->run_cold[top - 1], 0, memory_order_relaxed);
  }
  pthread_mutex_unlock(&s->run_lock);
  return top ? run_addr(s, top - 1) : 0;
}

uintptr_t malloc_run_pop_empty(malloc_space *s) {
  if (!s->run_page) return 0;
  pthread_mutex_lock(&s->run_lock);
  uint32_t top = s->run_empty;
  if (top) {
    s->run_empty = s->run_next[top - 1];
    s->run_nempty--;
    atomic_store_explicit(&s->run_state[top - 1], MS_RUN_HELD, memory_order_relaxed);
    atomic_store_explicit(&s->run_cold[top - 1], 0, memory_order_relaxed);
  }
  pthread_mutex_unlock(&s->run_lock);
  return top ? run_addr(s, top - 1) : 0;
}

/* Empty runs past this many times the kept ones (plus a floor) go back to
 * jemalloc; below it they stay listed, cold.  Given back, adjacent runs
 * merge into dirty extents that jemalloc will not split for a run
 * (opt.lg_extent_max_active_fit: at most 64 times the request), so it
 * carved new runs from fresh range instead: GCBench on mark_sweep peaked
 * at 51 MiB instead of 43 when every spare run went back. */
#define RUN_COLD_FACTOR 8
#define RUN_COLD_FLOOR 256

void malloc_runs_trim_empty(malloc_space *s, size_t keep) {
  if (!s->run_page) return;
  /* The list's head is the run swept last, so the highest-addressed when
   * one sweep filled it (sweeps go up): the first n - keep leave the list,
   * the highest n - cap of them for jemalloc, the others to be discarded
   * outside the lock (mutators pop runs meanwhile) and listed again after
   * the warm ones, which are popped first. */
  pthread_mutex_lock(&s->run_lock);
  size_t n = s->run_nempty, cap = keep * (RUN_COLD_FACTOR + 1) + RUN_COLD_FLOOR;
  if (n <= keep) {
    pthread_mutex_unlock(&s->run_lock);
    return;
  }
  uint32_t cut = s->run_empty, last = cut;
  for (size_t i = 1; i < n - keep; i++) last = s->run_next[last - 1];
  s->run_empty = s->run_next[last - 1];
  s->run_next[last - 1] = 0;
  s->run_nempty = keep;
  pthread_mutex_unlock(&s->run_lock);
  uint32_t cold = 0, cold_last = 0;
  size_t ncold = 0;
  for (size_t i = 0; cut; i++) {
    uint32_t next = s->run_next[cut - 1];
    if (n - i > cap) {
      run_free(s, cut - 1);
    } else {
      if (!atomic_load_explicit(&s->run_cold[cut - 1], memory_order_relaxed) &&
          reserve_discard(run_addr(s, cut - 1), MS_RUN_BYTES) == 0)
        atomic_store_explicit(&s->run_cold[cut - 1], 1, memory_order_relaxed);
      s->run_next[cut - 1] = 0;
      if (cold_last) s->run_next[cold_last - 1] = cut; else cold = cut;
      cold_last = cut;
      ncold++;
    }
    cut = next;
  }
  if (!cold) return;
  pthread_mutex_lock(&s->run_lock);
  uint32_t *tail = &s->run_empty;
  while (*tail) tail = &s->run_next[*tail - 1];
  *tail = cold;
  s->run_nempty += ncold;
  pthread_mutex_unlock(&s->run_lock);
}

void malloc_runs_release_empty(malloc_space *s) {
  if (!s->run_page) return;
  pthread_mutex_lock(&s->run_lock);
  uint32_t top = s->run_empty;
  s->run_empty = 0;
  s->run_nempty = 0;
  pthread_mutex_unlock(&s->run_lock);
  while (top) {
    uint32_t next = s->run_next[top - 1];
    run_free(s, top - 1);
    top = next;
  }
}


void malloc_runs_begin_sweep(malloc_space *s, uintptr_t end) {
  if (!s->run_page) return;
  /* World stopped: every run is re-swept, so the lists start over.  (The
   * lock only orders this after the last sweeper's pushes, for TSan.) */
  pthread_mutex_lock(&s->run_lock);
  s->run_partial = s->run_empty = 0;
  s->run_nempty = 0;
  pthread_mutex_unlock(&s->run_lock);
  size_t last = end > s->space.begin ? run_index(s, end - 1) + 1 : 0;
  for (size_t page = 0; page < last; page++)
    if (atomic_load_explicit(&s->run_page[page], memory_order_relaxed) == 1)
      atomic_store_explicit(&s->run_state[page], MS_RUN_TO_SWEEP, memory_order_relaxed);
}

void malloc_runs_forget(malloc_space *s, uintptr_t end) {
  if (!s->run_page) return;
  pthread_mutex_lock(&s->run_lock);
  s->run_partial = s->run_empty = 0;
  s->run_nempty = 0;
  pthread_mutex_unlock(&s->run_lock);
  atomic_store(&s->runs, 0);
  if (end <= s->space.begin) return;
  size_t pages = run_index(s, end - 1) + 1;
  memset((void *)s->run_page, 0, pages);
  memset((void *)s->run_state, 0, pages);
}

/* Without -mpopcnt, __builtin_popcountll is a libgcc call (2% of the
 * sweep-heavy allocation benchmark). */
static inline size_t popcount64(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ull);
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return (size_t)((x * 0x0101010101010101ull) >> 56);
}

static void clear_cover(malloc_space *s, size_t w0) {
  for (size_t w = w0; w < w0 + MS_RUN_WORDS; w++)
    atomic_store_explicit(&s->cover_bits.words[w], 0, memory_order_relaxed);
}

void malloc_run_clear_cover(malloc_space *s, uintptr_t run) {
  clear_cover(s, bitmap_index(&s->cover_bits, run) >> 6);
}

void malloc_runs_clear_listed(malloc_space *s) {
  if (!s->run_page) return;
  pthread_mutex_lock(&s->run_lock);
  for (int k = 0; k < 2; k++)
    for (uint32_t top = k ? s->run_empty : s->run_partial; top; top = s->run_next[top - 1])
      malloc_run_clear_cover(s, run_addr(s, top - 1));
  pthread_mutex_unlock(&s->run_lock);
}

size_t malloc_run_sweep(malloc_space *s, size_t page, int count, uintptr_t *adopt) {
  uint8_t expect = MS_RUN_TO_SWEEP;
  if (!atomic_compare_exchange_strong(&s->run_state[page], &expect, MS_RUN_HELD)) return 0;
  uintptr_t run = run_addr(s, page);
  size_t w0 = bitmap_index(&s->alloc_bits, run) >> 6, freed = 0;
  uint64_t any = 0;
  size_t covered = 0;
  int derive = count || s->derive_cover;
  if (derive) clear_cover(s, w0);
  for (size_t w = w0; w < w0 + MS_RUN_WORDS; w++) {
    /* (Nobody allocates in a run before it is swept.) */
    uint64_t dead = malloc_space_take_dead(s, w);
    if (dead) {
      for (; count && dead; dead &= dead - 1) {
        uintptr_t p = bitmap_addr(&s->alloc_bits, (w << 6) + (size_t)__builtin_ctzll(dead));
        freed += malloc_object_bytes_hd(*(uint64_t *)p);
      }
    }
    uint64_t left = atomic_load_explicit(&s->alloc_bits.words[w], memory_order_relaxed);
    any |= left;
    /* A counted sweep (zygote compaction, tests) follows a trace that set
     * no cover bits: the survivors' are derived here from their headers
     * (the run's cover words were cleared before the loop). */
    for (; derive && left; left &= left - 1) {
      uintptr_t p = bitmap_addr(&s->alloc_bits, (w << 6) + (size_t)__builtin_ctzll(left));
      /* Atomic: a mutator may be hashing this live object (a CAS of its
       * flag and salt bits; the size bits never change). */
      malloc_space_cover(s, p, malloc_object_bytes_hd(__atomic_load_n((uint64_t *)p,
                                                                      __ATOMIC_RELAXED)));
    }
  }
  for (size_t w = w0; w < w0 + MS_RUN_WORDS; w++)
    covered += popcount64(atomic_load_explicit(&s->cover_bits.words[w], memory_order_relaxed));
  /* Marking set the cover bits of the live objects: the holes are the
   * rest.  (Free granules, small holes included: an estimate of room.) */
  size_t room = MS_RUN_BYTES - (covered << MS_GRANULE_SHIFT);
  if (!any) {
    clear_cover(s, w0); /* nothing lives here: no bit may hide a hole */
    if (adopt && !*adopt) {
      *adopt = run;
      atomic_store_explicit(&s->run_cold[page], 0, memory_order_relaxed);
    } else
      run_push(s, page, 1);
  } else if (room >= MS_RUN_MIN_ROOM) {
    if (adopt && !*adopt) /* (not cold: something lives in it) */
      *adopt = run;
    else
      run_push(s, page, 0);
  } else {
    clear_cover(s, w0); /* not used for allocation until the next sweep */
  }
  return freed;
}
