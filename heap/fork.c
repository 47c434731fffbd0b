/* Fork: the pre-fork API (fh_prefork, fh_postfork_parent/_child) and the
 * pthread_atfork handlers that make a plain fork() safe.
 *
 * Heap threads.  The heap runs work on threads of its own: tasks of its GC
 * pool (heap/gc_pool.h: the concurrent compactor's worker, joined lazily,
 * markers, builders, releasers, the background homogeneous compaction,
 * mark-sweep's detached sweeper) and the userfaultfd handler thread
 * (uffd_sigbus=0).  A child has none of them (only
 * the forking thread is copied), so a fork must not happen while one holds
 * a lock, runs a phase the child would wait for, or has a userfaultfd
 * registration live (the child would read zero pages, and could write the
 * parent's heap through the inherited fd: probed on this kernel).  All of
 * them start on demand, so "restarting" them after a fork is just letting
 * the next collection start what it needs.
 *
 * Plain fork().  The prepare handler, for every heap of the process:
 * waits for the background compaction and any concurrent phase to end (the
 * forking thread counts as blocked meanwhile, so a collection waiting for it
 * to park can finish), joins the compactor's worker and closes its
 * userfaultfd (no fd crosses the fork: both sides open a fresh one at their
 * next concurrent compaction), stops the world (every other attached
 * thread parks at its next safepoint or stays in its blocking region, as
 * for a collection; the parent handler resumes them), then holds the heap's
 * locks across the fork so no other thread is inside one.  The child
 * handler re-initialises the condition variables (waiters that no longer
 * exist would wedge them), forgets the heap threads, and forgets every
 * mutator but the forking thread: the others do not exist in the child, and
 * a collection would wait forever for them to park.
 *
 * What an absent thread owned.  The child must account for it without ever
 * acting as that thread: its TLAB and any bump-space range it had claimed
 * but not yet zeroed or published (fh_thread.claim_lo/hi) become fillers;
 * its held-back allocation bits are published (world_stop did, and the
 * child does again); its prepaid malloc-space budget goes back to `used`;
 * its jemalloc batch regions go back to the arena without a tcache; its
 * explicit tcache is leaked on purpose (heap/malloc_heap.c:
 * malloc_heap_thread_forget says why); its roots, its pins (fh_pin) and its
 * conservative stack record are dropped, so what only it reached or pinned
 * is garbage in the child, or movable.  The stop makes those states
 * consistent (no thread is halfway through an allocation at a safepoint);
 * the child's handling does not rely on it beyond that.
 *
 * The limits: fork() must not be called from inside a heap callback (a
 * trace function or root scanner) or with a lock of the heap held, and,
 * as for a collection, every other attached thread must reach a safepoint
 * or be in a blocking region, or the fork waits for it.
 *
 * jemalloc's own handlers lock all of its mutexes before the fork and
 * release them after.  They must run after the heap's prepare handler
 * (which waits for collections that may be inside jemalloc, freeing into
 * an arena) and before its parent and child handlers.  Registered by
 * jemalloc's constructor, they came first and so ran last and first.
 * The library's private jemalloc (Makefile: JE_PRIVATE) has no
 * constructor: it initialises on the heap's first call, after the heap's
 * handlers were registered, and pthread_atfork would run its prepare
 * first, holding jemalloc's locks while the heap waits for a collection
 * that needs one.  So its pthread_atfork is fh_jemalloc_atfork, and the
 * heap's handlers call jemalloc's in the old order.  And a fork during
 * that start-up (another thread's first jemalloc call) would leave the
 * child jemalloc's start-up lock held by a thread it does not have: the
 * heap's handlers are installed before any heap calls jemalloc
 * (fh_heap_create), and the prepare handler holds the start-up lock of
 * heap/sys.h across the fork. */
#include <errno.h>
#include <stdlib.h>

#include "collectors/collector.h"
#include "collectors/concurrent_mark.h"
#include "collectors/mc.h"
#include "heap/conservative.h"
#include "heap/error.h"
#include "heap/object_check.h"
#include "heap/zygote.h"

