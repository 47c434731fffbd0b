/* Concurrent marking for collector=concurrent_compact (issue 16): the
 * hiding pattern between two marking steps; black allocation (bump space
 * by the boundary, large and non-moving objects by their bits); an object
 * hashed after the marker scanned it still grows when it moves; a
 * collection requested while marking finishes that cycle and starts no
 * second marker; fork, fh_prefork and heap destruction while marking;
 * allocation into the holes below a pinned top while marking runs;
 * mutators rewiring a graph while cycles mark and flip, verify=1, in both
 * fault modes, with generations, with pins and conservative roots.
 *
 * Deterministic tests set h->cm_manual (no marker task: the test steps the
 * marker with cmark_test_step, and a GC_CAUSE_REMARK collection finishes
 * the cycle).  The suites run with FH_MC_SLIDE=0 (tests/support_heap.c),
 * so even these small heaps flip. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "collectors/collector.h"
#include "collectors/concurrent_mark.h"
#include "collectors/mc.h"
#include "heap/barrier.h"
#include "heap/heap.h"
#include "heap/object.h"
#include "support_heap.h"
#include "support_cmark.h"

/* The moving space's start bit (marked, in this cycle's tables). */
static int cc_marked(fh_heap *h, void *obj) {
  return bitmap_test(&h->mc->t.mark, obj_start(obj));
}

static fh_heap *manual_heap(const char *rest, test_types *ty, fh_thread **t) {
  if (!test_have_uffd()) test_skip_without_uffd();
  char spec[256];
  snprintf(spec, sizeof spec, "concurrent_mark=1,generational=0%s%s", *rest ? "," : "", rest);
  fh_heap *h = test_heap_attached("concurrent_compact", spec, ty, t);
  h->cm_manual = 1;
  return h;
}

/* The hiding pattern: b is scanned, a (gray) holds the only reference to
 * x; the mutator moves it into b and clears a's slot between two marking
 * steps.  The overwritten reference is in the SATB log, and after the
 * remark and the flip x is b's.  With the log entry dropped by hand (a
 * barrier that did not record the store), the marker never reaches x: the
 * loss the barrier guards against. */
static void hide(int break_barrier) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  (void)test_node(t, &ty, 0); /* garbage below: the survivors move */
  tnode *a = test_node(t, &ty, 1), *b = test_node(t, &ty, 2), *x = test_node(t, &ty, 77);
  fh_write_ref(t, a, (void **)&a->next, x);
  FH_PUSH_ROOTS(t, (void **)&a, (void **)&b); /* b is scanned first */
  test_cmark_start_cycle(t);
  assert_non_null(h->cm);
  assert_true(cc_marked(h, a) && cc_marked(h, b) && !cc_marked(h, x));
  assert_int_equal(cmark_test_step(h, 1), 1); /* b scanned: nothing in it */
  assert_false(cc_marked(h, x));
  fh_write_ref(t, b, (void **)&b->next, x);
  fh_write_ref(t, a, (void **)&a->next, NULL);
  x = NULL;
  if (break_barrier) {
    t->satb_n = 0;
    while (cmark_test_step(h, 100)) {
    }
    assert_false(cc_marked(h, b->next)); /* lost, had the remark swept now */
    /* An explicit collection abandons the cycle and marks afresh. */
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    assert_int_equal(b->next->value, 77);
  } else {
    assert_true(t->satb_n >= 1);
    test_cmark_remark(t);
    assert_int_equal(b->next->value, 77);
    assert_int_equal(b->next->check, test_check(77));
    assert_null(a->next);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* verify=1 checks all */
    fh_gc_wait(h);
  }
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_hiding_pattern(void **state) {
  (void)state;
  hide(0);
}

static void test_hiding_pattern_detected(void **state) {
  (void)state;
  hide(1);
}

/* Everything allocated while marking runs is live for the cycle, marked
 * or not: bump objects above the boundary, a large object, a non-moving
 * one; what they hold survives through them. */
