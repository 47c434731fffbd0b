/* The background trigger of homogeneous compaction: fh_set_background(h, 1)
 * on a mark-sweep heap (background_collector=hspace_compact) compacts the
 * main malloc space on a heap thread when it is fragmented enough, as ART
 * does on its heap task daemon when the process leaves the foreground.
 *
 * Fragmentation = free bytes inside the space's resident pages, relative to
 * its live bytes: (resident - used) * 100 / used > hspace_fragmentation_pct.
 *
 * The compaction needs an attached thread to stop the world.  The new
 * pthread attaches itself: the caller of fh_set_background may be a running
 * mutator, and attaching on its behalf would take gc_lock while a collector
 * that holds it waits for that very mutator to park.  Like any collection,
 * the compaction waits for every mutator to reach a safepoint or a blocking
 * region. */
#include <unistd.h>

#include "collectors/collector.h"

static void *bg_main(void *arg) {
  fh_heap *h = arg;
  fh_thread *t = fh_thread_attach(h);
  if (t) {
    /* A refused or failed compaction leaves the heap as it was; nobody
     * waits for this thread's error text. */
    (void)gc_run(t, FH_COLLECT_HSPACE_COMPACT, GC_CAUSE_BACKGROUND, h->collections);
    fh_thread_detach(t);
  }
  atomic_store(&h->hspace_bg_done, 1);
  return NULL;
}

static int fragmented(fh_heap *h) {
  malloc_space *m = heap_main_malloc(h);
  size_t used = atomic_load(&m->used), resident = malloc_space_resident(m);
  if (resident <= used) return 0;
  return (double)(resident - used) * 100.0 > (double)used * h->opt.hspace_fragmentation_pct;
}

void hspace_background_request(fh_heap *h) {
  if (!h->has_malloc_spaces || h->opt.background_collector != FH_HSPACE_COMPACT) return;
  if (!fragmented(h)) return;
  if (h->hspace_last_ns &&
      (heap_now_ns() - h->hspace_last_ns) / 1000000u < h->opt.hspace_min_interval_ms)
    return;
  pthread_mutex_lock(&h->hspace_bg_lock);
  if (h->hspace_bg_started) {
    if (!atomic_load(&h->hspace_bg_done)) { /* one is running already */
      pthread_mutex_unlock(&h->hspace_bg_lock);
      return;
    }
    pthread_join(h->hspace_bg_thread, NULL);
    h->hspace_bg_started = 0;
  }
  atomic_store(&h->hspace_bg_done, 0);
  /* Counted before it attaches, so fh_heap_destroy never mistakes it for a
   * mutator (see hspace_background_join). */
  atomic_store(&h->hspace_bg_attached, 1);
  if (pthread_create(&h->hspace_bg_thread, NULL, bg_main, h) == 0)
    h->hspace_bg_started = 1;
  else
    atomic_store(&h->hspace_bg_attached, 0);
  pthread_mutex_unlock(&h->hspace_bg_lock);
}

void hspace_background_join(fh_heap *h) {
  pthread_mutex_lock(&h->hspace_bg_lock);
  if (h->hspace_bg_started) {
    /* With no mutator attached the job cannot wait for anyone: join.  With
     * mutators attached (a misuse fh_heap_destroy refuses) it may be waiting
     * for them to park, and so would we: give up.  nthreads changes under
     * gc_lock, which the job itself may hold for its whole collection, so
     * it is read only when the lock is free; a mutator that is just
     * detaching may still be counted, and re-reading for a while settles
     * that. */
    for (int tries = 0; tries < 1000; tries++) {
      int others = 1;
      if (pthread_mutex_trylock(&h->gc_lock) == 0) {
        others = (int)h->nthreads - atomic_load(&h->hspace_bg_attached);
        pthread_mutex_unlock(&h->gc_lock);
      }
      if (atomic_load(&h->hspace_bg_done) || others <= 0) {
        pthread_join(h->hspace_bg_thread, NULL);
        h->hspace_bg_started = 0;
        break;
      }
      usleep(1000);
    }
  }
  atomic_store(&h->hspace_bg_attached, 0);
  pthread_mutex_unlock(&h->hspace_bg_lock);
}
