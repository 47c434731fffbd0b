/* fh_get_stats and fh_dump. */
#include <string.h>

#include "collectors/collector.h"
#include "heap/heap.h"
#include "heap/error.h"
#include "heap/options.h"

_Static_assert(HEAP_MAX_SPACES + 1 <= sizeof(((fh_stats *)0)->spaces) / sizeof(fh_space_stats),
               "fh_stats.spaces holds every space and the fh_malloc memory");

/* ---- pauses ---- */

void pause_record_locked(fh_heap *h, fh_pause_kind kind, uint64_t start_ns, uint64_t end_ns) {
  uint64_t ns = end_ns > start_ns ? end_ns - start_ns : 0;
  unsigned k = kind < FH_PAUSE_KINDS ? (unsigned)kind : FH_PAUSE_FULL;
  h->pause_ns_total += ns;
  if (ns > h->pause_ns_max) h->pause_ns_max = ns;
  /* Bucket b holds [2^b, 2^(b+1)) us; under 1 us in bucket 0. */
  uint64_t us = ns / 1000;
  unsigned b = us ? 63u - (unsigned)__builtin_clzll(us) : 0;
  h->pause_hist[b < FH_PAUSE_BUCKETS ? b : FH_PAUSE_BUCKETS - 1]++;
  h->kind_pauses[k]++;
  h->kind_pause_ns_total[k] += ns;
  if (ns > h->kind_pause_ns_max[k]) h->kind_pause_ns_max[k] = ns;
  uint64_t stop = h->last_stop_ns < ns ? h->last_stop_ns : ns;
  h->last_stop_ns = 0; /* never charged to a later pause */
  h->recent_pauses[h->pauses % FH_PAUSE_RECENT] =
      (fh_pause_record){.start_ns = start_ns, .ns = ns, .stop_ns = stop, .kind = k};
  h->pauses++;
}

void pause_record(fh_heap *h, fh_pause_kind kind, uint64_t start_ns, uint64_t end_ns) {
  pthread_mutex_lock(&h->stats_lock);
  pause_record_locked(h, kind, start_ns, end_ns);
  pthread_mutex_unlock(&h->stats_lock);
}

void pause_reset(fh_heap *h) {
  h->pause_ns_total = h->pause_ns_max = 0;
  h->pauses = 0;
  h->builds_seen = h->compact_builds;
  memset(h->pause_hist, 0, sizeof h->pause_hist);
  memset(h->kind_pauses, 0, sizeof h->kind_pauses);
  memset(h->kind_pause_ns_total, 0, sizeof h->kind_pause_ns_total);
  memset(h->kind_pause_ns_max, 0, sizeof h->kind_pause_ns_max);
  memset(h->recent_pauses, 0, sizeof h->recent_pauses);
}

static const char *const pause_kind_names[FH_PAUSE_KINDS] = {"full", "young", "flip", "remark",
                                                             "roots"};

/* ---- fh_get_stats ---- */

static void space_stats(fh_space_stats *out, const fh_space *s) {
  out->name = s->name;
  out->capacity = s->end - s->begin;
  /* A jemalloc space's range also holds the arena's metadata and size-class
   * slack (spaces/arena.h): its capacity is the limit on what it holds. */
  if (s->kind == SPACE_MALLOC) out->capacity = ((const malloc_space *)s)->limit;
  if (s->kind == SPACE_NON_MOVING) out->capacity = ((const non_moving_space *)s)->limit;
  out->used = s->ops->used(s);
  out->resident = s->ops->resident(s);
}

