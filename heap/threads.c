/* Mutator threads: attach/detach, safepoints, blocking regions and the
 * stop-the-world handshake.
 *
 * Protocol.  A thread is RUNNING, BLOCKED (inside fh_enter_blocking, or
 * waiting for the GC lock) or PARKED (at a safepoint while the world is
 * stopped).  The collector holds gc_lock, sets stop_requested and each
 * thread's safepoint flag, and waits until every other thread is BLOCKED or
 * PARKED.  A thread that wants to leave BLOCKED waits while stop_requested
 * is set, so a blocked thread never touches the heap during a collection.
 * All state changes happen under world_lock; the per-thread flag is only the
 * cheap hint that fh_safepoint polls.  The thread list changes (attach,
 * detach: rare) under gc_lock and world_lock both, so holding either one
 * keeps it still: collectors walk it under gc_lock, the others under
 * world_lock.  It used to be an RCU list (liburcu-bp), but every reader
 * holds one of those locks anyway, and liburcu-bp registers a thread in its
 * first read-side section with an mmap whose failure it answers with
 * abort(): any thread's first heap call could kill the process (issue 14). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectors/concurrent_mark.h"
#include "heap/ephemeron.h"
#include "heap/conservative.h"
#include "heap/error.h"
#include "heap/heap.h"
#include "heap/object.h"
#include "heap/object_check.h"

#define ROOTS_INITIAL 256

static void set_state(fh_thread *t, thread_state s) {
  fh_heap *h = t->heap;
  pthread_mutex_lock(&h->world_lock);
  if (s == THREAD_RUNNING)
    while (h->stop_requested) pthread_cond_wait(&h->resume_cv, &h->world_lock);
  t->state = s;
  if (s != THREAD_RUNNING) pthread_cond_broadcast(&h->parked_cv);
  pthread_mutex_unlock(&h->world_lock);
}

int thread_check(fh_thread *t, const char *fn) {
  if (!t) {
    fh_error_set("%s: thread is NULL", fn);
    return -1;
  }
  if (t->magic != THREAD_LIVE) {
    fh_error_set("%s: thread handle %p was detached (fh_thread_detach); attach the thread again",
                 fn, (void *)t);
    return -1;
  }
  if (t->heap->opt.verify && !pthread_equal(t->owner, pthread_self())) {
    fh_error_set("%s: thread handle %p belongs to another OS thread (verify=1 checks this); "
                 "every thread attaches its own", fn, (void *)t);
    return -1;
  }
  return 0;
}

void thread_route_alloc(fh_thread *t) {
  fh_heap *h = t->heap;
  const uint32_t *closed = NULL;
  if (h->opt.gc_stress || h->opt.verify || t->in_blocking || t->magic != THREAD_LIVE)
    closed = types_closed_sizes();
  /* Without the closed table (its one malloc failed) allocations still
   * work, only unchecked: gc_stress then counts slow-path allocations. */
  t->fast.type_sizes = closed ? closed : h->types.sizes;
}

void fh_enter_blocking(fh_thread *t) {
  if (thread_check(t, "fh_enter_blocking") < 0) return;
  /* Allocation is refused until fh_leave_blocking: the inline fh_alloc is
   * routed to the slow path, which sees in_blocking (free on the fast
   * path: a table pointer, not a test). */
  t->in_blocking = 1;
  thread_route_alloc(t);
  conservative_save(t);
  set_state(t, THREAD_BLOCKED);
}

void fh_leave_blocking(fh_thread *t) {
  if (thread_check(t, "fh_leave_blocking") < 0) return;
  set_state(t, THREAD_RUNNING);
  t->in_blocking = 0;
  thread_route_alloc(t);
}

void fh_safepoint_slow(fh_thread *t) {
  if (thread_check(t, "fh_safepoint") < 0) return;
  fh_heap *h = t->heap;
  if (h->opt.gc_stress) stress_tick(t, &h->stress_polls);
  conservative_save(t);
  pthread_mutex_lock(&h->world_lock);
  if (h->stop_requested) {
    t->state = THREAD_PARKED;
    pthread_cond_broadcast(&h->parked_cv);
    while (h->stop_requested) pthread_cond_wait(&h->resume_cv, &h->world_lock);
    t->state = THREAD_RUNNING;
  }
  pthread_mutex_unlock(&h->world_lock);
}

