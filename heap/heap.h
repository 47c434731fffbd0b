/* The heap's internal state, shared by heap/, collectors/ and (read-only)
 * spaces/.  Embedders never see it. */
#ifndef FH_HEAP_H_
#define FH_HEAP_H_

#include <pthread.h>
#include <stdatomic.h>
#include <urcu/list.h> /* the plain list macros only: no RCU, nothing linked */

#include "faultheap.h"
#include "heap/gc_pace.h"
#include "heap/gc_pool.h"
#include "heap/gen_policy.h"
#include "heap/identity_hash.h"
#include "heap/pins.h"
#include "heap/sizer.h"
#include "heap/slot.h"
#include "heap/types.h"
#include "heap/weak_records.h"
#include "spaces/bump_space.h"
#include "spaces/image_space.h"
#include "spaces/large_object_space.h"
#include "spaces/malloc_space.h"
#include "spaces/non_moving_space.h"
#include "spaces/zygote_space.h"

struct fh_collector_ops;
struct mc_state; /* collectors/mc.h */

/* Why a collection runs (for statistics and for trigger bookkeeping). */
typedef enum { GC_CAUSE_EXPLICIT, GC_CAUSE_ALLOC_TRIGGER, GC_CAUSE_ALLOC_FAILURE,
               GC_CAUSE_BACKGROUND /* fh_set_background */,
               GC_CAUSE_REMARK /* the remark pause of a concurrent marking */ } gc_cause;

struct cmark; /* collectors/concurrent_mark.h */

typedef enum { THREAD_RUNNING, THREAD_BLOCKED, THREAD_PARKED } thread_state;

struct fh_thread {
  fh__thread_fast fast; /* must stay first: the inline fast paths use it */
  fh_heap *heap;
  struct cds_list_head link; /* heap->threads: changed under gc_lock and world_lock,
                                read under either */
  /* The owner's attachments across heaps (heap/threads.c: the caller's
   * list, under attachments_lock). */
  fh_thread *owner_next, **owner_head;
  pthread_t owner;           /* the attaching thread (heap/fork.c finds the
                                forking thread's entry by it) */
  thread_state state;        /* guarded by heap->world_lock */
  unsigned critical;         /* open fh_critical_begin sections */
  size_t roots_cap;
  int ms_tcache; /* explicit jemalloc tcache id + 1 for the main malloc space; 0: none yet */
  size_t ms_budget;   /* bytes of the main malloc space's `used` prepaid for this thread */
  size_t ms_reserve;  /* more prepaid bytes, released to ms_budget a slice at a time
                         while a sweep is pending (heap/malloc_heap.c) */
  size_t ms_unposted; /* bytes allocated not yet added to heap->bytes_allocated */
  _Atomic uint64_t *ms_pending_word; /* allocation-bitmap word with bits not yet set */
  uint64_t ms_pending_mask;           /* ...those bits (heap/malloc_heap.c) */
  /* While ms_budget > 0: the main space's mallocx flags (arena and this
   * thread's tcache) and its allocation bitmap, cached at the refill. */
  int ms_flags;
  uintptr_t ms_bits_base;
  _Atomic uint64_t *ms_bits_words;
  /* Where this thread bump-allocates small objects (heap/malloc_heap.c):
   * the hole being filled, [cur, end), in `run` (0: none), and where the
   * search for the run's next hole resumes.  ms_main serves every small
   * object; ms_ovf the medium ones that do not fit ms_main's hole (so that
   * they never make ms_main skip the small holes before a big one).  Free
   * memory: no bit, no object; dropped at every collection
   * (malloc_heap_settle_threads). */
  struct ms_runpos {
    uintptr_t cur, end, run, scan;
  } ms_main, ms_ovf;
  /* A bump-space range claimed by this thread and not yet an object or a
   * published TLAB (heap/alloc.c): [claim_lo, claim_hi), 0 when none.  A
   * fork child writes a filler over an absent thread's claim, whatever
   * state it was left in (heap/fork.c). */
  uintptr_t claim_lo, claim_hi;
  /* THREAD_LIVE while attached; THREAD_DETACHED once fh_thread_detach made
   * it a tombstone (heap/threads.c: kept on heap->tombstones, reused by a
   * later attach, so a stale handle is reported rather than freed memory). */
  unsigned magic;
  int in_blocking; /* inside fh_enter_blocking (the public call, not internal waits) */
  int in_oom_handler; /* the OOM handler runs on this thread (heap/oom.c) */
  /* fh_pin records (heap/pins.c): each pinned object once, with how many
   * times it is pinned, and an open-addressing index of their positions
   * (fh_unpin in constant time with thousands held). */
  void **pins;
  uint32_t *pin_counts;
  size_t npins, pins_cap;
  uint32_t *pin_index; /* position + 1 per slot, 0: empty; pin_index_cap slots */
  size_t pin_index_cap;
  /* stack_roots=conservative: the stack and its saved top (heap/conservative.h). */
  struct cons_stack *cons;
  fh_thread *tomb_next;
  /* Concurrent marking runs (collectors/concurrent_mark.h): this thread's
   * allocations are marked live (black).  Written with the world stopped
   * or at attach, read by the owner only. */
  int ms_black;
  size_t cm_black_bytes; /* bytes this thread allocated black (main space) */
  /* The snapshot-at-the-beginning log: references this thread overwrote
   * (or read from ephemerons) while marking runs, for the marker
   * (collectors/concurrent_mark.c); satb_n entries of satb. */
  void **satb;
  unsigned satb_n;
};
#define THREAD_LIVE 0x6c697665u
#define THREAD_DETACHED 0x64656164u

