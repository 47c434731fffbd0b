/* The large-object space (issue 19), under every collector configuration
 * of support_configs.c: a large object keeps its address through every
 * collection kind while its slots follow the objects they refer to; a
 * dead one is freed and its pages go back to the kernel; large objects
 * count in heap_max; interior stack words and pins keep them; weak
 * references, finalizers and the identity hash work on them; fh_prefork,
 * fork() and images keep them; one holding nothing collectable is not
 * scanned until a store dirties its card; several mutators allocate them while
 * collections run (verify=1); a failing madvise leaves the heap usable. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "heap/heap.h"
#include "heap/sys.h"
#include "spaces/reserve.h"
#include "support_configs.h"

static int in_los(fh_heap *h, const void *p) {
  return h->los.space.ops && los_contains(&h->los, p);
}

static void churn(fh_thread *t, const test_types *ty, int n) {
  for (int i = 0; i < n; i++) test_node(t, ty, 0xdead);
}

static void collect_wait(const test_config *c, fh_heap *h, fh_thread *t, int i) {
  test_config_collect(c, t, i);
  fh_gc_wait(h);
}

enum { SLOTS = 4096 }; /* a 32 KiB reference array: above the 12 KiB threshold */

/* ---- survival, address, slots ---- */

static void survive_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  void **arr = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  assert_non_null(arr);
  fh_push_root(t, (void **)&arr);
  assert_true(in_los(h, arr));
  assert_int_equal((uintptr_t)obj_header(arr) % FH_PAGE, 0);
  assert_int_equal(fh_object_size(arr), SLOTS * sizeof(void *));
  unsigned char *blob = fh_alloc(t, ty.bytes, 1 << 20);
  assert_non_null(blob);
  fh_push_root(t, (void **)&blob);
  assert_true(in_los(h, blob));
  for (size_t i = 0; i < (1 << 20); i++) assert_int_equal(blob[i], 0); /* zeroed */
  for (size_t i = 0; i < (1 << 20); i++) blob[i] = (unsigned char)(i * 13);
  for (size_t i = 0; i < SLOTS; i++) {
    churn(t, &ty, 2); /* garbage between the referents: compaction moves them */
    tnode *n = test_node(t, &ty, i);
    fh_write_ref(t, arr, &arr[i], n);
  }
  void *where = arr, *blob_at = blob, *first = arr[0];
  size_t moved = 0;
  for (int round = 0; round < 4; round++) {
    churn(t, &ty, 3000);
    collect_wait(cfg, h, t, round);
    assert_ptr_equal(arr, where);
    assert_ptr_equal(blob, blob_at);
    for (size_t i = 0; i < SLOTS; i++) {
      tnode *n = arr[i];
      assert_int_equal(n->value, i);
      assert_int_equal(n->check, test_check(i));
    }
    if (arr[0] != first) moved++;
  }
  for (size_t i = 0; i < (1 << 20); i += 4093) assert_int_equal(blob[i], (unsigned char)(i * 13));
  assert_true(moved > 0); /* every configuration has a moving kind */
  fh_pop_roots(t, 2);
  test_config_teardown(h, t);
}

/* ---- a dead one is freed, its pages given back ---- */

static void freed_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  size_t used0 = atomic_load(&h->los.used);
  size_t n = 4u << 20;
  unsigned char *big = fh_alloc(t, ty.bytes, n);
  assert_non_null(big);
  memset(big, 0x5a, n);
  uintptr_t lo = obj_start(big), hi = lo + los_object_bytes(n);
  assert_int_equal(atomic_load(&h->los.used), used0 + (hi - lo));
  assert_true(reserve_resident(lo, hi) >= n);
  size_t before = heap_used_bytes(h);
  big = NULL; /* unreachable: precise roots only */
  collect_wait(cfg, h, t, 0);
  collect_wait(cfg, h, t, 1);
  assert_int_equal(atomic_load(&h->los.used), used0);
  assert_true(heap_used_bytes(h) + n <= before);
  assert_int_equal(reserve_resident(lo, hi), 0); /* the kernel has the pages */
  assert_false(los_is_start(&h->los, lo));
  /* The pages come back zeroed. */
  unsigned char *again = fh_alloc(t, ty.bytes, n);
  assert_non_null(again);
  assert_ptr_equal(obj_start(again), lo);
  for (size_t i = 0; i < n; i += 511) assert_int_equal(again[i], 0);
  test_config_teardown(h, t);
}

