/* heap_max's default from the memory this process may use (heap/mem_limit.h).
 *
 * Read with open/read into stack buffers, not stdio: fh_options_init may
 * run on a small stack (a coroutine's) and must leave errno as it was.
 * Through heap/sys.h, so that make check-faults fails these calls too.
 * Any file that is missing, unreadable or longer than the buffer counts as
 * "no limit": the default is a cap, and a wrong guess on the high side
 * only means the kernel's OOM handling instead of the heap's error. */
#include "heap/mem_limit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "heap/sys.h"

#define MiB ((size_t)1 << 20)
#define FLOOR (256 * MiB)         /* the default before the twelfth session */
#define CEILING ((size_t)1 << 40) /* the option's own upper bound */
/* The reservation a heap makes is about 5-7x heap_max (heap.c:
 * map_spaces_image); under RLIMIT_AS the default leaves room for it. */
#define RESERVE_PER_HEAP_MAX 8
#define BUF 4096   /* /proc/self/cgroup, or a v1 memory.stat */
#define PATHLEN 512 /* a cgroup path longer than this: no limit */
#define MAX_DEPTH 16 /* cgroup v2 levels walked up */

size_t heap_max_for_memory(size_t mem) {
  size_t quarter = mem / 4;
  if (quarter < FLOOR) return FLOOR;
  return quarter > CEILING ? CEILING : quarter & ~(MiB - 1);
}

/* The whole file at path, NUL-terminated, into buf: its length, or -1 with
 * errno (EFBIG when it does not fit). */
static ssize_t read_file(const char *path, char *buf, size_t size) {
  int fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return -1;
  size_t n = 0;
  for (;;) {
    ssize_t r = sys_read(fd, buf + n, size - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      close(fd);
      if (r < 0) return -1;
      buf[n] = '\0';
      return (ssize_t)n;
    }
    n += (size_t)r;
    if (n == size - 1) {
      close(fd);
      errno = EFBIG;
      return -1;
    }
  }
}

/* The number after `key` at a line start in text (key "" : the text's
 * first number); 0 when absent or not a number ("max"). */
static size_t number_after(const char *text, const char *key) {
  size_t k = strlen(key);
  for (const char *line = text; *line;) {
    if (strncmp(line, key, k) == 0) {
      char *end;
      unsigned long long v = strtoull(line + k, &end, 10);
      return end != line + k ? (size_t)v : 0;
    }
    const char *nl = strchr(line, '\n');
    if (nl == NULL) break;
    line = nl + 1;
  }
  return 0;
}

/* The limit in /sys/fs/cgroup/DIR/CGROUP/FILE (after `key`), or in
 * DIR/FILE, the hierarchy's root as this process sees it, when the first
 * is missing (ENOENT): a cgroup v1 container without its own cgroup
 * namespace mounts its cgroup there while /proc/self/cgroup names the
 * host's path.  0: none. */
static size_t limit_at(const char *dir, const char *cgroup, const char *file, const char *key,
                       char *buf) {
  char path[PATHLEN + 64];
  for (int root = 0; root < 2; root++) {
    int at_root = root || strcmp(cgroup, "/") == 0;
    snprintf(path, sizeof path, "/sys/fs/cgroup%s%s/%s", dir, at_root ? "" : cgroup, file);
    if (read_file(path, buf, BUF) >= 0) return number_after(buf, key);
    if (errno != ENOENT || at_root) return 0;
  }
  return 0;
}

static size_t lower(size_t a, size_t b) { return a && (!b || a < b) ? a : b; }

/* cgroup v2: the lowest memory.max from the process's cgroup up to the
 * root of its namespace (a systemd slice or a container's parent may set
 * it above the leaf, which says "max"). */
static size_t v2_limit(char *cgroup, char *buf) {
  size_t limit = 0;
  for (int depth = 0; depth < MAX_DEPTH; depth++) {
    limit = lower(limit, limit_at("", cgroup, "memory.max", "", buf));
    char *slash = strrchr(cgroup, '/');
    if (slash == NULL || strcmp(cgroup, "/") == 0) break;
    if (slash == cgroup) slash[1] = '\0'; /* "/a" -> "/" */
    else *slash = '\0';
  }
  return limit;
}

/* Whether the comma-separated list names `want` as a whole token. */
static int has_token(const char *list, size_t n, const char *want) {
  size_t w = strlen(want);
  for (size_t i = 0; i < n;) {
    size_t e = i;
    while (e < n && list[e] != ',') e++;
    if (e - i == w && strncmp(list + i, want, w) == 0) return 1;
    i = e + 1;
  }
  return 0;
}

/* The memory limit of this process's cgroup, 0 for none: from
 * /proc/self/cgroup, the v1 memory controller's
 * hierarchical_memory_limit (memory.stat: its own limit or an ancestor's,
 * whichever is lower; unlimited reads as a huge number) or else cgroup
 * v2's memory.max, walked up. */
static size_t cgroup_memory_limit(void) {
  char buf[BUF], v1[PATHLEN] = "", v2[PATHLEN] = "";
  if (read_file("/proc/self/cgroup", buf, sizeof buf) < 0) return 0;
  for (char *line = buf; *line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    /* "ID:CONTROLLERS:PATH" */
    char *c = strchr(line, ':'), *p = c ? strchr(c + 1, ':') : NULL;
    if (p && strlen(p + 1) < PATHLEN) {
      if (p == c + 1 && strncmp(line, "0:", 2) == 0)
        strcpy(v2, p + 1);
      else if (has_token(c + 1, (size_t)(p - c - 1), "memory"))
        strcpy(v1, p + 1);
    }
    if (!nl) break;
    line = nl + 1;
  }
  if (v1[0]) return limit_at("/memory", v1, "memory.stat", "hierarchical_memory_limit ", buf);
  return v2[0] ? v2_limit(v2, buf) : 0;
}

size_t heap_default_max(void) {
  int saved = errno;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  size_t mem = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
  size_t max = heap_max_for_memory(lower(mem, cgroup_memory_limit()));
  /* Under an address-space limit (ulimit -v) the reservation must fit. */
  struct rlimit as;
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
    size_t room = (size_t)as.rlim_cur / RESERVE_PER_HEAP_MAX & ~(MiB - 1);
    if (room < max) max = room > MiB ? room : MiB;
  }
  errno = saved;
  return max;
}
