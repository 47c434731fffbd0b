/* fhbench helpers: clock, statistics, flags, machine description, progress.
 * Child-process helpers are in bench_child.c. */
#include "bench.h"

#include <faultheap.h>

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_percentile(const double *v, size_t n, double p) {
  if (n == 0) return NAN;
  double *s = malloc(n * sizeof *s);
  if (s == NULL) return NAN;
  memcpy(s, v, n * sizeof *s);
  qsort(s, n, sizeof *s, cmp_double);
  if (p < 0) p = 0;
  if (p > 100) p = 100;
  /* linear interpolation between closest ranks, so the 50th percentile of
   * an even count is the mean of the two middle values */
  double rank = p / 100.0 * (double)(n - 1);
  size_t lo = (size_t)rank;
  size_t hi = lo + 1 < n ? lo + 1 : lo;
  double r = s[lo] + (s[hi] - s[lo]) * (rank - (double)lo);
  free(s);
  return r;
}

double bench_median(const double *v, size_t n) { return bench_percentile(v, n, 50.0); }

/* ---- flags --------------------------------------------------------------- */

/* argv[i] is `name` itself (returns 1) or "name=..." (returns 2), else 0 */
static int flag_match(const char *arg, const char *name) {
  size_t len = strlen(name);
  if (strncmp(arg, name, len) != 0) return 0;
  if (arg[len] == '\0') return 1;
  return arg[len] == '=' ? 2 : 0;
}

const char *bench_flag(int argc, char **argv, const char *name) {
  for (int i = 1; i < argc; i++) {
    int m = flag_match(argv[i], name);
    if (m == 1) return i + 1 < argc ? argv[i + 1] : NULL;
    if (m == 2) return argv[i] + strlen(name) + 1;
  }
  return NULL;
}

int bench_has_flag(int argc, char **argv, const char *name) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return 1;
  return 0;
}

int bench_list_has(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return 1;
    if (!e) break;
    p = e + 1;
  }
  return 0;
}

int bench_check_flags(int argc, char **argv, const char *const *with_value,
                      const char *const *bare) {
  for (int i = 1; i < argc; i++) {
    int ok = 0;
    for (const char *const *f = with_value; f && *f && !ok; f++) {
      int m = flag_match(argv[i], *f);
      if (m == 1 && i + 1 < argc) {
        i++;
        ok = 1;
      } else if (m == 1) {
        fprintf(stderr, "%s: %s needs a value\n", argv[0], *f);
        return -1;
      } else if (m == 2) {
        ok = 1;
      }
    }
    for (const char *const *f = bare; f && *f && !ok; f++)
      ok = strcmp(argv[i], *f) == 0;
    if (!ok) {
      fprintf(stderr, "%s: unknown argument '%s'\n", argv[0], argv[i]);
      return -1;
    }
  }
  return 0;
}

int bench_runs_flag(int argc, char **argv, int dflt) {
  const char *s = bench_flag(argc, argv, "--runs");
  if (s == NULL) return dflt;
  char *end;
  long n = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || n < 1 || n > 1000) {
    fprintf(stderr, "%s: --runs wants a number from 1 to 1000, not '%s'\n", argv[0], s);
    return -1;
  }
  return (int)n;
}

size_t bench_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f == NULL) return 0;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- machine ------------------------------------------------------------- */

typedef struct machine {
  long cpus;
  char model[128];
  char kernel[192];
  unsigned caps;
} machine;

static void machine_get(machine *m) {
  struct utsname u;
  m->cpus = sysconf(_SC_NPROCESSORS_ONLN);
  snprintf(m->model, sizeof m->model, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[256];
  while (f && fgets(line, sizeof line, f)) {
    char *colon = strchr(line, ':');
    if (strncmp(line, "model name", 10) != 0 || colon == NULL) continue;
    colon += 1 + strspn(colon + 1, " \t");
    colon[strcspn(colon, "\n")] = '\0';
    snprintf(m->model, sizeof m->model, "%s", colon);
    break;
  }
  if (f) fclose(f);
  if (uname(&u) == 0)
    snprintf(m->kernel, sizeof m->kernel, "%.32s %.120s %.32s", u.sysname, u.release, u.machine);
  else
    snprintf(m->kernel, sizeof m->kernel, "unknown kernel");
  m->caps = fh_capabilities();
}

static const struct {
  unsigned bit;
  const char *name;
} cap_names[] = {
    {FH_CAP_UFFD, "uffd"},
    {FH_CAP_DONTUNMAP, "mremap-dontunmap"},
    {FH_CAP_UFFD_MOVE, "uffd-move"},
    {FH_CAP_UFFD_SIGBUS, "uffd-sigbus"},
    {FH_CAP_UFFD_MINOR, "uffd-minor"},
};
#define NCAPS (sizeof cap_names / sizeof cap_names[0])

void bench_print_machine(FILE *out) {
  machine m;
  machine_get(&m);
  fprintf(out, "machine: %ld CPUs (%s), %s, capabilities:", m.cpus, m.model, m.kernel);
  int any = 0;
  for (size_t i = 0; i < NCAPS; i++)
    if (m.caps & cap_names[i].bit) {
      fprintf(out, " %s", cap_names[i].name);
      any = 1;
    }
  fprintf(out, "%s\n", any ? "" : " none");
}

void bench_print_header(FILE *out) {
  static int printed;
  if (printed) return;
  printed = 1;
  bench_print_machine(out);
}

void bench_json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", c);
    else if (c < 0x20)
      fprintf(out, "\\u%04x", c);
    else
      fputc(c, out);
  }
  fputc('"', out);
}

void bench_json_machine(FILE *out) {
  machine m;
  machine_get(&m);
  fprintf(out, "{\"cpus\": %ld, \"cpu_model\": ", m.cpus);
  bench_json_string(out, m.model);
  fprintf(out, ", \"kernel\": ");
  bench_json_string(out, m.kernel);
  fprintf(out, ", \"capabilities\": [");
  const char *sep = "";
  for (size_t i = 0; i < NCAPS; i++)
    if (m.caps & cap_names[i].bit) {
      fprintf(out, "%s\"%s\"", sep, cap_names[i].name);
      sep = ", ";
    }
  fprintf(out, "]}");
}

/* ---- progress ------------------------------------------------------------ */

static int progress_shown;

void bench_progress(const char *fmt, ...) {
  if (!isatty(STDERR_FILENO)) return;
  va_list ap;
  va_start(ap, fmt);
  fputs("\r\033[K", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fflush(stderr);
  progress_shown = 1;
}

void bench_progress_done(void) {
  if (!progress_shown) return;
  fputs("\r\033[K", stderr);
  fflush(stderr);
  progress_shown = 0;
}
