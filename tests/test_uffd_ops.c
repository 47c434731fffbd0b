/* uffd/ resolving operations: COPY, ZEROPAGE, MOVE, CONTINUE, WAKE,
 * register/unregister, and their race and partial-progress paths.  No page
 * of a registered range is touched before it is installed (the fd is a
 * SIGBUS one, so a mistake crashes instead of hanging). */
#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "test_uffd.h"

static int open_fd(void) {
  uint64_t got;
  int fd = fh_uffd_open(UFFD_FEATURE_SIGBUS | UFFD_FEATURE_MOVE |
                            UFFD_FEATURE_MINOR_SHMEM,
                        1, 0, &got, NULL);
  assert_true(fd >= 0);
  return fd;
}

static void test_register_mask_and_errors(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  int fd = open_fd();
  char *p = map_anon(8 * PG);
  uint64_t mask = 0;
  assert_int_equal(fh_uffd_register(fd, p, 8 * PG, FH_UFFD_REG_MISSING, &mask), 0);
  assert_true(mask & (1ull << _UFFDIO_COPY));
  assert_true(mask & (1ull << _UFFDIO_ZEROPAGE));
  assert_true(mask & (1ull << _UFFDIO_WAKE));
  assert_int_equal(fh_uffd_unregister(fd, p, 8 * PG), 0);
  /* bad input: errors, not crashes */
  errno = 0;
  assert_int_equal(fh_uffd_register(fd, p + 1, PG, FH_UFFD_REG_MISSING, NULL), -1);
  assert_int_equal(errno, EINVAL);
  assert_int_equal(fh_uffd_register(fd, p, PG, 0, NULL), -1);
  assert_int_equal(fh_uffd_register(fd, p, PG, 99, NULL), -1);
  assert_int_equal(fh_uffd_unregister(fd, p, 100), -1);
  /* MINOR on private anonymous memory: the kernel refuses */
  if (fh_capabilities() & FH_CAP_UFFD_MINOR)
    assert_int_equal(fh_uffd_register(fd, p, PG, FH_UFFD_REG_MINOR, NULL), -1);
  munmap(p, 8 * PG);
  close(fd);
}

static void test_copy_and_existed(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  int fd = open_fd();
  enum { N = 16 };
  char *src = map_anon(N * PG), *dst = map_anon(N * PG);
  fill_pattern(src, N);
  assert_int_equal(fh_uffd_register(fd, dst, N * PG, FH_UFFD_REG_MISSING, NULL), 0);
  fh_uffd_res r;
  assert_int_equal(fh_uffd_copy(fd, dst, src, 4 * PG, 0, &r), FH_UFFD_OK);
  assert_int_equal(r.done, 4 * PG);
  assert_int_equal(r.existed, 0);
  /* the same pages again: someone else already mapped them */
  assert_int_equal(fh_uffd_copy(fd, dst, src + 8 * PG, 4 * PG, 0, &r), FH_UFFD_EXISTED);
  assert_int_equal(r.existed, 4);
  assert_int_equal(r.done, 4 * PG);
  assert_int_equal(fh_uffd_copy(fd, dst + 4 * PG, src + 4 * PG, 12 * PG, FH_UFFD_DONTWAKE, NULL),
                   FH_UFFD_OK);
  for (size_t i = 0; i < N; i++)
    assert_true(page_has_pattern(dst + i * PG, i));
  /* unaligned: refused */
  assert_int_equal(fh_uffd_copy(fd, dst + 1, src, PG, 0, &r), FH_UFFD_ERROR);
  assert_int_equal(errno, EINVAL);
  assert_int_equal(fh_uffd_copy(fd, dst, src, PG + 8, 0, &r), FH_UFFD_ERROR);
  munmap(src, N * PG);
  munmap(dst, N * PG);
  close(fd);
}

/* Copy N pages where page k > 0 is already present.  The kernel stops at k
 * with EAGAIN and a positive count (checked raw first); the layer must then
 * skip the present page (EEXIST) and finish the rest. */
