/* fhbench fragmentation: about 1 GiB of objects of 16..4096 bytes
 * (log-uniform, fixed seed), a random 10% kept live, then resident memory
 * against live bytes:
 *   - faultheap (collector=mark_sweep) after a mark-sweep collection, and
 *     after homogeneous space compaction;
 *   - glibc malloc, jemalloc and mimalloc after freeing the same 90% and
 *     purging (malloc_trim(0), arena.<all>.purge, mi_collect(true)).
 * Every variant is a child process (faultheap: `fhbench fragmentation
 * --child`; the others build/bench/frag-<variant>) running the same plan
 * (frag_core.h).  RSS is the child's resident size minus what it had before
 * its first allocation, with the plan's side tables mapped before that. */
#include "bench.h"

#include <faultheap.h>
#include <limits.h>
#include <stdlib.h>

#include "frag_core.h"

enum { F_FAULTHEAP, F_GLIBC, F_JEMALLOC, F_MIMALLOC, NFRAG };
static const char *const frag_names[NFRAG] = {"faultheap", "glibc", "jemalloc", "mimalloc"};

/* ---- the faultheap child ------------------------------------------------- */

static frag_plan plan;

static void scan_plan(fh_visit_fn visit, void *ctx, void *user) {
  (void)user;
  for (size_t i = 0; i < plan.n; i++)
    if (plan.ptrs[i]) visit(&plan.ptrs[i], ctx);
}

static size_t object_size(const void *o) { return fh_object_size(o); }

static double ms_since(uint64_t t0) { return (double)(bench_now_ns() - t0) / 1e6; }

/* Resident bytes of the heap's own spaces (fh_get_stats), without the
 * process's other memory (jemalloc's radix tree, side bitmaps, libraries). */
static size_t spaces_resident(fh_heap *h) {
  fh_stats s;
  fh_get_stats(h, &s);
  size_t r = 0;
  for (unsigned i = 0; i < s.nspaces; i++) r += s.spaces[i].resident;
  return r;
}

static int frag_child(void) {
  fh_options o;
  fh_options_init(&o);
  const char *env = getenv("FH_OPTIONS");
  if (env && *env && fh_options_parse(&o, env) != 0) {
    fprintf(stderr, "fragmentation: FH_OPTIONS: %s\n", fh_last_error());
    return 2;
  }
  /* Whatever FH_OPTIONS says: homogeneous compaction needs the malloc
   * spaces of collector=mark_sweep, and like the malloc runs faultheap
   * holds the whole gigabyte at once (no collection before the drop). */
  if (fh_options_parse(&o, "collector=mark_sweep,heap_max=2G,min_alloc_trigger=2G") != 0) {
    fprintf(stderr, "fragmentation: options: %s\n", fh_last_error());
    return 2;
  }
  if (frag_plan_make(&plan) < 0) {
    fprintf(stderr, "fragmentation: cannot map the side tables\n");
    return 1;
  }
  size_t base = frag_rss();
  fh_heap *h = fh_heap_create(&o);
  if (!h) {
    fprintf(stderr, "fragmentation: fh_heap_create: %s\n", fh_last_error());
    return 1;
  }
  const fh_type bytes = {.name = "frag.bytes", .size = 0};
  uint32_t ty = fh_register_type(h, &bytes);
  fh_thread *t = fh_thread_attach(h);
  if (!ty || !t) {
    fprintf(stderr, "fragmentation: %s\n", fh_last_error());
    return 1;
  }
  fh_set_root_scanner(h, scan_plan, NULL);
  for (size_t i = 0; i < plan.n; i++) {
    void *obj = fh_alloc(t, ty, plan.sizes[i]);
    if (!obj) {
      fprintf(stderr, "fragmentation: fh_alloc of object %zu: %s\n", i, fh_last_error());
      return 1;
    }
    memset(obj, frag_fill(i), plan.sizes[i]);
    plan.ptrs[i] = obj;
  }
  size_t full = frag_rss() - base;
  for (size_t i = 0; i < plan.n; i++)
    if (!plan.keep[i]) plan.ptrs[i] = NULL;
  uint64_t t0 = bench_now_ns();
  if (fh_collect(t, FH_COLLECT_MARK_SWEEP) != 0) {
    fprintf(stderr, "fragmentation: mark-sweep: %s\n", fh_last_error());
    return 1;
  }
  double gc_ms = ms_since(t0);
  size_t after_gc = frag_rss() - base, heap_after_gc = spaces_resident(h);
  t0 = bench_now_ns();
  if (fh_collect(t, FH_COLLECT_HSPACE_COMPACT) != 0) {
    fprintf(stderr, "fragmentation: homogeneous compaction: %s\n", fh_last_error());
    return 1;
  }
  double compact_ms = ms_since(t0);
  size_t after_compact = frag_rss() - base;
  size_t heap_after_compact = spaces_resident(h);
  size_t bad = frag_check(&plan, object_size);
  printf("frag variant=faultheap live_bytes=%zu rss_full=%zu rss_after_gc=%zu "
         "rss_after_compact=%zu heap_after_gc=%zu heap_after_compact=%zu gc_ms=%.1f "
         "compact_ms=%.1f failures=%zu\n",
         plan.live_bytes, full, after_gc, after_compact, heap_after_gc, heap_after_compact,
         gc_ms, compact_ms, bad);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return bad ? 1 : 0;
}

