/* Young or full: the policy of the generational collectors (gen_semispace;
 * mark_compact and concurrent_compact with generational=1, mc_gen.h),
 * apart from its mechanism (collectors/semi_space.c) so that it can be
 * tested on its own and its choice printed by fh_dump.
 *
 * ART's GSS collects the whole heap on an explicit request and on a last
 * attempt before running out, and after a young collection once the bytes
 * promoted since the last whole-heap collection pass 4 MiB.  A fixed 4 MiB
 * is small beside a large old generation (every few young collections
 * would be full ones) and large beside a small heap (the promote space
 * could fill first), so here the threshold is a fraction of the old
 * generation left by the last full collection, and when the old
 * generation is small at least GEN_PROMOTE_MIN (1 MiB) or 1/16 of
 * heap_max, whichever is less.  Two more reasons for a full collection:
 * the promote space refused an object (its survivors were copied instead,
 * and only a full collection frees old space), and a young collection
 * that freed too little (most of what it looked at was live: the garbage,
 * if any, is old), unless the last full one freed too little as well. */
#ifndef FH_GEN_POLICY_H_
#define FH_GEN_POLICY_H_

#include <stddef.h>
#include <stdint.h>

/* Full once the old generation grew by this much of itself since the last
 * full collection... */
#define GEN_FULL_GROWTH_PCT 50u
/* ...or a young collection freed less than this share of what it
 * collected. */
#define GEN_MIN_FREED_PCT 10u
/* The least growth that makes a full collection (below heap_max / 16).
 * 4 MiB let a small heap keep up to 4 MiB of dead old objects, and the
 * budget grows from them: fhscheme's rewrite (0.5 MiB live) peaked at
 * 13.7 MiB with generations, 8.4 with 1 MiB, 5.9 without generations.
 * The heaps this decides for are small, and so are their full cycles. */
#define GEN_PROMOTE_MIN ((size_t)1 << 20)

typedef enum {
  GEN_WHY_REQUESTED_YOUNG, /* FH_COLLECT_YOUNG */
  GEN_WHY_YOUNG,           /* nothing asked for more */
  GEN_WHY_EXPLICIT,        /* fh_collect(FH_COLLECT_DEFAULT), fh_prefork, gc_stress */
  GEN_WHY_ALLOC_FAILURE,   /* the last attempt before an allocation fails */
  GEN_WHY_PROMOTE_FULL,    /* the promote space refused an object last time */
  GEN_WHY_OLD_GREW,        /* promoted since the last full passed the threshold */
  GEN_WHY_FREED_LITTLE,    /* the last young collection freed too little */
  GEN_WHY_THROUGHPUT,      /* young collections free less per ms than half a full one's */
  GEN_WHY_NO_GENERATIONS,  /* no valid generations (another kind of collection ran) */
} gen_why;

typedef struct gen_policy_in {
  int explicit_full;    /* an explicit collection of the default kind */
  int requested_young;  /* FH_COLLECT_YOUNG */
  int alloc_failure;    /* GC_CAUSE_ALLOC_FAILURE */
  int promote_failed;   /* the previous collection could not promote everything */
  size_t heap_max;
  size_t old_after_full;      /* promote-space bytes after the last full collection */
  size_t promoted_since_full; /* bytes promoted since then (by young collections) */
  size_t young_collected;     /* the last young collection: from-space bytes it looked at */
  size_t young_freed;         /* ...and freed; both 0 when the last one was full */
  /* Generational mark-compact (collectors/mc_gen.h); 0 elsewhere. */
  int no_generations;         /* the generations are not known: full */
  double young_tp, full_tp;   /* bytes freed per ms of pause, running averages
                                 (0: not measured yet).  As ART: after a young
                                 collection (last_young), young again while
                                 young_tp * GEN_YOUNG_TP_ADJUST >= full_tp;
                                 after a full one, young (so a young
                                 collection that did badly once is tried
                                 again after the next full one) */
  int last_young;
  /* The last full collection freed under GEN_MIN_FREED_PCT of what it
   * collected (generational mark-compact; 0 elsewhere). */
  int full_freed_little;
} gen_policy_in;
#define GEN_YOUNG_TP_ADJUST 0.5

typedef struct gen_choice {
  int young; /* 1: collect the young space only */
  gen_why why;
} gen_choice;

/* Pure: the same input, the same choice. */
gen_choice gen_policy_choose(const gen_policy_in *in);
/* Bytes promoted since the last full collection that make the next one full. */
size_t gen_policy_old_threshold(size_t old_after_full, size_t heap_max);
const char *gen_why_name(gen_why w);

/* The generational collector's state in the heap (heap.h: h->gen). */
typedef struct gen_state {
  /* Objects of bump[aged_bump] below aged_end survived a collection: the
   * next one promotes them.  Valid only while h->collections == aged_at
   * (any other collection, fh_prefork or a fork child's reset makes the
   * whole active space young again, which is safe: survivors are copied
   * once more before being promoted). */
  int aged_bump;
  uintptr_t aged_end;
  uint64_t aged_at;
  int request_young; /* gc_run: this collection is an FH_COLLECT_YOUNG */
  int tcache; /* jemalloc tcache for promotions: -2 not yet made, -1 none */
  int collecting_young; /* the running collection is young (for the pause accounting) */
  gen_policy_in last;   /* figures of the last collections, for the next choice */
  gen_choice choice;    /* the last one, for fh_dump */
} gen_state;

#endif
