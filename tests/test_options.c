/* Options: defaults, parsing with suffixes, range checks, unknown keys,
 * atomicity of a failed parse, FH_OPTIONS in fh_heap_create(NULL). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support_heap.h"
#include "heap/mem_limit.h"

static void test_defaults(void **state) {
  (void)state;
  fh_options o;
  fh_options_init(&o);
  /* A quarter of the machine's memory (or less, under a cgroup limit),
   * never under 256 MiB. */
  size_t mem = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
  assert_true(o.heap_max >= 256u << 20);
  assert_true(o.heap_max <= heap_max_for_memory(mem));
  assert_int_equal(o.heap_max, heap_default_max());
  assert_int_equal(o.non_moving_max, 64u << 20);
  assert_int_equal(o.collector, FH_COLLECTOR_AUTO);
  assert_int_equal(o.hspace_compact_on_oom, 1);
  assert_true(o.gc_threads >= 1);
  assert_null(o.image_path);
  assert_int_equal(o.verify, 0);
  assert_int_equal(o.uffd_sigbus, 1);
}

static void test_default_heap_max_is_a_quarter_of_memory(void **state) {
  (void)state;
  const size_t MiB = (size_t)1 << 20;
  assert_int_equal(heap_max_for_memory(0), 256 * MiB);
  assert_int_equal(heap_max_for_memory(512 * MiB), 256 * MiB);
  assert_int_equal(heap_max_for_memory(2048 * MiB), 512 * MiB);
  assert_int_equal(heap_max_for_memory(24105 * MiB + 12345), 6026 * MiB);
  assert_int_equal(heap_max_for_memory((size_t)1 << 50), (size_t)1 << 40);
}

/* In a cgroup with a 2 GiB memory limit, heap_max defaults to a quarter
 * of that, not of the machine: a child process joins a cgroup made for
 * the test (cgroup v1's memory hierarchy, or v2 with the memory
 * controller).  Skipped where none can be made (not root, no such
 * hierarchy). */
static int make_cgroup(char *dir, size_t n, const char **limit_file) {
  static const struct {
    const char *root, *probe, *file;
  } kinds[] = {{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "memory.limit_in_bytes"},
               {"/sys/fs/cgroup", "/sys/fs/cgroup/cgroup.subtree_control", "memory.max"}};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    if (access(kinds[k].probe, F_OK) != 0) continue;
    snprintf(dir, n, "%s/fh-test-options-%d", kinds[k].root, (int)getpid());
    if (mkdir(dir, 0755) != 0) continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, kinds[k].file);
    FILE *f = fopen(path, "w");
    if (f != NULL && fprintf(f, "%llu\n", 2ULL << 30) > 0 && fclose(f) == 0) {
      *limit_file = kinds[k].file;
      return 0;
    }
    if (f != NULL) fclose(f);
    rmdir(dir);
  }
  return -1;
}

static void test_default_heap_max_follows_cgroup_limit(void **state) {
  (void)state;
  char dir[256];
  const char *file;
  if (geteuid() != 0 || make_cgroup(dir, sizeof dir, &file) != 0) {
    skip();
    return;
  }
  /* A quarter of the lower of the limit and the machine's memory. */
  size_t mem = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
  size_t want = heap_max_for_memory(mem < ((size_t)2 << 30) ? mem : (size_t)2 << 30);
  pid_t pid = fork();
  if (pid == 0) {
    char procs[300];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    FILE *f = fopen(procs, "w");
    if (f == NULL || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0)
      _exit(77); /* not allowed to join (an LSM, a delegation rule) */
    fh_options o;
    fh_options_init(&o);
    _exit(o.heap_max == want ? 0 : 1);
  }
  int status = 0;
  pid_t waited = pid > 0 ? waitpid(pid, &status, 0) : -1;
  /* Empty once the child has exited; the kernel may take a moment. */
  int removed = -1;
  for (int i = 0; i < 100 && (removed = rmdir(dir)) != 0 && errno == EBUSY; i++) usleep(10000);
  assert_true(pid > 0);
  assert_int_equal(waited, pid);
  assert_int_equal(removed, 0);
  assert_true(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    skip();
    return;
  }
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* Under an address-space limit the default leaves room for the heap's
 * reservation: at most an eighth of it (a child with RLIMIT_AS at 8 GiB
 * gets at most 1 GiB, and can create a heap with it). */
static void test_default_heap_max_fits_address_space_limit(void **state) {
  (void)state;
  if (test_sanitized()) {
    skip(); /* the sanitizers' shadow memory needs more than 8 GiB */
    return;
  }
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct rlimit as = {(rlim_t)8 << 30, (rlim_t)8 << 30};
    if (setrlimit(RLIMIT_AS, &as) != 0) _exit(2);
    fh_options o;
    fh_options_init(&o);
    size_t mem = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    size_t quarter = heap_max_for_memory(mem), want = quarter < (1u << 30) ? quarter : 1u << 30;
    if (o.heap_max != want) _exit(1);
    fh_heap *h = fh_heap_create(&o);
    if (h == NULL) _exit(3);
    fh_heap_destroy(h);
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_parse_all_kinds(void **state) {
  (void)state;
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, "heap_max=512M,collector=semispace,gc_threads=2,"
                                        "non_moving_max=1G, verify=1,tlab_size=64k,"
                                        "image_path=/tmp/x.img"), 0);
  assert_int_equal(o.heap_max, 512u << 20);
  assert_int_equal(o.non_moving_max, 1u << 30);
  assert_int_equal(o.collector, FH_SEMISPACE);
  assert_int_equal(o.gc_threads, 2);
  assert_int_equal(o.verify, 1);
  assert_int_equal(o.tlab_size, 64u << 10);
  assert_string_equal(o.image_path, "/tmp/x.img");
  assert_int_equal(fh_options_parse(&o, "background_collector=hspace_compact"), 0);
  assert_int_equal(o.background_collector, FH_HSPACE_COMPACT);
  assert_int_equal(fh_options_parse(&o, ""), 0);
}

