/* Concurrent compaction: the userfaultfd schedule of mark-compact.
 *
 * Pause (mc_prepare + mc_concurrent_flip): mark, forward, move the moving
 * space's pages to from-space with MREMAP_DONTUNMAP, update every reference
 * outside the space (large arrays' after: cc_large.h), register [begin, R)
 * with userfaultfd (R = the new top rounded up to a page; the last page ends in
 * a filler), publish R as the top, start the GC worker.  Mutators resume:
 * they only hold post-compaction addresses (to-space invariant), new TLABs
 * come from [R, end), which is never registered, so allocation never faults.
 *
 * Then pages are built, each exactly once, by whoever claims it first in
 * its state word (PAGE_UNTOUCHED -> PAGE_BUILDING by CAS, PAGE_MAPPED after
 * the ioctl):
 *   - the GC worker, in address order, MC_MAX_RUN pages per UFFDIO_COPY;
 *   - a mutator touching a missing page, in its SIGBUS handler (default) or
 *     through the fault-handler thread (uffd_sigbus=0): it builds its page
 *     and up to `lookahead` following unclaimed pages in one COPY.
 * A thread finding the page being built by someone else waits for
 * PAGE_MAPPED (yield, then short sleeps: all async-signal-safe syscalls).
 * The claim (not the kernel's EEXIST) makes releasing from-space safe: a
 * page built exactly once lets the from-space ledger (from_ledger.h) count
 * down each from-space page's readers.  A releaser thread (fh-release) gives ready
 * pages back in batches of 8 MiB (wherever the faults left them), woken by
 * the builder whose page completes one.  Not the worker, which with busy
 * mutators runs in slices while their builds add resident pages (fhbench
 * pause peaked 20-30 MiB over the pre-cycle figure in SIGBUS mode).
 *
 * End of phase (worker): wait for every page to be mapped, then
 * fh_uffd_range_retire (two in-flight counters; late SIGBUS handlers find
 * the range retired and just retry the access), release the rest of
 * from-space, clear the tables, record fault statistics, and clear
 * h->concurrent_phase under world_lock (fh_gc_wait and the next collection
 * wait for that). */
#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "collectors/install_costs.h"
#include "collectors/mc.h"
#include "heap/error.h"
#include "heap/sys.h"
#include "heap/thread_slice.h"
#include "spaces/reserve.h"

int mc_concurrent_available(const char **why) {
  unsigned c = fh_capabilities();
  const char *r = NULL;
  if (!(c & FH_CAP_UFFD)) r = "userfaultfd is not available";
  else if (!(c & FH_CAP_DONTUNMAP)) r = "mremap(MREMAP_DONTUNMAP) is not available";
  if (why) *why = r;
  return r == NULL;
}

const fh_collector_ops *concurrent_compact_or_fallback(void) {
  const char *why;
  if (mc_concurrent_available(&why)) return &concurrent_compact_collector;
  fh_error_set("concurrent_compact: %s in this process; using mark_compact (stop-the-world) "
               "instead", why);
  return &mark_compact_collector;
}

int mc_phase_open(fh_heap *h) {
  pthread_mutex_lock(&h->world_lock);
  int open = h->concurrent_phase;
  pthread_mutex_unlock(&h->world_lock);
  return open;
}

/* ---- waiting and the fault-time histogram (async-signal-safe) ---- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void backoff(unsigned i) {
  if (i < 8) {
    sched_yield();
  } else {
    struct timespec ts = {0, 10000L * (i < 40 ? i - 7 : 32)};
    nanosleep(&ts, NULL);
  }
}

static void wait_mapped(mc_state *m, size_t page) {
  for (unsigned i = 0; atomic_load_explicit(&m->page_state[page], memory_order_acquire) !=
                       PAGE_MAPPED; i++)
    backoff(i);
}

/* ---- building and installing pages ---- */

int mc_claim_page(mc_state *m, size_t page) {
  uint32_t expect = PAGE_UNTOUCHED;
  return atomic_compare_exchange_strong_explicit(&m->page_state[page], &expect, PAGE_BUILDING,
                                                 memory_order_acquire, memory_order_relaxed);
}

/* Install built pages [p, p + n) from buf: blank gap pages (pinned
 * ranges, forwarding.h) as the zero page, which costs no memory, the rest
 * with one COPY per stretch. */
static void install_run(mc_state *m, int fd, size_t p, size_t n, const uint8_t *buf) {
  if (!m->t.nranges) {
    mc_install(m, fd, (uint8_t *)(m->t.begin + p * FWD_PAGE), buf, n * FWD_PAGE);
    return;
  }
  for (size_t i = 0; i < n;) {
    int blank = fwd_page_blank(&m->t, p + i);
    size_t j = i + 1;
    while (j < n && fwd_page_blank(&m->t, p + j) == blank) j++;
    uint8_t *dst = (uint8_t *)(m->t.begin + (p + i) * FWD_PAGE);
    size_t len = (j - i) * FWD_PAGE, done = 0;
    if (blank && !atomic_load_explicit(&m->uffd_broken, memory_order_acquire)) {
      fh_uffd_res res;
      fh_uffd_status st = fh_uffd_zeropage(fd, dst, len, 0, &res);
      done = st == FH_UFFD_OK || st == FH_UFFD_EXISTED ? len : res.done;
    }
    /* Not blank, or ZEROPAGE failed: the built (zero) bytes by COPY. */
    if (done < len) mc_install(m, fd, dst + done, buf + i * FWD_PAGE + done, len - done);
    i = j;
  }
}