static void test_black_allocation(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  tnode *root = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&root);
  (void)test_node(t, &ty, 0);
  test_cmark_start_cycle(t);
  uintptr_t boundary = h->mc->t.old_top;
  tnode *n = test_node(t, &ty, 5), *m = test_node(t, &ty, 6);
  assert_true((uintptr_t)n >= boundary);
  fh_write_ref(t, n, (void **)&n->next, m);
  fh_write_ref(t, root, (void **)&root->next, n);
  void **big = fh_alloc(t, ty.array, 64 << 10); /* large-object space */
  tnode *m2 = test_node(t, &ty, 7);
  fh_write_ref(t, big, &big[3], m2);
  fh_write_ref(t, root, (void **)&root->other, big);
  tnode *nm = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
  nm->value = 8;
  nm->check = test_check(8);
  fh_write_ref(t, m, (void **)&m->other, nm);
  for (int i = 0; i < 1000; i++) (void)test_node(t, &ty, 9); /* black garbage */
  n = m = m2 = nm = NULL;
  big = NULL;
  test_cmark_remark(t);
  fh_stats st;
  fh_get_stats(h, &st);
  assert_int_equal(st.concurrent_marks, 1);
  assert_int_equal(st.kind_pauses[FH_PAUSE_ROOTS], 1);
  assert_int_equal(st.kind_pauses[FH_PAUSE_REMARK], 1);
  assert_int_equal(st.collections, 1);
  assert_int_equal(root->next->value, 5);
  assert_int_equal(root->next->next->value, 6);
  assert_int_equal(root->next->next->other->value, 8);
  assert_int_equal(((tnode *)((void **)root->other)[3])->value, 7);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_int_equal(root->next->next->other->value, 8);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* An object the marker scanned before the mutator hashed it grows when it
 * moves: its hash is the same after the flip. */
