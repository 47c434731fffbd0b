/* The ephemeron fix-point, finalization and weak record tables: see
 * collectors/trace.h for the protocol and the algorithm. */
#include <stdlib.h>

#include "collectors/trace.h"
#include "heap/ephemeron.h"
#include "heap/object.h"

/* A pending ephemeron, its key (as referrers hold it: the address the
 * collector will report to trace_weak_reached) and its index chain. */
typedef struct trace_pending {
  ephemeron *e; /* NULL once resolved */
  const void *key;
  uint32_t next; /* next entry of the bucket + 1, 0: none */
} trace_pending;

void trace_weak_init(trace_weak *w, fh_heap *h, const trace_ops *ops, void *tracer) {
  *w = (trace_weak){.h = h, .ops = ops, .tracer = tracer};
}

void trace_weak_destroy(trace_weak *w) {
  mark_stack_destroy(&w->found);
  mark_stack_destroy(&w->resolved);
  free(w->pending);
  free(w->heads);
  w->pending = NULL;
  w->heads = NULL;
  w->npending = w->pending_cap = 0;
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

/* Key and value as strong slots: for an ephemeron whose key is live
 * (visiting the key then only updates the slot for copying collectors),
 * or (visit_strong, counted for fh_dump) for one the layer has no room to
 * remember: its value lives one cycle longer than it should, nothing is
 * lost. */
static void visit_pair(trace_weak *w, ephemeron *e) {
  w->ops->visit(&e->key, w->tracer);
  w->ops->visit(&e->value, w->tracer);
}
static void visit_strong(trace_weak *w, ephemeron *e) {
  w->kept_strong++;
  visit_pair(w, e);
}

static size_t bucket_of(const trace_weak *w, const void *key) {
  uint64_t x = ((uint64_t)(uintptr_t)key >> 3) * 0x9E3779B97F4A7C15ull;
  return (size_t)(x >> 32) & (w->nbuckets - 1);
}

static void index_add(trace_weak *w, size_t i) {
  size_t b = bucket_of(w, w->pending[i].key);
  w->pending[i].next = w->heads[b];
  w->heads[b] = (uint32_t)(i + 1);
}

/* (Re)build the bucket heads for every pending ephemeron, about one bucket
 * per entry (or per `expect` entries, if more are expected): 4-byte heads
 * keep the table small enough to stay in cache, which mattered more than
 * short chains (fhbench ephemerons: classify 3.5 ms for 66k ephemerons
 * with 8-byte heads and two per entry, ~2 ms with this).  Without memory,
 * or past 2^32 entries: no index, the fix-point rescans. */
static void index_build_for(trace_weak *w, size_t expect) {
  size_t want = 64;
  if (expect < w->npending) expect = w->npending;
  while (want < expect) want *= 2;
  uint32_t *heads = expect < UINT32_MAX ? calloc(want, sizeof *heads) : NULL;
  if (!heads) {
    free(w->heads);
    w->heads = NULL;
    w->no_index = 1;
    return;
  }
  free(w->heads);
  w->heads = heads;
  w->nbuckets = want;
  for (size_t i = 0; i < w->npending; i++)
    if (w->pending[i].e) index_add(w, i);
}
static void index_build(trace_weak *w) { index_build_for(w, 0); }

static void resolve(trace_weak *w, ephemeron *e) {
  if (push(&w->resolved, e) < 0) visit_strong(w, e);
}

static void add_pending(trace_weak *w, ephemeron *e, const void *key) {
  if (w->npending == w->pending_cap) {
    size_t cap = w->pending_cap ? 2 * w->pending_cap : 1024;
    trace_pending *p = realloc(w->pending, cap * sizeof *p);
    if (!p) {
      visit_strong(w, e);
      return;
    }
    w->pending = p;
    w->pending_cap = cap;
  }
  size_t i = w->npending++;
  w->pending[i] = (trace_pending){e, key, 0};
  /* Built on the first entry, rebuilt as it grows (doubling: linear). */
  if (w->no_index) return;
  if (!w->heads || w->npending > 4 * w->nbuckets) index_build(w);
  else index_add(w, i);
}

/* After the strong closure: decide at once, or wait in the index. */
static void classify(trace_weak *w, ephemeron *e, void *key) {
  if (is_live(w, key)) resolve(w, e);
  else add_pending(w, e, key);
}

void trace_ephemeron(trace_weak *w, void *eph) {
  ephemeron *e = eph;
  void *key = e->key;
  if (!key) return; /* cleared by an earlier collection */
  w->ephemerons++;
  /* Scanning is a visit like any other: the key may be visited now. */
  if (is_live(w, key)) visit_pair(w, e);
  else if (w->indexing) add_pending(w, e, key);
  else if (push(&w->found, e) < 0 || push(&w->found, key) < 0) visit_strong(w, e);
}

void trace_ephemeron_recorded(trace_weak *w, void *eph, void *key) {
  w->ephemerons++;
  if (push(&w->found, eph) < 0 || push(&w->found, key) < 0) visit_strong(w, eph);
}

/* Called from inside the collector's marking of obj: only record what to
 * visit (visiting here could recurse along a chain of ephemerons). */
void trace_weak_reached_slow(trace_weak *w, const void *obj) {
  if (w->no_index || !w->heads) return;
  uint32_t *link = &w->heads[bucket_of(w, obj)];
  while (*link) {
    trace_pending *p = &w->pending[*link - 1];
    if (p->key == obj && p->e) {
      if (push(&w->resolved, p->e) < 0) {
        w->no_index = 1; /* the rescan in settle() picks it up */
        return;
      }
      p->e = NULL;
      *link = p->next; /* unlink: each ephemeron resolves once */
      continue;
    }
    link = &p->next;
  }
}

/* Without an index: move every pending ephemeron whose key is now live to
 * the resolved stack.  Returns how many moved. */
static size_t rescan_pending(trace_weak *w) {
  size_t moved = 0;
  for (size_t i = 0; i < w->npending; i++) {
    trace_pending *p = &w->pending[i];
    if (!p->e || !is_live(w, p->key)) continue;
    resolve(w, p->e);
    p->e = NULL;
    moved++;
  }
  return moved;
}

/* Visit resolved ephemerons and drain until nothing is left to resolve.
 * 0, or -1 when the tracer failed. */
static int settle(trace_weak *w) {
  for (;;) {
    void *e;
    while ((e = mark_stack_pop(&w->resolved)) != NULL) visit_pair(w, e);
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
  for (size_t i = 0; i < w->npending; i++) {
    if (i + 8 < w->npending && w->pending[i + 8].e) __builtin_prefetch(w->pending[i + 8].e, 1);
    ephemeron *e = w->pending[i].e;
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
  /* Sized for every recorded ephemeron at once (most stay pending): no
   * rebuild while they are classified. */
  if (w->found.n) index_build_for(w, w->found.n / 2);
  /* Each check reads the key's mark state, a cache miss in random order:
   * ask for it a few entries ahead. */
  enum { AHEAD = 2 * 8 };
  void **f = w->found.items;
  for (size_t i = 0; i + 1 < w->found.n; i += 2) {
    if (w->ops->prefetch && i + AHEAD + 1 < w->found.n) w->ops->prefetch(w->tracer, f[i + AHEAD + 1]);
    classify(w, f[i], f[i + 1]);
  }
  mark_stack_destroy(&w->found);
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
  h->ephemerons_kept_strong += w->kept_strong;
  if (w->weak_ns > h->weak_ns_max) h->weak_ns_max = w->weak_ns;
  return 0;
failed:
  w->indexing = 0;
  return -1;
}

static void visit_records(weak_records *r, fh_visit_fn visit, void *ctx) {
  for (size_t i = 0; i < r->n; i++) visit(&r->items[i].obj, ctx);
}

void weak_roots_visit_finalizers(fh_heap *h, fh_visit_fn visit, void *ctx) {
  visit_records(&h->finalizers, visit, ctx);
}

void weak_roots_visit_vacated(fh_heap *h, fh_visit_fn visit, void *ctx) {
  visit_records(&h->hash_vacated, visit, ctx);
}

void weak_roots_visit(fh_heap *h, fh_visit_fn visit, void *ctx) {
  weak_roots_visit_finalizers(h, visit, ctx);
  weak_roots_visit_vacated(h, visit, ctx);
}