void fh_get_stats(fh_heap *h, fh_stats *s) {
  if (!h || !s) {
    fh_error_set("fh_get_stats: %s is NULL", h ? "stats" : "heap");
    return;
  }
  memset(s, 0, sizeof *s);
  /* A consistent snapshot of the collector's counters. */
  pthread_mutex_lock(&h->stats_lock);
  s->collections = h->collections;
  s->bytes_freed = h->bytes_freed;
  s->bytes_moved = h->bytes_moved;
  s->compactions_slid = h->compact_slides;
  s->compactions_built = h->compact_builds;
  s->pause_ns_total = h->pause_ns_total;
  s->pause_ns_max = h->pause_ns_max;
  s->ephemerons_traced = h->ephemerons_traced;
  s->ephemerons_cleared = h->ephemerons_cleared;
  s->objects_finalized = h->objects_finalized;
  s->weak_ns_total = h->weak_ns_total;
  s->weak_ns_max = h->weak_ns_max;
  memcpy(s->pause_hist, h->pause_hist, sizeof s->pause_hist);
  s->pinned_last = h->pins.last_pinned;
  s->conservative_pinned_last = h->pins.last_conservative;
  s->stack_words_scanned = h->pins.words_total;
  s->stack_scan_ns_total = h->pins.scan_ns_total;
  s->stack_scan_ns_max = h->pins.scan_ns_max;
  s->young_collections = h->young_collections;
  s->young_pause_ns_total = h->young_pause_ns_total;
  s->young_pause_ns_max = h->young_pause_ns_max;
  s->full_collections = h->collections - h->young_collections;
  s->full_pause_ns_total = h->full_pause_ns_total;
  s->full_pause_ns_max = h->full_pause_ns_max;
  s->bytes_promoted = h->bytes_promoted;
  s->pauses = h->pauses;
  memcpy(s->kind_pauses, h->kind_pauses, sizeof s->kind_pauses);
  memcpy(s->kind_pause_ns_total, h->kind_pause_ns_total, sizeof s->kind_pause_ns_total);
  memcpy(s->kind_pause_ns_max, h->kind_pause_ns_max, sizeof s->kind_pause_ns_max);
  memcpy(s->recent_pauses, h->recent_pauses, sizeof s->recent_pauses);
  mc_stats_fill(h, s);
  s->concurrent_marks = h->cm_cycles;
  s->concurrent_marks_done = h->cm_cycles_done;
  s->remark_ns_total = h->remark_ns_total;
  s->remark_ns_max = h->remark_ns_max;
  s->marker_ns = h->cm_marker_ns;
  s->marker_cpu_ns = h->cm_marker_cpu_ns;
  s->marker_bytes = h->cm_marked_bytes;
  s->gc_pace_rests = atomic_load_explicit(&h->pace.rests, memory_order_relaxed);
  s->gc_pace_rest_ns = atomic_load_explicit(&h->pace.rest_ns, memory_order_relaxed);
  fh_space *spaces[HEAP_MAX_SPACES];
  s->nspaces = heap_spaces(h, spaces);
  for (unsigned i = 0; i < s->nspaces; i++) space_stats(&s->spaces[i], spaces[i]);
  /* fh_malloc memory: not a space of objects, so not in heap_spaces. */
  if (h->native.space.ops && s->nspaces < sizeof s->spaces / sizeof s->spaces[0])
    space_stats(&s->spaces[s->nspaces++], &h->native.space);
  pthread_mutex_unlock(&h->stats_lock);
  s->bytes_allocated = atomic_load(&h->bytes_allocated);
  s->uffd_faults = atomic_load(&h->uffd_faults);
  s->uffd_fault_ns_max = atomic_load(&h->uffd_fault_ns_max);
  s->gc_user_ns = atomic_load_explicit(&h->pool.user_ns, memory_order_relaxed);
  s->gc_sys_ns = atomic_load_explicit(&h->pool.sys_ns, memory_order_relaxed);
  s->gc_minor_faults = atomic_load_explicit(&h->pool.minflt, memory_order_relaxed);
  s->gc_major_faults = atomic_load_explicit(&h->pool.majflt, memory_order_relaxed);
  pthread_mutex_lock(&h->pool.lock);
  s->gc_threads_started = h->pool.started_total;
  pthread_mutex_unlock(&h->pool.lock);
}

static void print_caps(FILE *out) {
  unsigned c = fh_capabilities();
  fprintf(out, "  kernel: userfaultfd %s, MREMAP_DONTUNMAP %s, UFFDIO_MOVE %s, SIGBUS mode %s, "
               "minor faults %s\n",
          c & FH_CAP_UFFD ? "yes" : "no", c & FH_CAP_DONTUNMAP ? "yes" : "no",
          c & FH_CAP_UFFD_MOVE ? "yes" : "no", c & FH_CAP_UFFD_SIGBUS ? "yes" : "no",
          c & FH_CAP_UFFD_MINOR ? "yes" : "no");
}

