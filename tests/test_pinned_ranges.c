/* Pinned ranges in sliding compaction (collectors/forwarding.c
 * fwd_pin_ranges): fixed points of the forwarding, on random layouts
 * (tests/support_layout.h) against brute-force references: the ranges'
 * bounds and fillers, the forwarding around them with growers and above a
 * young cycle's floor, and every destination page built from it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "collectors/mc.h"
#include "heap/object.h"
#include "support_layout.h"

/* Whether a is the end of one of the pinned objects pins[0 .. np). */
static int is_pin_end(const layout *L, const uintptr_t *pins, size_t np, uintptr_t a) {
  for (size_t k = 0, i = 0; k < np; k++) {
    while (L->start[i] != pins[k]) i++;
    if (L->start[i] + L->bytes[i] == a) return 1;
  }
  return 0;
}

/* After fwd_compute with pinned ranges, for the live objects from index
 * `first` on (a young cycle's, above its floor): every object inside a
 * range (pinned ones included) forwards to itself and does not grow;
 * every other one slides (down, without growers), clear of every range and below the gap of
 * the next (its hash word included, for a grower); destinations keep
 * address order without overlapping. */
static void check_pinned_forwarding(const layout *L, fwd_tables *t, size_t first, uintptr_t floor) {
  uintptr_t prev_end = floor;
  size_t r = 0;
  for (size_t k = 0; k < t->nranges; k++) assert_true(t->ranges[k].gap_lo <= t->ranges[k].lo);
  for (size_t i = first; i < L->n; i++) {
    if (!L->live[i]) continue;
    uintptr_t a = L->start[i], d = fwd_start(t, a);
    size_t nb = L->bytes[i] + (bitmap_test(&t->grows, a) ? FWD_WORD : 0);
    while (r < t->nranges && t->ranges[r].hi <= a) r++;
    int inside = r < t->nranges && t->ranges[r].lo <= a;
    if (inside) {
      assert_int_equal(d, a);
      assert_false(bitmap_test(&t->grows, a));
    } else {
      if (!t->ngrows) assert_true(d <= a); /* growers may run ahead of their sources */
      if (r < t->nranges) assert_true(d + nb <= t->ranges[r].gap_lo);
      if (r > 0) assert_true(d >= t->ranges[r - 1].hi);
    }
    assert_true(d >= prev_end);
    prev_end = d + nb;
  }
  assert_true(t->new_top >= prev_end);
}

/* Every destination page built alone (page_build, the from-space ledger
 * releasing pages as it goes) against a brute-force image: the ranges as
 * they lie (fillers included), every other live object at its destination
 * with its references forwarded, a filler over each gap and over the last
 * page's tail.  The from-space is the space after fwd_pin_ranges wrote
 * its fillers. */