/* Build pages [p, p + n) (claimed) into buf and install them. */
void mc_build_and_copy(mc_state *m, int fd, size_t p, size_t n, uint8_t *buf) {
  for (size_t i = 0; i < n; i++) {
    page_build(&m->src, p + i, buf + i * FWD_PAGE);
    ledger_page_built(&m->ledger, &m->t, p + i);
  }
  install_run(m, fd, p, n, buf);
  for (size_t i = 0; i < n; i++)
    atomic_store_explicit(&m->page_state[p + i], PAGE_MAPPED, memory_order_release);
}

static uint8_t *take_fault_buf(mc_state *m, int *slot) {
  uint64_t used = atomic_load_explicit(&m->fault_bufs_used, memory_order_relaxed);
  while (~used) {
    int i = __builtin_ctzll(~used);
    if (atomic_compare_exchange_weak_explicit(&m->fault_bufs_used, &used,
                                              used | ((uint64_t)1 << i), memory_order_acquire,
                                              memory_order_relaxed)) {
      *slot = i;
      return m->fault_bufs + (size_t)i * MC_MAX_RUN * FWD_PAGE;
    }
  }
  *slot = -1;
  return NULL;
}

static void put_fault_buf(mc_state *m, int slot) {
  if (slot >= 0)
    atomic_fetch_and_explicit(&m->fault_bufs_used, ~((uint64_t)1 << slot), memory_order_release);
}

/* Blank gap pages (pinned ranges, forwarding.h) are never built: marked
 * mapped before anyone builds, they stay missing, and read as zero once
 * the range is unregistered (no memory, nothing to install).  Nothing
 * touches them meanwhile (a gap is one filler, walked over whole); a
 * stray access gets the zero page from resolve. */
static void mark_blank_pages(mc_state *m) {
  const fwd_tables *t = &m->t;
  for (size_t r = 0; r < t->nranges; r++) {
    size_t p = (t->ranges[r].gap_lo - t->begin + FWD_PAGE - 1) / FWD_PAGE;
    size_t e = (t->ranges[r].lo - t->begin) / FWD_PAGE;
    for (; p < e; p++)
      if (fwd_page_blank(t, p))
        atomic_store_explicit(&m->page_state[p], PAGE_MAPPED, memory_order_relaxed);
  }
}

/* The resolver: runs on the faulting thread inside its SIGBUS handler, or
 * on the handler thread.  No locks, no malloc, no missing page touched. */
static int resolve(void *arg, const fh_uffd_fault *f) {
  mc_state *m = arg;
  uint64_t t0 = now_ns();
  size_t p = (f->page - m->t.begin) / FWD_PAGE;
  int r;
  if (p >= m->t.npages || fwd_page_blank(&m->t, p)) {
    /* Not past the pages (the range is exactly them); a blank gap page
     * (mark_blank_pages) is zeroes. */
    fh_uffd_status st = fh_uffd_zeropage(f->fd, (void *)f->page, FWD_PAGE, 0, NULL);
    return st == FH_UFFD_OK ? FH_UFFD_RESOLVED
           : st == FH_UFFD_ERROR ? FH_UFFD_RESOLVE_FAILED : FH_UFFD_RESOLVED_EXISTED;
  }
  if (!mc_claim_page(m, p)) {
    wait_mapped(m, p); /* someone else builds it; it is (about to be) mapped */
    r = FH_UFFD_RESOLVED_EXISTED;
  } else {
    int slot;
    uint8_t *buf = take_fault_buf(m, &slot);
    size_t n = 1;
    if (buf) {
      /* With the uffd broken each install is an mremap, a VMA of its own
       * until the next pause: build as far ahead as the buffer holds, so
       * that a mutator walking through memory makes fewer of them. */
      size_t ahead = atomic_load_explicit(&m->uffd_broken, memory_order_relaxed)
                         ? MC_MAX_RUN - 1
                         : m->lookahead;
      while (n <= ahead && p + n < m->t.npages && mc_claim_page(m, p + n)) n++;
    } else {
      buf = fh_uffd_thread_buf();
      if (!buf) {
        /* No buffer to build in: give the claim back.  The fault is then
         * retried and claims the page again (handler-thread mode), or is
         * fatal like any failed resolve (SIGBUS mode); the worker may
         * already have passed the page, so it cannot be left to it. */
        atomic_store_explicit(&m->page_state[p], PAGE_UNTOUCHED, memory_order_release);
        return FH_UFFD_RESOLVE_FAILED;
      }
    }
    mc_build_and_copy(m, f->fd, p, n, buf);
    put_fault_buf(m, slot);
    r = FH_UFFD_RESOLVED;
  }
  mc_record_fault_ns(m, now_ns() - t0);
  return r;
}

/* ---- the GC worker and the end of the phase ---- */

