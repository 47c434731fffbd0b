/* The from-space ledger (see from_ledger.h). */
#include "collectors/from_ledger.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "heap/error.h"
#include "heap/object.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

#define PINNED LEDGER_PINNED
#define LIVE_WORDS_PER_PAGE (FWD_PAGE >> FWD_CHUNK_SHIFT)

int ledger_init(from_ledger *l, size_t capacity) {
  memset(l, 0, sizeof *l);
  size_t pages = capacity / FWD_PAGE;
  l->readers_bytes = align_up(pages * sizeof(uint32_t), FH_PAGE);
  l->ready_bytes = align_up((pages + 63) / 64 * sizeof(uint64_t), FH_PAGE);
  l->readers = reserve_map_table(l->readers_bytes);
  l->ready = reserve_map_table(l->ready_bytes);
  l->built = reserve_map_table(l->ready_bytes);
  l->dropped = reserve_map_table(l->ready_bytes);
  l->wake_ok = sem_init(&l->wake, 0, 0) == 0;
  if (!l->readers || !l->ready || !l->built || !l->dropped || !l->wake_ok) {
    ledger_destroy(l);
    fh_error_set("mark-compact: cannot set up the from-space ledger for a %zu MiB space",
                 capacity >> 20);
    return -1;
  }
  return 0;
}

void ledger_destroy(from_ledger *l) {
  if (l->readers) sys_munmap((void *)l->readers, l->readers_bytes);
  if (l->ready) sys_munmap((void *)l->ready, l->ready_bytes);
  if (l->built) sys_munmap((void *)l->built, l->ready_bytes);
  if (l->dropped) sys_munmap((void *)l->dropped, l->ready_bytes);
  if (l->wake_ok) sem_destroy(&l->wake);
  l->wake_ok = 0;
  l->readers = NULL;
  l->ready = NULL;
  l->built = l->dropped = NULL;
}

/* Does from-space page s hold a live word?  (The live-words bitmap is
 * fixed for the whole cycle, so every caller gets the same answer.) */
static int page_has_live(const fwd_tables *t, size_t s) {
  const _Atomic uint64_t *w = &t->live.words[s * LIVE_WORDS_PER_PAGE];
  for (size_t i = 0; i < LIVE_WORDS_PER_PAGE; i++)
    if (atomic_load_explicit(&w[i], memory_order_relaxed)) return 1;
  return 0;
}

/* Old address of the live word that lands on destination address d, which
 * lies inside the object starting at old address obj. */
static uintptr_t source_of(const fwd_tables *t, uintptr_t obj, uintptr_t d) {
  return obj + (d - fwd_start(t, obj));
}

/* The from-space pages destination page p reads, apart from the pinned
 * ones: [*lo, *hi] and the page of its first object's header, *hdr (which
 * is *lo or below it).  0 when it reads none: a page wholly in a gap below
 * a pinned range (forwarding.h), all filler.  A page beginning in a gap
 * reads from the range's start (its own old address) on; one followed by
 * a gap page reads up to the range after that gap (a superset: only pages
 * holding live words count, and none lies between a run's last word and
 * the range). */
static int read_span(const from_ledger *l, const fwd_tables *t, size_t p, size_t *lo,
                     size_t *hi, size_t *hdr) {
  uintptr_t dbeg = t->begin + p * FWD_PAGE, obj = t->page_first[p], src_lo;
  if (obj) {
    src_lo = source_of(t, obj, dbeg);
  } else { /* begins in a gap: reads from the range on it, if any */
    obj = src_lo = fwd_gap_next(t, p);
    if (obj >= dbeg + FWD_PAGE) return 0;
  }
  uintptr_t src_hi = l->src_end;
  if (p + 1 < t->npages) {
    uintptr_t next = t->page_first[p + 1];
    src_hi = next ? source_of(t, next, dbeg + FWD_PAGE) : fwd_gap_next(t, p + 1);
  }
  *lo = (src_lo - t->begin) / FWD_PAGE;
  *hi = (src_hi - 1 - t->begin) / FWD_PAGE;
  *hdr = (obj - t->begin) / FWD_PAGE;
  return 1;
}

/* The count first, so that a releaser that takes the bit never subtracts
 * more than was added; the bit with release, so that the builders' reads of
 * the page happen before the releaser's acquiring exchange (and madvise).
 * The count passes every value on its way up, so exactly one builder sees
 * it reach a batch and wakes the releaser, after its bit is set. */
static void mark_ready(from_ledger *l, size_t s) {
  size_t before = atomic_fetch_add_explicit(&l->ready_count, 1, memory_order_relaxed);
  atomic_fetch_or_explicit(&l->ready[s / 64], (uint64_t)1 << (s % 64), memory_order_release);
  if (before + 1 == LEDGER_RELEASE_PAGES) sem_post(&l->wake);
}

