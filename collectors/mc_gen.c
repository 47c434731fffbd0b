/* Generational mark-compact: generations as address ranges of the moving
 * space, the card table as remembered set (collectors/mc_gen.h). */
#include "collectors/mc_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "collectors/gen_cards.h"
#include "collectors/mc.h"
#include "collectors/mc_gen_holes.h"
#include "collectors/mc_gen_walk.h"
#include "collectors/trace.h"
#include "heap/barrier.h"
#include "heap/large_objects.h"
#include "heap/object.h"
#include "heap/sys.h"

/* generational=1 (the default): on with either kind of stack roots;
 * 2: on with precise roots only; 0: off.  With conservative roots a stack
 * word pins an object near the allocation frontier at nearly every
 * collection, and the slide leaves a gap under it: the holes are kept out
 * of the old generation (mc_gen_holes.c, and the hole floor below).
 * Off for them until the eighth session: binary-trees at depth 20 took
 * over 60 s (card walks restarting at a handed-out gap's start, fixed in
 * card_objects and mc_gen_holes.c: hole_below).  Measured after the fix,
 * conservative roots, generations on against off: GCBench 99 against 170-222 ms,
 * binary-trees depth 21 12.6 against 24.2 s (every off cycle slid 128
 * MiB in a heap capped at 256), fhscheme's suite 0.74x against 0.78x
 * Boehm's time but 1.55x against 1.22x its peak RSS (the old generation
 * holds what died there until a full cycle; 1.37x once young budgets were
 * capped at the last full cycle's, mark_compact.c: mc_account). */
int mc_gen_enabled(fh_heap *h) {
  int on = h->opt.generational == 1 ||
           (h->opt.generational == 2 && h->opt.stack_roots != FH_STACK_ROOTS_CONSERVATIVE);
  /* (options.c: 1 is the default) */
  return on &&
         (h->collector == &mark_compact_collector || h->collector == &concurrent_compact_collector);
}

static uintptr_t nm_end(fh_heap *h) {
  return h->non_moving.space.begin + arena_mapped(&h->non_moving.arena);
}

static int walk_ready(mc_state *m) {
  mc_gen *g = &m->gen;
  if (g->walk) return 0;
  size_t cards = m->t.capacity / FH_CARD_BYTES + 1;
  g->walk_bytes = align_up(cards * sizeof(uintptr_t), FH_PAGE);
  void *p = sys_mmap(NULL, g->walk_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    g->walk_bytes = 0;
    return -1;
  }
  g->walk = p;
  return 0;
}

void mc_gen_destroy(mc_gen *g) {
  if (g->walk) sys_munmap(g->walk, g->walk_bytes);
  g->walk = NULL;
  free(g->mid_gaps);
  g->mid_gaps = NULL;
  g->nmid_gaps = g->mid_gaps_cap = 0;
  mark_stack_destroy(&g->refs);
  mark_stack_destroy(&g->cards);
  mark_stack_destroy(&g->stack);
}

size_t mc_gen_last_young_live(const mc_gen *g) {
  const gen_policy_in *l = &g->last;
  return l->young_collected > l->young_freed ? l->young_collected - l->young_freed : 0;
}

/* The throughput a full collection would have now, for ART's rule (young
 * while young throughput x 0.5 >= full throughput): what it would free
 * (what the last young one freed, plus at most what young ones promoted
 * since the last full one) over what it would cost (its measured pause
 * per live byte, times the live data now).  The average of past full
 * collections' own figures described another phase of the program:
 * binary-trees' early full collections freed 128 MiB of a stretch tree
 * each, so its last phase, whose full collections free 64 of 192 MiB,
 * took four 220 ms full collections for 50 ms young ones before the
 * average came down. */
double mc_gen_full_tp_now(const mc_gen *g) {
  const gen_policy_in *l = &g->last;
  if (!l->last_young || g->full_ns_per_byte <= 0 || !l->young_collected) return g->full_tp;
  double live = (double)g->old_live + (double)(l->young_collected - l->young_freed);
  double freed = (double)l->young_freed + (double)l->promoted_since_full;
  double ms = g->full_ns_per_byte * live / 1e6;
  return ms > 0.001 ? freed / ms : g->full_tp;
}