/* ---- the process-wide list of heaps ---- */

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
/* Readers that only look a heap up by address (heap_containing, for
 * fh_object_size/type) take this one instead: fork_prepare holds heaps_lock
 * while it waits for collections, and a mutator blocked on heaps_lock is
 * RUNNING, so a collection would wait for it to park while the fork waits
 * for the collection.  Holders of lookup_lock wait for nothing; writers
 * take both (heaps_lock first), and the fork holds it only across fork(). */
static pthread_mutex_t lookup_lock = PTHREAD_MUTEX_INITIALIZER;
static fh_heap **heaps;
static size_t nheaps, heaps_cap;
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;
static int handlers_failed;

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);
static void lookup_add(fh_heap *h);
static void lookup_remove(fh_heap *h);

static void install_handlers(void) {
  handlers_failed = pthread_atfork(fork_prepare, fork_parent, fork_child) != 0;
}

/* jemalloc's fork handlers (above), set once by its initialisation, and
 * whether this fork's prepare ran them: the parent and child handlers
 * follow that, not the handlers' presence now (a start-up that registered
 * them after the prepare handler looked would have them unlock mutexes
 * their prepare never locked).  Forks are serialised by heaps_lock. */
typedef void (*fork_fn)(void);
static _Atomic(fork_fn) je_prepare, je_parent, je_child;
static int je_ran;

#ifdef FH_JEMALLOC_PRIVATE
/* The private jemalloc's pthread_atfork (the Makefile renames its call):
 * the heap's handlers are installed if no heap has done so yet, and run
 * these inside theirs.  An error number on failure, as pthread_atfork. */
int fh_jemalloc_atfork(fork_fn prepare, fork_fn parent, fork_fn child);
int fh_jemalloc_atfork(fork_fn prepare, fork_fn parent, fork_fn child) {
  pthread_once(&handlers_once, install_handlers);
  if (handlers_failed) return ENOMEM;
  atomic_store_explicit(&je_parent, parent, memory_order_relaxed);
  atomic_store_explicit(&je_child, child, memory_order_relaxed);
  /* Release: a fork that sees prepare sees the other two. */
  atomic_store_explicit(&je_prepare, prepare, memory_order_release);
  return 0;
}
#endif

int fork_install_handlers(void) {
  pthread_once(&handlers_once, install_handlers);
  if (handlers_failed) {
    fh_error_set("pthread_atfork failed: the heap could not be made fork-safe");
    return -1;
  }
  return 0;
}

int fork_register_heap(fh_heap *h) {
  if (fork_install_handlers() < 0) return -1;
  /* heaps_lock may be held by a fork stopping heaps this thread runs in. */
  fh_thread *blocked[THREADS_MAX_BLOCKED];
  unsigned nblocked = threads_block_caller(blocked, THREADS_MAX_BLOCKED);
  pthread_mutex_lock(&heaps_lock);
  if (nheaps == heaps_cap) {
    size_t cap = heaps_cap ? heaps_cap * 2 : 8;
    fh_heap **grown = realloc(heaps, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&heaps_lock);
      threads_unblock(blocked, nblocked);
      fh_error_set("out of memory registering the heap for fork handling");
      return -1;
    }
    pthread_mutex_lock(&lookup_lock);
    heaps = grown;
    heaps_cap = cap;
    pthread_mutex_unlock(&lookup_lock);
  }
  pthread_mutex_lock(&lookup_lock);
  heaps[nheaps++] = h;
  pthread_mutex_unlock(&lookup_lock);
  lookup_add(h);
  pthread_mutex_unlock(&heaps_lock);
  threads_unblock(blocked, nblocked);
  return 0;
}

void fork_unregister_heap(fh_heap *h) {
  fh_thread *blocked[THREADS_MAX_BLOCKED];
  unsigned nblocked = threads_block_caller(blocked, THREADS_MAX_BLOCKED);
  pthread_mutex_lock(&heaps_lock);
  pthread_mutex_lock(&lookup_lock);
  for (size_t i = 0; i < nheaps; i++)
    if (heaps[i] == h) {
      heaps[i] = heaps[--nheaps];
      lookup_remove(h);
      break;
    }
  pthread_mutex_unlock(&lookup_lock);
  pthread_mutex_unlock(&heaps_lock);
  threads_unblock(blocked, nblocked);
}