static void drop_reader(from_ledger *l, size_t s) {
  if (atomic_load_explicit(&l->readers[s], memory_order_relaxed) == PINNED) return;
  /* acq_rel: the builder's reads of s happen before whoever sees zero
   * gives the page back. */
  if (atomic_fetch_sub_explicit(&l->readers[s], 1, memory_order_acq_rel) == 1) mark_ready(l, s);
}

/* Old address just past the last live word below t->old_top. */
static uintptr_t last_live_end(const fwd_tables *t) {
  size_t w = (align_up(t->old_top, (size_t)1 << FWD_CHUNK_SHIFT) - t->begin) >> FWD_CHUNK_SHIFT;
  while (w > 0) {
    uint64_t bits = atomic_load_explicit(&t->live.words[w - 1], memory_order_relaxed);
    if (bits)
      return t->begin + ((w - 1) << FWD_CHUNK_SHIFT) +
             FWD_WORD * (64 - (size_t)__builtin_clzll(bits));
    w--;
  }
  return t->begin;
}

/* Planning is single-threaded; a pinned page keeps its mark. */
static void add_reader(from_ledger *l, size_t s) {
  uint32_t n = atomic_load_explicit(&l->readers[s], memory_order_relaxed);
  if (n != PINNED) atomic_store_explicit(&l->readers[s], n + 1, memory_order_relaxed);
}

