/* Zygote compaction without forking: fh_prefork moves every live object
 * into the zygote space and keeps the graph intact; the zygote space is
 * immune to every collector (never moved, never freed, references out of it
 * kept alive through dirty cards); a second fh_prefork adds a generation;
 * refusals (a second attached thread, no room) leave the heap unchanged. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "heap/heap.h"
#include "support_heap.h"

static const char *const collectors[] = {"semispace", "gen_semispace", "mark_compact", "concurrent_compact",
                                         "mark_sweep"};
#define NCOLLECTORS (sizeof collectors / sizeof collectors[0])

static int in_zygote(fh_heap *h, const void *p) {
  return zygote_space_present(&h->zygote) && space_contains(&h->zygote.space, p);
}

/* A ring of N nodes held by a root array, every third node non-moving, each
 * node's `other` pointing half-way round the ring. */
typedef test_ring graph;

static void build(fh_thread *t, const test_types *ty, graph *g, size_t n) {
  test_ring_build(t, ty, g, n, 3, 3);
  for (size_t i = 0; i < n; i++) {
    tnode *x = g->arr[i];
    fh_write_ref(t, x, (void **)&x->other, g->arr[(i + n / 2) % n]);
  }
}

static void check_graph(const graph *g) {
  for (size_t i = 0; i < g->n; i++) {
    tnode *x = g->arr[i];
    assert_int_equal(x->value, i);
    assert_int_equal(x->check, test_check(i));
    assert_ptr_equal(x->next, g->arr[(i + 1) % g->n]);
    assert_ptr_equal(x->other, g->arr[(i + g->n / 2) % g->n]);
  }
}

static void check_all_in_zygote(fh_heap *h, const graph *g) {
  assert_true(in_zygote(h, g->arr));
  for (size_t i = 0; i < g->n; i++) assert_true(in_zygote(h, g->arr[i]));
}

