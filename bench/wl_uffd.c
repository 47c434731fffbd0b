/* fhbench uffd: per-page cost of each userfaultfd operation the concurrent
 * compactor uses, against a plain first-touch fault, and the flip's
 * mremap(MREMAP_DONTUNMAP) at several sizes.
 *
 * Everything goes through the uffd/ module's API (this is also a test of
 * it).  Fault figures are per fault, timed one by one around the faulting
 * load; each run reports its median (and p99), and the table shows the
 * median over runs.  Every installed page is checked afterwards: a wrong
 * byte makes the workload fail with status 1. */
#include "bench.h"

#include <errno.h>
#include <faultheap.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "uffd/uffd.h"
#include "uffd/uffd_abi.h"

#define PG FH_UFFD_PAGE
#define FAULT_PAGES 2048u /* 8 MiB per fault run */
#define BATCH_PAGES 8192u /* 32 MiB per batched run */
#define BATCH 64u         /* pages per ioctl in batched runs */

static int failed;

static void *map_rw(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  madvise(p, len, MADV_NOHUGEPAGE); /* 4 KiB faults, as the heap's pages */
  return p;
}

/* page i of a from-space carries i in every word */
static void fill(char *base, size_t npages) {
  for (size_t i = 0; i < npages; i++) {
    uint64_t *w = (uint64_t *)(base + i * PG);
    for (size_t k = 0; k < PG / 8; k++)
      w[k] = i * 0x100000001ull + k;
  }
}

static void check(const char *what, const char *base, size_t npages, int zero) {
  for (size_t i = 0; i < npages; i++) {
    const uint64_t *w = (const uint64_t *)(base + i * PG);
    for (size_t k = 0; k < PG / 8; k += 61) {
      uint64_t want = zero ? 0 : i * 0x100000001ull + k;
      if (w[k] != want) {
        fprintf(stderr, "uffd: %s: page %zu word %zu is %#llx, want %#llx\n", what, i, k,
                (unsigned long long)w[k], (unsigned long long)want);
        failed = 1;
        return;
      }
    }
  }
}

/* ---- resolvers ------------------------------------------------------------- */

typedef enum { R_COPY, R_ZERO, R_MOVE } rkind;
typedef struct rctx {
  char *from;
  rkind kind;
} rctx;

static int resolve(void *arg, const fh_uffd_fault *f) {
  rctx *c = arg;
  char *src = c->from + (f->page - f->range_lo);
  fh_uffd_status s;
  switch (c->kind) {
  case R_ZERO:
    s = fh_uffd_zeropage(f->fd, (void *)f->page, PG, 0, NULL);
    break;
  case R_MOVE:
    s = fh_uffd_move(f->fd, (void *)f->page, src, PG, 0, NULL);
    if (s == FH_UFFD_BUSY) /* COW-shared source: COPY instead */
      s = fh_uffd_copy(f->fd, (void *)f->page, src, PG, 0, NULL);
    break;
  default:
    s = fh_uffd_copy(f->fd, (void *)f->page, src, PG, 0, NULL);
  }
  if (s == FH_UFFD_OK)
    return FH_UFFD_RESOLVED;
  return s == FH_UFFD_EXISTED || s == FH_UFFD_ENOENT ? FH_UFFD_RESOLVED_EXISTED
                                                     : FH_UFFD_RESOLVE_FAILED;
}

/* ---- fault runs -------------------------------------------------------------- */

typedef struct result {
  double p50, p99;
} result;

static volatile uint64_t sink;

/* Touch every page of `to` once, timing each fault; fills lat[]. */
static void touch_timed(char *to, size_t npages, double *lat) {
  for (size_t i = 0; i < npages; i++) {
    volatile uint64_t *p = (volatile uint64_t *)(to + i * PG);
    uint64_t t0 = bench_now_ns();
    sink += *p;
    lat[i] = (double)(bench_now_ns() - t0) / 1000.0;
  }
}

static void first_touch(size_t npages, double *lat) {
  char *to = map_rw(npages * PG);
  if (!to) {
    failed = 1;
    return;
  }
  for (size_t i = 0; i < npages; i++) {
    volatile uint64_t *p = (volatile uint64_t *)(to + i * PG);
    uint64_t t0 = bench_now_ns();
    *p = i; /* a write fault: allocate, zero, map */
    lat[i] = (double)(bench_now_ns() - t0) / 1000.0;
  }
  munmap(to, npages * PG);
}

