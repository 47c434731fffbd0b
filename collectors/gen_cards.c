/* The card table as the generational collector's remembered set
 * (collectors/gen_cards.h). */
#include "collectors/gen_cards.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap/barrier.h"
#include "heap/large_objects.h"
#include "heap/object.h"

/* The part of the non-moving space jemalloc has mapped: objects lie below. */
static uintptr_t nm_end(fh_heap *h) {
  return h->non_moving.space.begin + arena_mapped(&h->non_moving.arena);
}

/* fn(card_begin, ctx) for each dirty card over [begin, end), both
 * card-aligned; eight clean cards are skipped with one load. */
static void each_dirty(fh_heap *h, uintptr_t begin, uintptr_t end,
                       void (*fn)(fh_heap *h, uintptr_t card, void *ctx), void *ctx) {
  /* Empty: a non-moving space that has allocated nothing yet (its arena
   * starts on demand) ends where it begins; end - 1 is then outside. */
  if (end <= begin) return;
  uint8_t *c = card_for(h, begin), *e = card_for(h, end - 1) + 1;
  while (c < e) {
    if (((uintptr_t)c & 7) == 0 && e - c >= 8) {
      uint64_t w;
      memcpy(&w, c, 8);
      if (!w) {
        c += 8;
        continue;
      }
    }
    if (*c) fn(h, h->resv_begin + ((uintptr_t)(c - h->cards) << FH__CARD_SHIFT), ctx);
    c++;
  }
}

/* Starts of the objects whose payload pointer (8 bytes on) lies on the
 * card at `card`: the holders whose stores dirtied it. */
