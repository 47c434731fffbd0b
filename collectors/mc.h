/* Mark-compact and concurrent compaction of the moving (bump) space: one
 * algorithm, two schedules (DESIGN.md section 4, ART's userfaultfd
 * mark-compact, the Compressor).
 *
 *   mc_mark.c            marking into side bitmaps (forwarding.h)
 *   forwarding.c         prefix sums, first object per destination page
 *   page_compact.c       build one destination page (signal-safe); its
 *                        copy pass in page_copy.c
 *   mark_compact.c       the shared pause work (mark, forward, move the
 *                        space's pages aside, update outside references)
 *                        and the stop-the-world schedule
 *   mc_slide.c           the stop-the-world slide in place: references
 *                        rewritten where they lie, objects moved down by
 *                        memmove, no page moved (mark_compact; small
 *                        concurrent_compact cycles, mc_policy.h)
 *   concurrent_compact.c the userfaultfd schedule: flip, GC worker, fault
 *                        resolver, end of phase
 *   cc_large.c           large reference arrays fixed after the flip
 *   from_ledger.c        which from-space pages are still read: each goes
 *                        back as soon as its last reader is built
 *   mc_stats.c           fault histogram, figures for fhbench, fh_dump lines
 *   mc_gen.c             generations: young collections (mc_gen.h)
 *
 * The moving space is h->bump[h->active].  For a build, its old pages are moved with
 * mremap(MREMAP_DONTUNMAP) into a "from-space" shadow reservation of the
 * same size (2 MiB / 1 GiB aligned, so page tables move whole); the space's
 * range is left mapped but empty, and destination pages are built from the
 * shadow into it. */
#ifndef FH_MC_H_
#define FH_MC_H_

#include <pthread.h>
#include <stdatomic.h>

#include "collectors/cc_large.h"
#include "collectors/collector.h"
#include "collectors/forwarding.h"
#include "collectors/from_ledger.h"
#include "collectors/mc_gen.h"
#include "collectors/mc_policy.h"
#include "uffd/uffd.h"

extern const fh_collector_ops mark_compact_collector;
extern const fh_collector_ops concurrent_compact_collector;

/* ---- page building (page_compact.c) ---- */
typedef struct page_source {
  const fwd_tables *t;
  uintptr_t from_delta; /* from-space address = old address + from_delta */
  const fh_type_registry *types;
} page_source;
/* Write destination page `page` into out (4 KiB).  Returns the bytes of
 * object data on it (0: nothing lands there; out is zeroed).  Async-signal-
 * safe; reads only from-space, the tables and the type registry. */
size_t page_build(const page_source *ps, size_t page, uint8_t *out);

/* For a page below t->dense_pages (every object on it keeps its address):
 * rewrite the page's references in its from-space copy, which then is the
 * destination page.  Reads and writes only that from-space page (and object
 * headers at or below it, unchanged). */
void page_fix_in_place(const page_source *ps, size_t page);

/* ---- marking (mc_mark.c) ---- */
/* Mark everything reachable: moving-space objects into t (start and live-
 * word bits, objects below t->old_top), non-moving objects into its mark
 * bitmap.  World stopped.  0, or -1 + fh_last_error().
 *
 * With several markers (gc_threads), the helpers are still giving their
 * own bitmaps back when it returns: *crew is then theirs, for mc_mark_end
 * (NULL when there were none; mc_mark_end(NULL) does nothing). */
typedef struct mc_mark_crew mc_mark_crew;
int mc_mark(fh_heap *h, fwd_tables *t, mc_mark_crew **crew);
void mc_mark_end(mc_mark_crew *crew);