static void test_partial_copy(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  int fd = open_fd();
  enum { N = 12, K = 5 };
  char *src = map_anon(N * PG), *dst = map_anon(N * PG), *other = map_anon(PG);
  fill_pattern(src, N);
  memset(other, 0xAB, PG);
  assert_int_equal(fh_uffd_register(fd, dst, N * PG, FH_UFFD_REG_MISSING, NULL), 0);

  /* raw kernel semantics on this machine */
  assert_int_equal(fh_uffd_copy(fd, dst + K * PG, other, PG, 0, NULL), FH_UFFD_OK);
  struct uffdio_copy c = {.dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = N * PG};
  assert_int_equal(ioctl(fd, UFFDIO_COPY, &c), -1);
  assert_int_equal(errno, EAGAIN);
  assert_int_equal(c.copy, K * PG);

  /* now through the layer, on a fresh range with the same layout */
  char *dst2 = map_anon(N * PG);
  assert_int_equal(fh_uffd_register(fd, dst2, N * PG, FH_UFFD_REG_MISSING, NULL), 0);
  assert_int_equal(fh_uffd_copy(fd, dst2 + K * PG, other, PG, 0, NULL), FH_UFFD_OK);
  fh_uffd_res r;
  assert_int_equal(fh_uffd_copy(fd, dst2, src, N * PG, 0, &r), FH_UFFD_EXISTED);
  assert_int_equal(r.done, N * PG);
  assert_int_equal(r.existed, 1);
  for (size_t i = 0; i < N; i++) {
    if (i == K)
      assert_int_equal((unsigned char)dst2[i * PG], 0xAB); /* kept */
    else
      assert_true(page_has_pattern(dst2 + i * PG, i));
  }
  munmap(src, N * PG);
  munmap(dst, N * PG);
  munmap(dst2, N * PG);
  munmap(other, PG);
  close(fd);
}

static void test_zeropage(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  int fd = open_fd();
  enum { N = 8 };
  char *src = map_anon(PG), *dst = map_anon(N * PG);
  fill_pattern(src, 1);
  assert_int_equal(fh_uffd_register(fd, dst, N * PG, FH_UFFD_REG_MISSING, NULL), 0);
  assert_int_equal(fh_uffd_copy(fd, dst + 3 * PG, src, PG, 0, NULL), FH_UFFD_OK);
  fh_uffd_res r;
  assert_int_equal(fh_uffd_zeropage(fd, dst, N * PG, 0, &r), FH_UFFD_EXISTED);
  assert_int_equal(r.existed, 1);
  assert_int_equal(r.done, N * PG);
  for (size_t i = 0; i < N; i++) {
    if (i == 3)
      assert_true(page_has_pattern(dst + i * PG, 0));
    else
      assert_true(page_is_zero(dst + i * PG));
  }
  dst[0] = 1; /* the zero page is copied on write, outside uffd */
  assert_int_equal(dst[0], 1);
  munmap(src, PG);
  munmap(dst, N * PG);
  close(fd);
}

static void test_enoent_after_unregister(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  int fd = open_fd();
  char *src = map_anon(2 * PG), *dst = map_anon(2 * PG);
  assert_int_equal(fh_uffd_register(fd, dst, 2 * PG, FH_UFFD_REG_MISSING, NULL), 0);
  assert_int_equal(fh_uffd_unregister(fd, dst, 2 * PG), 0);
  fh_uffd_res r;
  assert_int_equal(fh_uffd_copy(fd, dst, src, 2 * PG, 0, &r), FH_UFFD_ENOENT);
  assert_int_equal(r.done, 0);
  assert_int_equal(fh_uffd_zeropage(fd, dst, PG, 0, NULL), FH_UFFD_ENOENT);
  assert_string_equal(fh_uffd_status_name(FH_UFFD_ENOENT), "enoent");
  munmap(src, 2 * PG);
  munmap(dst, 2 * PG);
  close(fd);
}

static void test_wake(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  int fd = open_fd();
  char *dst = map_anon(PG);
  assert_int_equal(fh_uffd_register(fd, dst, PG, FH_UFFD_REG_MISSING, NULL), 0);
  assert_int_equal(fh_uffd_wake(fd, dst, PG), 0); /* nobody waits: fine */
  munmap(dst, PG);
  close(fd);
}

