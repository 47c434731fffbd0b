/* Mostly-copying semispace (collectors/semi_fixed.h): a cycle with pinned
 * objects copies everything else to the other half and leaves the pinned
 * objects where they are, as islands of the idle half; the next cycle lays
 * its copy around them.  Every heap here runs verify=1, which checks the
 * idle half's islands and every reference into them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heap/heap.h"
#include "support_heap.h"

#define MiB ((size_t)1 << 20)

static int in_half(fh_heap *h, int i, const void *p) { return heap_in_bump(h, i, p); }

/* The capability: pinned objects stay, the rest is copied (before, a cycle
 * that met a pin slid the active half in place and copied nothing). */
static void copies_around_pins(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("semispace", "verify=1", &ty, &t);
  void **keep = fh_alloc(t, ty.array, 64 * sizeof(void *));
  fh_push_root(t, (void **)&keep);
  for (int i = 0; i < 64; i++) {
    for (int g = 0; g < 5; g++) test_node(t, &ty, 999); /* garbage between */
    fh_write_ref(t, keep, &keep[i], test_node(t, &ty, (uint64_t)i));
  }
  tnode *pinned = keep[10];
  assert_int_equal(fh_pin(t, pinned), 0);
  int half = h->active;
  void *other = keep[11];
  assert_true(in_half(h, half, pinned) && in_half(h, half, other));
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_ptr_equal(keep[10], pinned);
  assert_int_equal(h->active, !half);
  assert_true(in_half(h, !half, keep[11]) && in_half(h, !half, keep));
  assert_ptr_not_equal(keep[11], other);
  assert_true(in_half(h, half, pinned)); /* an island of the idle half */
  assert_true(h->semi_idle_bytes > 0);
  /* Pinned through more cycles: the copy goes around it when its half is
   * to-space, and it stays. */
  for (int r = 0; r < 5; r++) {
    for (int g = 0; g < 2000; g++) test_node(t, &ty, 7);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    assert_ptr_equal(keep[10], pinned);
    for (int i = 0; i < 64; i++) {
      tnode *n = keep[i];
      assert_int_equal(n->value, (uint64_t)i);
      assert_int_equal(n->check, test_check((uint64_t)i));
    }
  }
  /* Unpinned: the next cycle but one copies it (the first keeps the
   * island it lies in, if its half is to-space). */
  fh_unpin(t, pinned);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_ptr_not_equal(keep[10], pinned);
  assert_int_equal(((tnode *)keep[10])->value, 10);
  assert_int_equal(h->semi_idle_bytes, 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* An island holds the only reference to objects that move: they are
 * copied and its slot updated, for several cycles; and a collection of
 * another kind asked for meanwhile (mark-compact, mark-sweep), which
 * knows nothing of the idle half, runs as semispace. */
static void island_refers_to_moving(void **state) {
  (void)state;
  static const fh_collect_kind kinds[] = {FH_COLLECT_DEFAULT, FH_COLLECT_MARK_COMPACT,
                                          FH_COLLECT_MARK_SWEEP, FH_COLLECT_SEMISPACE};
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("semispace", "verify=1", &ty, &t);
  tnode *head = test_node(t, &ty, 0);
  assert_int_equal(fh_pin(t, head), 0); /* pinned, and so a root */
  tnode *prev = head;
  fh_push_root(t, (void **)&prev);
  for (int i = 1; i < 500; i++) {
    test_node(t, &ty, 5); /* garbage */
    tnode *n = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, prev, (void **)&prev->next, n);
    prev = n;
  }
  fh_pop_roots(t, 1);
  for (int r = 0; r < 8; r++) {
    for (int g = 0; g < 1000; g++) test_node(t, &ty, 9);
    assert_int_equal(fh_collect(t, kinds[r % 4]), 0);
    fh_gc_wait(h);
    int i = 0;
    for (tnode *n = head; n; n = n->next, i++) {
      assert_int_equal(n->value, (uint64_t)i);
      assert_int_equal(n->check, test_check((uint64_t)i));
    }
    assert_int_equal(i, 500);
  }
  fh_unpin(t, head);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- several mutator threads, pins held for a few cycles each ---- */

enum { MT_THREADS = 3, MT_NODES = 400, MT_ROUNDS = 40, MT_PIN_EVERY = 7 };

typedef struct mt_arg {
  fh_heap *h;
  const test_types *ty;
  int id;
  char bad[160];
} mt_arg;

static void *mt_main(void *p) {
  mt_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  void **arr = fh_alloc(t, a->ty->array, MT_NODES * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  tnode *pinned[MT_NODES] = {0};
  for (int r = 0; r < MT_ROUNDS && !a->bad[0]; r++) {
    for (int i = 0; i < MT_NODES; i++) {
      uint64_t v = (uint64_t)a->id << 32 | (uint64_t)r << 16 | (uint64_t)i;
      if (i % 3 != r % 3 && arr[i]) continue; /* a third replaced per round */
      if (pinned[i]) {
        fh_unpin(t, pinned[i]);
        pinned[i] = NULL;
      }
      test_node(t, a->ty, 1); /* garbage */
      tnode *n = test_node(t, a->ty, v);
      fh_write_ref(t, arr, &arr[i], n);
      if ((i + r) % MT_PIN_EVERY == 0) {
        if (fh_pin(t, n) != 0) {
          snprintf(a->bad, sizeof a->bad, "fh_pin failed: %s", fh_last_error());
          break;
        }
        pinned[i] = n;
      }
    }
    if (r % 4 == a->id) fh_collect(t, FH_COLLECT_DEFAULT);
    for (int i = 0; i < MT_NODES && !a->bad[0]; i++) {
      tnode *n = arr[i];
      if (pinned[i] && (void *)pinned[i] != (void *)n)
        snprintf(a->bad, sizeof a->bad, "thread %d: pinned node %d moved", a->id, i);
      else if (n->check != test_check(n->value) || (n->value & 0xffff) != (uint64_t)i)
        snprintf(a->bad, sizeof a->bad, "thread %d: node %d corrupt", a->id, i);
    }
  }
  for (int i = 0; i < MT_NODES; i++)
    if (pinned[i]) fh_unpin(t, pinned[i]);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

static void threads_pin_across_cycles(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=semispace,heap_max=64M,verify=1,min_alloc_trigger=256K");
  test_types ty;
  test_register(h, &ty);
  mt_arg args[MT_THREADS];
  pthread_t th[MT_THREADS];
  for (int k = 0; k < MT_THREADS; k++) {
    args[k] = (mt_arg){.h = h, .ty = &ty, .id = k};
    assert_int_equal(pthread_create(&th[k], NULL, mt_main, &args[k]), 0);
  }
  for (int k = 0; k < MT_THREADS; k++) pthread_join(th[k], NULL);
  for (int k = 0; k < MT_THREADS; k++)
    if (args[k].bad[0]) fail_msg("%s", args[k].bad);
  assert_true(h->semi_mostly_copying > 0);
  fh_heap_destroy(h);
}

/* ---- read(2) into a pinned buffer while collections run ---- */

enum { RD_CHUNK = 4096, RD_CHUNKS = 24 };

typedef struct rd_arg {
  fh_heap *h;
  const test_types *ty;
  int fd;
  uint8_t *buf; /* published once pinned */
  volatile int ready;
  char bad[160];
} rd_arg;

static void *rd_main(void *p) {
  rd_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  uint8_t *buf = fh_alloc(t, a->ty->bytes, RD_CHUNK * RD_CHUNKS);
  if (!buf || fh_pin(t, buf) != 0) {
    snprintf(a->bad, sizeof a->bad, "alloc/pin failed");
    a->ready = 1;
    fh_thread_detach(t);
    return NULL;
  }
  a->buf = buf;
  __atomic_store_n(&a->ready, 1, __ATOMIC_RELEASE);
  /* Blocked in read(2) while other threads collect: the kernel writes into
   * the pinned buffer whichever half is active meanwhile. */
  fh_enter_blocking(t);
  size_t got = 0;
  while (got < (size_t)RD_CHUNK * RD_CHUNKS) {
    ssize_t n = read(a->fd, buf + got, (size_t)RD_CHUNK * RD_CHUNKS - got);
    if (n <= 0) {
      snprintf(a->bad, sizeof a->bad, "read: %zd after %zu bytes", n, got);
      break;
    }
    got += (size_t)n;
  }
  fh_leave_blocking(t);
  for (size_t i = 0; i < got && !a->bad[0]; i++)
    if (buf[i] != (uint8_t)(i * 7 + i / RD_CHUNK))
      snprintf(a->bad, sizeof a->bad, "byte %zu wrong", i);
  fh_unpin(t, buf);
  fh_thread_detach(t);
  return NULL;
}

static void read_into_pinned_across_collections(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("semispace", "verify=1,los_threshold=0", &ty, &t);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  rd_arg a = {.h = h, .ty = &ty, .fd = fds[0]};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, rd_main, &a), 0);
  while (!__atomic_load_n(&a.ready, __ATOMIC_ACQUIRE)) usleep(100);
  uint8_t *seen = a.buf;
  static uint8_t chunk[RD_CHUNK];
  for (int c = 0; c < RD_CHUNKS && !a.bad[0]; c++) {
    for (int g = 0; g < 500; g++) test_node(t, &ty, 3);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    for (size_t i = 0; i < RD_CHUNK; i++) {
      size_t at = (size_t)c * RD_CHUNK + i;
      chunk[i] = (uint8_t)(at * 7 + at / RD_CHUNK);
    }
    assert_int_equal(write(fds[1], chunk, RD_CHUNK), RD_CHUNK);
  }
  pthread_join(th, NULL);
  if (a.bad[0]) fail_msg("%s", a.bad);
  assert_ptr_equal(a.buf, seen);
  close(fds[0]);
  close(fds[1]);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- heap_max counts the objects kept in the idle half ---- */

/* Half of the live data pinned, filled until the heap refuses, collected;
 * then all of it dropped and the heap filled again, three times: the pinned half stays in the idle half each
 * time, beside a full active half and its copy room.  Without counting
 * the idle half's islands (heap_bump_room) the active half outgrew its
 * share and the collection was refused: to-space could not hold the copy
 * beside the islands. */
static void heap_max_with_islands(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("semispace", "heap_max=16M,verify=1", &ty, &t);
  enum { CAP = 8192 };
  void **arr = fh_alloc(t, ty.array, CAP * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  static void *pinned[CAP];
  for (int round = 0; round < 3; round++) {
    /* The last round's objects die, pins and all. */
    for (size_t i = 0; i < CAP; i++) {
      if (pinned[i]) fh_unpin(t, pinned[i]);
      pinned[i] = NULL;
      arr[i] = NULL;
    }
    size_t n = 0;
    for (; n < CAP; n++) {
      void *o = fh_alloc(t, ty.bytes, 4000);
      if (!o) break;
      fh_write_ref(t, arr, &arr[n], o);
      if (n % 2 == (size_t)round % 2) {
        assert_int_equal(fh_pin(t, o), 0);
        pinned[n] = o;
      }
    }
    assert_true(n > 1000 && n < CAP);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    size_t resident = test_spaces_resident(h);
    fprintf(stderr, "round %d: %zu objects of 4000 bytes (half pinned), %zu KiB resident, "
                    "%zu KiB in the idle half\n", round, n, resident >> 10, h->semi_idle_bytes >> 10);
    assert_true(resident <= 16 * MiB + 2 * MiB);
    assert_true(heap_used_bytes(h) <= 16 * MiB);
    for (size_t i = 0; i < n; i++)
      if (pinned[i]) assert_ptr_equal(arr[i], pinned[i]);
  }
  for (size_t i = 0; i < CAP; i++)
    if (pinned[i]) fh_unpin(t, pinned[i]);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(copies_around_pins),
      cmocka_unit_test(island_refers_to_moving),
      cmocka_unit_test(threads_pin_across_cycles),
      cmocka_unit_test(read_into_pinned_across_collections),
      cmocka_unit_test(heap_max_with_islands),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
