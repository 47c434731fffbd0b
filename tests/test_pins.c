/* Pins (fh_pin/fh_unpin): the API's answers, and pinned objects that stay
 * alive and in place through many collections of every collector while the
 * objects around them move. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collectors/mc.h"
#include "heap/heap.h"
#include "heap/object.h"
#include "spaces/reserve.h"
#include "support_configs.h"

/* ---- the API ---- */

static void pin_api(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_sweep", "heap_max=16M", &ty, &t);
  tnode *n = test_node(t, &ty, 7);
  assert_int_equal(fh_pin(t, NULL), -1);
  assert_non_null(strstr(fh_last_error(), "NULL"));
  int local = 0;
  assert_int_equal(fh_pin(t, &local), -1);
  assert_non_null(strstr(fh_last_error(), "fh_pin"));
  assert_int_equal(fh_pin(NULL, n), -1);
  fh_clear_error();
  fh_unpin(t, n); /* never pinned */
  assert_non_null(strstr(fh_last_error(), "not pinned"));
  /* Counted: two pins need two unpins. */
  assert_int_equal(fh_pin(t, n), 0);
  assert_int_equal(fh_pin(t, n), 0);
  fh_clear_error();
  fh_unpin(t, n);
  fh_unpin(t, n);
  assert_string_equal(fh_last_error(), "");
  fh_unpin(t, n);
  assert_non_null(strstr(fh_last_error(), "not pinned"));
  test_config_teardown(h, t);
}

/* Another thread cannot unpin this thread's pin. */
typedef struct other_ctx {
  fh_heap *h;
  void *obj;
  char err[256];
} other_ctx;

static void *other_unpin(void *arg) {
  other_ctx *c = arg;
  fh_thread *t = fh_thread_attach(c->h);
  fh_clear_error();
  fh_unpin(t, c->obj);
  snprintf(c->err, sizeof c->err, "%s", fh_last_error());
  fh_thread_detach(t);
  return NULL;
}

static void pin_owned_by_thread(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_sweep", "heap_max=16M", &ty, &t);
  tnode *n = test_node(t, &ty, 7);
  assert_int_equal(fh_pin(t, n), 0);
  other_ctx c = {.h = h, .obj = n};
  pthread_t th;
  fh_enter_blocking(t);
  assert_int_equal(pthread_create(&th, NULL, other_unpin, &c), 0);
  pthread_join(th, NULL);
  fh_leave_blocking(t);
  assert_non_null(strstr(c.err, "not pinned by this thread"));
  fh_unpin(t, n);
  test_config_teardown(h, t);
}

/* ---- pinned objects stay put while the rest moves ---- */

enum { PINNED = 24, ROUNDS = 100 };

/* Fill the heap so that pinned objects sit between garbage and live
 * objects; pin every PIN_EVERY-th; collect ROUNDS times; the pinned ones
 * keep their address and contents (held by nothing but the pin), the
 * others keep their contents. */
static void pinned_stay_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  void **live = fh_alloc(t, ty.array, 64 * sizeof(void *));
  assert_non_null(live);
  fh_push_root(t, (void **)&live);
  uintptr_t pinned[PINNED];
  /* Compacting collectors keep whole 512-byte chunks around pinned objects
   * in place (pinned ranges, docs/architecture.md): the live objects that
   * must move lie well away from every pinned one. */
  for (int i = 0; i < PINNED; i++) {
    for (int g = 0; g < 120; g++) test_node(t, &ty, 1000 + g); /* garbage below */
    if (i < 64) fh_write_ref(t, live, &live[i], test_node(t, &ty, 500 + (uint64_t)i));
    for (int g = 0; g < 120; g++) test_node(t, &ty, 1000 + g);
    tnode *p = test_node(t, &ty, (uint64_t)i);
    assert_int_equal(fh_pin(t, p), 0);
    pinned[i] = (uintptr_t)p; /* an integer: not a root */
    p = NULL;
  }
  int others_moved = 0;
  for (int r = 0; r < ROUNDS; r++) {
    for (int g = 0; g < 200; g++) test_node(t, &ty, 9); /* churn */
    tnode *before = live[0];
    test_config_collect(cfg, t, r);
    fh_gc_wait(h);
    if (live[0] != before) others_moved = 1;
    for (int i = 0; i < PINNED; i++) {
      tnode *p = (tnode *)pinned[i];
      assert_int_equal(p->value, (uint64_t)i);
      assert_int_equal(p->check, test_check((uint64_t)i));
    }
    for (int i = 0; i < PINNED; i++) assert_int_equal(((tnode *)live[i])->value, 500 + (uint64_t)i);
  }
  fh_stats s;
  fh_get_stats(h, &s);
  assert_int_equal(s.pinned_last, PINNED);
  /* Mark-sweep never moves; every other configuration compacts around the
   * pins (its first kind moves objects). */
  if (strcmp(cfg->collector, "mark_sweep") != 0) assert_true(others_moved);
  for (int i = 0; i < PINNED; i++) fh_unpin(t, (void *)pinned[i]);
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

