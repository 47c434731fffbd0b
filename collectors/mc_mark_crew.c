/* Parallel marking's crew (collectors/mc_marker.h): the helper markers'
 * threads and bitmaps, how many there are, and the merge of their
 * bitmaps into the shared ones when marking ends. */
#include <pthread.h>
#include <stdlib.h>

#include "collectors/mc_marker.h"
#include "heap/sys.h"

/* After marking: OR this marker's share of the word range of every
 * marker's bitmaps into the shared ones, in parallel with the others.
 * Marking is over for all of them (the pool said done, under its lock), so
 * no marker writes a bit any more. */
static void merge_share(marker *m, unsigned nmarkers) {
  size_t w0 = (fwd_marker_base(m->t) - m->t->begin) >> 9, words = fwd_used_words(m->t) - w0;
  fwd_merge_markers(m->t, nmarkers, w0 + words * m->index / nmarkers,
                    w0 + words * (m->index + 1) / nmarkers);
}


/* Merge this marker's share, then wait until every marker has merged its
 * own: until then others read this marker's bitmaps. */
void mc_merge_and_wait(marker *m, unsigned nmarkers) {
  merge_share(m, nmarkers);
  mark_pool *pool = m->pool;
  pthread_mutex_lock(&pool->lock);
  if (++pool->merged == pool->nthreads) pthread_cond_broadcast(&pool->cv);
  while (pool->merged < pool->nthreads) pthread_cond_wait(&pool->cv, &pool->lock);
  pthread_mutex_unlock(&pool->lock);
}

static void *marker_main(void *arg) {
  marker *m = arg;
  fwd_prepare_marker(m->t, m->index); /* while marker 0 starts from the roots */
  atomic_fetch_or_explicit(&m->pool->bitmaps_ready, 1u << m->index, memory_order_release);
  mc_marker_drain(m);
  mc_merge_and_wait(m, m->crew->nh + 1);
  fwd_release_marker(m->t, m->index);
  mark_stack_destroy(&m->stack); /* empty; its flags and ephs stay for marker 0 */
  return NULL;
}

/* How many markers: gc_threads (FH_MC_MARK_THREADS=N overrides it, for
 * measurements), at most FWD_MAX_MARKERS, and one for a space whose used
 * part is small (a helper thread and its bitmaps cost more than they save). */
#define PARALLEL_MARK_MIN_BYTES ((size_t)32 << 20)
unsigned mc_markers_wanted(const fh_heap *h, const fwd_tables *t) {
  unsigned n = h->opt.gc_threads;
  const char *e = getenv("FH_MC_MARK_THREADS");
  if (e && *e) n = (unsigned)strtoul(e, NULL, 10);
  else if (t->old_top - t->ylo < PARALLEL_MARK_MIN_BYTES) n = 1;
  /* A young cycle marks what survives its young generation, not its
   * range: one marker unless the last young cycle kept much (helpers cost
   * a thread start and bitmap traffic per cycle; binary-trees' 128 MiB
   * young generations mostly die). */
  else if (t->young && h->mc && mc_gen_last_young_live(&h->mc->gen) < PARALLEL_MARK_MIN_BYTES)
    n = 1;
  if (n < 1) n = 1;
  return n > FWD_MAX_MARKERS ? FWD_MAX_MARKERS : n;
}

/* Marker k's view of the bitmaps (k of n). */
void mc_marker_setup(marker *m, fh_heap *h, fwd_tables *t, unsigned k, unsigned n,
                     mark_pool *pool) {
  *m = (marker){.h = h, .tags = h->tags, .t = t, .index = k, .pool = pool};
  m->own_mark = k ? t->extra_mark[k - 1].words : t->mark.words;
  m->own_live = k ? &t->extra_live[k - 1] : &t->live;
  for (unsigned j = 0; j < n; j++)
    if (j == 0 && k != 0)
      m->other_mark[m->nothers++] = t->mark.words; /* faulted in before marking */
    else if (j != k)
      m->unseen |= 1u << j; /* look_for_others */
}

/* Start up to n - 1 helpers (all, or the first few when a thread or a
 * stack cannot be had).  NULL when none started.  The helpers that did
 * start are set up for all n, but read only the start bits of markers that
 * said their bitmaps are ready, which one that never started never does. */
mc_mark_crew *mc_crew_start(fh_heap *h, fwd_tables *t, unsigned n) {
  mc_mark_crew *crew = calloc(1, sizeof *crew);
  if (!crew) return NULL;
  if (mark_stack_init(&crew->pool.items) < 0) {
    free(crew);
    return NULL;
  }
  mark_pool *pool = &crew->pool;
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->cv, NULL);
  pool->nthreads = 1;
  crew->threads = &h->pool;
  atomic_store(&pool->bitmaps_ready, 1u); /* marker 0's */
  for (; crew->nh + 1 < n && crew->nh < FWD_MAX_MARKERS - 1; crew->nh++) {
    marker *hm = &crew->helpers[crew->nh];
    mc_marker_setup(hm, h, t, crew->nh + 1, n, pool);
    hm->crew = crew;
    if (mark_stack_init(&hm->stack) < 0) break;
    /* Under the lock: helpers already started read it when idle. */
    pthread_mutex_lock(&pool->lock);
    pool->nthreads++; /* counted before it can go idle */
    pthread_mutex_unlock(&pool->lock);
    if (gc_pool_start(&h->pool, &crew->tasks[crew->nh], "fh-mark", marker_main, hm) != 0) {
      pthread_mutex_lock(&pool->lock);
      pool->nthreads--;
      pthread_mutex_unlock(&pool->lock);
      mark_stack_destroy(&hm->stack);
      break;
    }
  }
  if (crew->nh) return crew;
  mark_stack_destroy(&pool->items);
  pthread_mutex_destroy(&pool->lock);
  pthread_cond_destroy(&pool->cv);
  free(crew);
  return NULL;
}

void mc_mark_end(mc_mark_crew *crew) {
  if (!crew) return;
  for (unsigned i = 0; i < crew->nh; i++) gc_pool_join(crew->threads, crew->tasks[i]);
  mark_stack_destroy(&crew->pool.items);
  pthread_mutex_destroy(&crew->pool.lock);
  pthread_cond_destroy(&crew->pool.cv);
  free(crew);
}