/* ---- lock-free lookup by address (fh_object_size, fh_object_type) ----
 *
 * A lookup runs on every fh_object_size call, which runtimes use to read
 * array lengths: a mutex there cost 18 ns a call with one thread and 37
 * with two (against 2.5 without the check).  So the first LOOKUP_SLOTS
 * heaps also sit in slots that readers scan without a lock: each slot is a
 * seqlock over (begin, size, heap), written under heaps_lock with the seq
 * odd while it changes.  A reader never dereferences a slot's heap unless
 * the address lies in its reservation, so a heap being destroyed is only
 * touched by a caller passing one of its objects (a use-after-destroy of
 * the caller's own).  Heaps beyond the slots are found in the locked list. */
#define LOOKUP_SLOTS 32
typedef struct lookup_slot {
  _Atomic unsigned seq;
  _Atomic uintptr_t begin;
  _Atomic size_t size;
  fh_heap *_Atomic heap;
} lookup_slot;
static lookup_slot lookup_slots[LOOKUP_SLOTS];
static _Atomic size_t lookup_overflow; /* heaps without a slot */
static _Atomic unsigned lookup_used;   /* slots [0, lookup_used) were ever written */

/* The windows of fh_object_type/size's inline path (include/faultheap.h):
 * WINDOWS_PER_SLOT per lookup slot, for the same heap, written with it
 * (and by heap_windows_refresh). */
#define WINDOWS_PER_SLOT 3
_Static_assert(LOOKUP_SLOTS * WINDOWS_PER_SLOT <= FH__OBJ_WINDOWS, "fh__obj_windows too small");
fh__obj_window fh__obj_windows[FH__OBJ_WINDOWS];
_Atomic unsigned fh__obj_windows_used;

/* heaps_lock held; the same release-store seqlock as the slots. */
static void window_write(fh__obj_window *w, uintptr_t begin, size_t span,
                         const _Atomic uintptr_t *end, const uint32_t *sizes) {
  unsigned q = atomic_load_explicit(&w->seq, memory_order_relaxed);
  atomic_store_explicit(&w->seq, q + 1, memory_order_relaxed);
  atomic_store_explicit(&w->end, end, memory_order_release);
  atomic_store_explicit(&w->type_sizes, sizes, memory_order_release);
  atomic_store_explicit(&w->begin, begin, memory_order_release);
  atomic_store_explicit(&w->span, end ? span : 0, memory_order_release);
  atomic_store_explicit(&w->seq, q + 2, memory_order_release);
}

/* The windows of h (NULL: cleared).  The spaces whose objects lie below an
 * atomic frontier at a fixed address (heap/object_check.c: used_end gives
 * the same bound): the two bump spaces, or for a mark-sweep heap (which
 * never allocates in its bump spaces) the two malloc spaces, and the
 * non-moving space until fh_prefork makes a zygote space at its start;
 * each only while its arena starts at the space, so that the space's
 * frontier is the arena's.  The image and zygote spaces take the
 * out-of-line path.  Writers of one heap's windows exclude each other
 * without a lock: creation (before anyone has h), destruction (every
 * thread detached) and zygote compaction (world stopped, the caller the
 * only attached thread); other heaps' writers use other windows. */