/* Advance *low to the lowest page not yet mapped: below its first object
 * nobody reads from-space any more (page_first is monotonic), which is
 * where build_and_move may stage pages. */
static void advance_low(mc_state *m, size_t *low) {
  while (*low < m->t.npages &&
         atomic_load_explicit(&m->page_state[*low], memory_order_acquire) == PAGE_MAPPED)
    (*low)++;
}

/* Every page is present: retire the range.  When the unregistration
 * failed, or an ioctl kept failing this phase, close the uffd instead of
 * trusting it further, and open a fresh one: closing drops every
 * registration and wakes every thread still asleep on a fault (in thread
 * mode, those whose WAKE failed), which then finds its page there.
 * *s gets the context's statistics first. */
static void end_range(mc_state *m, fh_uffd_stats *s) {
  int rc = fh_uffd_range_retire(m->uffd, m->range_id);
  int e = errno;
  m->range_id = -1;
  fh_uffd_get_stats(m->uffd, s);
  /* Sticky for the phase: uffd_broken itself is cleared by an installer
   * that found mremap failing too and tries the ioctl again (install), yet
   * a thread-mode waiter whose page came by mremap with a failed WAKE
   * still sleeps, and only the close wakes it (an unregistration wakes
   * only addresses still registered). */
  int broken = atomic_load(&m->uffd_broken) || atomic_load(&m->uffd_errno) != 0 ||
               atomic_load(&m->remap_pages) != 0;
  if (rc != 0 || broken) {
    /* Not fh_uffd_destroy: that frees the retired slot, and a thread whose
     * SIGBUS was raised before its page came and delivered only now would
     * find no range and die.  A failed reopen leaves fd -1: open_uffd
     * tries again next cycle. */
    fh_uffd_reopen(m->uffd);
    /* For fh_dump (mc_stats.c), from the atomics: the worker leaves
     * mode_note alone, which fh_dump may be reading. */
    if (!broken) mc_mark_broken(m, e);
  }
}

static void end_phase(mc_state *m) {
  fh_heap *h = m->h;
  /* Helpers (mc_help_phase) that entered before `closing` may still be
   * looking for pages (all are mapped, so they claim none): let them leave
   * before the tables they read are cleared. */
  atomic_store(&m->closing, 1);
  for (unsigned i = 0; atomic_load(&m->helpers); i++) backoff(i);
  fh_uffd_stats s;
  end_range(m, &s);
  atomic_fetch_add(&h->uffd_faults, s.faults - m->uffd_at_flip.faults);
  uint64_t cur = atomic_load(&h->uffd_fault_ns_max);
  while (s.fault_ns_max > cur &&
         !atomic_compare_exchange_weak(&h->uffd_fault_ns_max, &cur, s.fault_ns_max))
    ;
  /* Every page is mapped and unregistered now; mutators allocate only
   * above the last destination page, so its filler is nobody's. */
  mc_poison_last_page(m);
  mc_publish_holes(m); /* the range is unregistered: gaps fault as any page */
  mc_end_cycle(m);
  heap_phase_close(h);
}

void mc_join_worker(mc_state *m) {
  if (m->end_pending) { /* never started: the tables are cleared here, no prefault */
    m->end_pending = 0;
    mc_end_cycle(m);
  }
  if (!m->worker_joinable) return;
  atomic_store(&m->stop_prefault, 1);
  gc_pool_join(&m->h->pool, m->worker);
  m->worker_joinable = 0;
  atomic_store(&m->stop_prefault, 0);
}

/* Where the kernel has UFFDIO_MOVE, the worker builds a run of pages into
 * from-space pages that nobody reads any more (below the first object of
 * the lowest unmapped page: see advance_low) and moves them into place.
 * Those pages are ready in the ledger, so the releaser thread could give
 * them back between the build and the move, and the move would then take
 * zero pages (TSan's timing found it): the worker holds the ledger's
 * release flag from the build to the end of the install, and goes through
 * COPY when the releaser is busy.  A page given back before the build is
 * harmless: the build faults in a fresh one, which the move takes away.
 * That recycles from-space: no page is allocated, zeroed, copied into or
 * later zapped, which COPY + MADV_DONTNEED cost.  Mutator faults keep using
 * COPY: a lone MOVE flushes the TLB of every CPU running this mm (a
 * shootdown IPI, ~15 us on this VM; art-cmc.md 4.4).  Returns 0 when the
 * run was installed, -1 when it must go through COPY instead (no consumed
 * pages left to stage in; nothing was claimed or written then). */