static void pinned_stay_mark_sweep(void **state) {
  (void)state;
  pinned_stay_under(&test_configs[1]);
}

static void pinned_stay_semispace(void **state) {
  (void)state;
  pinned_stay_under(&test_configs[0]);
}

static void pinned_stay_mark_compact(void **state) {
  (void)state;
  pinned_stay_under(&test_configs[2]);
}

static void pinned_stay_concurrent_sigbus(void **state) {
  (void)state;
  test_skip_without_uffd();
  pinned_stay_under(&test_configs[3]);
}

static void pinned_stay_concurrent_thread(void **state) {
  (void)state;
  test_skip_without_uffd();
  pinned_stay_under(&test_configs[4]);
}

/* ---- concurrent compaction: pinned pages are mapped when the pause ends ---- */

/* read(2) straight into a pinned object right after the flip: in SIGBUS
 * mode the kernel's copy into a missing page of the registered range
 * fails with EFAULT (no fault is raised for it), so the pinned range must
 * be built inside the pause.  The worker is held back (delay) or not. */
static void read_into_pinned_after_flip(int sigbus, int delay) {
  test_skip_without_uffd();
  if (delay) setenv("FH_MC_WORKER_DELAY_MS", "gate", 1);
  char rest[128];
  /* los_threshold=0: the pinned buffer must be a moving-space object. */
  snprintf(rest, sizeof rest,
           "heap_max=64M,min_alloc_trigger=60M,verify=1,uffd_sigbus=%d,los_threshold=0", sigbus);
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("concurrent_compact", rest, &ty, &t);
  void **live = fh_alloc(t, ty.array, 256 * sizeof(void *));
  assert_non_null(live);
  fh_push_root(t, (void **)&live);
  for (int i = 0; i < 128; i++) {
    for (int g = 0; g < 40; g++) test_node(t, &ty, 1000 + g);
    fh_write_ref(t, live, &live[i], test_node(t, &ty, (uint64_t)i));
  }
  enum { BUF = 3 * 4096 + 100 };
  uint8_t *buf = fh_alloc(t, ty.bytes, BUF);
  assert_non_null(buf);
  assert_int_equal(fh_pin(t, buf), 0);
  for (int i = 128; i < 256; i++) {
    for (int g = 0; g < 40; g++) test_node(t, &ty, 1000 + g);
    fh_write_ref(t, live, &live[i], test_node(t, &ty, (uint64_t)i));
  }
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  static uint8_t pattern[BUF];
  for (int cycle = 0; cycle < 3; cycle++) {
    for (size_t i = 0; i < BUF; i++) pattern[i] = (uint8_t)(i * 7 + (size_t)cycle);
    assert_int_equal(fh_collect(t, FH_COLLECT_CONCURRENT_COMPACT), 0);
    if (delay) assert_true(mc_phase_open(h)); /* no fh_gc_wait: the phase runs */
    assert_int_equal(write(fds[1], pattern, BUF), BUF);
    ssize_t got = read(fds[0], buf, BUF);
    if (got < 0) fail_msg("read into the pinned object: %s", strerror(errno));
    assert_int_equal(got, BUF);
    assert_memory_equal(buf, pattern, BUF);
    fh_gc_wait(h);
    assert_memory_equal(buf, pattern, BUF);
    for (int i = 0; i < 256; i++) assert_int_equal(((tnode *)live[i])->value, (uint64_t)i);
  }
  close(fds[0]);
  close(fds[1]);
  mc_state *m = h->mc;
  assert_true(m->pinned_objects >= 1 && m->pinned_ranges >= 1);
  fh_unpin(t, buf);
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
  unsetenv("FH_MC_WORKER_DELAY_MS");
}

