/* Heap-over-time and pause plots: per-collection samples from the gc
 * callback, written as CSV files and turned into SVG by gnuplot
 * (Debian gnuplot-nox; `make deps` installs it).  The files go to
 * build/bench/ beside the baseline programs. */
#include "bench.h"

#include <faultheap.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct bench_trace {
  uint64_t t0;
  size_t n, cap;
  struct trace_sample {
    double t_ms, live_before, live_after, target, pause_ms;
  } *s;
};

bench_trace *bench_trace_new(void) {
  bench_trace *tr = calloc(1, sizeof *tr);
  if (tr) tr->t0 = bench_now_ns();
  return tr;
}

static void on_gc(fh_heap *h, const fh_gc_event *e, void *user) {
  (void)h;
  bench_trace_event(user, e);
}

void bench_trace_restart(bench_trace *tr) {
  if (!tr) return;
  tr->t0 = bench_now_ns();
  tr->n = 0;
}

void bench_trace_event(bench_trace *tr, const fh_gc_event *e) {
  if (!tr || !e->end) return;
  if (tr->n == tr->cap) {
    size_t cap = tr->cap ? 2 * tr->cap : 256;
    struct trace_sample *g = realloc(tr->s, cap * sizeof *g);
    if (!g) return; /* a sample less */
    tr->s = g;
    tr->cap = cap;
  }
  tr->s[tr->n++] = (struct trace_sample){(double)(bench_now_ns() - tr->t0) / 1e6,
                                         (double)e->live_before, (double)e->live_after,
                                         (double)e->heap_target, (double)e->pause_ns / 1e6};
}

bench_trace *bench_trace_attach(fh_heap *h) {
  bench_trace *tr = bench_trace_new();
  if (tr) fh_set_gc_callback(h, on_gc, tr);
  return tr;
}

void bench_trace_detach(fh_heap *h, bench_trace *tr) {
  if (!tr) return;
  fh_set_gc_callback(h, NULL, NULL);
}

int bench_trace_write(const bench_trace *tr, const char *path) {
  if (!tr) return -1;
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f, "# t_ms live_before_mib live_after_mib target_mib pause_ms\n");
  for (size_t i = 0; i < tr->n; i++)
    fprintf(f, "%.3f %.3f %.3f %.3f %.4f\n", tr->s[i].t_ms, tr->s[i].live_before / 1048576.0,
            tr->s[i].live_after / 1048576.0, tr->s[i].target / 1048576.0, tr->s[i].pause_ms);
  return fclose(f) == 0 ? 0 : -1;
}

void bench_trace_free(bench_trace *tr) {
  if (!tr) return;
  free(tr->s);
  free(tr);
}

int bench_plot_dir(char *buf, size_t n) {
  const char *self = bench_self_exe();
  if (!self) return -1;
  const char *slash = strrchr(self, '/');
  snprintf(buf, n, "%.*s/bench", slash ? (int)(slash - self) : 1, slash ? self : ".");
  struct stat st;
  if (stat(buf, &st) == 0) return S_ISDIR(st.st_mode) ? 0 : -1;
  return mkdir(buf, 0777) == 0 ? 0 : -1;
}

static int have_gnuplot(void) {
  return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

int bench_plot(const char *name, const char *title, const char *const *csv, const char *const *labels,
               int n) {
  char dir[PATH_MAX], script[PATH_MAX + 64];
  if (n <= 0 || bench_plot_dir(dir, sizeof dir) < 0) return -1;
  if (!have_gnuplot()) {
    fprintf(stderr, "%s: no gnuplot (Debian gnuplot-nox; `make deps` installs it): no plots\n", name);
    return -1;
  }
  snprintf(script, sizeof script, "%s/%s.gnuplot", dir, name);
  FILE *f = fopen(script, "w");
  if (!f) return -1;
  fprintf(f, "set terminal svg size 800,420 dynamic font 'sans,11'\n"
             "set termoption noenhanced\nset key top left\nset grid\n");
  /* Heap target (the most the heap holds before the next collection) and
   * live data after each collection, over time. */
  fprintf(f, "set output '%s/%s-heap.svg'\n", dir, name);
  fprintf(f, "set title '%s: heap over time'\nset xlabel 'time (ms)'\nset ylabel 'MiB'\n", title);
  fprintf(f, "plot ");
  for (int i = 0; i < n; i++)
    fprintf(f, "%s'%s' using 1:4 with steps lw 1.5 title '%s: heap target', "
               "'%s' using 1:3 with points pt 7 ps 0.4 title '%s: live after'",
            i ? ", " : "", csv[i], labels[i], csv[i], labels[i]);
  fprintf(f, "\n");
  /* Pause distribution: each collection's pause, sorted (a CDF on its
   * side: the share of pauses at or below a length). */
  fprintf(f, "set output '%s/%s-pauses.svg'\n", dir, name);
  fprintf(f, "set title '%s: pause distribution'\nset xlabel 'pause (ms)'\n"
             "set ylabel 'share of collections'\nset yrange [0:1]\nset key bottom right\n", title);
  fprintf(f, "plot ");
  for (int i = 0; i < n; i++)
    fprintf(f, "%s'%s' using 5:(1.0) smooth cnormal with steps lw 1.5 title '%s'", i ? ", " : "",
            csv[i], labels[i]);
  fprintf(f, "\n");
  if (fclose(f) != 0) return -1;
  char cmd[2 * PATH_MAX];
  snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>&1", script);
  if (system(cmd) != 0) {
    fprintf(stderr, "%s: gnuplot failed on %s\n", name, script);
    return -1;
  }
  printf("plots: %s/%s-heap.svg, %s/%s-pauses.svg\n", dir, name, dir, name);
  return 0;
}