static int build_and_move(mc_state *m, int fd, size_t p, size_t n, size_t *stage, size_t low) {
  /* From-space still read; a gap page (pinned ranges) reads none, the
   * range after it its own pages. */
  uintptr_t first = m->t.page_first[low];
  size_t need = (first ? first : fwd_gap_next(&m->t, low)) - m->t.begin;
  if (*stage + n * FWD_PAGE > align_down(need, FWD_PAGE)) return -1;
  if (!ledger_try_hold(&m->ledger)) return -1;
  uint8_t *buf = (uint8_t *)(m->shadow + *stage);
  *stage += n * FWD_PAGE;
  for (size_t i = 0; i < n; i++) {
    page_build(&m->src, p + i, buf + i * FWD_PAGE);
    ledger_page_built(&m->ledger, &m->t, p + i);
  }
  void *dst = (void *)(m->t.begin + p * FWD_PAGE);
  fh_uffd_res res;
  fh_uffd_status st = fh_uffd_move(fd, dst, buf, n * FWD_PAGE, 0, &res);
  if (st != FH_UFFD_OK && st != FH_UFFD_EXISTED) {
    /* EBUSY: a staging page is shared copy-on-write with a forked child;
     * or MOVE failed.  The built bytes are in buf either way (a page that
     * did not move stays at its source): install what did not move. */
    mc_install(m, fd, (uint8_t *)dst + res.done, buf + res.done, n * FWD_PAGE - res.done);
    m->move_fallbacks++;
  }
  ledger_unhold(&m->ledger);
  for (size_t i = 0; i < n; i++)
    atomic_store_explicit(&m->page_state[p + i], PAGE_MAPPED, memory_order_release);
  return 0;
}

/* A run inside the dense prefix: its from-space pages already hold the
 * destination bytes.  Fix their references in place and move the pages
 * back (no copy at all).  One page may have to stay in from-space: the one
 * holding the header of the next destination page's first object, which
 * that page's builder reads (a large object covers many pages, but only its
 * header page matters).  It is installed by COPY from the same bytes. */
static size_t move_or_copy(mc_state *m, int fd, size_t p, size_t n) {
  if (!n) return 0;
  uint8_t *from = (uint8_t *)(m->shadow + p * FWD_PAGE);
  uint8_t *dst = (uint8_t *)(m->t.begin + p * FWD_PAGE);
  fh_uffd_res res;
  fh_uffd_status st = fh_uffd_move(fd, dst, from, n * FWD_PAGE, 0, &res);
  size_t moved = st == FH_UFFD_OK || st == FH_UFFD_EXISTED ? n : res.done / FWD_PAGE;
  if (moved < n) {
    m->move_fallbacks++;
    mc_install(m, fd, dst + moved * FWD_PAGE, from + moved * FWD_PAGE, (n - moved) * FWD_PAGE);
  }
  return moved;
}

void mc_fix_and_install_dense(mc_state *m, int fd, size_t p, size_t n, int move) {
  for (size_t i = 0; i < n; i++) page_fix_in_place(&m->src, p + i);
  if (!move) { /* COPY straight from the fixed from-space pages: no build */
    mc_install(m, fd, (uint8_t *)(m->t.begin + p * FWD_PAGE), (uint8_t *)(m->shadow + p * FWD_PAGE),
            n * FWD_PAGE);
    m->in_place_pages += n;
    for (size_t i = 0; i < n; i++) {
      ledger_page_built(&m->ledger, &m->t, p + i);
      atomic_store_explicit(&m->page_state[p + i], PAGE_MAPPED, memory_order_release);
    }
    return;
  }
  size_t keep = (size_t)-1;
  /* (A gap page next reads nothing, and the range after it its own.) */
  if (p + n < m->t.npages && m->t.page_first[p + n])
    keep = (m->t.page_first[p + n] - m->t.begin) / FWD_PAGE;
  /* Pages that later builders may still read stay in from-space and are
   * installed by COPY: `keep`, and the pages of a page-spanning object
   * with a trace function (pinned in the ledger: the function may read any
   * of its words when a later page of the object is fixed or built). */
  size_t moved = 0;
  for (size_t i = p; i < p + n;) {
    size_t j = i;
    while (j < p + n && j != keep && !ledger_pinned(&m->ledger, j)) j++;
    moved += move_or_copy(m, fd, i, j - i);
    if (j < p + n) {
      mc_install(m, fd, (uint8_t *)(m->t.begin + j * FWD_PAGE),
              (uint8_t *)(m->shadow + j * FWD_PAGE), FWD_PAGE);
      j++;
    }
    i = j;
  }
  m->moved_pages += moved;
  m->in_place_pages += n;
  for (size_t i = 0; i < n; i++) {
    ledger_page_built(&m->ledger, &m->t, p + i);
    atomic_store_explicit(&m->page_state[p + i], PAGE_MAPPED, memory_order_release);
  }
}

/* The releaser's time slice (heap/thread_slice.c).  With the default one,
 * the woken releaser waited for a busy mutator or the worker to use up its
 * slice: a few ms in which the builders went on mapping pages with a full
 * batch of from-space already waiting (fhbench pause, SIGBUS mode: over_MiB
 * medians 10.7-11.6, worst runs 16; one trace had the first batch given
 * back at 3300 ready pages).  With 100 us it preempts them at once: 9 in
 * 10 releases start by 2066 ready pages.  A release then takes 1.3 ms a
 * batch at the median, p99 5.6 ms when the releaser is preempted
 * meanwhile.  FH_MC_RELEASER_SLICE_US=0: the default slice. */
#define RELEASER_SLICE_US 100

/* The concurrent phase's releaser: sleeps until a batch of from-space
 * pages is ready, gives it back, until the worker stops it. */
