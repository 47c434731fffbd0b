/* Adaptive heap sizing (heap/sizer.h). */
#include "heap/sizer.h"

#include <math.h>

#include "heap/heap.h"
#include "spaces/reserve.h"

#define SMOOTH 0.5              /* weight of the newest measurement */
/* The budget is at most what heap_policy=fixed gives: (growth_factor_pct
 * - 100)% of all live data, large objects included (2x at the default
 * 300).  It was 3x, a heap of 4x live where fixed's is 3x, meant as "as
 * far as fixed": wherever the measured rates put the sqrt rule past the
 * bound (fhbench phases' growth and small phases, Whippet's shapes at 5x)
 * adaptive then held a third more than fixed and did fewer collections,
 * a trade fixed could make with its own factor.  Capped at fixed's, the
 * rule only ever gives less room, where it is below fixed (a large heap
 * at a modest allocation rate: phases' big phase, 1.3-1.7x live against
 * fixed's 2x): phases went from 1.0-1.3x fixed's mean resident memory to
 * 0.79-0.85x (3-run medians), at 1.07-1.09x its tracing work.  (Bounded
 * by the traced live data alone, a heap whose live data is mostly one
 * array got a budget of its small objects only: 2.5x Whippet's
 * collections on mt-gcbench.) */
#define MIN_COST_LIVE (1u << 20) /* below it, the cost per byte is noise */

void sizer_init(heap_sizer *s) {
  *s = (heap_sizer){0};
  /* Informed guesses until there is a measurement: 5 GB/s of collection
   * and 1 GB/s of allocation (what GCBench shows on this project's test
   * machine, rounded). */
  s->cost_live = (double)(1u << 20); /* weighs as a 1 MiB collection */
  s->cost_ns = 0.2 * s->cost_live;
  s->gc_ns_per_byte = s->cost_ns / s->cost_live;
  s->alloc_bytes_per_ns = 1.0;
}

static void smooth(double *avg, double x) { *avg = (1.0 - SMOOTH) * *avg + SMOOTH * x; }

/* CPU time of the heap's own threads so far (heap/gc_pool.c charges each
 * task's, and each pause's, when it ends). */
static uint64_t gc_cpu_ns(fh_heap *h) {
  return atomic_load_explicit(&h->pool.user_ns, memory_order_relaxed) +
         atomic_load_explicit(&h->pool.sys_ns, memory_order_relaxed);
}

void sizer_pause_start(fh_heap *h, uint64_t t0) {
  heap_sizer *s = &h->sizer;
  s->pause_start_ns = t0;
  s->cpu_at_start = gc_cpu_ns(h);
  s->folded = 0;
}

void sizer_pause_end(fh_heap *h, uint64_t pause_ns, uint64_t now) {
  heap_sizer *s = &h->sizer;
  s->pending_cost_ns = pause_ns;
  /* Per byte the collection traced: sizer_extra's argument, large
   * objects left out (heap_set_trigger). */
  s->pending_live = s->last_live;
  s->last_end_ns = now;
  s->cpu_at_end = gc_cpu_ns(h); /* the pause's own CPU included (collectors/driver.c) */
}

/* Once per pause: the last collection's cost and the allocation since. */
static void fold(fh_heap *h) {
  heap_sizer *s = &h->sizer;
  if (s->folded) return;
  s->folded = 1;
  /* The last collection's cost: its pause, in which the mutators wait,
   * plus the CPU time the heap's threads spent since (its concurrent
   * phase, which this pause waited for, a sweeper, a prefault), not the
   * phase's wall time: on a busy machine a worker that shares its CPU
   * with the mutators takes several times its CPU time, and counting
   * that made the budget of a concurrent collector grow with the load.
   * (A task's CPU is charged when it returns, possibly just after the
   * phase has closed: then it counts toward the next cycle.) */
  uint64_t cost = s->pending_cost_ns;
  if (s->cpu_at_end && s->cpu_at_start > s->cpu_at_end) cost += s->cpu_at_start - s->cpu_at_end;
  if (s->pending_cost_ns && s->pending_live >= MIN_COST_LIVE) {
    smooth(&s->cost_ns, (double)cost);
    smooth(&s->cost_live, (double)s->pending_live);
    s->gc_ns_per_byte = s->cost_ns / s->cost_live;
  }
  s->pending_cost_ns = 0;
  uint64_t since = atomic_load_explicit(&h->alloc_since_gc, memory_order_relaxed);
  if (s->last_end_ns && s->pause_start_ns > s->last_end_ns && since)
    smooth(&s->alloc_bytes_per_ns, (double)since / (double)(s->pause_start_ns - s->last_end_ns));
}