static void windows_write(unsigned slot, fh_heap *h) {
  fh__obj_window *w = &fh__obj_windows[slot * WINDOWS_PER_SLOT];
  const uint32_t *sizes = h ? h->types.sizes : NULL;
  for (int i = 0; i < 2; i++) {
    uintptr_t begin = 0, end = 0;
    const _Atomic uintptr_t *frontier = NULL;
    if (h && !h->has_malloc_spaces) {
      bump_space *b = &h->bump[i];
      begin = b->space.begin, end = b->space.end, frontier = &b->top;
    } else if (h && h->malloc[i].arena.begin == h->malloc[i].space.begin) {
      malloc_space *m = &h->malloc[i];
      begin = m->space.begin, end = m->space.end, frontier = &m->arena.frontier;
    }
    window_write(&w[i], begin, end - begin, frontier, sizes);
  }
  non_moving_space *nm = h ? &h->non_moving : NULL;
  if (nm && (zygote_space_present(&h->zygote) || nm->arena.begin != nm->space.begin)) nm = NULL;
  window_write(&w[2], nm ? nm->space.begin : 0, nm ? nm->space.end - nm->space.begin : 0,
               nm ? &nm->arena.frontier : NULL, sizes);
  unsigned used = (slot + 1) * WINDOWS_PER_SLOT;
  if (h && used > atomic_load_explicit(&fh__obj_windows_used, memory_order_relaxed))
    atomic_store_explicit(&fh__obj_windows_used, used, memory_order_release);
}

/* h's lookup slot, or LOOKUP_SLOTS when it has none. */
static unsigned lookup_slot_of(fh_heap *h) {
  for (unsigned i = 0; i < LOOKUP_SLOTS; i++)
    if (atomic_load_explicit(&lookup_slots[i].heap, memory_order_relaxed) == h) return i;
  return LOOKUP_SLOTS;
}

void heap_windows_refresh(fh_heap *h, int clear) {
  unsigned i = lookup_slot_of(h);
  if (i < LOOKUP_SLOTS) windows_write(i, clear ? NULL : h);
}

/* heaps_lock held. */
static void lookup_slot_write(lookup_slot *sl, fh_heap *h) {
  unsigned q = atomic_load_explicit(&sl->seq, memory_order_relaxed);
  /* Release stores (no fences, which TSan cannot follow): a reader that
   * sees a changed field also sees the odd seq before it. */
  atomic_store_explicit(&sl->seq, q + 1, memory_order_relaxed);
  atomic_store_explicit(&sl->heap, h, memory_order_release);
  atomic_store_explicit(&sl->begin, h ? h->resv_begin : 0, memory_order_release);
  atomic_store_explicit(&sl->size, h ? h->resv_size : 0, memory_order_release);
  atomic_store_explicit(&sl->seq, q + 2, memory_order_release);
}

/* heaps_lock held. */
static void lookup_add(fh_heap *h) {
  for (unsigned i = 0; i < LOOKUP_SLOTS; i++)
    if (!atomic_load_explicit(&lookup_slots[i].heap, memory_order_relaxed)) {
      lookup_slot_write(&lookup_slots[i], h);
      windows_write(i, h);
      if (i >= atomic_load_explicit(&lookup_used, memory_order_relaxed))
        atomic_store_explicit(&lookup_used, i + 1, memory_order_release);
      return;
    }
  atomic_fetch_add(&lookup_overflow, 1);
}

/* heaps_lock held. */
static void lookup_remove(fh_heap *h) {
  for (unsigned i = 0; i < LOOKUP_SLOTS; i++)
    if (atomic_load_explicit(&lookup_slots[i].heap, memory_order_relaxed) == h) {
      windows_write(i, NULL);
      lookup_slot_write(&lookup_slots[i], NULL);
      return;
    }
  atomic_fetch_sub(&lookup_overflow, 1);
}

fh_heap *heap_containing(const void *p) {
  uintptr_t a = (uintptr_t)p;
  unsigned used = atomic_load_explicit(&lookup_used, memory_order_acquire);
  for (unsigned i = 0; i < used; i++) {
    lookup_slot *sl = &lookup_slots[i];
    for (;;) {
      unsigned q = atomic_load_explicit(&sl->seq, memory_order_acquire);
      /* Acquire loads: the re-check below cannot move before them. */
      uintptr_t b = atomic_load_explicit(&sl->begin, memory_order_acquire);
      size_t n = atomic_load_explicit(&sl->size, memory_order_acquire);
      fh_heap *h = atomic_load_explicit(&sl->heap, memory_order_acquire);
      if (q & 1 || atomic_load_explicit(&sl->seq, memory_order_relaxed) != q) continue;
      if (h && a - b < n) return h;
      break;
    }
  }
  if (!atomic_load_explicit(&lookup_overflow, memory_order_relaxed)) return NULL;
  fh_heap *found = NULL;
  pthread_mutex_lock(&lookup_lock);
  for (size_t i = 0; i < nheaps && !found; i++)
    if (a - heaps[i]->resv_begin < heaps[i]->resv_size) found = heaps[i];
  pthread_mutex_unlock(&lookup_lock);
  return found;
}