struct fh_heap {
  fh_options opt;  /* opt.heap_max changes at run time: read it with heap_limit */
  size_t reserved_max; /* max(heap_reserve, heap_max) at creation */
  slot_tags tags; /* opt's tag masks, as every slot decoder takes them */
  fh_type_registry types;

  /* One reservation holds every space; the card table covers all of it. */
  uintptr_t resv_begin;
  size_t resv_size;
  uint8_t *cards;
  size_t cards_bytes;

  image_space image; /* at the reservation's start; ops NULL without an image */
  non_moving_space non_moving;
  /* Made by fh_prefork at the start of the non-moving reservation (the
   * non-moving space then covers the rest); ops NULL until then. */
  zygote_space zygote;
  bump_space bump[2]; /* semi-space: bump[active] allocates, the other is to-space */
  /* Payloads of at least opt.los_threshold bytes (0: none) live here,
   * after the bump (or malloc) spaces; never moved (spaces/large_object_space.h, heap/alloc.c). */
  large_object_space los;
  int active;
  /* Bytes of the objects a mostly-copying semispace cycle left at their
   * addresses in the idle half (pinned; collectors/semi_fixed.h): memory
   * under heap_max beside both halves' copy room.  0 when the idle half is
   * empty. */
  size_t semi_idle_bytes;
  /* Those objects as runs of adjacent ones, so the next cycle need not
   * walk the idle half to find them: valid while its top is still `top`
   * and the collection count `at` (collectors/semi_fixed.c). */
  struct {
    bump_hole *runs;
    size_t n, bytes;
    uintptr_t top;
    uint64_t at;
  } semi_islands;
  gen_state gen; /* collector=gen_semispace (heap/gen_policy.h) */

  /* Malloc spaces (collector=mark_sweep only; heap/malloc_heap.c): objects
   * of fh_alloc live in malloc[malloc_main]; the other one is the empty
   * backup that homogeneous compaction copies into before swapping roles. */
  int has_malloc_spaces;
  malloc_space malloc[2];
  int malloc_main;
  int gc_tcache; /* the collector's explicit tcache for sweeping; -1: none */
  /* Homogeneous compaction policy (collectors/hspace_compact.c). */
  uint64_t hspace_last_ns;   /* end of the last compaction, 0: never */
  size_t hspace_failed_live; /* live bytes when the last one failed; 0: none */
  char hspace_failed_why[256];
  uint64_t hspace_pinned_skips; /* compactions run as mark-sweeps for pins */
  int ms_purge_after_sweep; /* collectors/mark_sweep.c: give_back_above_target */
  size_t ms_spare_runs;     /* collectors/mark_sweep.c: spare_runs */
  /* A remark's sweep opened the phase in the pause; its sweeper starts
   * after the pause (collectors/mark_sweep.c: mark_sweep_after_pause). */
  int ms_sweeper_deferred, ms_sweeper_pending;
  gc_pool pool; /* GC worker threads (heap/gc_pool.h) */
  gc_pace pace; /* their concurrent work's CPU share (heap/gc_pace.h) */
  pthread_mutex_t hspace_bg_lock; /* the background compaction thread */
  gc_task hspace_bg_thread;
  int hspace_bg_started;
  _Atomic int hspace_bg_done;
  _Atomic int hspace_bg_attached; /* its fh_thread is (about to be) counted in nthreads */
  fh_thread *_Atomic hspace_bg_mutator; /* that fh_thread, once attached */
  /* Native memory (fh_malloc, heap/native.c): its own reservation, outside
   * resv_begin..resv_size, so collectors and verification never look at it. */
  malloc_space native;
  uintptr_t native_resv;
  size_t native_resv_size;
  size_t native_limit;         /* its bytes' limit, fixed at creation */
  pthread_mutex_t native_lock; /* making it, on the first fh_malloc */
  _Atomic int native_made;

