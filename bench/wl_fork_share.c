/* fhbench fork-share: how much of a warmed heap forked children keep
 * sharing with their parent, with and without fh_prefork.
 *
 * The parent builds a fragmented heap (--live MiB of live objects, default
 * 64: lists of small nodes, each holding a blob of 64-448 bytes, one node in
 * sixteen non-moving, with as much garbage allocated in between), then
 * either calls fh_prefork (zygote compaction) or just fh_collect (the
 * baseline, what a program without the pre-fork API would do), and forks
 * --children N (default 4) children.  Each child reads the whole heap
 * (checking every value), allocates --alloc MiB (default 4) of short-lived
 * objects, collects twice, and reports from /proc/self/smaps_rollup how
 * much its private dirty memory grew since the fork and how much it still
 * shares.  The parent waits (its pages stay mapped, so shared pages count
 * as shared) and prints the median per child of both variants, and their
 * ratio to the live data.  Target: prefork growth <= 0.15x live. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "faultheap.h"

typedef struct wnode {
  struct wnode *next;
  uint64_t *blob; /* no references */
  uint64_t value;
  uint64_t sum; /* sum of the blob's words */
} wnode;

typedef struct types {
  uint32_t node, blob, roots;
} types;

#define NLISTS 4096

static void register_types(fh_heap *h, types *ty) {
  static const uint32_t node_refs[] = {0, 8};
  ty->node = fh_register_type(h, &(fh_type){.name = "wnode", .size = sizeof(wnode), .nrefs = 2,
                                             .ref_offsets = node_refs});
  ty->blob = fh_register_type(h, &(fh_type){.name = "blob"});
  ty->roots = fh_register_type(h, &(fh_type){.name = "roots", .flags = FH_TYPE_REF_ARRAY});
}

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

/* One node and its blob. */
static wnode *make_node(fh_thread *t, const types *ty, uint64_t v, int nonmoving, uint64_t *rng) {
  size_t words = 8 + (size_t)(rng_next(rng) % 49); /* 64..448 bytes */
  wnode *n = nonmoving ? fh_alloc_nonmoving(t, ty->node, sizeof(wnode))
                       : fh_alloc(t, ty->node, sizeof(wnode));
  if (!n) return NULL;
  n->value = v;
  fh_push_root(t, (void **)&n);
  uint64_t *b = fh_alloc(t, ty->blob, words * 8);
  fh_pop_roots(t, 1);
  if (!b) return NULL;
  uint64_t sum = 0;
  for (size_t i = 0; i < words; i++) sum += b[i] = v * 31 + i;
  n->sum = sum;
  fh_write_ref(t, n, (void **)&n->blob, b);
  return n;
}

static size_t node_bytes(const wnode *n) { return 16 + sizeof(wnode) + fh_object_size(n->blob); }

/* Live bytes reach `live`, in NLISTS lists; as many garbage nodes in
 * between, so the heap is fragmented before it is compacted. */
static int build(fh_thread *t, const types *ty, void **lists, size_t live, uint64_t *nodes) {
  uint64_t rng = 0x9E3779B97F4A7C15ull, v = 0;
  for (size_t bytes = 0; bytes < live; v++) {
    wnode *n = make_node(t, ty, v, v % 16 == 0, &rng);
    if (!n) return -1;
    size_t li = (size_t)(v % NLISTS);
    fh_write_ref(t, n, (void **)&n->next, lists[li]);
    fh_write_ref(t, lists, &lists[li], n);
    bytes += node_bytes(n);
    if (!make_node(t, ty, 0, 0, &rng)) return -1; /* garbage */
  }
  *nodes = v;
  return 0;
}

/* Reads every node and blob; 0 when every value is right. */
static int read_all(void **lists, uint64_t nodes) {
  uint64_t seen = 0;
  for (size_t li = 0; li < NLISTS; li++)
    for (wnode *n = lists[li]; n; n = n->next) {
      uint64_t sum = 0;
      size_t words = fh_object_size(n->blob) / 8;
      for (size_t i = 0; i < words; i++) sum += n->blob[i];
      if (sum != n->sum || n->value % NLISTS != li) return -1;
      seen++;
    }
  return seen == nodes ? 0 : -1;
}

typedef struct mem {
  size_t private_dirty, shared;
} mem;

