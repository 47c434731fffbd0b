/* The non-moving space: objects never move, dead ones are swept, its
 * memory stays inside its own range, references into and out of it are
 * traced and updated. */
#include <pthread.h>
#include <string.h>

#include "support_configs.h"
#include "support_heap.h"

#include "heap/heap.h"

static void test_pinned_and_swept(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=32M,non_moving_max=8M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  fh_stats s;
  fh_get_stats(h, &s);
  uintptr_t lo = 0, hi = 0;
  for (unsigned i = 0; i < s.nspaces; i++)
    if (strstr(s.spaces[i].name, "non-moving")) lo = 1, hi = s.spaces[i].capacity;
  assert_true(lo);
  (void)hi;

  tnode *pinned = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
  assert_non_null(pinned);
  fh_push_root(t, (void **)&pinned);
  tnode *const where = pinned;
  /* a movable child referenced only from the pinned object */
  tnode *child = test_node(t, &ty, 7);
  fh_write_ref(t, pinned, (void **)&pinned->next, child);
  /* garbage non-moving objects */
  for (int i = 0; i < 10000; i++) assert_non_null(fh_alloc_nonmoving(t, ty.bytes, 100));
  fh_get_stats(h, &s);
  uint64_t freed_before = s.bytes_freed;
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_get_stats(h, &s);
  assert_ptr_equal(pinned, where);                  /* did not move */
  assert_int_equal(pinned->next->value, 7);         /* child moved, ref updated */
  assert_true(s.bytes_freed - freed_before >= 10000 * 100); /* garbage swept */
  /* freed memory is reused: many rounds stay within the 8 MiB space */
  for (int r = 0; r < 20; r++)
    for (int i = 0; i < 10000; i++) assert_non_null(fh_alloc_nonmoving(t, ty.bytes, 100));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_objects_stay_in_range_and_full_space_errors(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=64M,non_moving_max=4M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void **keep = fh_alloc(t, ty.array, 8192 * sizeof(void *));
  fh_push_root(t, (void **)&keep);
  uintptr_t min = UINTPTR_MAX, max = 0;
  size_t n = 0;
  for (; n < 8192; n++) {
    void *p = fh_alloc_nonmoving(t, ty.bytes, 1000);
    if (!p) break;
    fh_write_ref(t, keep, &keep[n], p);
    if ((uintptr_t)p < min) min = (uintptr_t)p;
    if ((uintptr_t)p > max) max = (uintptr_t)p;
  }
  assert_true(n > 3900 && n < 8192); /* ran out at 4 MiB (1008 bytes each) */
  assert_non_null(strstr(fh_last_error(), "non-moving space full"));
  /* all inside the space's own part of its range (4 MiB, plus the room
   * jemalloc's metadata and size classes take: spaces/arena.h); the rest of
   * the range is kept for a zygote space (heap_max more) */
  fh_space *nm = &h->non_moving.space;
  assert_true(min >= nm->begin && max < nm->begin + arena_range_bytes(4u << 20));
  assert_true(nm->end - nm->begin >= arena_range_bytes(4u << 20) + h->opt.heap_max);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* The jemalloc arena starts on demand: a few objects are bump-allocated
 * from the range's first NM_PREFIX_BYTES without it (a boot from an image
 * pays no arena); past that the arena starts and carves above them.  On
 * every collector configuration (verify=1): prefix objects are zeroed,
 * never move, keep their contents, the dead ones are swept (forgotten:
 * never given to jemalloc, which never made them), and objects on both
 * sides of the boundary live together. */
static void test_arena_started_on_demand(void **state) {
  (void)state;
  for (size_t c = 0; c < test_nconfigs; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(&test_configs[c], &ty, &t);
    non_moving_space *nm = &h->non_moving;
    enum { KEEP = 64 };
    void **keep = fh_alloc(t, ty.array, KEEP * sizeof(void *));
    fh_push_root(t, (void **)&keep);
    tnode *early[8];
    for (int i = 0; i < 8; i++) {
      tnode *n = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
      assert_non_null(n);
      assert_true(n->next == NULL && n->other == NULL && n->value == 0 && n->check == 0);
      n->value = (uint64_t)i;
      n->check = test_check((uint64_t)i);
      fh_write_ref(t, keep, &keep[i], n);
      early[i] = n;
    }
    assert_int_equal(atomic_load(&nm->arena_ready), 0);
    assert_null(nm->arena.hooks);
    assert_true((uintptr_t)early[7] < nm->space.begin + NM_PREFIX_BYTES);
    /* Garbage in the prefix, a collection: swept without jemalloc. */
    for (int i = 0; i < 100; i++) assert_non_null(fh_alloc_nonmoving(t, ty.bytes, 100));
    fh_stats st;
    fh_get_stats(h, &st);
    uint64_t freed = st.bytes_freed;
    test_config_collect(&test_configs[c], t, 0);
    fh_gc_wait(h);
    fh_get_stats(h, &st);
    if (!strstr(test_configs[c].collector, "semispace")) /* young collections sweep nothing */
      assert_true(st.bytes_freed - freed >= 100 * 100);
    assert_int_equal(atomic_load(&nm->arena_ready), 0);
    /* Past the prefix: the arena starts, above the prefix objects. */
    for (size_t b = 0; b < 2 * NM_PREFIX_BYTES; b += 1024) {
      void *p = fh_alloc_nonmoving(t, ty.bytes, 1000);
      assert_non_null(p);
      if (b % (64 * 1024) == 0) fh_write_ref(t, keep, &keep[8 + b / (64 * 1024)], p);
    }
    assert_int_equal(atomic_load(&nm->arena_ready), 1);
    assert_non_null(nm->arena.hooks);
    assert_true(nm->prefix_end <= nm->space.begin + NM_PREFIX_BYTES);
    tnode *late = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
    assert_non_null(late);
    assert_true((uintptr_t)late >= nm->prefix_end);
    late->value = 99;
    late->check = test_check(99);
    fh_write_ref(t, keep, &keep[KEEP - 1], late);
    fh_write_ref(t, early[0], (void **)&early[0]->next, late);
    for (int i = 0; i < 4; i++) {
      test_config_collect(&test_configs[c], t, i);
      fh_gc_wait(h);
    }
    for (int i = 0; i < 8; i++) {
      assert_ptr_equal(keep[i], early[i]);
      assert_int_equal(early[i]->value, (uint64_t)i);
      assert_int_equal(early[i]->check, test_check((uint64_t)i));
    }
    assert_ptr_equal(early[0]->next, late);
    assert_int_equal(late->check, test_check(99));
    fh_pop_roots(t, 1);
    test_config_teardown(h, t);
  }
}

/* Several threads allocate non-moving objects across the prefix's end at
 * once: each object exactly once, in the range, none overlapping (each
 * thread fills its objects with its own pattern and checks them after). */
#define RACE_THREADS 4
#define RACE_OBJECTS 2000
typedef struct race_arg {
  fh_heap *h;
  test_types ty;
  unsigned id;
  int ok;
} race_arg;

static void *race_thread(void *p) {
  race_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  if (!t) return NULL;
  void **keep = fh_alloc(t, a->ty.array, RACE_OBJECTS * sizeof(void *));
  fh_push_root(t, (void **)&keep);
  a->ok = keep != NULL;
  for (unsigned i = 0; a->ok && i < RACE_OBJECTS; i++) {
    unsigned char *o = fh_alloc_nonmoving(t, a->ty.bytes, 200);
    if (!o) {
      a->ok = 0;
      break;
    }
    for (int k = 0; k < 200; k++)
      if (o[k]) a->ok = 0; /* not zeroed: handed out twice */
    memset(o, (int)(a->id + 1), 200);
    fh_write_ref(t, keep, &keep[i], o);
    if (i % 256 == 0) fh_safepoint(t);
  }
  for (unsigned i = 0; a->ok && i < RACE_OBJECTS; i++)
    for (int k = 0; k < 200; k++)
      if (((unsigned char *)keep[i])[k] != a->id + 1) a->ok = 0;
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

static void test_arena_start_race(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=64M,verify=1");
  race_arg args[RACE_THREADS];
  pthread_t th[RACE_THREADS];
  test_types ty;
  test_register(h, &ty);
  for (unsigned i = 0; i < RACE_THREADS; i++) args[i] = (race_arg){.h = h, .ty = ty, .id = i};
  for (unsigned i = 0; i < RACE_THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, race_thread, &args[i]), 0);
  for (unsigned i = 0; i < RACE_THREADS; i++) pthread_join(th[i], NULL);
  for (unsigned i = 0; i < RACE_THREADS; i++) assert_true(args[i].ok);
  /* 4 x 2000 x 208 bytes: past the prefix, so the arena started. */
  assert_int_equal(atomic_load(&h->non_moving.arena_ready), 1);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pinned_and_swept),
      cmocka_unit_test(test_objects_stay_in_range_and_full_space_errors),
      cmocka_unit_test(test_arena_started_on_demand),
      cmocka_unit_test(test_arena_start_race),
  };
  return cmocka_run_group_tests_name("non-moving", tests, NULL, NULL);
}
