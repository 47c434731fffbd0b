/* The background trigger of homogeneous compaction: fh_set_background(h, 1)
 * on a mark-sweep heap (background_collector=hspace_compact) compacts the
 * main malloc space on a heap thread when it is fragmented enough, as ART
 * does on its heap task daemon when the process leaves the foreground.
 *
 * Fragmentation = free bytes inside the space's resident pages, relative to
 * its live bytes: (resident - used) * 100 / used > hspace_fragmentation_pct.
 *
 * The compaction needs an attached thread to stop the world, so the request
 * attaches one on the caller's behalf and hands it to a new pthread; that
 * way the heap counts it from the start, and fh_heap_destroy (which waits
 * for it) never races with its attach.  Like any collection it waits for
 * every mutator to reach a safepoint or a blocking region. */
#include "collectors/collector.h"

static void *bg_main(void *arg) {
  fh_thread *t = arg;
  fh_heap *h = t->heap;
  /* A refused or failed compaction leaves the heap as it was; nobody waits
   * for this thread's error text. */
  (void)gc_run(t, FH_COLLECT_HSPACE_COMPACT, GC_CAUSE_BACKGROUND, h->collections);
  fh_thread_detach(t);
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
  fh_thread *t = fh_thread_attach(h);
  atomic_store(&h->hspace_bg_done, 0);
  if (t) {
    if (pthread_create(&h->hspace_bg_thread, NULL, bg_main, t) == 0)
      h->hspace_bg_started = 1;
    else
      fh_thread_detach(t);
  }
  pthread_mutex_unlock(&h->hspace_bg_lock);
}

void hspace_background_join(fh_heap *h) {
  pthread_mutex_lock(&h->hspace_bg_lock);
  if (h->hspace_bg_started) {
    /* While other threads are attached the job may be waiting for them to
     * reach a safepoint: joining here would deadlock a misused
     * fh_heap_destroy, which then refuses (threads still attached). */
    if (atomic_load(&h->hspace_bg_done) || h->nthreads <= 1) {
      pthread_join(h->hspace_bg_thread, NULL);
      h->hspace_bg_started = 0;
    }
  }
  pthread_mutex_unlock(&h->hspace_bg_lock);
}