static int read_rollup(mem *m) {
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  if (!f) return -1;
  char line[256];
  size_t kb;
  *m = (mem){0, 0};
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "Private_Dirty: %zu kB", &kb) == 1) m->private_dirty = kb << 10;
    else if (sscanf(line, "Shared_Clean: %zu kB", &kb) == 1) m->shared += kb << 10;
    else if (sscanf(line, "Shared_Dirty: %zu kB", &kb) == 1) m->shared += kb << 10;
  }
  fclose(f);
  return 0;
}

typedef struct child_report {
  int ok;
  size_t growth, shared;
} child_report;

static void child(fh_heap *h, fh_thread *t, const types *ty, void **lists, uint64_t nodes,
                  size_t alloc, int prefork, int fd) {
  child_report r = {0, 0, 0};
  mem m0, m1;
  if (prefork) fh_postfork_child(h);
  if (read_rollup(&m0) == 0 && read_all(lists, nodes) == 0) {
    uint64_t rng = 12345;
    int bad = 0;
    for (size_t done = 0; done < alloc && !bad;) { /* short-lived objects */
      wnode *n = make_node(t, ty, 1, 0, &rng);
      bad = !n;
      if (n) done += node_bytes(n);
    }
    for (int i = 0; i < 2 && !bad; i++) bad = fh_collect(t, FH_COLLECT_DEFAULT) < 0;
    fh_gc_wait(h);
    if (!bad && read_all(lists, nodes) == 0 && read_rollup(&m1) == 0) {
      r.ok = 1;
      r.growth = m1.private_dirty > m0.private_dirty ? m1.private_dirty - m0.private_dirty : 0;
      r.shared = m1.shared;
    }
  }
  if (write(fd, &r, sizeof r) != (ssize_t)sizeof r) _exit(3);
  _exit(r.ok ? 0 : 1);
}

typedef struct variant {
  double growth_median, shared_median, prepare_ms;
  size_t live_bytes;
  int ok;
} variant;

static size_t heap_live(fh_heap *h) {
  fh_stats s;
  fh_get_stats(h, &s);
  size_t n = 0;
  for (unsigned i = 0; i < s.nspaces; i++)
    if (strcmp(s.spaces[i].name, "native") != 0) n += s.spaces[i].used;
  return n;
}