/* One run of uffd faults over a fresh registered range. */
static int uffd_faults(fh_uffd *u, rkind kind, char *from, size_t npages, double *lat) {
  char *to = map_rw(npages * PG);
  if (!to)
    return -1;
  if (kind == R_MOVE)
    fill(from, npages); /* MOVE took last run's pages away */
  rctx c = {.from = from, .kind = kind};
  int id = fh_uffd_range_add(u, to, npages * PG, FH_UFFD_REG_MISSING, resolve, &c, NULL);
  if (id < 0) {
    munmap(to, npages * PG);
    return -1;
  }
  touch_timed(to, npages, lat);
  fh_uffd_range_retire(u, id);
  check(kind == R_ZERO ? "zeropage fault" : kind == R_MOVE ? "move fault" : "copy fault", to,
        npages, kind == R_ZERO);
  munmap(to, npages * PG);
  return 0;
}

/* median over runs of each run's p50 and p99 */
static result summarize(double *p50s, double *p99s, int runs) {
  result r = {bench_median(p50s, (size_t)runs), bench_median(p99s, (size_t)runs)};
  return r;
}

static result bench_faults(int runs, fh_uffd_mode mode, rkind kind, int first, char *from) {
  result bad = {NAN, NAN};
  double *lat = malloc(FAULT_PAGES * sizeof *lat);
  double p50s[64], p99s[64];
  fh_uffd *u = NULL;
  if (!first) {
    u = fh_uffd_create(mode, kind == R_MOVE ? FH_UFFD_WANT_MOVE : 0);
    if (!u) {
      free(lat);
      return bad;
    }
  }
  for (int r = 0; r < runs; r++) {
    if (first)
      first_touch(FAULT_PAGES, lat);
    else if (uffd_faults(u, kind, from, FAULT_PAGES, lat) != 0) {
      failed = 1;
      break;
    }
    p50s[r] = bench_percentile(lat, FAULT_PAGES, 50);
    p99s[r] = bench_percentile(lat, FAULT_PAGES, 99);
  }
  fh_uffd_destroy(u);
  free(lat);
  return summarize(p50s, p99s, runs);
}

/* ---- batched installs without faults --------------------------------------- */

static double bench_batch(int runs, int move, char *from) {
  fh_uffd *u = fh_uffd_create(FH_UFFD_SIGBUS, move ? FH_UFFD_WANT_MOVE : 0);
  if (!u)
    return NAN;
  double per[64];
  size_t len = (size_t)BATCH_PAGES * PG;
  for (int r = 0; r < runs; r++) {
    char *to = map_rw(len);
    if (move)
      fill(from, BATCH_PAGES);
    rctx c = {.from = from, .kind = move ? R_MOVE : R_COPY};
    int id = fh_uffd_range_add(u, to, len, FH_UFFD_REG_MISSING, resolve, &c, NULL);
    if (!to || id < 0) {
      failed = 1;
      break;
    }
    uint64_t t0 = bench_now_ns();
    for (size_t off = 0; off < len; off += (size_t)BATCH * PG) {
      fh_uffd_status s = move ? fh_uffd_move(fh_uffd_fd(u), to + off, from + off, BATCH * PG,
                                             FH_UFFD_DONTWAKE, NULL)
                              : fh_uffd_copy(fh_uffd_fd(u), to + off, from + off, BATCH * PG,
                                             FH_UFFD_DONTWAKE, NULL);
      if (s != FH_UFFD_OK) {
        fprintf(stderr, "uffd: batched %s: %s (%s)\n", move ? "MOVE" : "COPY",
                fh_uffd_status_name(s), strerror(errno));
        failed = 1;
        break;
      }
    }
    per[r] = (double)(bench_now_ns() - t0) / 1000.0 / BATCH_PAGES;
    fh_uffd_range_retire(u, id);
    check(move ? "batched move" : "batched copy", to, BATCH_PAGES, 0);
    munmap(to, len);
  }
  fh_uffd_destroy(u);
  return bench_median(per, (size_t)runs);
}

/* ---- mremap(DONTUNMAP) --------------------------------------------------------- */