/* ---- the runner ---------------------------------------------------------- */

typedef struct frag_variant {
  int built, failed;
  char path[PATH_MAX];
  char *argv[4];
  double *live, *full, *rss, *compact, *gc_ms, *compact_ms, *heap_gc, *heap_compact;
} frag_variant;

static double median_of(double *v, int n) { return bench_median(v, (size_t)n); }

static void usage(FILE *out) {
  fprintf(out,
          "usage: fhbench fragmentation [--runs N] [--json FILE]\n"
          "About 1 GiB of objects of 16..4096 bytes (log-uniform, fixed seed), a random\n"
          "10%% kept live; resident memory against live bytes for faultheap after a\n"
          "mark-sweep collection and after homogeneous compaction, and for glibc,\n"
          "jemalloc and mimalloc after free() of the same objects and a purge.\n"
          "  --runs N     runs of every variant (default 1: the layout is deterministic)\n"
          "  --json FILE  also write the results as JSON\n");
}

static int write_json(const char *path, frag_variant *v, int runs) {
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    return -1;
  }
  fprintf(f, "{\"machine\": ");
  bench_json_machine(f);
  for (int i = 0; i < NFRAG; i++) {
    fprintf(f, ", \"%s\": ", frag_names[i]);
    if (!v[i].built || v[i].failed) {
      fprintf(f, "null");
      continue;
    }
    double live = median_of(v[i].live, runs);
    if (i == F_FAULTHEAP)
      fprintf(f, "{\"live_bytes\": %.0f, \"rss_full_bytes\": %.0f, \"rss_after_gc_bytes\": %.0f, "
                 "\"rss_after_compact_bytes\": %.0f, \"heap_resident_after_gc_bytes\": %.0f, "
                 "\"heap_resident_after_compact_bytes\": %.0f, \"gc_ms\": %.1f, "
                 "\"compact_ms\": %.1f}",
              live, median_of(v[i].full, runs), median_of(v[i].rss, runs),
              median_of(v[i].compact, runs), median_of(v[i].heap_gc, runs),
              median_of(v[i].heap_compact, runs), median_of(v[i].gc_ms, runs),
              median_of(v[i].compact_ms, runs));
    else
      fprintf(f, "{\"live_bytes\": %.0f, \"rss_full_bytes\": %.0f, \"rss_bytes\": %.0f, "
                 "\"purge_ms\": %.1f}",
              live, median_of(v[i].full, runs), median_of(v[i].rss, runs),
              median_of(v[i].gc_ms, runs));
  }
  fprintf(f, ", \"runs\": %d}\n", runs);
  return fclose(f) == 0 ? 0 : -1;
}