  const struct fh_collector_ops *collector; /* foreground */
  /* The default collector taken as concurrent_compact without probing the
   * kernel; heap_settle_collector decides (heap.c). */
  _Atomic int collector_unsettled;
  struct mc_state *mc; /* mark-compact tables and concurrent phase, lazily */
  /* Concurrent marking (collectors/concurrent_mark.h): the cycle whose
   * marker runs, NULL when none; set and cleared in pauses. */
  struct cmark *cm;
  _Atomic int cm_black;  /* allocate black (every thread's ms_black) */
  int cm_manual;         /* tests: no marker task; the test steps the marker */
  int cm_manual_split;   /* tests: ... and splits the remark (cmark_test_between) */
  int pause_is_remark;   /* the pause being accounted is a remark (driver.c) */
  int pause_is_flip;     /* ... that ends a split remark (concurrent_mark.c) */
  gc_task cm_task;       /* the last marker task, to be joined (cm_task_live) */
  int cm_task_live;
  const char *cm_off_why; /* why this heap's cycles stop the world to mark */
  /* Figures (fh_dump, fh_stats): concurrent cycles, abandoned ones, the
   * remark pauses, marker time and bytes. */
  uint64_t cm_cycles, cm_abandoned, cm_finished_in_pause, remark_ns_total, remark_ns_max;
  uint64_t cm_cycles_done;   /* cycles that ended (stop_marker) */
  uint64_t cm_split_remarks; /* remarks that left the forwarding to the marker */
  uint64_t cm_split_redone;  /* ... whose flip computed it again (a pin or hash since) */
  uint64_t cm_marker_ns, cm_marker_cpu_ns, cm_marked_bytes, cm_cards_precleaned, cm_cards_remarked;
  uint64_t cm_logged; /* references the SATB barrier logged */
  _Atomic int background;                   /* fh_set_background */

  /* Threads and stop-the-world (heap/threads.c). */
  pthread_mutex_t gc_lock;    /* held by the collecting thread; also attach/detach */
  pthread_mutex_t world_lock; /* thread states and the stop request */
  pthread_cond_t parked_cv, resume_cv, critical_cv;
  int gc_pending;     /* a collection waits for critical sections to close */
  int stop_requested; /* the world is (being) stopped */
  unsigned critical;  /* open critical sections, all threads */
  int concurrent_phase; /* a collection still runs after its pause */
  pthread_cond_t phase_cv;
  struct cds_list_head threads;
  unsigned nthreads;
  fh_thread *tombstones; /* detached handles, under gc_lock (heap/threads.c) */
  /* gc_stress=N: allocations and safepoint polls counted toward the next
   * stress collection (heap/threads.c: stress_tick). */
  _Atomic uint64_t stress_allocs, stress_polls;

  /* Roots (heap/roots.c). */
  pthread_mutex_t roots_lock;
  void ***global_roots;
  size_t nglobal_roots, global_roots_cap;
  fh_root_scanner scanner;
  void *scanner_user;
  pin_set pins; /* this collection's pinned objects (heap/pins.h) */
  /* fh_set_oom_handler (heap/oom.c), under roots_lock. */
  fh_oom_handler oom_handler;
  void *oom_user;

