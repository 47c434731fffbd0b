/* Pacing the GC's concurrent work (heap/gc_pace.h). */
#include "heap/gc_pace.h"

#include <time.h>

#include "heap/heap.h"

void gc_pace_init(gc_pace *p, unsigned cpus) {
  pthread_mutex_init(&p->lock, NULL);
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cv, &a);
  pthread_condattr_destroy(&a);
  atomic_store(&p->hurry, 0);
  p->burst_ns = GC_PACE_BURST_NS;
  p->cpus = cpus ? cpus : 1;
  atomic_store(&p->rests, 0);
  atomic_store(&p->rest_ns, 0);
  atomic_store(&p->rests_woken, 0);
  atomic_store(&p->resting, 0);
}

void gc_pace_destroy(gc_pace *p) {
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->lock);
}

void gc_pace_after_fork_child(gc_pace *p) {
  uint64_t rests = atomic_load(&p->rests), ns = atomic_load(&p->rest_ns);
  uint64_t woken = atomic_load(&p->rests_woken), burst = p->burst_ns;
  gc_pace_init(p, p->cpus); /* the threads that waited or slept are not in the child */
  p->burst_ns = burst;
  atomic_store(&p->rests, rests);
  atomic_store(&p->rest_ns, ns);
  atomic_store(&p->rests_woken, woken);
}

/* 1 when the paced thread takes a CPU some mutator could use: at least
 * as many mutators are running (attached, neither parked nor in a
 * blocking region) as the process has CPUs.  A single-threaded program
 * on two CPUs leaves the GC one to itself, where pacing only delays the
 * work.  A running mutator that is in fact idle counts too: pacing then
 * errs towards the mutators.  Under world_lock, which keeps the list and
 * the states still (a pause does not hold it while stopped). */
static int cpus_contended(fh_heap *h) {
  unsigned running = 0;
  fh_thread *t;
  pthread_mutex_lock(&h->world_lock);
  cds_list_for_each_entry(t, &h->threads, link) running += t->state == THREAD_RUNNING;
  pthread_mutex_unlock(&h->world_lock);
  return running >= __atomic_load_n(&h->pace.cpus, __ATOMIC_RELAXED);
}

/* The share of one CPU, in percent, the paced work may take now: the
 * option while the mutators have used at most half of the cycle's
 * allocation budget, then growing linearly to 100 when it is spent. */
unsigned gc_pace_duty_pct(fh_heap *h) {
  /* Atomic: an embedder's thread may change the share while paced work
   * runs (tests do). */
  unsigned pct = __atomic_load_n(&h->opt.gc_cpu_pct, __ATOMIC_RELAXED);
  if (pct >= 100 || atomic_load_explicit(&h->pace.hurry, memory_order_relaxed) ||
      !cpus_contended(h))
    return 100;
  size_t budget = h->gc_trigger, used = atomic_load_explicit(&h->alloc_since_gc, memory_order_relaxed);
  if (!budget || used >= budget) return 100;
  if (used > budget / 2) {
    double over = (double)(used - budget / 2) / (double)(budget - budget / 2);
    pct += (unsigned)((100 - pct) * over);
  }
  return pct < 100 ? pct : 100;
}

/* Every burst ends in time, unpaced ones too: the share is looked at
 * again after each (a sweeper that began while a CPU was free, during a
 * single-threaded phase, otherwise ran unpaced to its end, 115 ms of
 * fhbench pause's measured span). */
gc_budget gc_pace_burst(fh_heap *h, const _Atomic int *stop) {
  gc_budget b = gc_budget_unpaced(stop);
  b.until_ns = heap_now_ns() + h->pace.burst_ns;
  return b;
}

void gc_pace_rest(fh_heap *h, const _Atomic int *stop) {
  gc_pace *p = &h->pace;
  unsigned pct = gc_pace_duty_pct(h);
  if (pct >= 100 || (stop && atomic_load(stop))) return;
  uint64_t ns = p->burst_ns * (100 - pct) / pct, t0 = heap_now_ns();
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += (time_t)(ns / 1000000000u);
  until.tv_nsec += (long)(ns % 1000000000u);
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  atomic_fetch_add(&p->resting, 1);
  int woken = 0;
  pthread_mutex_lock(&p->lock);
  /* hurry and stop are set before the broadcast that wakes this wait,
   * and read under the lock the broadcaster takes: no wake-up is lost. */
  for (;;) {
    if (atomic_load(&p->hurry) || (stop && atomic_load(stop))) {
      woken = 1;
      break;
    }
    if (pthread_cond_timedwait(&p->cv, &p->lock, &until) != 0) break;
  }
  pthread_mutex_unlock(&p->lock);
  atomic_fetch_sub(&p->resting, 1);
  atomic_fetch_add_explicit(&p->rests, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->rests_woken, (uint64_t)woken, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->rest_ns, heap_now_ns() - t0, memory_order_relaxed);
}

void gc_pace_run(fh_heap *h, const _Atomic int *stop, void (*work)(void *, gc_budget *),
                 void *arg) {
  for (;;) {
    gc_budget b = gc_pace_burst(h, stop);
    work(arg, &b);
    if (!b.yielded || (stop && atomic_load(stop))) return;
    gc_pace_rest(h, stop);
  }
}

void gc_pace_hurry_begin(fh_heap *h) {
  gc_pace *p = &h->pace;
  pthread_mutex_lock(&p->lock);
  atomic_fetch_add(&p->hurry, 1);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->lock);
}

void gc_pace_hurry_end(fh_heap *h) { atomic_fetch_sub(&h->pace.hurry, 1); }

void gc_pace_await_hurry(fh_heap *h) {
  gc_pace *p = &h->pace;
  pthread_mutex_lock(&p->lock);
  /* hurry is raised before the broadcast, under this lock (hurry_begin) */
  while (!atomic_load(&p->hurry)) pthread_cond_wait(&p->cv, &p->lock);
  pthread_mutex_unlock(&p->lock);
}