/* Concurrent marking of a concurrent_compact cycle (cc_concurrent.c): one
 * marker into t's shared bitmaps, objects below t->old_top (the boundary:
 * everything allocated above it while marking runs is live, mc_mark_black).
 *   begin   world stopped: push the roots; NULL when out of memory
 *   visit   mark a logged reference (SATB, or an object hashed meanwhile)
 *   drain   trace until the stack is empty or *stop is set
 *   step    scan at most n objects (tests); 0 when none was left
 *   finish  world stopped: roots again, drain, overflow recovery, weak
 *           processing; frees the marker
 *   abandon free it, marks left as they are (the caller clears them) */
typedef struct mc_cmarker mc_cmarker;
mc_cmarker *mc_cmark_begin(fh_heap *h, fwd_tables *t);
void mc_cmark_visit(mc_cmarker *c, void *v);
/* The holes are handed out while marking runs (cc_keep_holes): leave the
 * objects of b's recorded claims alone, as those above the boundary. */
void mc_cmark_skip_black(mc_cmarker *c, const bump_space *b);
void mc_cmark_drain(mc_cmarker *c, gc_budget *b);
size_t mc_cmark_step(mc_cmarker *c, size_t n);
void mc_cmark_finish(mc_cmarker *c);
void mc_cmark_abandon(mc_cmarker *c);
/* World stopped: mark every object in [from, to) of the moving space live
 * (allocated black), start and live-word bits; returns their bytes. */
size_t mc_mark_black(fwd_tables *t, uintptr_t from, uintptr_t to);

/* ---- per-heap compactor state (mark_compact.c) ---- */
enum { PAGE_UNTOUCHED = 0, PAGE_BUILDING = 1, PAGE_MAPPED = 2 };

#define MC_HIST_BUCKETS 512 /* fault service time histogram, see mc_stats.c */
#define MC_MAX_RUN 16       /* pages per GC-worker COPY, and per fault at most */
#define MC_BROKEN_RUN 512   /* pages per worker install once the uffd is broken */