  /* Weakly held objects (heap/weak_records.h; collectors/trace.h decides
   * their fate).  The ephemeron type is built in, registered by the first
   * fh_ephemeron_new (or by an image that holds ephemerons): its id, 0
   * before (heap/ephemeron.c). */
  _Atomic uint32_t eph_type;
  weak_records finalizers; /* fh_finalizer_attach records: obj, data */
  weak_records fin_queue;  /* found unreachable, strong until popped */
  weak_records hash_vacated; /* heap/identity_hash.c: (moved object, reserved key) */
  idhash_state idhash;       /* the index of hash_vacated's keys */
  pthread_mutex_t fin_notify_lock; /* also guards the gc callback */
  void (*gc_callback)(fh_heap *h, const fh_gc_event *e, void *user);
  void *gc_callback_user;
  void (*fin_notify)(fh_heap *h, void *user);
  void *fin_notify_user;
  int fin_queue_filled; /* a collection made the queue non-empty: notify */

  /* Triggers: a collection starts once alloc_since_gc passes gc_trigger. */
  _Atomic size_t alloc_since_gc;
  size_t gc_trigger;
  heap_sizer sizer; /* heap_policy=adaptive (heap/sizer.h) */
  size_t live_after_gc;

  /* Statistics (stats.c): written by the collector with the world stopped
   * and stats_lock held (never taken by a thread that could be asked to
   * park), except the allocation counter. */
  pthread_mutex_t stats_lock;
  _Atomic uint64_t bytes_allocated;
  uint64_t collections, bytes_freed, bytes_moved, pause_ns_total, pause_ns_max;
  /* How the collection in progress ran, when its collector chose (static
   * text, set in the pause; trace=1 prints it, the driver clears it):
   * concurrent_compact's slide-or-flip choice. */
  const char *gc_how;
  /* Sliding compactions by how they compacted (fh_stats): slid in place
   * in the pause, or moved aside and built (concurrently or in the pause).
   * Written in the pause, under stats_lock (gc_run holds it around
   * collect). */
  uint64_t compact_slides, compact_builds;
  /* Semispace cycles that copied around pinned objects or kept islands
   * (collectors/semi_fixed.h); fh_dump prints it. */
  uint64_t semi_mostly_copying;
  uint64_t pause_hist[FH_PAUSE_BUCKETS]; /* fh_stats.pause_hist */
  /* Every stop-the-world pause (heap/stats.c: pause_record), under
   * stats_lock: fh_stats.pauses, kind_*, recent_pauses; builds_seen is
   * compact_builds at the last collection's pause (a new build: a flip). */
  uint64_t pauses, builds_seen;
  uint64_t kind_pauses[FH_PAUSE_KINDS], kind_pause_ns_total[FH_PAUSE_KINDS];
  uint64_t kind_pause_ns_max[FH_PAUSE_KINDS];
  fh_pause_record recent_pauses[FH_PAUSE_RECENT];
  /* Threads inside fh_gc_transient_bytes, which reads h->mc without a
   * lock: a compactor state is freed only once none is (mc_stats_retire). */
  _Atomic unsigned mc_watchers;
  /* How long the last world_stop waited for the other threads to park
   * (and critical sections to close): written by the thread holding
   * gc_lock, taken (and cleared) by the next pause_record of that thread. */
  uint64_t last_stop_ns;
  uint64_t ephemerons_traced, ephemerons_cleared, objects_finalized, weak_ns_total, weak_ns_max;
  uint64_t ephemerons_kept_strong; /* for lack of memory (collectors/trace_weak.c) */
  _Atomic uint64_t uffd_faults, uffd_fault_ns_max;
  /* Young and full collections (fh_stats), under stats_lock. */
  uint64_t young_collections, young_pause_ns_total, young_pause_ns_max;
  uint64_t full_pause_ns_total, full_pause_ns_max, bytes_promoted;
};

static inline fh_heap *thread_heap(fh_thread *t) { return t->heap; }

/* ---- threads.c ---- */
/* Become the (only) collecting thread; other collectors wait, parked. */
void gc_lock_acquire(fh_thread *self);
void gc_lock_release(fh_thread *self);
/* With gc_lock held (and `self` outside any critical section, which gc_run
 * checks first): wait for other threads' critical sections to close, then
 * park every other attached thread (or see it blocked).  Returns 0. */
