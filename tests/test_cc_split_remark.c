/* concurrent_compact's split remark (issue 16): the remark pause ends the
 * marking only; the marker computes the forwarding below the cut (the top
 * at the remark) while mutators run, and a second short pause completes
 * it and flips.  What may happen in between, and must come out right:
 * objects allocated there (above the cut, one more run of live objects)
 * and linked from old ones; an old object hashed there (no hash word in
 * the forwarding computed meanwhile: the flip computes it again); an old
 * object pinned or unpinned there (the same); an explicit collection or
 * a fork there (the cycle is abandoned); and mutators rewiring a graph
 * through many such cycles with the real marker, verify=1, both fault
 * modes.
 *
 * The deterministic tests set h->cm_manual and h->cm_manual_split: a
 * GC_CAUSE_REMARK collection is the split remark, cmark_test_between runs
 * the marker's work, and the next GC_CAUSE_REMARK collection flips.
 * FH_CC_SPLIT_MIN=1 splits every remark, however small the heap. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "collectors/collector.h"
#include "collectors/concurrent_mark.h"
#include "collectors/mc.h"
#include "heap/heap.h"
#include "heap/object.h"
#include "support_cmark.h"
#include "support_heap.h"

enum { OLD = 3000 };

/* A heap that splits every remark, and OLD nodes held by a rooted array
 * (c->arr, a root slot), with as many garbage nodes between them: every
 * survivor moves. */
typedef struct split_case {
  test_types ty;
  fh_thread *t;
  fh_heap *h;
  void **arr;
} split_case;

static void split_setup_with(split_case *c, const char *extra) {
  if (!test_have_uffd()) test_skip_without_uffd();
  setenv("FH_CC_SPLIT_MIN", "1", 1);
  char spec[128];
  snprintf(spec, sizeof spec, "concurrent_mark=1,generational=0,verify=1%s", extra);
  c->h = test_heap_attached("concurrent_compact", spec, &c->ty, &c->t);
  c->h->cm_manual = 1;
  c->h->cm_manual_split = 1;
  fh_thread *t = c->t;
  c->arr = fh_alloc(t, c->ty.array, OLD * sizeof(void *));
  assert_non_null(c->arr);
  fh_push_root(t, (void **)&c->arr);
  for (int i = 0; i < OLD; i++) {
    (void)test_node(t, &c->ty, 0);
    fh_write_ref(t, c->arr, &c->arr[i], test_node(t, &c->ty, (uint64_t)i));
  }
}

static void split_setup(split_case *c) { split_setup_with(c, ""); }

static void check_old(void **arr) {
  for (int i = 0; i < OLD; i++) assert_int_equal(((tnode *)arr[i])->value, (uint64_t)i);
}

/* All the marking (after the roots pause), then the split remark. */
static void finish_marking_and_remark(fh_thread *t) {
  fh_heap *h = t->heap;
  while (cmark_test_step(h, 1000)) {
  }
  assert_int_equal(gc_run(t, FH_COLLECT_DEFAULT, GC_CAUSE_REMARK, 0), 0);
  assert_non_null(h->cm); /* the cycle goes on */
  assert_true(h->cm->remarked);
}

static void mark_and_remark(fh_thread *t) {
  test_cmark_start_cycle(t);
  finish_marking_and_remark(t);
}

/* The flip pause, then the compaction after it. */
static void flip(fh_thread *t) {
  assert_int_equal(gc_run(t, FH_COLLECT_DEFAULT, GC_CAUSE_REMARK, 0), 0);
  assert_null(t->heap->cm);
  fh_gc_wait(t->heap);
}

/* The marker's work after the remark, then the flip. */
static void between_and_flip(split_case *c) {
  cmark_test_between(c->h);
  flip(c->t);
}

