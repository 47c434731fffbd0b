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

#define SPACE ((size_t)8 << 20)

typedef struct layout {
  uintptr_t base;        /* the fake space */
  uint8_t *from;         /* its from-space copy */
  size_t n;              /* objects */
  uintptr_t *start;      /* object starts */
  size_t *bytes;         /* total bytes */
  int *live;
  uintptr_t top;
  fh_type_registry types;
  uint32_t refs, raw;    /* type ids: void *[] and bytes */
  uint32_t traced;       /* refs in every word but the last, found by a trace
                            function that first reads that last word */
} layout;

/* The traced type keeps the number of its reference words in its last
 * word (tagged so it never looks like a reference): a trace function may
 * read any word of its object, and page_build calls it for every
 * destination page the object covers, so the from-space ledger must keep
 * all of a page-spanning traced object until its last page is built. */
static uint64_t traced_tag(size_t payload) { return ((payload / 8 - 1) << 4) | 0x5; }
static int traced_tag_bad;

static void trace_traced(void *obj, size_t payload, fh_visit_fn visit, void *ctx) {
  void **slots = obj;
  uint64_t tag = ((uint64_t *)obj)[payload / 8 - 1];
  if (tag != traced_tag(payload)) { /* its page went back too early */
    traced_tag_bad = 1;
    return;
  }
  for (size_t i = 0; i < (tag >> 4); i++) visit(&slots[i], ctx);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

static size_t random_size(int style) {
  uint64_t r = next_rand() % 1000;
  if (style == 1 && r < 30) return 4096 * (1 + next_rand() % 5) + 8 * (next_rand() % 64);
  if (r < 5) return 8 * (500 + next_rand() % 2000); /* straddles pages */
  return 8 * (1 + next_rand() % 12);
}

/* Build a random layout.  style 0: mostly small; 1: with many large objects
 * and long dead runs.  live_pct: chance an object is live. */
static void make_layout(layout *L, int style, unsigned live_pct) {
  memset(L, 0, sizeof *L);
  L->base = (uintptr_t)mmap(NULL, SPACE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  L->from = mmap(NULL, SPACE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  assert_true(L->base != (uintptr_t)MAP_FAILED && L->from != MAP_FAILED);
  assert_int_equal(types_init(&L->types), 0);
  fh_type tr = {.name = "refs", .flags = FH_TYPE_REF_ARRAY};
  fh_type tb = {.name = "raw"};
  fh_type tt = {.name = "traced", .trace = trace_traced};
  L->refs = types_register(&L->types, &tr);
  L->raw = types_register(&L->types, &tb);
  L->traced = types_register(&L->types, &tt);
  assert_true(L->refs && L->raw && L->traced);
  size_t cap = SPACE / 16;
  L->start = calloc(cap, sizeof *L->start);
  L->bytes = calloc(cap, sizeof *L->bytes);
  L->live = calloc(cap, sizeof *L->live);
  uintptr_t p = L->base, limit = L->base + SPACE - (64 << 10);
  int dead_run = 0;
  while (L->n < cap) {
    size_t b = random_size(style);
    if (p + b > limit) break;
    size_t i = L->n++;
    L->start[i] = p;
    L->bytes[i] = b;
    if (style == 1 && dead_run == 0 && next_rand() % 200 == 0) dead_run = 100 + next_rand() % 400;
    L->live[i] = dead_run ? 0 : next_rand() % 100 < live_pct;
    if (dead_run) dead_run--;
    unsigned kind = (unsigned)(next_rand() % 3);
    uint32_t ty = kind == 0 ? L->raw : kind == 1 ? L->refs : L->traced;
    if (ty == L->traced && b < 16) ty = L->raw; /* it needs its last word */
    *(uint64_t *)p = fh__make_header(ty, b - 8);
    for (size_t off = 8; off < b; off += 8) *(uint64_t *)(p + off) = next_rand() | 1; /* not a ref */
    if (ty == L->traced) *(uint64_t *)(p + b - 8) = traced_tag(b - 8);
    p += b;
  }
  L->top = p;
  /* Refs: each ref-array object points at random live objects, NULL, or
   * memory outside the space. */
  size_t nlive = 0;
  for (size_t i = 0; i < L->n; i++) nlive += L->live[i];
  uintptr_t *lives = calloc(nlive + 1, sizeof *lives);
  for (size_t i = 0, k = 0; i < L->n; i++)
    if (L->live[i]) lives[k++] = L->start[i];
  for (size_t i = 0; i < L->n; i++) {
    uint32_t ty = hdr_type(*(uint64_t *)L->start[i]);
    if (ty != L->refs && ty != L->traced) continue;
    for (size_t off = 8; off < L->bytes[i] - (ty == L->traced ? 8 : 0); off += 8) {
      uint64_t r = next_rand() % 10;
      uintptr_t v = r < 6 && nlive ? lives[next_rand() % nlive] + 8 : r < 8 ? 0 : 0x1000 + 8 * r;
      *(uintptr_t *)(L->start[i] + off) = v;
    }
  }
  free(lives);
  memcpy(L->from, (void *)L->base, L->top - L->base);
}

static void free_layout(layout *L) {
  munmap((void *)L->base, SPACE);
  munmap(L->from, SPACE);
  types_destroy(&L->types);
  free(L->start), free(L->bytes), free(L->live);
}

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
/* Whether a is the end of one of the pinned objects pins[0 .. np). */
static int is_pin_end(const layout *L, const uintptr_t *pins, size_t np, uintptr_t a) {
  for (size_t k = 0, i = 0; k < np; k++) {
    while (L->start[i] != pins[k]) i++;
    if (L->start[i] + L->bytes[i] == a) return 1;
  }
  return 0;
}

/* After fwd_compute with pinned ranges: every object inside a range
 * (pinned ones included) forwards to itself, every other one slides down
 * and clear of every range, and destinations keep address order without
 * overlapping. */
static void check_pinned_forwarding(const layout *L, fwd_tables *t) {
  fwd_compute(t);
  uintptr_t prev_end = L->base;
  size_t r = 0;
  for (size_t i = 0; i < L->n; i++) {
    if (!L->live[i]) continue;
    uintptr_t a = L->start[i], d = fwd_start(t, a);
    while (r < t->nranges && t->ranges[r].hi <= a) r++;
    int inside = r < t->nranges && t->ranges[r].lo <= a;
    if (inside) {
      assert_int_equal(d, a);
    } else {
      assert_true(d <= a);
      /* clear of the ranges: below the next one, above the last one */
      if (r < t->nranges) assert_true(d + L->bytes[i] <= t->ranges[r].lo);
      if (r > 0) assert_true(d >= t->ranges[r - 1].hi);
    }
    assert_true(d >= prev_end);
    prev_end = d + L->bytes[i];
  }
  assert_true(t->new_top >= prev_end);
}

/* Pinned ranges (fwd_pin_ranges): every pinned live object stays, and
 * inside each range the live objects are untouched and every stretch of
 * dead words between them is exactly one filler with its start bit set,
 * so a walk by headers from the range's start lands on its end; a range
 * starts at its first chunk's first live word and ends with a pinned
 * object; the list of fillers offered as holes holds those of
 * FWD_HOLE_MIN bytes or more, and only those.  Then the forwarding
 * around them (check_pinned_forwarding).  Checked against the layout's
 * own list of objects, on random layouts with dead runs, small objects
 * and page-spanning ones. */
static void check_pin_ranges(int style, unsigned live_pct) {
  layout L;
  make_layout(&L, style, live_pct);
  fwd_tables t;
  assert_int_equal(fwd_init(&t, L.base, SPACE), 0);
  t.old_top = L.top;
  for (size_t i = 0; i < L.n; i++)
    if (L.live[i]) fwd_mark_object(&t, L.start[i], L.bytes[i]);
  /* pin every 37th live object */
  uintptr_t *pins = calloc(L.n / 37 + 1, sizeof *pins);
  size_t np = 0;
  for (size_t i = 0, k = 0; i < L.n; i++)
    if (L.live[i] && k++ % 37 == 0) pins[np++] = L.start[i];
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
  check_pinned_forwarding(&L, &t);
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_objects_half_live),
      cmocka_unit_test(test_sparse_with_large_and_gaps),
      cmocka_unit_test(test_dense_all_live),
      cmocka_unit_test(test_nearly_all_dead),
      cmocka_unit_test(test_many_seeds),
      cmocka_unit_test(test_nothing_live),
      cmocka_unit_test(test_hand_made),
      cmocka_unit_test(test_pin_ranges_fill_dead_words),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