int mc_gen_begin(mc_state *m, gc_cause cause) {
  fh_heap *h = m->h;
  mc_gen *g = &m->gen;
  fwd_tables *t = &m->t;
  uintptr_t top = atomic_load(&h->bump[h->active].top);
  g->t0 = heap_now_ns();
  g->young = 0;
  g->yb_valid = 0;
  g->cards_ok = 0;
  g->hole_floor = 0; /* every hole of this cycle is handed out unless mc_gen_end says */
  g->fill_walk = 0; /* the last cycle's, if its task never ran it */
  g->alloc_failure = cause == GC_CAUSE_ALLOC_FAILURE; /* generations or not */
  if (!mc_gen_enabled(h)) {
    g->valid = 0;
    return 0;
  }
  /* Any other collection since ours (a semispace flip, a zygote fork,
   * fh_prefork's) moved or emptied the space behind our boundaries. */
  int valid = g->valid && g->at == h->collections && g->old_end >= t->begin &&
              g->old_end <= g->mid_end && g->mid_end <= top && walk_ready(m) == 0;
  /* A fresh heap: all young.  Not a fork child's (its count starts
   * again at 0) nor a state rebuilt after a semi-space collection: full
   * collections cleared cards that only old referents made clean. */
  if (!h->collections && !g->seen && walk_ready(m) == 0) {
    g->old_end = g->mid_end = t->begin;
    valid = 1;
  }
  g->seen = 1;
  gen_policy_in in = g->last;
  in.requested_young = h->gen.request_young;
  in.explicit_full = cause == GC_CAUSE_EXPLICIT && !h->gen.request_young;
  in.alloc_failure = g->alloc_failure;
  in.heap_max = heap_limit(h);
  in.no_generations = !valid;
  in.young_tp = g->young_tp;
  in.full_tp = mc_gen_full_tp_now(g);
  in.check_old = h->opt.heap_policy == FH_HEAP_ADAPTIVE;
  in.young_window = h->gc_trigger;
  uint64_t allocated = atomic_load(&h->bytes_allocated);
  /* Saturated: fh_postfork_child starts the count again at 0. */
  in.allocated_since_full = allocated > g->allocated_at_full ? allocated - g->allocated_at_full : 0;
  in.full_ns_per_byte = g->full_ns_per_byte;
  in.ns_since_full = g->t0 - g->full_end_ns;
  h->gen.choice = gen_policy_choose(&in);
  g->young = h->gen.choice.young;
  /* trace=1 and fh_dump: what ran and why (h->gc_how, cleared by the
   * driver after each collection; concurrent_compact's full cycles say
   * how they compacted too). */
  snprintf(g->how, sizeof g->how, "%s (%s)", g->young ? "young, slid in the pause" : "full",
           gen_why_name(h->gen.choice.why));
  h->gc_how = g->how;
  h->gen.collecting_young = g->young;
  /* A store that bypassed fh_write_ref is caught before this collection
   * can lose its referent. */
  if (g->young && h->opt.verify) {
    gen_cards_verify_range(h, "before young collection", g->old_end, top, t->begin, g->old_end);
    gen_cards_verify_bump(h, "before young collection (mid generation)", g->mid_end, top,
                          g->old_end, g->mid_end);
  }
  g->keep_mid = 0;
  g->keep_from = !g->young && valid && g->mid_end > t->begin ? g->mid_end : 0;
  /* A full cycle's update may take the references into what was
   * allocated since the last collection from dirty cards too
   * (mc_update_floor): the same invariant, checked the same way. */
  if (g->keep_from && h->opt.verify) {
    gen_cards_verify_range(h, "before full collection", g->old_end, top, t->begin, g->old_end);
    gen_cards_verify_bump(h, "before full collection (mid generation)", g->mid_end, top,
                          g->old_end, g->mid_end);
  }
  if (!g->young) {
    g->old_end = g->mid_end = t->begin;
    g->promote_below = t->begin;
  } else {
    g->promote_below = g->mid_end;
  }
  g->collected = top - g->old_end;
  g->valid = 0; /* until mc_gen_end says otherwise */
  return g->young;
}

/* ---- updating the references of a young cycle ---- */

typedef struct gen_update {
  mc_state *m;
  const fwd_tables *t;
  uintptr_t keep_lo; /* old addresses at or above it stay young (new mid) */
  int young_ref;
} gen_update;

static void update_slot(void **slot, void *ctx) {
  const fwd_tables *t = ctx;
  uintptr_t v = (uintptr_t)*slot;
  void *p = (void *)slot_target(t->tags, v), *q = fwd_ref(t, p);
  if (q != p) *slot = (void *)slot_retag(t->tags, v, (uintptr_t)q);
}