/* ---- heap threads ---- */

/* Join the compactor's last worker and close its userfaultfd.  gc_lock
 * held and no concurrent phase open, so no range is registered. */
static void compactor_quiesce(fh_heap *h) {
  mc_state *m = h->mc;
  if (!m) return;
  if (m->worker_joinable) {
    gc_pool_join(&h->pool, m->worker);
    m->worker_joinable = 0;
  }
  if (m->uffd) {
    fh_uffd_destroy(m->uffd); /* also stops the handler thread, if any */
    m->uffd = NULL;
  }
}

/* The entry of the calling thread in h's thread list, whatever its state
 * (NULL when it is not attached).  fork_prepare has already made it count
 * as blocked if it was running; one already inside a blocking region (a
 * program may well fork between fh_enter_blocking and fh_leave_blocking)
 * stays there.  Either way its open critical sections are its own, and
 * the world stop must not wait for them (world_stop's self). */
static fh_thread *caller_thread(fh_heap *h) {
  fh_thread *t, *found = NULL;
  pthread_t me = pthread_self();
  /* world_lock keeps the list still (attach and detach change it under
   * it).  Any thread may fork, attached or not: this must not need
   * anything the thread may not have, such as an RCU registration
   * (issue 14). */
  pthread_mutex_lock(&h->world_lock);
  cds_list_for_each_entry(t, &h->threads, link)
    if (pthread_equal(t->owner, me)) {
      found = t;
      break;
    }
  pthread_mutex_unlock(&h->world_lock);
  return found;
}

/* Wait for the background compaction thread; the caller (if attached)
 * counts as blocked, since that compaction may be waiting for it. */
static void join_background(fh_heap *h, fh_thread *self) {
  if (self) fh_enter_blocking(self);
  hspace_background_join(h);
  if (self) fh_leave_blocking(self);
}

/* The forking thread's entries that fork_prepare made count as blocked in
 * every heap it is attached to, before it waits for anything: another
 * thread's fork (which holds heaps_lock while it stops heaps), or the
 * stop of one heap while this thread runs in another, must not wait for
 * it.  Thread-local: only the forking thread runs the three handlers. */
static _Thread_local fh_thread *fork_blocked[THREADS_MAX_BLOCKED];
static _Thread_local unsigned fork_nblocked;

/* ---- pthread_atfork handlers ---- */

static void prepare_heap(fh_heap *h) {
  /* The caller counts as blocked here (fork_prepare), so the background
   * compaction and a collection in progress can finish without it. */
  fh_thread *self = caller_thread(h);
  hspace_background_join(h);
  pthread_mutex_lock(&h->gc_lock); /* no new collection */
  fh_gc_wait(h);
  /* Every other mutator parks at a safepoint (or stays in its blocking
   * region) across the fork: the child then finds each absent thread
   * between two heap operations, never halfway through an allocation (a
   * TLAB claimed but not zeroed, a region taken from jemalloc but not yet
   * an object, a tcache mid-update).  The child still treats what they
   * own defensively (child_heap).  Held-back allocation bits are published
   * here, by world_stop.  Before the userfaultfd closes, too: no
   * mutator is then between a fault and its SIGBUS handler's lookup
   * (uffd/ranges.c also remembers every range it ever registered, so a
   * late SIGBUS after the close is retried anyway). */
  world_stop(h, self);
  /* A concurrent marking is abandoned, its marker joined: the child must
   * find no cycle half-marked, and the parent starts the next one afresh. */
  cmark_abandon(h);
  compactor_quiesce(h);
  /* No new background thread.  Taken only now: a running mutator may be
   * waiting for it in fh_set_background, and would never park.  A
   * background thread started since hspace_background_join is at most waiting
   * for gc_lock, blocked, and absent from the child. */
  pthread_mutex_lock(&h->hspace_bg_lock);
  pthread_mutex_lock(&h->stats_lock);
  pthread_mutex_lock(&h->roots_lock);
  pthread_mutex_lock(&h->world_lock);
  /* A thread of any kind may be registering a type; its holder waits for
   * nothing of ours (only malloc), and the child must find it free. */
  pthread_mutex_lock(&h->types.lock);
  /* Last: a pool thread ending a detached task takes it, and waits for
   * nothing else of ours meanwhile. */
  gc_pool_before_fork(&h->pool);
}

