/* uffd/ probe: fh_capabilities(), the capability line, and the
 * no-userfaultfd path (force-disable hook and FH_UFFD_DISABLE). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_uffd.h"

static char *caps_line(void) {
  static char buf[1024];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  assert_non_null(f);
  fh_uffd_print_caps(f);
  fclose(f);
  return buf;
}

static void test_probe_reports_uffd(void **st) {
  (void)st;
  char *line = caps_line();
  print_message("%s", line);
  assert_non_null(strstr(line, "uffd: "));
  assert_non_null(strstr(line, "dontunmap"));
  unsigned caps = fh_capabilities();
  assert_int_equal(caps, fh_capabilities()); /* cached, stable */
  if (!(caps & FH_CAP_UFFD)) {
    assert_non_null(strstr(line, "uffd: no ("));
    skip();
  }
  assert_non_null(strstr(line, "uffd: yes"));
  fh_uffd_caps c;
  fh_uffd_caps_get(&c);
  assert_int_equal(c.caps, caps);
  assert_true(c.features != 0);
  /* a private anonymous MISSING range always supports COPY and WAKE */
  assert_true(c.range_ioctls & (1ull << _UFFDIO_COPY));
  assert_true(c.range_ioctls & (1ull << _UFFDIO_WAKE));
  /* MOVE reported only with both the feature and the range ioctl */
  if (caps & FH_CAP_UFFD_MOVE)
    assert_true(c.range_ioctls & (1ull << 5));
  assert_int_equal(!!(caps & FH_CAP_UFFD_SIGBUS), !!(c.features & UFFD_FEATURE_SIGBUS));
}

static void test_dontunmap_probe(void **st) {
  (void)st;
  fh_uffd_caps c;
  fh_uffd_caps_get(&c);
  /* This machine's kernel (6.18) has it; elsewhere the line says why not. */
  if (c.err_dontunmap)
    skip();
  assert_true(fh_capabilities() & FH_CAP_DONTUNMAP);
}

static void test_open_negotiates_features(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  uint64_t got = 0;
  int umo = -1;
  int fd = fh_uffd_open(UFFD_FEATURE_SIGBUS | UFFD_FEATURE_EVENT_FORK |
                            UFFD_FEATURE_EVENT_UNMAP,
                        1, 0, &got, &umo);
  assert_true(fd >= 0);
  /* EVENT_* are never enabled, whatever is asked */
  assert_true(got & UFFD_FEATURE_SIGBUS);
  assert_false(got & (UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_UNMAP));
  assert_true(umo == 0 || umo == 1);
  /* O_CLOEXEC always */
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  /* UFFDIO_API is accepted once only: the fd is already negotiated */
  struct uffdio_api api = {.api = UFFD_API};
  assert_int_equal(ioctl(fd, UFFDIO_API, &api), -1);
  close(fd);

  fd = fh_uffd_open(0, 0, 1, &got, &umo);
  assert_true(fd >= 0);
  assert_int_equal(umo, 0); /* root: kernel faults allowed */
  assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
  close(fd);
}

static void test_force_disable(void **st) {
  (void)st;
  unsigned before = fh_capabilities();
  fh_uffd_force_disable(1);
  unsigned caps = fh_capabilities();
  assert_int_equal(caps & ~(unsigned)FH_CAP_DONTUNMAP, 0);
  assert_int_equal(caps & FH_CAP_DONTUNMAP, before & FH_CAP_DONTUNMAP);
  assert_non_null(strstr(caps_line(), "disabled by fh_uffd_force_disable"));
  errno = 0;
  assert_null(fh_uffd_create(FH_UFFD_SIGBUS, 0));
  assert_int_equal(errno, EOPNOTSUPP);
  assert_null(fh_uffd_create(FH_UFFD_THREAD, 0));
  assert_int_equal(fh_uffd_open(0, 1, 0, NULL, NULL), -1);
  fh_uffd_caps c;
  fh_uffd_probe_now(&c);
  assert_int_equal(c.disabled, 2);
  assert_int_equal(c.caps & FH_CAP_UFFD, 0);
  fh_uffd_force_disable(0);
  assert_int_equal(fh_capabilities(), before);
  if (before & FH_CAP_UFFD_SIGBUS) {
    fh_uffd *u = fh_uffd_create(FH_UFFD_SIGBUS, 0);
    assert_non_null(u);
    fh_uffd_destroy(u);
  }
}

static void test_env_disable(void **st) {
  (void)st;
  /* The cached probe already ran in this process: check the env path in a
   * child that probes afresh. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    setenv("FH_UFFD_DISABLE", "1", 1);
    fh_uffd_caps c;
    fh_uffd_probe_now(&c);
    int ok = c.disabled == 1 && !(c.caps & FH_CAP_UFFD);
    setenv("FH_UFFD_DISABLE", "0", 1);
    fh_uffd_probe_now(&c);
    ok = ok && c.disabled == 0;
    _exit(ok ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_probe_reports_uffd),
      cmocka_unit_test(test_dontunmap_probe),
      cmocka_unit_test(test_open_negotiates_features),
      cmocka_unit_test(test_force_disable),
      cmocka_unit_test(test_env_disable),
  };
  return cmocka_run_group_tests_name("uffd_probe", tests, NULL, NULL);
}
