/* Failed system calls during collections (issue 14, defect 1): each call
 * the heap makes through heap/sys.h is made to fail, the Nth one once and
 * from the Nth on, during a compacting workload whose objects carry a
 * checksum (tnode value/check) with verify=1.  Whatever fails, every object
 * keeps its contents and links, a collection that reports -1 sets
 * fh_last_error(), and once the call succeeds again the heap collects and
 * allocates as before.  Each case runs in a forked child bounded by
 * alarm(): a crash or a verify abort fails that case, not the suite.
 *
 * Every N up to FH_SYSFAULT_MAX (default 40, 16 under a sanitizer) is
 * swept, and 8 more spread over the rest of the workload's calls. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/sys.h"
#include "support_heap.h"
#include "uffd/uffd.h"

enum { RING = 6000, GARBAGE = 3, CYCLES = 3 };

static unsigned sweep_max(void) {
  const char *v = getenv("FH_SYSFAULT_MAX");
  if (v && *v) return (unsigned)strtoul(v, NULL, 10);
  return test_sanitized() ? 16 : 40; /* a sanitized child runs 5-10 times slower */
}

static int ring_ok(const test_ring *g) {
  for (size_t i = 0; i < g->n; i++) {
    tnode *x = g->arr[i];
    if (!x || x->value != i || x->check != test_check(i) || x->next != g->arr[(i + 1) % g->n]) {
      fprintf(stderr, "node %zu: %p value %llu check ok %d\n", i, (void *)x,
              x ? (unsigned long long)x->value : 0ull, x ? x->check == test_check(i) : 0);
      return 0;
    }
  }
  return 1;
}

/* The workload: a ring, then CYCLES collections of `kind` with garbage in
 * between, the failure plan armed meanwhile; then, disarmed, two more.
 * Returns the child's exit code: 0 fine, 2 objects damaged, 3 an API
 * failure without an error text, 4 no recovery after disarm. */
