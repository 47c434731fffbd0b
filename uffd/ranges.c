/* The process-wide table of registered ranges, read without locks by fault
 * handlers, and the in-flight accounting that lets an owner end a phase
 * safely against late faulting threads.
 *
 * Slots are written only by ordinary-context code holding table_lock, and
 * read by handlers (possibly in signal context) as a seqlock: a generation
 * word whose low two bits hold the slot state.  A writer first stores the
 * BUSY state (new generation), rewrites the fields, then stores LIVE with a
 * newer generation; a reader that sees the same LIVE/RETIRED generation
 * before and after reading the fields has a consistent snapshot.
 *
 * In-flight counters (ART's CompactionPhase, art-cmc.md 2.11): two per slot,
 * each with a DONE top bit.  A handler enters counter 0; if it is DONE it
 * enters counter 1; if that is DONE too the range is finished and the fault
 * is spurious.  Retiring sets DONE on counter 0 and waits for it to drain,
 * unregisters (handlers still in counter 1 get ENOENT and return), sets DONE
 * on counter 1 and waits.  Counters are only ever changed by fetch_add,
 * fetch_sub and fetch_and, never stored, so a stale handler that entered a
 * slot being reused still leaves the count balanced. */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "uffd/uffd_internal.h"

#define ST_FREE 0u
#define ST_BUSY 1u
#define ST_LIVE 2u
#define ST_RETIRED 3u
#define ST_MASK 3u
#define GEN_STEP 4u
#define DONE_BIT 0x80000000u

typedef struct slot {
  _Atomic uint32_t gen;
  _Atomic uint32_t inflight[2];
  _Atomic uintptr_t lo, hi;
  _Atomic(fh_uffd *) ctx;
  _Atomic(fh_uffd_resolve_fn) fn;
  _Atomic(void *) arg;
  _Atomic int sigbus;          /* ctx->mode == FH_UFFD_SIGBUS, copied so that
                                  a stale reader never dereferences ctx */
  _Atomic uint64_t spurious;   /* faults that found the range finished */
  _Atomic uint64_t retired_at; /* order of retirement, for reuse */
} slot;

static slot slots[FH_UFFD_MAX_RANGES];
static _Atomic unsigned nslots_hw; /* slots [0, hw) may be non-free */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t retire_clock;

#define RLX memory_order_relaxed

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO; async-signal-safe */
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void stat_max(_Atomic uint64_t *m, uint64_t v) {
  uint64_t cur = atomic_load_explicit(m, RLX);
  while (v > cur && !atomic_compare_exchange_weak_explicit(m, &cur, v, RLX, RLX))
    ;
}

/* Ranges that were ever registered by a SIGBUS-mode context, kept for the
 * life of the process: across retirement, slot reuse, fh_uffd_destroy and
 * fork (the child inherits the table).  A SIGBUS can be raised while a
 * range is registered and reach its handler only after the range was
 * retired, its slot freed (destroy, e.g. by the fork prepare handler) or
 * reused for other addresses: the page is an ordinary one by then and the
 * access must simply be retried.  The slots cannot tell such a late signal
 * from a foreign one; this history can.  A late SIGBUS at a remembered
 * address is FH_UFFD_D_STALE.  Written under table_lock (dedup by
 * containment: the heap registers the same spaces cycle after cycle),
 * read lock-free with a per-entry sequence word (odd while written); when
 * full, the oldest entry is overwritten. */
#define HIST_MAX 64
typedef struct hist_entry {
  _Atomic uint32_t seq;
  _Atomic uintptr_t lo, hi;
} hist_entry;
static hist_entry history[HIST_MAX];
static unsigned hist_next;           /* next entry to write; table_lock */
static _Atomic unsigned hist_used;   /* entries [0, used) were written */
static _Atomic uint64_t stale_count; /* late SIGBUSes answered from the history */

static void history_add(uintptr_t lo, uintptr_t hi) {
  unsigned used = atomic_load_explicit(&hist_used, RLX);
  for (unsigned i = 0; i < used; i++)
    if (atomic_load_explicit(&history[i].lo, RLX) <= lo &&
        atomic_load_explicit(&history[i].hi, RLX) >= hi)
      return;
  hist_entry *e = &history[hist_next];
  hist_next = (hist_next + 1) % HIST_MAX;
  atomic_fetch_add(&e->seq, 1); /* odd: being written */
  atomic_store_explicit(&e->lo, lo, RLX);
  atomic_store_explicit(&e->hi, hi, RLX);
  atomic_fetch_add(&e->seq, 1);
  if (used < HIST_MAX)
    atomic_store_explicit(&hist_used, used + 1, memory_order_release);
}