void thread_park_if_stopping(fh_thread *t) {
  fh_heap *h = t->heap;
  conservative_save(t);
  pthread_mutex_lock(&h->world_lock);
  if (h->stop_requested && !t->critical) {
    t->state = THREAD_PARKED;
    pthread_cond_broadcast(&h->parked_cv);
    while (h->stop_requested) pthread_cond_wait(&h->resume_cv, &h->world_lock);
    t->state = THREAD_RUNNING;
  }
  pthread_mutex_unlock(&h->world_lock);
}

void gc_lock_acquire(fh_thread *self) {
  /* Waiting for another collector counts as blocked, or that collector
   * would wait for us forever. */
  if (pthread_mutex_trylock(&self->heap->gc_lock) == 0) return;
  conservative_save(self);
  set_state(self, THREAD_BLOCKED);
  pthread_mutex_lock(&self->heap->gc_lock);
  /* Nobody else can stop the world while we hold gc_lock. */
  set_state(self, THREAD_RUNNING);
}

void gc_lock_release(fh_thread *self) { pthread_mutex_unlock(&self->heap->gc_lock); }

int world_stop(fh_heap *h, fh_thread *self) {
  /* self may be NULL: the fork prepare handler of a thread that is not
   * attached, or is inside a blocking region (heap/fork.c). */
  unsigned mine = self ? self->critical : 0;
  uint64_t t0 = heap_now_ns();
  pthread_mutex_lock(&h->world_lock);
  /* No new critical section opens from here on; open ones finish first,
   * since their objects must not move under native code. */
  h->gc_pending = 1;
  /* gc_run refused collectors inside their own critical section. */
  while (h->critical > mine) pthread_cond_wait(&h->critical_cv, &h->world_lock);
  h->stop_requested = 1;
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link)
    if (t != self) atomic_store(&t->fast.safepoint_requested, 1);
  for (;;) {
    int running = 0;
    cds_list_for_each_entry(t, &h->threads, link)
      running += t != self && t->state == THREAD_RUNNING;
    if (!running) break;
    pthread_cond_wait(&h->parked_cv, &h->world_lock);
  }
  /* Allocation bits that mark_sweep mutators hold back (heap/malloc_heap.c)
   * become exact for whoever stopped the world. */
  cds_list_for_each_entry(t, &h->threads, link)
    if (t->ms_pending_word) malloc_heap_publish_pending(t);
  h->last_stop_ns = heap_now_ns() - t0; /* the pause's record takes it */
  pthread_mutex_unlock(&h->world_lock);
  return 0;
}

void world_resume(fh_heap *h) {
  pthread_mutex_lock(&h->world_lock);
  h->stop_requested = 0;
  h->gc_pending = 0;
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link)
      atomic_store(&t->fast.safepoint_requested, thread_poll_rest(h));
  pthread_cond_broadcast(&h->resume_cv);
  pthread_mutex_unlock(&h->world_lock);
}

void *fh_critical_begin(fh_thread *t, void *obj) {
  if (thread_check(t, "fh_critical_begin") < 0) return NULL;
  if (!obj) {
    fh_error_set("fh_critical_begin: object is NULL");
    return NULL;
  }
  fh_heap *h = t->heap;
  /* Checked before anything is touched beyond the header (which the check
   * reads only inside a space's used range). */
  if (heap_check_object(h, obj, "fh_critical_begin") < 0) return NULL;
  /* While it waits below, this thread counts as blocked and a collection
   * may move the object: a root slot of our own keeps it alive and
   * updated, and its value afterwards is what we return.  Pushed before
   * taking world_lock (growing the stack may allocate). */
  void *slot = obj;
  void ***top = t->fast.roots_top;
  fh_push_root(t, &slot);
  conservative_save(t);
  if (t->fast.roots_top == top) {
    fh_error_prefix("fh_critical_begin");
    return NULL;
  }
  pthread_mutex_lock(&h->world_lock);
  /* A collection is about to stop the world: let it run first, counting as
   * blocked meanwhile so it does not wait for us.  Not when this thread
   * already holds a section: that collector waits for the open section to
   * close (world_stop), so waiting for it here would deadlock, and the
   * objects cannot move before the world is stopped anyway. */
  thread_state was = t->state;
  while (h->gc_pending && !t->critical) {
    t->state = THREAD_BLOCKED;
    pthread_cond_broadcast(&h->parked_cv);
    pthread_cond_wait(&h->resume_cv, &h->world_lock);
  }
  t->state = was;
  h->critical++;
  t->critical++;
  pthread_mutex_unlock(&h->world_lock);
  /* Only this thread pops its own stack; the collections that ran while we
   * waited have ended (gc_pending was clear with world_lock held). */
  obj = slot;
  fh_pop_roots(t, 1);
  /* Touch every page of the object, at its current address, so that
   * neither native code nor the kernel meets a page that is not mapped yet
   * (during a concurrent compaction's phase these reads fault the pages
   * in).  No flip can start now: h->critical holds every collector in
   * world_stop. */
  volatile const char *p = obj;
  size_t n = hdr_payload(*obj_header(obj));
  for (size_t off = 0; off < n; off += 4096) (void)p[off];
  if (n) (void)p[n - 1];
  return obj;
}