typedef struct mc_state {
  fh_heap *h;
  fwd_tables t;
  page_source src;
  uintptr_t shadow; /* from-space reservation, t.capacity bytes */
  from_ledger ledger; /* which from-space pages are still read */
  _Atomic uint32_t *page_state; /* PAGE_* per destination page */
  size_t state_map_bytes;

  /* this cycle */
  size_t old_used, nm_freed;
  size_t hole_bytes; /* mc_hole_bytes of this cycle; SIZE_MAX: not yet counted */
  size_t hole_window; /* after a slide: the allocation expected before the next
                         collection (mc_publish.c), which takes the holes first;
                         the holes' pages past it go back (mc_holes.c) */
  size_t black_bytes; /* allocated while marking concurrently (mc_account) */
  size_t from_used; /* from-space bytes that may be resident (mc_end_cycle) */
  int moved_by_copy; /* from-space was filled by memcpy (no DONTUNMAP) */
  const char *copy_note; /* why, as fh_dump's mode note (static text) */
  int no_dontunmap;  /* tests (FH_MC_NO_DONTUNMAP=1): take that path */
  int thp;           /* the space is MADV_HUGEPAGE (else MADV_NOHUGEPAGE: FH_MC_THP=0,
                      * or min_alloc_trigger under two huge pages) */
  int thp_allowed;   /* FH_MC_THP=0: never */
  int slid;          /* this cycle slid in place (mc_slide.c): no from-space */
  /* Cycles since the heap's state was made, by how they compacted: slid
   * in place in the pause, or moved aside and built (in the pause or
   * concurrently after a flip).  fh_dump prints them. */
  uint64_t slide_cycles, build_cycles;
  mc_slide_model policy; /* concurrent_compact: slide or flip (mc_policy.h) */
  /* the last slide: its update of the moving space (not counting outside
   * references) and the bytes that moved (above the dense prefix) */
  uint64_t slide_update_ns;
  /* The last slide's collected bytes below its update floor, whose objects
   * were updated on their dirty cards only (mc_update_floor). */
  size_t update_by_cards;
  size_t slide_move_bytes;
  /* The pausing thread's CPU time in the same two steps: what the policy
   * learns from, since wall time on a shared machine includes whatever
   * preempted it (one such slide taught it to flip for the rest of a run). */
  uint64_t slide_update_cpu_ns, slide_move_cpu_ns;
  /* the last choice (concurrent_compact): the slide's estimate, whether
   * it slid, and whether it weighed pauses (a concurrently marked cycle);
   * fh_dump and trace=1 print them */
  uint64_t choice_est_ns;
  int chose_slide, chose, cmarked_choice;
  /* and what the flip would have cost beyond its fixed cost: the pages it
   * gives back that a slide keeps, the young survivors it promotes
   * (mc_policy_flip_extra_ns) */
  double choice_extra_ns;
  size_t choice_refault_bytes, choice_young_kept;
  int cmarked; /* this cycle marked concurrently: slide or flip by the pause */
  int worker_pending; /* flipped: mc_start_worker starts the worker after the pause */

  /* concurrent phase (concurrent_compact.c) */
  fh_uffd *uffd;
  int range_id;
  gc_task worker; /* a task of the heap's GC pool */
  int worker_joinable;
  /* A slide's end-of-cycle work (clearing the tables, the prefault) waits
   * for mc_after_pause to start its task once the world runs: started in
   * the pause, the wakeup could hand this CPU to the task on a busy
   * machine.  Whoever joins the worker first does it inline instead
   * (mc_join_worker), so no path can skip it. */
  int end_pending;
  /* What a slide's mc_end_cycle took last, full [0] and young [1] cycles
   * apart, wherever it ran: whether the next one runs in the pause
   * (mark_compact.c: end_in_pause).  Written by the task, read after it
   * is joined. */
  uint64_t end_ns[2];
  size_t last_full_live; /* live bytes the last full slide found (mc_publish.c) */
  unsigned lookahead;   /* extra pages a fault builds after its own */
  int use_move;         /* worker stages runs in from-space + UFFDIO_MOVE
                           (FH_MC_MOVE=0 turns it off, for measurement) */
  size_t moved_pages, move_fallbacks; /* last cycle */
  size_t in_place_pages; /* last cycle: dense-prefix pages fixed in place */
  unsigned worker_delay_ms; /* tests: FH_MC_WORKER_DELAY_MS holds the worker
                               back so that mutators meet missing pages */
  int worker_gate;          /* tests: FH_MC_WORKER_DELAY_MS=gate holds it back
                               until someone waits for the phase */
  uint8_t *fault_bufs;  /* 64 buffers of MC_MAX_RUN pages, claimed by bit */
  _Atomic uint64_t fault_bufs_used;
  uint8_t *worker_buf;  /* MC_MAX_RUN pages */
  fh_uffd_stats uffd_at_flip;
  /* A userfaultfd ioctl kept failing this phase (concurrent_compact.c:
   * install): the rest installs by mremap.  Set from signal handlers too. */
  _Atomic int uffd_broken;
  _Atomic int uffd_errno;        /* the first such failure's errno */
  _Atomic size_t remap_pages;    /* pages installed by mremap, last cycle */
  _Atomic int space_split;       /* the moving space is several VMAs since:
                                    the next pause makes it one again */
  _Atomic int install_stuck;     /* no way to install a page worked */
  const char *mode_note; /* why the last cycle ran as it did (fh_dump) */
  _Atomic uint64_t fault_hist[MC_HIST_BUCKETS];
  _Atomic uint64_t fault_ns_total; /* summed with the histogram */
  /* figures of the last cycle (mc_stats.h) */
  uint64_t mark_ns, forward_ns, update_ns, mremap_ns, register_ns;
  uint64_t sweep_ns, fwd_compute_ns; /* parts of forward_ns's step (FH_MC_TRACE) */
  /* threads that wait for the phase's end help build pages meanwhile */
  _Atomic unsigned helpers;
  _Atomic int closing;
  _Atomic int stop_prefault; /* the worker's post-phase prefault stops early */
  uint64_t worker_ns, worker_cpu_ns, worker_bytes, live_bytes, build_ns;
  uint64_t release_cpu_ns;    /* the concurrent phase's releaser thread */
  _Atomic int stop_releaser;
  _Atomic uint64_t build_cpu_ns;
  size_t table_bytes; /* side tables this cycle writes (mc_table_bytes) */
  /* mc_plan_prefault's window. */
#define MC_PREFAULT_HOLES 64
  uintptr_t pf_from;
  size_t pf_want, pf_nholes;
  size_t pf_above; /* of pf_want, at most this much above pf_from: the rest
                      of the window is in holes, which refills take first */
  bump_hole pf_holes[MC_PREFAULT_HOLES];
  size_t pinned_ranges, pinned_objects, pinned_bytes; /* last cycle (forwarding.h) */
  unsigned build_threads;
  mc_gen gen; /* generations (mc_gen.h) */
  cc_large_set large; /* large reference arrays fixed after the flip (cc_large.h) */
  /* The vacated addresses' records (heap/identity_hash.h) are forwarded
   * after the flip, by the GC worker (mc_update_vacated). */
  int vacated_later;
} mc_state;