static void *releaser_main(void *arg) {
  mc_state *m = arg;
  const char *e = getenv("FH_MC_RELEASER_SLICE_US");
  unsigned long slice_us = e && *e ? strtoul(e, NULL, 10) : RELEASER_SLICE_US;
  if (slice_us) thread_set_slice(slice_us * 1000);
  uint64_t cpu0 = mc_thread_cpu_ns();
  /* Pages without a live word are read by nobody: back at once (or with
   * the first batch, should the worker hold the flag just then). */
  for (size_t min = 1;;) {
    if (ledger_release(&m->ledger, m->shadow, min) ||
        !atomic_load_explicit(&m->ledger.ready_count, memory_order_relaxed))
      min = LEDGER_RELEASE_PAGES;
    if (atomic_load(&m->stop_releaser)) break;
    /* A batch completed after this check posts, so the wait returns.  A
     * batch still waiting means the worker held the flag (staging) or more
     * came meanwhile: try again after letting the worker run. */
    if (atomic_load_explicit(&m->ledger.ready_count, memory_order_relaxed) <
        LEDGER_RELEASE_PAGES)
      ledger_wait_ready(&m->ledger);
    else
      sched_yield();
  }
  m->release_cpu_ns = mc_thread_cpu_ns() - cpu0;
  return NULL;
}

