/* Pacing the GC's concurrent work (issue 16: minimum mutator utilisation).
 *
 * The concurrent marker and mark_sweep's background sweeper are threads of
 * their own.  On a machine whose CPUs the mutators keep busy (fhbench
 * pause: two spinning mutators on two CPUs), an unpaced GC thread shares a
 * CPU with one mutator, and the scheduler alternates them in slices of
 * its tick (4 ms at HZ=250): that mutator then stops for 4 ms of every 8
 * for the whole marking, and the minimum mutator utilisation over 10 ms
 * windows fell to 0.05-0.14 although no pause was longer than 1 ms.
 *
 * Paced work runs in bursts of GC_PACE_BURST_NS and sleeps between them,
 * so that it takes at most gc_cpu_pct percent of one CPU (Go's collector
 * takes 25% of GOMAXPROCS the same way).  A burst that wakes on a busy CPU
 * preempts one mutator for its length and gives the CPU back, instead of
 * holding it for a scheduler slice.
 *
 * Pacing must never make the program wait for the collector, so the work
 * runs unpaced (hurries) when
 *   - the mutators have allocated more than half of the cycle's budget
 *     (alloc_since_gc against gc_trigger): from there the share grows
 *     linearly to 100% when the budget is spent, when the trigger would
 *     make the next allocation wait for this cycle;
 *   - anyone waits for it (gc_pace_hurry_begin: fh_gc_wait, a collection
 *     that waits for the marker, a pause that stops it); the sleeping work
 *     is woken at once.
 *
 * How the work yields: it gets a gc_budget per burst and polls
 * gc_budget_over every few hundred objects; a budget also carries the
 * work's stop flag (the pause that ends it), which ends it for good. */
#ifndef FH_GC_PACE_H_
#define FH_GC_PACE_H_

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct fh_heap;

/* A burst's length: the longest a paced thread holds a CPU it shares with
 * a mutator.  1 ms: at 20% a 10 ms window then loses at most 2 ms to it,
 * and a burst is still some 200 times the cost of the sleep and wake-up
 * around it (5 us on this machine). */
#define GC_PACE_BURST_NS 1000000u

typedef struct gc_pace {
  pthread_mutex_t lock;
  pthread_cond_t cv;         /* CLOCK_MONOTONIC; hurry wakes the sleepers */
  _Atomic unsigned hurry;    /* threads waiting for the paced work */
  uint64_t burst_ns;         /* GC_PACE_BURST_NS (tests shorten it) */
  unsigned cpus;             /* the process's CPUs (tests change it) */
  _Atomic unsigned resting;  /* threads in a rest now */
  _Atomic uint64_t rests;    /* sleeps between bursts, and their time */
  _Atomic uint64_t rest_ns;
  _Atomic uint64_t rests_woken; /* of them, ended early by a hurry or stop */
} gc_pace;

/* One burst of paced work.  until_ns 0: no time limit (the world
 * stopped, tests). */
typedef struct gc_budget {
  const _Atomic int *stop; /* set: the work ends (a pause is coming) */
  uint64_t until_ns;
  int yielded; /* gc_budget_over returned 1 because the burst was over */
} gc_budget;

uint64_t heap_now_ns(void);

/* 1 when the work must return now: its stop flag is set, or its burst is
 * over (then yielded is set).  A clock read (vDSO, ~20 ns): callers poll it
 * every few hundred objects. */
static inline int gc_budget_over(gc_budget *b) {
  if (b->stop && atomic_load_explicit(b->stop, memory_order_relaxed)) return 1;
  if (b->until_ns && heap_now_ns() >= b->until_ns) return b->yielded = 1;
  return 0;
}

/* A budget without a time limit (the world stopped, or tests). */
static inline gc_budget gc_budget_unpaced(const _Atomic int *stop) {
  return (gc_budget){.stop = stop};
}

void gc_pace_init(gc_pace *p, unsigned cpus);
void gc_pace_destroy(gc_pace *p);
/* The child of a fork: no paced thread exists there. */
void gc_pace_after_fork_child(gc_pace *p);

/* The share of one CPU, in percent, the paced work may take now (100:
 * unpaced: also when a CPU is free, that is when the running mutators
 * are fewer than the CPUs, since the work then takes no mutator's CPU). */
unsigned gc_pace_duty_pct(struct fh_heap *h);
/* The next burst of h's paced work, which `stop` ends. */
gc_budget gc_pace_burst(struct fh_heap *h, const _Atomic int *stop);
/* After a burst that yielded: sleep so that the work keeps to its share
 * (see above), unless stop is set or someone hurries it (wakes at once). */
void gc_pace_rest(struct fh_heap *h, const _Atomic int *stop);
/* Run `work` in bursts until it returns without having yielded (done) or
 * stop is set, resting between them while the share is under 100%. */
void gc_pace_run(struct fh_heap *h, const _Atomic int *stop, void (*work)(void *, gc_budget *),
                 void *arg);

/* A thread is about to wait for the paced work (or to stop it): it runs
 * unpaced, and a sleeping one wakes, until the matching end. */
void gc_pace_hurry_begin(struct fh_heap *h);
void gc_pace_hurry_end(struct fh_heap *h);
/* Tests: block until some thread hurries the paced work (waits for it). */
void gc_pace_await_hurry(struct fh_heap *h);

#endif
