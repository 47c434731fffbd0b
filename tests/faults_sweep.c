/* `make check-faults`: fail each system and allocator call the library
 * makes, at its Nth call, once and from then on, for every collector, and
 * check that the heap survives.
 *
 * For each configuration (collector and fault mode) a counting run first
 * learns how many calls of each kind (heap/sys.h: mmap, madvise, uffd
 * ioctls, pthread_create, jemalloc, image files, ...) the workload makes.
 * Then, for every N of that count (or a spread sample of N when the count
 * is large), a forked child runs the same workload with call N failing,
 * once or from N on.  The child must end with:
 *   - every public call that failed having set fh_last_error();
 *   - after the injection is switched off, every object intact (values and
 *     check words, links), verify=1 clean, and the heap collecting with
 *     every kind and allocating again;
 *   - no crash and no hang: the parent kills a child after TIMEOUT seconds
 *     and counts it as failed.
 * A saved image must load and hold what was saved, or its save must have
 * failed with an error and left no file under the real name.
 *
 * Usage: faults_sweep [--samples K] [--config NAME] [--kind NAME]
 *        faults_sweep --one CONFIG KIND N once|persistent   (reproduce one)
 * Exit status 0 when every run passed; the last line is
 * "faults: N passed, N failed". */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faultheap.h"
#include "heap/sys.h"

#define RING 4000
#define TIMEOUT_S 15

typedef struct config {
  const char *name;
  const char *spec; /* options besides heap_max and verify */
} config;

