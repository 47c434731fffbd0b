/* The ephemeron fix-point, finalization and weak record tables: see
 * collectors/trace.h for the protocol and the algorithm. */
#include <stdlib.h>
#include <string.h>

#include "collectors/trace.h"
#include "heap/ephemeron.h"
#include "heap/error.h"
#include "heap/object.h"

void trace_weak_init(trace_weak *w, fh_heap *h, const trace_ops *ops, void *tracer) {
  *w = (trace_weak){.h = h, .ops = ops, .tracer = tracer};
}

void trace_weak_destroy(trace_weak *w) {
  mark_stack_destroy(&w->found);
  mark_stack_destroy(&w->pending);
  mark_stack_destroy(&w->resolved);
  free(w->next);
  free(w->heads);
  w->next = w->heads = NULL;
  w->indexing = 0;
}

/* The stacks are mapped on first use: a collection that meets no
 * ephemeron maps nothing. */
static int push(mark_stack *s, void *p) {
  if (!s->items && mark_stack_init(s) < 0) return -1;
  return mark_stack_push(s, p);
}

static int is_live(trace_weak *w, const void *obj) {
  return !obj || !w->ops->is_live || w->ops->is_live(w->tracer, obj);
}

/* Without room to remember an ephemeron, it is traced as a strong pair:
 * its value lives one cycle longer than it should, nothing is lost. */
static void visit_strong(trace_weak *w, ephemeron *e) {
  w->overflowed = 1;
  w->ops->visit(&e->key, w->tracer);
  w->ops->visit(&e->value, w->tracer);
}

static size_t bucket_of(const trace_weak *w, const void *key) {
  uint64_t x = ((uint64_t)(uintptr_t)key >> 3) * 0x9E3779B97F4A7C15ull;
  return (size_t)(x >> 32) & (w->nbuckets - 1);
}

/* Link pending[i] into its bucket; the links array grows with pending. */
static void index_add(trace_weak *w, size_t i) {
  if (w->no_index) return;
  if (i >= w->next_cap) {
    size_t cap = w->next_cap ? w->next_cap * 2 : 1024;
    while (cap <= i) cap *= 2;
    size_t *next = realloc(w->next, cap * sizeof *next);
    if (!next) {
      w->no_index = 1; /* from now on the fix-point rescans */
      return;
    }
    w->next = next;
    w->next_cap = cap;
  }
  ephemeron *e = w->pending.items[i];
  size_t b = bucket_of(w, e->key);
  w->next[i] = w->heads[b];
  w->heads[b] = i + 1;
}

/* (Re)build the bucket heads for every pending ephemeron, with about two
 * buckets per entry. */
static void index_build(trace_weak *w) {
  size_t want = 64;
  while (want < 2 * w->pending.n) want *= 2;
  size_t *heads = calloc(want, sizeof *heads);
  if (!heads) {
    w->no_index = 1;
    return;
  }
  free(w->heads);
  w->heads = heads;
  w->nbuckets = want;
  for (size_t i = 0; i < w->pending.n; i++)
    if (w->pending.items[i]) index_add(w, i);
}

static void resolve(trace_weak *w, ephemeron *e) {
  if (push(&w->resolved, e) < 0) visit_strong(w, e);
}

/* After the strong closure: decide at once, or wait in the index. */
static void classify(trace_weak *w, ephemeron *e) {
  if (!e->key) return; /* cleared by an earlier collection */
  if (is_live(w, e->key)) {
    resolve(w, e);
    return;
  }
  if (push(&w->pending, e) < 0) {
    visit_strong(w, e);
    return;
  }
  if (w->heads && w->pending.n > 4 * w->nbuckets) index_build(w);
  else if (w->heads) index_add(w, w->pending.n - 1);
}

void trace_ephemeron(trace_weak *w, void *eph) {
  w->ephemerons++;
  if (w->indexing) classify(w, eph);
  else if (push(&w->found, eph) < 0) visit_strong(w, eph);
}

/* Called from inside the collector's marking of obj: only record what to
 * visit (visiting here could recurse along a chain of ephemerons). */
void trace_weak_reached_slow(trace_weak *w, const void *obj) {
  if (w->no_index || !w->heads) return;
  size_t *link = &w->heads[bucket_of(w, obj)];
  while (*link) {
    size_t i = *link - 1;
    ephemeron *e = w->pending.items[i];
    if (e && e->key == obj) {
      if (push(&w->resolved, e) < 0) {
        w->no_index = 1; /* the rescan in settle() picks it up */
        return;
      }
      w->pending.items[i] = NULL;
      *link = w->next[i]; /* unlink: each ephemeron resolves once */
      continue;
    }
    link = &w->next[i];
  }
}