static void read_after_flip_sigbus(void **state) {
  (void)state;
  read_into_pinned_after_flip(1, 0);
}
static void read_after_flip_sigbus_delayed(void **state) {
  (void)state;
  read_into_pinned_after_flip(1, 1);
}
static void read_after_flip_thread(void **state) {
  (void)state;
  read_into_pinned_after_flip(0, 0);
}
static void read_after_flip_thread_delayed(void **state) {
  (void)state;
  read_into_pinned_after_flip(0, 1);
}

/* ---- hashed pinned objects keep their hash and size ---- */

/* A hashed object grows by its hash word when it moves; pinned, it does
 * not move, so it must not grow either, and its hash stays.  Unpinned, it
 * moves again (and grows then), keeping the same hash. */
static void hashed_pinned_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  enum { N = 16 };
  void **live = fh_alloc(t, ty.array, N * sizeof(void *));
  fh_push_root(t, (void **)&live);
  tnode *pn[N];
  uint64_t hash[N];
  for (int i = 0; i < N; i++) {
    for (int g = 0; g < 60; g++) test_node(t, &ty, 1000 + g);
    pn[i] = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, live, &live[i], pn[i]);
    hash[i] = fh_object_hash(t, pn[i]);
    assert_int_equal(fh_pin(t, pn[i]), 0);
  }
  for (int r = 0; r < 8; r++) {
    for (int g = 0; g < 300; g++) test_node(t, &ty, 9);
    test_config_collect(cfg, t, r);
    fh_gc_wait(h);
    for (int i = 0; i < N; i++) {
      assert_ptr_equal(live[i], pn[i]);
      assert_int_equal(fh_object_hash(t, pn[i]), hash[i]);
      assert_false(*obj_header(pn[i]) & FH_HDR_HASH_MOVED); /* did not grow */
      assert_int_equal(pn[i]->check, test_check((uint64_t)i));
    }
  }
  for (int i = 0; i < N; i++) fh_unpin(t, pn[i]);
  for (int r = 0; r < 2; r++) {
    test_config_collect(cfg, t, 0); /* the moving kind */
    fh_gc_wait(h);
  }
  int moved = 0;
  for (int i = 0; i < N; i++) {
    tnode *n = live[i];
    moved |= n != pn[i];
    assert_int_equal(fh_object_hash(t, n), hash[i]);
    assert_int_equal(n->value, (uint64_t)i);
  }
  if (strcmp(cfg->collector, "mark_sweep") != 0) assert_true(moved);
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

static void hashed_pinned(void **state) {
  (void)state;
  for (size_t c = 0; c < test_nconfigs; c++) {
    if (strcmp(test_configs[c].collector, "concurrent_compact") == 0 && !test_have_uffd())
      continue;
    hashed_pinned_under(&test_configs[c]);
  }
}

/* ---- a large pinned object with live objects straddling its range ---- */

/* L and A (large, so claimed from the bump pointer right below and above
 * B) straddle the pages where the pinned 100 KiB B begins and ends: both must stay in place with B, and
 * their references to objects that slide must be fixed.  Semispace pins
 * object by object (collectors/semi_fixed.h): L and A are copied, B
 * alone stays. */
