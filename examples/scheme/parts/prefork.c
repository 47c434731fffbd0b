/* fhscheme, prefork server mode: part of scheme.c's one translation unit
 * (included by parts/driver.c, never compiled alone).
 *
 *   fhscheme [--image F | --lib] --prefork N [--requests M] script.scm
 *
 * The script warms the heap up (and defines handle-request); then
 * fh_prefork compacts everything live into the zygote space, and N workers
 * are forked.  Each serves a request loop on a pipe: a line holding an
 * expression, answered by a line holding its value written with `write`
 * (or "error: ..." when it raised).  The parent drives M requests
 * "(handle-request K)" to each worker, then measures, while the workers
 * still live, how much of the warmed heap they share with it:
 *   - exactly, page by page: the warmed heap is every page resident in the
 *     heap's mappings in the parent right after fh_prefork (image and
 *     zygote; the moving spaces are empty then), and a page is still
 *     shared when the worker maps the same physical page (/proc/PID/pagemap,
 *     which gives frame numbers to root only: otherwise this is skipped);
 *   - and as /proc/PID/smaps reports the heap's mappings: Shared_* against
 *     Private_* (which also counts what the worker allocated since).
 * The heap's mappings are those holding the interpreter's roots and every
 * global's value (found through the symbol table). */

#include <fcntl.h>
#include <sys/wait.h>

typedef struct { uintptr_t lo, hi; } Range;
typedef struct { uintptr_t va; uint64_t pfn; } WarmPage;

static uintptr_t pf_lo = UINTPTR_MAX, pf_hi;
static void pf_note(V v) {
  if (!(ISPAIR(v) || ISOBJ(v) || ISFLO(v))) return;
  uintptr_t a = v & ~(V)7;
  if (a < 4096) return;
  if (a < pf_lo) pf_lo = a;
  if (a > pf_hi) pf_hi = a;
}

/* The address span of the warmed heap's objects: roots, constants, globals. */
static void pf_sample(void) {
  pf_note(sym_table());
  pf_note(cpool);
  pf_note(prims);
  for (size_t i = 0; i < cpool_n; i++) pf_note(VREF(cpool, i));
  V tab = sym_table();
  for (size_t b = 0; b < LEN(tab); b++)
    for (V l = VREF(tab, b); ISPAIR(l); l = CDR(l)) {
      pf_note(l);
      V sym = sym_entry_key(CAR(l));
      if (sym) {
        pf_note(sym);
        pf_note(SYMVAL(sym));
      }
    }
}

/* The mappings of pid that intersect [pf_lo, pf_hi]. */
static size_t pf_ranges(int pid, Range *out, size_t max) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = 0;
  while (fgets(line, sizeof line, f) && n < max) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
    if (hi > pf_lo && lo <= pf_hi) out[n++] = (Range){lo, hi};
  }
  fclose(f);
  return n;
}

static int pagemap_open(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
  return open(path, O_RDONLY);
}
static uint64_t pagemap_entry(int fd, uintptr_t va) {
  uint64_t e = 0;
  if (pread(fd, &e, 8, (off_t)(va / 4096 * 8)) != 8) return 0;
  return e;
}
#define PM_PRESENT (1ull << 63)
#define PM_PFN(e) ((e) & ((1ull << 55) - 1))

static WarmPage *warm;
static size_t nwarm;

/* In the parent after fh_prefork: the warmed pages and their frames. */
static void pf_record_warm(void) {
  pf_sample();
  Range r[256];
  size_t nr = pf_ranges(getpid(), r, 256);
  int fd = pagemap_open(getpid());
  size_t cap = 1024;
  warm = malloc(cap * sizeof *warm);
  for (size_t i = 0; i < nr && fd >= 0; i++)
    for (uintptr_t va = r[i].lo; va < r[i].hi; va += 4096) {
      uint64_t e = pagemap_entry(fd, va);
      if (!(e & PM_PRESENT)) continue;
      if (nwarm == cap) warm = realloc(warm, (cap *= 2) * sizeof *warm);
      warm[nwarm++] = (WarmPage){va, PM_PFN(e)};
    }
  if (fd >= 0) close(fd);
}

typedef struct { size_t shared, priv; } SmapsSum;
static SmapsSum pf_smaps(int pid) {
  SmapsSum s = {0, 0};
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/smaps", pid);
  FILE *f = fopen(path, "r");
  if (!f) return s;
  int in = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi, kb;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = hi > pf_lo && lo <= pf_hi;
      continue;
    }
    if (!in) continue;
    if (sscanf(line, "Shared_Clean: %lu kB", &kb) == 1 || sscanf(line, "Shared_Dirty: %lu kB", &kb) == 1)
      s.shared += kb << 10;
    else if (sscanf(line, "Private_Clean: %lu kB", &kb) == 1 || sscanf(line, "Private_Dirty: %lu kB", &kb) == 1)
      s.priv += kb << 10;
  }
  fclose(f);
  return s;
}

