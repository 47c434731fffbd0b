/* Figures of the compactor: the fault service-time histogram filled by the
 * resolvers, the per-cycle figures fhbench reads (mc_stats.h), and the
 * compactor's lines in fh_dump. */
#include <stdio.h>
#include <string.h>

#include "collectors/mc.h"
#include "collectors/mc_stats.h"

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
  if (m && m->chose)
    fprintf(out, "  compaction: last cycle chose to %s: slide estimated %.0f us for %zu KiB live, "
                 "flip's fixed cost %.0f us%s\n",
            m->chose_slide ? "slide in the pause" : "flip", m->choice_est_ns / 1e3,
            m->live_bytes >> 10, m->policy.flip_fixed_ns / 1e3,
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

int mc_figures_phase_open(fh_heap *h) { return mc_phase_open(h); }

size_t mc_figures_marker_bytes(fh_heap *h) {
  /* From a thread of the benchmark's own, during a cycle: the state may be
   * created meanwhile (mc_get publishes it with a release store). */
  mc_state *m = __atomic_load_n(&h->mc, __ATOMIC_ACQUIRE);
  return m ? atomic_load(&m->t.extra_resident) : 0;
}

void mc_figures_reset(fh_heap *h) {
  mc_state *m = h->mc;
  if (!m) return;
  for (int b = 0; b < MC_HIST_BUCKETS; b++) atomic_store(&m->fault_hist[b], 0);
  atomic_store(&m->fault_ns_total, 0);
}

void mc_figures_get(fh_heap *h, mc_cycle_figures *out) {
  memset(out, 0, sizeof *out);
  mc_state *m = h->mc;
  if (!m) return;
  uint64_t hist[MC_HIST_BUCKETS], total = 0;
  int top = -1;
  for (int b = 0; b < MC_HIST_BUCKETS; b++) {
    hist[b] = atomic_load(&m->fault_hist[b]);
    total += hist[b];
    if (hist[b]) top = b;
  }
  out->faults = total;
  if (total) {
    out->fault_p50_us = hist_percentile_us(hist, total, 50);
    out->fault_p99_us = hist_percentile_us(hist, total, 99);
    out->fault_max_us = top < 400 ? (top + 1) * 0.25 : 100.0 + (top - 399) * 100.0;
  }
  out->mremap_ns = m->mremap_ns, out->register_ns = m->register_ns;
  out->mark_ns = m->mark_ns, out->forward_ns = m->forward_ns, out->update_ns = m->update_ns;
  out->worker_ns = m->worker_ns, out->worker_bytes = m->worker_bytes;
  out->worker_cpu_ns = m->worker_cpu_ns, out->build_cpu_ns = m->build_cpu_ns;
  out->release_cpu_ns = m->release_cpu_ns;
  out->fault_ns_total = atomic_load(&m->fault_ns_total);
  out->table_bytes = m->table_bytes;
  out->live_bytes = m->live_bytes;
  out->pinned_ranges = m->pinned_ranges, out->pinned_bytes = m->pinned_bytes;
  out->build_ns = m->build_ns, out->build_threads = m->build_threads;
  out->moving_capacity = m->t.capacity;
}