static void check_pinned_pages(layout *L, fwd_tables *t) {
  uintptr_t B = L->base;
  memcpy(L->from, (void *)B, L->top - B);
  size_t len = t->npages * FWD_PAGE;
  uint8_t *want = calloc(1, len + FWD_PAGE);
  for (size_t r = 0; r < t->nranges; r++)
    memcpy(want + (t->ranges[r].lo - B), L->from + (t->ranges[r].lo - B),
           t->ranges[r].hi - t->ranges[r].lo);
  for (size_t i = 0; i < L->n; i++) {
    if (!L->live[i]) continue;
    uintptr_t d = fwd_start(t, L->start[i]);
    memcpy(want + (d - B), L->from + (L->start[i] - B), L->bytes[i]);
    uint32_t ty = hdr_type(*(uint64_t *)L->start[i]);
    if (ty == L->refs || ty == L->traced)
      for (size_t off = 8; off < L->bytes[i] - (ty == L->traced ? 8 : 0); off += 8) {
        void *v = *(void **)(L->from + (L->start[i] - B) + off);
        *(void **)(want + (d - B) + off) = fwd_ref(t, v);
      }
  }
  for (size_t r = 0; r < t->nranges; r++)
    for (uintptr_t a = t->ranges[r].gap_lo, lo = t->ranges[r].lo, e; a < lo; a = e) {
      e = fwd_gap_filler_end(t, a, lo);
      obj_write_filler((uintptr_t)want + (a - B), e - a);
    }
  if (t->new_top - B < len) obj_write_filler((uintptr_t)want + (t->new_top - B), len - (t->new_top - B));
  page_source ps = {t, (uintptr_t)L->from - B, &L->types};
  from_ledger led;
  assert_int_equal(ledger_init(&led, SPACE), 0);
  int deferred = ledger_plan(&led, t, &L->types, 1);
  uint8_t *out = aligned_alloc(FWD_PAGE, FWD_PAGE);
  for (size_t k = 0; k < t->npages; k++) {
    size_t p = (k * 7919) % t->npages; /* any order: pages are independent */
    memset(out, 0xAB, FWD_PAGE);
    page_build(&ps, p, out);
    assert_memory_equal(out, want + p * FWD_PAGE, FWD_PAGE);
    ledger_page_built(&led, t, p);
    if (!deferred || k >= t->npages / 2) ledger_release(&led, (uintptr_t)L->from, 1);
  }
  assert_false(traced_tag_bad);
  ledger_plan_deferred(&led, t);
  ledger_release(&led, (uintptr_t)L->from, 1);
  ledger_reset(&led);
  ledger_destroy(&led);
  free(out);
  free(want);
}

/* A layout's live objects marked, every `every`-th of them pinned (into
 * *pins, calloc'd) and growing (hashed since they last moved) with chance
 * grow_pct, from index `first` on (a young cycle's floor at first's start,
 * with one old object below it pinned too when there is one). */
static size_t mark_pins(layout *L, fwd_tables *t, size_t first, unsigned every, unsigned grow_pct,
                        uintptr_t **pins) {
  assert_int_equal(fwd_init(t, L->base, SPACE), 0);
  t->old_top = L->top;
  if (first) {
    t->young = 1;
    fwd_set_floor(t, L->start[first]);
  }
  *pins = calloc(L->n / every + 3, sizeof **pins);
  size_t np = 0;
  if (first) (*pins)[np++] = L->start[first - 1]; /* old: never moves anyway */
  for (size_t i = first, k = 0; i < L->n; i++) {
    if (!L->live[i]) continue;
    fwd_mark_object(t, L->start[i], L->bytes[i]);
    if (grow_pct && next_rand() % 100 < grow_pct) fwd_mark_grows(t, L->start[i]);
    if (k++ % every == 0) (*pins)[np++] = L->start[i];
  }
  return np;
}

/* Pinned ranges (fwd_pin_ranges): every pinned live object stays, and
 * inside each range the live objects are untouched and every stretch of
 * dead words between them is exactly one filler with its start bit set,
 * so a walk by headers from the range's start lands on its end; a range
 * starts at its first chunk's first live word and ends with a pinned
 * object; the list of fillers offered as holes holds those of
 * FWD_HOLE_MIN bytes or more, and only those.  Then the forwarding
 * around them and the pages built from it.  Checked against the layout's
 * own list of objects, on random layouts with dead runs, small objects
 * and page-spanning ones. */