int wl_fragmentation(int argc, char **argv) {
  static const char *const with_value[] = {"--runs", "--json", NULL};
  static const char *const bare[] = {"--child", "--help", "-h", NULL};
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h")) {
    usage(stdout);
    return 0;
  }
  if (bench_check_flags(argc, argv, with_value, bare) != 0) {
    usage(stderr);
    return 2;
  }
  if (bench_has_flag(argc, argv, "--child")) return frag_child();
  int runs = bench_runs_flag(argc, argv, 1);
  if (runs < 0) return 2;
  const char *json = bench_flag(argc, argv, "--json");
  static char child_flag[] = "--child", name[] = "fragmentation";
  frag_variant v[NFRAG];
  memset(v, 0, sizeof v);
  for (int i = 0; i < NFRAG; i++) {
    if (i == F_FAULTHEAP) {
      const char *self = bench_self_exe();
      v[i].built = self != NULL;
      snprintf(v[i].path, sizeof v[i].path, "%s", self ? self : "?");
      v[i].argv[1] = name;
      v[i].argv[2] = child_flag;
    } else {
      char prog[64];
      snprintf(prog, sizeof prog, "frag-%s", frag_names[i]);
      v[i].built = bench_program_path(prog, v[i].path, sizeof v[i].path);
    }
    v[i].argv[0] = v[i].path;
    double **arrays[] = {&v[i].live,  &v[i].full,       &v[i].rss,     &v[i].compact,
                         &v[i].gc_ms, &v[i].compact_ms, &v[i].heap_gc, &v[i].heap_compact};
    for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++)
      if (!(*arrays[k] = calloc((size_t)runs, sizeof(double)))) return 1;
  }
  for (int r = 0; r < runs; r++)
    for (int k = 0; k < NFRAG; k++) {
      frag_variant *x = &v[(r + k) % NFRAG];
      int i = (int)(x - v);
      if (!x->built || x->failed) continue;
      bench_progress("fragmentation: run %d/%d, %s", r + 1, runs, frag_names[i]);
      bench_child c;
      bench_run_child(x->argv, &c);
      if (c.exit_status != 0 || bench_kv(c.out, "failures") != 0 ||
          bench_kv(c.out, "live_bytes") <= 0) {
        bench_progress_done();
        fprintf(stderr, "fragmentation: %s failed (exit %d): %s\n", frag_names[i],
                c.exit_status, c.out);
        x->failed = 1;
        continue;
      }
      x->live[r] = bench_kv(c.out, "live_bytes");
      x->full[r] = bench_kv(c.out, "rss_full");
      if (i == F_FAULTHEAP) {
        x->rss[r] = bench_kv(c.out, "rss_after_gc");
        x->compact[r] = bench_kv(c.out, "rss_after_compact");
        x->gc_ms[r] = bench_kv(c.out, "gc_ms");
        x->compact_ms[r] = bench_kv(c.out, "compact_ms");
        x->heap_gc[r] = bench_kv(c.out, "heap_after_gc");
        x->heap_compact[r] = bench_kv(c.out, "heap_after_compact");
      } else {
        x->rss[r] = bench_kv(c.out, "rss_bytes");
        x->gc_ms[r] = bench_kv(c.out, "purge_ms");
      }
    }
  bench_progress_done();

  bench_print_header(stdout);
  printf("fragmentation: ~1 GiB of 16..4096-byte objects (log-uniform), 10%% kept live; "
         "%d run%s, medians\n", runs, runs == 1 ? "" : "s");
  printf("%-30s %9s %10s %10s %8s %9s\n", "variant", "live MiB", "full MiB", "RSS MiB",
         "x live", "ms");
  int status = 0;
  const double MiB = 1048576.0;
  for (int i = 0; i < NFRAG; i++) {
    frag_variant *x = &v[i];
    if (!x->built) {
      printf("%-30s (not built)\n", frag_names[i]);
      continue;
    }
    if (x->failed) {
      printf("%-30s FAILED\n", frag_names[i]);
      status = 1;
      continue;
    }
    double live = median_of(x->live, runs), full = median_of(x->full, runs);
    double rss = median_of(x->rss, runs);
    if (i == F_FAULTHEAP) {
      double cmp = median_of(x->compact, runs);
      printf("%-30s %9.1f %10.1f %10.1f %8.2f %9.1f\n", "faultheap, after mark-sweep",
             live / MiB, full / MiB, rss / MiB, rss / live, median_of(x->gc_ms, runs));
      printf("%-30s %9.1f %10s %10.1f %8.2f %9.1f\n", "faultheap, after hspace compact",
             live / MiB, "", cmp / MiB, cmp / live, median_of(x->compact_ms, runs));
      double hg = median_of(x->heap_gc, runs), hc = median_of(x->heap_compact, runs);
      printf("%-30s %9s %10s %10.1f %8.2f\n", "  its spaces only, after GC", "", "", hg / MiB,
             hg / live);
      printf("%-30s %9s %10s %10.1f %8.2f\n", "  its spaces only, compacted", "", "", hc / MiB,
             hc / live);
    } else {
      char label[64];
      snprintf(label, sizeof label, "%s, after free + purge", frag_names[i]);
      printf("%-30s %9.1f %10.1f %10.1f %8.2f %9.1f\n", label, live / MiB, full / MiB,
             rss / MiB, rss / live, median_of(x->gc_ms, runs));
    }
  }
  printf("(RSS: the process's resident size minus its size before allocating, so for\n"
         " faultheap it includes jemalloc's radix tree and the side bitmaps; \"its spaces\n"
         " only\": the resident pages of the heap's spaces, fh_get_stats; ms: the\n"
         " collection, compaction or purge call)\n");
  if (json && write_json(json, v, runs) != 0) status = status ? status : 1;
  for (int i = 0; i < NFRAG; i++) {
    free(v[i].live), free(v[i].full), free(v[i].rss), free(v[i].compact);
    free(v[i].gc_ms), free(v[i].compact_ms), free(v[i].heap_gc), free(v[i].heap_compact);
  }
  return status;
}