void fh_critical_end(fh_thread *t, void *obj) {
  if (thread_check(t, "fh_critical_end") < 0) return;
  if (!obj) {
    fh_error_set("fh_critical_end: object is NULL");
    return;
  }
  fh_heap *h = t->heap;
  /* The count is per thread, not per object: a bad pointer still closes
   * the innermost section (refusing would leave every collector waiting
   * for it forever), but says so.  Checked while the section still holds
   * collectors off. */
  int bad = t->critical && !heap_object_plausible(h, obj);
  pthread_mutex_lock(&h->world_lock);
  if (!t->critical) {
    pthread_mutex_unlock(&h->world_lock);
    fh_error_set("fh_critical_end: no critical section is open on this thread");
    return;
  }
  t->critical--;
  if (--h->critical == 0) pthread_cond_broadcast(&h->critical_cv);
  pthread_mutex_unlock(&h->world_lock);
  if (bad)
    fh_error_set("fh_critical_end: %p is not an object of this heap (pass the pointer "
                 "fh_critical_begin returned); the innermost section was closed anyway", obj);
}

void thread_retire_tlab(fh_thread *t) {
  uintptr_t cur = t->fast.tlab_cursor, lim = t->fast.tlab_limit;
  if (lim > cur) obj_write_filler(cur, lim - cur);
  t->fast.tlab_cursor = t->fast.tlab_limit = 0;
  /* Only a fork child finds a claim here (an absent thread's, see
   * heap/alloc.c): a filler over all of it, contents unknown, makes it
   * walkable.  It may contain the TLAB just filled: the outer filler wins. */
  if (t->claim_hi > t->claim_lo) obj_write_filler(t->claim_lo, t->claim_hi - t->claim_lo);
  t->claim_lo = t->claim_hi = 0;
}

void threads_retire_tlabs(fh_heap *h) {
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link) thread_retire_tlab(t);
}

/* ---- each OS thread's attachments, across heaps ----
 *
 * The list head is the owner's thread-local; the links change under a leaf
 * lock held for a few instructions (a thread may be detached by another,
 * e.g. a fork child forgetting absent threads).  Readers take the lock,
 * copy their own entries and release it before they touch any heap. */
static pthread_mutex_t attachments_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local fh_thread *my_attachments;

/* fh_thread_current's per-OS-thread cache: (heap, answer) as of
 * attachments_epoch.  Every change to any thread's list bumps the epoch
 * under the lock, so a cached answer is never used after an attach or
 * detach anywhere (a detach by another thread, or a heap destroyed and
 * another created at its address, included). */
static _Atomic uint64_t attachments_epoch = 1;
static _Thread_local struct { fh_heap *heap; fh_thread *t; uint64_t epoch; } current_cache;

static void attachments_add(fh_thread *t) {
  pthread_mutex_lock(&attachments_lock);
  atomic_fetch_add_explicit(&attachments_epoch, 1, memory_order_release);
  t->owner_head = &my_attachments;
  t->owner_next = my_attachments;
  my_attachments = t;
  pthread_mutex_unlock(&attachments_lock);
}

