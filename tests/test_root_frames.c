/* Cheaper precise roots (issue 18 point 4): fh_push_roots and
 * FH_PUSH_ROOTS, root-stack mark/reset across longjmp, fh_object_type and
 * fh_object_size on objects of two heaps and on bad pointers, the thread's
 * user word and fh_thread_current. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "support_heap.h"

/* ---- fh_push_roots under the moving collectors ---- */

typedef struct moving_config {
  const char *collector, *extra;
  fh_collect_kind kind;
} moving_config;

static const moving_config moving[] = {
    {"semispace", "", FH_COLLECT_SEMISPACE},
    {"mark_compact", "", FH_COLLECT_MARK_COMPACT},
    {"concurrent_compact", ",uffd_sigbus=1", FH_COLLECT_CONCURRENT_COMPACT},
    {"concurrent_compact", ",uffd_sigbus=0", FH_COLLECT_CONCURRENT_COMPACT},
};

enum { MANY = 700 }; /* beyond the root stack's initial 256 slots */

static void push_roots_under(const moving_config *c) {
  test_types ty;
  fh_thread *t;
  char rest[96];
  snprintf(rest, sizeof rest, "heap_max=16M,verify=1%s", c->extra);
  fh_heap *h = test_heap_attached(c->collector, rest, &ty, &t);
  static tnode *many[MANY];
  static tnode *old[MANY];
  tnode *one = NULL, *a = NULL, *b = NULL, *d = NULL, *e = NULL;

  test_node(t, &ty, 0); /* garbage first: sliding compaction moves the rest */
  size_t depth0 = fh_root_mark(t);
  fh_push_roots(t, NULL, 0); /* n == 0: nothing, no error */
  assert_int_equal(fh_root_mark(t), depth0);

  one = test_node(t, &ty, 1);
  FH_PUSH_ROOTS(t, (void **)&one);
  assert_int_equal(fh_root_mark(t), depth0 + 1);
  a = test_node(t, &ty, 2);
  b = test_node(t, &ty, 3);
  d = test_node(t, &ty, 4);
  e = test_node(t, &ty, 5);
  FH_PUSH_ROOTS(t, (void **)&a, (void **)&b, (void **)&d, (void **)&e);
  assert_int_equal(fh_root_mark(t), depth0 + 5);

  /* The macro's largest form: 8 slots, stored in order. */
  tnode *eight[8];
  for (int i = 0; i < 8; i++) eight[i] = test_node(t, &ty, 50 + (uint64_t)i);
  FH_PUSH_ROOTS(t, (void **)&eight[0], (void **)&eight[1], (void **)&eight[2],
                (void **)&eight[3], (void **)&eight[4], (void **)&eight[5],
                (void **)&eight[6], (void **)&eight[7]);
  assert_int_equal(fh_root_mark(t), depth0 + 13);
  for (int i = 0; i < 8; i++)
    assert_ptr_equal(((fh__thread_fast *)t)->roots_base[depth0 + 5 + i], &eight[i]);
  fh_pop_roots(t, 8);
  FH_PUSH_ROOTS(t, (void **)&eight[0], (void **)&eight[1], (void **)&eight[2],
                (void **)&eight[3], (void **)&eight[4], (void **)&eight[5],
                (void **)&eight[6], (void **)&eight[7]);
  tnode *old_eight[8];
  memcpy(old_eight, eight, sizeof eight);

  /* Many at once, from an array: the inline bounds check fails and the
   * slow path grows the stack to fit them all. */
  void **slots[MANY];
  for (size_t i = 0; i < MANY; i++) {
    many[i] = test_node(t, &ty, 100 + i);
    if (i % 3 == 0) test_node(t, &ty, 0); /* garbage in between */
    slots[i] = (void **)&many[i];
  }
  fh_push_roots(t, (void **const *)slots, MANY);
  assert_int_equal(fh_root_mark(t), depth0 + 13 + MANY);

  tnode *old_one = one, *old_a = a, *old_e = e;
  memcpy(old, many, sizeof old);
  for (int i = 0; i < 20000; i++) test_node(t, &ty, 0); /* more garbage */
  assert_int_equal(fh_collect(t, c->kind), 0);
  fh_gc_wait(h);
  assert_ptr_not_equal(one, old_one);
  assert_ptr_not_equal(a, old_a);
  assert_ptr_not_equal(e, old_e);
  assert_int_equal(one->value, 1);
  assert_int_equal(a->value, 2);
  assert_int_equal(b->value, 3);
  assert_int_equal(d->value, 4);
  assert_int_equal(e->check, test_check(5));
  for (size_t i = 0; i < MANY; i++) {
    assert_ptr_not_equal(many[i], old[i]);
    assert_int_equal(many[i]->value, 100 + i);
    assert_int_equal(many[i]->check, test_check(100 + i));
  }
  for (int i = 0; i < 8; i++) {
    assert_ptr_not_equal(eight[i], old_eight[i]);
    assert_int_equal(eight[i]->check, test_check(50 + (uint64_t)i));
  }
  fh_pop_roots(t, MANY + 13);
  assert_int_equal(fh_root_mark(t), depth0);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_push_roots_semispace(void **state) {
  (void)state;
  push_roots_under(&moving[0]);
}
static void test_push_roots_mark_compact(void **state) {
  (void)state;
  push_roots_under(&moving[1]);
}
static void test_push_roots_concurrent_compact(void **state) {
  (void)state;
  test_skip_without_uffd();
  push_roots_under(&moving[2]);
  push_roots_under(&moving[3]);
}

static void test_push_roots_bad_input(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("semispace", "heap_max=8M", &ty, &t);
  void *x = NULL, *y = NULL;
  size_t depth = fh_root_mark(t);

  fh_push_roots(t, NULL, 2);
  assert_non_null(strstr(fh_last_error(), "slots is NULL"));
  assert_int_equal(fh_root_mark(t), depth);

  void **with_null[3] = {&x, NULL, &y};
  fh_push_roots(t, with_null, 3); /* all or nothing */
  assert_non_null(strstr(fh_last_error(), "slot 1 of 3 is NULL"));
  assert_int_equal(fh_root_mark(t), depth);

  void **nul = NULL;
  FH_PUSH_ROOTS(t, &x, nul, &y); /* the macro's own fast path: all or nothing too */
  assert_non_null(strstr(fh_last_error(), "slot 1 of 3 is NULL"));
  assert_int_equal(fh_root_mark(t), depth);
  FH_PUSH_ROOTS(NULL, &x);
  assert_non_null(strstr(fh_last_error(), "thread is NULL"));

  fh_push_roots(NULL, with_null, 1);
  assert_non_null(strstr(fh_last_error(), "thread is NULL"));
  assert_int_equal(fh_root_mark(NULL), 0);
  fh_root_reset(NULL, 0);
  assert_non_null(strstr(fh_last_error(), "thread is NULL"));

  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- mark/reset across longjmp ---- */

static jmp_buf unwind;
static void **kept_eph; /* ephemerons whose keys were rooted only by dropped frames */

/* Each level roots two fresh objects (one per slot, pushed together), files
 * an ephemeron on one of them, and recurses; the innermost longjmps out
 * without popping anything. */
static void nested(fh_thread *t, const test_types *ty, int level, int depth) {
  tnode *x = test_node(t, ty, 1000 + (uint64_t)level);
  FH_PUSH_ROOTS(t, (void **)&x);
  tnode *y = test_node(t, ty, 2000 + (uint64_t)level);
  FH_PUSH_ROOTS(t, (void **)&y);
  void *eph = fh_ephemeron_new(t, x, NULL);
  assert_non_null(eph);
  fh_write_ref(t, kept_eph, &kept_eph[level], eph);
  if (level + 1 < depth) {
    /* Through a volatile pointer: GCC sees that every path ends in
     * longjmp and calls a direct call "infinite recursion". */
    void (*volatile again)(fh_thread *, const test_types *, int, int) = nested;
    again(t, ty, level + 1, depth);
  } else {
    /* Every frame's roots are on the stack now; collect here (they move,
     * their ephemerons stay set), then leave without popping. */
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    longjmp(unwind, 1);
  }
  fh_pop_roots(t, 2); /* never reached */
}

static void mark_reset_under(const char *collector) {
  {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collector, "heap_max=16M,verify=1", &ty, &t);
    enum { DEPTH = 8 };
    tnode *volatile keep = test_node(t, &ty, 7); /* changed after setjmp */
    FH_PUSH_ROOTS(t, (void **)&keep);
    kept_eph = fh_alloc(t, ty.array, DEPTH * sizeof(void *));
    FH_PUSH_ROOTS(t, (void **)&kept_eph);
    volatile size_t mark = fh_root_mark(t);
    if (setjmp(unwind) == 0) {
      nested(t, &ty, 0, DEPTH);
      fail_msg("nested returned");
    }
    assert_int_equal(fh_root_mark(t), mark + 2 * DEPTH);
    fh_root_reset(t, mark);
    assert_int_equal(fh_root_mark(t), mark);
    /* Without the reset the collection below would read and rewrite the
     * dead frames' slots; with it, their objects are garbage. */
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    assert_int_equal(keep->value, 7);
    for (int i = 0; i < DEPTH; i++) {
      assert_non_null(kept_eph[i]);
      assert_null(fh_ephemeron_key(t, kept_eph[i]));
    }
    /* A mark above the depth changes nothing and says so. */
    fh_root_reset(t, mark + 1);
    assert_non_null(strstr(fh_last_error(), "above the root stack's depth"));
    assert_int_equal(fh_root_mark(t), mark);
    /* A mark survives the stack's growth in between. */
    static void *filler[MANY];
    for (size_t i = 0; i < MANY; i++) fh_push_root(t, &filler[i]);
    fh_root_reset(t, mark);
    assert_int_equal(fh_root_mark(t), mark);
    fh_pop_roots(t, 2);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

static void test_mark_reset_after_longjmp(void **state) {
  (void)state;
  mark_reset_under("semispace");
  mark_reset_under("mark_compact");
  mark_reset_under("mark_sweep");
}

/* ---- fh_object_type / fh_object_size ---- */

static void test_object_type_two_heaps(void **state) {
  (void)state;
  test_types ta, tb;
  fh_thread *t1, *t2;
  fh_heap *h1 = test_heap_attached("semispace", "heap_max=8M", &ta, &t1);
  fh_heap *h2 = test_heap("collector=mark_sweep,heap_max=8M");
  /* Shift h2's ids so a wrong heap's table would give a wrong answer. */
  static const fh_type extra = {.name = "extra", .size = 24};
  uint32_t xid = fh_register_type(h2, &extra);
  assert_true(xid > 0);
  test_register(h2, &tb);
  t2 = fh_thread_attach(h2);
  assert_int_not_equal(ta.node, tb.node);

  tnode *n1 = test_node(t1, &ta, 1);
  tnode *n2 = test_node(t2, &tb, 2);
  void *b1 = fh_alloc(t1, ta.bytes, 13);
  void *b2 = fh_alloc(t2, tb.bytes, 4000);
  void *x2 = fh_alloc(t2, xid, 24);
  void *nm = fh_alloc_nonmoving(t1, ta.array, 40);
  assert_true(n1 && n2 && b1 && b2 && x2 && nm);
  assert_int_equal(fh_object_type(n1), ta.node);
  assert_int_equal(fh_object_size(n1), sizeof(tnode));
  assert_int_equal(fh_object_type(n2), tb.node);
  assert_int_equal(fh_object_size(n2), sizeof(tnode));
  assert_int_equal(fh_object_type(b1), ta.bytes);
  assert_int_equal(fh_object_size(b1), 13);
  assert_int_equal(fh_object_type(b2), tb.bytes);
  assert_int_equal(fh_object_size(b2), 4000);
  assert_int_equal(fh_object_type(x2), xid);
  assert_int_equal(fh_object_size(x2), 24);
  assert_int_equal(fh_object_type(nm), ta.array);
  assert_int_equal(fh_object_size(nm), 40);
  /* The inline path answered for all of them (moving, malloc and
   * non-moving spaces). */
  assert_int_not_equal(fh__object_header(n1), 0);
  assert_int_not_equal(fh__object_header(b1), 0);
  assert_int_not_equal(fh__object_header(n2), 0);
  assert_int_not_equal(fh__object_header(b2), 0);
  assert_int_not_equal(fh__object_header(nm), 0);

  /* After a semispace collection the survivor is in the other bump space. */
  FH_PUSH_ROOTS(t1, (void **)&n1);
  tnode *before = n1;
  assert_int_equal(fh_collect(t1, FH_COLLECT_SEMISPACE), 0);
  assert_ptr_not_equal(n1, before);
  assert_int_not_equal(fh__object_header(n1), 0);
  assert_int_equal(fh_object_type(n1), ta.node);
  assert_int_equal(fh__object_header(before), 0); /* the old copy: above the emptied space's top */
  assert_int_equal(fh_object_type(before), 0);
  fh_pop_roots(t1, 1);

  /* A heap created in a destroyed heap's lookup slot gets its own windows. */
  fh_thread_detach(t1);
  fh_heap_destroy(h1);
  assert_int_equal(fh_object_type(n1), 0);
  h1 = test_heap_attached("mark_compact", "heap_max=8M", &ta, &t1);
  tnode *n3 = test_node(t1, &ta, 3);
  assert_int_not_equal(fh__object_header(n3), 0);
  assert_int_equal(fh_object_type(n3), ta.node);
  assert_int_equal(fh_object_type(n2), tb.node);
  fh_thread_detach(t1);
  fh_thread_detach(t2);
  fh_heap_destroy(h1);
  fh_heap_destroy(h2);
}

/* Readers of the windows run without a lock while other heaps are
 * created and destroyed (their windows written, in the slots next to
 * this heap's and in this heap's old slot): every answer stays right. */
typedef struct reader_arg {
  const void *obj, *nm;
  uint32_t type;
  _Atomic int stop;
  _Atomic long calls;
  long wrong;
} reader_arg;

static void *window_reader(void *p) {
  reader_arg *r = p;
  uint64_t local = 0;
  while (!atomic_load(&r->stop)) {
    r->wrong += fh_object_type(r->obj) != r->type || fh_object_type(r->nm) != r->type ||
                fh_object_size(r->obj) != sizeof(tnode) || fh_object_type(&local) != 0;
    r->calls++;
  }
  return NULL;
}

static void test_object_type_while_heaps_come_and_go(void **state) {
  (void)state;
  fh_heap *first = test_heap("heap_max=4M"); /* takes a low slot, destroyed below */
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=8M", &ty, &t);
  reader_arg r = {.obj = test_node(t, &ty, 1), .type = ty.node};
  r.nm = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
  fh_enter_blocking(t); /* nothing collects h meanwhile: its objects stay put */
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, window_reader, &r), 0);
  /* The reader must be reading while the heaps come and go: on a loaded
   * machine it was first scheduled after the loop had ended (CI). */
  while (atomic_load(&r.calls) == 0) sched_yield();
  fh_heap_destroy(first);
  for (int i = 0; i < 20; i++) {
    fh_heap *a = test_heap(i % 2 ? "collector=mark_sweep,heap_max=4M" : "heap_max=4M");
    fh_heap *b = test_heap("collector=semispace,heap_max=4M");
    fh_heap_destroy(a);
    fh_heap_destroy(b);
  }
  atomic_store(&r.stop, 1);
  pthread_join(th, NULL);
  fh_leave_blocking(t);
  assert_true(r.calls > 0);
  assert_int_equal(r.wrong, 0);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* After fh_prefork the non-moving space's start is the zygote space: its
 * window is gone, the zygote's objects take the out-of-line path, the
 * moving spaces' stay inline. */
static void test_object_type_after_prefork(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("semispace", "heap_max=8M", &ty, &t);
  tnode *a = test_node(t, &ty, 1);
  void *nm = fh_alloc_nonmoving(t, ty.bytes, 100);
  FH_PUSH_ROOTS(t, (void **)&a, &nm);
  assert_int_not_equal(fh__object_header(nm), 0);
  assert_int_equal(fh_prefork(t), 0);
  fh_postfork_parent(h);
  assert_int_equal(fh_object_type(a), ty.node); /* now a zygote object */
  assert_int_equal(fh_object_size(a), sizeof(tnode));
  assert_int_equal(fh__object_header(a), 0);
  assert_int_equal(fh_object_type(nm), ty.bytes);
  assert_int_equal(fh_object_size(nm), 100);
  tnode *b = test_node(t, &ty, 2);
  void *nm2 = fh_alloc_nonmoving(t, ty.bytes, 50);
  assert_int_not_equal(fh__object_header(b), 0);
  assert_int_equal(fh_object_type(b), ty.node);
  assert_int_equal(fh_object_type(nm2), ty.bytes); /* out of line */
  assert_int_equal(fh_object_size(nm2), 50);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Bad pointers: an error and 0, never a crash (in a child, so a crash is a
 * failure and not the end of the suite). */
static int bad_pointers(void *arg) {
  (void)arg;
  fh_heap *h = test_child_heap("collector=mark_compact,heap_max=8M");
  CHILD_CHECK(h != NULL);
  test_types ty;
  CHILD_CHECK(test_register_types(h, &ty));
  fh_thread *t = fh_thread_attach(h);
  CHILD_CHECK(t != NULL);
  tnode *n = fh_alloc(t, ty.node, sizeof(tnode)); /* next, other: NULL */
  CHILD_CHECK(n != NULL);
  uint64_t on_stack[4] = {0, 0, 0, 0};
  uint64_t *from_malloc = calloc(4, sizeof *from_malloc);
  CHILD_CHECK(from_malloc != NULL);
  const void *bad[] = {
      NULL,
      &on_stack[1],
      &from_malloc[1],
      (const char *)n + 8,       /* interior: its "header" is n->next (NULL) */
      (const char *)n + 16,      /* interior: n->other */
      (const char *)n + 3,       /* misaligned */
      (const char *)n + (4 << 20), /* inside the reservation, past every object */
      (const void *)(uintptr_t)0x1000,
      (const void *)~(uintptr_t)7,
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHILD_CHECK(fh__object_header(bad[i]) == 0);
    CHILD_CHECK(fh_object_type(bad[i]) == 0);
    CHILD_CHECK(strstr(fh_last_error(), "fh_object_type") != NULL);
    CHILD_CHECK(fh_object_size(bad[i]) == 0);
    CHILD_CHECK(strstr(fh_last_error(), "fh_object_size") != NULL);
  }
  CHILD_CHECK(fh_object_type(n) == ty.node);
  /* An object of a destroyed heap: its reservation is gone. */
  fh_thread_detach(t);
  fh_heap_destroy(h);
  CHILD_CHECK(fh_object_type(n) == 0);
  CHILD_CHECK(strstr(fh_last_error(), "not an object of any heap") != NULL);
  free(from_malloc);
  return 0;
}

static void test_object_type_bad_pointers(void **state) {
  (void)state;
  test_assert_child_ok(test_run_isolated(bad_pointers, NULL, 20), "bad pointers");
}

/* ---- the user word and fh_thread_current ---- */

typedef struct current_arg {
  fh_heap *h1, *h2;
  fh_thread *mine, *main1;
  int ok;
} current_arg;

static void *other_thread(void *p) {
  current_arg *a = p;
  a->ok = 0;
  if (fh_thread_current(a->h1) != NULL || fh_thread_current(a->h2) != NULL) return NULL;
  fh_thread *t = fh_thread_attach(a->h1);
  a->mine = t;
  if (!t || t == a->main1) return NULL;
  if (fh_thread_current(a->h1) != t || fh_thread_current(a->h2) != NULL) return NULL;
  if (fh_thread_user(t) != NULL) return NULL;
  fh_thread_set_user(t, a);
  if (fh_thread_user(t) != a || fh_thread_current(a->h1) != t) return NULL;
  fh_thread_detach(t);
  if (fh_thread_current(a->h1) != NULL) return NULL;
  a->ok = 1;
  return NULL;
}

static void test_thread_current(void **state) {
  (void)state;
  fh_heap *h1 = test_heap("heap_max=4M"), *h2 = test_heap("heap_max=4M");
  assert_null(fh_thread_current(h1));
  assert_null(fh_thread_current(NULL));
  fh_thread *t1 = fh_thread_attach(h1);
  assert_ptr_equal(fh_thread_current(h1), t1);
  assert_null(fh_thread_current(h2)); /* attached to h1 only */
  fh_thread *t2 = fh_thread_attach(h2);
  assert_ptr_equal(fh_thread_current(h2), t2);
  assert_ptr_equal(fh_thread_current(h1), t1);
  assert_ptr_equal(fh_thread_current(h2), t2);

  current_arg a = {.h1 = h1, .h2 = h2, .main1 = t1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, other_thread, &a), 0);
  fh_enter_blocking(t1); /* the other thread's detach may collect */
  fh_enter_blocking(t2);
  pthread_join(th, NULL);
  fh_leave_blocking(t2);
  fh_leave_blocking(t1);
  assert_true(a.ok);
  assert_ptr_equal(fh_thread_current(h1), t1); /* ours, unchanged */

  /* The user word. */
  assert_null(fh_thread_user(t1));
  fh_thread_set_user(t1, &a);
  assert_ptr_equal(fh_thread_user(t1), &a);
  assert_null(fh_thread_user(t2));
  assert_null(fh_thread_user(NULL));
  fh_thread_set_user(NULL, &a);
  assert_non_null(strstr(fh_last_error(), "thread is NULL"));

  fh_thread_detach(t1);
  assert_null(fh_thread_current(h1));
  assert_ptr_equal(fh_thread_current(h2), t2);
  fh_thread *again = fh_thread_attach(h1);
  assert_ptr_equal(fh_thread_current(h1), again);
  assert_null(fh_thread_user(again)); /* a fresh attachment */
  fh_thread_detach(again);
  fh_thread_detach(t2);
  assert_null(fh_thread_current(h2));
  assert_null(fh_thread_current(h1));
  fh_heap_destroy(h1);
  fh_heap_destroy(h2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_push_roots_semispace),
      cmocka_unit_test(test_push_roots_mark_compact),
      cmocka_unit_test(test_push_roots_concurrent_compact),
      cmocka_unit_test(test_push_roots_bad_input),
      cmocka_unit_test(test_mark_reset_after_longjmp),
      cmocka_unit_test(test_object_type_two_heaps),
      cmocka_unit_test(test_object_type_while_heaps_come_and_go),
      cmocka_unit_test(test_object_type_after_prefork),
      cmocka_unit_test(test_object_type_bad_pointers),
      cmocka_unit_test(test_thread_current),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