static void test_hashed_while_marking(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  (void)test_node(t, &ty, 0); /* garbage: x moves */
  tnode *x = test_node(t, &ty, 3);
  fh_push_root(t, (void **)&x);
  test_cmark_start_cycle(t);
  assert_int_equal(cmark_test_step(h, 1), 1); /* x scanned, not hashed */
  uintptr_t before = (uintptr_t)x;
  uint64_t hash = fh_object_hash(t, x);
  assert_true(hash != 0);
  test_cmark_remark(t);
  assert_true((uintptr_t)x != before); /* it moved */
  assert_true(fh_object_hash(t, x) == hash);
  assert_int_equal(x->value, 3);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_true(fh_object_hash(t, x) == hash);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Objects hashed before the marking began move for the first time in it:
 * the marker makes room for their records as it finds them, so the remark
 * records them without growing the table. */
static void test_growers_records_room(void **state) {
  (void)state;
  enum { N = 3000 };
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  void **arr = fh_alloc(t, ty.array, N * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  uint64_t hash[N];
  for (int i = 0; i < N; i++) {
    (void)test_node(t, &ty, 0); /* garbage: they move */
    tnode *n = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, arr, &arr[i], n);
    hash[i] = fh_object_hash(t, n);
  }
  size_t held = h->hash_vacated.n;
  test_cmark_start_cycle(t);
  while (cmark_test_step(h, 100)) {
  }
  size_t cap = h->hash_vacated.cap;
  assert_true(cap >= held + N);
  test_cmark_remark(t);
  assert_true(h->hash_vacated.cap == cap);
  assert_true(h->hash_vacated.n >= held + N);
  for (int i = 0; i < N; i++) assert_true(fh_object_hash(t, arr[i]) == hash[i]);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_collect_while_marking(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  tnode *keep = test_node(t, &ty, 3);
  fh_push_root(t, (void **)&keep);
  (void)test_node(t, &ty, 4);
  test_cmark_start_cycle(t);
  uint64_t c = h->collections;
  /* Another trigger while marking: it is this cycle's remark; no second
   * marker starts. */
  test_cmark_start_cycle(t);
  assert_null(h->cm);
  assert_int_equal(h->cm_cycles, 1);
  assert_int_equal(h->collections, c);
  fh_gc_wait(h);
  test_cmark_start_cycle(t);
  assert_non_null(h->cm);
  assert_int_equal(h->collections, c + 1);
  /* An explicit collection ends the cycle, then collects. */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_null(h->cm);
  assert_int_equal(h->collections, c + 2);
  fh_gc_wait(h);
  assert_int_equal(keep->value, 3);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Pins and conservative stack words taken again at the remark; weak
 * references and finalizers resolved there. */
static void test_pins_weak_conservative(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  (void)test_node(t, &ty, 0);
  tnode *key = test_node(t, &ty, 1), *val = test_node(t, &ty, 2);
  void *eph = fh_ephemeron_new(t, key, val);
  tnode *live_key = test_node(t, &ty, 3);
  void *eph2 = fh_ephemeron_new(t, live_key, test_node(t, &ty, 4));
  tnode *fin = test_node(t, &ty, 5);
  assert_int_equal(fh_finalizer_attach(t, fin, (void *)0x55), 0);
  tnode *pinned = test_node(t, &ty, 6);
  FH_PUSH_ROOTS(t, &eph, &eph2, (void **)&live_key);
  test_cmark_start_cycle(t);
  while (cmark_test_step(h, 1000)) {
  }
  /* Pinned during marking, after it was allocated and while unreachable
   * but through a root dropped now: the pin keeps it, in place. */
  assert_int_equal(fh_pin(t, pinned), 0);
  uintptr_t pin_addr = (uintptr_t)pinned;
  key = val = fin = NULL;
  test_cmark_remark(t);
  assert_int_equal(((tnode *)pin_addr)->value, 6); /* not moved, not lost */
  assert_null(fh_ephemeron_key(t, eph));
  assert_int_equal(((tnode *)fh_ephemeron_value(t, eph2))->value, 4);
  void *obj, *data;
  assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
  assert_ptr_equal(data, (void *)0x55);
  assert_int_equal(((tnode *)obj)->value, 5);
  obj = NULL;
  fh_unpin(t, (void *)pin_addr);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  fh_pop_roots(t, 3);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* stack_roots=conservative: a reference held only in a local variable
 * during marking (its heap slot cleared; logged, too) survives the remark
 * pinned by the stack word. */
static void __attribute__((noinline)) conservative_body(fh_heap *h, fh_thread *t, test_types *ty) {
  tnode *holder = test_node(t, ty, 1);
  fh_push_root(t, (void **)&holder);
  tnode *local = test_node(t, ty, 42);
  fh_write_ref(t, holder, (void **)&holder->next, local);
  test_cmark_start_cycle(t);
  while (cmark_test_step(h, 100)) {
  }
  tnode *volatile kept = holder->next;
  fh_write_ref(t, holder, (void **)&holder->next, NULL);
  t->satb_n = 0; /* only the stack word keeps it now */
  local = NULL;
  test_cmark_remark(t);
  assert_int_equal(kept->value, 42);
  assert_int_equal(kept->check, test_check(42));
  fh_pop_roots(t, 1);
}

static void test_conservative_roots(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1,stack_roots=conservative", &ty, &t);
  conservative_body(h, t, &ty);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* stack_roots=conservative: the holes a compaction left below a pinned
 * object at the top stay free for the mutators while marking runs, and
 * what they allocate there is marked black, by the marker for the claims
 * a thread has left and at the remark for the rest, as what they allocate
 * above the top is (a claim left unmarked is swept: verify=1 aborts, or
 * the objects read garbage). */
static void test_black_allocation_in_holes(void **state) {
  (void)state;
  enum { N = 4000, M = 20000 };
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1,stack_roots=conservative", &ty, &t);
  void **arr = fh_alloc(t, ty.array, N * sizeof(void *));
  void **more = fh_alloc(t, ty.array, M * sizeof(void *)); /* large: not in the space */
  /* Nodes above the pinned top, live at the first collection and dead
   * when the marking begins: the cycle frees them, and what is allocated
   * above them moves down (a new object hashed after the marker marked
   * it black must grow). */
  void **gone = fh_alloc(t, ty.array, M * sizeof(void *));
  FH_PUSH_ROOTS(t, (void **)&arr, (void **)&more, (void **)&gone);
  for (int i = 0; i < 20000; i++) (void)test_node(t, &ty, 0); /* 640 KiB dead */
  tnode *top = test_node(t, &ty, 2);
  assert_int_equal(fh_pin(t, top), 0);
  for (int i = 0; i < M; i++) fh_write_ref(t, gone, &gone[i], test_node(t, &ty, 1));
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_true(atomic_load(&h->bump[h->active].has_holes));
  gone = NULL;
  test_cmark_start_cycle(t);
  assert_non_null(h->cm);
  assert_true(atomic_load(&h->bump[h->active].has_holes)); /* kept for the marking */
  while (cmark_test_step(h, 100)) { /* scanned: the remark does not scan them again */
  }
  /* Stored into empty slots: the SATB log has no old value to mark, and
   * nothing but arr and more reaches them at the remark. */
  size_t below = 0;
  for (uint64_t i = 0; i < N; i++) {
    (void)test_node(t, &ty, 0); /* black garbage between */
    tnode *n = test_node(t, &ty, 10 + i);
    below += (uintptr_t)n < (uintptr_t)top;
    fh_write_ref(t, arr, &arr[i], n);
  }
  assert_true(below > N / 2); /* in the holes, not above the pinned top */
  /* More than the holes hold: the rest above the top, in claims too. */
  size_t above = 0;
  for (uint64_t i = 0; i < M; i++) {
    (void)test_node(t, &ty, 0);
    tnode *n = test_node(t, &ty, 100000 + i);
    above += (uintptr_t)n > (uintptr_t)top;
    fh_write_ref(t, more, &more[i], n);
  }
  assert_true(above > M / 2);
  /* The claims this thread has left (many TLABs, in holes and above the
   * top) are marked black by the marker now, the one it still holds in
   * the remark. */
  assert_int_equal(cmark_test_step(h, 1), 0);
  bump_space *b = &h->bump[h->active];
  size_t early = 0, in_holes = 0;
  for (size_t i = 0; i < b->nclaims; i++) {
    early += b->claims[i].state == BUMP_CLAIM_MARKED;
    in_holes += b->claims[i].lo < (uintptr_t)top;
  }
  assert_true(in_holes >= 2 && b->nclaims > in_holes + 2);
  assert_true(early + 1 == b->nclaims);
  assert_false(b->claims_lost);
  /* Hashed after the marker marked them: they still grow when they move
   * (the first hash logs them), in holes and above the top alike. */
  uint64_t *hash = malloc((N + M) * sizeof *hash);
  uintptr_t *was = malloc((N + M) * sizeof *was);
  assert_true(hash && was);
  for (size_t i = 0; i < N + M; i++) {
    was[i] = (uintptr_t)(i < N ? arr[i] : more[i - N]);
    hash[i] = fh_object_hash(t, (void *)was[i]);
  }
  test_cmark_remark(t);
  fh_gc_wait(h);
  size_t moved_above = 0; /* the ones the bug left without their hash words */
  for (uint64_t i = 0; i < N + M; i++) {
    const tnode *n = i < N ? arr[i] : more[i - N];
    uint64_t v = i < N ? 10 + i : 100000 + (i - N);
    assert_int_equal(n->value, v);
    assert_int_equal(n->check, test_check(v));
    assert_int_equal(fh_object_hash(t, n), hash[i]);
    moved_above += was[i] > (uintptr_t)top && (uintptr_t)n != was[i];
  }
  assert_true(moved_above > M / 4);
  free(hash);
  free(was);
  fh_unpin(t, top);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* verify=1 checks all */
  fh_gc_wait(h);
  fh_pop_roots(t, 3);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- mutators rewiring a graph while cycles mark and flip ---- */

static void rewire_run(const char *rest, int ms) {
  if (!test_have_uffd()) test_skip_without_uffd();
  char spec[256];
  snprintf(spec, sizeof spec, "collector=concurrent_compact,concurrent_mark=1,%s", rest);
  test_rewire_run(spec, ms);
}

static void test_rewire_sigbus(void **state) {
  (void)state;
  rewire_run("uffd_sigbus=1,generational=0,verify=1,heap_max=64M,min_alloc_trigger=1M", 1500);
}

static void test_rewire_handler_thread(void **state) {
  (void)state;
  rewire_run("uffd_sigbus=0,generational=0,verify=1,heap_max=64M,min_alloc_trigger=1M", 1500);
}

/* Generations: young collections stop the world between concurrent full
 * cycles, the cards stay the remembered set (verify=1 checks them after
 * every young collection). */
static void test_rewire_generational(void **state) {
  (void)state;
  rewire_run("generational=1,verify=1,heap_max=24M,min_alloc_trigger=512K", 1500);
}

/* Conservative roots: the holes stay in use while marking runs, and the
 * marker marks the claims there and above the top black (objects hashed
 * after that must still grow when they move). */
static void test_rewire_conservative(void **state) {
  (void)state;
  rewire_run("stack_roots=conservative,generational=0,verify=1,heap_max=64M,min_alloc_trigger=1M",
             1500);
}

static void test_rewire_fast(void **state) {
  (void)state;
  rewire_run("generational=0,heap_max=64M,min_alloc_trigger=2M", 1000);
}

/* ---- lifecycle ---- */

static void test_destroy_while_marking(void **state) {
  (void)state;
  if (!test_have_uffd()) test_skip_without_uffd();
  test_cmark_destroy_while_marking("concurrent_compact",
                                   "concurrent_mark=1,generational=0,heap_max=128M");
}

static void test_fork_while_marking(void **state) {
  (void)state;
  if (!test_have_uffd()) test_skip_without_uffd();
  test_cmark_fork_while_marking("concurrent_compact",
                                "concurrent_mark=1,generational=0,heap_max=64M,verify=1");
}

static void test_prefork_while_marking(void **state) {
  (void)state;
  if (!test_have_uffd()) test_skip_without_uffd();
  test_cmark_prefork_while_marking("concurrent_compact", "concurrent_mark=1,generational=0,verify=1");
}

/* The public way to start the cycle the trigger would: fh_collect returns
 * after the roots pause, the real marker's remark ends the cycle. */
static void test_triggered_kind(void **state) {
  (void)state;
  if (!test_have_uffd()) test_skip_without_uffd();
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("concurrent_compact", "concurrent_mark=1,generational=0,verify=1",
                                  &ty, &t);
  void **arr = fh_alloc(t, ty.array, 1000 * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  for (int i = 0; i < 1000; i++) {
    (void)test_node(t, &ty, 0);
    fh_write_ref(t, arr, &arr[i], test_node(t, &ty, (uint64_t)i));
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_TRIGGERED), 0);
  fh_stats st;
  fh_get_stats(h, &st);
  assert_int_equal(st.concurrent_marks, 1);
  fh_enter_blocking(t); /* the remark stops the world without us */
  for (int i = 0; i < 20000 && !st.kind_pauses[FH_PAUSE_REMARK]; i++) {
    usleep(500);
    fh_get_stats(h, &st);
  }
  fh_leave_blocking(t);
  assert_int_equal(st.kind_pauses[FH_PAUSE_REMARK], 1);
  fh_gc_wait(h);
  for (int i = 0; i < 1000; i++) assert_int_equal(((tnode *)arr[i])->value, (uint64_t)i);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_dump_says_on(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("", &ty, &t);
  test_cmark_start_cycle(t);
  test_cmark_remark(t);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  fh_dump(h, f);
  fclose(f);
  assert_non_null(strstr(buf, "concurrent marking: on; 1 cycles"));
  /* its compaction weighed pauses, as learned (collectors/mc_policy.h) */
  assert_non_null(strstr(buf, "last cycle (marked concurrently) chose to"));
  free(buf);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hiding_pattern),
      cmocka_unit_test(test_hiding_pattern_detected),
      cmocka_unit_test(test_black_allocation),
      cmocka_unit_test(test_hashed_while_marking),
      cmocka_unit_test(test_growers_records_room),
      cmocka_unit_test(test_collect_while_marking),
      cmocka_unit_test(test_pins_weak_conservative),
      cmocka_unit_test(test_conservative_roots),
      cmocka_unit_test(test_black_allocation_in_holes),
      cmocka_unit_test(test_prefork_while_marking),
      cmocka_unit_test(test_dump_says_on),
      cmocka_unit_test(test_triggered_kind),
      cmocka_unit_test(test_destroy_while_marking),
      cmocka_unit_test(test_fork_while_marking),
      cmocka_unit_test(test_rewire_sigbus),
      cmocka_unit_test(test_rewire_handler_thread),
      cmocka_unit_test(test_rewire_generational),
      cmocka_unit_test(test_rewire_conservative),
      cmocka_unit_test(test_rewire_fast),
  };
  const char *only = getenv("FH_TEST_FILTER"); /* e.g. "test_rewire_*" */
  if (only) cmocka_set_test_filter(only);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