/* ---- heap_max ---- */

static void heap_max_under(const test_config *cfg) {
  char rest[160];
  snprintf(rest, sizeof rest, "heap_max=16M%s", cfg->extra);
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(cfg->collector, rest, &ty, &t);
  void **keep = fh_alloc(t, ty.array, 64 * sizeof(void *));
  assert_non_null(keep);
  fh_push_root(t, (void **)&keep);
  size_t n = 0;
  for (; n < 64; n++) {
    void *o = fh_alloc(t, ty.bytes, 1 << 20);
    if (!o) break;
    fh_write_ref(t, keep, &keep[n], o);
  }
  assert_true(n >= 8 && n < 16);
  assert_non_null(strstr(fh_last_error(), "heap full"));
  assert_true(heap_used_bytes(h) <= (16u << 20));
  assert_true(atomic_load(&h->los.used) <= (16u << 20));
  /* Dropped, they make room again. */
  for (size_t i = 0; i < n; i++) keep[i] = NULL;
  assert_non_null(fh_alloc(t, ty.bytes, 8u << 20));
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

/* ---- interior stack words and pins ---- */

enum { INSIDE = 50000 };

__attribute__((noinline)) static unsigned char *make_large(fh_thread *t, const test_types *ty) {
  unsigned char *a = fh_alloc(t, ty->bytes, 100000);
  if (!a) return NULL;
  for (int i = 0; i < 100000; i++) a[i] = (unsigned char)(i * 7);
  return a + INSIDE;
}

static void conservative_and_pins_under(const test_config *cfg) {
  char extra[160];
  snprintf(extra, sizeof extra, "%s,stack_roots=conservative", cfg->extra);
  test_config c = *cfg;
  c.extra = extra;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(&c, &ty, &t);
  unsigned char *volatile mid = make_large(t, &ty);
  assert_non_null(mid);
  assert_true(in_los(h, (void *)mid));
  /* Pinned (free: it never moves anyway), and reachable from nothing. */
  void *pinned = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  assert_non_null(pinned);
  assert_int_equal(fh_pin(t, pinned), 0);
  uintptr_t pinned_at = (uintptr_t)pinned;
  pinned = NULL;
  size_t used = atomic_load(&h->los.used);
  for (int i = 0; i < 4; i++) {
    churn(t, &ty, 2000);
    collect_wait(&c, h, t, i);
  }
  unsigned char *a = mid - INSIDE;
  for (int i = 0; i < 100000; i += 97) assert_int_equal(a[i], (unsigned char)(i * 7));
  assert_int_equal(atomic_load(&h->los.used), used);
  assert_true(los_is_start(&h->los, obj_start((void *)pinned_at)));
  fh_unpin(t, (void *)pinned_at);
  test_config_teardown(h, t);
}

/* ---- ephemerons, finalizers, identity hash ---- */

static void weak_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  void **roots = fh_alloc(t, ty.array, 4 * sizeof(void *));
  assert_non_null(roots);
  fh_push_root(t, (void **)&roots);
  void *live_key = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  fh_write_ref(t, roots, &roots[0], live_key);
  void *dead_key = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  assert_true(in_los(h, live_key) && in_los(h, dead_key));
  void *e1 = fh_ephemeron_new(t, live_key, test_node(t, &ty, 1));
  assert_non_null(e1);
  fh_write_ref(t, roots, &roots[1], e1);
  void *e2 = fh_ephemeron_new(t, dead_key, test_node(t, &ty, 2));
  assert_non_null(e2);
  fh_write_ref(t, roots, &roots[2], e2);
  uint64_t hash = fh_object_hash(t, live_key);
  assert_true(hash != 0);
  unsigned char *fin = fh_alloc(t, ty.bytes, 65536);
  assert_non_null(fin);
  for (int i = 0; i < 65536; i++) fin[i] = (unsigned char)i;
  assert_int_equal(fh_finalizer_attach(t, fin, (void *)0x77), 0);
  uintptr_t fin_at = (uintptr_t)fin;
  live_key = dead_key = e1 = e2 = NULL;
  fin = NULL;
  churn(t, &ty, 1000);
  collect_wait(cfg, h, t, 0);
  e1 = roots[1];
  e2 = roots[2];
  assert_ptr_equal(fh_ephemeron_key(t, e1), roots[0]);
  assert_int_equal(((tnode *)fh_ephemeron_value(t, e1))->value, 1);
  assert_null(fh_ephemeron_key(t, e2)); /* its key died: cleared */
  assert_null(fh_ephemeron_value(t, e2));
  void *obj, *data;
  assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
  assert_ptr_equal(obj, (void *)fin_at); /* never moved */
  assert_ptr_equal(data, (void *)0x77);
  for (int i = 0; i < 65536; i += 7) assert_int_equal(((unsigned char *)obj)[i], (unsigned char)i);
  obj = NULL;
  for (int i = 1; i < 4; i++) {
    churn(t, &ty, 1000);
    collect_wait(cfg, h, t, i);
    assert_int_equal(fh_object_hash(t, roots[0]), hash);
  }
  assert_false(los_is_start(&h->los, fin_at - FH_HEADER_BYTES)); /* finalized, then freed */
  assert_int_equal(atomic_load(&h->los.objects), 1);
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

/* ---- quiet large objects: nothing to scan until a store ---- */

static void quiet_under(const test_config *cfg) {
  char extra[160];
  snprintf(extra, sizeof extra, "%s,tag_immediate_mask=1", cfg->extra);
  test_config c = *cfg;
  c.extra = extra;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(&c, &ty, &t);
  void **a = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  assert_non_null(a);
  fh_push_root(t, (void **)&a);
  /* Fixnums (odd words) and NULLs: nothing a collection marks or moves. */
  for (size_t i = 0; i < SLOTS; i += 2) fh_write_ref(t, a, &a[i], (void *)(2 * i + 1));
  int round = 0;
  for (; round < 2; round++) collect_wait(&c, h, t, round);
  assert_true(los_is_quiet(&h->los, a));
  for (int pass = 0; pass < 2; pass++) {
    /* A store makes it scanned again: the new node survives and follows
     * every move (garbage below it, so that sliding moves it too). */
    churn(t, &ty, 1000);
    tnode *n = test_node(t, &ty, 777);
    fh_write_ref(t, a, &a[5], n);
    n = NULL;
    void *first = a[5];
    int moved = 0;
    for (int k = 0; k < 4; k++, round++) {
      churn(t, &ty, 3000);
      collect_wait(&c, h, t, round);
      assert_int_equal(((tnode *)a[5])->value, 777);
      assert_int_equal(((tnode *)a[5])->check, test_check(777));
      assert_false(los_is_quiet(&h->los, a));
      moved |= a[5] != first;
    }
    if (!moved) fail_msg("%s%s: the node never moved", c.collector, c.extra);
    /* Cleared, it settles quiet again. */
    fh_write_ref(t, a, &a[5], NULL);
    for (int k = 0; k < 2; k++, round++) collect_wait(&c, h, t, round);
    assert_true(los_is_quiet(&h->los, a));
    for (size_t i = 0; i < SLOTS; i += 2) assert_ptr_equal(a[i], (void *)(2 * i + 1));
  }
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

#define PER_CONFIG(name)                                                     \
  static void test_##name(void **s) {                                       \
    (void)s;                                                                \
    for (size_t i = 0; i < test_nconfigs; i++) name##_under(&test_configs[i]); \
  }
PER_CONFIG(survive)
PER_CONFIG(freed)
PER_CONFIG(heap_max)
PER_CONFIG(conservative_and_pins)
PER_CONFIG(weak)
PER_CONFIG(quiet)

/* ---- fh_prefork and fork() ---- */

static const char *const collectors[] = {"semispace", "mark_compact", "concurrent_compact",
                                         "mark_sweep"};

static int array_ok(void **arr, size_t n, uint64_t base) {
  for (size_t i = 0; i < n; i++) {
    tnode *x = arr[i];
    if (!x || x->value != base + i || x->check != test_check(base + i)) return 0;
  }
  return 1;
}

/* fh_prefork copies a large object into the zygote like any other live
 * object, but a pinned one stays where it is, kept alive by the zygote
 * object that refers to it (its card), and dies once that reference goes. */
static void prefork_under(const char *collector) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=64M,verify=1", &ty, &t);
  tnode *holder = test_node(t, &ty, 42);
  fh_push_root(t, (void **)&holder);
  void **a = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  void **b = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  assert_true(a && b && in_los(h, a) && in_los(h, b));
  for (size_t i = 0; i < SLOTS; i++) {
    fh_write_ref(t, a, &a[i], test_node(t, &ty, 100000 + i));
    fh_write_ref(t, b, &b[i], test_node(t, &ty, i));
  }
  fh_write_ref(t, holder, (void **)&holder->other, a); /* only the holder keeps them */
  fh_write_ref(t, holder, (void **)&holder->next, b);
  assert_int_equal(fh_pin(t, b), 0);
  void *at = b;
  a = b = NULL;
  assert_int_equal(fh_prefork(t), 0);
  fh_postfork_parent(h);
  fh_gc_wait(h);
  assert_true(zygote_space_present(&h->zygote) && space_contains(&h->zygote.space, holder));
  assert_true(space_contains(&h->zygote.space, holder->other)); /* copied */
  assert_true(array_ok((void **)holder->other, SLOTS, 100000));
  assert_ptr_equal(holder->next, at); /* pinned: stayed */
  assert_int_equal(atomic_load(&h->los.objects), 1); /* the copied one's pages went back */
  b = (void **)holder->next;
  assert_true(space_contains(&h->zygote.space, b[0])); /* its referents were copied */
  assert_true(array_ok(b, SLOTS, 0));
  /* A new object stored in it after the freeze survives too. */
  tnode *fresh = test_node(t, &ty, 0);
  fh_write_ref(t, b, &b[0], fresh);
  fresh = NULL;
  b = NULL;
  for (int r = 0; r < 4; r++) {
    churn(t, &ty, 3000);
    assert_int_equal(fh_collect(t, test_collect_kind(collector, r)), 0);
    fh_gc_wait(h);
    assert_ptr_equal(holder->next, at);
    assert_true(array_ok(at, SLOTS, 0));
  }
  /* fork(): the child collects, checks and allocates large objects. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    test_child_signals(60);
    fh_postfork_child(h);
    for (int r = 0; r < 3; r++) {
      void *o = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
      CHILD_CHECK(o != NULL && in_los(h, o));
      CHILD_CHECK(fh_collect(t, test_collect_kind(collector, r)) == 0);
      fh_gc_wait(h);
      CHILD_CHECK(holder->next == at && array_ok(at, SLOTS, 0));
      CHILD_CHECK(array_ok((void **)holder->other, SLOTS, 100000));
    }
    _exit(0);
  }
  fh_postfork_parent(h);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  test_assert_child_ok(st, collector);
  /* Unpinned and dropped by the zygote holder, it dies. */
  fh_unpin(t, at);
  fh_write_ref(t, holder, (void **)&holder->next, NULL);
  assert_int_equal(fh_collect(t, test_collect_kind(collector, 0)), 0);
  fh_gc_wait(h);
  assert_int_equal(atomic_load(&h->los.objects), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_prefork_fork(void **s) {
  (void)s;
  test_skip_under_tsan("fork() of a multi-threaded process");
  for (size_t i = 0; i < sizeof collectors / sizeof *collectors; i++) {
    if (!strcmp(collectors[i], "concurrent_compact") && !test_have_uffd()) continue;
    prefork_under(collectors[i]);
  }
}

/* ---- images ---- */

static void test_image(void **s) {
  (void)s;
  char path[] = "/tmp/fh_los_imageXXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    if (!strcmp(collectors[c], "concurrent_compact") && !test_have_uffd()) continue;
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collectors[c], "heap_max=32M,verify=1", &ty, &t);
    void **arr = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
    assert_non_null(arr);
    for (size_t i = 0; i < SLOTS; i++) fh_write_ref(t, arr, &arr[i], test_node(t, &ty, 9 + i));
    void *roots[1] = {arr};
    assert_int_equal(fh_image_save(t, path, roots, 1), 0);
    test_config_teardown(h, t);

    char spec[256];
    snprintf(spec, sizeof spec, "heap_max=32M,verify=1,image_path=%s", path);
    h = test_heap_attached(collectors[c], spec, &ty, &t);
    void **loaded;
    assert_int_equal(fh_image_roots(h, &loaded), 1);
    assert_true(array_ok(loaded[0], SLOTS, 9));
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    assert_true(array_ok(loaded[0], SLOTS, 9));
    test_config_teardown(h, t);
  }
  unlink(path);
}

