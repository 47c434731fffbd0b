/* The old generation's objects on its dirty cards: the card walks of
 * generational mark-compact (collectors/mc_gen_walk.h), marking from them
 * (mc_gen_visit_old), and the per-card walk points a full cycle leaves to
 * fill (mc_gen_fill_walk). */
#include "collectors/mc_gen_walk.h"

#include "collectors/gen_cards.h"
#include "collectors/mc_gen.h"
#include "heap/object.h"

/* An object start at or below a (in the old generation): the walk
 * point of a's card or the nearest card below that has one. */
static uintptr_t walk_point(const mc_state *m, uintptr_t a) {
  const fwd_tables *t = &m->t;
  for (size_t c = (a - t->begin) / FH_CARD_BYTES;; c--) {
    uintptr_t w = m->gen.walk[c];
    if (w && w <= a) return w;
    if (!c) return t->begin;
  }
}

void card_objects(card_walk *w, uintptr_t cs, fh_object_fn fn, void *ctx) {
  uintptr_t begin = w->m->t.begin;
  uintptr_t from = cs - FH_HEADER_BYTES < begin ? begin : cs - FH_HEADER_BYTES;
  uintptr_t to = cs + FH_CARD_BYTES - FH_HEADER_BYTES;
  if (to > w->end) to = w->end;
  /* Cards come in ascending order, and the cursor is the first object
   * start at or past the previous card's end: from a cursor at or past
   * this card's first possible start, no object of this card was skipped.
   * Only a cursor more than a card behind is replaced. */
  if (!w->cur || (w->cur < from && from - w->cur > FH_CARD_BYTES)) w->cur = walk_point(w->m, cs);
  uintptr_t s = w->cur, *walk = w->m->gen.walk;
  /* The walk notes the points it passes (note_walk), so the next walk
   * near here starts at most a card back: after a full collection the
   * points are per page (from the forwarding), and walking up to 4 KiB of
   * headers for each of thousands of dirty cards, twice (mark, update),
   * took most of a young pause (fhbench young: 20 of 44 ms). */
  size_t steps = 0, found = 0;
  while (s < from) {
    size_t n = obj_bytes(*(const uint64_t *)s);
    if (!n) break; /* a broken header: heap_verify reports it */
    note_walk(walk, begin, s, s + n);
    s += n;
    steps++;
  }
  while (s >= from && s < to) {
    uint64_t hd = *(const uint64_t *)s;
    size_t n = obj_bytes(hd);
    if (!n) break;
    note_walk(walk, begin, s, s + n);
    if (hdr_type(hd) != FH_FILLER_TYPE) fn(obj_from_start(s), ctx), found++;
    s += n;
    steps++;
  }
  w->m->gen.card_steps += steps;
  w->m->gen.card_objects += found;
  if (s >= to) w->cur = s;
}

void card_queue_push(card_queue *q, uintptr_t c) {
  /* A prefetch never faults: the line below the space's first card is
   * harmless.  It holds the header of a small object covering c. */
  __builtin_prefetch((const void *)(c - 64));
  for (unsigned off = 0; off < FH_CARD_BYTES; off += 64) __builtin_prefetch((const void *)(c + off));
  __builtin_prefetch(&q->walk[(c - q->begin) / FH_CARD_BYTES]);
  if (q->n < CARD_AHEAD) {
    q->q[(q->head + q->n++) % CARD_AHEAD] = c;
    return;
  }
  uintptr_t first = q->q[q->head];
  q->q[q->head] = c;
  q->head = (q->head + 1) % CARD_AHEAD;
  q->fn(first, q->ctx);
}

void card_queue_drain(card_queue *q) {
  for (; q->n; q->n--) {
    uintptr_t c = q->q[q->head];
    q->head = (q->head + 1) % CARD_AHEAD;
    q->fn(c, q->ctx);
  }
}

void queue_cards(uintptr_t cb, uintptr_t ce, void *ctx) {
  for (uintptr_t c = cb; c < ce; c += FH_CARD_BYTES) card_queue_push(ctx, c);
}

typedef struct old_visit {
  card_walk w;
  int (*scan_old)(void *obj, void *ctx);
  void *ctx;
  mc_gen *g;
} old_visit;

/* An old object on a dirty card: marked from, and logged if marking found
 * that it may refer into the collected part (the update reads only the
 * logged objects again). */
static void visit_old_object(void *obj, void *ctx) {
  old_visit *v = ctx;
  if (v->scan_old(obj, v->ctx) && v->g->refs_ok && mark_stack_push(&v->g->refs, obj) < 0)
    v->g->refs_ok = 0;
}

static void visit_old_card(uintptr_t c, void *ctx) {
  old_visit *v = ctx;
  card_objects(&v->w, c, visit_old_object, v);
}

void mc_gen_visit_old(fh_heap *h, int (*scan_old)(void *obj, void *ctx), fh_object_fn fn,
                      void *ctx) {
  mc_state *m = h->mc;
  mc_gen *g = &m->gen;
  g->refs.n = 0;
  g->refs_ok = g->refs.items || mark_stack_init(&g->refs) == 0;
  if (m->t.ylo > m->t.begin) {
    old_visit v = {{m, m->t.ylo, 0}, scan_old, ctx, g};
    card_queue q = {.walk = g->walk, .begin = m->t.begin, .fn = visit_old_card, .ctx = &v};
    cards_visit_dirty(h, m->t.begin, m->t.ylo, queue_cards, &q);
    card_queue_drain(&q);
  }
  gen_cards_visit_old(h, fn, fn, ctx);
}

void mc_gen_fill_walk(mc_state *m) {
  mc_gen *g = &m->gen;
  if (!g->fill_walk || !g->walk) return;
  g->fill_walk = 0;
  uintptr_t begin = m->t.begin, s = begin, end = g->fill_end;
  for (unsigned n = 1; s < end; n++) {
    if (!(n & 4095) && atomic_load_explicit(&m->stop_prefault, memory_order_relaxed)) return;
    /* Atomic: a mutator may be setting an old object's hash bits (the
     * size does not change). */
    uint64_t hd = __atomic_load_n((const uint64_t *)s, __ATOMIC_RELAXED);
    size_t b = obj_bytes(hd);
    if (!b || (hdr_type(hd) == FH_FILLER_TYPE && !g->fill_past_fillers)) return;
    if (b > end - s) return; /* cannot be: the walk stays inside the old generation */
    note_walk(g->walk, begin, s, s + b);
    s += b;
  }
}