static void large_pinned_under(const test_config *given) {
  /* los_threshold=0: these large objects must be moving-space objects. */
  char extra[160];
  snprintf(extra, sizeof extra, "%s,los_threshold=0", given->extra);
  test_config c = *given;
  c.extra = extra;
  const test_config *cfg = &c;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  enum { LREFS = 2500, AREFS = 2500, BIG = 100 * 1024 + 200 };
  for (int g = 0; g < 2000; g++) test_node(t, &ty, 1000 + g); /* garbage below */
  void **l = fh_alloc(t, ty.array, LREFS * sizeof(void *));
  assert_non_null(l);
  fh_push_root(t, (void **)&l);
  uint8_t *b = fh_alloc(t, ty.bytes, BIG);
  assert_non_null(b);
  assert_int_equal(fh_pin(t, b), 0);
  void **a = fh_alloc(t, ty.array, AREFS * sizeof(void *));
  assert_non_null(a);
  fh_push_root(t, (void **)&a);
  uintptr_t b_start = (uintptr_t)b - 8, b_end = (uintptr_t)b + BIG;
  /* The layout this test is about (allocation is deterministic; mark-sweep
   * heaps place objects by size class instead). */
  if (strcmp(cfg->collector, "mark_sweep") != 0) {
    assert_true(b_start % 4096 != 0 && (uintptr_t)l - 8 < (b_start & ~(uintptr_t)4095));
    assert_true(b_end % 4096 != 0 && (uintptr_t)a - 8 == align_up(b_end, 8));
  }
  for (size_t i = 0; i < BIG; i++) b[i] = (uint8_t)(i * 13);
  for (int i = 0; i < LREFS; i++) {
    test_node(t, &ty, 5); /* garbage between */
    fh_write_ref(t, l, &l[i], test_node(t, &ty, (uint64_t)i));
  }
  for (int i = 0; i < AREFS; i++) {
    test_node(t, &ty, 5);
    fh_write_ref(t, a, &a[i], test_node(t, &ty, 10000 + (uint64_t)i));
  }
  void *l0 = l, *a0 = a, *first = l[0];
  int semi = strcmp(cfg->collector, "semispace") == 0;
  for (int r = 0; r < 6; r++) {
    test_config_collect(cfg, t, r);
    fh_gc_wait(h);
    if (!semi) {
      assert_ptr_equal(l, l0);
      assert_ptr_equal(a, a0);
    }
    for (size_t i = 0; i < BIG; i++)
      if (b[i] != (uint8_t)(i * 13)) fail_msg("pinned byte %zu changed", i);
    for (int i = 0; i < LREFS; i++) {
      tnode *n = l[i];
      assert_int_equal(n->value, (uint64_t)i);
      assert_int_equal(n->check, test_check((uint64_t)i));
    }
    for (int i = 0; i < AREFS; i++) assert_int_equal(((tnode *)a[i])->value, 10000 + (uint64_t)i);
  }
  if (strcmp(cfg->collector, "mark_sweep") != 0) assert_ptr_not_equal(l[0], first);
  fh_unpin(t, b);
  fh_pop_roots(t, 2);
  test_config_teardown(h, t);
}

static void large_pinned(void **state) {
  (void)state;
  for (size_t c = 0; c < test_nconfigs; c++) {
    if (strcmp(test_configs[c].collector, "concurrent_compact") == 0 && !test_have_uffd())
      continue;
    large_pinned_under(&test_configs[c]);
  }
}

/* ---- a growing object right below a pinned range ---- */

/* Densely live objects below a pinned one, one of them hashed: moving, it
 * gains its hash word, but the filler that hashing claimed for it lies
 * above the pinned object, so the objects below no longer fit under it.
 * The pinned range must take in pages below it until they do. */
static void grower_below_pinned_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  enum { N = 150 };
  void **live = fh_alloc(t, ty.array, (N + 1) * sizeof(void *));
  fh_push_root(t, (void **)&live);
  for (int i = 0; i < N; i++) fh_write_ref(t, live, &live[i], test_node(t, &ty, (uint64_t)i));
  tnode *p = test_node(t, &ty, 999);
  assert_int_equal(fh_pin(t, p), 0);
  uint64_t hash[N];
  for (int i = 0; i < N; i++) hash[i] = fh_object_hash(t, live[i]); /* fillers above p */
  for (int r = 0; r < 4; r++) {
    for (int g = 0; g < 300; g++) test_node(t, &ty, 9);
    test_config_collect(cfg, t, r);
    fh_gc_wait(h);
    assert_int_equal(p->value, 999);
    for (int i = 0; i < N; i++) {
      tnode *n = live[i];
      assert_int_equal(n->value, (uint64_t)i);
      assert_int_equal(n->check, test_check((uint64_t)i));
      assert_int_equal(fh_object_hash(t, n), hash[i]);
    }
  }
  fh_unpin(t, p);
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

static void grower_below_pinned(void **state) {
  (void)state;
  for (size_t c = 0; c < test_nconfigs; c++) {
    if (strcmp(test_configs[c].collector, "concurrent_compact") == 0 && !test_have_uffd())
      continue;
    grower_below_pinned_under(&test_configs[c]);
  }
}

/* ---- the space does not grow when the newest objects are pinned ---- */

/* Each round pins one of its newest objects and unpins the last round's:
 * the highest pinned object is always near the top, so the top cannot
 * come down, and without reuse of the gaps below it (holes,
 * spaces/bump_space.h) the space grew by every round's allocation until
 * the heap was full. */