/* A second, stop-the-world collection over what the split one left. */
static void split_finish(split_case *c) {
  assert_int_equal(fh_collect(c->t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(c->h);
  check_old(c->arr);
  fh_pop_roots(c->t, 1);
  fh_thread_detach(c->t);
  fh_heap_destroy(c->h);
  unsetenv("FH_CC_SPLIT_MIN");
}

/* Objects allocated before and after the marker's work, linked from old
 * objects, survive; the cycle counts one collection with a roots, a
 * remark and a flip pause. */
static void test_allocated_in_between(void **state) {
  (void)state;
  split_case c;
  split_setup(&c);
  fh_thread *t = c.t;
  fh_heap *h = c.h;
  test_cmark_start_cycle(t);
  uintptr_t boundary = h->mc->t.old_top;
  for (int i = 0; i < OLD; i += 2) { /* while marking: black, the marker's after the remark */
    tnode *n = test_node(t, &c.ty, 200000u + (uint64_t)i);
    assert_true((uintptr_t)n >= boundary);
    (void)test_node(t, &c.ty, 0);
    fh_write_ref(t, c.arr[i], (void **)&((tnode *)c.arr[i])->other, n);
  }
  finish_marking_and_remark(t);
  uintptr_t cut = h->mc->t.old_top;
  for (int i = 0; i < OLD; i += 3) { /* before the forwarding below the cut */
    tnode *n = test_node(t, &c.ty, 100000u + (uint64_t)i);
    assert_true((uintptr_t)n >= cut);
    (void)test_node(t, &c.ty, 0);
    fh_write_ref(t, c.arr[i], (void **)&((tnode *)c.arr[i])->next, n);
  }
  cmark_test_between(h);
  for (int i = 1; i < OLD; i += 3) { /* after it */
    tnode *n = test_node(t, &c.ty, 100000u + (uint64_t)i);
    fh_write_ref(t, c.arr[i], (void **)&((tnode *)c.arr[i])->next, n);
  }
  void *before = c.arr[5];
  flip(t);
  assert_true(c.arr[5] != before); /* it moved */
  check_old(c.arr);
  for (int i = 0; i < OLD; i++) {
    if (i % 3 != 2) assert_int_equal(((tnode *)c.arr[i])->next->value, 100000u + (uint64_t)i);
    if (i % 2 == 0) assert_int_equal(((tnode *)c.arr[i])->other->value, 200000u + (uint64_t)i);
  }
  fh_stats st;
  fh_get_stats(h, &st);
  assert_int_equal(st.collections, 1);
  assert_int_equal(st.kind_pauses[FH_PAUSE_ROOTS], 1);
  assert_int_equal(st.kind_pauses[FH_PAUSE_REMARK], 1);
  assert_int_equal(st.kind_pauses[FH_PAUSE_FLIP], 1);
  assert_int_equal(st.concurrent_marks_done, 1);
  assert_int_equal(h->cm_split_remarks, 1);
  assert_int_equal(h->cm_split_redone, 0);
  split_finish(&c);
}

/* An old object first hashed between the remark and the flip grows when
 * it moves (the flip computes the forwarding again): same hash after. */
static void test_hashed_in_between(void **state) {
  (void)state;
  split_case c;
  split_setup(&c);
  fh_thread *t = c.t;
  fh_heap *h = c.h;
  mark_and_remark(t);
  cmark_test_between(h);
  uint64_t hash[8];
  void *at[8];
  for (int k = 0; k < 8; k++) {
    at[k] = c.arr[k * 300];
    hash[k] = fh_object_hash(t, at[k]);
    assert_true(hash[k] != 0);
  }
  flip(t);
  assert_int_equal(h->cm_split_redone, 1);
  check_old(c.arr);
  for (int k = 0; k < 8; k++) {
    assert_true(c.arr[k * 300] != at[k]);
    assert_true(fh_object_hash(t, c.arr[k * 300]) == hash[k]);
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  for (int k = 0; k < 8; k++) assert_true(fh_object_hash(t, c.arr[k * 300]) == hash[k]);
  split_finish(&c);
}

/* An old object pinned between the remark and the flip stays where it
 * is: the marker computed the forwarding without pinned ranges, the flip
 * computes it again with them. */
static void test_pinned_in_between(void **state) {
  (void)state;
  split_case c;
  split_setup(&c);
  fh_thread *t = c.t;
  fh_heap *h = c.h;
  mark_and_remark(t);
  void *pinned = c.arr[1000];
  assert_int_equal(fh_pin(t, pinned), 0);
  between_and_flip(&c);
  assert_int_equal(h->cm_split_redone, 1);
  assert_true(c.arr[1000] == pinned);
  check_old(c.arr);
  fh_unpin(t, pinned);
  split_finish(&c);
}

/* Pinned at the remark, unpinned before the flip: the forwarding is left
 * to the flip (nothing to compute again), and the object moves with the
 * rest; one pinned at both stays. */
static void test_unpinned_in_between(void **state) {
  (void)state;
  split_case c;
  split_setup(&c);
  fh_thread *t = c.t;
  fh_heap *h = c.h;
  void *released = c.arr[2000], *kept = c.arr[2500];
  assert_int_equal(fh_pin(t, released), 0);
  assert_int_equal(fh_pin(t, kept), 0);
  mark_and_remark(t);
  fh_unpin(t, released);
  between_and_flip(&c);
  assert_int_equal(h->cm_split_redone, 0);
  assert_true(c.arr[2000] != released);
  assert_true(c.arr[2500] == kept);
  check_old(c.arr);
  fh_unpin(t, kept);
  split_finish(&c);
}

/* The flip marks black itself what the marker did not get to: here it
 * never ran (the test skips cmark_test_between). */
static void test_flip_without_between(void **state) {
  (void)state;
  split_case c;
  split_setup(&c);
  fh_thread *t = c.t;
  mark_and_remark(t);
  for (int i = 0; i < OLD; i += 7) {
    tnode *n = test_node(t, &c.ty, 7u + (uint64_t)i);
    fh_write_ref(t, c.arr[i], (void **)&((tnode *)c.arr[i])->other, n);
  }
  flip(t);
  check_old(c.arr);
  for (int i = 0; i < OLD; i += 7)
    assert_int_equal(((tnode *)c.arr[i])->other->value, 7u + (uint64_t)i);
  split_finish(&c);
}

/* Conservative stack roots: the remark is not split (the flip's stack
 * words would pin what was allocated in between, at the top of the
 * space); it computes the forwarding and flips itself, and an object
 * held only by a stack word stays where it is, intact. */
static void __attribute__((noinline)) conservative_body(split_case *c) {
  fh_thread *t = c->t;
  fh_heap *h = c->h;
  test_cmark_start_cycle(t);
  tnode *volatile black = test_node(t, &c->ty, 77);
  fh_write_ref(t, c->arr[3], (void **)&((tnode *)c->arr[3])->other, black);
  tnode *volatile old = c->arr[1500];
  void *old_at = old, *black_at = black;
  fh_write_ref(t, c->arr[3], (void **)&((tnode *)c->arr[3])->other, NULL);
  while (cmark_test_step(h, 1000)) {
  }
  assert_int_equal(gc_run(t, FH_COLLECT_DEFAULT, GC_CAUSE_REMARK, 0), 0);
  assert_null(h->cm); /* not split */
  fh_gc_wait(h);
  assert_int_equal(h->cm_split_remarks, 0);
  assert_true((void *)old == old_at && (void *)black == black_at);
  assert_int_equal(old->value, 1500);
  assert_int_equal(black->value, 77);
  assert_int_equal(black->check, test_check(77));
}

static void test_conservative_roots(void **state) {
  (void)state;
  split_case c;
  split_setup_with(&c, ",stack_roots=conservative");
  conservative_body(&c);
  check_old(c.arr);
  split_finish(&c);
}

/* An explicit collection between the remark and the flip abandons the
 * cycle (its marking was complete: its sweep and weak processing stand)
 * and collects afresh. */
static void test_collect_in_between(void **state) {
  (void)state;
  split_case c;
  split_setup(&c);
  fh_thread *t = c.t;
  fh_heap *h = c.h;
  mark_and_remark(t);
  tnode *n = test_node(t, &c.ty, 42);
  fh_write_ref(t, c.arr[7], (void **)&((tnode *)c.arr[7])->next, n);
  n = NULL;
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_null(h->cm);
  fh_gc_wait(h);
  assert_int_equal(((tnode *)c.arr[7])->next->value, 42);
  fh_stats st;
  fh_get_stats(h, &st);
  assert_int_equal(st.concurrent_marks_done, st.concurrent_marks);
  assert_int_equal(h->cm_abandoned, 1);
  split_finish(&c);
}

/* fork between the remark and the flip: the parent abandons the cycle
 * first; both sides collect with every object intact. */
static void test_fork_in_between(void **state) {
  (void)state;
  test_skip_under_tsan("fork of a multi-threaded process");
  split_case c;
  split_setup(&c);
  fh_thread *t = c.t;
  fh_heap *h = c.h;
  mark_and_remark(t);
  cmark_test_between(h);
  fh_enter_blocking(t);
  pid_t pid = fork();
  if (pid == 0) {
    test_child_signals(20);
    fh_leave_blocking(t);
    CHILD_CHECK(h->cm == NULL);
    CHILD_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == 0);
    fh_gc_wait(h);
    for (int i = 0; i < OLD; i++) CHILD_CHECK(((tnode *)c.arr[i])->value == (uint64_t)i);
    _exit(0);
  }
  fh_leave_blocking(t);
  assert_true(pid > 0);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_null(h->cm);
  split_finish(&c);
}

/* The real marker splits every remark: mutators rewire, hash, pin-free
 * graphs while cycles mark, remark, compute the forwarding and flip. */
static void rewire_split(const char *rest) {
  if (!test_have_uffd()) test_skip_without_uffd();
  setenv("FH_CC_SPLIT_MIN", "1", 1);
  char spec[256];
  snprintf(spec, sizeof spec, "collector=concurrent_compact,concurrent_mark=1,%s", rest);
  test_rewire_run(spec, 1500);
  unsetenv("FH_CC_SPLIT_MIN");
}

static void test_rewire_split_sigbus(void **state) {
  (void)state;
  rewire_split("uffd_sigbus=1,generational=0,verify=1,heap_max=64M,min_alloc_trigger=1M");
}

static void test_rewire_split_handler_thread(void **state) {
  (void)state;
  rewire_split("uffd_sigbus=0,generational=0,verify=1,heap_max=64M,min_alloc_trigger=1M");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_allocated_in_between),
      cmocka_unit_test(test_hashed_in_between),
      cmocka_unit_test(test_pinned_in_between),
      cmocka_unit_test(test_unpinned_in_between),
      cmocka_unit_test(test_flip_without_between),
      cmocka_unit_test(test_conservative_roots),
      cmocka_unit_test(test_collect_in_between),
      cmocka_unit_test(test_fork_in_between),
      cmocka_unit_test(test_rewire_split_sigbus),
      cmocka_unit_test(test_rewire_split_handler_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
