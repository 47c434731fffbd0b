/* Every entry point given bad input returns an error with a message, never
 * crashes, and leaves the heap usable. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heap/heap.h"
#include "support_heap.h"

static void expect_error(const char *needle) {
  if (!strstr(fh_last_error(), needle))
    fail_msg("error '%s' does not mention '%s'", fh_last_error(), needle);
}

static void test_null_arguments(void **state) {
  (void)state;
  fh_options_init(NULL);
  assert_int_equal(fh_options_parse(NULL, "x=1"), -1);
  fh_heap_destroy(NULL);
  assert_null(fh_thread_attach(NULL)), expect_error("NULL");
  fh_thread_detach(NULL), expect_error("NULL");
  fh_safepoint(NULL);
  fh_enter_blocking(NULL), expect_error("NULL");
  fh_leave_blocking(NULL), expect_error("NULL");
  assert_null(fh_alloc(NULL, 1, 8)), expect_error("NULL");
  assert_null(fh_alloc_nonmoving(NULL, 1, 8)), expect_error("NULL");
  assert_int_equal(fh_object_size(NULL), 0), expect_error("NULL");
  assert_int_equal(fh_object_type(NULL), 0), expect_error("NULL");
  fh_write_ref(NULL, NULL, NULL, NULL), expect_error("NULL");
  assert_null(fh_critical_begin(NULL, NULL)), expect_error("NULL");
  fh_critical_end(NULL, NULL), expect_error("NULL");
  fh_root_add(NULL, NULL), expect_error("NULL");
  fh_root_remove(NULL, NULL), expect_error("NULL");
  fh_push_root(NULL, NULL), expect_error("NULL");
  fh_pop_roots(NULL, 1), expect_error("NULL");
  fh_set_root_scanner(NULL, NULL, NULL), expect_error("NULL");
  assert_int_equal(fh_collect(NULL, FH_COLLECT_DEFAULT), -1), expect_error("NULL");
  fh_gc_wait(NULL);
  fh_set_background(NULL, 1), expect_error("NULL");
  fh_get_stats(NULL, NULL), expect_error("NULL");
  fh_dump(NULL, stderr), expect_error("NULL");
  assert_int_equal(fh_register_type(NULL, NULL), 0), expect_error("NULL");
}

static void test_bad_allocations_leave_heap_usable(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=16M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *keep = test_node(t, &ty, 123);
  fh_push_root(t, (void **)&keep);
  assert_null(fh_alloc(t, 9999, 8)), expect_error("not registered");
  assert_null(fh_alloc(t, 0, 8)), expect_error("not registered"); /* the filler type */
  assert_null(fh_alloc(t, FH__MAX_TYPES + 5, 8)), expect_error("not registered");
  assert_null(fh_alloc(t, ty.node, sizeof(tnode) + 8)), expect_error("fixed size");
  assert_null(fh_alloc(t, ty.bytes, SIZE_MAX)), expect_error("larger than the heap");
  assert_null(fh_alloc(t, ty.bytes, 17u << 20)), expect_error("larger than the heap");
  assert_null(fh_alloc_nonmoving(t, 424242, 8)), expect_error("not registered");
  assert_null(fh_alloc_nonmoving(t, ty.bytes, SIZE_MAX)), expect_error("larger");
  int not_heap = 0;
  void *slot = NULL;
  fh_write_ref(t, &not_heap, &slot, keep), expect_error("not an object of this heap");
  assert_null(slot); /* nothing stored */
  assert_int_equal(fh_collect(t, (fh_collect_kind)77), -1), expect_error("unknown");
  /* everything still works */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(keep->value, 123);
  assert_non_null(test_node(t, &ty, 1));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_destroy_with_attached_thread_is_refused(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=16M");
  fh_thread *t = fh_thread_attach(h);
  fh_heap_destroy(h);
  expect_error("still attached");
  fh_thread_detach(t); /* the heap is intact and usable */
  fh_heap_destroy(h);
}

static void test_bad_heap_options(void **state) {
  (void)state;
  fh_options o;
  fh_options_init(&o);
  o.heap_max = 0;
  assert_null(fh_heap_create(&o)), expect_error("heap_max");
  fh_options_init(&o);
  o.gc_threads = 0;
  assert_null(fh_heap_create(&o)), expect_error("gc_threads");
  fh_options_init(&o);
  o.collector = (fh_collector)99;
  assert_null(fh_heap_create(&o)), expect_error("collector");
}

/* ---- scenarios that crashed or hung: each in a child bounded by alarm() ----
 * (test_run_isolated: under TSan, with no new threads in the child of a
 * multi-threaded fork, in the test process itself). */

#define CHILD_ERROR(call, needle)                                                        \
  do {                                                                                   \
    call;                                                                                \
    SCENARIO_CHECK(strstr(fh_last_error(), needle) != NULL);                             \
  } while (0)

static uint64_t static_words[8];