static void newest_pinned_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  enum { SLOTS = 256, ROUNDS_N = 40 };
  void **live = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  fh_push_root(t, (void **)&live);
  void *pinned = NULL;
  size_t max_used = 0;
  for (int r = 0; r < ROUNDS_N; r++) {
    for (int i = 0; i < SLOTS; i++) {
      for (int g = 0; g < 20; g++) test_node(t, &ty, 1); /* ~0.8 KiB garbage each */
      fh_write_ref(t, live, &live[i], test_node(t, &ty, (uint64_t)(r * SLOTS + i)));
    }
    void *p = live[SLOTS - 1]; /* among the newest */
    assert_int_equal(fh_pin(t, p), 0);
    if (pinned) fh_unpin(t, pinned);
    pinned = p;
    test_config_collect(cfg, t, 0);
    fh_gc_wait(h);
    size_t used = bump_space_used(&h->bump[h->active]);
    if (used > max_used) max_used = used;
    for (int i = 0; i < SLOTS; i++)
      assert_int_equal(((tnode *)live[i])->value, (uint64_t)(r * SLOTS + i));
  }
  /* Each round allocates ~220 KiB; live data is ~10 KiB. */
  if (max_used > ((size_t)2 << 20)) fail_msg("%s: the space grew to %zu KiB", cfg->collector, max_used >> 10);
  fh_unpin(t, pinned);
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

static void newest_pinned(void **state) {
  (void)state;
  for (size_t c = 0; c < test_nconfigs; c++) {
    if (strcmp(test_configs[c].collector, "mark_sweep") == 0) continue; /* no bump space */
    if (strcmp(test_configs[c].collector, "concurrent_compact") == 0 && !test_have_uffd())
      continue;
    newest_pinned_under(&test_configs[c]);
  }
}

/* ---- walk points after compaction around pins ---- */

/* stack_roots=conservative: every object the collection laid down in the
 * moving space is found from its first and last word through the walk
 * points (spaces/bump_space.h).  Right after a collection: nothing
 * allocated since, so the space is walkable up to its top. */
static void check_walk_points(fh_heap *h) {
  bump_space *b = &h->bump[h->active];
  uintptr_t top = atomic_load(&b->top);
  size_t objects = 0;
  for (uintptr_t p = b->space.begin; p < top;) {
    uint64_t hd = *(const uint64_t *)p;
    size_t bytes = obj_bytes(hd);
    assert_true(bytes >= FH_HEADER_BYTES);
    if (hdr_type(hd) != FH_FILLER_TYPE) {
      assert_int_equal(bump_space_object_at(b, p), p);
      assert_int_equal(bump_space_object_at(b, p + bytes - 8), p);
      objects++;
    }
    p += bytes;
  }
  assert_true(objects > 0);
}

static void walk_points_under(const test_config *cfg) {
  char rest[160];
  snprintf(rest, sizeof rest, "heap_max=64M,verify=1,stack_roots=conservative%s", cfg->extra);
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(cfg->collector, rest, &ty, &t);
  void **live = fh_alloc(t, ty.array, 64 * sizeof(void *));
  fh_push_root(t, (void **)&live);
  void **ballast = fh_alloc(t, ty.array, 64 * sizeof(void *));
  fh_push_root(t, (void **)&ballast);
  uintptr_t pinned[8];
  for (int i = 0; i < 8; i++) {
    for (int g = 0; g < 150; g++) test_node(t, &ty, 1);
    for (int k = 0; k < 8; k++) fh_write_ref(t, live, &live[i * 8 + k], test_node(t, &ty, (uint64_t)k));
    for (int g = 0; g < 150; g++) test_node(t, &ty, 1);
    void *p = i % 2 ? (void *)test_node(t, &ty, 5) : fh_alloc(t, ty.bytes, 9000);
    assert_int_equal(fh_pin(t, p), 0);
    pinned[i] = (uintptr_t)p;
  }
  for (int r = 0; r < 6; r++) {
    /* New live objects among garbage in fresh TLABs: they slide down over
     * the old layout's walk points, which must be gone. */
    for (int k = 0; k < 8; k++) {
      for (int g = 0; g < 100; g++) test_node(t, &ty, 9);
      fh_write_ref(t, live, &live[(r % 8) * 8 + k], test_node(t, &ty, (uint64_t)k));
      fh_write_ref(t, ballast, &ballast[(r * 8 + k) % 64], fh_alloc(t, ty.bytes, 3000));
    }
    test_config_collect(cfg, t, r);
    fh_gc_wait(h);
    check_walk_points(h);
    for (int i = 0; i < 64; i++) assert_int_equal(((tnode *)live[i])->value, (uint64_t)(i % 8));
  }
  /* Unpinned: semispace copies again (setting walk points in to-space). */
  for (int i = 0; i < 8; i++) fh_unpin(t, (void *)pinned[i]);
  for (int r = 0; r < 4; r++) {
    for (int k = 0; k < 8; k++) {
      for (int g = 0; g < 100; g++) test_node(t, &ty, 9);
      fh_write_ref(t, ballast, &ballast[(r * 8 + k) % 64], fh_alloc(t, ty.bytes, 3000));
    }
    test_config_collect(cfg, t, r);
    fh_gc_wait(h);
    check_walk_points(h);
  }
  fh_pop_roots(t, 2);
  test_config_teardown(h, t);
}

