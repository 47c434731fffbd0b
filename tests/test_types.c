/* Type registration: ids, validation, duplicates, and how the layout
 * drives tracing. */
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "heap/heap.h"
#include "support_heap.h"

static fh_heap *h;

static int setup(void **state) { (void)state; h = test_heap("heap_max=16M"); return 0; }
static int teardown(void **state) { (void)state; fh_heap_destroy(h); return 0; }

static void expect_refused(const fh_type *t, const char *needle) {
  assert_int_equal(fh_register_type(h, t), 0);
  if (!strstr(fh_last_error(), needle))
    fail_msg("error '%s' does not mention '%s'", fh_last_error(), needle);
}

static void test_ids_are_dense_and_stable(void **state) {
  (void)state;
  uint32_t a = fh_register_type(h, &(fh_type){.name = "ta", .size = 16});
  uint32_t b = fh_register_type(h, &(fh_type){.name = "tb"});
  assert_true(a > 0);
  assert_int_equal(b, a + 1);
  /* same name, same layout: the same id */
  assert_int_equal(fh_register_type(h, &(fh_type){.name = "ta", .size = 16}), a);
}

static void test_invalid_types(void **state) {
  (void)state;
  static const uint32_t outside[] = {16};
  static const uint32_t misaligned[] = {4};
  static const uint32_t ok[] = {0};
  expect_refused(NULL, "NULL");
  expect_refused(&(fh_type){.name = NULL, .size = 8}, "no name");
  expect_refused(&(fh_type){.name = "", .size = 8}, "no name");
  expect_refused(&(fh_type){.name = "t1", .size = 16, .nrefs = 1, .ref_offsets = outside}, "outside");
  expect_refused(&(fh_type){.name = "t2", .size = 16, .nrefs = 1, .ref_offsets = misaligned}, "aligned");
  expect_refused(&(fh_type){.name = "t3", .size = 16, .nrefs = 1, .ref_offsets = NULL}, "NULL");
  expect_refused(&(fh_type){.name = "t4", .size = 16, .flags = 0x80}, "flags");
  expect_refused(&(fh_type){.name = "t5", .size = 16, .nrefs = 1, .ref_offsets = ok,
                            .flags = FH_TYPE_REF_ARRAY}, "only one");
  expect_refused(&(fh_type){.name = "t6", .size = (size_t)1 << 33}, "too large");
  /* a duplicate name with another layout */
  assert_true(fh_register_type(h, &(fh_type){.name = "dup", .size = 24}) > 0);
  expect_refused(&(fh_type){.name = "dup", .size = 32}, "another layout");
  assert_int_equal(fh_register_type(NULL, &(fh_type){.name = "x", .size = 8}), 0);
}

/* Atomic: with concurrent compaction, trace callbacks run on GC threads. */
static _Atomic size_t traced;
static void count_trace(void *obj, size_t size, fh_visit_fn visit, void *ctx) {
  atomic_fetch_add_explicit(&traced, 1, memory_order_relaxed);
  void **slots = obj;
  for (size_t i = 0; i < size / sizeof(void *); i += 2) visit(&slots[i], ctx);
}

static void test_trace_callback_and_variable_min(void **state) {
  (void)state;
  uint32_t tr = fh_register_type(h, &(fh_type){.name = "traced", .trace = count_trace});
  static const uint32_t refs[] = {8};
  uint32_t var = fh_register_type(h, &(fh_type){.name = "varref", .nrefs = 1, .ref_offsets = refs});
  assert_true(tr && var);
  fh_thread *t = fh_thread_attach(h);
  /* a variable type with a ref at offset 8 needs at least 16 bytes */
  assert_null(fh_alloc(t, var, 8));
  assert_non_null(strstr(fh_last_error(), "cannot hold"));
  void *root = fh_alloc(t, tr, 64);
  assert_non_null(root);
  fh_push_root(t, &root);
  void *child = fh_alloc(t, var, 32);
  assert_non_null(child);
  fh_write_ref(t, root, (void **)root, child); /* slot 0: traced */
  ((uint64_t *)child)[3] = 77;
  atomic_store(&traced, 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_true(atomic_load(&traced) >= 1);
  void *moved_child = *(void **)root;
  assert_int_equal(fh_object_type(moved_child), var);
  assert_int_equal(fh_object_size(moved_child), 32);
  assert_int_equal(((uint64_t *)moved_child)[3], 77);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
}

/* The type-size table (FH__TYPE_SIZE: entries inverted, so an unused id
 * reads 0) costs a heap only the pages of its registered ids, and the
 * table of detached threads none: both used to be filled with FH__NO_TYPE,
 * 512 KiB resident in every process.  Unused ids still refuse allocation. */
static size_t resident_pages(const void *p, size_t bytes) {
  unsigned char vec[64];
  assert_true(bytes / 4096 <= sizeof vec);
  assert_int_equal(mincore((void *)p, bytes, vec), 0);
  size_t n = 0;
  for (size_t i = 0; i < bytes / 4096; i++) n += vec[i] & 1;
  return n;
}
static void test_size_table_pages_stay_untouched(void **state) {
  (void)state;
  fh_heap *g = test_heap("heap_max=16M");
  uint32_t a = fh_register_type(g, &(fh_type){.name = "sa", .size = 24});
  uint32_t b = fh_register_type(g, &(fh_type){.name = "sb"});
  assert_true(a > 0 && b > 0);
  size_t bytes = FH__MAX_TYPES * sizeof(uint32_t);
  assert_true(resident_pages(g->types.sizes, bytes) <= 1);
  assert_int_equal(FH__TYPE_SIZE(g->types.sizes, a), 24);
  assert_int_equal(FH__TYPE_SIZE(g->types.sizes, b), FH__VAR_SIZE);
  assert_int_equal(FH__TYPE_SIZE(g->types.sizes, b + 1), FH__NO_TYPE);
  fh_thread *t = fh_thread_attach(g);
  assert_non_null(fh_alloc(t, a, 24));
  assert_non_null(fh_alloc(t, b, 40));
  assert_null(fh_alloc(t, b + 1, 24)); /* never registered */
  assert_null(fh_alloc(t, a, 16));     /* not its size */
  fh_thread_detach(t);
  /* A detached thread's table: every id unused, nothing resident. */
  const uint32_t *c = types_closed_sizes();
  assert_non_null(c);
  /* (before reading it: mincore counts the zero page a read maps) */
  assert_int_equal(resident_pages(c, bytes), 0);
  assert_int_equal(FH__TYPE_SIZE(c, a), FH__NO_TYPE);
  fh_heap_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ids_are_dense_and_stable),
      cmocka_unit_test(test_invalid_types),
      cmocka_unit_test(test_trace_callback_and_variable_min),
      cmocka_unit_test(test_size_table_pages_stay_untouched),
  };
  return cmocka_run_group_tests_name("types", tests, setup, teardown);
}