/* The heap's compactor state, created on first use.  NULL + error. */
mc_state *mc_get(fh_heap *h);
/* Pause work shared by both schedules: mark, sweep the non-moving space,
 * compute forwarding, move the moving space's pages to from-space, update
 * every reference outside the moving space.  0, or -1 + error with the heap
 * untouched (nothing moved).  In two steps: mc_prepare_forward marks and
 * computes the forwarding (nothing written in the space but pinned
 * ranges' fillers); then either mc_prepare_move (pages aside, for a
 * build) or mc_slide_all (in place). */
int mc_prepare(mc_state *m);
/* A young cycle (mc_gen.h) when mc_gen_begin chose one before. */
int mc_prepare_forward(mc_state *m);
/* Its parts: the tables set up for marking below the current top (world
 * stopped, TLABs retired; populate: fault the bitmaps in now, else the
 * concurrent marker does); after marking (crew: mc_mark's, or NULL; t0:
 * when marking began, for mark_ns), pinned ranges, the non-moving sweep
 * and the forwarding.  0, or -1 + error with the marks forgotten. */
void mc_forward_setup(mc_state *m, int populate);
int mc_forward_marked(mc_state *m, mc_mark_crew *crew, uint64_t t0);
/* Its two halves: pinned ranges and the non-moving sweep (0, or -1 +
 * error with the marks forgotten; each also alone), then the forwarding
 * and the cycle's figures (marking took [t0, t1)).  Concurrent
 * compaction's split remark sweeps in the remark and does the rest in the
 * flip pause, with fwd_compute_below in between (cc_concurrent.c). */
int mc_forward_pins_sweep(mc_state *m, mc_mark_crew *crew);
int mc_forward_pins(mc_state *m, mc_mark_crew *crew);
void mc_sweep_outside(mc_state *m);
void mc_forward_finish(mc_state *m, mc_mark_crew *crew, uint64_t t0, uint64_t t1);
/* concurrent_compact's full cycle after mc_prepare_forward: slide in the
 * pause or flip (concurrent_compact.c). */
int mc_cc_compact(mc_state *m);
/* Concurrent marking for concurrent_compact's triggered full cycles
 * (cc_concurrent.c; concurrent_mark=1): whether this cycle may, and its
 * initial pause (the roots; 0, or 1 when it cannot start: mark in the
 * pause instead). */
int cc_concurrent_usable(fh_heap *h, gc_cause cause);
int cc_concurrent_begin(mc_state *m);
int mc_prepare_move(mc_state *m);
/* The cycle's figures into the heap (bytes moved and freed, the trigger). */
void mc_account(mc_state *m);
/* Point every reference held outside the moving space (roots, weak
 * tables, other spaces' objects) at the new addresses; forget the moving
 * space's cards. */
