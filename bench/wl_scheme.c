/* fhbench scheme (issue 20): the Scheme programs of bench/scheme/ (written
 * for this project: gcbench, rewrite, earley, deriv, destruct, maze,
 * paraffins, strings, hashtables, threads) run by build/fhscheme on the
 * heap's default collector and on each --collectors entry (FHS_OPTIONS=
 * collector=NAME), by build/fhscheme-bdw (the same interpreter on Boehm
 * GC) and, when guile-3.0 is on PATH, by Guile (bench/scheme/
 * guile-prelude.scm in front; one untimed run first compiles it).  Each
 * cell is the median of --runs N (default 1) of: wall time, maximum pause
 * (fhscheme's FHS_STATS line: faultheap's fh_stats, Boehm's world-stop
 * events; "-" for Guile) and peak RSS (the child's ru_maxrss).  Every
 * output must equal the first configuration's (exit 1 otherwise).
 * Targets (issue 20): default collector geometric mean time and RSS <=
 * 1.0x Boehm's, no program above 1.3x; maximum pause <= 1 ms with the
 * concurrent collector. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define MAXP 32
#define MAXC 16
typedef struct cell {
  double secs, pause_ms;
  long rss_kib;
  int ok;
} cell;

static char *slurp_fd(int fd) {
  size_t cap = 4096, n = 0;
  char *b = malloc(cap);
  lseek(fd, 0, SEEK_SET);
  ssize_t r;
  while (b && (r = read(fd, b + n, cap - n - 1)) > 0)
    if ((n += (size_t)r) == cap - 1) b = realloc(b, cap *= 2);
  if (b) b[n] = 0;
  return b;
}

/* One run: argv with FHS_OPTIONS=opts (NULL: unset) and FHS_STATS=1. */
static int run_once(char *const argv[], const char *opts, cell *c, char **out) {
  FILE *fo = tmpfile(), *fe = tmpfile();
  if (!fo || !fe) return -1;
  uint64_t t0 = bench_now_ns();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    if (opts) setenv("FHS_OPTIONS", opts, 1);
    else unsetenv("FHS_OPTIONS");
    setenv("FHS_STATS", "1", 1);
    execvp(argv[0], argv);
    _exit(127);
  }
  int st;
  struct rusage ru;
  if (wait4(pid, &st, 0, &ru) < 0) return -1;
  c->secs = (double)(bench_now_ns() - t0) / 1e9;
  c->rss_kib = ru.ru_maxrss;
  c->ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  char *err = slurp_fd(fileno(fe));
  *out = slurp_fd(fileno(fo));
  c->pause_ms = -1;
  const char *m = err ? strstr(err, " ms total, ") : NULL;
  if (m) c->pause_ms = strtod(m + strlen(" ms total, "), NULL);
  if (!c->ok && err) fprintf(stderr, "scheme: %s %s failed: %.300s\n", argv[0], opts ? opts : "", err);
  free(err);
  fclose(fo);
  fclose(fe);
  return 0;
}

typedef struct config {
  const char *name; /* column */
  const char *bin;  /* executable */
  const char *opts; /* FHS_OPTIONS */
  int guile;
} config;

static double geomean(const double *v, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += log(v[i]);
  return n ? exp(s / n) : 0;
}

static int split(char *s, const char **out, int max) {
  int n = 0;
  for (char *t = strtok(s, ","); t && n < max; t = strtok(NULL, ",")) out[n++] = t;
  return n;
}

