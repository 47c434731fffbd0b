/* Forwarding for sliding compaction (collectors/forwarding.c) and the page
 * builder (collectors/page_compact.c), against a brute-force reference on
 * random layouts: small and page-spanning objects, long dead gaps (empty
 * chunks and pages), dense runs.  No heap: a fake moving space in an
 * mmap'd range, a "from-space" copy of it, and a type registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "collectors/mc.h"
#include "heap/object.h"
#include "heap/types.h"
#include "support_layout.h"

static void mark_all(layout *L, fwd_tables *t) {
  assert_int_equal(fwd_init(t, L->base, SPACE), 0);
  t->old_top = L->top;
  for (size_t i = 0; i < L->n; i++)
    if (L->live[i]) fwd_mark_object(t, L->start[i], L->bytes[i]);
  fwd_compute(t);
}

/* Brute force: new address = base + bytes of live objects before it. */
static void check_forwarding(layout *L, fwd_tables *t) {
  uintptr_t acc = L->base;
  size_t page = 0;
  for (size_t i = 0; i < L->n; i++) {
    if (!L->live[i]) continue;
    assert_int_equal(fwd_start(t, L->start[i]), acc);
    assert_ptr_equal(fwd_ref(t, (void *)(L->start[i] + 8)), (void *)(acc + 8));
    /* every destination page starting inside [acc, acc + bytes) */
    for (; L->base + page * FWD_PAGE < acc + L->bytes[i]; page++) {
      assert_true(L->base + page * FWD_PAGE >= acc);
      assert_int_equal(t->page_first[page], L->start[i]);
    }
    acc += L->bytes[i];
  }
  assert_int_equal(t->live_bytes, acc - L->base);
  assert_int_equal(t->new_top, acc);
  assert_int_equal(t->npages, page);
  /* references outside the old range are left alone */
  assert_null(fwd_ref(t, NULL));
  assert_ptr_equal(fwd_ref(t, (void *)0x1008), (void *)0x1008);
  assert_ptr_equal(fwd_ref(t, (void *)(L->top + 8)), (void *)(L->top + 8));
}

/* Brute-force compacted image, then every page built alone must match.
 * The from-space ledger gives back every from-space page it finds ready
 * after each build (L->from then reads as zero there): a page released
 * while a later-built page still reads it would make that page differ. */
static void check_pages(layout *L, fwd_tables *t) {
  size_t len = t->npages * FWD_PAGE;
  uint8_t *want = calloc(1, len + FWD_PAGE);
  uintptr_t acc = 0;
  for (size_t i = 0; i < L->n; i++) {
    if (!L->live[i]) continue;
    memcpy(want + acc, (void *)L->start[i], L->bytes[i]);
    uint32_t ty = hdr_type(*(uint64_t *)L->start[i]);
    if (ty == L->refs || ty == L->traced)
      for (size_t off = 8; off < L->bytes[i] - (ty == L->traced ? 8 : 0); off += 8) {
        void *v = *(void **)(L->start[i] + off);
        *(void **)(want + acc + off) = fwd_ref(t, v);
      }
    acc += L->bytes[i];
  }
  if (acc < len) obj_write_filler((uintptr_t)want + acc, len - acc);
  page_source ps = {t, (uintptr_t)L->from - L->base, &L->types};
  from_ledger led;
  assert_int_equal(ledger_init(&led, SPACE), 0);
  /* Without traced types the plan is left for after the pause: the first
   * half of the pages is built before it (from_ledger.h: the planner drops
   * their readers), the first release makes it. */
  int deferred = ledger_plan(&led, t, &L->types, 1);
  uint8_t *out = aligned_alloc(FWD_PAGE, FWD_PAGE);
  /* Pages in a shuffled order: each is independent of the others. */
  for (size_t k = 0; k < t->npages; k++) {
    size_t p = (k * 7919) % t->npages;
    memset(out, 0xAB, FWD_PAGE);
    size_t got = page_build(&ps, p, out);
    size_t expect = acc - p * FWD_PAGE < FWD_PAGE ? acc - p * FWD_PAGE : FWD_PAGE;
    assert_int_equal(got, expect);
    assert_memory_equal(out, want + p * FWD_PAGE, FWD_PAGE);
    ledger_page_built(&led, t, p);
    if (!deferred || k >= t->npages / 2) ledger_release(&led, (uintptr_t)L->from, 1);
  }
  assert_false(traced_tag_bad);
  ledger_plan_deferred(&led, t); /* nothing built, or every page before it */
  ledger_release(&led, (uintptr_t)L->from, 1);
  /* Every from-space page went back but the pinned ones (page-spanning
   * traced objects: the cycle's end drops those), and no count went below
   * zero. */
  size_t pinned = 0;
  for (size_t i = 0; i < led.npages; i++) {
    uint32_t r = atomic_load(&led.readers[i]);
    assert_true(r == 0 || r == LEDGER_PINNED);
    pinned += r == LEDGER_PINNED;
    if (r == 0)
      for (size_t off = 0; off < FWD_PAGE; off += sizeof(uint64_t))
        assert_int_equal(*(uint64_t *)(L->from + i * FWD_PAGE + off), 0);
  }
  assert_int_equal(led.released_pages + pinned, led.npages);
  ledger_reset(&led);
  ledger_destroy(&led);
  /* A page past the end comes back empty. */
  assert_int_equal(page_build(&ps, t->npages, out), 0);
  free(out);
  free(want);
}