static void attachments_remove(fh_thread *t) {
  pthread_mutex_lock(&attachments_lock);
  atomic_fetch_add_explicit(&attachments_epoch, 1, memory_order_release);
  for (fh_thread **pp = t->owner_head; pp && *pp; pp = &(*pp)->owner_next)
    if (*pp == t) {
      *pp = t->owner_next;
      break;
    }
  pthread_mutex_unlock(&attachments_lock);
}

fh_thread *fh_thread_current(fh_heap *h) {
  if (!h) return NULL;
  uint64_t e = atomic_load_explicit(&attachments_epoch, memory_order_acquire);
  if (current_cache.heap == h && current_cache.epoch == e) return current_cache.t;
  fh_thread *found = NULL;
  pthread_mutex_lock(&attachments_lock);
  e = atomic_load_explicit(&attachments_epoch, memory_order_relaxed);
  for (fh_thread *t = my_attachments; t; t = t->owner_next)
    if (t->heap == h) {
      found = t;
      break;
    }
  pthread_mutex_unlock(&attachments_lock);
  current_cache.heap = h;
  current_cache.t = found;
  current_cache.epoch = e;
  return found;
}

void fh_thread_set_user(fh_thread *t, void *user) {
  if (!t) { fh_error_set("fh_thread_set_user: thread is NULL"); return; }
  t->fast.user = user;
}

void threads_attachments_lock(void) { pthread_mutex_lock(&attachments_lock); }
void threads_attachments_unlock(void) { pthread_mutex_unlock(&attachments_lock); }

unsigned threads_block_caller(fh_thread **out, unsigned max) {
  fh_thread *mine[THREADS_MAX_BLOCKED];
  unsigned n = 0, blocked = 0;
  if (max > THREADS_MAX_BLOCKED) max = THREADS_MAX_BLOCKED;
  pthread_mutex_lock(&attachments_lock);
  for (fh_thread *t = my_attachments; t && n < max; t = t->owner_next) mine[n++] = t;
  pthread_mutex_unlock(&attachments_lock);
  /* Our own entries: only this thread detaches them (or a heap destroy,
   * which needs them detached first), so they stay valid here. */
  for (unsigned i = 0; i < n; i++) {
    fh_thread *t = mine[i];
    fh_heap *h = t->heap;
    conservative_save(t);
    pthread_mutex_lock(&h->world_lock);
    if (t->state == THREAD_RUNNING) {
      t->state = THREAD_BLOCKED;
      pthread_cond_broadcast(&h->parked_cv);
      out[blocked++] = t;
    }
    pthread_mutex_unlock(&h->world_lock);
  }
  return blocked;
}

void threads_unblock(fh_thread **ts, unsigned n) {
  for (unsigned i = n; i-- > 0;) set_state(ts[i], THREAD_RUNNING);
}

/* A thread that exits without fh_thread_detach would stay RUNNING in the
 * heap's list for ever, and the next collection would wait for it to park:
 * a key destructor, run by the exiting thread itself, detaches whatever it
 * left attached and says so (the main thread's exit() runs no destructors,
 * but then the process ends).  Best effort: without the key (its creation
 * or pthread_setspecific failed) nothing is detected. */
static pthread_key_t exit_key;
static int exit_key_ok;

static void exit_detach(void *unused) {
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&attachments_lock);
    fh_thread *t = my_attachments;
    pthread_mutex_unlock(&attachments_lock);
    if (!t) break;
    fprintf(stderr, "faultheap: a thread exited without fh_thread_detach(%p); detached it now\n",
            (void *)t);
    fh_thread_detach(t);
  }
}

static void exit_key_make(void) { exit_key_ok = pthread_key_create(&exit_key, exit_detach) == 0; }

static void exit_key_arm(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, exit_key_make);
  if (exit_key_ok && !pthread_getspecific(exit_key)) pthread_setspecific(exit_key, &exit_key_ok);
}

fh_thread *fh_thread_attach(fh_heap *h) { return fh_thread_attach_stack(h, NULL); }