int world_stop(fh_heap *h, fh_thread *self);
/* A safepoint inside the allocation slow path: park if a stop is
 * requested (the concurrent marker's remark waits for it), nothing else
 * (no gc_stress tick).  Called where the thread holds no half-made
 * allocation. */
void thread_park_if_stopping(fh_thread *t);
void world_resume(fh_heap *h);
/* The calling OS thread counts as blocked, from now on, in every heap
 * where it is attached and running: a thread about to wait for something
 * outside one heap's protocol (a lock the fork handler holds while it stops
 * heaps, heap/fork.c) must not hold up a stop of another heap meanwhile.
 * Stores at most max of those entries in out and returns how many;
 * threads_unblock makes them running again (fh_leave_blocking). */
#define THREADS_MAX_BLOCKED 64
unsigned threads_block_caller(fh_thread **out, unsigned max);
void threads_unblock(fh_thread **ts, unsigned n);
/* Held across fork() by the fork handler: no other thread is then
 * changing an attachment list. */
void threads_attachments_lock(void);
void threads_attachments_unlock(void);
/* 0, or -1 + fh_last_error() ("fn: ..."): t is NULL, a detached handle,
 * or (verify=1) used from an OS thread other than the one that attached
 * it.  Every slow path that takes a thread calls it. */
int thread_check(fh_thread *t, const char *fn);
/* Point the inline fh_alloc at the real type-size table, or at the closed
 * one (every id unused: each allocation takes the slow path) while
 * gc_stress, verify=1 or a blocking region needs to see allocations. */
void thread_route_alloc(fh_thread *t);
/* The value fh__thread_fast.safepoint_requested rests at between stops:
 * 1 under gc_stress, so every poll reaches fh_safepoint_slow. */
static inline uint32_t thread_poll_rest(const fh_heap *h) { return h->opt.gc_stress != 0; }
/* gc_stress: count one event on *counter and run a stress collection on
 * the Nth (not inside a critical section or a blocking region). */
void stress_tick(fh_thread *t, _Atomic uint64_t *counter);
/* Free the tombstones of detached threads (fh_heap_destroy). */
void threads_free_tombstones(fh_heap *h);
/* Retire every thread's TLAB (fillers keep the bump space walkable). */
void threads_retire_tlabs(fh_heap *h);
void thread_retire_tlab(fh_thread *t);

/* ---- alloc.c ---- */
/* The answer of an allocation that found no room inside a critical section
 * (no collection can run there): NULL with an error that says so. */
void *alloc_fail_critical(fh_thread *t, const char *fn, size_t n);

/* ---- roots.c ---- */
/* Visit every root slot: global roots, each thread's root stack, the
 * embedder's scanner.  World stopped. */
void roots_visit(fh_heap *h, fh_visit_fn visit, void *ctx);

/* ---- heap.c ---- */
uint64_t heap_now_ns(void);
/* heap_max now (fh_set_heap_max changes it while mutators run). */
static inline size_t heap_limit(const fh_heap *h) {
  return __atomic_load_n(&h->opt.heap_max, __ATOMIC_RELAXED);
}
/* The bytes the moving (bump) space may hold beside `other` bytes of
 * other objects: semispace keeps a to-space as large as what it copies,
 * and heap_max covers both halves. */
/* Semispace and gen_semispace: the bump spaces are two halves. */
static inline int heap_two_halves(const fh_heap *h) {
  return h->opt.collector == FH_SEMISPACE || h->opt.collector == FH_GEN_SEMISPACE;
}
static inline size_t heap_bump_room(const fh_heap *h, size_t other) {
  other += h->semi_idle_bytes; /* pinned objects kept in the idle half */
  size_t lim = heap_limit(h), room = lim > other ? lim - other : 0;
  return heap_two_halves(h) ? room / 2 : room;
}
/* The address space reserved for objects: heap_reserve, at least the
 * heap_max given at creation (fixed from then on). */
static inline size_t heap_reserved_max(const fh_heap *h) { return h->reserved_max; }
/* The non-moving space's limit: non_moving_max, and with gen_semispace,
 * where it is also the promote space, room for the whole heap besides
 * (heap_max still caps everything together). */