static void update_noting(void **slot, void *ctx) {
  gen_update *u = ctx;
  const fwd_tables *t = u->t;
  uintptr_t v = (uintptr_t)*slot, a = slot_target(t->tags, v);
  if (a - t->ylo - FH_HEADER_BYTES >= t->old_top - t->ylo) return; /* not into the young part */
  if (a - FH_HEADER_BYTES >= u->keep_lo) u->young_ref = 1;
  void *q = fwd_ref(t, (void *)a);
  if ((uintptr_t)q != a) *slot = (void *)slot_retag(t->tags, v, (uintptr_t)q);
}

static void update_card_object(void *obj, void *ctx) {
  gen_update *u = ctx;
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&u->m->h->types, hdr_type(hd));
  if (ti) types_visit_refs(ti, obj, hdr_payload(hd), update_noting, u);
}

typedef struct card_update {
  gen_update u;
  card_walk w;  /* old bump objects; w.m NULL: non-moving objects */
} card_update;

static void nm_card_objects(fh_heap *h, uintptr_t card, gen_update *u) {
  uintptr_t lo = card - FH_HEADER_BYTES < h->non_moving.space.begin ? h->non_moving.space.begin
                                                                      : card - FH_HEADER_BYTES;
  uintptr_t hi = card + FH_CARD_BYTES - FH_HEADER_BYTES;
  /* The bitmap's 16-byte granule rounds lo down: an object starting 8
   * bytes before the card belongs to the previous card's (its payload
   * pointer lies there), and must not be forwarded twice. */
  for (uintptr_t p = bitmap_next_set(&h->non_moving.alloc_bits, lo, hi); p;
       p = bitmap_next_set(&h->non_moving.alloc_bits, p + 16, hi))
    if (p + FH_HEADER_BYTES >= card) update_card_object(obj_from_start(p), u);
}

/* Each dirty card: update its objects, clear it unless one of them still
 * points into the new mid generation. */
static void update_card_one(uintptr_t card, void *ctx) {
  card_update *c = ctx;
  fh_heap *h = c->u.m->h;
  c->u.young_ref = 0;
  if (c->w.m)
    card_objects(&c->w, card, update_card_object, &c->u);
  else
    nm_card_objects(h, card, &c->u);
  if (!c->u.young_ref) *card_for(h, card) = 0;
}

static void update_card(uintptr_t cb, uintptr_t ce, void *ctx) {
  for (uintptr_t card = cb; card < ce; card += FH_CARD_BYTES) update_card_one(card, ctx);
}

/* A large object on a dirty card: updated, and settled when it holds
 * nothing of the new mid generation. */
static void update_large(void *obj, void *ctx) {
  gen_update *u = ctx;
  u->young_ref = 0;
  update_card_object(obj, ctx);
  if (!u->young_ref) heap_los_card_settled(u->m->h, obj);
}

/* The logged old objects' young referents lie anywhere in the young
 * range, and forwarding each reads its chunk entry: a cold line per
 * referent (fhbench young: 1,024 leaves of an old tree).  Those of the
 * object REFS_AHEAD places on in the log are prefetched (fixed layouts:
 * the common case, read without calling a trace function twice). */
#define REFS_AHEAD 8

static void prefetch_referents(const fwd_tables *t, const fh_type_registry *types, void *obj) {
  const fh_type_info *ti = types_get(types, hdr_type(*obj_header(obj)));
  if (!ti) return;
  for (uint32_t i = 0; i < ti->nrefs; i++) {
    uintptr_t a = slot_target(t->tags, *(const uintptr_t *)((char *)obj + ti->ref_offsets[i]));
    if (a - t->lo - FWD_WORD < t->old_top - t->lo)
      __builtin_prefetch(&t->chunks[(a - FWD_WORD - t->begin) >> FWD_CHUNK_SHIFT]);
  }
}

/* ---- the promoted objects' references into the new mid generation ---- */

/* Whether only the promoted objects on cards dirty before this young
 * cycle can point into the new mid generation.  They can when that
 * generation holds only the young survivors, allocated since the last
 * collection (at or above promote_below): every reference to one from an
 * older object was stored since, through fh_write_ref, which dirtied the
 * card of the holder's payload pointer where the holder lay (nothing
 * moves between collections, and the collected part's cards are cleared
 * only at the end of each young cycle); a young holder promoted from a
 * hole in mid stored its references the same way.  Not when a pinned
 * object's hole lowers the boundary (mc_young_boundary): objects that
 * were mid stay mid, and holders on clean cards point to them. */