static void test_move(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_MOVE);
  int fd = open_fd();
  enum { N = 8 };
  char *src = map_anon(N * PG), *dst = map_anon(N * PG), *other = map_anon(PG);
  fill_pattern(src, N);
  memset(other, 0xCD, PG);
  assert_int_equal(fh_uffd_register(fd, dst, N * PG, FH_UFFD_REG_MISSING, NULL), 0);
  /* page 2 present: skipped, its source stays */
  assert_int_equal(fh_uffd_copy(fd, dst + 2 * PG, other, PG, 0, NULL), FH_UFFD_OK);
  fh_uffd_res r;
  assert_int_equal(fh_uffd_move(fd, dst, src, N * PG, 0, &r), FH_UFFD_EXISTED);
  assert_int_equal(r.existed, 1);
  assert_int_equal(r.done, N * PG);
  for (size_t i = 0; i < N; i++) {
    if (i == 2) {
      assert_int_equal((unsigned char)dst[i * PG], 0xCD);
      assert_true(page_has_pattern(src + i * PG, i));
    } else {
      assert_true(page_has_pattern(dst + i * PG, i));
      assert_true(page_is_zero(src + i * PG)); /* moved away: a hole again */
    }
  }
  /* a hole in the source: ENOENT */
  char *dst2 = map_anon(PG);
  assert_int_equal(fh_uffd_register(fd, dst2, PG, FH_UFFD_REG_MISSING, NULL), 0);
  madvise(src, PG, MADV_DONTNEED);
  assert_int_equal(fh_uffd_move(fd, dst2, src, PG, 0, &r), FH_UFFD_ENOENT);
  munmap(src, N * PG);
  munmap(dst, N * PG);
  munmap(dst2, PG);
  munmap(other, PG);
  close(fd);
}

/* Pages shared copy-on-write with a fork child are not exclusive: MOVE says
 * EBUSY (even after the child exited) and the caller falls back to COPY
 * from where MOVE stopped. */
static void test_move_busy_fallback(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_MOVE);
  int fd = open_fd();
  enum { N = 4 };
  char *src = map_anon(N * PG), *dst = map_anon(N * PG);
  fill_pattern(src, N);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(0);
  int status;
  waitpid(pid, &status, 0);
  assert_int_equal(fh_uffd_register(fd, dst, N * PG, FH_UFFD_REG_MISSING, NULL), 0);
  fh_uffd_res r;
  fh_uffd_status s = fh_uffd_move(fd, dst, src, N * PG, 0, &r);
  assert_int_equal(s, FH_UFFD_BUSY);
  assert_int_equal(r.done, 0);
  assert_int_equal(fh_uffd_copy(fd, dst + r.done, src + r.done, N * PG - r.done, 0, NULL),
                   FH_UFFD_OK);
  for (size_t i = 0; i < N; i++)
    assert_true(page_has_pattern(dst + i * PG, i));
  munmap(src, N * PG);
  munmap(dst, N * PG);
  close(fd);
}

/* MINOR mode on shared memory: the page is in the page cache (written
 * through a second mapping) and CONTINUE maps it. */
static void test_continue_minor(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_MINOR);
  int fd = open_fd();
  int mfd = memfd_create("fh-uffd-minor", MFD_CLOEXEC);
  assert_true(mfd >= 0);
  enum { N = 4 };
  assert_int_equal(ftruncate(mfd, N * PG), 0);
  char *view = mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  char *alias = mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  assert_true(view != MAP_FAILED && alias != MAP_FAILED);
  uint64_t mask = 0;
  assert_int_equal(fh_uffd_register(fd, view, N * PG, FH_UFFD_REG_MINOR, &mask), 0);
  assert_true(mask & (1ull << _UFFDIO_CONTINUE));
  fill_pattern(alias, N);
  fh_uffd_res r;
  assert_int_equal(fh_uffd_continue(fd, view, N * PG, 0, &r), FH_UFFD_OK);
  assert_int_equal(r.done, N * PG);
  for (size_t i = 0; i < N; i++)
    assert_true(page_has_pattern(view + i * PG, i));
  /* again: already mapped */
  assert_int_equal(fh_uffd_continue(fd, view, PG, 0, &r), FH_UFFD_EXISTED);
  munmap(view, N * PG);
  munmap(alias, N * PG);
  close(mfd);
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_register_mask_and_errors),
      cmocka_unit_test(test_copy_and_existed),
      cmocka_unit_test(test_partial_copy),
      cmocka_unit_test(test_zeropage),
      cmocka_unit_test(test_enoent_after_unregister),
      cmocka_unit_test(test_wake),
      cmocka_unit_test(test_move),
      cmocka_unit_test(test_move_busy_fallback),
      cmocka_unit_test(test_continue_minor),
  };
  return cmocka_run_group_tests_name("uffd_ops", tests, NULL, NULL);
}