/* Two areas of len bytes, populated, page tables moved back and forth.
 * pmd_only: both 2 MiB-aligned but at different offsets from a 1 GiB
 * boundary (2 and 4 MiB): with equal offsets the kernel (6.7+) realigns
 * the move and shifts whole PUDs in the interior anyway. */
static double bench_mremap(int runs, size_t len, int pmd_only) {
  size_t align = pmd_only ? FH_UFFD_PUD_SIZE : fh_uffd_best_align(len);
  size_t skew = pmd_only ? 2 * FH_UFFD_PMD_SIZE : 0;
  char *ra = fh_uffd_reserve(len + skew, align, PROT_READ | PROT_WRITE);
  char *rb = fh_uffd_reserve(len + skew, align, PROT_NONE);
  if (!ra || !rb) {
    if (ra)
      fh_uffd_unreserve(ra, len + skew);
    if (rb)
      fh_uffd_unreserve(rb, len + skew);
    return NAN;
  }
  char *a = ra + skew / 2, *b = rb + skew;
  double us[64];
  int ok = madvise(a, len, MADV_NOHUGEPAGE) == 0 && madvise(a, len, MADV_POPULATE_WRITE) == 0;
  if (!ok) /* older kernel: touch every page */
    for (size_t off = 0; off < len; off += PG)
      a[off] = 1;
  a[len - 1] = 7;
  for (int r = 0; r < runs; r++) {
    char *src = (r & 1) ? b : a, *dst = (r & 1) ? a : b;
    uint64_t t0 = bench_now_ns();
    int rc = fh_uffd_mremap_dontunmap(src, len, dst);
    us[r] = (double)(bench_now_ns() - t0) / 1000.0;
    if (rc != 0 || dst[len - 1] != 7 || src[len - 1] != 0) {
      fprintf(stderr, "uffd: mremap dontunmap of %zu MiB failed: %s\n", len >> 20,
              rc ? strerror(errno) : "wrong contents");
      failed = 1;
      break;
    }
  }
  fh_uffd_unreserve(ra, len + skew);
  fh_uffd_unreserve(rb, len + skew);
  return bench_median(us, (size_t)runs);
}

/* ---- output ----------------------------------------------------------------------- */

static void row(const char *name, double v, double p99) {
  if (isnan(v))
    printf("  %-46s %10s\n", name, "n/a");
  else if (isnan(p99))
    printf("  %-46s %10.3f\n", name, v);
  else
    printf("  %-46s %10.3f %10.3f\n", name, v, p99);
}

static void jnum(FILE *j, const char *key, double v, int last) {
  if (isnan(v))
    fprintf(j, "  \"%s\": null%s\n", key, last ? "" : ",");
  else
    fprintf(j, "  \"%s\": %.4f%s\n", key, v, last ? "" : ",");
}