/* Async-signal-safe. */
static int history_has(uintptr_t addr) {
  unsigned used = atomic_load_explicit(&hist_used, memory_order_acquire);
  for (unsigned i = 0; i < used; i++) {
    hist_entry *e = &history[i];
    uint32_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
    /* acquire loads, so that the second read of seq stays behind them */
    uintptr_t lo = atomic_load_explicit(&e->lo, memory_order_acquire);
    uintptr_t hi = atomic_load_explicit(&e->hi, memory_order_acquire);
    if (!(s1 & 1) && atomic_load_explicit(&e->seq, RLX) == s1 && addr >= lo && addr < hi)
      return 1;
  }
  return 0;
}

uint64_t fh_uffd_stale_faults(void) { return atomic_load_explicit(&stale_count, RLX); }

/* Returns the counter index entered (0/1), or -1 when both are DONE. */
static int inflight_enter(slot *s) {
  uint32_t c = atomic_fetch_add(&s->inflight[0], 1);
  if (!(c & DONE_BIT))
    return 0;
  atomic_fetch_sub(&s->inflight[0], 1);
  c = atomic_fetch_add(&s->inflight[1], 1);
  if (!(c & DONE_BIT))
    return 1;
  atomic_fetch_sub(&s->inflight[1], 1);
  return -1;
}

fh_uffd_dispatch_result fh_uffd_dispatch(uintptr_t addr, int from_sigbus,
                                         fh_uffd *only, int write) {
  for (int attempt = 0; attempt < 64; attempt++) {
    unsigned hw = atomic_load_explicit(&nslots_hw, memory_order_acquire);
    slot *live = NULL, *retired = NULL;
    uint32_t live_gen = 0;
    uintptr_t lo = 0, hi = 0;
    fh_uffd *ctx = NULL;
    fh_uffd_resolve_fn fn = NULL;
    void *arg = NULL;
    int torn = 0;
    for (unsigned i = 0; i < hw && !live; i++) {
      slot *s = &slots[i];
      uint32_t g = atomic_load_explicit(&s->gen, memory_order_acquire);
      uint32_t st = g & ST_MASK;
      if (st != ST_LIVE && st != ST_RETIRED)
        continue;
      uintptr_t l = atomic_load_explicit(&s->lo, RLX);
      uintptr_t h = atomic_load_explicit(&s->hi, RLX);
      fh_uffd *c = atomic_load_explicit(&s->ctx, RLX);
      fh_uffd_resolve_fn f = atomic_load_explicit(&s->fn, RLX);
      void *a = atomic_load_explicit(&s->arg, RLX);
      int sb = atomic_load_explicit(&s->sigbus, RLX);
      atomic_thread_fence(memory_order_acquire);
      if (atomic_load_explicit(&s->gen, RLX) != g) {
        torn = 1;
        continue;
      }
      if (addr < l || addr >= h)
        continue;
      if (from_sigbus ? !sb : c != only)
        continue;
      if (st == ST_RETIRED) {
        retired = s;
        continue;
      }
      live = s, live_gen = g, lo = l, hi = h, ctx = c, fn = f, arg = a;
    }
    if (!live) {
      if (retired) {
        atomic_fetch_add_explicit(&retired->spurious, 1, RLX);
        return FH_UFFD_D_SPURIOUS;
      }
      if (torn)
        continue; /* a slot changed under us: look again */
      if (from_sigbus && history_has(addr)) {
        atomic_fetch_add_explicit(&stale_count, 1, RLX);
        return FH_UFFD_D_STALE;
      }
      return FH_UFFD_D_NOT_OURS;
    }
    int idx = inflight_enter(live);
    if (idx < 0) {
      atomic_fetch_add_explicit(&live->spurious, 1, RLX);
      return FH_UFFD_D_SPURIOUS;
    }
    /* Entered: re-check that the slot was not retired-and-reused between
     * our snapshot and the increment (seq_cst on both sides). */
    if (atomic_load(&live->gen) != live_gen) {
      atomic_fetch_sub(&live->inflight[idx], 1);
      continue;
    }
    fh_uffd_fault f = {
        .fd = ctx->fd,
        .mode = from_sigbus ? FH_UFFD_SIGBUS : FH_UFFD_THREAD,
        .page = addr & ~(uintptr_t)(FH_UFFD_PAGE - 1),
        .addr = addr,
        .write = write,
        .range_lo = lo,
        .range_hi = hi,
    };
    /* Counted before the resolver (whose ioctl may wake the faulting
     * thread) and finished before leaving the in-flight counter, so that
     * after fh_uffd_range_retire the statistics are complete. */
    atomic_fetch_add_explicit(&ctx->faults, 1, RLX);
    uint64_t t0 = now_ns();
    int r = fn(arg, &f);
    uint64_t dt = now_ns() - t0;
    atomic_fetch_add_explicit(&ctx->fault_ns_total, dt, RLX);
    stat_max(&ctx->fault_ns_max, dt);
    if (r == FH_UFFD_RESOLVED_EXISTED)
      atomic_fetch_add_explicit(&ctx->existed, 1, RLX);
    if (r < 0)
      atomic_fetch_add_explicit(&ctx->failed, 1, RLX);
    atomic_fetch_sub(&live->inflight[idx], 1);
    return r < 0 ? FH_UFFD_D_FAILED : FH_UFFD_D_HANDLED;
  }
  return FH_UFFD_D_NOT_OURS;
}