static void walk_points(void **state) {
  (void)state;
  for (size_t c = 0; c < test_nconfigs; c++) {
    if (strcmp(test_configs[c].collector, "mark_sweep") == 0) continue; /* no bump space */
    if (strcmp(test_configs[c].collector, "concurrent_compact") == 0 && !test_have_uffd())
      continue;
    walk_points_under(&test_configs[c]);
  }
}

/* ---- the dead words beside a pin are reused ---- */

/* A pinned range is whole 512-byte chunks kept in place: the pin's dead
 * neighbours there become fillers, handed to the allocator as holes with
 * the gaps below the ranges (collectors/mark_compact.c: each_hole).  Left
 * as fillers, they were ~0.7 MiB of the 17 MiB fhbench pins holds with 1%
 * pinned.  The objects allocated beside the pins then keep their contents
 * and identity hashes through more collections of every kind the
 * configuration runs (verify=1 checks the heap after each), the pins
 * staying where they are. */
enum { BESIDE_PINS = 48, BESIDE_GAP = 30, BESIDE_NEW = 600 };

static int same_chunk(uintptr_t a, uintptr_t b) { return a >> 9 == b >> 9; }

static void reuse_beside_pins_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  /* Allocated first: a claim skips the holes too small for it for good. */
  void **keep = fh_alloc(t, ty.array, BESIDE_NEW * sizeof(void *));
  assert_non_null(keep);
  fh_push_root(t, (void **)&keep);
  uintptr_t pinned[BESIDE_PINS];
  /* ~1.2 KiB of garbage either side of each pin (40-byte nodes). */
  for (int i = 0; i < BESIDE_PINS; i++) {
    for (int g = 0; g < BESIDE_GAP; g++) test_node(t, &ty, 1000 + (uint64_t)g);
    tnode *p = test_node(t, &ty, (uint64_t)i);
    assert_int_equal(fh_pin(t, p), 0);
    pinned[i] = (uintptr_t)p; /* an integer: not a root */
    for (int g = 0; g < BESIDE_GAP; g++) test_node(t, &ty, 2000 + (uint64_t)g);
  }
  assert_int_equal(fh_collect(t, cfg->kinds[0]), 0);
  fh_gc_wait(h);
  static uint64_t hash[BESIDE_NEW];
  size_t beside = 0;
  for (int k = 0; k < BESIDE_NEW; k++) {
    tnode *n = test_node(t, &ty, 100000 + (uint64_t)k);
    for (int i = 0; i < BESIDE_PINS; i++) beside += same_chunk((uintptr_t)n, pinned[i]);
    fh_write_ref(t, keep, &keep[k], n);
    hash[k] = fh_object_hash(t, n);
    assert_true(hash[k] != 0);
  }
  /* Mark-sweep heaps never move: no range, no hole.  Semispace keeps the
   * pins in the idle half, where nothing is allocated: the next cycle's
   * copy fills around them (below). */
  int semi = strcmp(cfg->collector, "semispace") == 0;
  if (strcmp(cfg->collector, "mark_sweep") != 0 && !semi && beside == 0)
    fail_msg("%s%s: no new object beside a pin", cfg->collector, cfg->extra);
  for (int r = 0; r < 6; r++) {
    for (int g = 0; g < 300; g++) test_node(t, &ty, 9); /* churn */
    test_config_collect(cfg, t, r);
    fh_gc_wait(h);
    if (semi && r == 0) {
      for (int k = 0; k < BESIDE_NEW; k++)
        for (int i = 0; i < BESIDE_PINS; i++) beside += same_chunk((uintptr_t)keep[k], pinned[i]);
      if (beside == 0) fail_msg("semispace%s: no copied object beside a pin", cfg->extra);
    }
    for (int i = 0; i < BESIDE_PINS; i++) {
      tnode *p = (tnode *)pinned[i];
      assert_int_equal(p->value, (uint64_t)i);
      assert_int_equal(p->check, test_check((uint64_t)i));
    }
    for (int k = 0; k < BESIDE_NEW; k++) {
      tnode *n = keep[k];
      assert_int_equal(n->value, 100000 + (uint64_t)k);
      assert_int_equal(n->check, test_check(100000 + (uint64_t)k));
      assert_true(fh_object_hash(t, n) == hash[k]);
    }
  }
  for (int i = 0; i < BESIDE_PINS; i++) fh_unpin(t, (void *)pinned[i]);
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

