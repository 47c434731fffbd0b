/* fhbench: shared declarations of the benchmark runner.
 *
 * Each workload lives in its own file bench/wl_<name>.c and exports
 *     int wl_<name>(int argc, char **argv);
 * argv[0] is the workload name; the workload parses its own flags (every
 * workload accepts --json FILE, and --runs N where repetition makes sense),
 * prints a table on stdout, checks its own results (a wrong answer is exit
 * status 1) and returns the exit status.  bench/fhbench.c holds the dispatch
 * table (one line per workload) and `fhbench default`, the short table that
 * `make bench` prints.  Helpers shared by workloads are in bench_util.c. */
#ifndef FH_BENCH_H_
#define FH_BENCH_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* monotonic clock in nanoseconds */
uint64_t bench_now_ns(void);
/* median of n doubles (sorts a copy) */
double bench_median(const double *v, size_t n);
/* percentile p in [0,100] of n doubles (sorts a copy) */
double bench_percentile(const double *v, size_t n, double p);
/* one line describing the machine: CPUs, kernel, uffd capabilities */
void bench_print_machine(FILE *out);
/* the value following flag `name` in argv, or NULL */
const char *bench_flag(int argc, char **argv, const char *name);
/* resident set size of this process in bytes (from /proc/self/statm) */
size_t bench_rss_bytes(void);

/* ---- workloads (one file each; the dispatch table is in fhbench.c) ---- */
int wl_gcbench(int argc, char **argv);
int wl_uffd(int argc, char **argv); /* bench/wl_uffd.c */
int wl_pause(int argc, char **argv); /* bench/wl_pause.c */
int wl_cmark(int argc, char **argv); /* bench/wl_cmark.c */
int wl_fragmentation(int argc, char **argv); /* bench/wl_fragmentation.c */
int wl_image_load(int argc, char **argv); /* bench/wl_image_load.c */
int wl_fork_share(int argc, char **argv); /* bench/wl_fork_share.c */
int wl_ephemerons(int argc, char **argv); /* bench/wl_ephemerons.c */
int wl_finalizers(int argc, char **argv); /* bench/wl_finalizers.c */
int wl_idhash(int argc, char **argv);     /* bench/wl_idhash.c */
int wl_roots(int argc, char **argv);      /* bench/wl_roots.c */
int wl_stackscan(int argc, char **argv);  /* bench/wl_stackscan.c */
int wl_pins(int argc, char **argv);       /* bench/wl_pins.c */
int wl_phases(int argc, char **argv);     /* bench/wl_phases.c */
int wl_alloc(int argc, char **argv);      /* bench/wl_alloc.c */
int wl_largeobj(int argc, char **argv);   /* bench/wl_largeobj.c */
int wl_scheme(int argc, char **argv);     /* bench/wl_scheme.c */
int wl_scheme_boot(int argc, char **argv); /* bench/wl_scheme_boot.c */
int wl_whippet_ephemerons(int argc, char **argv); /* bench/wl_whippet.c */
int wl_whippet_finalizers(int argc, char **argv); /* bench/wl_whippet.c */
int wl_whippet_mt_gcbench(int argc, char **argv); /* bench/wl_whippet_gc.c */
int wl_whippet_quads(int argc, char **argv);      /* bench/wl_whippet_gc.c */
int wl_young(int argc, char **argv);              /* bench/wl_young.c */

/* gcbench's faultheap variant (gcbench_faultheap.c): the body of the child
 * process `fhbench gcbench --child [--collector C]`; NULL: the default. */
int gcbench_faultheap_child(const char *collector, int conservative, int bt_depth);
/* bt_depth > 0: binary-trees of that depth instead (fhbench binarytrees);
 * its trees built and checked: */
long binarytrees_expected_trees(int depth);
int wl_binarytrees(int argc, char **argv); /* bench/wl_gcbench.c */
/* 0 if FH_OPTIONS and --collector parse, else -1 with a message */
int gcbench_check_options(const char *collector);
const char *gcbench_collector_name(int collector);
/* how many trees one gcbench run builds and counts */
long gcbench_expected_trees(void);