/* A worker: one expression a line in, one value a line out. */
static _Noreturn void pf_worker(int in, int out) {
  heap_postfork(1);
  FILE *fin = fdopen(in, "r"), *fout = fdopen(out, "w");
  Port *resp = calloc(1, sizeof *resp);
  resp->isstring = 1;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, fin)) > 0) {
    Port src = {0};
    src.isstring = src.input = 1;
    src.buf = line;
    src.len = (size_t)len;
    src.peeked = -2;
    resp->len = 0;
    Catch c;
    Catch *volatile prev = toplevel_catch;
    toplevel_catch = &c;
    if (setjmp(c.jb)) {
      handlers = NIL;
      winders = NIL;
      resp->len = 0;
      port_puts(resp, "error: ");
      V e = throw_val;
      print(IS(e, K_ERROR) ? VREF(e, 0) : e, resp, 0);
    } else {
      V x = read_datum(&src);
      V r = x == EOF_V ? UNSPEC : eval(comp(x, NULL), NIL);
      print(r, resp, 1);
      run_finalizers();
    }
    toplevel_catch = prev;
    fwrite(resp->buf ? resp->buf : "", 1, resp->len, fout);
    fputc('\n', fout);
    fflush(fout);
  }
  fflush(stdout);
  _exit(0);
}

static int run_prefork(int nworkers, long requests) {
  if (nworkers < 1 || nworkers > 64) {
    fprintf(stderr, "fhscheme: --prefork wants 1 to 64 workers\n");
    return 64;
  }
  fflush(stdout);
  fflush(stderr);
  double t0 = now_ms();
  if (heap_prefork() < 0) return 70;
  double t_prefork = now_ms() - t0;
  pf_record_warm();
  int pids[64], req[64], resp[64];
  for (int w = 0; w < nworkers; w++) {
    int a[2], b[2];
    if (pipe(a) < 0 || pipe(b) < 0) {
      perror("fhscheme: pipe");
      return 71;
    }
    pid_t pid = fork();
    if (pid < 0) {
      perror("fhscheme: fork");
      return 71;
    }
    if (pid == 0) {
      for (int k = 0; k < w; k++) {
        close(req[k]);
        close(resp[k]);
      }
      close(a[1]);
      close(b[0]);
      pf_worker(a[0], b[1]);
    }
    close(a[0]);
    close(b[1]);
    pids[w] = pid;
    req[w] = a[1];
    resp[w] = b[0];
  }
  heap_postfork(0);
  /* Drive the requests: one at a time to each worker in turn. */
  FILE *rin[64], *rout[64];
  for (int w = 0; w < nworkers; w++) {
    rout[w] = fdopen(req[w], "w");
    rin[w] = fdopen(resp[w], "r");
  }
  char *line = NULL;
  size_t cap = 0;
  long errors = 0;
  double t1 = now_ms();
  for (long i = 0; i < requests; i++)
    for (int w = 0; w < nworkers; w++) {
      fprintf(rout[w], "(handle-request %ld)\n", i);
      fflush(rout[w]);
      if (getline(&line, &cap, rin[w]) <= 0) {
        fprintf(stderr, "fhscheme: worker %d died\n", w);
        return 70;
      }
      if (!strncmp(line, "error:", 6)) {
        if (errors++ == 0) fprintf(stderr, "fhscheme: worker %d: %s", w, line);
      }
      if (i == requests - 1 && w == 0) printf("last response: %s", line);
    }
  double t_req = now_ms() - t1;
  size_t warm_bytes = nwarm * 4096;
  printf("prefork: warmed heap %.1f MiB resident (%zu pages), fh_prefork %.1f ms; %d workers x %ld requests in %.0f ms, %ld errors\n",
         warm_bytes / 1048576.0, nwarm, t_prefork, nworkers, requests, t_req, errors);
  double min_pct = 100;
  for (int w = 0; w < nworkers; w++) {
    int fd = pagemap_open(pids[w]);
    size_t same = 0;
    int have_pfn = 0;
    for (size_t i = 0; i < nwarm && fd >= 0; i++) {
      uint64_t e = pagemap_entry(fd, warm[i].va);
      if (warm[i].pfn) have_pfn = 1;
      if ((e & PM_PRESENT) && PM_PFN(e) == warm[i].pfn && warm[i].pfn) same++;
    }
    if (fd >= 0) close(fd);
    SmapsSum s = pf_smaps(pids[w]);
    double pct = nwarm ? 100.0 * same / nwarm : 0;
    if (have_pfn && pct < min_pct) min_pct = pct;
    printf("worker %d: %s%.1f%% of the warmed heap's pages still shared; heap mappings (smaps): Shared %.1f MiB, Private %.1f MiB (%.1f%% shared)\n",
           w, have_pfn ? "" : "(no frame numbers: not root) ", pct, s.shared / 1048576.0,
           s.priv / 1048576.0, s.shared + s.priv ? 100.0 * s.shared / (s.shared + s.priv) : 0);
  }
  printf("prefork: minimum shared %.1f%%\n", min_pct);
  for (int w = 0; w < nworkers; w++) {
    fclose(rout[w]);
    fclose(rin[w]);
  }
  int status = 0;
  for (int w = 0; w < nworkers; w++) {
    int st;
    waitpid(pids[w], &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) status = 70;
  }
  free(line);
  return errors ? 70 : status;
}
