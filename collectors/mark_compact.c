/* Mark-compact: the pause work both schedules share, and the stop-the-world
 * schedule (every destination page built inside the pause, by gc_threads
 * threads in parallel).  See mc.h for the overall shape. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "collectors/mc.h"
#include "collectors/trace.h"
#include "heap/large_objects.h"
#include "heap/barrier.h"
#include "heap/error.h"
#include "heap/identity_hash.h"
#include "heap/object.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

#define FAULT_BUFS 64
/* Stop-the-world builders besides the caller.  Each COPY builder takes one
 * of the run buffers, and nothing else holds one with the world stopped. */
#define MAX_BUILD_HELPERS 15
_Static_assert(MAX_BUILD_HELPERS + 1 <= FAULT_BUFS, "a run buffer for every builder");

static void *map_rw(size_t bytes) {
  void *p = sys_mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* The munmaps of destroy paths here and in the other side tables are
 * harmless if they fail: the mapping leaks, nothing touches it again. */
void mc_state_destroy(mc_state *m) {
  if (!m) return;
  mc_join_worker(m);
  if (m->uffd) fh_uffd_destroy(m->uffd);
  fwd_destroy(&m->t);
  mc_gen_destroy(&m->gen);
  ledger_destroy(&m->ledger);
  if (m->shadow) fh_uffd_unreserve((void *)m->shadow, m->t.capacity);
  if (m->page_state) sys_munmap((void *)m->page_state, m->state_map_bytes);
  if (m->fault_bufs) sys_munmap(m->fault_bufs, (size_t)FAULT_BUFS * MC_MAX_RUN * FWD_PAGE);
  if (m->worker_buf) sys_munmap(m->worker_buf, (size_t)MC_MAX_RUN * FWD_PAGE);
  free(m);
}

/* Huge pages pay for a large allocation window (faults at ~0.5 us per
 * 4 KiB instead of ~2), but round a small one up to whole 2 MiB pages: a
 * heap whose window is one MiB (fhscheme's min_alloc_trigger) kept 2-4 MiB
 * resident that nothing used, a third or more of its whole footprint
 * (deriv: peak RSS 5.1-9.4 MiB with them, 5.1-6.2 without, same CPU time).
 * So an embedder that asks for a window under two huge pages (fixed
 * sizing, min_alloc_trigger) gets 4 KiB pages; the default (4 MiB) keeps
 * them.  Decided once, from the options: heap_policy=adaptive keeps them
 * whatever its budget, because it sizes the heap from measured allocation
 * and collection speeds, which the flag changes (a flag that followed the
 * trigger, or 4 KiB pages under adaptive's small budgets, made
 * test_sizing's budgets swing 2-7 MiB between runs). */
#define MC_THP_MIN_WINDOW (2 * FH_PMD)
static int mc_thp_wanted(const fh_heap *h) {
  return h->opt.heap_policy == FH_HEAP_ADAPTIVE || h->opt.min_alloc_trigger >= MC_THP_MIN_WINDOW;
}

static int state_init(mc_state *m, fh_heap *h) {
  bump_space *b = &h->bump[h->active];
  size_t cap = b->space.end - b->space.begin;
  m->h = h;
  m->range_id = -1;
  /* Measured with fhbench pause (docs/architecture.md): building only the
   * faulting page keeps the fault at p50 ~7 us / p99 ~13 us; each extra
   * page halves nothing and adds ~4 us. */
  m->lookahead = 0;
  mc_policy_init(&m->policy);
  const char *la = getenv("FH_MC_LOOKAHEAD"); /* benchmarking the trade-off */
  if (la && *la) {
    unsigned long v = strtoul(la, NULL, 10);
    m->lookahead = v >= MC_MAX_RUN ? MC_MAX_RUN - 1 : (unsigned)v;
  }
  const char *nd = getenv("FH_MC_NO_DONTUNMAP"); /* tests: the copying fallback */
  m->no_dontunmap = nd && *nd == '1';
  const char *mv = getenv("FH_MC_MOVE");
  m->use_move = !(mv && *mv == '0');
  const char *delay = getenv("FH_MC_WORKER_DELAY_MS");
  if (delay && strcmp(delay, "gate") == 0) m->worker_gate = 1;
  else if (delay && *delay) m->worker_delay_ms = (unsigned)strtoul(delay, NULL, 10);
  if (fwd_init(&m->t, b->space.begin, cap) < 0 || ledger_init(&m->ledger, cap) < 0) return -1;
  /* After each cycle the space above the new top is empty, and allocation
   * refills it with first-touch faults: as 2 MiB pages that is ~0.5 us per
   * 4 KiB instead of ~2 (GCBench ~15% faster).  The whole VMA gets the flag,
   * so nothing splits; uffd COPY/MOVE still install 4 KiB pages, and the
   * flip writes its anon_vma byte with the flag off (register_destination).
   * FH_MC_THP=0 turns it off, as MADV_NOHUGEPAGE rather than no flag: on a
   * host whose THP setting is "always" an unflagged space gets huge pages
   * anyway, and that byte then a huge page over registered pages.  A small
   * allocation window gets the same 4 KiB pages (mc_thp_wanted). */
  const char *thp = getenv("FH_MC_THP");
  m->thp_allowed = !(thp && *thp == '0');
  m->thp = m->thp_allowed && mc_thp_wanted(h);
  /* MADV_HUGEPAGE failing costs speed only; MADV_NOHUGEPAGE failing would
   * let that huge page cover registered pages: refuse the cycle then,
   * unless huge pages are allowed, when the space is simply taken as
   * possibly having them (m->thp, as if the window were large). */
  int thp_failed =
      sys_madvise((void *)b->space.begin, cap, m->thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0;
  if (thp_failed && !m->thp && m->thp_allowed) {
    m->thp = 1;
    thp_failed = 0;
  }
  if (thp_failed && !m->thp) {
    fh_error_set("mark-compact: madvise(MADV_NOHUGEPAGE) of the moving space failed: %s",
                 strerror(errno));
    return -1;
  }
  m->state_map_bytes = align_up((cap / FWD_PAGE) * sizeof(uint32_t), FH_PAGE);
  m->page_state = map_rw(m->state_map_bytes);
  m->fault_bufs = map_rw((size_t)FAULT_BUFS * MC_MAX_RUN * FWD_PAGE);
  /* Not prefaulted: the builder's first write faults its pages in (and
   * every UFFDIO_MOVE takes them away again); a heap whose cycles all
   * slide in the pause never touches it (64 KiB of fhscheme's ~3 MiB). */
  m->worker_buf = map_rw((size_t)MC_MAX_RUN * FWD_PAGE);
  void *shadow = fh_uffd_reserve(cap, 0, PROT_NONE);
  m->shadow = (uintptr_t)shadow;
  if (!m->page_state || !m->fault_bufs || !m->worker_buf || !shadow) {
    fh_error_set("mark-compact: cannot map its tables and the %zu MiB from-space reservation "
                 "(%s)", cap >> 20, strerror(errno));
    return -1;
  }
  m->src = (page_source){&m->t, m->shadow - m->t.begin, &h->types};
  return 0;
}

mc_state *mc_get(fh_heap *h) {
  mc_state *m = h->mc;
  if (m && m->t.begin != h->bump[h->active].space.begin) {
    /* A semi-space collection swapped the bump spaces since: the tables
     * describe the other one.  Start over (rare: explicit kinds only). */
    mc_stats_retire(h, m);
    m = NULL; /* h->mc too: unpublished by mc_stats_retire */
  }
  if (m) return m;
  m = calloc(1, sizeof *m);
  if (!m) {
    fh_error_set("mark-compact: out of memory");
    return NULL;
  }
  if (state_init(m, h) < 0) {
    mc_state_destroy(m);
    return NULL;
  }
  /* Release: fhbench's memory sampler reads the state without the GC
   * lock (fh_gc_transient_bytes), possibly just as it first appears. */
  __atomic_store_n(&h->mc, m, __ATOMIC_RELEASE);
  return m;
}

/* Move the space's pages to from-space.  With MREMAP_DONTUNMAP only page
 * tables move (tens of microseconds); the space stays one VMA, mapped but
 * empty.  Without it, copy and discard (slow, but the same result). */
static int move_aside(mc_state *m) {
  fwd_tables *t = &m->t;
  m->moved_by_copy = 0;
  /* After a phase that installed pages by mremap (userfaultfd ioctls
   * failing: page_install.c, mc_install) the space is several VMAs and
   * DONTUNMAP would fail: copy it aside and map it afresh, as one VMA. */
  int split = atomic_load(&m->space_split);
  m->copy_note = split ? "stop-the-world fallback (the space was split by a remap fallback)"
                      : "stop-the-world fallback (no MREMAP_DONTUNMAP)";
  if (!split && (fh_capabilities() & FH_CAP_DONTUNMAP) && !m->no_dontunmap) {
    m->copy_note = "stop-the-world fallback (madvise(MADV_NOHUGEPAGE) before the flip failed)";
    /* From-space inherits the space's flags with its pages, and must not
     * have MADV_HUGEPAGE: the worker stages pages in its released holes,
     * where a huge page would zero (and keep) 2 MiB per staged 4 KiB, and
     * on a host whose THP setting is "always" khugepaged may collapse a
     * from-space PMD behind the ledger's back.  So the flag goes off
     * before the move, while nothing has moved yet and a failure can
     * still choose another way (a flag set on from-space after the move,
     * as it used to be, could only fail with the pages already there:
     * issue 14, defect 1), and back on the emptied space after it.  When
     * it cannot go off, the copy below moves the cycle instead: a fresh
     * from-space, no staging (register_destination refuses a copied
     * cycle), so no flag needed. */
    if (!m->thp || sys_madvise((void *)t->begin, t->capacity, MADV_NOHUGEPAGE) == 0) {
      if (fh_uffd_mremap_dontunmap((void *)t->begin, t->capacity, (void *)m->shadow) == 0) {
        mc_space_thp(m, 1); /* may fail: the allocation window then faults 4 KiB pages */
        return 0;
      }
      mc_space_thp(m, 1);
      m->copy_note = "stop-the-world fallback (MREMAP_DONTUNMAP failed)";
      /* EFAULT here means the space is no longer one VMA (a bug elsewhere:
       * mprotect or a partial madvise of the moving space).  Any failure:
       * the copy below does the same, slowly, and maps the space afresh
       * in case the failure split it. */
      split = 1;
    }
  }
  size_t used = align_up(t->old_top, FH_PAGE) - t->begin;
  void *p = sys_mmap((void *)m->shadow, t->capacity, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) {
    fh_error_set("mark-compact: cannot map from-space (%s)", strerror(errno));
    return -1;
  }
  /* From-space here has no huge-page flag: on an "always" host it may get
   * huge pages, which costs memory only, since a copied cycle builds in
   * place with no staging (register_destination refuses moved_by_copy). */
  memcpy(p, (void *)t->begin, used);
  /* When the space may be split (after a phase that installed by mremap,
   * a failed DONTUNMAP, or a state rebuilt by mc_get that no longer knows),
   * empty it by mapping it afresh rather than discarding its pages: the
   * same contents (zeroes), one VMA again.  This cycle may then use
   * userfaultfd and stage pages in from-space, so from-space must not get
   * huge pages (above); if that flag cannot be set, the cycle is built as
   * a copied one. */
  if (split && reserve_commit(t->begin, t->capacity) == 0) {
    /* The fresh mapping has lost the space's huge-page flag.  With
     * FH_MC_THP=0 the space relies on NOHUGEPAGE (register_destination
     * writes a byte above the range, which must not fault a huge page over
     * destination pages): if it cannot be set, build this cycle in place
     * and leave the space marked split, so the next pause maps it afresh
     * and tries again.  MADV_HUGEPAGE failing costs speed only. */
    if (sys_madvise((void *)t->begin, t->capacity, m->thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) !=
            0 &&
        !m->thp) {
      m->moved_by_copy = 1;
      m->copy_note = "stop-the-world fallback (madvise(MADV_NOHUGEPAGE) of the space failed)";
      return 0;
    }
    atomic_store(&m->space_split, 0);
    m->moved_by_copy = sys_madvise(p, t->capacity, MADV_NOHUGEPAGE) != 0;
    m->copy_note =
        "stop-the-world fallback (madvise(MADV_NOHUGEPAGE) of a fresh from-space failed)";
    return 0;
  }
  reserve_discard(t->begin, used); /* zeroes by hand if madvise fails */
  m->moved_by_copy = 1;
  return 0;
}

static void update_slot(void **slot, void *ctx) {
  const fwd_tables *t = ctx;
  uintptr_t v = (uintptr_t)*slot;
  void *p = (void *)slot_target(t->tags, v), *q = fwd_ref(t, p);
  /* unchanged slots stay unwritten: image pages stay shared */
  if (q != p) *slot = (void *)slot_retag(t->tags, v, (uintptr_t)q);
}

static void update_object(void *obj, void *ctx) {
  mc_state *m = ctx;
  if (heap_skips_scan(m->h, obj)) return; /* a quiet large object refers to nothing movable */
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&m->h->types, hdr_type(hd));
  if (ti && !ti->nrefs && (ti->flags & FH_TYPE_REF_ARRAY)) {
    /* A large one may be fixed after the flip instead (cc_large.h). */
    if (!cc_large_defer(m, obj, hdr_payload(hd) / sizeof(void *)))
      mc_update_array(m, obj, hdr_payload(hd) / sizeof(void *)); /* prefetched, shared */
  }
  else if (ti)
    types_visit_refs(ti, obj, hdr_payload(hd), update_slot, &m->t);
}

/* Bytes of side tables this cycle writes, for the resident-memory figures:
 * two bitmaps (a bit per word up to the old top), chunk offsets, first
 * objects and states of destination pages, the ledger's counts and bits. */
static size_t mc_table_bytes(const mc_state *m) {
  size_t used = m->old_used, pages = align_up(used, FWD_PAGE) / FWD_PAGE;
  return 2 * (used / 64) + (used >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk) +
         (m->t.npages + 1) * (sizeof(uintptr_t) + sizeof(uint32_t)) +
         pages * sizeof(uint32_t) + pages / 8;
}

/* Hashed objects that gain their hash word in this cycle: their keys stay
 * reserved (heap/identity_hash.h).  The records hold old addresses, as
 * every other slot does until the update pass forwards it. */
static void record_growers(fh_heap *h, const fwd_tables *t) {
  /* Room for all at once (each idhash_vacate doubling it as it fills took
   * eight reallocations from 128 records to 20,000); without, it grows as
   * they come. */
  (void)weak_records_reserve(&h->hash_vacated, t->ngrows);
  /* From ylo: a young cycle marks (and finds growers) above it only, and
   * the bitmap's words below it are zero; walking them cost a young cycle
   * a word per 512 bytes of old generation. */
  for (uintptr_t a = bitmap_next_set(&t->grows, t->ylo, t->old_top); a;
       a = bitmap_next_set(&t->grows, a + FWD_WORD, t->old_top)) {
    void *obj = obj_from_start(a);
    idhash_vacate(h, obj, obj_hash_key(obj, *(const uint64_t *)a));
  }
}

/* verify=1, after fwd_compute: every marked object hashed at its address
 * (it gains its hash word when it first moves) has its grows bit, unless a
 * pinned range holds it (it stays).  Without the bit it would move without
 * the word and its hash would change silently: the concurrent marker once
 * missed objects a mutator hashed after the marker had marked them black
 * above the boundary (mc_mark.c, mc_cmark_visit). */
static void verify_growers(const fwd_tables *t) {
  for (uintptr_t a = bitmap_next_set(&t->mark, t->ylo, t->old_top); a;
       a = bitmap_next_set(&t->mark, a + FWD_WORD, t->old_top)) {
    if (!hdr_hash_grows(*(const uint64_t *)a) || bitmap_test(&t->grows, a)) continue;
    size_t r = fwd_range_at(t, a);
    if (r < t->nranges && t->ranges[r].lo <= a) continue; /* pinned: stays */
    fprintf(stderr,
            "faultheap verify (forwarding): object %p is hashed at its address and will move "
            "without its hash word (no grows bit)\n",
            obj_from_start(a));
    abort(); /* (not fh_dump: the pause holds the stats lock it takes) */
  }
}

/* stack_roots=conservative: the space's walk points (bump_space.h) for
 * the layout this cycle builds: the new start of the object covering each
 * destination page's first byte, and each gap's filler (pinned ranges);
 * the last page's filler is reached by walking from its page's first
 * object.  The bits of the old layout go first. */
static void set_walk_points(bump_space *b, const fwd_tables *t) {
  if (!b->starts.words) return;
  /* A young cycle lays out pages from ylo's on; walks reach objects
   * between ylo and the next page from the old generation's points. */
  bump_space_clear_starts(b, t->ylo, t->begin + align_up(t->old_top - t->begin, FWD_PAGE));
  for (size_t p = align_up(t->ylo - t->begin, FWD_PAGE) / FWD_PAGE; p < t->npages; p++)
    if (t->page_first[p]) bump_space_note_start(b, fwd_start(t, t->page_first[p]));
  /* A gap is one filler: walks from its start pass over its blank pages. */
  for (size_t r = 0; r < t->nranges; r++) {
    for (uintptr_t a = t->ranges[r].gap_lo, lo = t->ranges[r].lo; a < lo;
         a = fwd_gap_filler_end(t, a, lo))
      bump_space_note_start(b, a);
    /* A page may begin in the gap.  A young cycle's first range may start
     * at the floor, below ylo, among old words where an old object can
     * cross its first byte: there the next start is ylo, the old
     * generation's end (walks reach it from the old objects' points). */
    bump_space_note_start(b, t->ranges[r].lo >= t->ylo ? t->ranges[r].lo : t->ylo);
  }
}

void mc_prepare_unpaused(fh_heap *h) {
  /* A concurrent marking runs (cc_concurrent.c): the tables are its
   * marker's until the pause that follows stops it. */
  if (h->cm) return;
  mc_state *m = mc_get(h);
  if (!m) return; /* collect reports it */
  mc_join_worker(m); /* it may still clear the last cycle's tables */
  /* Generations: a young cycle never reads the chunks below the old
   * generation's end; a full one faults those in as it writes them. */
  fwd_tables *t = &m->t;
  uintptr_t floor = t->begin + align_down(m->gen.old_end - t->begin, (size_t)1 << FWD_CHUNK_SHIFT);
  if (mc_gen_enabled(h) && m->gen.valid && m->gen.old_end > t->begin && t->chunks_populated < floor)
    t->chunks_populated = floor;
  fwd_populate_chunks(t, atomic_load(&h->bump[h->active].top));
}

void mc_forward_setup(mc_state *m, int populate) {
  fh_heap *h = m->h;
  fwd_tables *t = &m->t;
  bump_space *b = &h->bump[h->active];
  /* The last cycle's holes: this one relays everything. */
  bump_space_set_holes(b, NULL, 0);
  t->tags = h->tags;
  t->old_top = atomic_load(&b->top);
  m->old_used = t->old_top - t->begin;
  m->slid = 0;
  atomic_store(&m->uffd_errno, 0); /* this cycle's install failures (fh_dump) */
  atomic_store(&m->remap_pages, 0);
  atomic_store(&m->install_stuck, 0);
  /* A young cycle collects above the old generation only (mc_gen.h). */
  t->young = m->gen.young;
  t->lo = t->begin + align_down((t->young ? m->gen.old_end : t->begin) - t->begin,
                                (size_t)1 << FWD_CHUNK_SHIFT);
  if (populate) fwd_prepare_marking(t);
  fwd_set_floor(t, t->young ? m->gen.old_end : t->begin);
}

int mc_forward_pins_sweep(mc_state *m, mc_mark_crew *crew) {
  if (mc_forward_pins(m, crew) < 0) return -1;
  mc_sweep_outside(m);
  return 0;
}

int mc_forward_pins(mc_state *m, mc_mark_crew *crew) {
  fh_heap *h = m->h;
  fwd_tables *t = &m->t;
  /* Pinned objects become fixed points (forwarding.h: pinned ranges),
   * while the space is still in place: their ranges' dead words become
   * fillers there.  Fails only for memory, before anything is written. */
  if (h->pins.gathered && fwd_pin_ranges(t, h->pins.starts, h->pins.n) < 0) {
    /* Forget the partial marks; sweeping now would free live objects. */
    mc_mark_end(crew);
    fwd_reset(t);
    bitmap_clear_all(&h->non_moving.mark_bits);
    los_clear_marks(&h->los);
    return -1;
  }
  return 0;
}

void mc_sweep_outside(mc_state *m) {
  /* Young: the non-moving and large objects are old, not marked. */
  uint64_t ts = heap_now_ns();
  m->nm_freed = m->t.young ? 0 : heap_sweep_nonmoving(m->h);
  m->sweep_ns = heap_now_ns() - ts;
}

void mc_forward_finish(mc_state *m, mc_mark_crew *crew, uint64_t t0, uint64_t t1) {
  fh_heap *h = m->h;
  fwd_tables *t = &m->t;
  /* Not once fwd_compute_below has summed chunks from the floor. */
  if (!t->cur.started) fwd_keep_dense_prefix(t);
  fwd_compute(t);
  m->hole_bytes = SIZE_MAX; /* the gaps are known from here on (mc_holes.c) */
  m->fwd_compute_ns = heap_now_ns() - t1;
  if (h->opt.verify) verify_growers(t);
  if (t->ngrows) record_growers(h, t);
  set_walk_points(&h->bump[h->active], t);
  /* Its helpers gave their bitmaps back meanwhile (a wait for the last of
   * them, if any, counts in forward_ns). */
  mc_mark_end(crew);
  m->mark_ns = t1 - t0, m->forward_ns = heap_now_ns() - t1;
  m->mremap_ns = 0;
  m->live_bytes = t->live_bytes;
  m->pinned_ranges = t->nranges;
  m->pinned_objects = t->pinned_objects;
  m->pinned_bytes = t->pinned_bytes;
  m->release_cpu_ns = 0; /* a concurrent cycle's releaser sets it */
}

int mc_forward_marked(mc_state *m, mc_mark_crew *crew, uint64_t t0) {
  if (mc_forward_pins_sweep(m, crew) < 0) return -1;
  mc_forward_finish(m, crew, t0, heap_now_ns());
  return 0;
}

int mc_prepare_forward(mc_state *m) {
  fh_heap *h = m->h;
  fwd_tables *t = &m->t;
  mc_forward_setup(m, 1);
  uint64_t t0 = heap_now_ns();
  mc_mark_crew *crew;
  if (mc_mark(h, t, &crew) < 0) {
    mc_mark_end(crew);
    fwd_reset(t);
    bitmap_clear_all(&h->non_moving.mark_bits);
    los_clear_marks(&h->los);
    return -1;
  }
  return mc_forward_marked(m, crew, t0);
}

void mc_account(mc_state *m) {
  fh_heap *h = m->h;
  size_t live = m->t.live_bytes, nm_used = heap_nonmoving_used(h);
  /* A young cycle collected [ylo, old_top); the old generation below
   * stays, live by assumption. */
  size_t old = m->t.ylo - m->t.begin, collected = m->old_used - old;
  /* The budget grows from the old generation's live bytes, not its range
   * (mc_gen.h: old_live, still the previous cycle's figure here). */
  size_t old_live = old ? (m->gen.old_live < old ? m->gen.old_live : old) : 0;
  h->bytes_moved += live;
  /* Dead wood (fwd_wood.c) is not freed until a later cycle frees it. */
  size_t kept = live + m->t.wood_bytes;
  h->bytes_freed += (collected > kept ? collected - kept : 0) + m->nm_freed;
  /* A concurrently marked cycle's black objects are not part of the
   * budget (cc_concurrent.c). */
  size_t black = m->black_bytes < live ? m->black_bytes : live;
  m->black_bytes = 0;
  m->gen.black = black; /* mc_gen_end: not freed, not found live either */
  /* The space after the cycle, from its start to the new top (the old
   * generation whole): its end bounds the next window (sizer_moving_room). */
  size_t occupied = m->t.new_top > m->t.begin ? m->t.new_top - m->t.begin : 0;
  heap_set_trigger_moving(h, old_live + live - black + nm_used, occupied, m->thp);
  /* A young cycle's budget never grows past the last full cycle's, as
   * ART's heap does not grow after a sticky collection: old_live counts
   * what died in the old generation since, and budgets grown from it
   * grew the heap with its garbage (fhscheme's hashtables peaked at 41
   * MiB with generations, 20 without; 21-30 with this). */
  if (!mc_gen_enabled(h)) return;
  if (!m->t.young) {
    m->gen.full_budget = h->gc_trigger;
    m->gen.full_budget_limit = heap_limit(h);
  } else if (m->gen.full_budget_limit == heap_limit(h) && m->gen.full_budget < h->gc_trigger) {
    /* (Not after fh_set_heap_max moved the cap: that budget was the room
     * under the old one.) */
    h->gc_trigger = m->gen.full_budget;
  }
}

void mc_update_outside(mc_state *m) {
  fh_heap *h = m->h;
  fwd_tables *t = &m->t;
  if (t->young) {
    mc_gen_update_outside(m);
    return;
  }
  roots_visit(h, update_slot, t);
  /* A flip leaves the vacated addresses' records to its worker: a
   * hash-heavy heap holds tens of thousands (fhscheme's hashtables:
   * 20-40,000, 0.13-0.35 ms of its remark pauses). */
  weak_roots_visit_finalizers(h, update_slot, t);
  if (!m->vacated_later) weak_roots_visit_vacated(h, update_slot, t);
  fh_space *spaces[HEAP_MAX_SPACES];
  unsigned n = heap_spaces(h, spaces);
  for (unsigned i = 0; i < n; i++)
    /* Not the image or zygote space: roots_visit already updated their
     * references out (the slots of their dirty cards), and forwarding a
     * slot twice would send it elsewhere; their other slots point into
     * immune spaces. */
    if (spaces[i]->kind != SPACE_BUMP && spaces[i] != &h->image.space &&
        spaces[i] != &h->zygote.space)
      spaces[i]->ops->walk(spaces[i], update_object, m);
  /* Cards of the moving space describe old addresses: forget them. */
  if (t->old_top > t->begin) cards_clear_range(h, t->begin, t->old_top);
  mc_gen_full_cards(m); /* generations: nothing is young after a full cycle */
}

int mc_prepare_move(mc_state *m) {
  fwd_tables *t = &m->t;
  uint64_t tp = heap_now_ns();
  /* Reads headers before they move, when a type has a trace function;
   * else the counting is left to the GC worker (mc_worker_first). */
  ledger_plan(&m->ledger, t, &m->h->types, 1);
  /* A slide left the pages above the old top resident (dirty_end): they
   * go to from-space with the rest and back to the system with it. */
  uintptr_t dirty = m->h->bump[m->h->active].dirty_end;
  m->from_used = (dirty > t->old_top ? dirty : t->old_top) - t->begin;
  uint64_t t2 = heap_now_ns();
  m->forward_ns += t2 - tp; /* the ledger counted as forwarding, as before */
  if (move_aside(m) < 0) {
    /* Nothing moved: the heap is as marking found it, the tables go. */
    ledger_reset(&m->ledger);
    fwd_reset(t);
    return -1;
  }
  uint64_t t3 = heap_now_ns();
  /* From here on the pages are in from-space: point every reference held
   * outside the moving space at the new addresses. */
  m->large.defer = 1; /* mc_cc_compact flips next, or updates them (cc_large_fallback) */
  m->vacated_later = 1; /* the same, mc_update_vacated */
  mc_update_outside(m);
  m->large.defer = 0;
  m->mremap_ns = t3 - t2;
  m->large.at_updated = heap_now_ns();
  m->update_ns = m->large.at_updated - t3;
  m->table_bytes = mc_table_bytes(m);
  mc_account(m);
  return 0;
}

int mc_prepare(mc_state *m) { return mc_prepare_forward(m) < 0 ? -1 : mc_prepare_move(m); }

void mc_worker_first(mc_state *m) {
  mc_update_vacated(m);
  ledger_plan_deferred(&m->ledger, &m->t); /* the releaser's first step, unless it began */
  cc_large_work(m, m->worker_buf);
}

void mc_update_vacated(mc_state *m) {
  if (!m->vacated_later) return;
  m->vacated_later = 0;
  weak_roots_visit_vacated(m->h, update_slot, &m->t);
}

void mc_update_deferred(mc_state *m) {
  cc_large_fallback(m);
  mc_update_vacated(m);
}

/* ---- stop-the-world schedule ---- */

typedef struct build_job {
  mc_state *m;
  _Atomic size_t next;
} build_job;

uint64_t mc_thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *build_pages(void *arg) {
  build_job *j = arg;
  mc_state *m = j->m;
  size_t np = m->t.npages;
  uint64_t cpu0 = mc_thread_cpu_ns();
  for (;;) {
    size_t p = atomic_fetch_add_explicit(&j->next, MC_MAX_RUN, memory_order_relaxed);
    if (p >= np) break;
    size_t e = p + MC_MAX_RUN < np ? p + MC_MAX_RUN : np;
    /* The destination is plain (empty) memory: build in place, after
     * faulting the run in with one call instead of a fault per page
     * (GCBench builds: 400-680 ms against 500-760 ms; EINVAL before
     * Linux 5.14 just leaves the faults to the build). */
    /* Blank gap pages (pinned ranges) already read as zero, the space
     * having been emptied: never touched, they cost no memory. */
    while (p < e) {
      if (fwd_page_blank(&m->t, p)) {
        p++; /* reads no from-space either (ledger) */
        continue;
      }
      size_t q = p + 1;
      while (q < e && !fwd_page_blank(&m->t, q)) q++;
      /* Harmless if it fails: the build's writes fault the pages in. */
      sys_madvise((void *)(m->t.begin + p * FWD_PAGE), (q - p) * FWD_PAGE, MADV_POPULATE_WRITE);
      for (; p < q; p++) {
        page_build(&m->src, p, (uint8_t *)(m->t.begin + p * FWD_PAGE));
        ledger_page_built(&m->ledger, &m->t, p);
      }
    }
    /* From-space read by nobody any more goes back as the build proceeds:
     * resident memory stays near its pre-cycle figure instead of holding
     * a whole to-space copy next to the whole from-space. */
    ledger_release(&m->ledger, m->shadow, LEDGER_RELEASE_PAGES);
  }
  atomic_fetch_add(&m->build_cpu_ns, mc_thread_cpu_ns() - cpu0);
  return NULL;
}

/* Huge pages suit the allocation window, not the build: faulting a 2 MiB
 * page in per 64 KiB run made stop-the-world builds swing from 120 to
 * 700 ms here (the host backs each fresh huge page as it comes), against a
 * steady 115-145 ms with 4 KiB pages (fhbench pause).  The flag is turned
 * off for the build and back on after it, on the whole VMA, so the space
 * stays one VMA.  0, or -1 + errno: whether the flag changed matters to
 * callers that need 4 KiB pages (register_destination); elsewhere a
 * failure costs speed only, and the flag is whole-VMA either way (one call,
 * all or nothing), so the space never splits over it. */
int mc_space_thp(mc_state *m, int on) {
  if (!m->thp) return 0;
  return sys_madvise((void *)m->t.begin, m->t.capacity, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
}

/* The build in the pause, for a concurrent cycle that could not flip
 * (userfaultfd unusable now, or the space moved aside by copy): the runs
 * are faulted in and built in place.  (Stop-the-world mark-compact slides
 * instead: mc_slide.c.  Its former build through UFFDIO_COPY went with
 * it: a cycle that cannot register cannot COPY either.) */
void mc_build_all(mc_state *m, unsigned threads) {
  build_job j = {.m = m};
  ledger_plan_deferred(&m->ledger, &m->t); /* a flip that failed: from-space goes back early */
  /* Huge pages only slow an in-place build: a failed switch is harmless. */
  mc_space_thp(m, 0);
  atomic_store(&m->build_cpu_ns, 0);
  gc_task helpers[MAX_BUILD_HELPERS];
  unsigned nh = 0;
  /* A helper is worth starting only for a few MiB of pages each. */
  size_t per_helper = 2048;
  while (nh + 1 < threads && nh < MAX_BUILD_HELPERS && m->t.npages > (nh + 1) * per_helper &&
         gc_pool_start(&m->h->pool, &helpers[nh], "fh-build", build_pages, &j) == 0)
    nh++;
  uint64_t t0 = heap_now_ns();
  build_pages(&j);
  for (unsigned i = 0; i < nh; i++) gc_pool_join(&m->h->pool, helpers[i]);
  mc_space_thp(m, 1); /* may fail: speed only */
  m->build_ns = heap_now_ns() - t0;
  m->build_threads = nh + 1;
}

void mc_slide_cycle(mc_state *m, const char *note) {
  m->slid = 1;
  m->slide_cycles++;
  m->h->compact_slides++;
  mc_slide_all(m, m->h->opt.gc_threads);
  m->table_bytes = mc_table_bytes(m);
  mc_account(m);
  /* The next cycle marks no further than the window just granted: the
   * tables beyond it go back when this cycle's are cleared (fwd_reset). */
  m->t.keep_to = m->t.new_top + m->h->gc_trigger;
  mc_policy_learn(&m->policy, m->live_bytes, m->slide_update_cpu_ns, m->slide_move_bytes,
                  m->slide_move_cpu_ns);
  mc_gen_end(m); /* new generation boundaries, while the tables hold them */
  mc_publish_top(m);
  mc_poison_last_page(m);
  mc_publish_holes(m);
  mc_plan_prefault(m);
  mc_trace(m, "slide");
  if (note) m->mode_note = note;
  mc_end_slide(m);
}

static int stw_compact(fh_heap *h, const char *note, gc_cause cause) {
  mc_state *m = mc_get(h);
  if (!m) return -1;
  mc_join_worker(m); /* a concurrent cycle's worker may still be prefaulting */
  int young = mc_gen_begin(m, cause);
  if (mc_prepare_forward(m) < 0) return -1;
  mc_slide_cycle(m, young ? "young collection (generations), slid in place" : note);
  if (young || m->gen.keep_mid)
    mc_gen_verify(m, young ? "after young collection" : "after full collection (young kept)");
  return 0;
}

int mc_collect_stw(fh_heap *h, const char *note) { return stw_compact(h, note, GC_CAUSE_EXPLICIT); }

void mc_heap_destroy(fh_heap *h) {
  mc_state_destroy(h->mc);
  h->mc = NULL;
}

static int mark_compact_collect(fh_heap *h, fh_thread *self, gc_cause cause) {
  (void)self;
  return stw_compact(h, "stop-the-world mark-compact, slid in place", cause);
}

const fh_collector_ops mark_compact_collector = {"mark_compact", mark_compact_collect,
                                                  mc_prepare_unpaused};