/* ---- more helpers -------------------------------------------------------- */
/* bench_flag also accepts "--name=value".  bench_has_flag: `name` appears
 * as a bare flag.  bench_check_flags: every argv[1..] is one of the
 * NULL-terminated `with_value` flags (followed by a value, or --f=value) or
 * one of the NULL-terminated `bare` flags; otherwise prints the offending
 * argument to stderr and returns -1. */
int bench_has_flag(int argc, char **argv, const char *name);
int bench_check_flags(int argc, char **argv, const char *const *with_value,
                      const char *const *bare);
/* `name` is one of the comma-separated items of `list` */
int bench_list_has(const char *list, const char *name);
/* --runs N: N in [1, 1000], `dflt` when absent, -1 (with a message) if bad */
int bench_runs_flag(int argc, char **argv, int dflt);

/* The machine line, printed once per process however many workloads run
 * (so `fhbench default` shows it once at the top). */
void bench_print_header(FILE *out);
/* The machine as a JSON object: {"cpus":..,"cpu_model":..,"kernel":..,
 * "capabilities":[..]} (no trailing newline). */
void bench_json_machine(FILE *out);
/* s as a JSON string literal, quotes included */
void bench_json_string(FILE *out, const char *s);

/* A progress line on stderr, rewritten in place; only when stderr is a
 * terminal, so logs and pipes stay clean.  bench_progress_done clears it. */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_progress_done(void);

/* Child processes.  Workloads that compare allocators run every variant
 * (faultheap included) as a child, because the baselines replace malloc for
 * their whole process and a fresh process gives each run the same start. */
typedef struct bench_child {
  int exit_status;      /* exit code; 128 + signal if killed; -1 spawn failed */
  size_t max_rss_kib;   /* getrusage of the child: ru_maxrss */
  char out[8192];       /* the child's stdout (truncated), NUL-terminated */
} bench_child;
/* Runs argv[0] (a path) with argv, capturing stdout; stderr passes through. */
int bench_run_child(char *const argv[], bench_child *c);
/* This executable's path (/proc/self/exe), for re-running itself. */
const char *bench_self_exe(void);
/* The build directory whose programs to run: --build DIR, or the one this
 * fhbench is in. */
void bench_build_dir(int argc, char **argv, char *buf, size_t n);
/* Path of a program built beside fhbench: <dir of fhbench>/bench/<name>, in
 * buf; returns 1 if it exists and is executable, else 0. */
int bench_program_path(const char *name, char *buf, size_t n);
/* The number after "key=" in a child's "k=v k=v" output line, or -1 if the
 * key is missing. */
double bench_kv(const char *line, const char *key);

/* ---- plots (plot.c) ---------------------------------------------------- */
struct fh_heap;
/* Per-collection samples (time, live, heap target, pause) from the gc
 * callback of h, until detached. */
typedef struct bench_trace bench_trace;
bench_trace *bench_trace_attach(struct fh_heap *h);
/* The same without the callback: a workload with its own callback passes
 * each event on with bench_trace_event. */
struct fh_gc_event;
bench_trace *bench_trace_new(void);
void bench_trace_event(bench_trace *tr, const struct fh_gc_event *e);
/* Time from now, no samples (NULL: nothing). */
void bench_trace_restart(bench_trace *tr);
void bench_trace_detach(struct fh_heap *h, bench_trace *tr);
int bench_trace_write(const bench_trace *tr, const char *path); /* CSV; 0 or -1 */
void bench_trace_free(bench_trace *tr);
/* build/bench (made if missing), where plots go; 0 or -1. */
int bench_plot_dir(char *buf, size_t n);
/* NAME-heap.svg (heap target and live data over time) and NAME-pauses.svg
 * (pause distribution) from n traces written by bench_trace_write; with
 * gnuplot only (else a note on stderr and -1). */
int bench_plot(const char *name, const char *title, const char *const *csv,
               const char *const *labels, int n);

/* ---- weak-reference workloads (weak_util.c) ------------------------------ */
struct fh_heap;
#define WK_NCOLLECTORS 6
/* "default" (the heap's own choice), then each --collector name */
extern const char *const wk_collector_names[WK_NCOLLECTORS];
/* --collectors a,b,c -> bit i set for wk_collector_names[i]; NULL: all */
int wk_parse_collectors(const char *who, const char *list, unsigned *mask);
/* Defaults, FH_OPTIONS, then collector (NULL/"default": the heap's) and
 * heap_max (0: leave it; at least 1 MiB).  NULL with a message on stderr. */