static int run_variant(const char *spec, int prefork, int children, size_t live, size_t alloc,
                       variant *out) {
  *out = (variant){0};
  fh_options o;
  fh_options_init(&o);
  o.heap_max = live * 4 + ((size_t)64 << 20);
  o.non_moving_max = live * 2 + ((size_t)64 << 20);
  if (spec && fh_options_parse(&o, spec) < 0) {
    fprintf(stderr, "fork-share: %s\n", fh_last_error());
    return -1;
  }
  fh_heap *h = fh_heap_create(&o);
  if (!h) {
    fprintf(stderr, "fork-share: %s\n", fh_last_error());
    return -1;
  }
  types ty;
  register_types(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void **lists = fh_alloc_nonmoving(t, ty.roots, NLISTS * sizeof(void *));
  fh_root_add(h, (void **)&lists);
  uint64_t nodes = 0;
  int rc = -1;
  if (!lists || build(t, &ty, lists, live, &nodes) < 0) {
    fprintf(stderr, "fork-share: building the heap failed: %s\n", fh_last_error());
    goto done;
  }
  uint64_t t0 = bench_now_ns();
  if ((prefork ? fh_prefork(t) : fh_collect(t, FH_COLLECT_DEFAULT)) < 0) {
    fprintf(stderr, "fork-share: %s\n", fh_last_error());
    goto done;
  }
  fh_gc_wait(h);
  out->prepare_ms = (double)(bench_now_ns() - t0) / 1e6;
  out->live_bytes = heap_live(h);
  int fds[2];
  if (pipe(fds) < 0) goto done;
  pid_t pids[64];
  int n = 0;
  for (; n < children; n++) {
    pids[n] = fork();
    if (pids[n] < 0) break;
    if (pids[n] == 0) {
      close(fds[0]);
      child(h, t, &ty, lists, nodes, alloc, prefork, fds[1]);
    }
  }
  if (prefork) fh_postfork_parent(h);
  close(fds[1]);
  double growth[64], shared[64];
  int got = 0, ok = n == children;
  for (int i = 0; i < n; i++) {
    child_report r;
    if (read(fds[0], &r, sizeof r) == (ssize_t)sizeof r && r.ok) {
      growth[got] = (double)r.growth;
      shared[got++] = (double)r.shared;
    }
  }
  for (int i = 0; i < n; i++) {
    int st = 0;
    waitpid(pids[i], &st, 0);
    ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  close(fds[0]);
  if (ok && got == n && got > 0) {
    out->growth_median = bench_median(growth, (size_t)got);
    out->shared_median = bench_median(shared, (size_t)got);
    out->ok = 1;
    rc = 0;
  } else {
    fprintf(stderr, "fork-share: a child failed (wrong value, failed collection or crash)\n");
  }
done:
  fh_root_remove(h, (void **)&lists);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return rc;
}

static void print_json(const char *file, const char *collector, int children, size_t alloc,
                       const variant *pre, const variant *base) {
  FILE *f = fopen(file, "w");
  if (!f) {
    fprintf(stderr, "fork-share: cannot write %s: %s\n", file, strerror(errno));
    return;
  }
  fprintf(f, "{\"workload\":\"fork-share\",\"machine\":");
  bench_json_machine(f);
  fprintf(f, ",\"collector\":");
  bench_json_string(f, collector);
  fprintf(f, ",\"children\":%d,\"alloc_bytes_per_child\":%zu,\"live_bytes\":%zu", children, alloc,
          pre->live_bytes);
  const variant *v[2] = {pre, base};
  const char *names[2] = {"prefork", "baseline"};
  for (int i = 0; i < 2; i++)
    fprintf(f, ",\"%s\":{\"private_dirty_per_child_bytes\":%.0f,\"shared_per_child_bytes\":%.0f,"
               "\"live_bytes\":%zu,\"prepare_ms\":%.1f,\"ratio_to_live\":%.4f}",
            names[i], v[i]->growth_median, v[i]->shared_median, v[i]->live_bytes,
            v[i]->prepare_ms, v[i]->growth_median / (double)pre->live_bytes);
  fprintf(f, "}\n");
  fclose(f);
}

int wl_fork_share(int argc, char **argv) {
  static const char *const with_value[] = {"--json", "--children", "--live", "--alloc",
                                           "--collector", NULL};
  if (bench_check_flags(argc, argv, with_value, NULL) != 0) return 2;
  const char *cs = bench_flag(argc, argv, "--children");
  const char *ls = bench_flag(argc, argv, "--live");
  const char *as = bench_flag(argc, argv, "--alloc");
  const char *collector = bench_flag(argc, argv, "--collector");
  int children = cs ? atoi(cs) : 4;
  long live_mib = ls ? atol(ls) : 64, alloc_mib = as ? atol(as) : 4;
  if (children < 1 || children > 64 || live_mib < 1 || live_mib > 4096 || alloc_mib < 0 ||
      alloc_mib > 4096) {
    fprintf(stderr, "fork-share: --children 1..64, --live 1..4096 (MiB), --alloc 0..4096 (MiB)\n");
    return 2;
  }
  char spec[64] = "";
  if (collector) snprintf(spec, sizeof spec, "collector=%s", collector);
  size_t live = (size_t)live_mib << 20, alloc = (size_t)alloc_mib << 20;
  bench_print_header(stdout);
  variant pre, base;
  int bad = run_variant(collector ? spec : NULL, 1, children, live, alloc, &pre) < 0;
  bad |= run_variant(collector ? spec : NULL, 0, children, live, alloc, &base) < 0;
  if (bad) return 1;
  const char *cname = collector ? collector : "default";
  double mib = 1024.0 * 1024.0, lv = (double)pre.live_bytes;
  printf("fork-share: %s collector, %.1f MiB live, %d children each read the heap, allocate "
         "%ld MiB and collect twice (medians per child)\n", cname, lv / mib, children, alloc_mib);
  printf("  %-10s %14s %10s %14s %12s\n", "variant", "pr.dirty MiB", "x live", "shared MiB",
         "prepare ms");
  const variant *v[2] = {&pre, &base};
  const char *names[2] = {"prefork", "baseline"};
  for (int i = 0; i < 2; i++)
    printf("  %-10s %14.2f %10.3f %14.1f %12.1f\n", names[i], v[i]->growth_median / mib,
           v[i]->growth_median / lv, v[i]->shared_median / mib, v[i]->prepare_ms);
  printf("  prefork / baseline private dirty: %.3f; target prefork <= 0.15x live: %s\n",
         base.growth_median > 0 ? pre.growth_median / base.growth_median : 0.0,
         pre.growth_median <= 0.15 * lv ? "met" : "NOT met");
  const char *json = bench_flag(argc, argv, "--json");
  if (json) print_json(json, cname, children, alloc, &pre, &base);
  return 0;
}