static void check_pin_ranges(int style, unsigned live_pct) {
  layout L;
  make_layout(&L, style, live_pct);
  fwd_tables t;
  uintptr_t *pins;
  size_t np = mark_pins(&L, &t, 0, 37, 0, &pins); /* every 37th live object */
  assert_int_equal(fwd_pin_ranges(&t, pins, np), 0);
  assert_true(t.nranges > 0);
  size_t i = 0, fill = 0, nfills = 0;
  for (size_t r = 0; r < t.nranges; r++) {
    uintptr_t lo = t.ranges[r].lo, hi = t.ranges[r].hi;
    assert_true(lo < hi && bitmap_test(&t.live, lo) && is_pin_end(&L, pins, np, hi));
    /* no live word before lo in its chunk */
    for (uintptr_t a = L.base + ((lo - L.base) & ~(uintptr_t)(FWD_RANGE_ALIGN - 1)); a < lo; a += 8)
      assert_false(bitmap_test(&t.live, a));
    while (i < L.n && L.start[i] < lo) i++;
    /* no live object straddles either end */
    if (i > 0 && L.live[i - 1]) assert_true(L.start[i - 1] + L.bytes[i - 1] <= lo);
    for (uintptr_t a = lo; a < hi;) {
      assert_true(bitmap_test(&t.mark, a));
      uint64_t hd = *(uint64_t *)a;
      if (i < L.n && L.start[i] == a && L.live[i]) { /* a live object, as laid out */
        assert_int_equal(obj_bytes(hd), L.bytes[i]);
        a += L.bytes[i++];
        continue;
      }
      /* a filler over exactly the dead words up to the next live object */
      assert_int_equal(hdr_type(hd), FH_FILLER_TYPE);
      uintptr_t e = a + obj_bytes(hd);
      while (i < L.n && L.start[i] < e) {
        assert_false(L.live[i]);
        i++;
      }
      assert_true(e == hi || (i < L.n && L.start[i] == e && L.live[i]));
      /* remembered for the allocator only if it can take it as a hole */
      if (e - a >= FWD_HOLE_MIN) {
        assert_true(nfills < t.nfills);
        assert_true(t.fills[nfills].lo == a && t.fills[nfills].hi == e);
        nfills++;
      }
      fill += e - a;
      a = e;
    }
    for (uintptr_t a = lo; a < hi; a += 8) assert_true(bitmap_test(&t.live, a));
  }
  assert_int_equal(t.range_fill_bytes, fill);
  assert_int_equal(t.nfills, nfills);
  fwd_compute(&t);
  check_pinned_forwarding(&L, &t, 0, L.base);
  check_pinned_pages(&L, &t);
  free(pins);
  fwd_destroy(&t);
  free_layout(&L);
}

static void test_pin_ranges_fill_dead_words(void **s) {
  (void)s;
  check_pin_ranges(0, 50);
  check_pin_ranges(1, 30);
  check_pin_ranges(0, 90);
}


/* A random layout's pinned cycle: its ranges, then the forwarding around
 * them checked, and the pages built from it when `pages`. */
static void pinned_case(int style, unsigned live_pct, unsigned every, unsigned grow_pct,
                        int pages) {
  layout L;
  make_layout(&L, style, live_pct);
  fwd_tables t;
  uintptr_t *pins;
  size_t np = mark_pins(&L, &t, 0, every, grow_pct, &pins);
  assert_int_equal(fwd_pin_ranges(&t, pins, np), 0);
  fwd_compute(&t);
  check_pinned_forwarding(&L, &t, 0, L.base);
  if (pages) check_pinned_pages(&L, &t);
  free(pins);
  fwd_destroy(&t);
  free_layout(&L);
}

/* Pages and forwarding at pin densities from every 3rd live object (ranges
 * merging across chunks) to every 364th. */
static void test_pinned_pages_at_any_density(void **s) {
  (void)s;
  for (unsigned every = 3; every < 400; every = every * 3 + 1) {
    pinned_case(0, 50, every, 0, 1);
    pinned_case(1, 30, every, 0, 1);
  }
}

/* Hashed objects that grow when they move (fit_segment: a range takes in
 * chunks below it until what slides below fits): with growers after a
 * range's pin in its last chunk too, now that ranges end with their pin. */