static void unlock_heap(fh_heap *h) {
  pthread_mutex_unlock(&h->types.lock);
  pthread_mutex_unlock(&h->world_lock);
  pthread_mutex_unlock(&h->roots_lock);
  pthread_mutex_unlock(&h->stats_lock);
  pthread_mutex_unlock(&h->gc_lock);
  pthread_mutex_unlock(&h->hspace_bg_lock);
}

static void parent_heap(fh_heap *h) {
  gc_pool_after_fork_parent(&h->pool);
  pthread_mutex_unlock(&h->world_lock);
  world_resume(h); /* the mutators parked by prepare_heap go on */
  pthread_mutex_lock(&h->world_lock);
  unlock_heap(h);
}

/* Only the forking thread exists in the child. */
static void child_heap(fh_heap *h) {
  pthread_t me = pthread_self();
  pthread_cond_init(&h->parked_cv, NULL);
  pthread_cond_init(&h->resume_cv, NULL);
  pthread_cond_init(&h->critical_cv, NULL);
  pthread_cond_init(&h->phase_cv, NULL);
  gc_pool_after_fork_child(&h->pool); /* none of its threads exists here */
  gc_pace_after_fork_child(&h->pace);
  fh_thread *t, *next, *self = NULL;
  cds_list_for_each_entry_safe(t, next, &h->threads, link) {
    if (pthread_equal(t->owner, me)) {
      self = t;
      continue;
    }
    /* A mutator that stayed in the parent: forget it here without
     * touching what only it may touch (its jemalloc tcache), leaving
     * every range it claimed walkable (its TLAB, or a claim not yet
     * zeroed), its held-back allocation bits published and its
     * malloc-space budget returned. */
    thread_retire_tlab(t);
    cds_list_del(&t->link);
    h->nthreads--;
    malloc_heap_thread_forget(t);
    free(t->fast.roots_base);
    /* Its pins and its stack are the parent's: what only they held is
     * garbage here, and may move.  The forking thread keeps its own. */
    pins_thread_drop(t);
    free(t->cons);
    free(t);
  }
  /* The world stopped for the fork stays stopped for nobody. */
  if (self) atomic_store(&self->fast.safepoint_requested, thread_poll_rest(h));
  h->stop_requested = 0;
  h->gc_pending = 0;
  h->concurrent_phase = 0;
  h->critical = self ? self->critical : 0;
  h->hspace_bg_started = 0;
  atomic_store(&h->hspace_bg_attached, 0);
  atomic_store(&h->hspace_bg_done, 1);
  mc_state *m = h->mc;
  if (m) {
    m->worker_joinable = 0;
    /* The prepare handler closed it; a fd that got here anyway would be
     * the parent's: drop it without touching its ranges. */
    if (m->uffd && fh_uffd_postfork_child(m->uffd) < 0) m->uffd = NULL;
  }
  unlock_heap(h); /* the locks were taken by this very thread */
}