/* Defect 12: pointers that are not objects of the heap, given to every call
 * that takes an object. */
static int bad_object_pointers(void *arg) {
  const char *collector = arg;
  char spec[128];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=16M,verify=1", collector);
  fh_options o;
  fh_options_init(&o);
  SCENARIO_CHECK(fh_options_parse(&o, spec) == 0);
  fh_heap *h = fh_heap_create(&o);
  SCENARIO_CHECK(h);
  test_types ty;
  static const uint32_t node_refs[] = {0, 8};
  ty.node = fh_register_type(
      h, &(fh_type){.name = "tnode", .size = sizeof(tnode), .nrefs = 2, .ref_offsets = node_refs});
  ty.bytes = fh_register_type(h, &(fh_type){.name = "bytes"});
  fh_thread *t = fh_thread_attach(h);
  SCENARIO_CHECK(t);
  tnode *keep = fh_alloc(t, ty.node, sizeof(tnode));
  SCENARIO_CHECK(keep);
  keep->value = 123;
  fh_push_root(t, (void **)&keep);
  /* A second heap: its objects are not this heap's. */
  fh_heap *h2 = fh_heap_create(&o);
  SCENARIO_CHECK(h2);
  uint32_t node2 = fh_register_type(
      h2, &(fh_type){.name = "tnode", .size = sizeof(tnode), .nrefs = 2, .ref_offsets = node_refs});
  fh_thread *t2 = fh_thread_attach(h2);
  tnode *foreign = fh_alloc(t2, node2, sizeof(tnode));
  SCENARIO_CHECK(foreign);

  uint64_t stack_words[8] = {0, 0xFFFFFFFFFFFFFFFFull, 0, 0, 0, 0, 0, 0};
  uint64_t *heap_words = malloc(64);
  SCENARIO_CHECK(heap_words);
  memset(heap_words, 0xFF, 64);
  static_words[0] = 0xFFFFFFFFFFFFFF00ull; /* a huge "payload" in a fake header */
  void *native = fh_malloc(h, 64);
  SCENARIO_CHECK(native);
  uintptr_t resv_end = h->resv_begin + h->resv_size;
  void *bad[] = {
      &stack_words[1],
      &heap_words[1],
      &static_words[1],
      (void *)(uintptr_t)0x1008,                      /* unmapped low memory */
      (void *)(uintptr_t)0x7ff0000000000008ull,       /* the middle of nowhere */
      (char *)keep + 8,                               /* interior pointer */
      (char *)keep + 3,                               /* misaligned */
      (void *)(h->bump[h->active].space.end - 4096),  /* reserved, never used */
      (void *)(h->non_moving.space.end - 4096),
      (void *)(resv_end - 8),                         /* the reservation's last word */
      native,                                         /* fh_malloc memory */
      foreign,                                        /* another heap's object */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *p = bad[i];
    CHILD_ERROR(SCENARIO_CHECK(fh_critical_begin(t, p) == NULL), "not an object");
    CHILD_ERROR(fh_critical_end(t, p), "critical");
    if (p == foreign) { /* these two take no heap: any heap's object is fine */
      SCENARIO_CHECK(fh_object_size(p) == sizeof(tnode) && fh_object_type(p) == node2);
    } else {
      CHILD_ERROR(SCENARIO_CHECK(fh_object_size(p) == 0), "not an object");
      CHILD_ERROR(SCENARIO_CHECK(fh_object_type(p) == 0), "not an object");
    }
    void *slot = NULL;
    CHILD_ERROR(fh_write_ref(t, p, &slot, keep), "not an object");
    SCENARIO_CHECK(slot == NULL);
    void *roots[] = {keep, p};
    char path[256];
    snprintf(path, sizeof path, "%s/fh_test_bad_%d.img",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    CHILD_ERROR(SCENARIO_CHECK(fh_image_save(t, path, roots, 2) == -1), "not an object");
    SCENARIO_CHECK(access(path, F_OK) < 0);
    if (p != native) CHILD_ERROR(fh_free(h, p), "fh_free");
  }
  /* The section count is per thread: end with a bad pointer closes the
   * innermost section, and says so. */
  void *q = fh_critical_begin(t, keep);
  SCENARIO_CHECK(q == keep);
  CHILD_ERROR(fh_critical_end(t, stack_words), "closed anyway");
  CHILD_ERROR(fh_critical_end(t, keep), "no critical section is open");
  /* verify=1 checks the slot and the value of every store. */
  CHILD_ERROR(fh_write_ref(t, keep, (void **)stack_words, NULL), "not inside object");
  CHILD_ERROR(fh_write_ref(t, keep, (void **)&keep->other, foreign), "another heap");
  CHILD_ERROR(fh_write_ref(t, keep, (void **)&keep->other, (char *)keep + 8), "not an object");
  SCENARIO_CHECK(keep->other == NULL);
  /* Slots are not objects: only NULL is refused. */
  CHILD_ERROR(fh_root_add(h, NULL), "NULL");
  CHILD_ERROR(fh_push_root(t, NULL), "NULL");
  /* Everything still works. */
  tnode *n = fh_alloc(t, ty.node, sizeof(tnode));
  SCENARIO_CHECK(n);
  fh_write_ref(t, keep, (void **)&keep->other, n);
  SCENARIO_CHECK(keep->other == n);
  SCENARIO_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == 0);
  SCENARIO_CHECK(keep->value == 123 && keep->other);
  SCENARIO_CHECK(fh_object_size(keep) == sizeof(tnode) && fh_object_type(keep) == ty.node);
  SCENARIO_CHECK(fh_critical_begin(t, keep) == keep);
  fh_critical_end(t, keep);
  fh_free(h, native);
  free(heap_words);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_thread_detach(t2);
  fh_heap_destroy(h2);
  fh_heap_destroy(h);
  return 0;
}