static int promotes_by_cards(mc_state *m) {
  mc_gen *g = &m->gen;
  fwd_tables *t = &m->t;
  if (!g->young || g->promote_below <= t->ylo) return 0;
  young_bound b = mc_young_boundary(m);
  uintptr_t first = bitmap_next_set(&t->mark, g->promote_below, t->old_top);
  return b.keep_lo == g->promote_below && b.old_end == (first ? fwd_start(t, first) : t->new_top);
}

static void note_cards(uintptr_t cb, uintptr_t ce, void *ctx) {
  mc_gen *g = ctx;
  for (uintptr_t c = cb; c < ce && g->cards_ok; c += FH_CARD_BYTES)
    if (mark_stack_push(&g->cards, (void *)c) < 0) g->cards_ok = 0;
}

/* Before the update clears them: the dirty cards of the objects this
 * young cycle promotes (those starting in [ylo, promote_below): their
 * payload pointers reach a header's width further). */
static void note_promoted_cards(mc_state *m) {
  mc_gen *g = &m->gen;
  g->cards.n = 0;
  g->cards_ok = promotes_by_cards(m) && (g->cards.items || mark_stack_init(&g->cards) == 0);
  if (g->cards_ok)
    cards_visit_dirty(m->h, m->t.ylo, g->promote_below + FH_HEADER_BYTES, note_cards, g);
}

void mc_gen_update_outside(mc_state *m) {
  fh_heap *h = m->h;
  fwd_tables *t = &m->t;
  note_promoted_cards(m);
  roots_visit(h, update_slot, t);
  weak_roots_visit(h, update_slot, t);
  card_update c = {{m, t, mc_young_boundary(m).keep_lo, 0}, {m, t->ylo, 0}};
  mc_gen *g = &m->gen;
  if (t->ylo > t->begin && g->refs_ok) {
    /* Marking logged every old bump object on a dirty card that refers
     * into the collected part (visit_old_object): the others' cards
     * can go, and each logged one's card stays dirty if it still points
     * into the new mid generation. */
    cards_clear_range(h, t->begin, t->ylo);
    for (size_t i = 0; i < g->refs.n; i++) {
      /* Two stages: the object's line first (cold again since marking),
       * then, REFS_AHEAD later, its referents' entries. */
      if (i + 2 * REFS_AHEAD < g->refs.n)
        __builtin_prefetch(obj_header(g->refs.items[i + 2 * REFS_AHEAD]));
      if (i + REFS_AHEAD < g->refs.n) prefetch_referents(t, &h->types, g->refs.items[i + REFS_AHEAD]);
      void *obj = g->refs.items[i];
      c.u.young_ref = 0;
      update_card_object(obj, &c.u);
      if (c.u.young_ref) *card_for(h, (uintptr_t)obj) = FH__CARD_DIRTY;
    }
    g->refs.n = 0;
    mark_stack_trim(&g->refs);
  } else if (t->ylo > t->begin) {
    card_queue q = {.walk = g->walk, .begin = t->begin, .fn = update_card_one, .ctx = &c};
    cards_visit_dirty(h, t->begin, t->ylo, queue_cards, &q);
    card_queue_drain(&q);
  }
  c.w.m = NULL;
  cards_visit_dirty(h, h->non_moving.space.begin, nm_end(h), update_card, &c);
  /* Large objects: cleared (settled) when they hold nothing young
   * (heap/large_objects.h). */
  gen_cards_visit_large(h, update_large, &c.u);
  /* Spaces that are neither old by assumption nor immune (none in a
   * bump-space heap today): every object. */
  fh_space *spaces[HEAP_MAX_SPACES];
  unsigned n = heap_spaces(h, spaces);
  for (unsigned i = 0; i < n; i++)
    if (spaces[i]->kind != SPACE_BUMP && spaces[i] != &h->image.space &&
        spaces[i] != &h->zygote.space && spaces[i] != &h->non_moving.space &&
        spaces[i] != &h->los.space)
      spaces[i]->ops->walk(spaces[i], update_card_object, &c.u);
  /* The young part's cards describe old addresses: forget them (a card
   * shared with the old generation was settled above). */
  uintptr_t from = align_up(t->ylo, FH_CARD_BYTES);
  if (t->old_top > from) cards_clear_range(h, from, t->old_top);
}

/* A slid full cycle keeps its youngest survivors (those allocated since
 * the last collection) young, as mid, when they are at least 1 MiB and an
 * eighth of what becomes old: promoted at once, a structure being built
 * when the full collection came (binary-trees' 64 MiB trees) died old
 * soon after and only the next full collection could free it, so full
 * collections followed each other.  The cost is a walk over the old
 * generation after the slide (dirty_promoted), to dirty the cards of old
 * objects that point into the new mid generation: hence the share.  A
 * flip builds its pages concurrently, where no such walk can run. */