static inline size_t heap_non_moving_limit(const fh_heap *h) {
  return h->opt.non_moving_max + (h->opt.collector == FH_GEN_SEMISPACE ? h->reserved_max : 0);
}
/* ---- oom.c ---- */
/* An allocation of `bytes` is about to fail for want of room: 1 when the
 * embedder's handler asks for another try (the caller collects and
 * retries), 0 to fail.  *calls counts this allocation's calls (at most
 * 8). */
int oom_retry(fh_thread *t, size_t bytes, unsigned *calls);
/* Recompute the allocation trigger from the live size after a collection. */
void heap_set_trigger(fh_heap *h, size_t live_bytes);
/* The same for a compacting collector, whose moving space holds
 * `occupied` bytes after the collection (heap/sizer.h: sizer_moving_room;
 * `thp`: the space has huge pages). */
void heap_set_trigger_moving(fh_heap *h, size_t live_bytes, size_t occupied, int thp);
/* Before the collector is used or shown (gc_run, fh_dump, fh_prefork): a
 * default collector chosen without the probe becomes mark_compact if the
 * probe now finds no userfaultfd or MREMAP_DONTUNMAP.  Cheap once settled. */
void heap_settle_collector(fh_heap *h);
size_t heap_used_bytes(fh_heap *h);
/* Bytes of the objects that never move: the non-moving space's and the
 * large-object space's.  What a collector counts as live beside what it
 * copied or slid. */
static inline size_t heap_nonmoving_used(fh_heap *h) {
  return atomic_load_explicit(&h->non_moving.used, memory_order_relaxed) +
         atomic_load_explicit(&h->los.used, memory_order_relaxed);
}
/* The sweep of both (world stopped, after marking): the bytes freed.  Also
 * settles which large objects need no scan (heap/large_objects.h). */
size_t heap_sweep_nonmoving(fh_heap *h);
/* Every space of the heap, allocating spaces first; returns the count.
 * The one list that statistics, dumping and verification walk: a new space
 * is added here. */
#define HEAP_MAX_SPACES 8
unsigned heap_spaces(fh_heap *h, fh_space **out);
/* Which space holds p (NULL: none); cheap range tests. */
static inline int heap_in_bump(const fh_heap *h, int i, const void *p) {
  return space_contains(&h->bump[i].space, p);
}

/* ---- malloc_heap.c (malloc spaces; collector=mark_sweep) ---- */
int malloc_heap_init(fh_heap *h, uintptr_t main_begin, uintptr_t backup_begin, size_t capacity);
void malloc_heap_destroy(fh_heap *h);
/* fh_alloc when the thread's budget does not cover the object (or jemalloc
 * failed): refill, sweep, collect (heap/malloc_alloc.h has the fast path). */
void *malloc_heap_alloc_slow(fh_thread *t, uint32_t type, size_t payload);
/* Room for a small object (`bytes` <= MS_RUN_OBJ_MAX) when the thread's
 * hole is too short: the next hole of its run, else of another run (swept
 * on the way while a sweep is pending, taken from the lists, or new), else
 * one mallocx.  NULL when jemalloc has no room. */
void *malloc_heap_next_hole(fh_thread *t, size_t bytes);
/* Flush every thread's explicit tcache and the collector's (world
 * stopped), after settling (below).  Needed before a malloc space is reset
 * or stops being main: on -1 (+ error) some cache still holds regions, and
 * the caller must refuse to do either. */
int malloc_heap_flush_tcaches(fh_heap *h);
/* Return each thread's prepaid budget and publish its held-back allocation
 * bits, so `used` and the bitmaps are exact (world stopped); flush_tcaches:
 * also flush the tcaches. */
int malloc_heap_settle_threads(fh_heap *h, int flush_tcaches); /* -1: a flush failed */
/* The main space's allocation bitmap moved (malloc_space_sweep_begin swaps
 * it with the mark bitmap): threads take its words again.  World stopped,
 * threads settled. */
void malloc_heap_rebind_bits(fh_heap *h);
void malloc_heap_thread_detach(fh_thread *t);
/* Fork child: account for the state of a thread that does not exist in the
 * child, without touching its tcache (heap/malloc_heap.c). */
