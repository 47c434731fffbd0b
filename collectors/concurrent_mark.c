/* Concurrent marking: the phase driver (see collectors/concurrent_mark.h
 * and docs/architecture.md, "Concurrent marking"). */
#include "collectors/concurrent_mark.h"

#include <stdlib.h>
#include <time.h>

#include "collectors/collector.h"
#include "heap/barrier.h"
#include "heap/ephemeron.h"
#include "heap/finalizer.h"
#include "heap/gc_events.h"

/* Pre-cleaning rounds after the first drain; a round that finds at most
 * CMARK_FEW_CARDS dirty cards ends them (the remark rescans about as
 * many). */
#define CMARK_ROUNDS 4
#define CMARK_FEW_CARDS 64
/* How long the marker sleeps between tries for gc_lock to run the remark. */
#define CMARK_LOCK_RETRY_NS 50000

/* The cycle whose marker this thread is (its remark runs on it). */
static _Thread_local cmark *this_marker;

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* While marking runs every thread's barrier span is 0 (as under
 * verify=1): each fh_write_ref and ephemeron accessor takes its slow path,
 * which logs the reference it overwrites or reads (SATB).  The inline
 * paths gain no instruction. */
void cmark_set_black(fh_heap *h, int on) {
  atomic_store_explicit(&h->cm_black, on, memory_order_relaxed);
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link) {
    t->ms_black = on;
    t->fast.heap_span = on || h->opt.verify ? 0 : h->resv_size;
    atomic_store_explicit(&t->fast.eph_type, ephemeron_fast_id(h), memory_order_relaxed);
  }
}

/* ---- the SATB log ---- */

static void hand_over(cmark *cm, void **buf, int *failed) {
  pthread_mutex_lock(&cm->satb_lock);
  if (cm->nfull == cm->capfull) {
    size_t cap = cm->capfull ? cm->capfull * 2 : 64;
    void ***p = realloc(cm->full, cap * sizeof *p);
    if (!p) {
      pthread_mutex_unlock(&cm->satb_lock);
      *failed = 1;
      return;
    }
    cm->full = p;
    cm->capfull = cap;
  }
  cm->full[cm->nfull++] = buf;
  pthread_mutex_unlock(&cm->satb_lock);
}

void cmark_satb_log(fh_thread *t, void *old) {
  fh_heap *h = t->heap;
  uintptr_t a = (uintptr_t)slot_object(h->tags, old);
  if (!a || a - h->resv_begin >= h->resv_size) return; /* NULL, immediate, native */
  cmark *cm = h->cm; /* set: marking runs (t->ms_black), and it cannot end meanwhile */
  if (!t->satb) {
    t->satb = malloc(CMARK_SATB_ENTRIES * sizeof(void *));
    t->satb_n = 0;
    if (!t->satb) {
      cm->satb_failed = 1; /* the remark marks from scratch */
      return;
    }
  }
  t->satb[t->satb_n++] = (void *)a;
  if (t->satb_n == CMARK_SATB_ENTRIES) {
    int failed = 0;
    hand_over(cm, t->satb, &failed);
    if (failed) {
      cm->satb_failed = 1;
      t->satb_n = 0; /* keep the buffer; the log is incomplete anyway */
      return;
    }
    t->satb = NULL;
    t->satb_n = 0;
  }
}

void cmark_satb_flush(fh_heap *h, cmark *cm, fh_thread *t) {
  (void)h;
  if (t->satb && t->satb_n) {
    /* Handed-over buffers are read whole: the rest is NULL. */
    for (unsigned i = t->satb_n; i < CMARK_SATB_ENTRIES; i++) t->satb[i] = NULL;
    int failed = 0;
    hand_over(cm, t->satb, &failed);
    if (failed) {
      cm->satb_failed = 1;
      free(t->satb);
    }
  } else {
    free(t->satb);
  }
  t->satb = NULL;
  t->satb_n = 0;
}

/* The marker's work in paced bursts (heap/gc_pace.h). */
static void drain_work(void *arg, gc_budget *b) {
  cmark *cm = arg;
  cm->ops->drain(cm->tracer, b);
}

static void between_work(void *arg, gc_budget *b) {
  cmark *cm = arg;
  cm->ops->between(cm->tracer, b);
}

static void paced_drain(cmark *cm) { gc_pace_run(cm->h, &cm->stop, drain_work, cm); }

static void mark_buffer(cmark *cm, void **buf, size_t n) {
  for (size_t i = 0; i < n; i++) cm->ops->mark(cm->tracer, &buf[i]);
  cm->logged += n;
}

void cmark_satb_drain(cmark *cm, int threads_too) {
  fh_heap *h = cm->h;
  if (threads_too) {
    fh_thread *t;
    cds_list_for_each_entry(t, &h->threads, link) {
      if (t->satb) mark_buffer(cm, t->satb, t->satb_n);
      free(t->satb);
      t->satb = NULL;
      t->satb_n = 0;
    }
  }
  for (;;) {
    pthread_mutex_lock(&cm->satb_lock);
    void ***full = cm->full;
    size_t n = cm->nfull;
    cm->full = NULL;
    cm->nfull = cm->capfull = 0;
    pthread_mutex_unlock(&cm->satb_lock);
    if (!n) {
      free(full);
      return;
    }
    for (size_t i = 0; i < n; i++) {
      mark_buffer(cm, full[i], CMARK_SATB_ENTRIES);
      free(full[i]);
    }
    free(full);
    if (!threads_too) paced_drain(cm);
  }
}