static void expect_bad(const char *spec, const char *needle) {
  fh_options o, before;
  fh_options_init(&o);
  before = o;
  assert_int_equal(fh_options_parse(&o, spec), -1);
  if (!strstr(fh_last_error(), needle))
    fail_msg("spec '%s': error '%s' does not mention '%s'", spec, fh_last_error(), needle);
  assert_memory_equal(&o, &before, sizeof o); /* a failed parse changes nothing */
}

static void test_parse_errors(void **state) {
  (void)state;
  expect_bad("heap_size=1G", "heap_size");              /* unknown key, named */
  expect_bad("heap_max=12Q", "heap_max");               /* bad suffix */
  expect_bad("heap_max=", "heap_max");                  /* empty value */
  expect_bad("heap_max", "heap_max");                   /* no value */
  expect_bad("heap_max=-5", "heap_max");                /* negative */
  expect_bad("heap_max=16", "out of range");            /* too small */
  expect_bad("heap_max=99999999999G", "heap_max");      /* overflow */
  expect_bad("verify=2", "verify");                     /* boolean */
  expect_bad("gc_threads=0", "out of range");
  expect_bad("collector=copying", "unknown collector");
  expect_bad("collector=hspace_compact", "background");
  expect_bad("tlab_size=5000", "tlab_size");
  expect_bad("verify=1,bogus=3", "bogus");              /* atomic: verify not applied */
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(NULL, "verify=1"), -1);
  assert_int_equal(fh_options_parse(&o, NULL), -1);
}

static void test_env_options(void **state) {
  (void)state;
  setenv("FH_OPTIONS", "heap_max=32M,verify=1", 1);
  fh_heap *h = fh_heap_create(NULL);
  assert_non_null(h);
  fh_stats s;
  fh_get_stats(h, &s);
  int found = 0;
  for (unsigned i = 0; i < s.nspaces; i++)
    if (strstr(s.spaces[i].name, "bump")) found = 1, assert_int_equal(s.spaces[i].capacity, 32u << 20);
  assert_true(found);
  fh_heap_destroy(h);
  setenv("FH_OPTIONS", "heap_max=lots", 1);
  assert_null(fh_heap_create(NULL));
  assert_non_null(strstr(fh_last_error(), "FH_OPTIONS"));
  unsetenv("FH_OPTIONS");
}

static void test_unavailable_collector_is_an_error(void **state) {
  (void)state;
  /* Collectors this build lacks are refused by name, never substituted. */
  const char *all[] = {"mark_sweep", "mark_compact", "concurrent_compact"};
  for (size_t i = 0; i < 3; i++) {
    fh_options o;
    fh_options_init(&o);
    char spec[64];
    snprintf(spec, sizeof spec, "collector=%s,heap_max=16M", all[i]);
    assert_int_equal(fh_options_parse(&o, spec), 0);
    fh_heap *h = fh_heap_create(&o);
    if (h) { /* it exists in this build: it must really be that collector */
      fh_thread *t = fh_thread_attach(h);
      assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
      fh_thread_detach(t);
      fh_heap_destroy(h);
    } else {
      assert_non_null(strstr(fh_last_error(), all[i]));
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_default_heap_max_is_a_quarter_of_memory),
      cmocka_unit_test(test_default_heap_max_follows_cgroup_limit),
      cmocka_unit_test(test_default_heap_max_fits_address_space_limit),
      cmocka_unit_test(test_parse_all_kinds),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_env_options),
      cmocka_unit_test(test_unavailable_collector_is_an_error),
  };
  return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