void mc_update_outside(mc_state *m);
/* After mc_prepare_forward, world stopped: rewrite every reference through
 * the forwarding and slide the objects down in place (mc_slide.c), with up
 * to `threads` threads for the references; no system call but thread
 * creation.  Then mc_publish_top etc. as after a build. */
void mc_slide_all(mc_state *m, unsigned threads);
/* After forwarding: the lowest address whose live objects a slide's update
 * walks (below it, those on dirty cards only); t.lo when every one is. */
uintptr_t mc_update_floor(const mc_state *m);
/* What a slide walks in its pause besides its marking, as the slide-or-
 * flip policy weighs it (mc_policy.h): the live bytes its update walks
 * (none when nothing moves), and, when it keeps young_kept bytes of young
 * survivors mid, the old generation it then walks to dirty the cards that
 * point at them (mc_gen.c: KEEP_MID_MIN). */
size_t mc_slide_walk_bytes(const mc_state *m, size_t young_kept);
/* Forward every slot of a reference array held outside the moving space
 * (world stopped), prefetching the referents' chunk entries, with pool
 * helpers (gc_threads) when it has millions of slots (mc_slide.c). */
void mc_update_array(mc_state *m, void **slots, size_t n);
/* The same on this thread alone, through the prefetching ring: slots
 * anywhere (a page being built: cc_large.c).  Async-signal-safe. */
void mc_forward_slots(const fwd_tables *t, void **slots, size_t n);
/* After mc_prepare_forward: the rest of a cycle that slides in the pause
 * (mc_slide_all, then publish, prefault plan, tables cleared after the
 * pause).  `note` (static text) is fh_dump's mode note. */
void mc_slide_cycle(mc_state *m, const char *note);
/* Before the pause (collector.h: prepare): join the last cycle's threads
 * and fault in the chunk table up to the current top, so the pause only
 * faults in what mutators allocate meanwhile (fwd_populate_chunks). */
void mc_prepare_unpaused(fh_heap *h);
/* Build every destination page straight into the moving space, with up to
 * `threads` threads (the caller is one). */
void mc_build_all(mc_state *m, unsigned threads);
/* Turn the moving space's transparent huge pages off (0) or back on (1),
 * on the whole VMA so that it stays one; nothing with FH_MC_THP=0. */
int mc_space_thp(mc_state *m, int on);
/* Publish the new top (page-aligned; the last page ends in a filler). */
void mc_publish_top(mc_state *m);
/* verify=1, once every destination page is built (in the pause, or at the
 * end of a concurrent phase): poison the payload of the filler that ends
 * the last destination page, where objects that died or moved lay. */
void mc_poison_last_page(mc_state *m);
/* Smaller stretches stay fillers (forwarding.h: FWD_HOLE_MIN). */
#define MC_HOLE_MIN FWD_HOLE_MIN
/* Every page built and mapped (unregistered): hand the gaps the pinned
 * ranges left (forwarding.h), and the dead words inside the ranges (their
 * fillers), to the allocator as holes (spaces/bump_space.h), so that they
 * fill before the space grows; not those below the generations' hole
 * floor (mc_gen.h), whose whole pages go back after a slide. */
void mc_publish_holes(mc_state *m);
/* The holes the cycle's pins leave (what mc_publish_holes hands the bump
 * space), up to max of them into out; returns how many there are. */
size_t mc_holes(const mc_state *m, bump_hole *out, size_t max);
/* Bytes of all of them (however many there are). */
size_t mc_hole_bytes(mc_state *m);
/* After a cycle (mark_compact.c): note, while the tables hold it, the
 * window the mutators will allocate into (the holes, then above the new
 * top); then, on the thread that ends the cycle, fault it in ahead of
 * them.  mc_join_worker stops it. */