/* Without an index: move every pending ephemeron whose key is now live to
 * the resolved stack.  Returns how many moved. */
static size_t rescan_pending(trace_weak *w) {
  size_t moved = 0;
  for (size_t i = 0; i < w->pending.n; i++) {
    ephemeron *e = w->pending.items[i];
    if (!e || !is_live(w, e->key)) continue;
    w->pending.items[i] = NULL;
    moved++;
    resolve(w, e);
  }
  return moved;
}

/* Visit resolved ephemerons and drain until nothing is left to resolve.
 * 0, or -1 when the tracer failed. */
static int settle(trace_weak *w) {
  for (;;) {
    void *e;
    while ((e = mark_stack_pop(&w->resolved)) != NULL) {
      /* The key is live: visiting it only updates the slot for copying
       * collectors.  The value is now reachable. */
      w->ops->visit(&((ephemeron *)e)->key, w->tracer);
      w->ops->visit(&((ephemeron *)e)->value, w->tracer);
    }
    if (w->ops->drain(w->tracer) < 0) return -1;
    if (w->resolved.n) continue;
    if (!w->no_index || !rescan_pending(w)) return 0;
  }
}

/* Records whose objects nothing else reaches move to the queue, all of
 * them before any is resurrected (a finalizable object reachable only from
 * another one is queued in the same collection: no order among them). */
static void finalize_unreachable(trace_weak *w) {
  fh_heap *h = w->h;
  weak_records *fin = &h->finalizers, *q = &h->fin_queue;
  size_t dead = 0;
  for (size_t i = 0; i < fin->n; i++) dead += !is_live(w, fin->items[i].obj);
  if (!dead) return;
  size_t queued_before = q->n;
  if (weak_records_reserve(q, dead) < 0) {
    /* Nothing is lost: the records stay and their objects live until a
     * collection has room to queue them. */
    for (size_t i = 0; i < fin->n; i++) w->ops->visit(&fin->items[i].obj, w->tracer);
    return;
  }
  size_t kept = 0;
  for (size_t i = 0; i < fin->n; i++) {
    weak_record r = fin->items[i];
    if (is_live(w, r.obj)) fin->items[kept++] = r;
    else weak_records_push(q, r.obj, r.data);
  }
  fin->n = kept;
  for (size_t i = queued_before; i < q->n; i++) w->ops->visit(&q->items[i].obj, w->tracer);
  w->finalized += dead;
  if (queued_before == 0) h->fin_queue_filled = 1;
}

static void clear_unresolved(trace_weak *w) {
  for (size_t i = 0; i < w->pending.n; i++) {
    ephemeron *e = w->pending.items[i];
    if (!e || !e->key) continue; /* resolved, or a duplicate already cleared */
    e->key = NULL;
    e->value = NULL;
    w->cleared++;
  }
}

static int keep_live_record(weak_record *r, void *ctx) {
  trace_weak *w = ctx;
  if (!is_live(w, r->obj)) return 0;
  w->ops->visit(&r->obj, w->tracer);
  return 1;
}

int trace_weak_finish(trace_weak *w) {
  uint64_t t0 = heap_now_ns();
  w->indexing = 1;
  for (size_t i = 0; i < w->found.n; i++) classify(w, w->found.items[i]);
  mark_stack_destroy(&w->found);
  if (w->pending.n) index_build(w);
  /* A failed drain leaves liveness unknown: nothing may be cleared.  (The
   * records queued before a failure were found dead by a complete strong
   * closure; queueing them stays right.) */
  if (settle(w) < 0) goto failed;
  finalize_unreachable(w);
  if (settle(w) < 0) goto failed;
  clear_unresolved(w);
  w->indexing = 0;
  /* Every finalization record's object is live now: update the slots. */
  weak_records_filter(&w->h->finalizers, keep_live_record, w);
  weak_records_filter(&w->h->hash_vacated, keep_live_record, w);
  w->weak_ns = heap_now_ns() - t0;
  /* Inside the pause, under stats_lock (the driver holds it). */
  fh_heap *h = w->h;
  h->ephemerons_traced += w->ephemerons;
  h->ephemerons_cleared += w->cleared;
  h->objects_finalized += w->finalized;
  h->weak_ns_total += w->weak_ns;
  if (w->weak_ns > h->weak_ns_max) h->weak_ns_max = w->weak_ns;
  return 0;
failed:
  w->indexing = 0;
  return -1;
}

void weak_roots_visit(fh_heap *h, fh_visit_fn visit, void *ctx) {
  weak_records *tables[] = {&h->finalizers, &h->hash_vacated};
  for (size_t k = 0; k < sizeof tables / sizeof *tables; k++)
    for (size_t i = 0; i < tables[k]->n; i++) visit(&tables[k]->items[i].obj, ctx);
}