/* ---- several mutators ---- */

typedef struct stress_ctx {
  fh_heap *h;
  const test_types *ty;
  int id;
  _Atomic int *failed;
} stress_ctx;

static void *stress_main(void *arg) {
  stress_ctx *c = arg;
  fh_thread *t = fh_thread_attach(c->h);
  void **keep = fh_alloc(t, c->ty->array, 8 * sizeof(void *));
  fh_push_root(t, (void **)&keep);
  for (int i = 0; i < 150 && !atomic_load(c->failed); i++) {
    size_t n = 2048 + (size_t)(i % 5) * 1024; /* 16-48 KiB: large */
    void **a = fh_alloc(t, c->ty->array, n * sizeof(void *));
    if (!a) {
      fprintf(stderr, "stress %d: %s\n", c->id, fh_last_error());
      atomic_store(c->failed, 1);
      break;
    }
    fh_push_root(t, (void **)&a);
    for (size_t k = 0; k < n; k += 64)
      fh_write_ref(t, a, &a[k], test_node(t, c->ty, (uint64_t)c->id * 1000000 + k));
    fh_pop_roots(t, 1);
    void **old = keep[i % 8];
    if (old) {
      size_t m = fh_object_size(old) / sizeof(void *);
      for (size_t k = 0; k < m; k += 64) {
        tnode *x = old[k];
        if (!x || x->value != (uint64_t)c->id * 1000000 + k ||
            x->check != test_check(x->value)) {
          fprintf(stderr, "stress %d: slot %zu of a kept large array is wrong\n", c->id, k);
          atomic_store(c->failed, 1);
        }
      }
    }
    fh_write_ref(t, keep, &keep[i % 8], a);
    for (int k = 0; k < 50; k++) test_node(t, c->ty, 0);
    fh_safepoint(t);
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

static void stress_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  _Atomic int failed = 0;
  enum { N = 3 };
  stress_ctx ctx[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    ctx[i] = (stress_ctx){h, &ty, i + 1, &failed};
    assert_int_equal(pthread_create(&th[i], NULL, stress_main, &ctx[i]), 0);
  }
  for (int i = 0; i < 6; i++) {
    fh_enter_blocking(t);
    usleep(2000);
    fh_leave_blocking(t);
    test_config_collect(cfg, t, i);
  }
  fh_enter_blocking(t);
  for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
  fh_leave_blocking(t);
  fh_gc_wait(h);
  assert_int_equal(atomic_load(&failed), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  assert_int_equal(atomic_load(&h->los.objects), 0); /* their threads' roots are gone */
  test_config_teardown(h, t);
}

static void test_stress(void **s) {
  (void)s;
  for (size_t i = 0; i < test_nconfigs; i++) stress_under(&test_configs[i]);
}

/* ---- a failing madvise; options ---- */

static void test_discard_fails(void **s) {
  (void)s;
  for (size_t c = 0; c < test_nconfigs; c++) {
    const test_config *cfg = &test_configs[c];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(cfg, &ty, &t);
    unsigned char *big = fh_alloc(t, ty.bytes, 2u << 20);
    assert_non_null(big);
    memset(big, 0x33, 2u << 20);
    uintptr_t lo = obj_start(big);
    big = NULL;
    sys_fault_arm(SYS_MADVISE, 1, 1, ENOMEM);
    int rc = fh_collect(t, cfg->kinds[0]);
    fh_gc_wait(h);
    sys_fault_disarm();
    /* Either the collection went through (the pages zeroed by hand) or it
     * refused cleanly, saying why; the next one works. */
    if (rc < 0) assert_true(fh_last_error()[0] != 0);
    assert_int_equal(fh_collect(t, cfg->kinds[0]), 0);
    fh_gc_wait(h);
    assert_false(los_is_start(&h->los, lo));
    assert_true(h->los.discard_failures > 0 || rc < 0);
    unsigned char *again = fh_alloc(t, ty.bytes, 2u << 20);
    assert_non_null(again);
    for (size_t i = 0; i < (2u << 20); i += 4096) assert_int_equal(again[i], 0);
    test_config_teardown(h, t);
  }
}

/* Every mmap of heap creation failing in turn: the heap is made or refused
 * with a reason, and the space's own maps say it is theirs. */
static void test_create_faults(void **s) {
  (void)s;
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, "collector=mark_compact,heap_max=64M"), 0);
  sys_fault_arm(SYS_MMAP, 0, 0, 0); /* count only */
  fh_heap *h = fh_heap_create(&o);
  uint64_t calls = sys_fault_calls(SYS_MMAP);
  sys_fault_disarm();
  assert_non_null(h);
  fh_heap_destroy(h);
  int named = 0;
  for (uint64_t n = 1; n <= calls; n++) {
    fh_clear_error();
    sys_fault_arm(SYS_MMAP, n, 0, ENOMEM);
    h = fh_heap_create(&o);
    sys_fault_disarm();
    if (h) {
      fh_heap_destroy(h);
      continue;
    }
    assert_true(fh_last_error()[0] != 0);
    if (strstr(fh_last_error(), "large object space")) named++;
  }
  assert_true(named > 0);
  /* And it works again. */
  h = fh_heap_create(&o);
  assert_non_null(h);
  fh_heap_destroy(h);
}