void cmark_satb_forget(fh_heap *h, cmark *cm) {
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link) {
    free(t->satb);
    t->satb = NULL;
    t->satb_n = 0;
  }
  for (size_t i = 0; i < cm->nfull; i++) free(cm->full[i]);
  free(cm->full);
  cm->full = NULL;
  cm->nfull = cm->capfull = 0;
}

size_t cmark_black_bytes(fh_heap *h, cmark *cm) {
  size_t n = cm->black_detached;
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link) {
    n += t->cm_black_bytes;
    t->cm_black_bytes = 0;
  }
  return n;
}

static uintptr_t range_hi(cmark *cm, unsigned i) {
  /* The main malloc space's frontier grows while mutators allocate. */
  return cm->hi[i] ? cm->hi[i] : malloc_space_frontier(heap_main_malloc(cm->h));
}

size_t cmark_preclean(cmark *cm) {
  fh_heap *h = cm->h;
  size_t dirty = 0;
  for (unsigned r = 0; r < cm->nranges; r++) {
    uintptr_t lo = cm->lo[r], hi = range_hi(cm, r);
    if (hi <= lo) continue;
    _Atomic uint8_t *c = (_Atomic uint8_t *)card_for(h, lo);
    _Atomic uint8_t *e = (_Atomic uint8_t *)card_for(h, hi - 1) + 1;
    while (c < e) {
      /* Eight clean cards at a time (the table is page-aligned). */
      if (!((uintptr_t)c & 7) && c + 8 <= e &&
          !__atomic_load_n((const uint64_t *)(void *)c, __ATOMIC_RELAXED)) {
        c += 8;
        continue;
      }
      /* Acquire: the mutator dirtied the card (release) after its store
       * into the slot; having seen the card dirty, the rescan below sees
       * that store.  A card dirtied after the exchange stays dirty for the
       * next round or the remark. */
      if (atomic_load_explicit(c, memory_order_relaxed) &&
          atomic_exchange_explicit(c, 0, memory_order_acquire)) {
        uintptr_t a = h->resv_begin + ((uintptr_t)(c - (_Atomic uint8_t *)h->cards) << FH__CARD_SHIFT);
        cm->ops->rescan_card(cm->tracer, a, a + FH_CARD_BYTES);
        dirty++;
      }
      c++;
    }
  }
  cm->precleaned += dirty;
  return dirty;
}

static void *marker_main(void *arg) {
  cmark *cm = arg;
  fh_heap *h = cm->h;
  this_marker = cm;
  uint64_t t0 = heap_now_ns(), c0 = thread_cpu_ns();
  paced_drain(cm);
  /* The references mutators logged meanwhile (full buffers), until none
   * is waiting: the rest is the remark's (a buffer per thread at most,
   * and what fills up before the world stops). */
  cmark_satb_drain(cm, 0);
  /* Card pre-cleaning, for a collector that tracks its stores by cards
   * (none with SATB: nranges 0). */
  for (unsigned r = 0; r < CMARK_ROUNDS && cm->nranges && !atomic_load(&cm->stop); r++) {
    size_t dirty = cmark_preclean(cm);
    cm->rounds++;
    paced_drain(cm);
    if (dirty <= CMARK_FEW_CARDS) break;
  }
  cm->marker_ns = heap_now_ns() - t0;
  cm->marker_cpu_ns = thread_cpu_ns() - c0;
  atomic_store(&cm->marker_done, 1);
  /* The remark pause, unless a collection requested meanwhile runs it (it
   * holds gc_lock, sets stop and joins this task: never wait for gc_lock).
   * A remark that ended the marking only (ops->remark) leaves the cycle
   * running: this thread does its between() work and then asks for the
   * pause that finishes it, the same way. */
  while (!atomic_load(&cm->stop)) {
    if (pthread_mutex_trylock(&h->gc_lock) == 0) {
      gc_watch w;
      int rc = h->cm == cm && !atomic_load(&cm->stop)
                   ? gc_collect_locked(h, NULL, cm->collector, GC_CAUSE_REMARK, 0, &w)
                   : 1;
      /* Read under gc_lock: cm is freed once the cycle ended, and a
       * cycle still running is not freed before whoever ends it has
       * joined this task. */
      int goes_on = rc == 0 && h->cm == cm && cm->remarked;
      pthread_mutex_unlock(&h->gc_lock);
      if (rc == 0 || rc == -1) {
        gc_events_end(h, &w);
        finalizer_notify_if_filled(h);
      }
      if (!goes_on) break;
      uint64_t b0 = heap_now_ns(), bc0 = thread_cpu_ns();
      gc_pace_run(h, &cm->stop, between_work, cm);
      cm->marker_ns += heap_now_ns() - b0;
      cm->marker_cpu_ns += thread_cpu_ns() - bc0;
      atomic_store(&cm->marker_done, 1);
      continue;
    }
    struct timespec ts = {0, CMARK_LOCK_RETRY_NS};
    nanosleep(&ts, NULL);
  }
  this_marker = NULL;
  return NULL;
}