static void *worker_main(void *arg) {
  mc_state *m = arg;
  int fd = fh_uffd_fd(m->uffd);
  size_t np = m->t.npages, low = 0, stage = 0;
  int use_move = m->use_move && fh_uffd_has_move(m->uffd);
  install_costs costs;
  install_costs_init(&costs);
  m->moved_pages = 0;
  m->in_place_pages = 0;
  gc_task releaser; /* release_cpu_ns: reset by mc_prepare */
  atomic_store(&m->stop_releaser, 0);
  int own_releaser = gc_pool_start(&m->h->pool, &releaser, "fh-release", releaser_main, m) == 0;
  if (!own_releaser) /* do its work here: dead pages now, the rest between runs */
    ledger_release(&m->ledger, m->shadow, 1);
  /* Tests: the gate holds the worker until someone waits for the phase
   * (each waiter hurries it), whatever the load; a delay, for a while. */
  if (m->worker_gate) {
    gc_pace_await_hurry(m->h);
  } else if (m->worker_delay_ms) {
    struct timespec ts = {m->worker_delay_ms / 1000, (long)(m->worker_delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  mc_worker_first(m); /* the ledger's plan, large reference arrays (mc.h) */
  uint64_t t0 = now_ns(), cpu0 = mc_thread_cpu_ns(), built = 0;
  /* Once the uffd is broken every install is an mremap that leaves a VMA
   * of its own until the next pause: the worker then builds runs of up to
   * 2 MiB in a buffer of that size, so that a large heap stays far below
   * vm.max_map_count (16-page runs would need one VMA per 64 KiB). */
  uint8_t *big = NULL;
  int big_failed = 0;
  for (size_t p = 0; p < np;) {
    size_t n = 0, max = MC_MAX_RUN;
    uint8_t *buf = m->worker_buf;
    if (p >= m->t.dense_pages && !big_failed &&
        atomic_load_explicit(&m->uffd_broken, memory_order_relaxed)) {
      if (!big) {
        void *b = sys_mmap(NULL, MC_BROKEN_RUN * FWD_PAGE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        big = b == MAP_FAILED ? NULL : b; /* failed: 16-page runs, as before */
        big_failed = !big;
      }
      if (big) max = MC_BROKEN_RUN, buf = big;
    }
    while (n < max && p + n < np && mc_claim_page(m, p + n)) n++;
    if (n == 0) { /* a mutator has it */
      p++;
      continue;
    }
    advance_low(m, &low); /* low <= p: page p is claimed, not mapped */
    if (!own_releaser) ledger_release(&m->ledger, m->shadow, LEDGER_RELEASE_PAGES);
    if (use_move && atomic_load_explicit(&m->uffd_broken, memory_order_relaxed))
      use_move = 0; /* MOVE is an ioctl too: mc_install remaps now */
    /* A 2 MiB run is built and remapped, never moved (build_and_move
     * stages at most MC_MAX_RUN pages), even if uffd_broken was cleared
     * since by an installer trying the ioctl again. */
    int move = use_move && buf == m->worker_buf && install_choose_move(&costs), moved = move;
    /* CPU time, not wall: a run during which the worker was preempted
     * (mutators busy on every CPU) would otherwise count the slice it
     * waited as install cost, and a few such samples decided the choice
     * (a 16-page COPY run measured 95-160 us a page that way).  The TLB
     * shootdown MOVE waits for is spent spinning: it is CPU time too.
     * Not every run: that clock is a system call (install_costs.h). */
    int timed = use_move && install_wants_timing(&costs, move);
    uint64_t b0 = timed ? mc_thread_cpu_ns() : 0;
    if (p + n <= m->t.dense_pages) {
      mc_fix_and_install_dense(m, fd, p, n, move);
    } else if (move && build_and_move(m, fd, p, n, &stage, low) == 0) {
      m->moved_pages += n;
    } else {
      mc_build_and_copy(m, fd, p, n, buf);
      moved = 0;
    }
    if (timed) install_record(&costs, move, moved, (mc_thread_cpu_ns() - b0) / n);
    built += n;
    p += n;
  }
  /* Harmless if it fails: a buffer nobody reads again. */
  if (big) sys_munmap(big, MC_BROKEN_RUN * FWD_PAGE);
  m->worker_ns = now_ns() - t0;
  m->worker_cpu_ns = mc_thread_cpu_ns() - cpu0;
  m->worker_bytes = built * FWD_PAGE;
  /* Mutators may still be building the last pages they claimed: give back
   * what their builds free meanwhile. */
  for (size_t p = 0; p < np; p++) {
    for (unsigned i = 0; atomic_load_explicit(&m->page_state[p], memory_order_acquire) !=
                         PAGE_MAPPED; i++) {
      if (!own_releaser) ledger_release(&m->ledger, m->shadow, LEDGER_RELEASE_PAGES);
      backoff(i);
    }
  }
  if (own_releaser) { /* every page is built: nothing more gets ready */
    atomic_store(&m->stop_releaser, 1);
    ledger_wake(&m->ledger);
    gc_pool_join(&m->h->pool, releaser);
  }
  if (getenv("FH_MC_TRACE"))
    fprintf(stderr, "faultheap mc concurrent: %zu pages (%zu dense), worker built %llu (%zu "
                    "moved, %zu fixed in place, %zu move fallbacks) in %.2f ms; per page: "
                    "copy %.2f us, move %.2f us; from-space given back early: %zu of %zu "
                    "pages\n",
            np, m->t.dense_pages, (unsigned long long)built, m->moved_pages, m->in_place_pages,
            m->move_fallbacks, m->worker_ns / 1e6, install_cost_of(&costs, 0) / 1e3,
            install_cost_of(&costs, 1) / 1e3,
            atomic_load(&m->ledger.released_pages), m->ledger.npages);
  mc_plan_prefault(m); /* before end_phase clears the tables */
  end_phase(m);
  mc_prefault(m);
  mc_gen_fill_walk(m); /* every page is in place now */
  return NULL;
}

/* A thread about to wait for the phase's end (the next collection, in
 * gc_run) builds pages too, from the top down while the worker goes up:
 * when the mutators allocate faster than one worker compacts, waiting
 * costs half as long on two CPUs. */
void mc_help_phase(fh_heap *h) {
  mc_state *m = h->mc;
  if (!m || !mc_phase_open(h)) return;
  atomic_fetch_add(&m->helpers, 1);
  int slot = -1;
  uint8_t *buf = atomic_load(&m->closing) ? NULL : take_fault_buf(m, &slot);
  if (buf) {
    int fd = fh_uffd_fd(m->uffd);
    for (size_t top = m->t.npages; top > 0 && !atomic_load(&m->closing);) {
      size_t p = top - 1, n = 0;
      /* claim a run ending at p, going down */
      while (n < MC_MAX_RUN && p >= n && mc_claim_page(m, p - n)) n++;
      if (n == 0) {
        top--;
        continue;
      }
      mc_build_and_copy(m, fd, p - n + 1, n, buf);
      top -= n;
    }
    put_fault_buf(m, slot);
  }
  atomic_fetch_sub(&m->helpers, 1);
}

static int open_uffd(mc_state *m) {
  fh_uffd_mode want = m->h->opt.uffd_sigbus ? FH_UFFD_SIGBUS : FH_UFFD_THREAD;
  if (m->uffd && fh_uffd_get_mode(m->uffd) == want)
    return fh_uffd_fd(m->uffd) >= 0 ? 0 : fh_uffd_reopen(m->uffd); /* see end_range */
  if (m->uffd) fh_uffd_destroy(m->uffd);
  m->uffd = fh_uffd_create(want, FH_UFFD_WANT_MOVE);
  if (m->uffd && want == FH_UFFD_THREAD)
    m->mode_note = "concurrent, faults served by the handler thread";
  if (!m->uffd && want == FH_UFFD_SIGBUS) {
    m->uffd = fh_uffd_create(FH_UFFD_THREAD, FH_UFFD_WANT_MOVE);
    if (m->uffd) m->mode_note = "concurrent, fault-handler thread (SIGBUS mode unavailable)";
  }
  return m->uffd ? 0 : -1;
}

/* Register the destination pages [begin, new top rounded up) for
 * missing-page faults, served by resolve().  0, or -1 with mode_note
 * saying why userfaultfd cannot be used now. */
static int register_destination(mc_state *m) {
  fwd_tables *t = &m->t;
  if (m->moved_by_copy) { /* from-space by memcpy: move_aside says why */
    m->mode_note = m->copy_note;
    return -1;
  }
  if (t->npages == 0) return -1; /* nothing live: nothing to compact */
  if (open_uffd(m) < 0) {
    m->mode_note = "stop-the-world fallback (cannot open a userfaultfd)";
    return -1;
  }
  uintptr_t reg_end = t->begin + t->npages * FWD_PAGE, end = t->begin + t->capacity;
  /* Someone (the embedder, a test harness, a sanitizer) may have replaced
   * our SIGBUS handler since the uffd was made: a missing-page fault would
   * then kill the process.  Re-install it, chaining to theirs (one
   * sigaction when nothing changed). */
  if (fh_uffd_get_mode(m->uffd) == FH_UFFD_SIGBUS && fh_uffd_sigbus_install() != 0) {
    m->mode_note = "stop-the-world fallback (cannot install the SIGBUS handler)";
    return -1;
  }
  /* Give the VMA its anon_vma before registration splits it, so the halves
   * merge again after unregistering (else the next cycle's mremap sees two
   * VMAs and fails with EFAULT).  The byte is the first page above the
   * range, which the mutators' first new TLAB takes anyway, written with
   * the space's huge pages off: a huge page there would cover registered
   * pages of the same PMD with zeroes, which their builds would then find
   * present (EEXIST).  Off until the range is registered, since khugepaged
   * could collapse that PMD meanwhile (after, it leaves uffd ranges
   * alone); the flag goes back on both halves, which therefore still
   * merge.  (The byte used to go a PMD further up, where its 2 MiB huge
   * page was most of what the cycle's resident peak held beyond the
   * release batch: fhbench pause over_MiB 10 -> 8.) */
  int thp_off = reg_end < end;
  if (thp_off) {
    /* Without the flag off the byte could fault in a huge page over
     * destination pages: their installs would find them present (EEXIST)
     * and leave them zero.  Build in place instead (issue 14, defect 1). */
    if (mc_space_thp(m, 0) != 0) {
      m->mode_note = "stop-the-world fallback (madvise(MADV_NOHUGEPAGE) failed)";
      return -1;
    }
    *(volatile char *)reg_end = 0;
  }
  fh_uffd_get_stats(m->uffd, &m->uffd_at_flip);
  uint64_t t0 = now_ns();
  m->range_id = fh_uffd_range_add(m->uffd, (void *)t->begin, reg_end - t->begin,
                                  FH_UFFD_REG_MISSING, resolve, m, NULL);
  m->register_ns = now_ns() - t0;
  if (thp_off) mc_space_thp(m, 1); /* may fail: speed only, and both halves still match */
  if (m->range_id < 0) {
    m->mode_note = "stop-the-world fallback (UFFDIO_REGISTER failed)";
    return -1;
  }
  atomic_store(&m->uffd_broken, 0); /* a fresh range: the ioctls get their chance */
  return 0;
}

int mc_concurrent_flip(mc_state *m) {
  mc_join_worker(m); /* its prefault must not run while the range is set up */
  if (register_destination(m) < 0) return mc_update_deferred(m), -1;
  mark_blank_pages(m);
  cc_large_flip(m); /* large reference arrays aside (cc_large.h) */
  uint64_t t0 = now_ns();
  size_t pinned = mc_build_pinned_ranges(m);
  mc_policy_pinned_built(&m->policy, pinned, now_ns() - t0);
  atomic_store(&m->closing, 0);
  fh_heap *h = m->h;
  heap_phase_open(h);
  mc_publish_top(m);
  m->worker_pending = 1; /* mc_start_worker, once the world runs */
  if (fh_uffd_get_mode(m->uffd) == FH_UFFD_SIGBUS)
    m->mode_note = "concurrent, faults served in the SIGBUS handler";
  else if (h->opt.uffd_sigbus == 0)
    m->mode_note = "concurrent, faults served by the handler thread";
  return 0;
}

void mc_start_worker(fh_heap *h) {
  mc_state *m = h->mc;
  if (!m || !m->worker_pending) return;
  m->worker_pending = 0;
  if (gc_pool_start(&h->pool, &m->worker, "fh-compact", worker_main, m) != 0) {
    /* No worker: do its work here, on the collecting thread (still
     * correct: the mutators fault pages in meanwhile as they would). */
    worker_main(m);
    m->mode_note = "worker's work done by the collecting thread (cannot start the GC worker)";
    return;
  }
  m->worker_joinable = 1;
}

/* What the gaps under pinned ranges must add up to for a failed
 * allocation to slide for them (below it the flip's room is as good). */
#define MC_ROOM_HOLES_MIN ((size_t)1 << 20)

int mc_cc_compact(mc_state *m) {
  fh_heap *h = m->h;
  /* Per cycle (mc_policy.h): little to move slides, for less than a flip. */
  const fwd_tables *t = &m->t;
  m->chose = 1, m->cmarked_choice = m->cmarked;
  size_t pinned_pages = fwd_pinned_pages(t, m->h->pins.starts, m->h->pins.n);
  /* What else a flip costs (mc_policy.h): the pages above the new top
   * that a slide keeps for the next window (publish_slid) and a flip gives
   * back, and the young survivors a slide keeps young and a flip promotes.
   * Not for a concurrently marked cycle, which is there for its pauses. */
  const bump_space *b = &h->bump[h->active];
  uintptr_t resident = b->dirty_end > t->old_top ? b->dirty_end : t->old_top;
  size_t above = resident > t->new_top ? resident - t->new_top : 0, win = sizer_resident_window(h);
  m->choice_refault_bytes = m->cmarked ? 0 : above < win ? above : win;
  m->choice_young_kept = m->cmarked ? 0 : mc_gen_keepable_bytes(m);
  m->choice_extra_ns = mc_policy_flip_extra_ns(&m->policy, m->choice_refault_bytes,
                                               m->choice_young_kept, m->thp);
  int for_extra = 0;
  size_t upd = mc_slide_walk_bytes(m, m->choice_young_kept); /* its walks besides marking */
  if (m->cmarked) {
    m->chose_slide = mc_policy_choose_slide_for_pause(&m->policy, upd, t->move_bytes,
                                                      pinned_pages, &m->choice_est_ns);
  } else {
    m->chose_slide = mc_policy_choose_slide_extra(&m->policy, upd, t->move_bytes,
                                                  pinned_pages, m->choice_extra_ns,
                                                  &m->choice_est_ns);
    for_extra = m->chose_slide && m->policy.force < 0 &&
                !mc_policy_choose_slide_pinned(&m->policy, upd, t->move_bytes,
                                               pinned_pages, NULL);
  }
  /* heap/sizer.h: a flip's two copies must fit under heap_max (unless
   * FH_MC_SLIDE=0 insists on flipping). */
  int no_room = !m->chose_slide && m->policy.force != 0 &&
                !sizer_flip_fits(h, t->old_top - t->begin, t->live_bytes);
  if (no_room) m->chose_slide = 1;
  /* An allocation failed and objects are pinned: a flip leaves the gaps
   * under pinned ranges unbuilt, and with conservative roots a stack word
   * pins the newest object at the top of a full space at nearly every
   * collection, so the retry found no room with a third of heap_max live
   * (binary-trees in 24 MiB, tests/test_gen_conservative.c).  A slide
   * hands those gaps to the allocator at once. */
  int for_room = !m->chose_slide && m->gen.alloc_failure && t->nranges &&
                 mc_hole_bytes(m) >= MC_ROOM_HOLES_MIN;
  if (for_room) m->chose_slide = 1;
  h->gc_how = no_room                          ? "slid in the pause (no room under heap_max for a flip)"
              : for_room ? "slid in the pause (an allocation failed: holes under pinned objects now)"
              : for_extra ? "slid in the pause (less than a flip with its refaults and promotions)"
              : m->chose_slide && pinned_pages ? "slid in the pause (little to move, or pinned pages)"
              : m->chose_slide                 ? "slid in the pause (little to move)"
                                               : "flipped (concurrent build)";
  if (mc_gen_enabled(h)) { /* and why it was a full one */
    snprintf(m->gen.how, sizeof m->gen.how, "full (%s), %s", gen_why_name(h->gen.choice.why),
             h->gc_how);
    h->gc_how = m->gen.how;
  }
  uint64_t t0 = now_ns(); /* a concurrently marked cycle's pause from here teaches its choice */
  size_t moving = t->move_bytes;
  if (m->chose_slide) {
    mc_slide_cycle(m, no_room    ? "stop-the-world slide, chosen (no room under heap_max for a flip)"
                      : for_room ? "stop-the-world slide, chosen (an allocation failed, objects pinned)"
                                 : "stop-the-world slide, chosen (little to move)");
    if (m->cmarked) mc_policy_learn_pause(&m->policy, 1, upd, moving, 0, now_ns() - t0);
    if (m->gen.keep_mid) mc_gen_verify(m, "after full collection (young kept)");
    return 0;
  }
  if (m->policy.force < 0) mc_policy_flipped(&m->policy);
  if (mc_prepare_move(m) < 0) return -1;
  mc_gen_end(m); /* full: every survivor is old */
  m->build_cycles++;
  h->compact_builds++;
  if (mc_concurrent_flip(m) == 0) {
    if (m->cmarked) mc_policy_learn_pause(&m->policy, 0, 0, 0, pinned_pages, now_ns() - t0);
    return 0;
  }
  /* userfaultfd cannot be used now: the same pages, built in the pause. */
  mc_build_all(m, h->opt.gc_threads);
  mc_publish_top(m);
  mc_poison_last_page(m);
  mc_publish_holes(m);
  mc_end_cycle(m);
  return 0;
}

static int concurrent_compact_collect(fh_heap *h, fh_thread *self, gc_cause cause) {
  (void)self;
  mc_state *m = mc_get(h);
  if (!m) return -1;
  mc_join_worker(m); /* before any page of the space moves */
  /* Young collections (mc_gen.h) slide in the pause: they move the young
   * survivors only, a few MiB at most between collections, less than a
   * flip's fixed cost. */
  int young = mc_gen_begin(m, cause);
  /* A triggered full cycle marks concurrently when it can: this pause
   * only takes the roots (collectors/cc_concurrent.c). */
  if (!young && cc_concurrent_usable(h, cause) && cc_concurrent_begin(m) == 0) return 0;
  if (mc_prepare_forward(m) < 0) return -1;
  if (young) {
    mc_slide_cycle(m, "young collection (generations), slid in the pause");
    mc_gen_verify(m, "after young collection");
    return 0;
  }
  return mc_cc_compact(m);
}

const fh_collector_ops concurrent_compact_collector = {
    "concurrent_compact", concurrent_compact_collect, mc_prepare_unpaused};