static void prefork_then_collect(const char *collector) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=64M,non_moving_max=32M,verify=1", &ty, &t);
  graph g;
  build(t, &ty, &g, 3000);
  assert_int_equal(fh_prefork(t), 0);
  fh_gc_wait(h);
  check_graph(&g);
  check_all_in_zygote(h, &g);
  /* The moving spaces are empty and the zygote's cards start clean. */
  assert_int_equal(bump_space_used(&h->bump[h->active]), 0);
  if (h->has_malloc_spaces) assert_int_equal(atomic_load(&heap_main_malloc(h)->used), 0);
  /* New objects referenced only from zygote objects (through the barrier)
   * survive every kind of collection, and the zygote objects stay put. */
  void *zarr = g.arr;
  for (size_t i = 0; i < g.n; i += 7) {
    tnode *z = g.arr[i];
    tnode *fresh = i % 2 ? test_node(t, &ty, 1000000 + i)
                         : fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
    assert_non_null(fresh);
    fresh->value = 1000000 + i;
    fresh->check = test_check(1000000 + i);
    fh_write_ref(t, fresh, (void **)&fresh->next, z); /* a reference into the zygote */
    fh_write_ref(t, z, (void **)&z->other, fresh);
  }
  for (int round = 0; round < 8; round++) {
    for (int k = 0; k < 20000; k++) test_node(t, &ty, 0);
    assert_int_equal(fh_collect(t, test_collect_kind(collector, round)), 0);
    fh_gc_wait(h);
    assert_ptr_equal(g.arr, zarr);
    for (size_t i = 0; i < g.n; i++) {
      tnode *x = g.arr[i];
      assert_true(in_zygote(h, x));
      assert_int_equal(x->value, i);
      assert_ptr_equal(x->next, g.arr[(i + 1) % g.n]);
      if (i % 7 == 0) {
        assert_false(in_zygote(h, x->other));
        assert_int_equal(x->other->value, 1000000 + i);
        assert_int_equal(x->other->check, test_check(1000000 + i));
        assert_ptr_equal(x->other->next, x); /* left alone, not copied */
      }
    }
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_prefork_semispace(void **s) { (void)s; prefork_then_collect("semispace"); }
static void test_prefork_gen_semispace(void **s) { (void)s; prefork_then_collect("gen_semispace"); }
static void test_prefork_mark_compact(void **s) { (void)s; prefork_then_collect("mark_compact"); }
static void test_prefork_concurrent(void **s) { (void)s; prefork_then_collect("concurrent_compact"); }
static void test_prefork_mark_sweep(void **s) { (void)s; prefork_then_collect("mark_sweep"); }

/* The zygote's pages are written by nobody but the program: a collection
 * that finds nothing to update leaves every zygote word as it was. */
static void test_collections_do_not_write_zygote(void **s) {
  (void)s;
  for (size_t c = 0; c < NCOLLECTORS; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collectors[c], "heap_max=64M,non_moving_max=32M", &ty, &t);
    graph g;
    build(t, &ty, &g, 2000);
    assert_int_equal(fh_prefork(t), 0);
    size_t len = h->zygote.space.end - h->zygote.space.begin;
    char *before = malloc(len);
    assert_non_null(before);
    memcpy(before, (void *)h->zygote.space.begin, len);
    for (int round = 0; round < 4; round++) {
      for (int k = 0; k < 20000; k++) test_node(t, &ty, 0);
      assert_int_equal(fh_collect(t, test_collect_kind(collectors[c], round)), 0);
      fh_gc_wait(h);
    }
    assert_memory_equal(before, (void *)h->zygote.space.begin, len);
    free(before);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* The barrier dirties the card of the holder's payload pointer, not the
 * slot's: a slot far into a large zygote array is found through the
 * array's first card. */
static void test_far_slots_of_large_zygote_array(void **s) {
  (void)s;
  for (size_t c = 0; c < NCOLLECTORS; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collectors[c], "heap_max=64M,non_moving_max=32M,verify=1", &ty, &t);
    enum { N = 20000 }; /* 160 KiB: over 300 cards */
    void **arr = fh_alloc(t, ty.array, N * sizeof(void *));
    fh_push_root(t, (void **)&arr);
    assert_int_equal(fh_prefork(t), 0);
    assert_true(in_zygote(h, arr));
    for (int i = N - 10; i < N; i++) fh_write_ref(t, arr, &arr[i], test_node(t, &ty, (uint64_t)i));
    for (int round = 0; round < 4; round++) {
      for (int k = 0; k < 20000; k++) test_node(t, &ty, 0);
      assert_int_equal(fh_collect(t, test_collect_kind(collectors[c], round)), 0);
      fh_gc_wait(h);
      for (int i = N - 10; i < N; i++) {
        tnode *x = arr[i];
        assert_false(in_zygote(h, x));
        assert_int_equal(x->value, (uint64_t)i);
        assert_int_equal(x->check, test_check((uint64_t)i));
      }
    }
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

static void test_refused_with_second_thread(void **s) {
  (void)s;
  fh_heap *h = test_heap("collector=semispace,heap_max=32M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  fh_thread *other = fh_thread_attach(h);
  graph g;
  build(t, &ty, &g, 500);
  uint64_t before = h->collections;
  assert_int_equal(fh_prefork(t), -1);
  assert_non_null(strstr(fh_last_error(), "1 other mutator thread is attached"));
  assert_int_equal(h->collections, before); /* nothing was done */
  assert_false(zygote_space_present(&h->zygote));
  check_graph(&g);
  fh_thread_detach(other);
  assert_int_equal(fh_prefork(t), 0);
  check_all_in_zygote(h, &g);
  check_graph(&g);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* The zygote holds what was live, whatever non_moving_max is: 8 MiB of
 * live movable data with a 4 MiB non-moving space. */
static void test_zygote_holds_more_than_non_moving_max(void **s) {
  (void)s;
  for (size_t c = 0; c < NCOLLECTORS; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collectors[c], "heap_max=64M,non_moving_max=4M,verify=1", &ty, &t);
    graph g;
    build(t, &ty, &g, 3000);
    void *big = NULL;
    fh_push_root(t, &big);
    big = fh_alloc(t, ty.bytes, 8u << 20);
    assert_non_null(big);
    memset(big, 0x5a, 8u << 20);
    assert_int_equal(fh_prefork(t), 0);
    fh_postfork_parent(h);
    assert_true(zygote_space_present(&h->zygote));
    assert_true(space_contains(&h->zygote.space, big));
    check_graph(&g);
    assert_int_equal(((unsigned char *)big)[12345], 0x5a);
    assert_non_null(fh_alloc_nonmoving(t, ty.node, sizeof(tnode)));
    fh_pop_roots(t, 2);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* A second generation that does not fit in what the first left of the
 * range is refused, and the heap is as it was. */
static void test_no_room_leaves_heap_unchanged(void **s) {
  (void)s;
  for (size_t c = 0; c < NCOLLECTORS; c++) {
    /* heap_max covers semispace's two halves: at 16 MiB it holds 8 live,
     * and two generations never fill the range. */
    if (strstr(collectors[c], "semispace")) continue; /* gen_semispace too */
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collectors[c], "heap_max=16M,non_moving_max=4M,verify=1", &ty, &t);
    void *first = NULL, *big = NULL;
    fh_push_root(t, &first);
    fh_push_root(t, &big);
    first = fh_alloc(t, ty.bytes, 10u << 20);
    assert_non_null(first);
    assert_int_equal(fh_prefork(t), 0); /* 10 MiB frozen */
    fh_postfork_parent(h);
    graph g;
    build(t, &ty, &g, 3000);
    /* 15 MiB more live movable data: the range has heap_max (16 MiB) plus
     * the non-moving space's own (12 MiB for non_moving_max=4M), and the
     * first generation took 10.  (10 MiB more sufficed while each
     * non-moving space's jemalloc arena took its first 2 MiB block of the
     * range at once; it now starts on demand, and 14 MiB still fit.) */
    big = fh_alloc(t, ty.bytes, 15u << 20);
    assert_non_null(big);
    memset(big, 0x5a, 15u << 20);
    assert_int_equal(fh_prefork(t), -1);
    assert_non_null(strstr(fh_last_error(), "cannot hold the copy"));
    check_graph(&g);
    assert_false(space_contains(&h->zygote.space, big));
    assert_int_equal(((unsigned char *)big)[12345], 0x5a);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    check_graph(&g);
    assert_non_null(fh_alloc_nonmoving(t, ty.node, sizeof(tnode)));
    fh_pop_roots(t, 3);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

static void test_second_generation_extends(void **s) {
  (void)s;
  for (size_t c = 0; c < NCOLLECTORS; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collectors[c], "heap_max=64M,non_moving_max=32M,verify=1", &ty, &t);
    graph g1, g2;
    build(t, &ty, &g1, 1500);
    assert_int_equal(fh_prefork(t), 0);
    uintptr_t end1 = h->zygote.space.end;
    build(t, &ty, &g2, 1500);
    /* a reference from the first generation to the second */
    tnode *z = g1.arr[3];
    fh_write_ref(t, z, (void **)&z->other, g2.arr[4]);
    assert_int_equal(fh_prefork(t), 0);
    assert_int_equal(h->zygote.generations, 2);
    assert_true(h->zygote.space.end > end1);
    check_all_in_zygote(h, &g2);
    assert_ptr_equal(((tnode *)g1.arr[3])->other, g2.arr[4]);
    assert_true(in_zygote(h, g2.arr[4]));
    for (int round = 0; round < 3; round++) {
      for (int k = 0; k < 20000; k++) test_node(t, &ty, 0);
      assert_int_equal(fh_collect(t, test_collect_kind(collectors[c], round)), 0);
      fh_gc_wait(h);
    }
    check_graph(&g2);
    assert_ptr_equal(((tnode *)g1.arr[3])->other, g2.arr[4]);
    fh_pop_roots(t, 2);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* With an image: image objects that point at movable objects (through the
 * barrier) point at their zygote copies after fh_prefork, zygote objects
 * may point into the image, and both stay put through every collector. */
static void test_prefork_with_image(void **s) {
  (void)s;
  char path[64];
  snprintf(path, sizeof path, "/tmp/fh-test-zygote-%d.img", (int)getpid());
  fh_heap *h0 = test_heap("collector=semispace,heap_max=32M");
  test_types ty;
  test_register(h0, &ty);
  fh_thread *t0 = fh_thread_attach(h0);
  graph g0;
  build(t0, &ty, &g0, 500);
  assert_int_equal(fh_image_save(t0, path, (void **)&g0.arr, 1), 0);
  fh_pop_roots(t0, 1);
  fh_thread_detach(t0);
  fh_heap_destroy(h0);
  for (size_t c = 0; c < NCOLLECTORS; c++) {
    char spec[256];
    snprintf(spec, sizeof spec, "collector=%s,heap_max=64M,non_moving_max=32M,verify=1,image_path=%s",
             collectors[c], path);
    fh_heap *h = test_heap(spec);
    test_register(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    void **roots;
    assert_int_equal(fh_image_roots(h, &roots), 1);
    graph img = {roots[0], 500};
    check_graph(&img);
    /* image -> movable, and movable -> image */
    tnode *mine[10];
    for (int i = 0; i < 10; i++) {
      tnode *x = img.arr[i];
      mine[i] = test_node(t, &ty, 5000 + (uint64_t)i);
      fh_write_ref(t, mine[i], (void **)&mine[i]->next, x);
      fh_write_ref(t, x, (void **)&x->other, mine[i]);
    }
    assert_int_equal(fh_prefork(t), 0);
    for (int round = 0; round < 4; round++) {
      for (int k = 0; k < 20000; k++) test_node(t, &ty, 0);
      assert_int_equal(fh_collect(t, test_collect_kind(collectors[c], round)), 0);
      fh_gc_wait(h);
      for (int i = 0; i < 10; i++) {
        tnode *x = img.arr[i];
        assert_true(in_zygote(h, x->other));
        assert_int_equal(x->other->value, 5000 + (uint64_t)i);
        assert_ptr_equal(x->other->next, x);
        assert_ptr_equal(x->next, img.arr[i + 1]);
      }
    }
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  unlink(path);
}

static void test_stats_list_zygote(void **s) {
  (void)s;
  fh_heap *h = test_heap("collector=semispace,heap_max=32M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  graph g;
  build(t, &ty, &g, 1000);
  assert_int_equal(fh_prefork(t), 0);
  fh_stats st;
  fh_get_stats(h, &st);
  int found = 0;
  for (unsigned i = 0; i < st.nspaces; i++)
    if (strcmp(st.spaces[i].name, "zygote space") == 0) {
      found = 1;
      /* 1000 nodes of 40 bytes and the 8 KiB array, at least */
      assert_true(st.spaces[i].used >= 1000 * 40 + 8000);
    }
  assert_true(found);
  assert_int_equal(fh_prefork(NULL), -1);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prefork_semispace),
      cmocka_unit_test(test_prefork_gen_semispace),
      cmocka_unit_test(test_prefork_mark_compact),
      cmocka_unit_test(test_prefork_concurrent),
      cmocka_unit_test(test_prefork_mark_sweep),
      cmocka_unit_test(test_collections_do_not_write_zygote),
      cmocka_unit_test(test_far_slots_of_large_zygote_array),
      cmocka_unit_test(test_refused_with_second_thread),
      cmocka_unit_test(test_zygote_holds_more_than_non_moving_max),
      cmocka_unit_test(test_no_room_leaves_heap_unchanged),
      cmocka_unit_test(test_second_generation_extends),
      cmocka_unit_test(test_prefork_with_image),
      cmocka_unit_test(test_stats_list_zygote),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