static void test_options(void **s) {
  (void)s;
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(o.los_threshold, 12 * 1024);
  assert_int_equal(fh_options_parse(&o, "los_threshold=100"), -1);
  assert_non_null(strstr(fh_last_error(), "los_threshold"));
  /* 0: no large-object space; a large array is a bump-space object. */
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "los_threshold=0", &ty, &t);
  void *a = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  assert_non_null(a);
  assert_false(in_los(h, a));
  assert_true(heap_in_bump(h, h->active, a));
  test_config_teardown(h, t);
  /* A higher threshold: 32 KiB stays in the bump space, 64 KiB does not. */
  h = test_heap_attached("semispace", "los_threshold=64k", &ty, &t);
  assert_false(in_los(h, fh_alloc(t, ty.array, SLOTS * sizeof(void *))));
  assert_true(in_los(h, fh_alloc(t, ty.bytes, 65536)));
  test_config_teardown(h, t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_survive),
      cmocka_unit_test(test_freed),
      cmocka_unit_test(test_heap_max),
      cmocka_unit_test(test_conservative_and_pins),
      cmocka_unit_test(test_weak),
      cmocka_unit_test(test_quiet),
      cmocka_unit_test(test_prefork_fork),
      cmocka_unit_test(test_image),
      cmocka_unit_test(test_stress),
      cmocka_unit_test(test_discard_fails),
      cmocka_unit_test(test_create_faults),
      cmocka_unit_test(test_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