static void test_bad_object_pointers(void **state) {
  (void)state;
  static const char *const collectors[] = {"semispace", "gen_semispace", "mark_sweep", "mark_compact",
                                           "concurrent_compact"};
  for (size_t i = 0; i < sizeof collectors / sizeof collectors[0]; i++)
    test_assert_child_ok(test_run_isolated(bad_object_pointers, (void *)collectors[i], 20),
                         collectors[i]);
}

static void tmp_name(char *buf, size_t n, const char *what) {
  snprintf(buf, n, "%s/fh_test_bad_%d_%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
           (int)getpid(), what);
}

/* Defect 11: image_path naming something that is not a regular file. */
static int bad_image_paths(void *arg) {
  (void)arg;
  char fifo[256], dir[256], spec[600];
  tmp_name(fifo, sizeof fifo, "fifo");
  tmp_name(dir, sizeof dir, "dir");
  unlink(fifo);
  rmdir(dir);
  SCENARIO_CHECK(mkfifo(fifo, 0600) == 0);
  SCENARIO_CHECK(mkdir(dir, 0700) == 0);
  const char *paths[] = {fifo, dir, "/dev/zero", "/dev/null"};
  int rc = 0;
  for (size_t i = 0; i < sizeof paths / sizeof paths[0] && !rc; i++) {
    fh_options o;
    fh_options_init(&o);
    snprintf(spec, sizeof spec, "heap_max=16M,image_path=%s", paths[i]);
    if (fh_options_parse(&o, spec) < 0 || fh_heap_create(&o) != NULL ||
        !strstr(fh_last_error(), "not a regular file")) {
      fprintf(stderr, "image_path=%s: %s\n", paths[i], fh_last_error());
      rc = 1;
    }
  }
  /* fh_image_save: a directory, a FIFO, a missing directory, "". */
  fh_heap *h = fh_heap_create(NULL);
  test_types ty;
  static const uint32_t node_refs[] = {0, 8};
  ty.node = fh_register_type(
      h, &(fh_type){.name = "tnode", .size = sizeof(tnode), .nrefs = 2, .ref_offsets = node_refs});
  fh_thread *t = fh_thread_attach(h);
  void *root = fh_alloc(t, ty.node, sizeof(tnode));
  fh_push_root(t, &root);
  char missing[300];
  snprintf(missing, sizeof missing, "%s/no/such/dir/x.img", dir);
  const char *save_paths[] = {dir, fifo, missing, ""};
  for (size_t i = 0; i < sizeof save_paths / sizeof save_paths[0] && !rc; i++)
    if (fh_image_save(t, save_paths[i], &root, 1) != -1 || !*fh_last_error()) {
      fprintf(stderr, "fh_image_save(%s): %s\n", save_paths[i], fh_last_error());
      rc = 1;
    }
  struct stat st;
  if (!rc && (stat(fifo, &st) < 0 || !S_ISFIFO(st.st_mode))) {
    fprintf(stderr, "fh_image_save replaced the FIFO\n");
    rc = 1;
  }
  /* The heap is still usable, and a good path still saves. */
  char good[256];
  tmp_name(good, sizeof good, "good.img");
  if (!rc && fh_image_save(t, good, &root, 1) != 0) {
    fprintf(stderr, "fh_image_save(%s): %s\n", good, fh_last_error());
    rc = 1;
  }
  unlink(good);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  unlink(fifo);
  rmdir(dir);
  return rc;
}

static void test_bad_image_paths(void **state) {
  (void)state;
  test_assert_child_ok(test_run_isolated(bad_image_paths, NULL, 10), "bad image paths");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_null_arguments),
      cmocka_unit_test(test_bad_allocations_leave_heap_usable),
      cmocka_unit_test(test_destroy_with_attached_thread_is_refused),
      cmocka_unit_test(test_bad_heap_options),
      cmocka_unit_test(test_bad_object_pointers),
      cmocka_unit_test(test_bad_image_paths),
  };
  return cmocka_run_group_tests_name("bad input", tests, NULL, NULL);
}
