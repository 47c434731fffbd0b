/* Failed system calls during collections (issue 14, defect 1): each call
 * the heap makes through heap/sys.h is made to fail, the Nth one once and
 * from the Nth on, during a compacting workload whose objects carry a
 * checksum (tnode value/check) with verify=1.  Whatever fails, every object
 * keeps its contents and links, a collection that reports -1 sets
 * fh_last_error(), and once the call succeeds again the heap collects and
 * allocates as before.  Each case runs in a forked child bounded by
 * alarm(): a crash or a verify abort fails that case, not the suite.
 *
 * Every N up to FH_SYSFAULT_MAX (default 40) is swept, and 8 more spread
 * over the rest of the workload's calls. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/sys.h"
#include "support_heap.h"
#include "uffd/uffd.h"

enum { RING = 6000, GARBAGE = 3, CYCLES = 3 };

static unsigned sweep_max(void) {
  const char *v = getenv("FH_SYSFAULT_MAX");
  return v && *v ? (unsigned)strtoul(v, NULL, 10) : 40;
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
  fh_options o;
  fh_options_init(&o);
  if (fh_options_parse(&o, spec) < 0) return 5;
  fh_heap *h = fh_heap_create(&o);
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

/* A child dies of its crash (cmocka's handlers would go on running the
 * suite in it), and of a hang after 60 s. */
static void child_signals(void) {
  static const int sigs[] = {SIGSEGV, SIGABRT, SIGILL, SIGFPE};
  for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
  alarm(60);
}

/* Calls of kind c the workload makes, the seam counting only. */
static uint64_t count_calls(const char *spec, fh_collect_kind kind, sys_call c) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    child_signals();
    unsigned f = 0;
    int rc = workload(spec, kind, c, 0, 0, &f);
    uint64_t n = sys_fault_calls(c);
    if (write(fds[1], &n, sizeof n) != sizeof n) rc = 6;
    _exit(rc);
  }
  close(fds[1]);
  uint64_t n = 0;
  ssize_t r = read(fds[0], &n, sizeof n);
  close(fds[0]);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_int_equal(r, sizeof n);
  return n;
}

/* Fail the Nth call of kind c (once, then from the Nth on) for every N the
 * workload reaches, up to sweep_max(). */
static void sweep(const char *spec, fh_collect_kind kind, sys_call c) {
  uint64_t calls = count_calls(spec, kind, c);
  uint64_t max = calls < sweep_max() ? calls : sweep_max();
  int bad = 0;
  uint64_t swept = 0;
  for (uint64_t i = 1, nth = 1; nth <= calls; i++, swept++) {
    for (int persistent = 0; persistent < 2; persistent++) {
      pid_t pid = fork();
      assert_true(pid >= 0);
      if (pid == 0) {
        child_signals();
        unsigned f = 0;
        _exit(workload(spec, kind, c, nth, persistent, &f));
      }
      int st;
      assert_int_equal(waitpid(pid, &st, 0), pid);
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

static int have_uffd(void) {
  unsigned c = fh_capabilities();
  return (c & FH_CAP_UFFD) && (c & FH_CAP_DONTUNMAP);
}

#define MC "collector=mark_compact,heap_max=64M,min_alloc_trigger=60M,verify=1"
#define CC "collector=concurrent_compact,heap_max=64M,min_alloc_trigger=60M,verify=1"
#define MS "collector=mark_sweep,heap_max=64M,min_alloc_trigger=60M,verify=1"
#define SS "collector=semispace,heap_max=64M,min_alloc_trigger=60M,verify=1"

static void test_madvise_mark_compact(void **s) {
  (void)s;
  sweep(MC, FH_COLLECT_MARK_COMPACT, SYS_MADVISE);
}

static void test_madvise_concurrent(void **s) {
  (void)s;
  if (!have_uffd()) skip();
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
  if (!have_uffd()) skip();
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

int main(void) {
  /* Debugging one case in this process: FH_SYSFAULT_ONE=mc|cc,kind,nth,persistent */
  const char *one = getenv("FH_SYSFAULT_ONE");
  if (one && *one) {
    char which[8];
    unsigned kind, per;
    unsigned long long nth;
    if (sscanf(one, "%7[a-z],%u,%llu,%u", which, &kind, &nth, &per) != 4) return 9;
    unsigned f = 0;
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
      cmocka_unit_test(test_madvise_concurrent),
      cmocka_unit_test(test_others_mark_compact),
      cmocka_unit_test(test_others_concurrent),
      cmocka_unit_test(test_mark_sweep_and_semispace),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