static void fork_prepare(void) {
  fork_nblocked = threads_block_caller(fork_blocked, THREADS_MAX_BLOCKED);
  pthread_mutex_lock(&heaps_lock);
  for (size_t i = 0; i < nheaps; i++) prepare_heap(heaps[i]);
  pthread_mutex_lock(&lookup_lock); /* no holder is mid-lookup across fork() */
  threads_attachments_lock();       /* nor mid-attach (a leaf lock) */
  /* No jemalloc start-up across the fork (heap/sys.h): one under way in
   * another thread (heap creation, fh_malloc from a thread no stop waits
   * for) ends first, and the next begins after.  Last: a collection that
   * prepare_heap waited for may have started jemalloc. */
  pthread_mutex_lock(&sys_jemalloc_start_lock);
  fork_fn je = atomic_load_explicit(&je_prepare, memory_order_acquire);
  je_ran = je != NULL;
  if (je) je(); /* last: no collection runs now */
}

static void fork_parent(void) {
  if (je_ran) atomic_load_explicit(&je_parent, memory_order_relaxed)();
  pthread_mutex_unlock(&sys_jemalloc_start_lock);
  threads_attachments_unlock();
  for (size_t i = nheaps; i-- > 0;) parent_heap(heaps[i]);
  pthread_mutex_unlock(&lookup_lock);
  pthread_mutex_unlock(&heaps_lock);
  threads_unblock(fork_blocked, fork_nblocked);
}

static void fork_child(void) {
  if (je_ran) atomic_load_explicit(&je_child, memory_order_relaxed)();
  pthread_mutex_unlock(&sys_jemalloc_start_lock);
  threads_attachments_unlock();
  for (size_t i = nheaps; i-- > 0;) child_heap(heaps[i]);
  pthread_mutex_unlock(&lookup_lock);
  pthread_mutex_unlock(&heaps_lock);
  threads_unblock(fork_blocked, fork_nblocked); /* nothing stops the child's world now */
}

/* ---- the pre-fork API ---- */

static int refuse_other_mutators(fh_heap *h) {
  unsigned n = h->nthreads;
  if (n == 1) return 0;
  fh_error_set("fh_prefork: %u other mutator thread%s attached; the caller must be the only "
               "attached thread (detach the others first)", n - 1, n == 2 ? " is" : "s are");
  return -1;
}

/* fh_prefork's steps 2 and 3: zygote compaction in a pause of its own,
 * then the heap's threads ended.  0, or -1 + fh_last_error(). */
static int zygote_pause(fh_thread *t) {
  fh_heap *h = t->heap;
  gc_lock_acquire(t);
  if (refuse_other_mutators(h) < 0) { /* one attached since */
    gc_lock_release(t);
    return -1;
  }
  mc_quiesce(h); /* its end-of-cycle task reads the space this moves */
  uint64_t t0 = heap_now_ns();
  world_stop(h, t);
  /* The full collection above finished any concurrent marking; this joins
   * its marker task, so that the pool's threads can end below. */
  cmark_abandon(h);
  threads_retire_tlabs(h);
  /* This pause's pins (fh_pin, conservative stack words), as a
   * collection's: zygote compaction leaves them where they are.  Without
   * the set nothing may move: refused, the heap untouched. */
  if (pins_gather(h, t) < 0) {
    pins_release(h);
    world_resume(h);
    gc_lock_release(t);
    fh_error_prefix("fh_prefork: cannot gather the pinned objects");
    return -1;
  }
  /* Verification outside stats_lock: a failure dumps the heap, and the
   * dump reads the statistics. */
  if (h->opt.verify) heap_verify(h, "before zygote compaction");
  pthread_mutex_lock(&h->stats_lock);
  int rc = zygote_compact(h);
  pins_account(h);
  pthread_mutex_unlock(&h->stats_lock);
  pins_release(h);
  if (h->opt.verify) heap_verify(h, "after zygote compaction");
  gc_account_pause(h, t0);
  world_resume(h);
  /* 3. End the heap threads: none runs, no userfaultfd is open, and the
   * process forks with its mutators only (the pool starts threads anew on
   * demand, in the parent and in each child). */
  compactor_quiesce(h);
  gc_pool_end_threads(&h->pool);
  gc_lock_release(t);
  if (rc < 0) fh_error_prefix("fh_prefork");
  return rc;
}