#define KEEP_MID_MIN ((size_t)1 << 20)

/* Where the old generation would end if this full cycle slid and kept its
 * youngest survivors young, or 0 when it would not keep them.  Needs the
 * forwarding (fwd_start), not the slide. */
static uintptr_t keepable_boundary(mc_state *m) {
  mc_gen *g = &m->gen;
  fwd_tables *t = &m->t;
  if (g->young || !g->keep_from || g->keep_from >= t->old_top) return 0;
  uintptr_t first = bitmap_next_set(&t->mark, g->keep_from, t->old_top);
  if (!first) return 0;
  uintptr_t new_old = fwd_start(t, first);
  size_t mid = t->new_top - new_old, old = new_old - t->begin;
  return mid >= KEEP_MID_MIN && mid >= old / 8 ? new_old : 0;
}

/* A slid full cycle's mid boundary (0: everything old), the lower of the
 * two reasons to keep objects mid. */
static uintptr_t keep_mid_boundary(mc_state *m) {
  if (!m->slid) return 0;
  uintptr_t k = keepable_boundary(m), s = mc_hole_boundary(m, k ? k : m->t.new_top);
  return s ? s : k;
}

size_t mc_gen_keepable_bytes(mc_state *m) {
  if (!mc_gen_enabled(m->h)) return 0;
  uintptr_t b = keepable_boundary(m);
  return b ? m->t.new_top - b : 0;
}

void mc_gen_full_cards(mc_state *m) {
  fh_heap *h = m->h;
  if (!mc_gen_enabled(h)) return;
  /* Keeping young survivors: the non-moving objects that refer to them
   * had dirty cards before the cycle (the invariant, the generations
   * being known) and keep them. */
  uintptr_t keep = keep_mid_boundary(m);
  m->gen.keep_mid = keep != 0;
  m->gen.keep_at = keep;
  /* Split at a hole: the objects that stay mid include some that were old
   * before the cycle (or the generations were not known), whose holders in
   * the non-moving space may have clean cards; mc_gen_end walks them. */
  m->gen.keep_split = keep && keep != keepable_boundary(m);
  if (m->gen.keep_mid) return;
  /* After a full collection everything is old: no card needs keeping.
   * (Large objects' cards: their sweep cleared them; image and zygote
   * cards stay dirty for good.) */
  uintptr_t e = nm_end(h);
  if (e > h->non_moving.space.begin) cards_clear_range(h, h->non_moving.space.begin, e);
}

/* ---- after the cycle ---- */

typedef struct promo_check {
  fh_heap *h;
  uintptr_t lo, hi; /* the new mid generation */
} promo_check;

static int promo_slot(void **slot, void *ctx) {
  promo_check *p = ctx;
  uintptr_t a = slot_target(p->h->tags, (uintptr_t)*slot);
  return a && a - FH_HEADER_BYTES - p->lo < p->hi - p->lo;
}

/* The object starting at s (header hd), now old: its card dirty if it
 * points into the new mid generation. */
static void dirty_if_into_mid(promo_check *p, uintptr_t s, uint64_t hd) {
  const fh_type_info *ti = types_get(&p->h->types, hdr_type(hd));
  if (!ti || !(ti->nrefs || ti->trace || (ti->flags & FH_TYPE_REF_ARRAY))) return;
  if (types_any_ref(ti, obj_from_start(s), hdr_payload(hd), promo_slot, p))
    atomic_store_explicit((_Atomic uint8_t *)card_for(p->h, s + FH_HEADER_BYTES), FH__CARD_DIRTY,
                          memory_order_relaxed);
}

/* Objects that became old in this cycle [lo, hi) (slid, contiguous): dirty
 * the card of each that points into the new mid generation, and note the
 * walk points of the cards that start among them. */
static void dirty_promoted(mc_state *m, uintptr_t lo, uintptr_t hi, uintptr_t mid_hi) {
  uintptr_t *walk = m->gen.walk, begin = m->t.begin;
  promo_check p = {m->h, hi, mid_hi};
  for (uintptr_t s = lo; s < hi;) {
    uint64_t hd = *(const uint64_t *)s;
    size_t n = obj_bytes(hd);
    if (!n) break;
    note_walk(walk, begin, s, s + n);
    dirty_if_into_mid(&p, s, hd);
    s += n;
  }
}

/* Walk points per page from the forwarding (the object covering each
 * destination page's first byte, on the page's first card), for the pages
 * from page `from` that start below hi. */