static int workload(const char *spec, fh_collect_kind kind, sys_call c, uint64_t nth,
                    int persistent, unsigned *failed_cycles) {
  fh_heap *h = test_child_heap(spec);
  if (!h) return 5;
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  test_ring g;
  test_ring_build(t, &ty, &g, RING, 97, GARBAGE);
  sys_fault_arm(c, nth, persistent, ENOMEM);
  for (int cycle = 0; cycle < CYCLES; cycle++) {
    if (fh_collect(t, kind) < 0) {
      const char *e = fh_last_error();
      if (!e || !*e) return 3;
      ++*failed_cycles;
    }
    fh_gc_wait(h);
    if (!ring_ok(&g)) return 2;
    for (int i = 0; i < RING * GARBAGE; i++) {
      void *x = fh_alloc(t, ty.node, sizeof(tnode));
      if (!x && !persistent) return 4; /* the heap is far from full */
      if (!x) break; /* each retry would collect again */
    }
    if (!ring_ok(&g)) return 2;
  }
  sys_fault_disarm();
  for (int cycle = 0; cycle < 2; cycle++) {
    if (fh_collect(t, kind) < 0) {
      fprintf(stderr, "after disarm: %s\n", fh_last_error());
      return 4;
    }
    fh_gc_wait(h);
    if (!ring_ok(&g)) return 2;
    if (!fh_alloc(t, ty.node, sizeof(tnode))) return 4;
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

/* Some operations other than the workload, under the same failure plan. */
typedef int (*operation)(sys_call c, uint64_t nth, int persistent);

/* One case in a forked child (test_run_forked: a crash or a hang after 60 s
 * is its wait status): op, or with op NULL the workload of spec and kind,
 * under the plan (c, nth, persistent).  With count_fd >= 0, the child then
 * writes how many calls of kind c it made there. */
typedef struct fault_case {
  const char *spec;
  fh_collect_kind kind;
  operation op;
  sys_call c;
  uint64_t nth;
  int persistent;
  int count_fd;
} fault_case;

static int case_child(void *arg) {
  const fault_case *k = arg;
  unsigned f = 0;
  int rc = k->op ? k->op(k->c, k->nth, k->persistent)
                 : workload(k->spec, k->kind, k->c, k->nth, k->persistent, &f);
  if (k->count_fd >= 0) {
    uint64_t n = sys_fault_calls(k->c);
    if (write(k->count_fd, &n, sizeof n) != sizeof n) rc = 6;
  }
  return rc;
}

/* Seconds a case may take before it counts as hung.  A persistent failure
 * can make every allocation of the workload collect (mark_sweep with
 * hspace compaction, jemalloc failing from its 14th call: 8,442 failed
 * calls, 2.2 s unsanitized); under TSan on a loaded 2-CPU machine that
 * passed 60 s. */
static unsigned case_seconds(void) { return test_sanitized() ? 300 : 60; }

/* The case's wait status. */
static int case_status(fault_case k, uint64_t nth, int persistent) {
  k.nth = nth;
  k.persistent = persistent;
  k.count_fd = -1;
  return test_run_forked(case_child, &k, case_seconds());
}

/* Calls of kind c the case makes, the seam counting only. */
static uint64_t case_calls(fault_case k) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  k.nth = 0;
  k.persistent = 0;
  k.count_fd = fds[1];
  int st = test_run_forked(case_child, &k, case_seconds());
  close(fds[1]);
  uint64_t n = 0;
  ssize_t r = read(fds[0], &n, sizeof n);
  close(fds[0]);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_int_equal(r, sizeof n);
  return n;
}

/* Fail the Nth call of kind c (once, then from the Nth on) for every N the
 * workload reaches, up to sweep_max(). */
static void sweep(const char *spec, fh_collect_kind kind, sys_call c) {
  fault_case k = {.spec = spec, .kind = kind, .c = c};
  uint64_t calls = case_calls(k);
  uint64_t max = calls < sweep_max() ? calls : sweep_max();
  int bad = 0;
  uint64_t swept = 0;
  for (uint64_t i = 1, nth = 1; nth <= calls; i++, swept++) {
    for (int persistent = 0; persistent < 2; persistent++) {
      int st = case_status(k, nth, persistent);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        print_message("%s: %s #%llu%s failed: %s %d\n", spec, sys_call_name(c),
                      (unsigned long long)nth, persistent ? " and on" : "",
                      WIFEXITED(st) ? "exit" : "signal",
                      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        bad++;
      }
    }
    nth = i < max ? i + 1 : max + (i - max + 1) * ((calls - max) / 8 + 1);
  }
  print_message("%s: %s: %llu calls, %llu swept, %d bad\n", spec, sys_call_name(c),
                (unsigned long long)calls, (unsigned long long)swept, bad);
  assert_int_equal(bad, 0);
}

#define MC "collector=mark_compact,heap_max=64M,min_alloc_trigger=60M,verify=1"
#define CC "collector=concurrent_compact,heap_max=64M,min_alloc_trigger=60M,verify=1"
#define MS "collector=mark_sweep,heap_max=64M,min_alloc_trigger=60M,verify=1"
#define SS "collector=semispace,heap_max=64M,min_alloc_trigger=60M,verify=1"

static void test_madvise_mark_compact(void **s) {
  (void)s;
  sweep(MC, FH_COLLECT_MARK_COMPACT, SYS_MADVISE);
}

/* FH_MC_THP=0 marks the space MADV_NOHUGEPAGE when the state is made. */
static void test_madvise_mark_compact_no_thp(void **s) {
  (void)s;
  setenv("FH_MC_THP", "0", 1);
  sweep(MC, FH_COLLECT_MARK_COMPACT, SYS_MADVISE);
  unsetenv("FH_MC_THP");
}

static void test_madvise_concurrent(void **s) {
  (void)s;
  test_skip_without_uffd();
  sweep(CC, FH_COLLECT_DEFAULT, SYS_MADVISE);
}


/* The other calls a compacting cycle makes: mappings, the flip's mremap,
 * thread starts, jemalloc. */
static void test_others_mark_compact(void **s) {
  (void)s;
  static const sys_call k[] = {SYS_MMAP, SYS_MUNMAP, SYS_MREMAP, SYS_MPROTECT, SYS_THREAD_CREATE,
                               SYS_JEMALLOC};
  for (unsigned i = 0; i < sizeof k / sizeof k[0]; i++) sweep(MC, FH_COLLECT_MARK_COMPACT, k[i]);
}

static void test_others_concurrent(void **s) {
  (void)s;
  test_skip_without_uffd();
  static const sys_call k[] = {SYS_MMAP, SYS_MUNMAP, SYS_MREMAP, SYS_MPROTECT, SYS_THREAD_CREATE,
                               SYS_JEMALLOC};
  for (unsigned i = 0; i < sizeof k / sizeof k[0]; i++) sweep(CC, FH_COLLECT_DEFAULT, k[i]);
}

static void test_mark_sweep_and_semispace(void **s) {
  (void)s;
  static const sys_call k[] = {SYS_MMAP, SYS_MADVISE, SYS_THREAD_CREATE, SYS_JEMALLOC};
  for (unsigned i = 0; i < sizeof k / sizeof k[0]; i++) {
    sweep(MS, FH_COLLECT_DEFAULT, k[i]);
    sweep(MS, FH_COLLECT_HSPACE_COMPACT, k[i]);
    sweep(SS, FH_COLLECT_DEFAULT, k[i]);
  }
}

/* ---- heap creation and images ---- */

static char img_dir[64];
static char img_file[128];

static void sweep_op(const char *what, operation op, sys_call c) {
  fault_case k = {.op = op, .c = c};
  uint64_t calls = case_calls(k);
  int bad = 0;
  for (uint64_t nth = 1; nth <= calls && nth <= 4 * sweep_max(); nth++)
    for (int persistent = 0; persistent < 2; persistent++) {
      /* the child's exit code (0 fine), or 100 + the signal that killed it */
      int st = case_status(k, nth, persistent);
      int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
      if (rc) {
        print_message("%s: %s #%llu%s: %d\n", what, sys_call_name(c), (unsigned long long)nth,
                      persistent ? " and on" : "", rc);
        bad++;
      }
    }
  print_message("%s: %s: %llu calls, %d bad\n", what, sys_call_name(c),
                (unsigned long long)calls, bad);
  assert_int_equal(bad, 0);
}

static const char *const create_specs[] = {
    "collector=mark_compact,heap_max=16M",     "collector=concurrent_compact,heap_max=16M",
    "collector=mark_sweep,heap_max=16M",       "collector=semispace,heap_max=16M",
};
static unsigned create_which;

/* fh_heap_create under the plan: a heap that works, or NULL with an error;
 * then, disarmed, a heap that works. */
static int create_op(sys_call c, uint64_t nth, int persistent) {
  fh_options o;
  fh_options_init(&o);
  if (fh_options_parse(&o, create_specs[create_which]) < 0) return 5;
  sys_fault_arm(c, nth, persistent, ENOMEM);
  fh_heap *h = fh_heap_create(&o);
  for (int round = 0; round < 2; round++) {
    if (!h) {
      if (round == 1 || !fh_last_error() || !*fh_last_error()) return 3;
    } else {
      test_types ty;
      test_register(h, &ty);
      fh_thread *t = fh_thread_attach(h);
      if (!t) return round ? 4 : 0; /* attaching may fail while armed */
      void *x = fh_alloc(t, ty.node, sizeof(tnode));
      if (!x && round == 1) return 4;
      if (fh_collect(t, FH_COLLECT_DEFAULT) < 0 && round == 1) return 4;
      fh_thread_detach(t);
      fh_heap_destroy(h);
    }
    sys_fault_disarm();
    if (round == 0) h = fh_heap_create(&o);
  }
  return 0;
}

/* sweep_op of op, which reads specs[*which], for every spec and every
 * kind of call a heap makes. */
static void sweep_specs(const char *const *specs, unsigned nspecs, unsigned *which,
                        operation op) {
  static const sys_call k[] = {SYS_MMAP, SYS_MUNMAP, SYS_MADVISE, SYS_JEMALLOC,
                               SYS_THREAD_CREATE};
  for (*which = 0; *which < nspecs; (*which)++)
    for (unsigned i = 0; i < sizeof k / sizeof k[0]; i++) sweep_op(specs[*which], op, k[i]);
}

static void test_heap_create(void **s) {
  (void)s;
  sweep_specs(create_specs, sizeof create_specs / sizeof create_specs[0], &create_which,
              create_op);
}

static const char *const prefork_specs[] = {
    "collector=mark_sweep,heap_max=32M,verify=1",
    "collector=mark_compact,heap_max=32M,verify=1",
};
static unsigned prefork_which;

/* fh_prefork (zygote compaction) under the plan: 0, or -1 with an error;
 * either way the ring intact, and the heap collects and allocates after
 * fh_postfork_parent, disarmed. */
static int prefork_op(sys_call c, uint64_t nth, int persistent) {
  fh_heap *h = test_child_heap(prefork_specs[prefork_which]);
  if (!h) return 5;
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  test_ring g;
  test_ring_build(t, &ty, &g, 3000, 97, 2);
  sys_fault_arm(c, nth, persistent, ENOMEM);
  int rc = fh_prefork(t);
  sys_fault_disarm();
  if (rc < 0 && !*fh_last_error()) return 3;
  if (!ring_ok(&g)) return 2;
  fh_postfork_parent(h);
  for (int i = 0; i < 2; i++) {
    if (fh_collect(t, FH_COLLECT_DEFAULT) < 0) return 4;
    fh_gc_wait(h);
    if (!ring_ok(&g) || !fh_alloc(t, ty.node, sizeof(tnode))) return 2;
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

static void test_prefork(void **s) {
  (void)s;
  sweep_specs(prefork_specs, sizeof prefork_specs / sizeof prefork_specs[0], &prefork_which,
              prefork_op);
}

/* The whole of a file (NULL if unreadable), its size in *n. */
static char *slurp(const char *path, long *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *n = ftell(f);
  rewind(f);
  char *b = malloc((size_t)*n + 1);
  if (b && fread(b, 1, (size_t)*n, f) != (size_t)*n) b = (free(b), NULL);
  fclose(f);
  return b;
}

/* Files in img_dir besides the image and its reference copy. */
static int stray_files(void) {
  char cmd[160];
  snprintf(cmd, sizeof cmd, "ls %s | grep -v -x -e image -e reference | grep -q .", img_dir);
  return system(cmd) == 0;
}

static fh_heap *ring_heap(const char *extra, test_types *ty) {
  char spec[256];
  fh_options o;
  fh_options_init(&o);
  snprintf(spec, sizeof spec, "collector=mark_sweep,heap_max=16M,verify=1%s%s", extra ? "," : "",
           extra ? extra : "");
  if (fh_options_parse(&o, spec) < 0) return NULL;
  fh_heap *h = fh_heap_create(&o);
  if (h) test_register(h, ty);
  return h;
}

/* fh_image_save over an existing image: 0 and a loadable file, or -1 with
 * an error, the old file untouched and no temporary left behind. */
static int save_op(sys_call c, uint64_t nth, int persistent) {
  test_types ty;
  fh_heap *h = ring_heap(NULL, &ty);
  if (!h) return 5;
  fh_thread *t = fh_thread_attach(h);
  test_ring g;
  test_ring_build(t, &ty, &g, 500, 7, 1);
  for (size_t i = 0; i < g.n; i++) ((tnode *)g.arr[i])->value = i + 1000; /* a new image */
  for (size_t i = 0; i < g.n; i++) ((tnode *)g.arr[i])->check = test_check(i + 1000);
  long n0 = 0, n1 = 0;
  char *before = slurp(img_file, &n0);
  if (!before) return 5;
  sys_fault_arm(c, nth, persistent, ENOSPC);
  int rc = fh_image_save(t, img_file, (void **)&g.arr, 1);
  sys_fault_disarm();
  if (rc < 0) {
    if (!*fh_last_error()) return 3;
    char *after = slurp(img_file, &n1);
    if (!after || n1 != n0 || memcmp(before, after, (size_t)n0) != 0) return 2;
    free(after);
  }
  free(before);
  if (stray_files()) return 7;
  if (rc == 0 && fh_image_save(t, img_file, (void **)&g.arr, 1) < 0) return 4; /* the next works */
  return 0;
}

/* fh_heap_create with image_path: a heap with the image's ring intact, or
 * NULL with an error; disarmed, the image loads. */
static int load_op(sys_call c, uint64_t nth, int persistent) {
  static const char *const shares[] = {"image_share=none", "image_share=memfd"};
  for (int round = 0; round < 2; round++) {
    char extra[256];
    snprintf(extra, sizeof extra, "image_path=%s,%s", img_file, shares[nth % 2]);
    if (round == 0) sys_fault_arm(c, nth, persistent, EIO);
    test_types ty;
    fh_heap *h = ring_heap(extra, &ty);
    sys_fault_disarm();
    if (!h) {
      if (round == 1 || !*fh_last_error()) return 3;
      continue;
    }
    void **roots;
    if (fh_image_roots(h, &roots) != 1) return 2;
    test_ring g = {roots[0], 500};
    if (!ring_ok(&g)) return 2;
    fh_heap_destroy(h);
  }
  return 0;
}

static int image_setup(void **s) {
  (void)s;
  snprintf(img_dir, sizeof img_dir, "/tmp/fh_sysfaults.XXXXXX");
  if (!mkdtemp(img_dir)) return -1;
  snprintf(img_file, sizeof img_file, "%s/image", img_dir);
  test_types ty;
  fh_heap *h = ring_heap(NULL, &ty);
  fh_thread *t = fh_thread_attach(h);
  test_ring g;
  test_ring_build(t, &ty, &g, 500, 7, 1);
  int rc = fh_image_save(t, img_file, (void **)&g.arr, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "cp %s %s/reference", img_file, img_dir);
  return rc == 0 && system(cmd) == 0 ? 0 : -1;
}

static int image_teardown(void **s) {
  (void)s;
  char cmd[120];
  snprintf(cmd, sizeof cmd, "rm -rf %s", img_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_image_save(void **s) {
  (void)s;
  static const sys_call k[] = {SYS_OPEN, SYS_WRITE, SYS_RENAME, SYS_MMAP, SYS_MUNMAP};
  for (unsigned i = 0; i < sizeof k / sizeof k[0]; i++) sweep_op("fh_image_save", save_op, k[i]);
}

static void test_image_load(void **s) {
  (void)s;
  static const sys_call k[] = {SYS_OPEN, SYS_READ, SYS_WRITE, SYS_MMAP, SYS_MUNMAP, SYS_MADVISE};
  for (unsigned i = 0; i < sizeof k / sizeof k[0]; i++) sweep_op("image load", load_op, k[i]);
}

int main(void) {
  /* Debugging one case in this process: FH_SYSFAULT_ONE=mc|cc,kind,nth,persistent */
  const char *one = getenv("FH_SYSFAULT_ONE");
  if (one && *one) {
    char which[8];
    unsigned kind, per;
    unsigned long long nth;
    if (sscanf(one, "%7[a-z],%u,%llu,%u", which, &kind, &nth, &per) != 4) return 9;
    unsigned f = 0;
    if (!strcmp(which, "pf")) return prefork_op((sys_call)kind, nth, (int)per); /* mark_sweep */
    const char *spec = !strcmp(which, "mc") ? MC : !strcmp(which, "cc") ? CC
                     : !strcmp(which, "ss") ? SS : MS;
    fh_collect_kind k = !strcmp(which, "mc") ? FH_COLLECT_MARK_COMPACT
                      : !strcmp(which, "hs") ? FH_COLLECT_HSPACE_COMPACT : FH_COLLECT_DEFAULT;
    int rc = workload(spec, k, (sys_call)kind, nth, (int)per, &f);
    fprintf(stderr, "rc %d, %u failed cycles, %llu injected\n", rc, f,
            (unsigned long long)sys_fault_injected());
    return rc;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_madvise_mark_compact),
      cmocka_unit_test(test_madvise_mark_compact_no_thp),
      cmocka_unit_test(test_madvise_concurrent),
      cmocka_unit_test(test_others_mark_compact),
      cmocka_unit_test(test_others_concurrent),
      cmocka_unit_test(test_mark_sweep_and_semispace),
      cmocka_unit_test(test_heap_create),
      cmocka_unit_test(test_prefork),
      cmocka_unit_test_setup_teardown(test_image_save, image_setup, image_teardown),
      cmocka_unit_test_setup_teardown(test_image_load, image_setup, image_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
