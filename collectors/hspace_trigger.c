/* The background trigger of homogeneous compaction: fh_set_background(h, 1)
 * on a mark-sweep heap (background_collector=hspace_compact) compacts the
 * main malloc space on a heap thread when it is fragmented enough, as ART
 * does on its heap task daemon when the process leaves the foreground.
 *
 * Fragmentation = free bytes inside the space's resident pages, relative to
 * its live bytes: (resident - used) * 100 / used > hspace_fragmentation_pct,
 * with at least 1 MiB free.
 *
 * The compaction needs an attached thread to stop the world.  The new
 * pthread attaches itself: the caller of fh_set_background may be a running
 * mutator, and attaching on its behalf would take gc_lock while a collector
 * that holds it waits for that very mutator to park.  Like any collection,
 * the compaction waits for every mutator to reach a safepoint or a blocking
 * region. */
#include <string.h>
#include <unistd.h>

#include "collectors/collector.h"
#include "heap/sys.h"

static void *bg_main(void *arg) {
  fh_heap *h = arg;
  fh_thread *t = fh_thread_attach(h);
  if (t) {
    atomic_store(&h->hspace_bg_mutator, t);
    /* A refused or failed compaction leaves the heap as it was; nobody
     * waits for this thread's error text. */
    (void)gc_run(t, FH_COLLECT_HSPACE_COMPACT, GC_CAUSE_BACKGROUND, h->collections);
    atomic_store(&h->hspace_bg_mutator, NULL);
    fh_thread_detach(t);
  }
  atomic_store(&h->hspace_bg_done, 1);
  return NULL;
}

/* Free bytes inside the main space's resident pages, in percent of its
 * live bytes. */
static double fragmentation_pct(fh_heap *h) {
  malloc_space *m = heap_main_malloc(h);
  size_t used = atomic_load(&m->used), resident = malloc_space_resident(m);
  if (resident <= used || !used) return 0;
  return (double)(resident - used) * 100.0 / (double)used;
}

/* Past the threshold, and by at least 1 MiB: the arena's own metadata
 * (~84 KiB) would otherwise make every small space look fragmented. */
static int fragmented(fh_heap *h) {
  malloc_space *m = heap_main_malloc(h);
  size_t used = atomic_load(&m->used), resident = malloc_space_resident(m);
  return resident > used + ((size_t)1 << 20) &&
         fragmentation_pct(h) > (double)h->opt.hspace_fragmentation_pct;
}

void hspace_dump(fh_heap *h, FILE *out) {
  if (!h->has_malloc_spaces) return;
  double frag = fragmentation_pct(h);
  pthread_mutex_lock(&h->stats_lock);
  uint64_t last = h->hspace_last_ns;
  size_t failed_live = h->hspace_failed_live;
  uint64_t pinned_skips = h->hspace_pinned_skips;
  char why[sizeof h->hspace_failed_why];
  memcpy(why, h->hspace_failed_why, sizeof why);
  pthread_mutex_unlock(&h->stats_lock);
  fprintf(out, "  homogeneous compaction: fragmentation %.0f%% of live (threshold %u%%), ", frag,
          h->opt.hspace_fragmentation_pct);
  if (last)
    fprintf(out, "last one %.0f ms ago", (double)(heap_now_ns() - last) / 1e6);
  else
    fprintf(out, "none yet");
  if (failed_live)
    fprintf(out, "; the last attempt failed (not retried at %zu live bytes): %s", failed_live, why);
  if (pinned_skips)
    fprintf(out, "; %llu ran as mark-sweeps (pinned objects in the main space)",
            (unsigned long long)pinned_skips);
  fputc('\n', out);
}

void hspace_background_request(fh_heap *h) {
  if (!h->has_malloc_spaces || h->opt.background_collector != FH_HSPACE_COMPACT) return;
  if (!fragmented(h)) return;
  if (h->hspace_last_ns &&
      (heap_now_ns() - h->hspace_last_ns) / 1000000u < h->opt.hspace_min_interval_ms)
    return;
  /* The caller may be a running mutator, which must never wait for this
   * lock: its holder may be joining the job (hspace_background_join, from
   * a fork prepare handler), and the job may be waiting for a collection
   * that waits for this mutator to park.  A busy lock means the job is
   * being started or joined already: the request, a hint, is dropped. */
  if (pthread_mutex_trylock(&h->hspace_bg_lock) != 0) return;
  if (h->hspace_bg_started) {
    if (!atomic_load(&h->hspace_bg_done)) { /* one is running already */
      pthread_mutex_unlock(&h->hspace_bg_lock);
      return;
    }
    gc_pool_join(&h->pool, h->hspace_bg_thread);
    h->hspace_bg_started = 0;
  }
  atomic_store(&h->hspace_bg_done, 0);
  /* A job exists (heap/fork.c's child handler clears this with the rest). */
  atomic_store(&h->hspace_bg_attached, 1);
  /* A failed start is harmless by design: background compaction is only
   * an optimisation, and the next fh_set_background tries again. */
  if (gc_pool_start(&h->pool, &h->hspace_bg_thread, "fh-hs-bg", bg_main, h) == 0)
    h->hspace_bg_started = 1;
  else
    atomic_store(&h->hspace_bg_attached, 0);
  pthread_mutex_unlock(&h->hspace_bg_lock);
}

/* Attached threads other than the job's own that are running: only those
 * can hold the job up (a blocked or parked thread counts as stopped). */
static int others_running(fh_heap *h) {
  fh_thread *job = atomic_load(&h->hspace_bg_mutator), *t;
  int n = 0;
  pthread_mutex_lock(&h->world_lock); /* keeps the list still too */
  cds_list_for_each_entry(t, &h->threads, link) n += t != job && t->state == THREAD_RUNNING;
  pthread_mutex_unlock(&h->world_lock);
  return n;
}

void hspace_background_join(fh_heap *h) {
  pthread_mutex_lock(&h->hspace_bg_lock);
  if (h->hspace_bg_started) {
    /* When no other thread is running, the job cannot be waiting for
     * anyone: join, however long its compaction takes (fh_prefork and the
     * fork handlers call this with their own thread blocked).  A running
     * thread may be our own caller (fh_heap_destroy with mutators still
     * attached, a misuse it refuses), which the job could wait for while
     * we wait for the job: poll for a while, then give up. */
    for (int tries = 0; tries < 1000; tries++) {
      if (atomic_load(&h->hspace_bg_done) || others_running(h) == 0) {
        gc_pool_join(&h->pool, h->hspace_bg_thread);
        h->hspace_bg_started = 0;
        break;
      }
      usleep(1000);
    }
  }
  if (!h->hspace_bg_started) atomic_store(&h->hspace_bg_attached, 0);
  pthread_mutex_unlock(&h->hspace_bg_lock);
}