static void pin_object(from_ledger *l, const fwd_tables *t, uintptr_t obj) {
  size_t bytes = obj_bytes(*(const uint64_t *)obj);
  size_t a = (obj - t->begin) / FWD_PAGE, b = (obj + bytes - 1 - t->begin) / FWD_PAGE;
  for (size_t s = a; s <= b; s++)
    atomic_store_explicit(&l->readers[s], PINNED, memory_order_relaxed);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int bit_set(_Atomic uint64_t *w, size_t i) { /* seq_cst: see ledger_page_built */
  return (atomic_fetch_or(&w[i / 64], (uint64_t)1 << (i % 64)) >> (i % 64)) & 1;
}

static void drop_page(from_ledger *l, const fwd_tables *t, size_t page);

/* The counts, then the pages with none are ready, then `planned`; then the
 * readers of pages built meanwhile (ledger_page_built's other half). */
static void plan_counts(from_ledger *l, const fwd_tables *t, const fh_type_registry *types,
                        int any_trace) {
  uint64_t t0 = now_ns();
  l->src_end = last_live_end(t);
  atomic_store_explicit(&l->released_pages, 0, memory_order_relaxed);
  atomic_store(&l->ready_count, 0);
  uintptr_t pinned_obj = 0;
  for (size_t p = 0; p < t->npages; p++) {
    size_t lo, hi, hdr;
    if (!read_span(l, t, p, &lo, &hi, &hdr)) continue;
    for (size_t s = lo; s <= hi; s++)
      if (page_has_live(t, s)) add_reader(l, s);
    if (hdr < lo) add_reader(l, hdr);
    /* An object that began on an earlier destination page spans pages: its
     * trace function, if any, may read any of its words from any of them. */
    uintptr_t obj = t->page_first[p]; /* 0: it begins in a gap, its objects on it */
    if (any_trace && obj && obj != pinned_obj && fwd_start(t, obj) < t->begin + p * FWD_PAGE) {
      const fh_type_info *ti = types_get(types, hdr_type(*(const uint64_t *)obj));
      if (ti && ti->trace) {
        pin_object(l, t, obj);
        pinned_obj = obj;
      }
    }
  }
  for (size_t s = 0; s < l->npages; s++)
    if (atomic_load_explicit(&l->readers[s], memory_order_relaxed) == 0) mark_ready(l, s);
  atomic_store(&l->planned, 1);
  for (size_t w = 0; w < (l->dest_pages + 63) / 64; w++) {
    uint64_t bits = atomic_load(&l->built[w]);
    for (; bits; bits &= bits - 1) {
      size_t p = w * 64 + (size_t)__builtin_ctzll(bits);
      if (!bit_set(l->dropped, p)) drop_page(l, t, p);
    }
  }
  l->plan_ns = now_ns() - t0;
}

int ledger_plan(from_ledger *l, const fwd_tables *t, const fh_type_registry *types,
                int may_defer) {
  l->npages = align_up(t->old_top - t->begin, FWD_PAGE) / FWD_PAGE;
  l->dest_pages = t->npages;
  atomic_store(&l->planned, 0);
  /* Only objects of a type with a trace function pin their pages (below):
   * without such a type, no header is read here (one cache miss per
   * destination page that begins inside an object, in the flip pause). */
  int any_trace = 0;
  uint32_t ntypes = atomic_load_explicit(&types->next_id, memory_order_acquire);
  for (uint32_t i = 0; i < ntypes && i < FH__MAX_TYPES && !any_trace; i++) {
    const fh_type_info *ti = types_get(types, i);
    any_trace = ti && ti->trace;
  }
  l->plan_t = t;
  if (may_defer && !any_trace) {
    l->plan_ns = 0;
    atomic_store(&l->deferred, 1);
    return 1;
  }
  plan_counts(l, t, types, any_trace);
  return 0;
}

void ledger_plan_deferred(from_ledger *l, const fwd_tables *t) {
  int one = 1;
  if (!atomic_compare_exchange_strong(&l->deferred, &one, 2)) return;
  const char *d = getenv("FH_MC_LEDGER_DELAY_MS"); /* tests: builders come first */
  if (d && *d) {
    unsigned long ms = strtoul(d, NULL, 10);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  plan_counts(l, t, NULL, 0);
  atomic_store(&l->deferred, 0);
  if (getenv("FH_MC_TRACE"))
    fprintf(stderr, "faultheap mc ledger: planned after the pause in %.2f ms\n", l->plan_ns / 1e6);
}

/* A page built before the plan is noted, and its readers dropped by the
 * planner; one built after drops them itself.  Sequentially consistent
 * (Dekker): a builder that reads `planned` clear after setting its bit is
 * ordered before the planner's store of `planned`, whose scan then finds
 * the bit; `dropped` decides when both see each other. */
void ledger_page_built(from_ledger *l, const fwd_tables *t, size_t page) {
  if (!atomic_load(&l->planned)) {
    bit_set(l->built, page);
    if (!atomic_load(&l->planned)) return;
  }
  if (bit_set(l->dropped, page)) return;
  drop_page(l, t, page);
}

static void drop_page(from_ledger *l, const fwd_tables *t, size_t page) {
  size_t lo, hi, hdr;
  if (!read_span(l, t, page, &lo, &hi, &hdr)) return;
  for (size_t s = lo; s <= hi; s++)
    if (page_has_live(t, s)) drop_reader(l, s);
  if (hdr < lo) drop_reader(l, hdr);
}

size_t ledger_release(from_ledger *l, uintptr_t shadow, size_t min_pages) {
  if (atomic_load_explicit(&l->deferred, memory_order_relaxed) == 1)
    ledger_plan_deferred(l, l->plan_t);
  if (atomic_load_explicit(&l->ready_count, memory_order_relaxed) < (min_pages ? min_pages : 1))
    return 0;
  if (atomic_exchange_explicit(&l->releasing, 1, memory_order_acquire)) return 0;
  size_t taken = 0, words = (l->npages + 63) / 64;
  for (size_t w = 0; w < words; w++) {
    if (!atomic_load_explicit(&l->ready[w], memory_order_relaxed)) continue;
    uint64_t bits = atomic_exchange_explicit(&l->ready[w], 0, memory_order_acquire);
    while (bits) {
      /* A run of consecutive ready pages within the word; the batch joins
       * runs that continue across words. */
      unsigned first = (unsigned)__builtin_ctzll(bits);
      uint64_t from_first = bits >> first;
      unsigned len = ~from_first ? (unsigned)__builtin_ctzll(~from_first) : 64 - first;
      discard_batch_add(&l->batch, shadow + (w * 64 + first) * (size_t)FWD_PAGE,
                        (size_t)len * FWD_PAGE);
      taken += len;
      bits = len + first >= 64 ? 0 : bits & ~((((uint64_t)1 << len) - 1) << first);
    }
  }
  discard_batch_flush(&l->batch);
  atomic_fetch_sub_explicit(&l->ready_count, taken, memory_order_relaxed);
  atomic_fetch_add_explicit(&l->released_pages, taken, memory_order_relaxed);
  atomic_store_explicit(&l->releasing, 0, memory_order_release);
  return taken;
}

int ledger_try_hold(from_ledger *l) {
  return !atomic_exchange_explicit(&l->releasing, 1, memory_order_acquire);
}

void ledger_unhold(from_ledger *l) {
  atomic_store_explicit(&l->releasing, 0, memory_order_release);
}

void ledger_wait_ready(from_ledger *l) {
  while (sem_wait(&l->wake) != 0 && errno == EINTR)
    ;
}

void ledger_wake(from_ledger *l) { sem_post(&l->wake); }

void ledger_reset(from_ledger *l) {
  if (l->npages) {
    size_t rb = l->npages * sizeof(uint32_t), qb = (l->npages + 63) / 64 * sizeof(uint64_t);
    /* The counts must read as zero: written by hand when madvise fails. */
    if (rb <= 64 * FH_PAGE ||
        sys_madvise((void *)l->readers, align_up(rb, FH_PAGE), MADV_DONTNEED) != 0)
      memset((void *)l->readers, 0, rb);
    memset((void *)l->ready, 0, qb);
  }
  size_t db = (l->dest_pages + 63) / 64 * sizeof(uint64_t);
  memset((void *)l->built, 0, db);
  memset((void *)l->dropped, 0, db);
  l->dest_pages = 0;
  atomic_store(&l->deferred, 0);
  atomic_store(&l->planned, 0);
  l->npages = 0;
  atomic_store(&l->ready_count, 0);
  while (sem_trywait(&l->wake) == 0) /* posts nobody waited for */
    ;
}