void fh_dump(fh_heap *h, FILE *out) {
  if (!h || !out) {
    fh_error_set("fh_dump: %s is NULL", h ? "stream" : "heap");
    return;
  }
  heap_settle_collector(h); /* the caps line below probes anyway */
  fh_stats s;
  fh_get_stats(h, &s);
  /* Attach and detach change the count under world_lock (and gc_lock). */
  pthread_mutex_lock(&h->world_lock);
  unsigned nthreads = h->nthreads;
  pthread_mutex_unlock(&h->world_lock);
  fprintf(out, "faultheap %p: collector %s (background %s%s), heap_max %zu MiB, %u threads\n",
          (void *)h, options_collector_name(h->opt.collector),
          options_collector_name(h->opt.background_collector),
          atomic_load(&h->background) ? ", in background" : "", h->opt.heap_max >> 20,
          nthreads);
  print_caps(out);
  mc_dump(h, out);
  fprintf(out, "  reservation [%#lx, %#lx) %zu MiB, card table %zu KiB\n",
          (unsigned long)h->resv_begin, (unsigned long)(h->resv_begin + h->resv_size),
          h->resv_size >> 20, h->cards_bytes >> 10);
  for (unsigned i = 0; i < s.nspaces; i++)
    fprintf(out, "  %-22s capacity %8zu KiB  used %8zu KiB  resident %8zu KiB\n",
            s.spaces[i].name, s.spaces[i].capacity >> 10, s.spaces[i].used >> 10,
            s.spaces[i].resident >> 10);
  hspace_dump(h, out);
  fprintf(out, "  collections %llu, pause total %.3f ms, max %.3f ms\n",
          (unsigned long long)s.collections, s.pause_ns_total / 1e6, s.pause_ns_max / 1e6);
  if (s.pauses) {
    fprintf(out, "  pauses by length (us, from):");
    for (unsigned k = 0; k < FH_PAUSE_BUCKETS; k++)
      if (s.pause_hist[k]) fprintf(out, " %llu: %llu", 1ull << k, (unsigned long long)s.pause_hist[k]);
    fputc('\n', out);
    fprintf(out, "  pauses by kind:");
    for (unsigned k = 0; k < FH_PAUSE_KINDS; k++)
      if (s.kind_pauses[k])
        fprintf(out, " %s %llu (total %.3f ms, max %.3f ms)",
                pause_kind_names[k] ? pause_kind_names[k] : "?", (unsigned long long)s.kind_pauses[k], s.kind_pause_ns_total[k] / 1e6,
                s.kind_pause_ns_max[k] / 1e6);
    fprintf(out, "%s\n", s.kind_pauses[FH_PAUSE_REMARK]
                             ? "" : "; no remark pause (marking runs inside the full or flip pause)");
  }
  const fh_cycle_stats *c = &s.last_cycle;
  if (c->mark_ns)
    fprintf(out, "  last compacting cycle's pause: mark %.3f ms, forward %.3f ms, update %.3f ms, "
                 "flip mremap %.3f ms + register %.3f ms, build %.3f ms; concurrent phase: worker "
                 "%.3f ms (%.3f ms CPU) for %llu KiB, releaser %.3f ms CPU\n",
            c->mark_ns / 1e6, c->forward_ns / 1e6, c->update_ns / 1e6, c->flip_mremap_ns / 1e6,
            c->flip_register_ns / 1e6, c->build_ns / 1e6, c->worker_ns / 1e6,
            c->worker_cpu_ns / 1e6, (unsigned long long)c->worker_bytes >> 10,
            c->release_cpu_ns / 1e6);
  if (s.collections)
    fprintf(out, "  GC CPU: user %.3f ms, system %.3f ms (%.1f%% of pause time), %llu minor and "
                 "%llu major faults, %.1f faults a collection; %llu GC threads started\n",
            s.gc_user_ns / 1e6, s.gc_sys_ns / 1e6,
            s.pause_ns_total ? 100.0 * (double)s.gc_sys_ns / (double)s.pause_ns_total : 0.0,
            (unsigned long long)s.gc_minor_faults, (unsigned long long)s.gc_major_faults,
            (double)s.gc_minor_faults / (double)s.collections,
            (unsigned long long)s.gc_threads_started);
  if (h->opt.collector == FH_GEN_SEMISPACE || s.young_collections) {
    pthread_mutex_lock(&h->stats_lock);
    const char *why = h->collections ? gen_why_name(h->gen.choice.why) : "none yet";
    pthread_mutex_unlock(&h->stats_lock);
    fprintf(out, "  generations: %llu young (pause total %.3f ms, max %.3f ms), %llu full (total "
                 "%.3f ms, max %.3f ms); promoted %llu bytes; last choice: %s\n",
            (unsigned long long)s.young_collections, s.young_pause_ns_total / 1e6,
            s.young_pause_ns_max / 1e6, (unsigned long long)s.full_collections,
            s.full_pause_ns_total / 1e6, s.full_pause_ns_max / 1e6,
            (unsigned long long)s.bytes_promoted, why);
  }
  /* mark_sweep (collectors/ms_concurrent.c) and concurrent_compact
   * (collectors/cc_concurrent.c) mark concurrently. */
  int cc = h->opt.collector == FH_CONCURRENT_COMPACT;
  if (h->has_malloc_spaces || cc) {
    pthread_mutex_lock(&h->stats_lock);
    const char *off = h->cm_off_why;
    if (!off && !h->opt.concurrent_mark) off = "concurrent_mark=0";
    if (!off && cc && strcmp(h->collector->name, "concurrent_compact") != 0)
      off = "the stop-the-world fallback of concurrent_compact marks in the pause";
    pthread_mutex_unlock(&h->stats_lock);
    if (off)
      fprintf(out, "  concurrent marking: off (%s); every marking stops the world\n", off);
    else
      fprintf(out, "  concurrent marking: on; %llu cycles (%llu abandoned, %llu finished in a "
                   "pause, %llu with the forwarding computed between the remark and a flip "
                   "pause, %llu of them computed again in it), remark max %.3f ms (total %.3f), "
                   "marker %.3f ms wall, %.3f ms CPU, "
                   "%llu bytes marked, %llu references logged by the SATB barrier; "
                   "paced at %u%% of a CPU: %llu rests, %.3f ms\n",
              (unsigned long long)s.concurrent_marks, (unsigned long long)h->cm_abandoned,
              (unsigned long long)h->cm_finished_in_pause,
              (unsigned long long)h->cm_split_remarks, (unsigned long long)h->cm_split_redone,
              s.remark_ns_max / 1e6,
              s.remark_ns_total / 1e6, s.marker_ns / 1e6, s.marker_cpu_ns / 1e6,
              (unsigned long long)s.marker_bytes, (unsigned long long)h->cm_logged,
              h->opt.gc_cpu_pct, (unsigned long long)s.gc_pace_rests, s.gc_pace_rest_ns / 1e6);
  } else {
    fprintf(out, "  concurrent marking: not used by %s (collector=mark_sweep and "
                 "concurrent_compact only); marking "
                 "stops the world\n", options_collector_name(h->opt.collector));
  }
  fprintf(out, "  allocated %llu bytes, freed %llu, moved %llu; live after last GC %zu, "
               "next GC after %zu more\n",
          (unsigned long long)s.bytes_allocated, (unsigned long long)s.bytes_freed,
          (unsigned long long)s.bytes_moved, h->live_after_gc, h->gc_trigger);
  if (s.ephemerons_traced || s.objects_finalized || h->finalizers.n || h->fin_queue.n)
    fprintf(out, "  weak: %llu ephemerons traced, %llu cleared; %llu objects finalized, %zu "
                 "records, %zu queued; %.3f ms after the strong closure (max %.3f)\n",
            (unsigned long long)s.ephemerons_traced, (unsigned long long)s.ephemerons_cleared,
            (unsigned long long)s.objects_finalized, h->finalizers.n, h->fin_queue.n,
            s.weak_ns_total / 1e6, s.weak_ns_max / 1e6);
  pthread_mutex_lock(&h->stats_lock);
  sizer_dump(h, out);
  pthread_mutex_unlock(&h->stats_lock);
  if (h->opt.stack_roots == FH_STACK_ROOTS_CONSERVATIVE || s.pinned_last)
    fprintf(out, "  pins: %llu objects pinned at the last collection (%llu by stack words); "
                 "stacks (%s): %llu words scanned in %.3f ms (longest scan %.3f ms)\n",
            (unsigned long long)s.pinned_last, (unsigned long long)s.conservative_pinned_last,
            options_stack_roots_name(h->opt.stack_roots),
            (unsigned long long)s.stack_words_scanned, s.stack_scan_ns_total / 1e6,
            s.stack_scan_ns_max / 1e6);
  pthread_mutex_lock(&h->stats_lock);
  uint64_t semi_mc = h->semi_mostly_copying;
  size_t idle = h->semi_idle_bytes;
  pthread_mutex_unlock(&h->stats_lock);
  if (semi_mc)
    fprintf(out, "  semispace: %llu mostly-copying cycles (pinned objects kept in place); %zu bytes "
                 "of them in the idle half\n", (unsigned long long)semi_mc, idle);
  pthread_mutex_lock(&h->stats_lock);
  uint64_t kept_strong = h->ephemerons_kept_strong;
  pthread_mutex_unlock(&h->stats_lock);
  if (kept_strong)
    fprintf(out, "  weak: %llu ephemerons traced as strong pairs for one cycle, for lack of "
                 "memory to record them\n", (unsigned long long)kept_strong);
  if (s.uffd_faults)
    fprintf(out, "  uffd faults %llu, served in %.1f us (median), %.1f us (p99), slowest %.1f us\n",
            (unsigned long long)s.uffd_faults, s.uffd_fault_p50_ns / 1e3,
            s.uffd_fault_p99_ns / 1e3, s.uffd_fault_ns_max / 1e3);
}