int wl_uffd(int argc, char **argv) {
  static const char *const with_value[] = {"--json", "--runs", NULL};
  static const char *const bare[] = {"--no-mremap", NULL};
  if (bench_check_flags(argc, argv, with_value, bare) != 0)
    return 2;
  int runs = bench_runs_flag(argc, argv, 5);
  if (runs < 0)
    return 2;
  if (runs > 64)
    runs = 64;
  const char *json = bench_flag(argc, argv, "--json");
  int do_mremap = !bench_has_flag(argc, argv, "--no-mremap");

  bench_print_header(stdout);
  fh_uffd_print_caps(stdout);
  unsigned caps = fh_capabilities();
  double nan_ = NAN;
  result first = {nan_, nan_}, copy = first, zero = first, sigbus = first, move = first;
  double bcopy = nan_, bmove = nan_;
  static const struct {
    const char *key;
    size_t len;
  } sizes[] = {{"64M", (size_t)64 << 20}, {"1G", (size_t)1 << 30}, {"4G", (size_t)4 << 30}};
  double mr_pmd[3] = {nan_, nan_, nan_}, mr_best[3] = {nan_, nan_, nan_};

  char *from = map_rw((size_t)BATCH_PAGES * PG);
  if (!from)
    return 1;
  fill(from, BATCH_PAGES);

  bench_progress("uffd: first-touch faults");
  first = bench_faults(runs, FH_UFFD_SIGBUS, R_COPY, 1, from);
  if (caps & FH_CAP_UFFD) {
    bench_progress("uffd: handler-thread faults");
    copy = bench_faults(runs, FH_UFFD_THREAD, R_COPY, 0, from);
    zero = bench_faults(runs, FH_UFFD_THREAD, R_ZERO, 0, from);
  }
  if (caps & FH_CAP_UFFD_SIGBUS) {
    bench_progress("uffd: SIGBUS faults");
    sigbus = bench_faults(runs, FH_UFFD_SIGBUS, R_COPY, 0, from);
    if (caps & FH_CAP_UFFD_MOVE)
      move = bench_faults(runs, FH_UFFD_SIGBUS, R_MOVE, 0, from);
    bench_progress("uffd: batched COPY/MOVE");
    fill(from, BATCH_PAGES);
    bcopy = bench_batch(runs, 0, from);
    if (caps & FH_CAP_UFFD_MOVE)
      bmove = bench_batch(runs, 1, from);
  }
  munmap(from, (size_t)BATCH_PAGES * PG);
  if (do_mremap && (caps & FH_CAP_DONTUNMAP)) {
    for (int i = 0; i < 3; i++) {
      bench_progress("uffd: mremap dontunmap %s", sizes[i].key);
      mr_pmd[i] = bench_mremap(runs, sizes[i].len, 1);
      if (sizes[i].len >= FH_UFFD_PUD_SIZE)
        mr_best[i] = bench_mremap(runs, sizes[i].len, 0);
    }
  }
  bench_progress_done();

  printf("uffd: per-fault / per-page cost in microseconds, median of %d runs\n", runs);
  printf("  %-46s %10s %10s\n", "operation", "us/page", "p99");
  row("first-touch anonymous write fault", first.p50, first.p99);
  row("fault served by handler thread, COPY", copy.p50, copy.p99);
  row("fault served by handler thread, ZEROPAGE", zero.p50, zero.p99);
  row("fault in SIGBUS mode, COPY", sigbus.p50, sigbus.p99);
  row("fault in SIGBUS mode, MOVE", move.p50, move.p99);
  row("batched COPY, 64 pages per call, no fault", bcopy, nan_);
  row("batched MOVE, 64 pages per call, no fault", bmove, nan_);
  printf("  %-46s %10s %10s\n", "mremap(DONTUNMAP), populated, us per call", "2M-align", "best");
  for (int i = 0; i < 3; i++) {
    char name[64];
    snprintf(name, sizeof name, "  %s", sizes[i].key);
    row(name, mr_pmd[i], mr_best[i]);
  }

  if (json) {
    FILE *j = fopen(json, "w");
    if (!j) {
      fprintf(stderr, "uffd: cannot write %s: %s\n", json, strerror(errno));
      return 1;
    }
    fprintf(j, "{\n  \"workload\": \"uffd\",\n  \"machine\": ");
    bench_json_machine(j);
    fprintf(j, ",\n  \"runs\": %d,\n", runs);
    jnum(j, "first_touch_us_per_page", first.p50, 0);
    jnum(j, "first_touch_p99_us", first.p99, 0);
    jnum(j, "copy_us_per_page", copy.p50, 0);
    jnum(j, "copy_p99_us", copy.p99, 0);
    jnum(j, "zeropage_us_per_page", zero.p50, 0);
    jnum(j, "sigbus_copy_us_per_page", sigbus.p50, 0);
    jnum(j, "sigbus_copy_p99_us", sigbus.p99, 0);
    jnum(j, "move_us_per_page", move.p50, 0);
    jnum(j, "move_p99_us", move.p99, 0);
    jnum(j, "batch_copy_us_per_page", bcopy, 0);
    jnum(j, "batch_move_us_per_page", bmove, 0);
    for (int k = 0; k < 2; k++) {
      fprintf(j, "  \"%s\": {", k ? "mremap_dontunmap_best_align_us" : "mremap_dontunmap_us");
      for (int i = 0; i < 3; i++) {
        double v = k ? mr_best[i] : mr_pmd[i];
        if (isnan(v))
          fprintf(j, "%s\"%s\": null", i ? ", " : "", sizes[i].key);
        else
          fprintf(j, "%s\"%s\": %.1f", i ? ", " : "", sizes[i].key, v);
      }
      fprintf(j, "}%s\n", k ? "" : ",");
    }
    fprintf(j, "}\n");
    fclose(j);
  }
  if (failed)
    fprintf(stderr, "uffd: FAILED (see above)\n");
  return failed ? 1 : 0;
}