static void run_case(int style, unsigned live_pct) {
  layout L;
  make_layout(&L, style, live_pct);
  fwd_tables t;
  mark_all(&L, &t);
  check_forwarding(&L, &t);
  check_pages(&L, &t);
  /* reset leaves clean tables for the next cycle */
  fwd_reset(&t);
  assert_int_equal(bitmap_next_set(&t.mark, L.base, L.base + SPACE), 0);
  assert_int_equal(bitmap_next_set(&t.live, L.base, L.base + SPACE), 0);
  assert_int_equal(t.npages, 0);
  fwd_destroy(&t);
  free_layout(&L);
}

static void test_small_objects_half_live(void **s) { (void)s; run_case(0, 50); }
static void test_sparse_with_large_and_gaps(void **s) { (void)s; run_case(1, 30); }
static void test_dense_all_live(void **s) { (void)s; run_case(1, 100); }
static void test_nearly_all_dead(void **s) { (void)s; run_case(0, 1); }
static void test_many_seeds(void **s) {
  (void)s;
  for (int i = 0; i < 6; i++) run_case(i & 1, 10 + 15 * (unsigned)i);
}

static void test_nothing_live(void **s) {
  (void)s;
  layout L;
  make_layout(&L, 0, 0);
  fwd_tables t;
  mark_all(&L, &t);
  assert_int_equal(t.live_bytes, 0);
  assert_int_equal(t.npages, 0);
  assert_int_equal(t.new_top, L.base);
  fwd_destroy(&t);
  free_layout(&L);
}

/* One object exactly filling pages, one spanning a page boundary at an
 * odd offset, and a chunk-aligned gap. */
static void test_hand_made(void **s) {
  (void)s;
  layout L;
  memset(&L, 0, sizeof L);
  make_layout(&L, 0, 0); /* for the mappings and types; overwrite the objects */
  size_t sizes[] = {4096, 24, 8192 + 40, 512, 512 * 3, 16, 4096 - 16};
  int live[] = {1, 1, 1, 0, 0, 1, 1};
  uintptr_t p = L.base;
  L.n = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    L.start[L.n] = p, L.bytes[L.n] = sizes[i], L.live[L.n] = live[i];
    *(uint64_t *)p = fh__make_header(L.raw, sizes[i] - 8);
    memset((void *)(p + 8), (int)i + 1, sizes[i] - 8);
    p += sizes[i];
    L.n++;
  }
  L.top = p;
  memcpy(L.from, (void *)L.base, L.top - L.base);
  fwd_tables t;
  mark_all(&L, &t);
  check_forwarding(&L, &t);
  check_pages(&L, &t);
  fwd_destroy(&t);
  free_layout(&L);
}

/* mc_mark_black (the objects allocated while a concurrent marking ran)
 * gathers a bitmap word's bits in registers: its marks, live words and
 * growers must be exactly those of marking each non-filler object alone
 * (fwd_mark_object, fwd_mark_grows), from any object start, keeping the
 * bits already set below it; objects from 16 bytes to several pages,
 * dead ones as fillers (TLAB tails), some hashed. */
static void test_black_marking_matches_per_object(void **s) {
  (void)s;
  for (int round = 0; round < 8; round++) {
    layout L;
    make_layout(&L, round & 1, 50);
    for (size_t i = 0; i < L.n; i++)
      if (!L.live[i])
        obj_write_filler(L.start[i], L.bytes[i]);
      else if (next_rand() % 16 == 0) /* hashed, not moved yet: it grows */
        *(uint64_t *)L.start[i] |= FH_HDR_HASHED;
    /* A sliver below the range already marked (the cycle's own marking). */
    size_t first = L.n / (size_t)(2 + round);
    fwd_tables want, got;
    assert_int_equal(fwd_init(&want, L.base, SPACE), 0);
    assert_int_equal(fwd_init(&got, L.base, SPACE), 0);
    want.old_top = got.old_top = L.top;
    for (size_t i = 0; i < first; i++)
      if (L.live[i] && i % 3 == 0) {
        fwd_mark_object(&want, L.start[i], L.bytes[i]);
        fwd_mark_object(&got, L.start[i], L.bytes[i]);
      }
    size_t bytes = 0;
    for (size_t i = first; i < L.n; i++) {
      if (!L.live[i]) continue;
      uint64_t hd = *(uint64_t *)L.start[i];
      fwd_mark_object(&want, L.start[i], obj_bytes(hd));
      if (hdr_hash_grows(hd)) fwd_mark_grows(&want, L.start[i]);
      bytes += obj_bytes(hd);
    }
    uintptr_t from = first < L.n ? L.start[first] : L.top;
    assert_int_equal(mc_mark_black(&got, from, L.top), bytes);
    size_t words = (SPACE >> 3) / 64;
    for (size_t w = 0; w < words; w++) {
      assert_int_equal(got.mark.words[w], want.mark.words[w]);
      assert_int_equal(got.live.words[w], want.live.words[w]);
      assert_int_equal(got.grows.words[w], want.grows.words[w]);
    }
    assert_int_equal(got.grows_marked, want.grows_marked);
    fwd_destroy(&want);
    fwd_destroy(&got);
    free_layout(&L);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_objects_half_live),
      cmocka_unit_test(test_sparse_with_large_and_gaps),
      cmocka_unit_test(test_dense_all_live),
      cmocka_unit_test(test_nearly_all_dead),
      cmocka_unit_test(test_many_seeds),
      cmocka_unit_test(test_nothing_live),
      cmocka_unit_test(test_hand_made),
      cmocka_unit_test(test_black_marking_matches_per_object),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