int cmark_begin(fh_heap *h, cmark *cm) {
  cmark_join(h);
  cm->h = h;
  cm->begin_ns = heap_now_ns();
  pthread_mutex_init(&cm->satb_lock, NULL);
  cmark_set_black(h, 1);
  h->cm = cm;
  h->cm_cycles++;
  cm->task_pending = !h->cm_manual;
  return 0;
}

void cmark_start_task(fh_heap *h) {
  cmark *cm = h->cm;
  if (!cm || !cm->task_pending) return;
  cm->task_pending = 0;
  if (gc_pool_start(&h->pool, &h->cm_task, "fh-mark", marker_main, cm) == 0) {
    h->cm_task_live = 1;
    return;
  }
  /* No thread: the next collection (the trigger, an allocation failure,
   * any) finishes the marking in its pause. */
  atomic_store(&cm->marker_done, 1);
}

int cmark_keep_holes(fh_heap *h, struct bump_hole *holes, size_t n, size_t bytes) {
  cmark *cm = h->cm;
  return cm && cm->ops->keep_holes && cm->ops->keep_holes(h, cm, holes, n, bytes);
}

void cmark_join(fh_heap *h) {
  if (!h->cm_task_live) return;
  gc_pool_join(&h->pool, h->cm_task);
  h->cm_task_live = 0;
}

/* Stop the marker and wait for it (not when called on it: its remark). */
static cmark *stop_marker(fh_heap *h) {
  cmark *cm = h->cm;
  /* Hurried: a marker sleeping between two bursts wakes to see stop. */
  gc_pace_hurry_begin(h);
  atomic_store(&cm->stop, 1);
  if (this_marker != cm) cmark_join(h);
  gc_pace_hurry_end(h);
  if (!atomic_load(&cm->marker_done) && !h->cm_manual) h->cm_finished_in_pause++;
  h->cm_marker_ns += cm->marker_ns;
  h->cm_marker_cpu_ns += cm->marker_cpu_ns;
  h->cm_cards_precleaned += cm->precleaned;
  cmark_set_black(h, 0);
  h->cm = NULL;
  h->cm_cycles_done++;
  return cm;
}

int cmark_complete(fh_heap *h, gc_cause cause) {
  cmark *cm = h->cm;
  if (cm->ops->remark && !cm->remarked && cause == GC_CAUSE_REMARK &&
      (this_marker == cm || (h->cm_manual && h->cm_manual_split))) {
    /* The marker's own remark (or a test's, which then runs between()
     * with cmark_test_between): end the marking only, when the collector
     * has work to do before its last pause (concurrent_mark.h: 3'). */
    int split = cm->ops->remark(h, cm);
    if (split > 0) {
      cm->remarked = 1;
      h->cm_split_remarks++;
      /* Marking is over: no barrier, no black allocation (the spaces
       * that sweep were swept in this pause; new objects there need no
       * mark), and collections that wait for the marker wait for
       * between(). */
      cmark_set_black(h, 0);
      atomic_store(&cm->marker_done, 0);
      return 0;
    }
    if (split < 0) { /* the op's error stands; nothing of the cycle is kept */
      cm = stop_marker(h);
      h->cm_abandoned++;
      cm->ops->abandon(h, cm);
      return -1;
    }
  }
  int remarked = cm->remarked;
  cm = stop_marker(h);
  /* The pause that ends a split cycle flips (an explicit collection
   * abandons it and collects: a full pause). */
  h->pause_is_flip = remarked && cause != GC_CAUSE_EXPLICIT;
  return cm->ops->finish(h, cm, cause);
}

void cmark_abandon(fh_heap *h) {
  if (!h->cm) {
    cmark_join(h);
    return;
  }
  cmark *cm = stop_marker(h);
  h->cm_abandoned++;
  cm->ops->abandon(h, cm);
}

void cmark_wait_marker(fh_heap *h) {
  cmark *cm = h->cm;
  if (!cm || h->cm_manual) return;
  gc_pace_hurry_begin(h); /* the marker runs unpaced while we wait */
  while (!atomic_load(&cm->marker_done) && !atomic_load(&cm->stop)) {
    struct timespec ts = {0, CMARK_LOCK_RETRY_NS};
    nanosleep(&ts, NULL);
  }
  gc_pace_hurry_end(h);
}

void cmark_test_between(fh_heap *h) {
  cmark *cm = h->cm;
  if (!cm || !cm->remarked) return;
  gc_budget b = gc_budget_unpaced(NULL);
  cm->ops->between(cm->tracer, &b);
  atomic_store(&cm->marker_done, 1);
}

size_t cmark_test_step(fh_heap *h, size_t n) {
  cmark *cm = h->cm;
  return cm ? cm->ops->step(cm->tracer, n) : 0;
}
