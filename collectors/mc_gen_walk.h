/* The old generation's objects on its dirty cards (generational
 * mark-compact, collectors/mc_gen.h): walk points per card, the walk that
 * finds a card's objects by their headers, and the queue that prefetches
 * cards ahead of it.  Marking (mc_gen_visit_old) and the young update
 * (mc_gen.c) walk the cards through them. */
#ifndef FH_MC_GEN_WALK_H_
#define FH_MC_GEN_WALK_H_

#include <stdint.h>

#include "collectors/mc.h"
#include "heap/barrier.h"
#include "spaces/reserve.h"

/* An object [s, e) of the old generation was walked: it covers the first
 * byte of the cards that start in it, so s is their walk point.  (Any
 * object start stays one until a full collection: old objects never move
 * in a young one, and a hole below the old end is handed out from its
 * filler's start, so a walk from there passes over what was allocated
 * into it.) */
static inline void note_walk(uintptr_t *walk, uintptr_t begin, uintptr_t s, uintptr_t e) {
  for (uintptr_t b = align_up(s, FH_CARD_BYTES); b < e; b += FH_CARD_BYTES)
    walk[(b - begin) / FH_CARD_BYTES] = s;
}

typedef struct card_walk {
  mc_state *m;
  uintptr_t end; /* the old generation's end */
  uintptr_t cur; /* the walk's next object start (0: none yet) */
} card_walk;

/* fn(obj) for every old object whose payload pointer lies on the card at
 * cs (starts in [cs - 8, cs + 504)), walking by headers from w's cursor
 * or a walk point.  Cards must come in ascending order for one walk. */
void card_objects(card_walk *w, uintptr_t cs, fh_object_fn fn, void *ctx);

/* The dirty cards of the old generation are cold, typically one here and
 * one there: walked one by one, every header is a cache miss that the
 * next one waits for.  So they pass through a short queue, their lines
 * (and their walk points) prefetched as they enter it, and CARD_AHEAD
 * cards' misses overlap (fhbench young, 1024 dirty cards over 64 MiB:
 * the card walks took half of a young pause's CPU time).  FIFO: cards
 * are still walked in ascending order (card_walk's cursor). */
#define CARD_AHEAD 8

typedef struct card_queue {
  uintptr_t q[CARD_AHEAD];
  unsigned head, n;
  const uintptr_t *walk;
  uintptr_t begin;
  void (*fn)(uintptr_t card, void *ctx);
  void *ctx;
} card_queue;

void card_queue_push(card_queue *q, uintptr_t c);
void card_queue_drain(card_queue *q);
/* cards_visit_dirty's callback: each card of [cb, ce) into the queue ctx. */
void queue_cards(uintptr_t cb, uintptr_t ce, void *ctx);

#endif