static void page_walk_points(mc_gen *g, const fwd_tables *t, size_t from, uintptr_t hi) {
  for (size_t p = from; p < t->npages && t->begin + p * FWD_PAGE < hi; p++)
    if (t->page_first[p]) g->walk[p * (FWD_PAGE / FH_CARD_BYTES)] = fwd_start(t, t->page_first[p]);
}

/* dirty_promoted's work where promotes_by_cards holds, without visiting
 * every promoted object: binary-trees' young cycle that promotes its 128
 * MiB long-lived tree spent 24 ms of its pause there, with nothing left
 * mid.  The references: only the objects on the cards noted before the
 * update (their old addresses, forwarded).  The walk points: per page
 * from the forwarding, as after a full cycle (later card walks refine
 * them, card_objects); the cards between hold none, so that no point a
 * past layout left there is taken for an object start. */
static void promoted_on_cards(mc_state *m, uintptr_t hi, uintptr_t mid_hi) {
  mc_gen *g = &m->gen;
  const fwd_tables *t = &m->t;
  uintptr_t begin = t->begin, c0 = align_up(t->ylo, FH_CARD_BYTES);
  if (hi > c0)
    memset(&g->walk[(c0 - begin) / FH_CARD_BYTES], 0,
           (hi - c0 + FH_CARD_BYTES - 1) / FH_CARD_BYTES * sizeof(uintptr_t));
  page_walk_points(g, t, align_up(t->ylo - begin, FWD_PAGE) / FWD_PAGE, hi);
  if (mid_hi > hi) {
    promo_check pc = {m->h, hi, mid_hi};
    for (size_t i = 0; i < g->cards.n; i++) {
      uintptr_t c = (uintptr_t)g->cards.items[i];
      uintptr_t lo = c - FH_HEADER_BYTES < t->ylo ? t->ylo : c - FH_HEADER_BYTES;
      uintptr_t e = c + FH_CARD_BYTES - FH_HEADER_BYTES;
      if (e > g->promote_below) e = g->promote_below;
      for (uintptr_t a = bitmap_next_set(&t->mark, lo, e); a;
           a = bitmap_next_set(&t->mark, a + FWD_WORD, e)) {
        uintptr_t s = fwd_start(t, a);
        dirty_if_into_mid(&pc, s, *(const uint64_t *)s);
      }
    }
  }
  g->cards.n = 0;
  mark_stack_trim(&g->cards);
  g->promotions_on_cards++;
}

/* A kept-mid full cycle: the large-object sweep cleared their cards; the
 * large objects that point into the new mid generation get theirs back. */
typedef struct large_mid {
  fh_heap *h;
  uintptr_t lo, hi;
} large_mid;

static int large_mid_slot(void **slot, void *ctx) {
  large_mid *l = ctx;
  uintptr_t a = slot_target(l->h->tags, (uintptr_t)*slot);
  return a && a - FH_HEADER_BYTES - l->lo < l->hi - l->lo;
}

static void large_mid_object(void *obj, void *ctx) {
  large_mid *l = ctx;
  fh_heap *h = l->h;
  if (los_is_quiet(&h->los, obj)) return; /* no collectable referent */
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&h->types, hdr_type(hd));
  if (!ti) return;
  if (types_any_ref(ti, obj, hdr_payload(hd), large_mid_slot, l))
    atomic_store_explicit((_Atomic uint8_t *)card_for(h, (uintptr_t)obj), FH__CARD_DIRTY,
                          memory_order_relaxed);
}

static void nonmoving_mid_object(void *obj, void *ctx) {
  large_mid *l = ctx;
  fh_heap *h = l->h;
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&h->types, hdr_type(hd));
  if (!ti || !(ti->nrefs || ti->trace || (ti->flags & FH_TYPE_REF_ARRAY))) return;
  if (types_any_ref(ti, obj, hdr_payload(hd), large_mid_slot, l))
    atomic_store_explicit((_Atomic uint8_t *)card_for(h, (uintptr_t)obj), FH__CARD_DIRTY,
                          memory_order_relaxed);
}

static void redirty_large_mid(fh_heap *h, uintptr_t lo, uintptr_t hi) {
  large_mid l = {h, lo, hi};
  if (h->los.space.ops && hi > lo) h->los.space.ops->walk(&h->los.space, large_mid_object, &l);
}

/* A full slide split at a hole (hole_boundary): the non-moving objects
 * that point into the new mid generation get their cards dirty; the cycle
 * cleared none of theirs, but the objects that became mid include some
 * that were old before it. */
