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
  GEN_WHY_OLD_UNCHECKED,   /* heap_policy=adaptive: the old generation went unchecked too long */
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
  /* Checking the old generation (GEN_WHY_OLD_UNCHECKED; generational
   * mark-compact with heap_policy=adaptive, 0 elsewhere).  Young
   * collections never look at the old generation, so they cannot see it
   * die: a program that drops most of its data and then only allocates
   * short-lived objects (fhbench phases' fall from 256 MiB to 16) keeps
   * the dead old generation, and the adaptive sizer sizes the heap from
   * it, until promotion brings a full collection, which may be never.
   * So a full collection comes once the old generation is most of the
   * heap, and the allocation and the time since the last full one are
   * each worth one:
   *   old >= GEN_UNCHECKED_OLD_PER_WINDOW * young_window,
   *   allocated_since_full >= old << unchecked_shift, and
   *   ns_since_full >= GEN_UNCHECKED_TIME_PER_COST * full_ns_per_byte * old,
   * old being the old generation's size.  The first leaves small old
   * generations to the growth rule, which catches their promoted garbage
   * soon enough: GCBench's 4 MiB, beside 8 GB/s of allocation, was
   * checked at every doubling of its budget (7 full collections against
   * 1, 1.35x the time); fhbench phases' 19 MiB after the fall, as large as
   * its window, every third collection (1.18x the collector's CPU time).
   * The second bounds what a dead old generation holds to its size in
   * allocation, doubled by each check that found it live (unchecked_shift,
   * up to GEN_UNCHECKED_SHIFT_MAX: at most 64 times its size, so that data
   * that stayed live a long time and then dies is still checked), so that
   * a program whose old data stays live pays a few checks; any full
   * collection that frees half of it starts again at 0.  The third keeps a check's cost, estimated as if
   * all of the old generation were live, under a quarter of the time
   * since the last one (ZGC's proactive collections bound theirs by
   * time).  Not doubled: a check just before a fall (fhbench phases' big
   * steady phase, whose live data a check finds live) would put the next
   * one past the end of the run. */
  int check_old;
  size_t young_window; /* the allocation between two collections (h->gc_trigger) */
  uint64_t allocated_since_full;
  uint64_t ns_since_full; /* since the last full collection ended */
  double full_ns_per_byte; /* a full collection's pause per live byte (0: unknown) */
  unsigned unchecked_shift;
} gen_policy_in;
#define GEN_UNCHECKED_SHIFT_MAX 6u
#define GEN_UNCHECKED_OLD_PER_WINDOW 2u
#define GEN_UNCHECKED_TIME_PER_COST 4u
#define GEN_YOUNG_TP_ADJUST 0.5

typedef struct gen_choice {
  int young; /* 1: collect the young space only */
  gen_why why;
} gen_choice;

/* Pure: the same input, the same choice. */
gen_choice gen_policy_choose(const gen_policy_in *in);
/* Bytes promoted since the last full collection that make the next one full. */
size_t gen_policy_old_threshold(size_t old_after_full, size_t heap_max);
/* After a full collection that found `live` bytes of an old generation of
 * `old_before` (and the young objects since): the next unchecked_shift
 * (gen_policy_in).  `checked`: it was a GEN_WHY_OLD_UNCHECKED one. */
unsigned gen_policy_next_shift(unsigned shift, int checked, size_t old_before, size_t live);
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