void mc_plan_prefault(mc_state *m);
void mc_prefault(mc_state *m);
/* The GC worker's first steps after a flip, before it builds the moving
 * space's pages: the vacated addresses' records (mc_update_vacated), the
 * from-space ledger's plan when the pause left it and the releaser has not
 * begun it (from_ledger.h), then the large reference arrays (cc_large.h). */
void mc_worker_first(mc_state *m);
/* The records of hashed objects' vacated addresses, forwarded when the
 * flip's pause left them (vacated_later): by the GC worker, or in the
 * pause when the flip cannot happen.  No mutator reads their objects;
 * the next pause waits for the worker. */
void mc_update_vacated(mc_state *m);
/* The flip will not happen: what its pause left for after it, now (the
 * large reference arrays, cc_large_fallback, and the records). */
void mc_update_deferred(mc_state *m);
/* After the last page is built: release from-space, clear the tables. */
void mc_end_cycle(mc_state *m);
/* A slide's end (mc_end.c): mc_end_cycle in its pause when that is cheap
 * (end_in_pause), else, with the prefault and a full cycle's walk points,
 * in a pool task that mc_after_pause starts once the world runs. */
void mc_end_slide(mc_state *m);

/* CPU time of the calling thread (throughput figures). */
uint64_t mc_thread_cpu_ns(void);

/* FH_MC_TRACE: one line per cycle on stderr with the pause's parts. */
void mc_trace(mc_state *m, const char *what);
/* The whole collection inside the pause; `note` (static text) is what
 * fh_dump reports about how the cycle ran. */
int mc_collect_stw(fh_heap *h, const char *note);

/* ---- installing built pages (page_install.c) ----
 * install: put len bytes (whole pages) from src at dst, a registered range
 * whose pages the caller has claimed: UFFDIO_COPY with retries, then
 * mremap once the uffd is broken; never gives up, async-signal-safe.
 * mark_broken: no installer tries an ioctl again this phase; err is kept
 * as the cycle's first failure (fh_dump). */
void mc_install(mc_state *m, int fd, uint8_t *dst, const uint8_t *src, size_t len);
void mc_mark_broken(mc_state *m, int err);

/* ---- concurrent schedule (concurrent_compact.c) ---- */
/* In the pause, after mc_prepare: register the destination range, start the
 * GC worker, open the concurrent phase.  -1 when userfaultfd cannot be used
 * now (m->mode_note says why); the caller then compacts in the pause. */
int mc_concurrent_flip(mc_state *m);
/* Whether concurrent compaction can work in this process (else NULL, and
 * the reason in *why). */
int mc_concurrent_available(const char **why);
/* The destination's pages, for the flip's own use and cc_pinned.c:
 * claim_page takes page (PAGE_UNTOUCHED -> BUILDING; 0 if someone has);
 * build_and_copy builds claimed pages [p, p + n) into buf and installs
 * them; fix_and_install_dense fixes claimed pages whose from-space copy
 * is their content in place and installs them (by UFFDIO_MOVE if move). */
int mc_claim_page(mc_state *m, size_t page);
void mc_build_and_copy(mc_state *m, int fd, size_t p, size_t n, uint8_t *buf);
void mc_fix_and_install_dense(mc_state *m, int fd, size_t p, size_t n, int move);
/* In the flip pause, the destination registered (cc_pinned.c): build and
 * map every page a pinned object covers; returns how many it built. */
size_t mc_build_pinned_ranges(mc_state *m);
/* Join the last cycle's worker (it may still prefault the allocation window
 * after its phase ended; this stops that first).  Before any page moves. */
void mc_join_worker(mc_state *m);
/* Heap teardown: join the worker, close the uffd, unmap everything. */
void mc_state_destroy(mc_state *m);
/* Unpublish h->mc (== m), wait until no fh_gc_transient_bytes reads it,
 * then destroy it (mc_stats.c). */
void mc_stats_retire(fh_heap *h, mc_state *m);
void mc_record_fault_ns(mc_state *m, uint64_t ns);

#endif