int wl_scheme(int argc, char **argv) {
  static const char *const with_value[] = {"--json", "--runs", "--programs", "--collectors",
                                           "--dir", "--build", NULL};
  static const char *const bare[] = {"--no-guile", NULL};
  if (bench_check_flags(argc, argv, with_value, bare) != 0) return 2;
  int runs = bench_runs_flag(argc, argv, 1);
  if (runs < 0) return 2;
  const char *dir = bench_flag(argc, argv, "--dir");
  if (!dir) dir = "bench/scheme";
  char build[4096];
  bench_build_dir(argc, argv, build, sizeof build);
  char progbuf[1024], collbuf[1024];
  const char *pf = bench_flag(argc, argv, "--programs"), *cf = bench_flag(argc, argv, "--collectors");
  snprintf(progbuf, sizeof progbuf, "%s",
           pf ? pf : "gcbench,rewrite,earley,deriv,destruct,maze,paraffins,strings,hashtables,threads");
  snprintf(collbuf, sizeof collbuf, "%s", cf ? cf : "mark_sweep,semispace,mark_compact,concurrent_compact");
  const char *progs[MAXP], *colls[MAXC];
  int np = split(progbuf, progs, MAXP), ncol = split(collbuf, colls, MAXC - 3);

  static char fhs[4200], bdw[4200], optbuf[MAXC][128];
  snprintf(fhs, sizeof fhs, "%s/fhscheme", build);
  snprintf(bdw, sizeof bdw, "%s/fhscheme-bdw", build);
  config cfg[MAXC];
  int nc = 0;
  cfg[nc++] = (config){"default", fhs, NULL, 0};
  for (int i = 0; i < ncol; i++) {
    /* An entry may carry options after '+': "concurrent_compact+concurrent_mark=1";
     * "default" is the heap's default collector ("default+generational=0"). */
    const char *name = colls[i], *plus = strchr(name, '+');
    if (strncmp(name, "default", 7) == 0 && (name[7] == '\0' || name[7] == '+'))
      snprintf(optbuf[i], sizeof optbuf[i], "%s", plus ? plus + 1 : "");
    else
      snprintf(optbuf[i], sizeof optbuf[i], "collector=%s", name);
    for (char *q = optbuf[i]; *q; q++)
      if (*q == '+') *q = ',';
    cfg[nc++] = (config){colls[i], fhs, optbuf[i], 0};
  }
  int bdw_col = -1;
  if (access(bdw, X_OK) == 0) {
    bdw_col = nc;
    cfg[nc++] = (config){"bdw", bdw, NULL, 0};
  } else {
    fprintf(stderr, "scheme: no %s (make fhscheme-bdw): no Boehm column\n", bdw);
  }
  if (!bench_has_flag(argc, argv, "--no-guile") && system("command -v guile-3.0 >/dev/null 2>&1") == 0)
    cfg[nc++] = (config){"guile", "guile-3.0", NULL, 1};

  bench_print_header(stdout);
  static cell res[MAXP][MAXC];
  int bad = 0;
  for (int p = 0; p < np; p++) {
    char path[4400], gpath[64] = "";
    snprintf(path, sizeof path, "%s/%s.scm", dir, progs[p]);
    char *want = NULL;
    for (int c = 0; c < nc; c++) {
      char *args[8];
      int k = 0;
      args[k++] = (char *)cfg[c].bin;
      if (cfg[c].guile) { /* prelude + program in one file; a first run compiles it */
        snprintf(gpath, sizeof gpath, "/tmp/fhbench-guile-%d-%s.scm", (int)getpid(), progs[p]);
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "cat %s/guile-prelude.scm %s > %s", dir, path, gpath);
        if (system(cmd) != 0) continue;
        args[k++] = "-q";
        args[k++] = gpath;
        args[k] = NULL;
        cell warm;
        char *o = NULL;
        run_once(args, NULL, &warm, &o);
        free(o);
      } else {
        args[k++] = path;
        args[k] = NULL;
      }
      double secs[1000], pauses[1000], rss[1000];
      cell *r = &res[p][c];
      r->ok = 1;
      for (int i = 0; i < runs; i++) {
        bench_progress("scheme: %s on %s, run %d/%d", progs[p], cfg[c].name, i + 1, runs);
        cell one;
        char *out = NULL;
        if (run_once(args, cfg[c].opts, &one, &out) < 0) one.ok = 0;
        if (one.ok && out) {
          if (!want) want = strdup(out);
          else if (strcmp(want, out) != 0) {
            fprintf(stderr, "scheme: %s on %s printed %.200s, expected %.200s\n", progs[p],
                    cfg[c].name, out, want);
            one.ok = 0;
          }
        }
        free(out);
        r->ok &= one.ok;
        secs[i] = one.secs;
        pauses[i] = one.pause_ms;
        rss[i] = (double)one.rss_kib;
      }
      r->secs = bench_median(secs, (size_t)runs);
      r->pause_ms = bench_median(pauses, (size_t)runs);
      r->rss_kib = (long)bench_median(rss, (size_t)runs);
      if (!r->ok) bad = 1;
      if (gpath[0]) unlink(gpath);
    }
    free(want);
  }
  bench_progress_done();

  const char *titles[3] = {"time (s)", "max pause (ms)", "peak RSS (MiB)"};
  for (int t = 0; t < 3; t++) {
    printf("scheme: %s, median of %d run%s\n  %-11s", titles[t], runs, runs > 1 ? "s" : "", "program");
    for (int c = 0; c < nc; c++) printf(" %13s", cfg[c].name);
    printf("\n");
    for (int p = 0; p < np; p++) {
      printf("  %-11s", progs[p]);
      for (int c = 0; c < nc; c++) {
        cell *r = &res[p][c];
        if (!r->ok) printf(" %13s", "FAILED");
        else if (t == 0) printf(" %13.3f", r->secs);
        else if (t == 1 && r->pause_ms >= 0) printf(" %13.2f", r->pause_ms);
        else if (t == 1) printf(" %13s", "-");
        else printf(" %13.1f", r->rss_kib / 1024.0);
      }
      printf("\n");
    }
  }
  if (bdw_col >= 0) {
    printf("scheme: against fhscheme-bdw (geometric means over the programs; worst program)\n");
    printf("  %-19s %10s %12s %10s %14s\n", "configuration", "time", "worst time", "peak RSS",
           "max pause ms");
    for (int c = 0; c < nc; c++) {
      double tr[MAXP], rr[MAXP], worst = 0, maxpause = 0;
      int n = 0;
      for (int p = 0; p < np; p++) {
        if (!res[p][c].ok || !res[p][bdw_col].ok) continue;
        tr[n] = res[p][c].secs / res[p][bdw_col].secs;
        rr[n] = (double)res[p][c].rss_kib / (double)res[p][bdw_col].rss_kib;
        if (tr[n] > worst) worst = tr[n];
        if (res[p][c].pause_ms > maxpause) maxpause = res[p][c].pause_ms;
        n++;
      }
      printf("  %-19s %9.2fx %11.2fx %9.2fx", cfg[c].name, geomean(tr, n), worst, geomean(rr, n));
      if (cfg[c].guile) printf(" %14s\n", "-");
      else printf(" %14.2f\n", maxpause);
    }
  }
  const char *json = bench_flag(argc, argv, "--json");
  if (json) {
    FILE *f = fopen(json, "w");
    if (!f) {
      fprintf(stderr, "scheme: cannot write %s: %s\n", json, strerror(errno));
    } else {
      fprintf(f, "{\"workload\":\"scheme\",\"machine\":");
      bench_json_machine(f);
      fprintf(f, ",\"runs\":%d,\"results\":[", runs);
      int first = 1;
      for (int p = 0; p < np; p++)
        for (int c = 0; c < nc; c++) {
          cell *r = &res[p][c];
          fprintf(f, "%s{\"program\":", first ? "" : ",");
          bench_json_string(f, progs[p]);
          fprintf(f, ",\"config\":");
          bench_json_string(f, cfg[c].name);
          fprintf(f, ",\"ok\":%s,\"seconds\":%.4f,\"max_pause_ms\":%.3f,\"peak_rss_kib\":%ld}",
                  r->ok ? "true" : "false", r->secs, r->pause_ms, r->rss_kib);
          first = 0;
        }
      fprintf(f, "]}\n");
      fclose(f);
    }
  }
  return bad;
}