#define FOR_CARD_OBJECTS(h, card, p)                                                              \
  for (uintptr_t p##_lo = (card) - FH_HEADER_BYTES < (h)->non_moving.space.begin                 \
                              ? (h)->non_moving.space.begin                                       \
                              : (card) - FH_HEADER_BYTES,                                         \
                 p##_hi = (card) + FH_CARD_BYTES - FH_HEADER_BYTES,                               \
                 p = bitmap_next_set(&(h)->non_moving.alloc_bits, p##_lo, p##_hi);                \
       p; p = bitmap_next_set(&(h)->non_moving.alloc_bits, p + 16, p##_hi))

typedef struct visit_old {
  fh_object_fn fn;
  void *ctx;
} visit_old;

static void visit_card(fh_heap *h, uintptr_t card, void *ctx) {
  visit_old *v = ctx;
  FOR_CARD_OBJECTS(h, card, p) v->fn(obj_from_start(p), v->ctx);
}

/* A large object starts on a page; the barrier dirties the card of its
 * payload pointer, the page's first card. */
static void visit_large_card(fh_heap *h, uintptr_t card, void *ctx) {
  visit_old *v = ctx;
  if (los_is_start(&h->los, card)) v->fn(obj_from_start(card), v->ctx);
}

static uintptr_t los_end(fh_heap *h) {
  return atomic_load_explicit(&h->los.frontier, memory_order_acquire);
}

void gen_cards_visit_large(fh_heap *h, fh_object_fn large, void *ctx) {
  if (!h->los.space.ops || los_end(h) == h->los.space.begin) return;
  visit_old l = {large, ctx};
  each_dirty(h, h->los.space.begin, los_end(h), visit_large_card, &l);
}

void gen_cards_visit_old(fh_heap *h, fh_object_fn fn, fh_object_fn large, void *ctx) {
  visit_old v = {fn, ctx};
  each_dirty(h, h->non_moving.space.begin, nm_end(h), visit_card, &v);
  gen_cards_visit_large(h, large, ctx);
}

typedef struct young_refs {
  fh_heap *h;
  const bump_space *young;
} young_refs;

static int is_young(void **slot, void *ctx) {
  young_refs *y = ctx;
  void *p = slot_object(y->h->tags, *slot);
  /* By the header, as collectors test: an empty object at the top has its
   * payload pointer at top itself. */
  uintptr_t a = (uintptr_t)p - FH_HEADER_BYTES;
  return p && a - y->young->space.begin < atomic_load(&y->young->top) - y->young->space.begin;
}

/* Whether obj refers into the active bump space (the young objects). */
static int refers_young(fh_heap *h, void *obj) {
  young_refs y = {h, &h->bump[h->active]};
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&h->types, hdr_type(hd));
  return ti && types_any_ref(ti, obj, hdr_payload(hd), is_young, &y);
}

static void clean_card(fh_heap *h, uintptr_t card, void *ctx) {
  (void)ctx;
  FOR_CARD_OBJECTS(h, card, p) {
    if (refers_young(h, obj_from_start(p))) return;
  }
  *card_for(h, card) = 0;
}

/* A large object on a dirty card that refers to nothing young: settled
 * (heap/large_objects.h). */
static void clean_large_card(fh_heap *h, uintptr_t card, void *ctx) {
  (void)ctx;
  if (!los_is_start(&h->los, card)) return; /* as visit_large_card */
  void *obj = obj_from_start(card);
  if (!refers_young(h, obj)) heap_los_card_settled(h, obj);
}

void gen_cards_clean(fh_heap *h) {
  each_dirty(h, h->non_moving.space.begin, nm_end(h), clean_card, NULL);
  if (h->los.space.ops && los_end(h) > h->los.space.begin)
    each_dirty(h, h->los.space.begin, los_end(h), clean_large_card, NULL);
}

static void redirty_large(void *obj, void *ctx) {
  fh_heap *h = ctx;
  /* Quiet: no collectable referent at all, so none young. */
  if (*card_for(h, (uintptr_t)obj) || los_is_quiet(&h->los, obj)) return;
  if (refers_young(h, obj))
    atomic_store_explicit((_Atomic uint8_t *)card_for(h, (uintptr_t)obj), FH__CARD_DIRTY,
                          memory_order_relaxed);
}

void gen_cards_redirty_large(fh_heap *h) {
  if (h->los.space.ops) h->los.space.ops->walk(&h->los.space, redirty_large, h);
}

/* ---- verify=1 ---------------------------------------------------------- */

typedef struct rs_check {
  fh_heap *h;
  const char *when;
  uintptr_t young_lo, young_hi;
  const void *holder;
} rs_check;

static void check_slot(void **slot, void *ctx) {
  rs_check *c = ctx;
  void *p = slot_object(c->h->tags, *slot);
  uintptr_t a = (uintptr_t)p - FH_HEADER_BYTES;
  if (!p || a - c->young_lo >= c->young_hi - c->young_lo) return;
  if (*card_for(c->h, (uintptr_t)c->holder)) return;
  uint64_t hd = *obj_header(c->holder);
  const fh_type_info *ti = types_get(&c->h->types, hdr_type(hd));
  fprintf(stderr,
          "faultheap verify (%s): remembered set: a reference into the young space lies on a "
          "clean card (a store without fh_write_ref?)\n"
          "  in object %p (type %u %s, %zu bytes), slot %p (offset %td) holds %p\n",
          c->when, c->holder, hdr_type(hd), ti ? ti->name : "?", hdr_payload(hd), (void *)slot,
          (const char *)slot - (const char *)c->holder, *slot);
  /* No fh_dump: the collector holds stats_lock, which it takes. */
  abort();
}

static void check_object(void *obj, void *ctx) {
  rs_check *c = ctx;
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&c->h->types, hdr_type(hd));
  if (!ti) return; /* heap_verify reports bad headers */
  c->holder = obj;
  types_visit_refs(ti, obj, hdr_payload(hd), check_slot, c);
}

/* The holders in [lo, hi) of a bump space, walked by headers. */
static void check_bump_range(rs_check *c, uintptr_t lo, uintptr_t hi) {
  for (uintptr_t s = lo; s < hi;) {
    uint64_t hd = *(const uint64_t *)s;
    if (!obj_bytes(hd)) break; /* heap_verify reports a broken header */
    if (hdr_type(hd) != FH_FILLER_TYPE) check_object(obj_from_start(s), c);
    s += obj_bytes(hd);
  }
}

void gen_cards_verify_range(fh_heap *h, const char *when, uintptr_t young_lo, uintptr_t young_hi,
                            uintptr_t old_lo, uintptr_t old_hi) {
  rs_check c = {h, when, young_lo, young_hi, NULL};
  fh_space *spaces[HEAP_MAX_SPACES];
  unsigned n = heap_spaces(h, spaces);
  for (unsigned i = 0; i < n; i++)
    if (spaces[i]->kind != SPACE_BUMP) spaces[i]->ops->walk(spaces[i], check_object, &c);
  check_bump_range(&c, old_lo, old_hi); /* the old generation of a bump space */
}

void gen_cards_verify_bump(fh_heap *h, const char *when, uintptr_t young_lo, uintptr_t young_hi,
                           uintptr_t holder_lo, uintptr_t holder_hi) {
  rs_check c = {h, when, young_lo, young_hi, NULL};
  check_bump_range(&c, holder_lo, holder_hi);
}

void gen_cards_verify(fh_heap *h, const char *when) {
  const bump_space *b = &h->bump[h->active];
  gen_cards_verify_range(h, when, b->space.begin, atomic_load(&b->top), 0, 0);
}
