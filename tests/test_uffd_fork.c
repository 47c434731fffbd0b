/* uffd/ across fork(): the child drops the inherited userfaultfd (which
 * still belongs to the parent's mm), makes its own, and its registrations
 * work; the parent's keep working and are never touched by the child. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "support_heap.h"
#include "test_uffd.h"

typedef struct rctx {
  char *from;
  _Atomic int calls;
} rctx;

static int resolver(void *arg, const fh_uffd_fault *f) {
  rctx *c = arg;
  atomic_fetch_add(&c->calls, 1);
  size_t idx = (f->page - f->range_lo) / PG;
  fh_uffd_status s = fh_uffd_copy(f->fd, (void *)f->page, c->from + idx * PG, PG, 0, NULL);
  return s == FH_UFFD_OK ? FH_UFFD_RESOLVED
         : (s == FH_UFFD_EXISTED || s == FH_UFFD_ENOENT) ? FH_UFFD_RESOLVED_EXISTED
                                                         : FH_UFFD_RESOLVE_FAILED;
}

static volatile uint64_t sink;

/* Child body; returns the exit status (0 = all good, else the failed
 * check's number). */
static int child(fh_uffd *u, char *r1, char *r3, char *child_from) {
  if (fh_uffd_postfork_child(u) != 0)
    return 10;
  if (fh_uffd_fd(u) < 0)
    return 11;
  fh_uffd_stats s;
  fh_uffd_get_stats(u, &s);
  if (s.faults != 0)
    return 12;
  /* its own registration works */
  enum { N = 8 };
  char *r2 = mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r2 == MAP_FAILED)
    return 13;
  fill_pattern(child_from, N);
  static rctx c2;
  c2.from = child_from;
  int id = fh_uffd_range_add(u, r2, N * PG, FH_UFFD_REG_MISSING, resolver, &c2, NULL);
  if (id < 0)
    return 14;
  for (size_t i = 0; i < N; i++)
    sink += *(volatile uint64_t *)(r2 + i * PG);
  for (size_t i = 0; i < N; i++)
    if (!page_has_pattern(r2 + i * PG, i))
      return 15;
  if (fh_uffd_range_retire(u, id) != 0)
    return 16;
  if (atomic_load(&c2.calls) != N)
    return 17;
  /* The parent's registered-but-missing R3 is not registered in the child
   * (no EVENT_FORK), and the child's fresh fd cannot reach the parent's mm:
   * a COPY through it fails instead of filling the parent's page. */
  memset(child_from, 0xEE, PG);
  if (fh_uffd_copy(fh_uffd_fd(u), r3, child_from, PG, 0, NULL) != FH_UFFD_ENOENT)
    return 18;
  /* In the child, the parent's ranges are plain memory: a missing page
   * reads as zero (the reason never to fork with live registrations). */
  if (!page_is_zero(r1 + 7 * PG))
    return 19;
  fh_uffd_destroy(u);
  return 0;
}

static void fork_case(fh_uffd_mode mode) {
  enum { N = 8 };
  fh_uffd *u = fh_uffd_create(mode, 0);
  assert_non_null(u);
  char *from = map_anon(N * PG), *r1 = map_anon(N * PG), *r3 = map_anon(PG);
  char *child_from = map_anon(N * PG);
  fill_pattern(from, N);
  rctx c = {.from = from};
  int id1 = fh_uffd_range_add(u, r1, N * PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
  assert_true(id1 >= 0);
  rctx c3 = {.from = from + 3 * PG};
  int id3 = fh_uffd_range_add(u, r3, PG, FH_UFFD_REG_MISSING, resolver, &c3, NULL);
  assert_true(id3 >= 0);
  for (size_t i = 0; i < N / 2; i++)
    sink += *(volatile uint64_t *)(r1 + i * PG);
  int parent_fd = fh_uffd_fd(u);

  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(child(u, r1, r3, child_from));
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);

  /* the parent is unaffected: same fd, ranges still resolved by it */
  assert_int_equal(fh_uffd_fd(u), parent_fd);
  for (size_t i = 0; i < N; i++)
    sink += *(volatile uint64_t *)(r1 + i * PG);
  for (size_t i = 0; i < N; i++)
    assert_true(page_has_pattern(r1 + i * PG, i));
  sink += *(volatile uint64_t *)r3; /* not the child's 0xEE */
  assert_true(page_has_pattern(r3, 3));
  assert_int_equal(fh_uffd_range_retire(u, id1), 0);
  assert_int_equal(fh_uffd_range_retire(u, id3), 0);
  assert_int_equal(atomic_load(&c.calls), N);
  fh_uffd_destroy(u);
  munmap(from, N * PG);
  munmap(r1, N * PG);
  munmap(r3, PG);
  munmap(child_from, N * PG);
}

static void test_fork_sigbus(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  fork_case(FH_UFFD_SIGBUS);
}

static void test_fork_thread(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  /* TSan kills a child of a multi-threaded process that starts a thread */
  test_skip_under_tsan("no new threads after a multi-threaded fork");
  fork_case(FH_UFFD_THREAD);
}

/* The fd is close-on-exec, so exec'd programs never inherit it. */
static void test_cloexec(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  fh_uffd *u = fh_uffd_create(FH_UFFD_THREAD, 0);
  assert_non_null(u);
  assert_true(fcntl(fh_uffd_fd(u), F_GETFD) & FD_CLOEXEC);
  fh_uffd_destroy(u);
}

/* postfork on a context whose probe is disabled in the child fails
 * cleanly, and the context can still be destroyed. */
static void test_postfork_failure_is_clean(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  fh_uffd *u = fh_uffd_create(FH_UFFD_THREAD, 0);
  assert_non_null(u);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    fh_uffd_force_disable(1);
    int rc = fh_uffd_postfork_child(u);
    int e = errno;
    fh_uffd_destroy(u);
    _exit(rc == -1 && e == EOPNOTSUPP ? 0 : 1);
  }
  int status;
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  fh_uffd_destroy(u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_sigbus),
      cmocka_unit_test(test_fork_thread),
      cmocka_unit_test(test_cloexec),
      cmocka_unit_test(test_postfork_failure_is_clean),
  };
  return cmocka_run_group_tests_name("uffd_fork", tests, NULL, NULL);
}
