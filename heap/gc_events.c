/* trace=1 and fh_set_gc_callback.  The figures are read in the pause
 * (gc_events_collected), reported after it, outside every lock of the heap,
 * so a callback or a slow stderr never lengthens a pause. */
#include "heap/gc_events.h"

#include <stdio.h>

#include "heap/error.h"

static const char *cause_name(gc_cause c) {
  switch (c) {
  case GC_CAUSE_EXPLICIT: return "explicit";
  case GC_CAUSE_ALLOC_TRIGGER: return "allocation";
  case GC_CAUSE_ALLOC_FAILURE: return "allocation failure";
  case GC_CAUSE_BACKGROUND: return "background";
  case GC_CAUSE_REMARK: return "remark";
  }
  return "?";
}

static void callback(fh_heap *h, const fh_gc_event *e) {
  pthread_mutex_lock(&h->fin_notify_lock);
  void (*fn)(fh_heap *, const fh_gc_event *, void *) = h->gc_callback;
  void *user = h->gc_callback_user;
  pthread_mutex_unlock(&h->fin_notify_lock);
  if (fn) fn(h, e, user);
}

void gc_events_start(fh_heap *h, gc_watch *w, const char *collector, gc_cause cause) {
  *w = (gc_watch){0};
  w->remark = cause == GC_CAUSE_REMARK;
  w->e.number = h->collections + !w->remark;
  w->e.collector = collector;
  w->e.cause = cause_name(cause);
  w->e.live_before = heap_used_bytes(h);
  w->moved0 = h->bytes_moved;
  w->faults0 = atomic_load(&h->uffd_faults);
  w->weak0 = h->weak_ns_total;
  h->gc_how = NULL; /* a failed collection may have left one */
}

void gc_events_announce(fh_heap *h, gc_watch *w) {
  if (!w->remark) callback(h, &w->e);
}

void gc_events_collected(fh_heap *h, gc_watch *w, uint64_t pause_ns) {
  w->e.end = 1;
  w->e.pause_ns = pause_ns;
  w->e.live_after = h->live_after_gc;
  w->e.heap_target = h->live_after_gc + h->gc_trigger;
  w->e.moved = h->bytes_moved - w->moved0;
  w->e.weak_ns = h->weak_ns_total - w->weak0;
  w->how = h->gc_how;
  h->gc_how = NULL;
}

void gc_events_end(fh_heap *h, gc_watch *w) {
  w->e.uffd_faults = atomic_load(&h->uffd_faults) - w->faults0;
  if (h->opt.trace)
    fprintf(stderr,
            "faultheap gc %llu: %s (%s, %s) pause %.3f ms, live %.2f -> %.2f MiB, target "
            "%.2f MiB, moved %.2f MiB, uffd faults %llu, weak %.3f ms%s%s\n",
            (unsigned long long)w->e.number, w->e.collector, w->e.cause,
            w->e.young ? "young" : "full", w->e.pause_ns / 1e6, w->e.live_before / 1048576.0,
            w->e.live_after / 1048576.0, w->e.heap_target / 1048576.0, w->e.moved / 1048576.0,
            (unsigned long long)w->e.uffd_faults, w->e.weak_ns / 1e6, w->how ? ", " : "",
            w->how ? w->how : "");
  if (!w->remark) callback(h, &w->e);
}

void fh_set_gc_callback(fh_heap *h, void (*fn)(fh_heap *h, const fh_gc_event *e, void *user),
                        void *user) {
  if (!h) {
    fh_error_set("fh_set_gc_callback: heap is NULL");
    return;
  }
  pthread_mutex_lock(&h->fin_notify_lock);
  int taken = fn && h->gc_callback && (h->gc_callback != fn || h->gc_callback_user != user);
  if (!taken) {
    h->gc_callback = fn;
    h->gc_callback_user = user;
  }
  pthread_mutex_unlock(&h->fin_notify_lock);
  if (taken)
    fh_error_set("fh_set_gc_callback: a callback is already set; remove it with "
                 "fh_set_gc_callback(h, NULL, NULL) first");
}