int fh_prefork(fh_thread *t) {
  if (thread_check(t, "fh_prefork") < 0) return -1;
  heap_settle_collector(t->heap); /* the children's collector, known before they exist */
  if (t->critical) {
    /* Refused before waiting for the background compaction, which may
     * itself wait for this section to close. */
    fh_error_set("fh_prefork: cannot stop the world inside this thread's own critical section");
    return -1;
  }
  fh_heap *h = t->heap;
  join_background(h, t); /* its thread is attached while it runs */
  pthread_mutex_lock(&h->gc_lock);
  int refused = refuse_other_mutators(h);
  pthread_mutex_unlock(&h->gc_lock);
  if (refused) return -1;
  /* 1. A full collection: only live objects are frozen, and the
   * non-moving space is swept.  When objects may be pinned (this thread's
   * fh_pin records, or its stack with stack_roots=conservative), a
   * mark-sweep: it moves nothing, and the compaction below copies what
   * is live anyway; the heap's own collector would move bump-space objects
   * around their pins only to have them copied again. */
  fh_collect_kind kind = t->npins || h->opt.stack_roots == FH_STACK_ROOTS_CONSERVATIVE
                             ? FH_COLLECT_MARK_SWEEP
                             : FH_COLLECT_DEFAULT;
  if (gc_run(t, kind, GC_CAUSE_EXPLICIT, 0) < 0) {
    fh_error_prefix("fh_prefork: the full collection failed");
    return -1;
  }
  fh_gc_wait(h);
  /* Objects waiting for finalization would be frozen into the zygote and
   * then finalized by the parent and again by every child (a temporary
   * file removed n times): the caller finalizes them first. */
  pthread_mutex_lock(&h->fin_queue.lock);
  size_t waiting = h->fin_queue.n;
  pthread_mutex_unlock(&h->fin_queue.lock);
  if (waiting) {
    fh_error_set("fh_prefork: %zu objects wait for finalization (fh_finalizer_pop them and "
                 "finalize, then call fh_prefork again)", waiting);
    return -1;
  }
  /* 2. Zygote compaction, in a pause of its own.  With conservative
   * roots this thread's stack is scanned from this frame, as in a
   * collection (collectors/driver.c: gc_run). */
  __builtin_unwind_init();
  uintptr_t prev = conservative_enter(t);
  int rc = zygote_pause(t);
  conservative_leave(t, prev);
  return rc;
}

void fh_postfork_parent(fh_heap *h) {
  if (!h) {
    fh_error_set("fh_postfork_parent: heap is NULL");
    return;
  }
  /* Heap threads start on demand (the next concurrent compaction opens a
   * userfaultfd and starts its worker), so there is nothing to restart. */
}

void fh_postfork_child(fh_heap *h) {
  if (!h) {
    fh_error_set("fh_postfork_child: heap is NULL");
    return;
  }
  pthread_mutex_lock(&h->gc_lock);
  /* This process's own userfaultfd, now (ART's CreateUserfaultfd(post_fork)):
   * the atfork handlers left none.  On failure the next concurrent
   * compaction tries again, or runs stop-the-world. */
  mc_state *m = h->mc;
  if (m && !m->uffd && h->opt.collector == FH_CONCURRENT_COMPACT &&
      mc_concurrent_available(NULL))
    m->uffd = fh_uffd_create(h->opt.uffd_sigbus ? FH_UFFD_SIGBUS : FH_UFFD_THREAD, 0);
  /* Counters describe this process from now on. */
  pthread_mutex_lock(&h->stats_lock);
  h->collections = 0;
  h->bytes_freed = h->bytes_moved = 0;
  h->compact_slides = h->compact_builds = 0;
  pause_reset(h); /* pause_ns_total/max, the histogram, kinds, recent */
  atomic_store(&h->bytes_allocated, 0);
  atomic_store(&h->uffd_faults, 0);
  atomic_store(&h->uffd_fault_ns_max, 0);
  pthread_mutex_unlock(&h->stats_lock);
  pthread_mutex_unlock(&h->gc_lock);
}