static void reuse_beside_pins(void **state) {
  (void)state;
  for (size_t c = 0; c < test_nconfigs; c++) {
    if (strcmp(test_configs[c].collector, "concurrent_compact") == 0 && !test_have_uffd())
      continue;
    reuse_beside_pins_under(&test_configs[c]);
  }
}

/* ---- several mutators pinning and unpinning ---- */

/* Each thread keeps PM_N nodes in a rooted array and replaces a third of
 * them per round (with as much garbage between), pinning every 16th new
 * one and unpinning the ones it replaces; collections come from the
 * allocation trigger and from thread 0.  The holes the pins leave (gaps
 * and the dead words beside each pin, collectors/mc_holes.c) are refilled
 * by all threads' TLABs under the hole lock.  verify=1 checks the heap at
 * every collection; each thread checks its nodes' contents and that its
 * pinned nodes never moved.  No cmocka assertion off the main thread: a
 * failure is reported through `bad`. */
enum { PM_THREADS = 3, PM_N = 900, PM_ROUNDS = 24, PM_EVERY = 16 };

typedef struct pin_mutator {
  fh_heap *h;
  const test_types *ty;
  int id;
  char bad[160];
} pin_mutator;

static tnode *pm_node(fh_thread *t, const test_types *ty, uint64_t v) {
  tnode *n = fh_alloc(t, ty->node, sizeof(tnode));
  if (n) {
    n->value = v;
    n->check = test_check(v);
  }
  return n;
}

