/* Late SIGBUSes (SIGBUS mode): a thread that faulted on a registered range
 * may run its handler only after the range was retired, its context
 * destroyed (the fork prepare handler does that) or the process forked.
 * The page is an ordinary one by then: the handler must return so that the
 * access retries, never pass the signal on (the default action kills).
 *
 * A late signal is made by queueing SIGBUS / BUS_ADRERR at an address to
 * the calling thread itself (rt_tgsigqueueinfo allows a positive si_code
 * within the process): exactly what the kernel would have delivered.  Each
 * case runs in a forked child, so a regression kills the child only. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "test_uffd.h"
#include "uffd/uffd_internal.h"

static void late_sigbus(void *addr) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  si.si_signo = SIGBUS;
  si.si_code = BUS_ADRERR;
  si.si_addr = addr;
  /* delivered before the syscall returns: pending, unblocked, to us */
  syscall(SYS_rt_tgsigqueueinfo, getpid(), (pid_t)syscall(SYS_gettid), SIGBUS, &si);
}

static int zero_resolver(void *arg, const fh_uffd_fault *f) {
  (void)arg;
  fh_uffd_status s = fh_uffd_zeropage(f->fd, (void *)f->page, PG, 0, NULL);
  return s == FH_UFFD_OK ? FH_UFFD_RESOLVED
         : s == FH_UFFD_EXISTED || s == FH_UFFD_ENOENT ? FH_UFFD_RESOLVED_EXISTED
                                                        : FH_UFFD_RESOLVE_FAILED;
}

/* Run body in a child; the child's exit status must be `want`. */
static void in_child(int (*body)(void), int want) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(20);
    signal(SIGBUS, SIG_DFL); /* not cmocka's handler: a SIGBUS must kill */
    _exit(body());
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) fail_msg("child killed by signal %d", WTERMSIG(status));
  assert_int_equal(WEXITSTATUS(status), want);
}

#define CHECK(c, code) \
  do {                 \
    if (!(c)) return code; \
  } while (0)

/* A range registered, touched, retired, and its context destroyed: a late
 * signal at it is retried; one at an address never registered is not ours. */
static int after_destroy_body(void) {
  enum { N = 4 };
  char *r = mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *never = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(r != MAP_FAILED && never != MAP_FAILED, 2);
  fh_uffd *u = fh_uffd_create(FH_UFFD_SIGBUS, 0);
  CHECK(u, 3);
  int id = fh_uffd_range_add(u, r, N * PG, FH_UFFD_REG_MISSING, zero_resolver, NULL, NULL);
  CHECK(id >= 0, 4);
  CHECK(*(volatile char *)(r + PG) == 0, 5); /* a real fault, resolved */
  CHECK(fh_uffd_range_retire(u, id) == 0, 6);
  late_sigbus(r + 2 * PG); /* retired slot: spurious, as before */
  fh_uffd_destroy(u);      /* the slot is freed */
  late_sigbus(r + 3 * PG + 8);
  late_sigbus(r);
  CHECK(fh_uffd_dispatch((uintptr_t)r + PG, 1, NULL, -1) == FH_UFFD_D_STALE, 7);
  CHECK(fh_uffd_dispatch((uintptr_t)never, 1, NULL, -1) == FH_UFFD_D_NOT_OURS, 8);
  CHECK(fh_uffd_dispatch((uintptr_t)r + N * PG, 1, NULL, -1) == FH_UFFD_D_NOT_OURS, 9);
  CHECK(fh_uffd_stale_faults() >= 2, 10);
  /* the memory is an ordinary mapping now */
  r[0] = 1;
  CHECK(r[0] == 1, 11);
  return 0;
}

static void test_late_sigbus_after_destroy(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  in_child(after_destroy_body, 0);
}

/* Across fork: the parent's range is live at the fork; the child drops
 * the context's ranges (fh_uffd_postfork_child), and a late signal there
 * in the child is retried.  The parent, after destroying its context, too. */
static int across_fork_body(void) {
  enum { N = 4 };
  char *r = mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(r != MAP_FAILED, 2);
  fh_uffd *u = fh_uffd_create(FH_UFFD_SIGBUS, 0);
  CHECK(u, 3);
  int id = fh_uffd_range_add(u, r, N * PG, FH_UFFD_REG_MISSING, zero_resolver, NULL, NULL);
  CHECK(id >= 0, 4);
  pid_t pid = fork();
  CHECK(pid >= 0, 5);
  if (pid == 0) {
    if (fh_uffd_postfork_child(u) != 0) _exit(20);
    late_sigbus(r + PG);
    fh_uffd_destroy(u);
    late_sigbus(r + 2 * PG);
    _exit(fh_uffd_dispatch((uintptr_t)r, 1, NULL, -1) == FH_UFFD_D_STALE ? 0 : 21);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid, 6);
  if (WIFSIGNALED(status)) return 100 + WTERMSIG(status);
  CHECK(WEXITSTATUS(status) == 0, WEXITSTATUS(status));
  CHECK(fh_uffd_range_retire(u, id) == 0, 7);
  fh_uffd_destroy(u);
  late_sigbus(r + 3 * PG);
  return 0;
}

static void test_late_sigbus_across_fork(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  in_child(across_fork_body, 0);
}

/* A thread that keeps getting SIGBUS at the same once-registered address is
 * not seeing a late signal (the memory became something else): after a
 * bounded number of retries the signal goes to the previous handler. */
static void prev_handler(int sig) {
  (void)sig;
  _exit(42);
}

static int repeated_body(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = prev_handler;
  sigemptyset(&sa.sa_mask);
  CHECK(sigaction(SIGBUS, &sa, NULL) == 0, 2);
  char *r = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(r != MAP_FAILED, 3);
  fh_uffd *u = fh_uffd_create(FH_UFFD_SIGBUS, 0); /* chains to prev_handler */
  CHECK(u, 4);
  int id = fh_uffd_range_add(u, r, PG, FH_UFFD_REG_MISSING, zero_resolver, NULL, NULL);
  CHECK(id >= 0, 5);
  CHECK(fh_uffd_range_retire(u, id) == 0, 6);
  fh_uffd_destroy(u);
  for (int i = 0; i < 10; i++) late_sigbus(r + (size_t)(i % 2) * 64); /* two addresses */
  for (int i = 0; i < 1000; i++) late_sigbus(r + 8);
  return 7; /* never chained */
}

static void test_repeated_sigbus_goes_on(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  in_child(repeated_body, 42);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_late_sigbus_after_destroy),
      cmocka_unit_test(test_late_sigbus_across_fork),
      cmocka_unit_test(test_repeated_sigbus_goes_on),
  };
  return cmocka_run_group_tests_name("uffd_late_sigbus", tests, NULL, NULL);
}
