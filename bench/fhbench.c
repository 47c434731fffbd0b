/* fhbench: the benchmark runner.  `fhbench <workload> [flags]` runs one
 * workload (bench/wl_<name>.c); `fhbench default` runs the short table that
 * `make bench` prints. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

typedef struct workload {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} workload;

/* One line per workload.  A workload whose file is not written yet has no
 * line here (an entry for a missing wl_<name> would break the link). */
static const workload workloads[] = {
    {"gcbench", wl_gcbench, "GCBench (Ellis/Kovac/Boehm) vs glibc, jemalloc, mimalloc, Boehm"},
    {"binarytrees", wl_binarytrees,
     "binary-trees (Benchmarks Game), --depth N (21), vs glibc, jemalloc, mimalloc, Boehm"},
    {"alloc", wl_alloc, "ns per 16-256-byte object that dies at once, per collector"},
    {"uffd", wl_uffd, "per-page cost of userfaultfd operations and mremap(DONTUNMAP)"},
    {"pause", wl_pause, "mutator pauses and stalls compacting 256 MiB live: STW vs concurrent"},
    {"cmark", wl_cmark, "mark_sweep pauses, 256 MiB live: concurrent vs stop-the-world marking"},
    {"fragmentation", wl_fragmentation,
     "RSS vs live bytes after 90% of 1 GiB dies: mark-sweep, hspace compaction, mallocs"},
    {"image-load", wl_image_load, "1M-object graph: build vs load an image at its base / relocated"},
    {"fork-share", wl_fork_share,
     "forked children's private memory after reading/allocating/collecting: prefork vs not"},
    {"ephemerons", wl_ephemerons, "a churned weak table vs strong refs; 10^6 live / 10^5 dead chain"},
    {"finalizers", wl_finalizers, "finalized native handles (fh_malloc) vs explicit frees"},
    {"idhash", wl_idhash, "ns per fh_object_hash: first, hashed, hashed and moved"},
    {"roots", wl_roots, "ns per frame rooting 4 locals, one by one vs at once; fh_object_type"},
    {"stackscan", wl_stackscan,
     "conservative stack roots: scan cost per 64 KiB of stack, pause vs precise"},
    {"phases", wl_phases, "live data grows to 256 MiB then falls to 16: heap_policy fixed vs adaptive"},
    {"largeobj", wl_largeobj,
     "collection pauses and RSS with and without a live 50 MB array, per collector"},
    {"pins", wl_pins, "1% of live objects pinned vs none: compacting collectors' pause and RSS"},
    {"scheme", wl_scheme,
     "fhscheme's Scheme suite (bench/scheme) per collector, on Boehm GC and Guile"},
    {"scheme-boot", wl_scheme_boot,
     "fhscheme's start-up from its heap image vs its library from source"},
    {"whippet-ephemerons", wl_whippet_ephemerons,
     "Whippet's benchmarks/ephemerons.c, ported; side by side with --whippet DIR"},
    {"whippet-finalizers", wl_whippet_finalizers,
     "Whippet's benchmarks/finalizers.c, ported; side by side with --whippet DIR"},
    {"whippet-mt-gcbench", wl_whippet_mt_gcbench,
     "Whippet's mt-gcbench shape, heap = M x live; side by side with --whippet DIR"},
    {"whippet-quads", wl_whippet_quads,
     "Whippet's quads shape, heap = M x live; side by side with --whippet DIR"},
    {"young", wl_young, "young-collection pauses, 16 MiB young over 64 MiB old: p50/p99/max"},
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

/* `fhbench default`: each row is a workload and its arguments, chosen to
 * keep the whole table under about a minute.  Later workloads add a row. */
typedef struct default_row {
  const char *workload;
  const char *args[8]; /* NULL-terminated */
} default_row;

static const default_row default_rows[] = {
    {"gcbench", {NULL}}, /* 5 rounds x 6 variants, about 12 s */
    {"binarytrees", {"--depth", "16", "--runs", "3", NULL}}, /* about 8 s */
    {"fragmentation", {NULL}}, /* 4 variants once, deterministic, about 8 s */
};
#define NDEFAULT (sizeof default_rows / sizeof default_rows[0])

static void usage(FILE *out) {
  fprintf(out,
          "usage: fhbench <workload> [flags]   (fhbench <workload> --help for its flags)\n"
          "       fhbench default [--json FILE]\n"
          "workloads:\n");
  for (size_t i = 0; i < NWORKLOADS; i++)
    fprintf(out, "  %-19s %s\n", workloads[i].name, workloads[i].summary);
  fprintf(out,
          "  %-19s the short table `make bench` prints (",
          "default");
  for (size_t i = 0; i < NDEFAULT; i++)
    fprintf(out, "%s%s", i ? ", " : "", default_rows[i].workload);
  fprintf(out,
          ")\n"
          "Every workload prints a table on stdout, accepts --json FILE, and exits 1\n"
          "if it computed a wrong result.  The faultheap heap honours FH_OPTIONS.\n");
}

static const workload *find_workload(const char *name) {
  for (size_t i = 0; i < NWORKLOADS; i++)
    if (strcmp(workloads[i].name, name) == 0) return &workloads[i];
  return NULL;
}

/* FILE.json -> FILE.<workload>.json, so each row of the table writes its own */
static void row_json_path(const char *json, const char *name, char *buf, size_t n) {
  const char *dot = strrchr(json, '.');
  const char *slash = strrchr(json, '/');
  if (dot == NULL || (slash && dot < slash)) dot = json + strlen(json);
  snprintf(buf, n, "%.*s.%s%s", (int)(dot - json), json, name, dot);
}

static int run_default(int argc, char **argv) {
  static const char *const with_value[] = {"--json", NULL};
  if (bench_check_flags(argc, argv, with_value, NULL) != 0) return 2;
  const char *json = bench_flag(argc, argv, "--json");
  int status = 0;
  for (size_t i = 0; i < NDEFAULT; i++) {
    const default_row *row = &default_rows[i];
    const workload *w = find_workload(row->workload);
    if (w == NULL) continue;
    char path[4096];
    char *args[16];
    int n = 0;
    args[n++] = (char *)w->name;
    for (const char *const *a = row->args; *a; a++) args[n++] = (char *)*a;
    if (json) {
      row_json_path(json, w->name, path, sizeof path);
      args[n++] = (char *)"--json";
      args[n++] = path;
    }
    args[n] = NULL;
    if (i) printf("\n");
    int st = w->run(n, args);
    fflush(stdout);
    if (st > status) status = st;
  }
  return status;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *name = argv[1];
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(name, "default") == 0) return run_default(argc - 1, argv + 1);
  const workload *w = find_workload(name);
  if (w == NULL) {
    fprintf(stderr, "fhbench: unknown workload '%s'\n", name);
    usage(stderr);
    return 2;
  }
  return w->run(argc - 1, argv + 1);
}