struct fh_heap *wk_heap_create(const char *who, const char *collector, size_t heap_max);
/* The same, then the options in `extra` ("key=value,..."; NULL: none). */
struct fh_heap *wk_heap_create_with(const char *who, const char *collector, size_t heap_max,
                                    const char *extra);
/* " collections=.. pause_max_ms=.. pause_total_ms=.." on stdout */
void wk_print_stats(struct fh_heap *h);
/* The resident bytes of the heap's spaces (fh_get_stats). */
size_t wk_heap_resident(struct fh_heap *h);

/* Round-robin runner: every variant is a child process run once per round
 * (order rotating), whose stdout is parsed into the values of run->keys. */
#define WK_MAXVARIANTS 48
#define WK_MAXARGS 16
#define WK_MAXKEYS 12
#define WK_MAXRUNS 64
typedef struct wk_run wk_run;
typedef struct wk_variant {
  char name[48];
  char *argv[WK_MAXARGS];
  char store[WK_MAXARGS][256];
  int argc;
  int skipped;  /* not run (not built, not wanted) */
  int failed;   /* exit status of the failed run (1: bad output) */
  int may_fail; /* a failure is reported in the table, not as exit 1 */
  char why[160];
  /* NULL: "k=v" output; else fills vals[0..nkeys), 0 if the run is good */
  int (*parse)(const char *out, const wk_run *run, double *vals);
  double vals[WK_MAXRUNS][WK_MAXKEYS];
} wk_variant;
struct wk_run {
  const char *who;
  int runs, nkeys;
  const char *keys[WK_MAXKEYS];
  int n;
  wk_variant v[WK_MAXVARIANTS];
};
wk_variant *wk_variant_add(wk_run *run, const char *name);
void wk_variant_arg(wk_variant *v, const char *arg);
/* argv = this fhbench, workload, --child */
void wk_variant_self(wk_variant *v, const char *workload);
/* runs every round; 1 if a variant that may not fail failed, else 0 */
int wk_run_all(wk_run *run, int verbose);
double wk_value(const wk_run *run, const wk_variant *v, int r, const char *key);
double wk_median(const wk_run *run, const wk_variant *v, const char *key);
double wk_max(const wk_run *run, const wk_variant *v, const char *key);
/* median over rounds of a[akey] / b[bkey] (rounds where both ran) */
/* --json FILE, if given: {"workload": ..., "machine": ..., "runs": ..., "variants": [
 * {"name", "ok", each key's median}]}.  0, or 1 (the file cannot be written). */
int wk_write_json(const wk_run *run, const char *workload, int argc, char **argv);

/* Side by side with Whippet's binaries.  One "faultheap C" variant per
 * collector in mask (this fhbench, workload, --child --collector C, args);
 * how many were added. */
int wk_add_faultheap_variants(wk_run *run, const char *workload, unsigned mask,
                              const char *const *args, int nargs);
/* One "whippet C" variant per collector C of the comma-separated list:
 * DIR/PROG.C with args, parsed by parse, allowed to fail, skipped when not
 * built. */
void wk_add_whippet_variants(wk_run *run, const char *dir, const char *list, const char *prog,
                             const char *const *args, int nargs,
                             int (*parse)(const char *, const wk_run *, double *));
/* After wk_run_all: names the usual failures of Whippet's variants (from
 * index first on) and returns the fastest precise one that ran every round
 * (bdw and conservative builds are shown, not compared), or NULL. */
const wk_variant *wk_whippet_best(wk_run *run, int first);
/* "lo-hi" of key over the rounds. */
void wk_range(const wk_run *run, const wk_variant *v, const char *key, char *buf, size_t n);

/* The shapes the weak workloads share: a small leaf (8 bytes), a box (one
 * reference), a pair (two references) and a reference array, registered
 * under `prefix`.  0, or -1 with the reason on stderr. */
typedef struct wk_heap {
  struct fh_heap *h;
  struct fh_thread *t;
  uint32_t small, box, pair, array;
} wk_heap;
int wk_heap_setup(wk_heap *w, const char *who, const char *prefix, const char *collector,
                  size_t heap_max);
double wk_ratio(const wk_run *run, const wk_variant *a, const char *akey, const wk_variant *b,
                const char *bkey);

#endif