static void test_growers_fit_below_ranges(void **s) {
  (void)s;
  /* Dense segments (95% live) are the ones whose growers do not fit and
   * make ranges take in chunks, many times over (every value of `every`
   * here is odd: the live share was 30% alone before). */
  for (unsigned every = 3; every < 400; every = every * 6 + 1)
    for (unsigned grow = 1; grow <= 50; grow *= 7)
      for (int style = 0; style < 2; style++) pinned_case(style, style ? 30 : 95, every, grow, 0);
}

/* A young cycle's floor (ylo rounded down to a chunk, the old words
 * between marked live): nothing below ylo is written, each range starts at
 * an object start or at the floor itself, and the forwarding above holds
 * as in a full cycle. */
static void test_ranges_above_a_young_floor(void **s) {
  (void)s;
  for (size_t cut = 3; cut < 200000; cut = cut * 9 + 5)
    for (unsigned every = 1; every < 400; every = every * 5 + 2) {
      layout L;
      make_layout(&L, (int)(cut % 2), 50);
      size_t first = cut % L.n ? cut % L.n : 1;
      uintptr_t ylo = L.start[first];
      fwd_tables t;
      uintptr_t *pins;
      size_t np = mark_pins(&L, &t, first, every, every % 3 ? 0 : 7, &pins);
      uint8_t *old = malloc(ylo - L.base + 8);
      memcpy(old, (void *)L.base, ylo - L.base);
      assert_int_equal(fwd_pin_ranges(&t, pins, np), 0);
      assert_memory_equal(old, (void *)L.base, ylo - L.base);
      fwd_compute(&t);
      for (size_t k = 0; k < t.nranges; k++) {
        uintptr_t lo = t.ranges[k].lo;
        assert_true(lo >= ylo ? bitmap_test(&t.mark, lo) : lo == t.lo);
      }
      check_pinned_forwarding(&L, &t, first, ylo);
      free(old);
      free(pins);
      fwd_destroy(&t);
      free_layout(&L);
    }
}

/* A cycle where nothing moves: a live run from the space's start, dead
 * words, then a pinned object in the middle of its chunk, the last live
 * one.  The range starts at the pin (the dead words before it are a gap),
 * and no byte counts as moved, so the slide skips its update pass
 * (mc_slide.c: identity); the range's chunk once counted as moved for not
 * forwarding to its own start. */
static void test_nothing_moves_with_a_pin_mid_chunk(void **s) {
  (void)s;
  layout L;
  make_layout(&L, 0, 0); /* for the mappings and types; overwrite the objects */
  size_t sizes[] = {256, 320, 64};
  int live[] = {1, 0, 1};
  uintptr_t p = L.base;
  L.n = 0;
  for (size_t i = 0; i < 3; i++) {
    L.start[L.n] = p, L.bytes[L.n] = sizes[i], L.live[L.n] = live[i];
    *(uint64_t *)p = fh__make_header(L.raw, sizes[i] - 8);
    p += sizes[i];
    L.n++;
  }
  L.top = p;
  fwd_tables t;
  uintptr_t *pins;
  size_t np = mark_pins(&L, &t, 0, 1000, 0, &pins); /* both marked, the first pinned */
  assert_int_equal(np, 1);
  pins[0] = L.start[2]; /* the one at 576 instead */
  assert_int_equal(fwd_pin_ranges(&t, pins, np), 0);
  fwd_compute(&t);
  assert_int_equal(t.nranges, 1);
  assert_int_equal(t.ranges[0].lo, L.start[2]);
  assert_int_equal(t.ranges[0].gap_lo, L.base + 256);
  assert_int_equal(fwd_start(&t, L.start[0]), L.start[0]);
  assert_int_equal(t.move_bytes, 0);
  free(pins);
  fwd_destroy(&t);
  free_layout(&L);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pin_ranges_fill_dead_words),
      cmocka_unit_test(test_pinned_pages_at_any_density),
      cmocka_unit_test(test_growers_fit_below_ranges),
      cmocka_unit_test(test_ranges_above_a_young_floor),
      cmocka_unit_test(test_nothing_moves_with_a_pin_mid_chunk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