/* Ordinary context.  Spin briefly, then sleep, until the counter (without
 * its DONE bit) is zero. */
static void wait_drained(_Atomic uint32_t *c) {
  for (unsigned i = 0; (atomic_load(c) & ~DONE_BIT) != 0; i++) {
    if (i < 64) {
      sched_yield();
    } else {
      struct timespec ts = {0, 20000};
      nanosleep(&ts, NULL);
    }
  }
}

static int overlaps(slot *s, uintptr_t lo, uintptr_t hi) {
  return atomic_load_explicit(&s->lo, RLX) < hi && atomic_load_explicit(&s->hi, RLX) > lo;
}

/* Pick a slot for [lo, hi): a retired slot over the same addresses first
 * (a late fault meant for the old range then meets the new one, whose
 * resolver handles a present page as EEXIST), then a free slot, then the
 * longest-retired one.  Called with table_lock held. */
static int pick_slot(uintptr_t lo, uintptr_t hi) {
  int free_i = -1, old_i = -1;
  uint64_t oldest = UINT64_MAX;
  for (int i = 0; i < FH_UFFD_MAX_RANGES; i++) {
    uint32_t st = atomic_load(&slots[i].gen) & ST_MASK;
    if (st == ST_LIVE && overlaps(&slots[i], lo, hi))
      return -2;
    if (st == ST_RETIRED && overlaps(&slots[i], lo, hi))
      return i;
    if (st == ST_FREE && free_i < 0)
      free_i = i;
    if (st == ST_RETIRED && atomic_load(&slots[i].retired_at) < oldest) {
      oldest = atomic_load(&slots[i].retired_at);
      old_i = i;
    }
  }
  return free_i >= 0 ? free_i : old_i;
}

int fh_uffd_range_add(fh_uffd *u, void *addr, size_t len, unsigned modes,
                      fh_uffd_resolve_fn fn, void *arg, uint64_t *ioctls) {
  if (!u || !fn || len == 0) {
    errno = EINVAL;
    return -1;
  }
  uintptr_t lo = (uintptr_t)addr, hi = lo + len;
  pthread_mutex_lock(&table_lock);
  int i = pick_slot(lo, hi);
  if (i < 0) {
    pthread_mutex_unlock(&table_lock);
    errno = i == -2 ? EEXIST : ENOSPC;
    return -1;
  }
  if (fh_uffd_register(u->fd, addr, len, modes, ioctls) != 0) {
    int e = errno;
    pthread_mutex_unlock(&table_lock);
    errno = e;
    return -1;
  }
  slot *s = &slots[i];
  uint32_t g = atomic_load(&s->gen);
  atomic_store(&s->gen, (g & ~ST_MASK) + GEN_STEP + ST_BUSY);
  atomic_fetch_and(&s->inflight[0], ~DONE_BIT);
  atomic_fetch_and(&s->inflight[1], ~DONE_BIT);
  atomic_store_explicit(&s->lo, lo, RLX);
  atomic_store_explicit(&s->hi, hi, RLX);
  atomic_store_explicit(&s->ctx, u, RLX);
  atomic_store_explicit(&s->fn, fn, RLX);
  atomic_store_explicit(&s->arg, arg, RLX);
  atomic_store_explicit(&s->sigbus, u->mode == FH_UFFD_SIGBUS, RLX);
  atomic_store_explicit(&s->spurious, 0, RLX);
  /* Remembered before it is published: a late signal for it can only
   * come after the registration above. */
  if (u->mode == FH_UFFD_SIGBUS)
    history_add(lo, hi);
  atomic_store(&s->gen, (g & ~ST_MASK) + 2 * GEN_STEP + ST_LIVE);
  if ((unsigned)i >= atomic_load(&nslots_hw))
    atomic_store_explicit(&nslots_hw, (unsigned)i + 1, memory_order_release);
  pthread_mutex_unlock(&table_lock);
  return i;
}

