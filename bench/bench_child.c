/* fhbench helpers: running one benchmark variant as a child process and
 * reading back its one-line result and its peak RSS. */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int bench_run_child(char *const argv[], bench_child *c) {
  int fd[2];
  memset(c, 0, sizeof *c);
  c->exit_status = -1;
  fflush(stdout);
  fflush(stderr);
  if (pipe(fd) != 0) {
    perror("fhbench: pipe");
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("fhbench: fork");
    close(fd[0]);
    close(fd[1]);
    return -1;
  }
  if (pid == 0) {
    dup2(fd[1], STDOUT_FILENO);
    close(fd[0]);
    close(fd[1]);
    execv(argv[0], argv);
    fprintf(stderr, "fhbench: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(fd[1]);
  /* keep the first sizeof(out)-1 bytes; drain the rest so the child never
   * blocks on a full pipe */
  size_t used = 0;
  char sink[512];
  for (;;) {
    ssize_t r;
    if (used + 1 < sizeof c->out)
      r = read(fd[0], c->out + used, sizeof c->out - 1 - used);
    else
      r = read(fd[0], sink, sizeof sink);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (used + 1 < sizeof c->out) used += (size_t)r;
  }
  c->out[used] = '\0';
  close(fd[0]);

  int status;
  struct rusage ru;
  /* wait4 gives this child's own peak RSS.  Across exec, Linux keeps the
   * maximum of the pre-exec image (a copy of this small runner) and the new
   * program, so the figure is the workload's unless it is smaller than us. */
  while (wait4(pid, &status, 0, &ru) < 0)
    if (errno != EINTR) {
      perror("fhbench: wait4");
      return -1;
    }
  c->max_rss_kib = (size_t)ru.ru_maxrss;
  if (WIFEXITED(status))
    c->exit_status = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    c->exit_status = 128 + WTERMSIG(status);
  return c->exit_status;
}

const char *bench_self_exe(void) {
  static char path[PATH_MAX];
  if (path[0] == '\0') {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return NULL;
    path[n] = '\0';
  }
  return path;
}

void bench_build_dir(int argc, char **argv, char *buf, size_t n) {
  const char *flag = bench_flag(argc, argv, "--build");
  if (flag) {
    snprintf(buf, n, "%s", flag);
    return;
  }
  const char *self = bench_self_exe();
  snprintf(buf, n, "%s", self ? self : ".");
  char *slash = strrchr(buf, '/');
  if (slash) *slash = 0;
}

int bench_program_path(const char *name, char *buf, size_t n) {
  const char *self = bench_self_exe();
  if (self == NULL) return 0;
  const char *slash = strrchr(self, '/');
  int dirlen = slash ? (int)(slash - self) : 1;
  snprintf(buf, n, "%.*s/bench/%s", dirlen, slash ? self : ".", name);
  struct stat st;
  return stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0;
}

double bench_kv(const char *line, const char *key) {
  size_t len = strlen(key);
  for (const char *p = line; (p = strstr(p, key)) != NULL; p += len) {
    /* a whole key: at the start or after a space, followed by '=' */
    if ((p == line || p[-1] == ' ' || p[-1] == '\n') && p[len] == '=') {
      char *end;
      double v = strtod(p + len + 1, &end);
      if (end != p + len + 1) return v;
    }
  }
  return -1;
}