static void redirty_nonmoving_mid(fh_heap *h, uintptr_t lo, uintptr_t hi) {
  large_mid l = {h, lo, hi};
  if (nm_end(h) > h->non_moving.space.begin)
    h->non_moving.space.ops->walk(&h->non_moving.space, nonmoving_mid_object, &l);
}

static double blend(double avg, double v) { return avg > 0 ? avg * 0.75 + v * 0.25 : v; }

void mc_gen_end(mc_state *m) {

  fh_heap *h = m->h;
  mc_gen *g = &m->gen;
  fwd_tables *t = &m->t;
  if (!mc_gen_enabled(h) || !g->walk) return;
  uintptr_t ylo = t->ylo;
  /* Where the old generation ends: a young cycle's young_boundary; a
   * slid full cycle's keep_mid_boundary (its youngest survivors, or its
   * first hole with conservative roots); else everything is old. */
  uintptr_t new_old = g->young      ? mc_young_boundary(m).old_end
                     : g->keep_mid ? g->keep_at
                                   : t->new_top;
  /* Conservative roots: a hole left below the new old end is not handed
   * out (mc_holes.c): it stays a filler until the next full cycle, and a
   * slide gives its whole pages back.  With the boundaries above that is
   * a flip's every gap (a flip makes everything old: its pages are built
   * concurrently, where no card walk can run; its gaps' pages were never
   * built), a young cycle's gaps below the one young_boundary keeps, and
   * dead words inside pinned ranges below the boundary.  They cost
   * address range, not memory; a young cycle's count towards the old
   * generation's growth, which brings the full cycle that takes them
   * back.  Not when this cycle ran because an allocation failed, nor when
   * the space would then span more than half of heap_max: a stack word
   * that pins the same object near the top at the next cycle keeps the
   * same gap, and the allocation would fail for want of range with the
   * memory free; those holes are handed out as with precise roots (old
   * from birth). */
  size_t stranded = 0;
  if (mc_holes_stay_young(h) && !g->alloc_failure &&
      t->new_top - t->begin <= heap_limit(h) / 2) {
    g->hole_floor = new_old;
    m->hole_bytes = SIZE_MAX; /* counted again above the floor */
    stranded = mc_gap_bytes(t, ylo, new_old);
  }
  /* Dead wood that becomes old (fwd_wood.c) is range only a full cycle
   * gives back, as a stranded gap is: growth of the old generation. */
  stranded += fwd_wood_in(t, ylo, new_old);
  /* Walk points (per card, of the old generation only: cards above its
   * end are never asked, and get theirs when their objects become old).
   * A young cycle that walks what became old notes them exactly; one
   * that finds the promoted holders on their cards, and a full cycle
   * (whose pages a flip has not built yet), take the forwarding's, the
   * object covering each page's first byte, on the page's first card;
   * young cycles' card walks refine them (card_objects).  The card
   * holding ylo keeps its point, an old object's. */
  if (g->young && g->cards_ok) {
    promoted_on_cards(m, new_old, t->new_top);
  } else if (g->young || g->keep_mid) {
    g->cards.n = 0; /* a list a failed push left incomplete gives back its growth */
    mark_stack_trim(&g->cards);
    dirty_promoted(m, ylo, new_old, t->new_top);
    if (g->keep_mid) redirty_large_mid(h, new_old, t->new_top);
    if (g->keep_mid && g->keep_split) redirty_nonmoving_mid(h, new_old, t->new_top);
  } else {
    size_t cards = (t->new_top - t->begin + FH_CARD_BYTES - 1) / FH_CARD_BYTES;
    memset(g->walk, 0, cards * sizeof(uintptr_t));
    page_walk_points(g, t, 0, UINTPTR_MAX);
  }
  g->fill_walk = !g->young && !g->keep_mid;
  /* Not into the gaps below pinned ranges: they are holes the mutators
   * allocate into while the fill walks (their stale objects would leave
   * walk points that are no object starts once a hole is reused); the
   * first gap begins at or below every later one. */
  g->fill_end = t->nranges && t->ranges[0].gap_lo < new_old ? t->ranges[0].gap_lo : new_old;
  /* Without pinned ranges no filler below fill_end is a hole: the dense
   * prefix's dead wood (fwd_wood.c) is walked over. */
  g->fill_past_fillers = !t->nranges;
  g->promoted = new_old - ylo - mc_gap_bytes(t, ylo, new_old) - fwd_wood_in(t, ylo, new_old);
  /* What became old is live (survivors slid below new_old), at most the
   * range: the range also holds the gaps below a pinned object, and dead
   * words inside pinned ranges. */
  if (g->promoted > t->live_bytes) g->promoted = t->live_bytes;
  g->old_live = g->young ? g->old_live + g->promoted : g->keep_mid ? g->promoted : t->live_bytes;
  g->old_end = new_old;
  g->mid_end = align_up(t->new_top, FWD_PAGE); /* the published top */
  g->mid_kept =
      t->new_top > new_old
          ? t->new_top - new_old - mc_gap_bytes(t, new_old, t->new_top) - fwd_wood_in(t, new_old, t->new_top)
          : 0;
  mc_record_mid_gaps(g, t, new_old);
  /* Walk points are written below the old generation's end only, so
   * none is needed past the new top.  After a full cycle those past it
   * describe a generation that is gone: their pages go back (1/64 of the
   * space the old generation once reached, 12 MiB after fhbench phases'
   * fall from 800 MiB used to 16).  Harmless if madvise fails. */
  size_t hw = align_up(((g->mid_end - t->begin) / FH_CARD_BYTES + 1) * sizeof(uintptr_t), FH_PAGE);
  if (hw > g->walk_bytes) hw = g->walk_bytes;
  if (!g->young && g->walk_hw > hw) {
    sys_madvise((char *)g->walk + hw, g->walk_hw - hw, MADV_DONTNEED);
    g->walk_hw = hw;
  }
  if (hw > g->walk_hw) g->walk_hw = hw;
  g->at = h->collections + 1; /* counted after this (gc_account_pause) */
  g->valid = 1;
  /* The policy's figures (gen_policy.h). */
  size_t live = t->live_bytes, freed = g->collected > live ? g->collected - live : 0;
  double ms = (heap_now_ns() - g->t0) / 1e6;
  double tp = freed / (ms > 0.001 ? ms : 0.001);
  gen_policy_in *l = &g->last;
  l->last_young = g->young;
  if (g->young) {
    g->young_tp = blend(g->young_tp, tp);
    /* What a slid full cycle kept mid was live then (old_after_full
     * counts it): its promotion now is no growth of the old generation.
     * Counted as growth, Whippet's quads at 5x ran a full collection
     * right after the first young one that promoted its tree, which
     * freed nothing (17 of 57 ms of pauses).  Stranded gaps are range
     * that only a full cycle gives back: they count towards the old
     * generation's growth (GEN_WHY_OLD_GREW). */
    size_t credit = g->kept_mid_bytes < g->promoted ? g->kept_mid_bytes : g->promoted;
    g->kept_mid_bytes = 0;
    l->promoted_since_full += g->promoted - credit + stranded;
    h->bytes_promoted += g->promoted;
    l->young_collected = g->collected;
    l->young_freed = freed;
  } else {
    g->full_tp = blend(g->full_tp, tp);
    if (live) g->full_ns_per_byte = blend(g->full_ns_per_byte, ms * 1e6 / (double)live);
    /* All it found live, the mid it kept too, as for a full cycle that
     * promotes everything: the threshold of "old grew" is the same. */
    g->kept_mid_bytes = g->keep_mid && live > g->old_live ? live - g->old_live : 0;
    l->unchecked_shift =
        gen_policy_next_shift(l->unchecked_shift, h->gen.choice.why == GEN_WHY_OLD_UNCHECKED,
                              l->old_after_full + l->promoted_since_full, live);
    g->allocated_at_full = atomic_load(&h->bytes_allocated);
    g->full_end_ns = heap_now_ns();
    l->old_after_full = g->old_live + g->kept_mid_bytes;
    l->promoted_since_full = 0;
    l->young_collected = l->young_freed = 0;
    /* Objects allocated while a concurrent marking ran count as live but
     * were never part of what it collected; the non-moving sweep's frees
     * count too (large objects' do not: their sweep is not counted per
     * cycle). */
    size_t black = g->black < live ? g->black : live;
    uint64_t found = live - black, all = (uint64_t)g->collected + m->nm_freed;
    uint64_t gone = (all > found ? all - found : 0);
    l->full_freed_little = gone * 100 < all * GEN_MIN_FREED_PCT;
  }
}

/* ---- verify=1 ---- */

void mc_gen_verify(mc_state *m, const char *when) {
  fh_heap *h = m->h;
  mc_gen *g = &m->gen;
  if (!h->opt.verify || !mc_gen_enabled(h) || !g->valid) return;
  uintptr_t top = atomic_load(&h->bump[h->active].top);
  gen_cards_verify_range(h, when, g->old_end, top, m->t.begin, g->old_end);
}