static void *pin_mutator_main(void *arg) {
  pin_mutator *c = arg;
  fh_thread *t = fh_thread_attach(c->h);
  void **arr = fh_alloc(t, c->ty->array, PM_N * sizeof(void *));
  uintptr_t at[PM_N] = {0}; /* where a pinned node is, 0 when not pinned */
  if (!arr) {
    snprintf(c->bad, sizeof c->bad, "thread %d: array: %s", c->id, fh_last_error());
    fh_thread_detach(t);
    return NULL;
  }
  fh_push_root(t, (void **)&arr);
  for (int r = 0; r <= PM_ROUNDS && !c->bad[0]; r++) {
    for (int i = r ? r % 3 : 0; i < PM_N; i += r ? 3 : 1) {
      if (at[i]) {
        fh_unpin(t, arr[i]);
        at[i] = 0;
      }
      uint64_t v = ((uint64_t)c->id << 40) | ((uint64_t)r << 20) | (uint64_t)i;
      /* The garbage first: n is not a root, so no allocation may come
       * between it and the store. */
      tnode *n = pm_node(t, c->ty, 0xdead) ? pm_node(t, c->ty, v) : NULL;
      if (!n) {
        snprintf(c->bad, sizeof c->bad, "thread %d: alloc: %s", c->id, fh_last_error());
        break;
      }
      fh_write_ref(t, arr, &arr[i], n);
      if (i % PM_EVERY == 0) {
        if (fh_pin(t, n) != 0) {
          snprintf(c->bad, sizeof c->bad, "thread %d: pin: %s", c->id, fh_last_error());
          break;
        }
        at[i] = (uintptr_t)n;
      }
    }
    if (c->id == 0 && r % 4 == 1) fh_collect(t, FH_COLLECT_DEFAULT);
    for (int i = 0; i < PM_N && !c->bad[0]; i++) {
      tnode *n = arr[i];
      if (!n || n->check != test_check(n->value) || (n->value & 0xfffff) != (uint64_t)i ||
          n->value >> 40 != (uint64_t)c->id)
        snprintf(c->bad, sizeof c->bad, "thread %d round %d: node %d torn", c->id, r, i);
      else if (at[i] && (uintptr_t)n != at[i])
        snprintf(c->bad, sizeof c->bad, "thread %d round %d: pinned node %d moved", c->id, r, i);
    }
  }
  for (int i = 0; i < PM_N; i++)
    if (at[i]) fh_unpin(t, arr[i]);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

static void pin_mutators_under(const char *spec) {
  fh_heap *h = test_heap(spec);
  test_types ty;
  test_register(h, &ty);
  pin_mutator ms[PM_THREADS];
  pthread_t th[PM_THREADS];
  for (int k = 0; k < PM_THREADS; k++) {
    ms[k] = (pin_mutator){.h = h, .ty = &ty, .id = k};
    assert_int_equal(pthread_create(&th[k], NULL, pin_mutator_main, &ms[k]), 0);
  }
  for (int k = 0; k < PM_THREADS; k++) pthread_join(th[k], NULL);
  for (int k = 0; k < PM_THREADS; k++)
    if (ms[k].bad[0]) fail_msg("%s: %s", spec, ms[k].bad);
  fh_heap_destroy(h);
}

static void pin_mutators(void **state) {
  (void)state;
  pin_mutators_under("collector=mark_compact,heap_max=64M,verify=1,min_alloc_trigger=1M");
  pin_mutators_under("collector=semispace,heap_max=64M,verify=1,min_alloc_trigger=1M");
  if (test_have_uffd())
    pin_mutators_under("collector=concurrent_compact,heap_max=64M,verify=1,min_alloc_trigger=1M");
}

/* Thousands of pins held by one thread, some objects pinned twice, undone
 * in a scrambled order (the records' index: fh_unpin once searched them
 * all): each object stays put across a collection while any of its pins
 * is held, each unpin succeeds exactly as often as the object was pinned,
 * and an unpin too many is refused. */
static void many_pins_any_order(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=64M", &ty, &t);
  enum { N = 5000 };
  void **objs = fh_alloc(t, ty.array, N * sizeof(void *));
  assert_non_null(objs);
  fh_push_root(t, (void **)&objs);
  uintptr_t at[N];
  for (int i = 0; i < N; i++) {
    tnode *n = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, objs, &objs[i], n);
    assert_int_equal(fh_pin(t, n), 0);
    if (i % 3 == 0) assert_int_equal(fh_pin(t, n), 0); /* pinned twice */
    test_node(t, &ty, 0); /* garbage beside each */
  }
  for (int i = 0; i < N; i++) at[i] = (uintptr_t)objs[i];
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  /* first pass in a scrambled order: one unpin each */
  fh_clear_error();
  for (int k = 0; k < N; k++) fh_unpin(t, objs[(k * 7919) % N]);
  assert_string_equal(fh_last_error(), "");
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  for (int i = 0; i < N; i += 3) { /* still pinned once */
    assert_int_equal((uintptr_t)objs[i], at[i]);
    assert_int_equal(((tnode *)objs[i])->check, test_check((uint64_t)i));
  }
  for (int i = 0; i < N; i += 3) fh_unpin(t, objs[i]);
  assert_string_equal(fh_last_error(), "");
  fh_unpin(t, objs[3]);
  assert_non_null(strstr(fh_last_error(), "not pinned"));
  for (int i = 0; i < N; i++) assert_int_equal(((tnode *)objs[i])->check, test_check((uint64_t)i));
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pin_api),
      cmocka_unit_test(many_pins_any_order),
      cmocka_unit_test(pin_owned_by_thread),
      cmocka_unit_test(pinned_stay_mark_sweep),
      cmocka_unit_test(pinned_stay_semispace),
      cmocka_unit_test(pinned_stay_mark_compact),
      cmocka_unit_test(pinned_stay_concurrent_sigbus),
      cmocka_unit_test(pinned_stay_concurrent_thread),
      cmocka_unit_test(read_after_flip_sigbus),
      cmocka_unit_test(read_after_flip_sigbus_delayed),
      cmocka_unit_test(read_after_flip_thread),
      cmocka_unit_test(read_after_flip_thread_delayed),
      cmocka_unit_test(hashed_pinned),
      cmocka_unit_test(large_pinned),
      cmocka_unit_test(walk_points),
      cmocka_unit_test(grower_below_pinned),
      cmocka_unit_test(newest_pinned),
      cmocka_unit_test(reuse_beside_pins),
      cmocka_unit_test(pin_mutators),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