fh_thread *fh_thread_attach_stack(fh_heap *h, void *stack_base) {
  if (!h) { fh_error_set("fh_thread_attach: heap is NULL"); return NULL; }
  cons_stack *cons;
  if (conservative_stack_new(h, (uintptr_t)stack_base, &cons) < 0) return NULL;
  void ***roots = malloc(ROOTS_INITIAL * sizeof *roots);
  /* gc_lock keeps the list still while a collection walks it; a thread
   * that is not yet attached cannot hold up a collection by waiting here.
   * It also guards the tombstones, the oldest of which is reused. */
  pthread_mutex_lock(&h->gc_lock);
  fh_thread *t = NULL;
  if (roots) {
    fh_thread **pp = &h->tombstones;
    while (*pp && (*pp)->tomb_next) pp = &(*pp)->tomb_next;
    if ((t = *pp)) {
      *pp = NULL;
      memset(t, 0, sizeof *t);
    } else {
      t = calloc(1, sizeof *t);
    }
  }
  if (!t) {
    pthread_mutex_unlock(&h->gc_lock);
    free(roots);
    free(cons);
    fh_error_set("fh_thread_attach: out of memory");
    return NULL;
  }
  t->heap = h;
  t->cons = cons;
  t->magic = THREAD_LIVE;
  t->owner = pthread_self();
  thread_route_alloc(t);
  /* Concurrent marking runs: allocate black (h->cm_black changes only in
   * pauses, under gc_lock, which we hold). */
  t->ms_black = atomic_load_explicit(&h->cm_black, memory_order_relaxed);
  t->fast.heap_lo = h->resv_begin;
  /* verify=1: an empty span sends every fh_write_ref to the slow path,
   * which checks the object, the slot and the value (heap/barrier.c). */
  t->fast.heap_span = h->opt.verify || t->ms_black ? 0 : h->resv_size;
  t->fast.cards = (_Atomic uint8_t *)h->cards;
  t->fast.roots_base = t->fast.roots_top = roots;
  t->fast.roots_limit = roots + ROOTS_INITIAL;
  t->roots_cap = ROOTS_INITIAL;
  t->state = THREAD_RUNNING;
  atomic_store_explicit(&t->fast.safepoint_requested, thread_poll_rest(h), memory_order_relaxed);
  /* world_lock too (gc_lock -> world_lock, the usual order): readers that
   * walk the list under world_lock alone (hspace_trigger.c: others_running,
   * fork.c: caller_thread) see a fixed list, and the new thread's fields
   * initialised. */
  pthread_mutex_lock(&h->world_lock);
  cds_list_add_tail(&t->link, &h->threads);
  h->nthreads++; /* guarded like the list: fh_dump reads it under world_lock */
  /* Under world_lock, as the registration of the type sets it in every
   * listed thread: neither can miss the other. */
  atomic_store_explicit(&t->fast.eph_type, ephemeron_fast_id(h), memory_order_relaxed);
  pthread_mutex_unlock(&h->world_lock);
  pthread_mutex_unlock(&h->gc_lock);
  attachments_add(t);
  exit_key_arm();
  return t;
}

void fh_thread_detach(fh_thread *t) {
  if (thread_check(t, "fh_thread_detach") < 0) return;
  fh_heap *h = t->heap;
  attachments_remove(t);
  unsigned open = 0;
  if (t->critical) {
    /* Sections left open would hold every collector off for ever. */
    pthread_mutex_lock(&h->world_lock);
    open = t->critical;
    h->critical -= open;
    t->critical = 0;
    if (h->critical == 0) pthread_cond_broadcast(&h->critical_cv);
    pthread_mutex_unlock(&h->world_lock);
  }
  conservative_save(t);
  set_state(t, THREAD_BLOCKED); /* a collection may run while we wait for the lock */
  pthread_mutex_lock(&h->gc_lock);
  pthread_mutex_lock(&h->world_lock); /* readers hold one of the two locks */
  cds_list_del(&t->link);
  h->nthreads--;
  pthread_mutex_unlock(&h->world_lock);
  malloc_heap_thread_detach(t);
  /* Its black bytes still count toward the marking's live size, and its
   * logged references are marked. */
  if (h->cm) {
    h->cm->black_detached += t->cm_black_bytes;
    cmark_satb_flush(h, h->cm, t);
  }
  t->cm_black_bytes = 0;
  t->ms_black = 0;
  /* Off the list under both locks: nobody can still be looking at it.  The
   * handle stays as a tombstone whose fast fields send every inline call
   * to a slow path, where thread_check reports it. */
  free(t->fast.roots_base);
  t->fast.roots_base = t->fast.roots_top = t->fast.roots_limit = NULL;
  pins_thread_drop(t);
  free(t->cons);
  t->cons = NULL;
  t->fast.tlab_cursor = t->fast.tlab_limit = 0;
  t->fast.heap_span = 0;
  atomic_store(&t->fast.safepoint_requested, 1);
  atomic_store(&t->fast.eph_type, FH__NO_EPHEMERONS);
  t->magic = THREAD_DETACHED;
  thread_route_alloc(t);
  t->tomb_next = h->tombstones;
  h->tombstones = t;
  pthread_mutex_unlock(&h->gc_lock);
  if (open)
    fh_error_set("fh_thread_detach: the thread still held %u critical sections; they were closed",
                 open);
}

