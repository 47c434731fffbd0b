/* Finalization in every collector: unreachable finalizable objects (and
 * what they reference) are kept alive and queued once per record; they can
 * be resurrected and re-attached; their ephemerons stay while they are
 * queued; native memory is freed from finalizers; notify fires when the
 * queue fills; fh_prefork refuses a non-empty queue. */
#include <pthread.h>
#include <sys/wait.h>
#include <string.h>

#include "heap/heap.h"
#include "support_configs.h"

/* Node i with a child whose value is test_check(i): both must survive
 * finalization intact. */
static tnode *finalizable(fh_thread *t, const test_types *ty, uint64_t i) {
  tnode *n = test_node(t, ty, i);
  fh_push_root(t, (void **)&n);
  tnode *child = test_node(t, ty, test_check(i));
  fh_write_ref(t, n, (void **)&n->other, child);
  assert_int_equal(fh_finalizer_attach(t, n, (void *)(uintptr_t)(i + 1)), 0);
  fh_pop_roots(t, 1);
  return n;
}

static void test_unreachable_are_queued_once(void **st) {
  (void)st;
  enum { N = 400 };
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    void **keep = fh_alloc(t, ty.array, N * sizeof(void *));
    fh_push_root(t, (void **)&keep);
    for (int i = 0; i < N; i++) {
      tnode *n = finalizable(t, &ty, (uint64_t)i);
      if (i % 2) fh_write_ref(t, keep, &keep[i], n);
      test_node(t, &ty, 99); /* garbage in between */
    }
    void *obj, *data;
    assert_int_equal(fh_finalizer_pop(t, &obj, &data), 0);
    test_config_collect(c, t, 0);
    static uint8_t seen[N];
    memset(seen, 0, sizeof seen);
    int popped = 0;
    while (fh_finalizer_pop(t, &obj, &data)) {
      tnode *n = obj;
      size_t i = (uintptr_t)data - 1;
      assert_true(i < N && i % 2 == 0 && !seen[i]);
      seen[i] = 1;
      assert_int_equal(n->value, i); /* kept alive, with what it references */
      assert_int_equal(n->check, test_check(i));
      assert_non_null(n->other);
      assert_int_equal(n->other->value, test_check(i));
      popped++;
    }
    assert_int_equal(popped, N / 2);
    /* Dropped again after popping: gone, and never queued twice. */
    test_config_collect(c, t, 1);
    assert_int_equal(fh_finalizer_pop(t, &obj, &data), 0);
    /* The survivors' records stayed: dropping them queues them now. */
    for (int i = 1; i < N; i += 2) fh_write_ref(t, keep, &keep[i], NULL);
    test_config_collect(c, t, 0);
    popped = 0;
    while (fh_finalizer_pop(t, &obj, &data)) {
      assert_int_equal(((tnode *)obj)->value, (uintptr_t)data - 1);
      assert_true(((uintptr_t)data - 1) % 2 == 1);
      popped++;
    }
    assert_int_equal(popped, N / 2);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

static void test_resurrect_and_reattach(void **st) {
  (void)st;
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    void *saved = NULL;
    fh_push_root(t, &saved);
    finalizable(t, &ty, 5);
    for (int round = 0; round < 3; round++) {
      test_config_collect(c, t, round);
      void *obj, *data;
      assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
      assert_int_equal((uintptr_t)data, 6);
      saved = obj; /* resurrected for good */
      test_config_collect(c, t, round + 1);
      assert_int_equal(((tnode *)saved)->other->value, test_check(5));
      assert_int_equal(fh_finalizer_pop(t, &obj, &data), 0);
      assert_int_equal(fh_finalizer_attach(t, saved, (void *)(uintptr_t)6), 0);
      saved = NULL;
    }
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* An object kept alive for finalization keeps its ephemerons. */
static void test_finalizable_key_keeps_its_ephemeron(void **st) {
  (void)st;
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    void *e = NULL, *v = NULL;
    fh_push_root(t, &e);
    fh_push_root(t, &v);
    tnode *k = finalizable(t, &ty, 3);
    fh_push_root(t, (void **)&k);
    v = test_node(t, &ty, 33);
    e = fh_ephemeron_new(t, k, v);
    fh_pop_roots(t, 1);
    v = NULL; /* the value lives through e only */
    test_config_collect(c, t, 0);
    void *obj, *data;
    assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
    assert_ptr_equal(fh_ephemeron_key(t, e), obj);
    tnode *val = fh_ephemeron_value(t, e);
    assert_non_null(val);
    assert_int_equal(val->value, 33);
    obj = NULL;
    test_config_collect(c, t, 1); /* now the key is garbage: the ephemeron clears */
    assert_null(fh_ephemeron_key(t, e));
    assert_null(fh_ephemeron_value(t, e));
    fh_pop_roots(t, 2);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* A "file port": an object whose record's data is an fh_malloc buffer
 * that only the finalizer frees. */
static size_t native_used(fh_heap *h) {
  fh_stats s;
  fh_get_stats(h, &s);
  for (unsigned i = 0; i < s.nspaces; i++)
    if (strstr(s.spaces[i].name, "native")) return s.spaces[i].used;
  fail_msg("no native space in the statistics");
  return 0;
}

static void test_finalizers_free_native_memory(void **st) {
  (void)st;
  enum { N = 1000, BUF = 4096 };
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    size_t before = native_used(h);
    for (int i = 0; i < N; i++) {
      tnode *port = test_node(t, &ty, (uint64_t)i);
      void *buf = fh_malloc(h, BUF);
      assert_non_null(buf);
      assert_int_equal(fh_finalizer_attach(t, port, buf), 0);
    }
    assert_true(native_used(h) >= before + (size_t)N * BUF);
    test_config_collect(c, t, 0);
    void *obj, *data;
    int closed = 0;
    while (fh_finalizer_pop(t, &obj, &data)) {
      fh_free(h, data);
      closed++;
    }
    assert_int_equal(closed, N);
    assert_true(native_used(h) <= before + BUF);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

static int notified;
static fh_heap *notify_heap;
static fh_thread *notify_thread;
static int popped_in_notify;
static void on_queue(fh_heap *h, void *user) {
  assert_ptr_equal(h, notify_heap);
  assert_ptr_equal(user, &notified);
  notified++;
  void *obj, *data;
  /* Outside the pause: the queue can be drained from here. */
  while (fh_finalizer_pop(notify_thread, &obj, &data)) popped_in_notify++;
}

static void test_notify_when_the_queue_fills(void **st) {
  (void)st;
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    notify_heap = h, notify_thread = t, notified = 0, popped_in_notify = 0;
    fh_set_finalizer_notify(h, on_queue, &notified);
    test_config_collect(c, t, 0);
    assert_int_equal(notified, 0); /* nothing queued */
    for (int i = 0; i < 10; i++) finalizable(t, &ty, (uint64_t)i);
    test_config_collect(c, t, 1);
    assert_int_equal(notified, 1);
    assert_int_equal(popped_in_notify, 10);
    /* Triggered collections notify too. */
    for (int i = 0; i < 20000 && notified < 2; i++) {
      if (i % 100 == 0) finalizable(t, &ty, (uint64_t)i);
      else assert_non_null(fh_alloc(t, ty.bytes, 1024)); /* 20 MB: the trigger fires */
    }
    fh_gc_wait(h);
    assert_int_equal(notified, 2);
    fh_set_finalizer_notify(h, NULL, NULL);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

static void test_prefork_refuses_a_waiting_queue(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("concurrent_compact", "heap_max=32M,verify=1", &ty, &t);
  finalizable(t, &ty, 1);
  tnode *live = test_node(t, &ty, 2);
  fh_push_root(t, (void **)&live);
  assert_int_equal(fh_finalizer_attach(t, live, NULL), 0);
  assert_int_equal(fh_prefork(t), -1);
  assert_non_null(strstr(fh_last_error(), "wait for finalization"));
  void *obj, *data;
  assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
  assert_int_equal(((tnode *)obj)->value, 1);
  assert_int_equal(fh_prefork(t), 0);
  fh_postfork_parent(h);
  /* live is a zygote object now: never collected, never finalized. */
  assert_int_equal(live->value, 2);
  fh_pop_roots(t, 1);
  live = NULL;
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_int_equal(fh_finalizer_pop(t, &obj, &data), 0);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A plain fork(): both processes hold the record, and each finalizes its
 * own copy of the object when it dies there. */
static void test_fork_each_process_finalizes(void **st) {
  (void)st;
  test_skip_under_tsan("jemalloc's fork handler holds more locks than TSan tracks");
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("concurrent_compact", "heap_max=32M,verify=1", &ty, &t);
  finalizable(t, &ty, 9); /* unreachable at once */
  pid_t pid = fork();
  if (pid == 0) {
    test_child_signals(20);
    void *obj, *data;
    CHILD_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == 0);
    fh_gc_wait(h);
    CHILD_CHECK(fh_finalizer_pop(t, &obj, &data) == 1);
    CHILD_CHECK((uintptr_t)data == 10 && ((tnode *)obj)->value == 9);
    CHILD_CHECK(((tnode *)obj)->other->value == test_check(9));
    _exit(0);
  }
  assert_true(pid > 0);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  test_assert_child_ok(status, "the child's finalization");
  test_config_collect(&test_configs[3], t, 0);
  void *obj, *data;
  assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
  assert_int_equal((uintptr_t)data, 10);
  assert_int_equal(fh_finalizer_pop(t, &obj, &data), 0);
  test_config_teardown(h, t);
}

static void test_bad_input(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=16M", &ty, &t);
  int local;
  assert_int_equal(fh_finalizer_attach(t, &local, NULL), -1);
  assert_non_null(strstr(fh_last_error(), "not an object"));
  assert_int_equal(fh_finalizer_attach(NULL, &local, NULL), -1);
  assert_int_equal(fh_finalizer_attach(t, NULL, NULL), -1);
  void *obj;
  assert_int_equal(fh_finalizer_pop(t, &obj, NULL), 0);
  assert_non_null(strstr(fh_last_error(), "NULL"));
  fh_set_finalizer_notify(NULL, NULL, NULL);
  assert_non_null(strstr(fh_last_error(), "NULL"));
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Threads attach finalizers and pop the shared queue while they collect:
 * every record is popped exactly once, by one of them. */
typedef struct shared {
  fh_heap *h;
  const test_config *c;
  test_types ty;
  _Atomic unsigned popped[3 * 600];
  int failed;
} shared;

static void *worker(void *arg) {
  shared *s = arg;
  static _Atomic unsigned next_id;
  fh_thread *t = fh_thread_attach(s->h);
  for (int i = 0; i < 600; i++) {
    unsigned id = atomic_fetch_add(&next_id, 1) % (3 * 600);
    tnode *n = test_node(t, &s->ty, id);
    if (fh_finalizer_attach(t, n, (void *)(uintptr_t)(id + 1)) != 0) s->failed = 1;
    if (i % 150 == 0 && fh_collect(t, s->c->kinds[i % 2]) != 0) s->failed = 1;
    void *obj, *data;
    while (fh_finalizer_pop(t, &obj, &data)) {
      if (((tnode *)obj)->value != (uintptr_t)data - 1) s->failed = 1;
      atomic_fetch_add(&s->popped[(uintptr_t)data - 1], 1);
    }
  }
  fh_thread_detach(t);
  return NULL;
}

static void test_several_threads(void **st) {
  (void)st;
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    static shared s;
    memset(&s, 0, sizeof s);
    s.c = &test_configs[ci];
    char spec[256];
    snprintf(spec, sizeof spec, "collector=%s,heap_max=64M,verify=1%s", s.c->collector,
             s.c->extra);
    s.h = test_heap(spec);
    test_register(s.h, &s.ty);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&th[i], NULL, worker, &s), 0);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    fh_thread *t = fh_thread_attach(s.h);
    assert_int_equal(fh_collect(t, s.c->kinds[0]), 0);
    fh_gc_wait(s.h);
    void *obj, *data;
    while (fh_finalizer_pop(t, &obj, &data)) atomic_fetch_add(&s.popped[(uintptr_t)data - 1], 1);
    assert_false(s.failed);
    for (int i = 0; i < 3 * 600; i++) assert_int_equal(s.popped[i], 1);
    fh_thread_detach(t);
    fh_heap_destroy(s.h);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unreachable_are_queued_once),
      cmocka_unit_test(test_resurrect_and_reattach),
      cmocka_unit_test(test_finalizable_key_keeps_its_ephemeron),
      cmocka_unit_test(test_finalizers_free_native_memory),
      cmocka_unit_test(test_notify_when_the_queue_fills),
      cmocka_unit_test(test_prefork_refuses_a_waiting_queue),
      cmocka_unit_test(test_fork_each_process_finalizes),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_several_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
