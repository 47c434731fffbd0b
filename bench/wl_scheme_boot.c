/* fhbench scheme-boot (issue 20): fhscheme's start-up from its heap image
 * against loading its library from source.  The image is written first
 * (build/fhscheme --save-image, a temporary file); then --runs N (default
 * 21) pairs of fresh processes, interleaved so that load changes hit both
 * ways alike:
 *   build/fhscheme --boot-time --image IMG -e 1
 *   build/fhscheme --boot-time --lib -e 1
 * Each is measured three ways, the same points both ways:
 *   ready   main() until the interpreter can read its first expression
 *           (fhscheme's own clock_gettime; its "booted in" line);
 *   first   main() until `1` has been read, compiled and evaluated (its
 *           "scripts done" line): so initialisation put off until first
 *           use is counted;
 *   process fork() until the child has exited, as seen by this parent
 *           (exec, the dynamic loader, libc and heap teardown included;
 *           the same for both, so it dilutes the ratio).
 * Medians (and minima) of each, and the ratio source / image.  Target
 * (issue 20): image boot >= 20x faster. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

typedef struct boot_run {
  double ready_ms, first_ms, process_ms;
} boot_run;

static int run_boot(const char *bin, const char *mode, const char *arg, boot_run *r) {
  FILE *fe = tmpfile();
  if (!fe) return -1;
  uint64_t t0 = bench_now_ns();
  pid_t pid = fork();
  if (pid < 0) {
    fclose(fe);
    return -1;
  }
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 1);
    dup2(fileno(fe), 2);
    unsetenv("FHS_OPTIONS");
    if (arg) execl(bin, bin, "--boot-time", mode, arg, "-e", "1", (char *)NULL);
    else execl(bin, bin, "--boot-time", mode, "-e", "1", (char *)NULL);
    _exit(127);
  }
  int st;
  if (waitpid(pid, &st, 0) < 0) {
    fclose(fe);
    return -1;
  }
  r->process_ms = (double)(bench_now_ns() - t0) / 1e6;
  char buf[1024] = "";
  rewind(fe);
  size_t n = fread(buf, 1, sizeof buf - 1, fe);
  buf[n] = 0;
  fclose(fe);
  const char *b = strstr(buf, "booted in "), *f = strstr(buf, "scripts done ");
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !b || !f) {
    fprintf(stderr, "scheme-boot: %s %s failed: %.300s\n", bin, mode, buf);
    return -1;
  }
  r->ready_ms = strtod(b + strlen("booted in "), NULL);
  r->first_ms = strtod(f + strlen("scripts done "), NULL);
  return 0;
}

static double minimum(const double *v, int n) {
  double m = v[0];
  for (int i = 1; i < n; i++)
    if (v[i] < m) m = v[i];
  return m;
}

int wl_scheme_boot(int argc, char **argv) {
  static const char *const with_value[] = {"--runs", "--build", NULL};
  static const char *const bare[] = {NULL};
  if (bench_check_flags(argc, argv, with_value, bare) != 0) return 2;
  int runs = bench_runs_flag(argc, argv, 21);
  if (runs < 0) return 2;
  char build[4096];
  const char *bf = bench_flag(argc, argv, "--build");
  if (bf) snprintf(build, sizeof build, "%s", bf);
  else { /* beside this fhbench */
    snprintf(build, sizeof build, "%s", bench_self_exe());
    char *slash = strrchr(build, '/');
    if (slash) *slash = 0;
  }
  char bin[4200], img[64], cmd[8500];
  snprintf(bin, sizeof bin, "%s/fhscheme", build);
  snprintf(img, sizeof img, "/tmp/fhbench-boot-%d.img", (int)getpid());
  snprintf(cmd, sizeof cmd, "'%s' --save-image %s >/dev/null", bin, img);
  if (system(cmd) != 0) {
    fprintf(stderr, "scheme-boot: %s could not save an image\n", bin);
    return 1;
  }
  bench_print_header(stdout);
  enum { IMAGE, SOURCE };
  double v[2][3][1000];
  int bad = 0;
  for (int i = 0; i < runs && !bad; i++) {
    bench_progress("scheme-boot: run %d/%d", i + 1, runs);
    for (int way = 0; way < 2 && !bad; way++) {
      boot_run r;
      if (run_boot(bin, way == IMAGE ? "--image" : "--lib", way == IMAGE ? img : NULL, &r) < 0) {
        bad = 1;
        break;
      }
      v[way][0][i] = r.ready_ms;
      v[way][1][i] = r.first_ms;
      v[way][2][i] = r.process_ms;
    }
  }
  bench_progress_done();
  unlink(img);
  if (bad) return 1;
  static const char *const what[3] = {"ready (main to first read)", "first (main to `1` evaluated)",
                                      "process (fork to exit)"};
  printf("scheme-boot: fhscheme start-up, ms, median (min) of %d interleaved runs\n", runs);
  printf("  %-30s %17s %17s %8s\n", "measure", "from the image", "from source", "ratio");
  for (int m = 0; m < 3; m++) {
    double im = bench_median(v[IMAGE][m], (size_t)runs), so = bench_median(v[SOURCE][m], (size_t)runs);
    printf("  %-30s %8.3f (%6.3f) %8.3f (%6.3f) %7.1fx\n", what[m], im, minimum(v[IMAGE][m], runs), so,
           minimum(v[SOURCE][m], runs), so / im);
  }
  printf("  target (issue 20): the image >= 20x faster\n");
  return 0;
}