size_t sizer_extra(fh_heap *h, size_t live, size_t all_live) {
  heap_sizer *s = &h->sizer;
  fold(h);
  /* Unitless: ns of collection per ns of mutator, per byte of live data
   * collected once per byte allocated. */
  double ratio = s->alloc_bytes_per_ns * s->gc_ns_per_byte;
  double extra = sqrt((double)live * (double)h->opt.heap_expansiveness * ratio);
  s->last_live = live;
  double most = (double)(h->opt.growth_factor_pct - 100) / 100.0 *
                (double)(all_live > live ? all_live : live);
  if (!(extra <= most)) extra = most; /* NaN too */
  size_t e = (size_t)extra;
  if (e < h->opt.min_alloc_trigger) e = h->opt.min_alloc_trigger;
  s->last_extra = e;
  return e;
}

int sizer_flip_fits(fh_heap *h, size_t old_used, size_t live) {
  if (live > old_used) live = old_used;
  /* The old pages, their live data's copy, and what the mutators allocate
   * meanwhile: the phase may last as long as a whole cycle (a worker that
   * shares its CPU with them), so as much as the cycle that just ended. */
  size_t garbage = old_used - live, nm = heap_nonmoving_used(h), lim = heap_limit(h);
  if (old_used > lim) return 0;
  size_t need = old_used + live; /* <= 2 * lim: no wrap */
  return need <= lim && garbage <= lim - need && nm <= lim - need - garbage;
}

#define RESIDENT_WINDOW_MAX ((size_t)32 << 20)

size_t sizer_resident_window(fh_heap *h) {
  size_t w = h->gc_trigger / 4;
  return w < RESIDENT_WINDOW_MAX ? w : RESIDENT_WINDOW_MAX;
}

#define TABLE_DIVISOR 16 /* 2 x 1/64 of bitmaps, 16/512 of chunks */

size_t sizer_moving_room(fh_heap *h, size_t occupied, size_t other, int thp) {
  size_t lim = heap_limit(h), d = TABLE_DIVISOR;
  /* occupied + r + (occupied + r) / d + other <= lim, solved for r */
  size_t fixed = occupied + occupied / d + other;
  if (fixed >= lim) return 0;
  size_t r = (lim - fixed) / (d + 1) * d;
  if (thp) {
    /* The space starts on a huge page.  The trigger stops claims once the
     * allocation since the collection reaches it, so each thread's last
     * claim (a TLAB, or an object past tlab_size / 4 up to los_threshold)
     * may pass it, and the top is page-aligned: the room stops that much
     * short of the boundary, or the last claim faults in the next huge
     * page whole (mt-gcbench at 2x: 20 MiB resident for an 18 MiB window). */
    size_t claim = h->opt.tlab_size + (h->opt.los_threshold ? h->opt.los_threshold : h->opt.tlab_size);
    size_t margin = claim * (h->nthreads ? h->nthreads : 1) + FH_PAGE;
    size_t end = (occupied + r) & ~(FH_PMD - 1);
    if (end > occupied + margin && end - occupied - margin >= r / 2) r = end - occupied - margin;
  }
  return r;
}

void sizer_dump(fh_heap *h, FILE *out) {
  if (h->opt.heap_policy != FH_HEAP_ADAPTIVE) return;
  const heap_sizer *s = &h->sizer;
  fprintf(out, "  heap sizing: adaptive (expansiveness %zu MiB): allocation %.0f MB/s, collection "
               "%.0f MB/s of live data, last budget %.1f MiB\n",
          h->opt.heap_expansiveness >> 20, s->alloc_bytes_per_ns * 1e3,
          s->gc_ns_per_byte > 0 ? 1e3 / s->gc_ns_per_byte : 0.0, s->last_extra / 1048576.0);
}