void threads_free_tombstones(fh_heap *h) {
  while (h->tombstones) {
    fh_thread *t = h->tombstones;
    h->tombstones = t->tomb_next;
    free(t);
  }
}

void fh_push_root_slow(fh_thread *t, void **slot) {
  if (thread_check(t, "fh_push_root") < 0) return;
  if (!slot) {
    fh_error_set("fh_push_root: slot is NULL");
    return;
  }
  size_t n = (size_t)(t->fast.roots_top - t->fast.roots_base);
  size_t cap = t->roots_cap * 2;
  void ***grown = realloc(t->fast.roots_base, cap * sizeof *grown);
  if (!grown) {
    /* The embedder has no error return here; the slot is not lost silently:
     * the error says so, and the stack keeps its old contents. */
    fh_error_set("fh_push_root: out of memory growing the root stack beyond %zu slots", n);
    return;
  }
  t->fast.roots_base = grown;
  t->fast.roots_top = grown + n;
  t->fast.roots_limit = grown + cap;
  t->roots_cap = cap;
  *t->fast.roots_top++ = slot;
}

void fh_push_roots_slow(fh_thread *t, void **const *slots, size_t n) {
  if (!t) { fh_error_set("fh_push_roots: thread is NULL"); return; }
  if (n == 0) return;
  if (!slots) { fh_error_set("fh_push_roots: slots is NULL (n = %zu)", n); return; }
  for (size_t i = 0; i < n; i++)
    if (!slots[i]) {
      fh_error_set("fh_push_roots: slot %zu of %zu is NULL (nothing pushed)", i, n);
      return;
    }
  size_t depth = (size_t)(t->fast.roots_top - t->fast.roots_base);
  size_t cap = t->roots_cap;
  while (cap - depth < n) {
    if (cap > SIZE_MAX / 2 / sizeof(void **)) {
      cap = 0;
      break;
    }
    cap *= 2;
  }
  if (cap != t->roots_cap) {
    void ***grown = cap ? realloc(t->fast.roots_base, cap * sizeof *grown) : NULL;
    if (!grown) {
      fh_error_set("fh_push_roots: out of memory growing the root stack from %zu to %zu+ "
                   "slots (nothing pushed)", depth, n);
      return;
    }
    t->fast.roots_base = grown;
    t->fast.roots_top = grown + depth;
    t->fast.roots_limit = grown + cap;
    t->roots_cap = cap;
  }
  for (size_t i = 0; i < n; i++) t->fast.roots_top[i] = slots[i];
  t->fast.roots_top += n;
}

void fh_root_reset_slow(fh_thread *t, size_t mark) {
  if (!t) { fh_error_set("fh_root_reset: thread is NULL"); return; }
  fh_error_set("fh_root_reset: mark %zu is above the root stack's depth %zu (a stale mark, or "
               "another thread's?): nothing changed",
               mark, (size_t)(t->fast.roots_top - t->fast.roots_base));
}

void fh_pop_roots_slow(fh_thread *t, size_t n) {
  if (thread_check(t, "fh_pop_roots") < 0) return;
  size_t have = (size_t)(t->fast.roots_top - t->fast.roots_base);
  fh_error_set("fh_pop_roots: popping %zu roots but only %zu are pushed", n, have);
  t->fast.roots_top = t->fast.roots_base;
}