void malloc_heap_thread_forget(fh_thread *t);
/* Set the allocation bits this thread still holds back (world_stop does it
 * for every thread, before anything reads the bitmaps). */
void malloc_heap_publish_pending(fh_thread *t);
/* An object allocated while concurrent marking runs (t->ms_black): set its
 * allocation bit (`bit` of `word`) and its mark bit now, both before the
 * object is returned, and count its bytes if marking had not marked it. */
void malloc_heap_alloc_black(fh_thread *t, _Atomic uint64_t *word, uint64_t bit, size_t bytes);
/* Large and non-moving objects allocated while marking runs: marked. */
void heap_alloc_black_other(fh_heap *h, void *obj);
static inline malloc_space *heap_main_malloc(fh_heap *h) { return &h->malloc[h->malloc_main]; }
static inline malloc_space *heap_backup_malloc(fh_heap *h) { return &h->malloc[!h->malloc_main]; }

/* ---- collectors/hspace_compact.c: background trigger ---- */
/* fh_set_background(h, 1): start a compaction on a heap thread when the
 * main malloc space's fragmentation passes hspace_fragmentation_pct. */
void hspace_background_request(fh_heap *h);
/* Wait for that thread (fh_heap_destroy). */
void hspace_background_join(fh_heap *h);
/* fh_dump's line about homogeneous compaction (nothing without malloc spaces). */
void hspace_dump(fh_heap *h, FILE *out);

/* ---- native.c (fh_malloc) ---- */
int native_init(fh_heap *h);
void native_destroy(fh_heap *h);

/* ---- collectors/mark_compact.c, concurrent_compact.c ---- */
/* Free the compactor's state (after fh_gc_wait); print its mode (fh_dump). */
void mc_heap_destroy(fh_heap *h);
void mc_dump(fh_heap *h, FILE *out);
/* fh_get_stats, under stats_lock: last_cycle and the fault service figures
 * (collectors/mc_stats.c). */
void mc_stats_fill(fh_heap *h, fh_stats *s);

/* ---- stats.c: pauses ---- */
/* Count one stop-the-world pause of `kind`, from start_ns (the world began
 * to stop) to end_ns (heap_now_ns): pause_hist, kind_*, recent_pauses,
 * pause_ns_total/max.  Every pause of every collector comes here: the
 * driver's (gc_account_pause) and any a collector stops the world for on
 * its own (a remark).  The record's stop_ns is the wait of the
 * world_stop that began the pause (h->last_stop_ns, then cleared), so call
 * it before stopping the world again.  _locked: the caller holds stats_lock (as inside
 * collect, which gc_run calls with it held); pause_record takes it. */
void pause_record_locked(fh_heap *h, fh_pause_kind kind, uint64_t start_ns, uint64_t end_ns);
void pause_record(fh_heap *h, fh_pause_kind kind, uint64_t start_ns, uint64_t end_ns);
/* Forget every pause (a forked child's counters), under stats_lock. */
void pause_reset(fh_heap *h);

/* The heap's concurrent phase: work a collection leaves running after its
 * pause (compaction, sweeping, releasing pages).  The next collection,
 * fh_gc_wait, fork and destroy wait for it to end. */
void heap_phase_open(fh_heap *h);
void heap_phase_close(fh_heap *h);
/* Open the phase and run fn(arg) as a detached task of the heap's GC
 * pool, whose last touch of the heap must be heap_phase_close.  -1 (phase
 * closed again) when no thread could be had: the caller then does the
 * work itself. */
int heap_phase_thread(fh_heap *h, const char *name, void *(*fn)(void *), void *arg);

/* ---- verify.c ---- */
/* Check every object header and reference; on a bad one print it and abort
 * (verify=1 is a debugging aid: continuing would spread the damage). */
void heap_verify(fh_heap *h, const char *when);
/* verify=1: fill [lo, hi) (8-byte aligned) with FH_POISON, so a stale
 * pointer into memory a collection vacated reads an obviously bad header
 * and payload, and faults when it follows a "reference" read there (the
 * word is a non-canonical address on x86-64 and AArch64). */
#define FH_POISON 0xdeadbeefdeadbeefull
void heap_poison(uintptr_t lo, uintptr_t hi);

#endif
