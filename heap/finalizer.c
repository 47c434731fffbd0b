/* fh_finalizer_*: finalization records and the queue.  Which records die
 * is decided by the tracing layer (collectors/trace_weak.c); this file is
 * the embedder's side: attach, pop, and the notification after a pause. */
#include "heap/finalizer.h"

#include "heap/error.h"
#include "heap/object_check.h"

int fh_finalizer_attach(fh_thread *t, void *obj, void *data) {
  if (thread_check(t, "fh_finalizer_attach") < 0) return -1;
  fh_heap *h = thread_heap(t);
  if (heap_check_object(h, obj, "fh_finalizer_attach") < 0) return -1;
  /* Records are read by collectors with the world stopped, which needs no
   * more than this thread not being at a safepoint while it appends. */
  int rc = weak_records_add(&h->finalizers, obj, (uint64_t)(uintptr_t)data,
                            "fh_finalizer_attach");
  fh_safepoint(t);
  return rc;
}

int fh_finalizer_pop(fh_thread *t, void **obj, void **data) {
  if (thread_check(t, "fh_finalizer_pop") < 0) return 0;
  if (!obj || !data) {
    fh_error_set("fh_finalizer_pop: %s is NULL", !obj ? "obj" : "data");
    return 0;
  }
  fh_safepoint(t);
  weak_record r;
  if (!weak_records_pop(&thread_heap(t)->fin_queue, &r)) return 0;
  *obj = r.obj;
  *data = (void *)(uintptr_t)r.data;
  return 1;
}

void fh_set_finalizer_notify(fh_heap *h, void (*notify)(fh_heap *h, void *user), void *user) {
  if (!h) {
    fh_error_set("fh_set_finalizer_notify: heap is NULL");
    return;
  }
  pthread_mutex_lock(&h->fin_notify_lock);
  h->fin_notify = notify;
  h->fin_notify_user = user;
  pthread_mutex_unlock(&h->fin_notify_lock);
}

void finalizer_notify_if_filled(fh_heap *h) {
  pthread_mutex_lock(&h->fin_notify_lock);
  int filled = h->fin_queue_filled;
  h->fin_queue_filled = 0;
  void (*notify)(fh_heap *, void *) = h->fin_notify;
  void *user = h->fin_notify_user;
  pthread_mutex_unlock(&h->fin_notify_lock);
  /* Called without the lock: notify may set another callback, pop, even
   * allocate. */
  if (filled && notify) notify(h, user);
}