int fh_uffd_range_retire(fh_uffd *u, int id) {
  if (!u || id < 0 || id >= FH_UFFD_MAX_RANGES) {
    errno = EINVAL;
    return -1;
  }
  slot *s = &slots[id];
  pthread_mutex_lock(&table_lock);
  uint32_t g = atomic_load(&s->gen);
  if ((g & ST_MASK) != ST_LIVE || atomic_load_explicit(&s->ctx, RLX) != u) {
    pthread_mutex_unlock(&table_lock);
    errno = ENOENT;
    return -1;
  }
  uintptr_t lo = atomic_load_explicit(&s->lo, RLX);
  uintptr_t hi = atomic_load_explicit(&s->hi, RLX);
  /* Phase 1: no new handler enters counter 0; wait for those inside. */
  atomic_fetch_or(&s->inflight[0], DONE_BIT);
  wait_drained(&s->inflight[0]);
  /* Phase 2: unregister.  Faulting threads blocked in the kernel (thread
   * mode) are woken by it; handlers in counter 1 see ENOENT. */
  int rc = fh_uffd_unregister(u->fd, (void *)lo, hi - lo);
  int e = errno;
  /* Phase 3: close counter 1 and wait; from now on every fault in the range
   * that still reaches a handler is spurious. */
  atomic_fetch_or(&s->inflight[1], DONE_BIT);
  wait_drained(&s->inflight[1]);
  atomic_store(&s->retired_at, ++retire_clock);
  atomic_store(&s->gen, (g & ~ST_MASK) + GEN_STEP + ST_RETIRED);
  pthread_mutex_unlock(&table_lock);
  errno = e;
  return rc;
}

void fh_uffd_ranges_retire_all(fh_uffd *u) {
  for (int i = 0; i < FH_UFFD_MAX_RANGES; i++)
    if ((atomic_load(&slots[i].gen) & ST_MASK) == ST_LIVE &&
        atomic_load_explicit(&slots[i].ctx, RLX) == u)
      fh_uffd_range_retire(u, i);
  /* Retired slots of u must not keep pointing at a context about to be
   * freed: a spurious fault would read it.  Free them. */
  pthread_mutex_lock(&table_lock);
  for (int i = 0; i < FH_UFFD_MAX_RANGES; i++) {
    slot *s = &slots[i];
    uint32_t g = atomic_load(&s->gen);
    if ((g & ST_MASK) == ST_RETIRED && atomic_load_explicit(&s->ctx, RLX) == u)
      atomic_store(&s->gen, (g & ~ST_MASK) + GEN_STEP + ST_FREE);
  }
  pthread_mutex_unlock(&table_lock);
}

void fh_uffd_ranges_forget(fh_uffd *u) {
  /* In a fork child only this thread exists; the lock may have been held
   * by a parent thread at fork time, so start it afresh.  The history of
   * registered ranges stays: it describes this address space too. */
  pthread_mutex_init(&table_lock, NULL);
  for (int i = 0; i < FH_UFFD_MAX_RANGES; i++) {
    slot *s = &slots[i];
    uint32_t g = atomic_load(&s->gen);
    if ((g & ST_MASK) != ST_FREE && atomic_load_explicit(&s->ctx, RLX) == u) {
      atomic_store(&s->gen, (g & ~ST_MASK) + GEN_STEP + ST_FREE);
      atomic_store(&s->inflight[0], 0);
      atomic_store(&s->inflight[1], 0);
    }
  }
}

uint64_t fh_uffd_ranges_spurious(const fh_uffd *u) {
  uint64_t n = 0;
  for (int i = 0; i < FH_UFFD_MAX_RANGES; i++)
    if ((atomic_load(&slots[i].gen) & ST_MASK) != ST_FREE &&
        atomic_load_explicit(&slots[i].ctx, RLX) == u)
      n += atomic_load_explicit(&slots[i].spurious, RLX);
  return n;
}
