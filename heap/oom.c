/* Running out of room: the embedder's OOM handler and fh_set_heap_max. */
#include "heap/error.h"
#include "heap/heap.h"

#define OOM_MAX_CALLS 8 /* per allocation: a handler that never frees cannot loop */

void fh_set_oom_handler(fh_heap *h, fh_oom_handler fn, void *user) {
  if (!h) {
    fh_error_set("fh_set_oom_handler: heap is NULL");
    return;
  }
  pthread_mutex_lock(&h->roots_lock);
  h->oom_handler = fn;
  h->oom_user = fn ? user : NULL;
  pthread_mutex_unlock(&h->roots_lock);
}

int oom_retry(fh_thread *t, size_t bytes, unsigned *calls) {
  fh_heap *h = t->heap;
  if (t->in_oom_handler || *calls >= OOM_MAX_CALLS) return 0;
  pthread_mutex_lock(&h->roots_lock);
  fh_oom_handler fn = h->oom_handler;
  void *user = h->oom_user;
  pthread_mutex_unlock(&h->roots_lock);
  if (!fn) return 0;
  ++*calls;
  /* No lock is held here: the handler may collect or call fh_set_heap_max.
   * An allocation inside it that fails does not call it again. */
  t->in_oom_handler = 1;
  int again = fn(h, t, bytes, user);
  t->in_oom_handler = 0;
  return again != 0;
}

int fh_set_heap_max(fh_heap *h, size_t bytes) {
  if (!h) {
    fh_error_set("fh_set_heap_max: heap is NULL");
    return -1;
  }
  if (bytes < ((size_t)1 << 20) || bytes > h->reserved_max) {
    fh_error_set("fh_set_heap_max: %zu bytes is outside [1 MiB, %zu] (the reservation: raise "
                 "the heap_reserve option at creation to allow more)", bytes, h->reserved_max);
    return -1;
  }
  /* Every reader loads it relaxed (heap_limit): a new cap takes effect at
   * each one's next check; the spaces' ranges already hold reserved_max. */
  __atomic_store_n(&h->opt.heap_max, bytes, __ATOMIC_RELAXED);
  if (h->has_malloc_spaces)
    for (int i = 0; i < 2; i++) __atomic_store_n(&h->malloc[i].limit, bytes, __ATOMIC_RELAXED);
  return 0;
}
