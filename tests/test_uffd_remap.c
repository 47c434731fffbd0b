/* uffd/ address-space helpers: aligned reservations and the flip's page
 * table move, mremap(MREMAP_DONTUNMAP), alone and with a uffd-registered
 * source as the compactor uses it. */
#include <errno.h>
#include <stdatomic.h>

#include "test_uffd.h"

static void test_reserve_alignment(void **st) {
  (void)st;
  assert_int_equal(fh_uffd_best_align(64u << 20), FH_UFFD_PMD_SIZE);
  assert_int_equal(fh_uffd_best_align((size_t)1 << 30), FH_UFFD_PUD_SIZE);
  size_t sizes[] = {PG, 3 * PG, 4u << 20, (size_t)1 << 30, (size_t)5 << 30};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = fh_uffd_reserve(sizes[i], 0, PROT_NONE);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % fh_uffd_best_align(sizes[i]), 0);
    assert_int_equal(fh_uffd_count_vmas(p, sizes[i]), 1);
    assert_int_equal(fh_uffd_unreserve(p, sizes[i]), 0);
  }
  char *q = fh_uffd_reserve(8 * PG, 64 * PG, PROT_READ | PROT_WRITE);
  assert_non_null(q);
  assert_int_equal((uintptr_t)q % (64 * PG), 0);
  q[8 * PG - 1] = 1;
  fh_uffd_unreserve(q, 8 * PG);
  errno = 0;
  assert_null(fh_uffd_reserve(0, 0, PROT_NONE));
  assert_int_equal(errno, EINVAL);
  assert_null(fh_uffd_reserve(PG, 3 * PG, PROT_NONE)); /* not a power of 2 */
  assert_null(fh_uffd_reserve(PG + 1, 0, PROT_NONE));
}

/* Contents move to the shadow; the source stays mapped, empty, and one
 * VMA, so the next cycle can do it again. */
static void test_dontunmap_moves_contents(void **st) {
  (void)st;
  if (!(fh_capabilities() & FH_CAP_DONTUNMAP))
    skip();
  enum { N = 1024 }; /* 4 MiB: two PMDs */
  size_t len = (size_t)N * PG;
  char *src = fh_uffd_reserve(len, 0, PROT_READ | PROT_WRITE);
  char *shadow = fh_uffd_reserve(len, 0, PROT_NONE);
  assert_non_null(src);
  assert_non_null(shadow);
  for (int cycle = 0; cycle < 3; cycle++) {
    fill_pattern(src, N);
    assert_int_equal(fh_uffd_mremap_dontunmap(src, len, shadow), 0);
    for (size_t i = 0; i < N; i++) {
      assert_true(page_has_pattern(shadow + i * PG, i));
      assert_true(page_is_zero(src + i * PG));
    }
    assert_int_equal(fh_uffd_count_vmas(src, len), 1);
    assert_int_equal(fh_uffd_count_vmas(shadow, len), 1);
    madvise(shadow, len, MADV_DONTNEED);
  }
  /* errors, not crashes */
  assert_int_equal(fh_uffd_mremap_dontunmap(src + 1, PG, shadow), -1);
  assert_int_equal(errno, EINVAL);
  /* A source split into two VMAs.  Kernels before 6.17 refuse with EFAULT
   * (art-cmc.md 4.2, probe D1); 6.17 learned to move several VMAs in one
   * MREMAP_FIXED call.  Either way: a clean error or a complete move. */
  fill_pattern(src, N);
  assert_int_equal(mprotect(src, PG, PROT_READ), 0);
  assert_int_equal(fh_uffd_count_vmas(src, len), 2);
  int rc = fh_uffd_mremap_dontunmap(src, len, shadow);
  if (rc == -1) {
    assert_int_equal(errno, EFAULT);
    assert_true(page_has_pattern(src + PG, 1));
  } else {
    print_message("  note: this kernel moves a multi-VMA source\n");
    for (size_t i = 0; i < N; i++)
      assert_true(page_has_pattern(shadow + i * PG, i));
    assert_true(page_is_zero(src + PG));
  }
  fh_uffd_unreserve(src, len);
  fh_uffd_unreserve(shadow, len);
}

typedef struct shadow_ctx {
  char *shadow;
  _Atomic int calls;
} shadow_ctx;

static int from_shadow(void *arg, const fh_uffd_fault *f) {
  shadow_ctx *c = arg;
  atomic_fetch_add(&c->calls, 1);
  size_t off = f->page - f->range_lo;
  fh_uffd_status s = fh_uffd_copy(f->fd, (void *)f->page, c->shadow + off, PG, 0, NULL);
  return s == FH_UFFD_OK ? FH_UFFD_RESOLVED
         : s >= 0        ? FH_UFFD_RESOLVED_EXISTED
                         : FH_UFFD_RESOLVE_FAILED;
}

/* The compactor's flip in miniature: register the space, move its pages
 * to the shadow, and let faults pull them back page by page. */
static void test_flip_cycle_with_uffd(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS | FH_CAP_DONTUNMAP);
  enum { N = 512 };
  size_t len = (size_t)N * PG;
  char *space = fh_uffd_reserve(len, 0, PROT_READ | PROT_WRITE);
  char *shadow = fh_uffd_reserve(len, 0, PROT_NONE);
  fh_uffd *u = fh_uffd_create(FH_UFFD_SIGBUS, 0);
  assert_non_null(u);
  shadow_ctx c = {.shadow = shadow};
  for (int cycle = 0; cycle < 3; cycle++) {
    fill_pattern(space, N);
    int id = fh_uffd_range_add(u, space, len, FH_UFFD_REG_MISSING, from_shadow, &c, NULL);
    assert_true(id >= 0);
    assert_int_equal(fh_uffd_mremap_dontunmap(space, len, shadow), 0);
    for (size_t i = 0; i < N; i += 2) /* mutator faults half */
      assert_true(page_has_pattern(space + i * PG, i));
    /* the "GC thread" installs the rest in one call; EEXIST is skipped */
    fh_uffd_res r;
    assert_int_equal(fh_uffd_copy(fh_uffd_fd(u), space, shadow, len, 0, &r), FH_UFFD_EXISTED);
    assert_int_equal(r.existed, N / 2);
    assert_int_equal(fh_uffd_range_retire(u, id), 0);
    for (size_t i = 0; i < N; i++)
      assert_true(page_has_pattern(space + i * PG, i));
    assert_int_equal(fh_uffd_count_vmas(space, len), 1);
    madvise(shadow, len, MADV_DONTNEED);
  }
  assert_int_equal(atomic_load(&c.calls), 3 * N / 2);
  fh_uffd_destroy(u);
  fh_uffd_unreserve(space, len);
  fh_uffd_unreserve(shadow, len);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reserve_alignment),
      cmocka_unit_test(test_dontunmap_moves_contents),
      cmocka_unit_test(test_flip_cycle_with_uffd),
  };
  return cmocka_run_group_tests_name("uffd_remap", tests, NULL, NULL);
}