static const config configs[] = {
    {"semispace", "collector=semispace"},
    {"gen_semispace", "collector=gen_semispace"},
    {"mark_sweep", "collector=mark_sweep"},
    {"mark_compact", "collector=mark_compact"},
    {"concurrent_sigbus", "collector=concurrent_compact,uffd_sigbus=1"},
    {"concurrent_thread", "collector=concurrent_compact,uffd_sigbus=0"},
    /* Triggered full cycles mark concurrently (collectors/cc_concurrent.c):
     * its allocations (the cycle, the marker, SATB buffers) fail too. */
    {"concurrent_cmark", "collector=concurrent_compact,concurrent_mark=1,generational=0"},
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

typedef struct node {
  struct node *next;
  uint64_t value, check;
} node;

typedef struct types {
  uint32_t node, array, bytes;
} types;

static uint64_t check_of(uint64_t v) { return v * 0x9E3779B97F4A7C15ull ^ 0xfa17; }

/* ---- the child's verdict ---- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  fflush(stderr);
  _exit(2);
}

/* A public call failed: it must say why. */
static void failed_call(const char *what) {
  const char *e = fh_last_error();
  if (!e || !*e) die("%s failed without an error text", what);
}

static int register_types(fh_heap *h, types *ty) {
  static const uint32_t node_refs[] = {0};
  ty->node = fh_register_type(
      h, &(fh_type){.name = "node", .size = sizeof(node), .nrefs = 1, .ref_offsets = node_refs});
  if (!ty->node) return failed_call("fh_register_type"), -1;
  ty->array = fh_register_type(h, &(fh_type){.name = "array", .flags = FH_TYPE_REF_ARRAY});
  if (!ty->array) return failed_call("fh_register_type"), -1;
  ty->bytes = fh_register_type(h, &(fh_type){.name = "bytes"});
  if (!ty->bytes) return failed_call("fh_register_type"), -1;
  return 0;
}

/* ---- a second mutator: allocates and keeps a short checked list, and
 * reads the ring (old objects: the pages a concurrent compaction is
 * building) ---- */

typedef struct ring {
  void **arr; /* a global root: both threads read it */
  size_t n;   /* nodes linked into the ring */
} ring;

typedef struct mutator_arg {
  fh_heap *h;
  const types *ty;
  const ring *g; /* read while the main thread collects */
  _Atomic int stop;
  int failed; /* the thread found damage */
} mutator_arg;

static void *mutator(void *p) {
  mutator_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  if (!t) {
    failed_call("fh_thread_attach");
    return NULL;
  }
  node *head = NULL;
  fh_push_root(t, (void **)&head);
  uint64_t made = 0;
  for (int i = 0; i < 200000 && !atomic_load(&a->stop); i++) {
    if (a->g->arr && i % 16 == 0) {
      size_t k = (size_t)i * 7919 % RING;
      node *x = k < a->g->n ? a->g->arr[k] : NULL;
      if (x && (x->value != k || x->check != check_of(k))) a->failed = 1;
    }
    node *n = fh_alloc(t, a->ty->node, sizeof(node));
    if (!n) {
      failed_call("fh_alloc (mutator)");
      continue;
    }
    n->value = made;
    n->check = check_of(made);
    made++;
    fh_write_ref(t, n, (void **)&n->next, head);
    head = n;
    if (made % 64 == 0) { /* check and drop the list */
      uint64_t v = made;
      for (node *x = head; x; x = x->next) {
        v--;
        if (x->value != v || x->check != check_of(v)) {
          a->failed = 1;
          break;
        }
      }
      head = NULL;
    }
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

/* ---- the workload ---- */

static void ring_build(fh_heap *h, fh_thread *t, const types *ty, ring *g) {
  g->n = 0;
  g->arr = fh_alloc(t, ty->array, RING * sizeof(void *));
  if (!g->arr) return failed_call("fh_alloc (ring)");
  fh_root_add(h, (void **)&g->arr);
  for (size_t i = 0; i < RING; i++) {
    node *x = i % 7 == 0 ? fh_alloc_nonmoving(t, ty->node, sizeof(node))
                         : fh_alloc(t, ty->node, sizeof(node));
    if (!x) {
      failed_call("fh_alloc (node)");
      break;
    }
    x->value = i;
    x->check = check_of(i);
    fh_write_ref(t, g->arr, &g->arr[i], x);
    g->n = i + 1;
    for (int k = 0; k < 3; k++) /* garbage */
      if (!fh_alloc(t, ty->node, sizeof(node))) failed_call("fh_alloc (garbage)");
  }
  for (size_t i = 0; i + 1 < g->n; i++) {
    node *x = g->arr[i];
    fh_write_ref(t, x, (void **)&x->next, g->arr[i + 1]);
  }
}

static void ring_check(const ring *g, const char *when) {
  for (size_t i = 0; i < g->n; i++) {
    node *x = g->arr[i];
    if (!x) die("%s: ring slot %zu is NULL", when, i);
    if (x->value != i || x->check != check_of(i))
      die("%s: ring node %zu holds %llu/%llx", when, i, (unsigned long long)x->value,
          (unsigned long long)x->check);
    if (i + 1 < g->n && x->next != g->arr[i + 1]) die("%s: ring node %zu lost its link", when, i);
  }
}

static const fh_collect_kind bump_kinds[] = {
    FH_COLLECT_DEFAULT, FH_COLLECT_SEMISPACE, FH_COLLECT_MARK_COMPACT,
    FH_COLLECT_CONCURRENT_COMPACT, FH_COLLECT_MARK_SWEEP};
static const fh_collect_kind malloc_kinds[] = {FH_COLLECT_DEFAULT, FH_COLLECT_MARK_SWEEP,
                                               FH_COLLECT_HSPACE_COMPACT};

/* Every collection kind the heap has; after each, walk the ring at once,
 * so that a concurrent compaction meets this thread's faults. */
static void collect_all(fh_heap *h, fh_thread *t, const config *c, const ring *g,
                        int must_succeed) {
  int ms = strstr(c->spec, "mark_sweep") != NULL;
  const fh_collect_kind *k = ms ? malloc_kinds : bump_kinds;
  size_t n = ms ? sizeof malloc_kinds / sizeof *k : sizeof bump_kinds / sizeof *k;
  if (strstr(c->spec, "concurrent_mark=1")) {
    /* The cycle the trigger would start, marked concurrently: wait (up to
     * 0.2 s) for the marker's remark, which forwards and flips; one that
     * could not start its marker is finished by the next collection. */
    fh_stats s0, s1;
    fh_get_stats(h, &s0);
    if (fh_collect(t, FH_COLLECT_TRIGGERED) < 0) {
      if (must_succeed) die("fh_collect(triggered) after the faults: %s", fh_last_error());
      failed_call("fh_collect");
    }
    fh_enter_blocking(t);
    for (int i = 0; i < 2000; i++) {
      fh_get_stats(h, &s1);
      if (s1.concurrent_marks == s0.concurrent_marks ||
          s1.kind_pauses[FH_PAUSE_REMARK] != s0.kind_pauses[FH_PAUSE_REMARK])
        break;
      usleep(100);
    }
    fh_leave_blocking(t);
    ring_check(g, "right after a concurrently marked cycle");
  }
  for (size_t i = 0; i < n; i++) {
    if (fh_collect(t, k[i]) < 0) {
      if (must_succeed) die("fh_collect(%d) after the faults: %s", (int)k[i], fh_last_error());
      failed_call("fh_collect");
    }
    char when[64];
    snprintf(when, sizeof when, "right after collection kind %d", (int)k[i]);
    ring_check(g, when);
  }
  fh_gc_wait(h);
}

static void spec_of(const config *c, char *buf, size_t n, const char *image) {
  snprintf(buf, n, "%s,heap_max=16M,verify=1%s%s", c->spec, image ? ",image_path=" : "",
           image ? image : "");
}

static fh_heap *heap_new(const char *spec) {
  fh_options o;
  fh_options_init(&o);
  if (fh_options_parse(&o, spec) < 0) die("options '%s': %s", spec, fh_last_error());
  fh_heap *h = fh_heap_create(&o);
  if (!h) failed_call("fh_heap_create");
  return h;
}

/* The image part: save the ring, then load it into a second heap.  With
 * faults armed either may fail (with an error); a save that succeeded must
 * load, once the faults are off, with every object as saved. */
static void image_round(fh_thread *t, const config *c, const ring *g, const char *path,
                        int *saved) {
  unlink(path);
  *saved = 0;
  if (!g->n) return;
  void *roots[1] = {g->arr};
  if (fh_image_save(t, path, roots, 1) < 0) {
    failed_call("fh_image_save");
    struct stat st;
    if (stat(path, &st) == 0) die("a failed fh_image_save left a file at %s", path);
    return;
  }
  *saved = 1;
  char spec[512];
  spec_of(c, spec, sizeof spec, path);
  fh_heap *h2 = heap_new(spec); /* may fail while faults are armed */
  if (h2) fh_heap_destroy(h2);
}

static void image_verify(const config *c, const ring *g, const char *path) {
  char spec[512];
  spec_of(c, spec, sizeof spec, path);
  fh_heap *h2 = heap_new(spec);
  if (!h2) die("a saved image does not load: %s", fh_last_error());
  void **roots;
  if (fh_image_roots(h2, &roots) != 1) die("the image has lost its root");
  ring copy = {roots[0], g->n};
  ring_check(&copy, "image");
  fh_heap_destroy(h2);
  unlink(path);
}


/* ---- weak references and finalization ----
 * Slot 2i: an ephemeron keyed by a ring node, its value a node of its own
 * (must survive with the ring).  Slot 2i+1: an ephemeron keyed by a
 * garbage node that also has a finalizer (queued once; its ephemeron kept
 * while queued, cleared by the first clean collection after the pop). */
#define WEAK 100

typedef struct weak_table {
  void **slots;
  unsigned attached; /* finalizers attached successfully */
} weak_table;

static void weak_build(fh_heap *h, fh_thread *t, const types *ty, const ring *g,
                       weak_table *w) {
  w->attached = 0;
  w->slots = fh_alloc(t, ty->array, 2 * WEAK * sizeof(void *));
  if (!w->slots) return failed_call("fh_alloc (weak table)");
  fh_root_add(h, (void **)&w->slots);
  for (size_t i = 0; i < WEAK && i * (RING / WEAK) < g->n; i++) {
    node *v = fh_alloc(t, ty->node, sizeof(node));
    if (!v) return failed_call("fh_alloc (weak value)");
    v->value = 1000000 + i, v->check = check_of(1000000 + i);
    void *e = fh_ephemeron_new(t, g->arr[i * (RING / WEAK)], v);
    if (!e) return failed_call("fh_ephemeron_new");
    fh_write_ref(t, w->slots, &w->slots[2 * i], e);
    node *k = fh_alloc(t, ty->node, sizeof(node));
    if (!k) return failed_call("fh_alloc (weak key)");
    fh_push_root(t, (void **)&k);
    e = fh_ephemeron_new(t, k, k);
    if (!e) failed_call("fh_ephemeron_new");
    else fh_write_ref(t, w->slots, &w->slots[2 * i + 1], e);
    if (fh_finalizer_attach(t, k, (void *)(uintptr_t)(i + 1)) < 0) failed_call("fh_finalizer_attach");
    else w->attached++;
    fh_pop_roots(t, 1);
  }
}

static void weak_check(fh_thread *t, const ring *g, const weak_table *w, int cleared,
                       const char *when) {
  if (!w->slots) return;
  for (size_t i = 0; i < WEAK; i++) {
    void *e = w->slots[2 * i];
    if (e) {
      node *v = fh_ephemeron_value(t, e);
      if (fh_ephemeron_key(t, e) != g->arr[i * (RING / WEAK)])
        die("%s: weak entry %zu lost its live key", when, i);
      if (!v || v->value != 1000000 + i || v->check != check_of(1000000 + i))
        die("%s: weak entry %zu lost its value", when, i);
    }
    e = w->slots[2 * i + 1];
    if (!e) continue;
    void *k = fh_ephemeron_key(t, e), *v = fh_ephemeron_value(t, e);
    if (k != v) die("%s: ephemeron %zu has key %p but value %p", when, i, k, v);
    if (cleared && k) die("%s: ephemeron %zu with a dead key was not cleared", when, i);
  }
}

/* Faults off: every attached finalizer's object is queued, exactly once,
 * and popping them lets the next collections clear their ephemerons. */
static void weak_finish(fh_heap *h, fh_thread *t, const config *c, const ring *g,
                        weak_table *w) {
  static uint8_t seen[WEAK + 1];
  memset(seen, 0, sizeof seen);
  unsigned popped = 0;
  for (int round = 0; round < 2; round++) {
    void *obj, *data;
    while (fh_finalizer_pop(t, &obj, &data)) {
      uintptr_t i = (uintptr_t)data;
      if (i < 1 || i > WEAK || seen[i]) die("finalizer record %lu queued twice or unknown", (unsigned long)i);
      seen[i] = 1;
      popped++;
    }
    collect_all(h, t, c, g, 1);
  }
  if (popped != w->attached)
    die("%u finalizers attached, %u objects queued", w->attached, popped);
  weak_check(t, g, w, 1, "after finalization");
}

/* The whole workload, under whatever the seam has been armed with; returns
 * only if everything holds (die() otherwise). */
static void workload(const config *c, int armed_kind, uint64_t nth, int persistent) {
  char spec[512], path[64];
  snprintf(path, sizeof path, "/tmp/fh-faults-%d.img", (int)getpid());
  spec_of(c, spec, sizeof spec, NULL);
  if (armed_kind >= 0) sys_fault_arm((sys_call)armed_kind, nth, persistent, ENOMEM);

  fh_heap *h = heap_new(spec);
  if (!h) { /* creation failed cleanly: it must work without the fault */
    sys_fault_disarm();
    h = heap_new(spec);
    if (!h) die("fh_heap_create after the faults: %s", fh_last_error());
    fh_heap_destroy(h);
    return;
  }
  types ty;
  int have_types = register_types(h, &ty) == 0;
  fh_thread *t = fh_thread_attach(h);
  if (!t || !have_types) {
    if (t) fh_thread_detach(t);
    sys_fault_disarm();
    fh_heap_destroy(h);
    return;
  }
  static ring g;
  g.arr = NULL;
  ring_build(h, t, &ty, &g);
  static weak_table w;
  w.slots = NULL;
  weak_build(h, t, &ty, &g, &w);

  mutator_arg ma = {.h = h, .ty = &ty, .g = &g};
  pthread_t th;
  int have_mutator = pthread_create(&th, NULL, mutator, &ma) == 0;
  collect_all(h, t, c, &g, 0);
  void *native = fh_malloc(h, 200000);
  if (!native) failed_call("fh_malloc");
  fh_free(h, native);
  void *big = fh_alloc(t, ty.bytes, 1 << 20);
  if (!big) failed_call("fh_alloc (1 MiB)");
  fh_set_background(h, 1);
  collect_all(h, t, c, &g, 0);
  fh_set_background(h, 0);
  if (have_mutator) {
    fh_enter_blocking(t);
    atomic_store(&ma.stop, 1);
    pthread_join(th, NULL);
    fh_leave_blocking(t);
    if (ma.failed) die("the mutator thread found a damaged list");
  }
  if (g.n) ring_check(&g, "before the image");
  weak_check(t, &g, &w, 0, "before the image");
  int saved;
  image_round(t, c, &g, path, &saved);

  /* Faults off: everything must hold and work again. */
  sys_fault_disarm();
  if (g.n) ring_check(&g, "after the faults");
  collect_all(h, t, c, &g, 1);
  if (g.n) ring_check(&g, "after collecting again");
  for (int i = 0; i < 2000; i++)
    if (!fh_alloc(t, ty.node, sizeof(node)))
      die("fh_alloc after the faults: %s", fh_last_error());
  collect_all(h, t, c, &g, 1);
  if (g.n) ring_check(&g, "at the end");
  weak_check(t, &g, &w, 0, "at the end");
  weak_finish(h, t, c, &g, &w);
  if (saved) image_verify(c, &g, path);
  if (getenv("FH_FAULTS_VERBOSE")) {
    fh_stats st;
    fh_get_stats(h, &st);
    fprintf(stderr, "%s: ring %zu nodes, image %s, %llu collections, %llu uffd faults\n", c->name,
            g.n, saved ? "saved and loaded" : "not saved", (unsigned long long)st.collections,
            (unsigned long long)st.uffd_faults);
  }
  if (g.arr) fh_root_remove(h, (void **)&g.arr);
  if (w.slots) fh_root_remove(h, (void **)&w.slots);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- the sweep ---- */

typedef struct counts {
  uint64_t calls[SYS_NCALLS];
} counts;

/* Runs fn in a child with a deadline; returns 0 when it exited 0.  The
 * child's output goes to `log` and is printed only on failure. */
static int run_child(const config *c, int kind, uint64_t nth, int persistent, counts *out,
                     char *why, size_t whylen) {
  char log[] = "/tmp/fh-faults-log-XXXXXX";
  int lfd = mkstemp(log);
  int pfd[2];
  if (lfd < 0 || pipe(pfd) < 0) {
    snprintf(why, whylen, "mkstemp/pipe: %s", strerror(errno));
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    dup2(lfd, 1);
    dup2(lfd, 2);
    workload(c, kind, nth, persistent);
    if (out) { /* counting run: report what the workload made */
      counts k;
      for (int i = 0; i < SYS_NCALLS; i++) k.calls[i] = sys_fault_calls((sys_call)i);
      if (write(pfd[1], &k, sizeof k) != (ssize_t)sizeof k) _exit(3);
    }
    _exit(0);
  }
  close(pfd[1]);
  int status = 0, done = 0;
  for (int ms = 0; ms < TIMEOUT_S * 1000; ms += 5) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      done = 1;
      break;
    }
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  if (out && done && WIFEXITED(status) && WEXITSTATUS(status) == 0)
    if (read(pfd[0], out, sizeof *out) != (ssize_t)sizeof *out) status = 1 << 8;
  close(pfd[0]);
  int ok = done && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!ok) {
    if (!done)
      snprintf(why, whylen, "hung (killed after %d s)", TIMEOUT_S);
    else if (WIFSIGNALED(status))
      snprintf(why, whylen, "killed by signal %d (%s)", WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else
      snprintf(why, whylen, "exit status %d", WEXITSTATUS(status));
    char line[512];
    FILE *f = fdopen(lfd, "r");
    if (f) {
      rewind(f);
      for (int i = 0; i < 12 && fgets(line, sizeof line, f); i++) printf("    | %s", line);
      fclose(f);
      lfd = -1;
    }
  }
  if (lfd >= 0) close(lfd);
  unlink(log);
  return ok ? 0 : -1;
}

/* The Ns to try for a kind the workload calls `total` times: all of them
 * up to `samples`, else the first samples/2 and the rest spread evenly,
 * the last call included. */
static size_t pick_points(uint64_t total, unsigned samples, uint64_t *pts) {
  size_t n = 0;
  if (total <= samples) {
    for (uint64_t i = 1; i <= total; i++) pts[n++] = i;
    return n;
  }
  unsigned head = samples / 2, rest = samples - head;
  for (uint64_t i = 1; i <= head; i++) pts[n++] = i;
  for (unsigned j = 1; j <= rest; j++) {
    uint64_t p = head + (total - head) * j / rest;
    if (p > pts[n - 1]) pts[n++] = p;
  }
  return n;
}

int main(int argc, char **argv) {
  unsigned samples = 160;
  /* concurrent_compact slides small heaps in the pause (collectors/
   * mc_policy.h): the sweep's heaps flip, so that the userfaultfd paths
   * meet their failures. */
  setenv("FH_MC_SLIDE", "0", 0);
  /* The ring (32 KB, a large object) is fixed after the flip page by page
   * (collectors/cc_large.h), so that its system calls fail too. */
  setenv("FH_CC_LARGE_MIN", "16384", 0);
  /* Every concurrent remark is split (collectors/cc_concurrent.c), so that
   * the flip pause after the marker's forwarding meets failures too. */
  setenv("FH_CC_SPLIT_MIN", "1", 0);
  const char *only_config = NULL, *only_kind = NULL;
  if (getenv("FH_FAULT_SAMPLES")) samples = (unsigned)atoi(getenv("FH_FAULT_SAMPLES"));
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--samples") && i + 1 < argc) {
      samples = (unsigned)atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      only_config = argv[++i];
    } else if (!strcmp(argv[i], "--kind") && i + 1 < argc) {
      only_kind = argv[++i];
    } else if (!strcmp(argv[i], "--one") && i + 4 < argc) {
      for (size_t k = 0; k < NCONFIGS; k++)
        if (!strcmp(configs[k].name, argv[i + 1])) {
          int kind = sys_call_by_name(argv[i + 2]);
          if (kind < 0) return fprintf(stderr, "unknown kind %s\n", argv[i + 2]), 2;
          workload(&configs[k], kind, strtoull(argv[i + 3], NULL, 10),
                   !strcmp(argv[i + 4], "persistent"));
          printf("ok: %llu call(s) failed\n", (unsigned long long)sys_fault_injected());
          return 0;
        }
      return fprintf(stderr, "unknown config %s\n", argv[i + 1]), 2;
    } else {
      fprintf(stderr, "usage: %s [--samples K] [--config NAME] [--kind NAME] | "
                      "--one CONFIG KIND N once|persistent\n", argv[0]);
      return 2;
    }
  }
  if (samples < 2) samples = 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  unsigned passed = 0, failed = 0, points = 0;
  for (size_t ci = 0; ci < NCONFIGS; ci++) {
    const config *c = &configs[ci];
    if (only_config && strcmp(only_config, c->name)) continue;
    counts k;
    char why[160];
    /* Counting run: SYS_NCALLS is no kind, so nothing fails. */
    if (run_child(c, SYS_NCALLS, 0, 0, &k, why, sizeof why) < 0) {
      printf("%-18s counting run failed: %s\n", c->name, why);
      failed++;
      continue;
    }
    for (int kind = 0; kind < SYS_NCALLS; kind++) {
      const char *kname = sys_call_name((sys_call)kind);
      if (only_kind && strcmp(only_kind, kname)) continue;
      uint64_t pts[1024];
      size_t npts = pick_points(k.calls[kind], samples > 1024 ? 1024 : samples, pts);
      unsigned bad = 0;
      for (size_t p = 0; p < npts; p++)
        for (int persistent = 0; persistent < 2; persistent++) {
          if (run_child(c, kind, pts[p], persistent, NULL, why, sizeof why) == 0) {
            passed++;
          } else {
            failed++, bad++;
            printf("%-18s %-14s call %llu %s: %s\n", c->name, kname, (unsigned long long)pts[p],
                   persistent ? "on" : "once", why);
          }
        }
      points += (unsigned)npts;
      printf("%-18s %-14s %6llu calls, %3zu points swept, %u failed\n", c->name, kname,
             (unsigned long long)k.calls[kind], npts, bad);
    }
  }
  printf("\ninjection points covered: %u (each failed once and from then on)\n", points);
  printf("faults: %u passed, %u failed\n", passed, failed);
  return failed ? 1 : 0;
}
