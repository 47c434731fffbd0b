/* Figures of the compactor: the fault service-time histogram filled by the
 * resolvers, the last cycle's figures fh_get_stats reports (last_cycle,
 * uffd_fault_*), the compactor's lines in fh_dump, and the lock-free
 * readings fh_gc_phase_open and fh_gc_transient_bytes. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectors/mc.h"
#include "heap/error.h"

/* Buckets: 250 ns wide below 100 us, then 100 us wide up to ~11 ms. */
void mc_record_fault_ns(mc_state *m, uint64_t ns) {
  uint64_t b = ns < 100000 ? ns / 250 : 400 + (ns - 100000) / 100000;
  if (b >= MC_HIST_BUCKETS) b = MC_HIST_BUCKETS - 1;
  atomic_fetch_add_explicit(&m->fault_hist[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->fault_ns_total, ns, memory_order_relaxed);
}

void mc_dump(fh_heap *h, FILE *out) {
  const char *why;
  int avail = mc_concurrent_available(&why);
  if (h->opt.collector == FH_CONCURRENT_COMPACT && !avail)
    fprintf(out, "  concurrent_compact unavailable (%s): collecting with mark_compact\n", why);
  mc_state *m = h->mc;
  if (m && m->mode_note)
    fprintf(out, "  compaction: last cycle %s; from-space %zu MiB reserved, fault lookahead %u\n",
            m->mode_note, m->t.capacity >> 20, m->lookahead);
  if (m && (m->slide_cycles || m->build_cycles))
    fprintf(out, "  compaction: %llu cycles slid in place in the pause, %llu moved aside and built\n",
            (unsigned long long)m->slide_cycles, (unsigned long long)m->build_cycles);
  if (m && m->chose && m->cmarked_choice)
    fprintf(out, "  compaction: last cycle (marked concurrently) chose to %s: slide's pause "
                 "estimated %.0f us for %zu KiB live (%.2fx the default rates, as learned), "
                 "flip's %.0f us + pinned pages%s\n",
            m->chose_slide ? "slide in the pause" : "flip", m->choice_est_ns / 1e3,
            m->live_bytes >> 10, m->policy.pause_slide_scale, m->policy.pause_flip_ns / 1e3,
            m->policy.force >= 0 ? " (forced by FH_MC_SLIDE)" : "");
  else if (m && m->chose)
    fprintf(out, "  compaction: last cycle chose to %s: slide estimated %.0f us for %zu KiB live, "
                 "flip's fixed cost %.0f us + %.0f us (refaulting %zu KiB a slide keeps, "
                 "promoting %zu KiB a slide keeps young)%s\n",
            m->chose_slide ? "slide in the pause" : "flip", m->choice_est_ns / 1e3,
            m->live_bytes >> 10, m->policy.flip_fixed_ns / 1e3, m->choice_extra_ns / 1e3,
            m->choice_refault_bytes >> 10, m->choice_young_kept >> 10,
            m->policy.force >= 0 ? " (forced by FH_MC_SLIDE)" : "");
  if (m && mc_gen_enabled(h) && m->gen.valid)
    fprintf(out, "  compaction: generations: old %zu KiB, mid %zu KiB (then young); last cycle %s, "
                 "promoted %zu KiB; throughput young %.0f, full %.0f KiB/ms\n",
            (m->gen.old_end - m->t.begin) >> 10, (m->gen.mid_end - m->gen.old_end) >> 10,
            m->gen.how, (m->gen.young ? m->gen.promoted : 0) >> 10, m->gen.young_tp / 1024,
            m->gen.full_tp / 1024);
  if (m && m->pinned_objects)
    fprintf(out, "  compaction: last cycle kept %zu pinned objects (%zu KiB) in place, in %zu "
                 "pinned ranges the rest slid around\n",
            m->pinned_objects, m->pinned_bytes >> 10, m->pinned_ranges);
  if (m && (m->large.total_objects || m->large.total_fallbacks))
    fprintf(out, "  compaction: large reference arrays fixed after the flip, page by page: %llu; "
                 "updated in the flip pause instead (a system call failed): %llu\n",
            (unsigned long long)m->large.total_objects,
            (unsigned long long)m->large.total_fallbacks);
  if (m && atomic_load(&m->uffd_errno))
    fprintf(out, "  compaction: userfaultfd ioctls failed in the last cycle (%s): %zu pages "
                 "installed by mremap instead, the uffd reopened%s\n",
            strerror(atomic_load(&m->uffd_errno)), atomic_load(&m->remap_pages),
            atomic_load(&m->install_stuck) ? "; a page could not be installed at all" : "");
}

static double hist_percentile_us(const uint64_t *hist, uint64_t total, double pct) {
  uint64_t want = (uint64_t)((double)total * pct / 100.0), seen = 0;
  for (int b = 0; b < MC_HIST_BUCKETS; b++) {
    seen += hist[b];
    if (seen > want || (seen == total && hist[b]))
      return b < 400 ? (b + 0.5) * 0.25 : 100.0 + (b - 400 + 0.5) * 100.0;
  }
  return 0;
}

/* Public, lock-free: see faultheap.h.  The heap's concurrent phase
 * (compaction, sweeping) is read under world_lock, which a pause holds
 * only briefly; the markers' bitmaps are an atomic of the compactor's. */
int fh_gc_phase_open(fh_heap *h) {
  if (!h) {
    fh_error_set("fh_gc_phase_open: heap is NULL");
    return 0;
  }
  return mc_phase_open(h);
}

size_t fh_gc_transient_bytes(fh_heap *h) {
  if (!h) {
    fh_error_set("fh_gc_transient_bytes: heap is NULL");
    return 0;
  }
  /* From a thread of the embedder's own, during a cycle: the state may be
   * created meanwhile (mc_get publishes it with a release store), or
   * replaced (mc_stats_retire).  Announcing ourselves before loading the
   * pointer, both sequentially consistent, pairs with the retirer's store
   * of NULL before it counts us: either we see NULL or it sees us. */
  atomic_fetch_add(&h->mc_watchers, 1);
  mc_state *m = __atomic_load_n(&h->mc, __ATOMIC_SEQ_CST);
  size_t bytes = m ? atomic_load(&m->t.extra_resident) : 0;
  atomic_fetch_sub(&h->mc_watchers, 1);
  return bytes;
}

void mc_stats_retire(fh_heap *h, mc_state *m) {
  __atomic_store_n(&h->mc, NULL, __ATOMIC_SEQ_CST);
  while (atomic_load(&h->mc_watchers)) sched_yield(); /* a few loads at most */
  mc_state_destroy(m);
}

/* Under stats_lock (fh_get_stats): the pause's figures were written in a
 * pause under it too.  The concurrent phase's are the worker's and the
 * releaser's, written while the phase runs: read only once it has ended
 * (its end is published under world_lock, which mc_phase_open takes), and
 * only when the last collection flipped (a slide leaves the previous
 * flip's there). */
void mc_stats_fill(fh_heap *h, fh_stats *s) {
  mc_state *m = __atomic_load_n(&h->mc, __ATOMIC_ACQUIRE);
  if (!m) return;
  fh_cycle_stats *c = &s->last_cycle;
  c->mark_ns = m->mark_ns, c->forward_ns = m->forward_ns, c->update_ns = m->update_ns;
  c->flip_mremap_ns = m->mremap_ns;
  c->build_ns = m->build_ns, c->build_threads = m->build_threads;
  c->build_cpu_ns = atomic_load(&m->build_cpu_ns);
  c->live_bytes = m->live_bytes, c->table_bytes = m->table_bytes;
  c->pinned_ranges = m->pinned_ranges, c->pinned_bytes = m->pinned_bytes;
  const fh_pause_record *last =
      h->pauses ? &h->recent_pauses[(h->pauses - 1) % FH_PAUSE_RECENT] : NULL;
  int flipped = last && last->kind == FH_PAUSE_FLIP;
  if (flipped) c->flip_register_ns = m->register_ns; /* a stop-the-world build registers none */
  if (flipped && !mc_phase_open(h)) {
    c->worker_ns = m->worker_ns, c->worker_cpu_ns = m->worker_cpu_ns;
    c->worker_bytes = m->worker_bytes, c->release_cpu_ns = m->release_cpu_ns;
  }
  uint64_t hist[MC_HIST_BUCKETS], total = 0;
  for (int b = 0; b < MC_HIST_BUCKETS; b++) {
    hist[b] = atomic_load(&m->fault_hist[b]);
    total += hist[b];
  }
  s->uffd_fault_ns_total = atomic_load(&m->fault_ns_total);
  if (total) {
    s->uffd_fault_p50_ns = (uint64_t)(hist_percentile_us(hist, total, 50) * 1e3);
    s->uffd_fault_p99_ns = (uint64_t)(hist_percentile_us(hist, total, 99) * 1e3);
  }
}

void mc_trace(mc_state *m, const char *what) {
  static int trace = -1;
  if (trace < 0) trace = getenv("FH_MC_TRACE") != NULL;
  if (!trace) return;
  fprintf(stderr,
          "faultheap mc %s: used %zu KiB live %zu KiB; mark %.2f forward %.2f mremap %.3f "
          "update %.2f (moving space %.2f) %s %.2f ms; moved %zu KiB, top %zu KiB\n",
          what, m->old_used >> 10, m->t.live_bytes >> 10, m->mark_ns / 1e6, m->forward_ns / 1e6,
          m->mremap_ns / 1e6, m->update_ns / 1e6, m->slid ? m->slide_update_ns / 1e6 : 0.0,
          m->slid ? "slide" : "build", m->build_ns / 1e6, m->t.move_bytes >> 10,
          (size_t)(m->t.new_top - m->t.begin) >> 10);
  const fwd_tables *t = &m->t;
  if (!t->nranges) return;
  /* Where pins cost memory: the ranges' dead words (fillers), the gaps
   * below the ranges, and the destination top against the live bytes. */
  size_t gaps = 0, span = 0;
  for (size_t r = 0; r < t->nranges; r++) {
    gaps += t->ranges[r].lo - t->ranges[r].gap_lo;
    span += t->ranges[r].hi - t->ranges[r].lo;
  }
  fprintf(stderr,
          "faultheap mc pins: %zu objects in %zu ranges (%zu KiB), fill %zu KiB, gaps %zu KiB, "
          "new top %zu KiB\n",
          t->pinned_objects, t->nranges, span >> 10, t->range_fill_bytes >> 10, gaps >> 10,
          (size_t)(t->new_top - t->begin) >> 10);
}
