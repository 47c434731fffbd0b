/* Identity hashes (fh_object_hash): stable across 100 collections of every
 * kind each collector's heap runs, across fh_prefork + fork (child and
 * parent) and image save/load, with verify=1 and with mutator threads
 * hashing concurrently; never shared by two live objects, in particular
 * not by an object allocated or moved where a hashed object used to be;
 * objects in the non-moving, zygote and image spaces; bad arguments. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/heap.h"
#include "heap/identity_hash.h"
#include "heap/image_format.h"
#include "support_heap.h"

static const char *const collectors[] = {"semispace", "gen_semispace", "mark_compact", "concurrent_compact",
                                         "mark_sweep"};
#define NCOLLECTORS (sizeof collectors / sizeof collectors[0])

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* No two of the n values equal (sorts a copy). */
static void assert_distinct(const uint64_t *v, size_t n) {
  uint64_t *s = malloc(n * sizeof *s);
  assert_non_null(s);
  memcpy(s, v, n * sizeof *s);
  qsort(s, n, sizeof *s, cmp_u64);
  for (size_t i = 1; i < n; i++)
    if (s[i] == s[i - 1]) fail_msg("two live objects share hash %llx", (unsigned long long)s[i]);
  free(s);
}

/* ---- stable across 100 collections of every kind ---------------------- */

#define RING 1500

static void check_ring(fh_thread *t, const test_ring *g, const uint64_t *hashes) {
  for (size_t i = 0; i < g->n; i++) {
    tnode *x = g->arr[i];
    assert_int_equal(x->value, i);
    assert_int_equal(x->check, test_check(i));
    assert_ptr_equal(x->next, g->arr[(i + 1) % g->n]);
    if (hashes[i]) assert_int_equal(fh_object_hash(t, x), hashes[i]);
  }
}

static void stable_for(const char *collector) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=32M,verify=1", &ty, &t);
  test_ring g;
  test_ring_build(t, &ty, &g, RING, 5, 2);
  uint64_t *hashes = calloc(RING + 1, sizeof *hashes); /* + the array's */
  assert_non_null(hashes);
  uint64_t arr_hash = fh_object_hash(t, g.arr);
  assert_int_not_equal(arr_hash, 0);
  for (int round = 0; round < 100; round++) {
    /* Hash a few more each round: objects hashed in every state. */
    for (size_t i = (size_t)round % 10; i < RING; i += 10 + (size_t)round % 7)
      if (!hashes[i]) hashes[i] = fh_object_hash(t, g.arr[i]);
    for (int k = 0; k < 300; k++) test_node(t, &ty, 0); /* garbage between */
    assert_int_equal(fh_collect(t, test_collect_kind(collector, round)), 0);
    if (round % 10 == 9) {
      fh_gc_wait(h);
      check_ring(t, &g, hashes);
    }
    assert_int_equal(fh_object_hash(t, g.arr), arr_hash);
  }
  fh_gc_wait(h);
  check_ring(t, &g, hashes);
  size_t n = 0;
  for (size_t i = 0; i < RING; i++)
    if (hashes[i]) hashes[n++] = hashes[i];
  hashes[n++] = arr_hash;
  assert_distinct(hashes, n);
  free(hashes);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_stable_semispace(void **st) { (void)st, stable_for("semispace"); }
static void test_stable_gen_semispace(void **st) { (void)st, stable_for("gen_semispace"); }
static void test_stable_mark_compact(void **st) { (void)st, stable_for("mark_compact"); }
static void test_stable_concurrent(void **st) { (void)st, stable_for("concurrent_compact"); }
static void test_stable_mark_sweep(void **st) { (void)st, stable_for("mark_sweep"); }

/* ---- address reuse ------------------------------------------------------ */

/* Object A is hashed, then moved away by collection kind k; objects are
 * allocated (and collected) until one of them lies where A was hashed.
 * That object's hash must differ from A's (and all live hashes differ). */
static void reuse_for(const char *collector, fh_collect_kind k) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=32M,verify=1", &ty, &t);
  enum { SLOTS = 8192 };
  void **r = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  assert_non_null(r);
  fh_push_root(t, (void **)&r);
  int mallocs = h->has_malloc_spaces;
  size_t small = mallocs ? 8 : 0; /* payload: 16-byte objects there, 8 here */
  for (int i = 0; i < 300; i++) assert_non_null(fh_alloc(t, ty.bytes, 40)); /* garbage below A */
  void *a = fh_alloc(t, ty.bytes, small);
  assert_non_null(a);
  fh_write_ref(t, r, &r[0], a);
  uintptr_t where = (uintptr_t)a;
  uint64_t ha = fh_object_hash(t, a);
  assert_int_not_equal(ha, 0);
  size_t bi = 0, filled = 1; /* b = r[bi] (0: not found yet) */
  for (int round = 0; round < 12 && !bi; round++) {
    assert_int_equal(fh_collect(t, k), 0);
    fh_gc_wait(h);
    assert_int_equal(fh_object_hash(t, r[0]), ha);
    for (size_t i = 1; i < filled && !bi; i++)
      if ((uintptr_t)r[i] == where) bi = i;
    for (; filled < SLOTS && !bi; filled++) {
      void *e = fh_alloc(t, ty.bytes, small);
      assert_non_null(e);
      fh_write_ref(t, r, &r[filled], e);
      if ((uintptr_t)e == where) bi = filled;
    }
  }
  if (!bi) fail_msg("%s/%d: no object landed where the hashed one was", collector, (int)k);
  uint64_t hb = fh_object_hash(t, r[bi]);
  assert_int_not_equal(hb, 0);
  assert_int_not_equal(hb, ha);
  /* Both keep their hashes through more collections. */
  for (int round = 0; round < 4; round++) {
    assert_int_equal(fh_collect(t, round % 2 ? k : FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    assert_int_equal(fh_object_hash(t, r[0]), ha);
    assert_int_equal(fh_object_hash(t, r[bi]), hb);
  }
  /* Everyone hashed: all distinct, a, b and the ones around them. */
  uint64_t *v = malloc(filled * sizeof *v);
  assert_non_null(v);
  size_t n = 0;
  for (size_t i = 0; i < filled; i++) v[n++] = fh_object_hash(t, r[i]);
  assert_distinct(v, n);
  free(v);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_reuse_semispace(void **st) {
  (void)st;
  reuse_for("semispace", FH_COLLECT_SEMISPACE);
}
static void test_reuse_mark_compact(void **st) {
  (void)st;
  reuse_for("mark_compact", FH_COLLECT_MARK_COMPACT);
}
static void test_reuse_concurrent(void **st) {
  (void)st;
  if (!test_have_uffd()) print_message("no userfaultfd: runs as mark_compact\n");
  reuse_for("concurrent_compact", FH_COLLECT_CONCURRENT_COMPACT);
}
static void test_reuse_hspace(void **st) {
  (void)st;
  reuse_for("mark_sweep", FH_COLLECT_HSPACE_COMPACT);
}

/* The salt a second object hashed where a moved one was hashed is not 0:
 * the mechanism seen from inside (the reuse tests see it from outside). */
static void test_salt_skips_reserved_key(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=16M", &ty, &t);
  /* Garbage below A, more than a page: the compacted top (page-aligned)
   * ends below where A was, so new objects reach that address. */
  for (int i = 0; i < 300; i++) assert_non_null(fh_alloc(t, ty.bytes, 40));
  void *a = fh_alloc(t, ty.bytes, 0);
  fh_push_root(t, &a);
  uintptr_t where = (uintptr_t)a;
  uint64_t ha = fh_object_hash(t, a);
  assert_int_equal(hdr_salt(*obj_header(a)), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  assert_true((uintptr_t)a != where);
  assert_true(*obj_header(a) & FH_HDR_HASH_MOVED);
  assert_int_equal(fh_object_hash(t, a), ha);
  assert_int_equal(h->hash_vacated.n, 1);
  assert_int_equal(h->hash_vacated.items[0].data, idhash_make_key(where, 0));
  void *b = NULL;
  for (int i = 0; i < 4096 && !b; i++) {
    void *e = fh_alloc(t, ty.bytes, 0);
    if ((uintptr_t)e == where) b = e;
  }
  assert_non_null(b);
  uint64_t hb = fh_object_hash(t, b);
  assert_int_equal(hdr_salt(*obj_header(b)), 1);
  assert_int_equal(hb, idhash_mix(idhash_make_key(where, 1)));
  assert_int_not_equal(hb, ha);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* The records that keep moved objects' old keys reserved go with their
 * objects: the table does not grow with objects that died. */
static void records_for(const char *collector, fh_collect_kind k) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=16M", &ty, &t);
  enum { NOBJ = 1000 };
  void **arr = fh_alloc(t, ty.array, NOBJ * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  for (size_t i = 0; i < NOBJ; i++) {
    void *x = fh_alloc(t, ty.bytes, 16);
    fh_write_ref(t, arr, &arr[i], x);
    fh_alloc(t, ty.bytes, 16); /* garbage: sliding moves them too */
    fh_object_hash(t, x);
  }
  size_t before = h->hash_vacated.n;
  assert_int_equal(fh_collect(t, k), 0);
  fh_gc_wait(h);
  assert_true(h->hash_vacated.n >= before + NOBJ);
  for (size_t i = 0; i < NOBJ; i += 2) fh_write_ref(t, arr, &arr[i], NULL);
  assert_int_equal(fh_collect(t, k), 0);
  fh_gc_wait(h);
  assert_true(h->hash_vacated.n <= before + NOBJ / 2 + 1);
  fh_pop_roots(t, 1);
  assert_int_equal(fh_collect(t, k), 0);
  fh_gc_wait(h);
  assert_true(h->hash_vacated.n <= before + 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_records_follow_objects(void **st) {
  (void)st;
  for (size_t c = 0; c < NCOLLECTORS; c++)
    records_for(collectors[c], strcmp(collectors[c], "mark_sweep") == 0
                                   ? FH_COLLECT_HSPACE_COMPACT /* the one that moves there */
                                   : FH_COLLECT_DEFAULT);
}

/* ---- the inline path ----------------------------------------------------
 * fh_object_hash answers an already hashed object inline (faultheap_inline.h)
 * from its header; verify=1 turns that path off, so the tests above check
 * the out-of-line one.  Here, without verify: objects of the moving space
 * hashed in place and after moves (their key in the hash word), a
 * non-moving and a large object, each compared with the slow path and with
 * its first hash at every collection, and the inline path seen to answer. */
static void inline_path_for(const char *collector) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=32M", &ty, &t);
  test_ring g;
  test_ring_build(t, &ty, &g, RING, 5, 2);
  void *nm = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
  void *big = fh_alloc(t, ty.bytes, 64 << 10); /* above los_threshold */
  assert_true(nm && big);
  fh_push_root(t, &nm);
  fh_push_root(t, &big);
  uint64_t *hashes = calloc(RING, sizeof *hashes);
  assert_non_null(hashes);
  uint64_t hnm = fh_object_hash(t, nm), hbig = fh_object_hash(t, big);
  size_t inline_answers = 0;
  for (int round = 0; round < 30; round++) {
    for (size_t i = (size_t)round % 5; i < RING; i += 5 + (size_t)round % 3)
      if (!hashes[i]) hashes[i] = fh_object_hash(t, g.arr[i]);
    for (int k = 0; k < 300; k++) test_node(t, &ty, 0);
    assert_int_equal(fh_collect(t, test_collect_kind(collector, round)), 0);
    fh_gc_wait(h);
    for (size_t i = 0; i < RING; i++) {
      if (!hashes[i]) continue;
      void *x = g.arr[i];
      assert_int_equal(fh_object_hash(t, x), hashes[i]);
      assert_int_equal(fh_object_hash_slow(t, x), hashes[i]);
      if (fh__object_header(x) & FH__HDR_HASHED) inline_answers++;
    }
    assert_int_equal(fh_object_hash(t, nm), hnm);
    assert_int_equal(fh_object_hash_slow(t, nm), hnm);
    assert_int_equal(fh_object_hash(t, big), hbig);
  }
  assert_true(inline_answers > 0);
  free(hashes);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_inline_path(void **st) {
  (void)st;
  for (size_t c = 0; c < NCOLLECTORS; c++) inline_path_for(collectors[c]);
}

/* ---- spaces that never move -------------------------------------------- */

static void test_nonmoving_objects(void **st) {
  (void)st;
  for (size_t c = 0; c < NCOLLECTORS; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collectors[c], "heap_max=16M,verify=1", &ty, &t);
    void *x = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
    assert_non_null(x);
    fh_push_root(t, &x);
    void *before = x;
    uint64_t hx = fh_object_hash(t, x);
    for (int round = 0; round < 10; round++) {
      assert_int_equal(fh_collect(t, test_collect_kind(collectors[c], round)), 0);
      fh_gc_wait(h);
      assert_ptr_equal(x, before);
      assert_int_equal(*obj_header(x) & FH_HDR_HASH_BITS, FH_HDR_HASHED);
      assert_int_equal(fh_object_hash(t, x), hx);
    }
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* ---- growers of every size, across page boundaries ----------------------
 * Objects of random sizes (some with a trace callback, read through the
 * from-space copy on pages holding growers), hashed at random with garbage
 * between them: the hash words of sliding compaction land everywhere on
 * and across pages, and every payload byte must survive. */

typedef struct mobj {
  struct mobj *ref; /* the next object, through the trace callback or offset 0 */
  uint64_t index;
  /* then payload bytes derived from index */
} mobj;

static void mobj_trace(void *obj, size_t payload, fh_visit_fn visit, void *ctx) {
  (void)payload;
  visit((void **)&((mobj *)obj)->ref, ctx);
}

static uint8_t mobj_byte(uint64_t index, size_t k) { return (uint8_t)(index * 131 + k * 7); }

#define MIXED 3000

static void mixed_for(const char *collector) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=32M,verify=1", &ty, &t);
  static const uint32_t ref0[] = {0};
  uint32_t plain = fh_register_type(h, &(fh_type){.name = "mobj", .nrefs = 1, .ref_offsets = ref0});
  uint32_t traced = fh_register_type(h, &(fh_type){.name = "mobj_traced", .trace = mobj_trace});
  assert_true(plain && traced);
  void **arr = fh_alloc(t, ty.array, MIXED * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  uint64_t *hashes = calloc(MIXED, sizeof *hashes);
  size_t *sizes = calloc(MIXED, sizeof *sizes);
  unsigned r = 12345;
  for (size_t i = 0; i < MIXED; i++) {
    r = r * 1103515245u + 12345u;
    size_t n = sizeof(mobj) + (r >> 8) % (i % 50 == 0 ? 9000 : 600);
    n &= ~(size_t)7;
    mobj *x = fh_alloc(t, (r >> 4) % 3 == 0 ? traced : plain, n);
    assert_non_null(x);
    x->index = i;
    for (size_t k = sizeof(mobj); k < n; k++) ((uint8_t *)x)[k] = mobj_byte(i, k);
    sizes[i] = n;
    fh_write_ref(t, arr, &arr[i], x);
    if (i) fh_write_ref(t, x, (void **)&x->ref, arr[i - 1]);
    fh_alloc(t, ty.bytes, (r >> 12) % 300); /* garbage */
  }
  for (int round = 0; round < 12; round++) {
    for (size_t i = 0; i < MIXED; i++) {
      r = r * 1103515245u + 12345u;
      if (!hashes[i] && (r >> 10) % 4 == 0) hashes[i] = fh_object_hash(t, arr[i]);
    }
    for (int k = 0; k < 500; k++) fh_alloc(t, ty.bytes, (size_t)k % 200); /* garbage */
    /* Drop a few objects so that the survivors slide. */
    for (size_t i = (size_t)round; i < MIXED; i += 97)
      if (i + 1 < MIXED && !hashes[i]) {
        mobj *x = arr[i + 1];
        fh_write_ref(t, x, (void **)&x->ref, NULL);
        fh_write_ref(t, arr, &arr[i], NULL);
      }
    assert_int_equal(fh_collect(t, test_collect_kind(collector, round)), 0);
    /* Odd rounds read while a concurrent compaction still builds pages:
     * the reads fault them in (built by this thread or the handler). */
    if (round % 2 == 0) fh_gc_wait(h);
    size_t moved = 0;
    for (size_t i = 0; i < MIXED; i++) {
      mobj *x = arr[i];
      if (x && (*obj_header(x) & FH_HDR_HASH_MOVED)) moved++;
      if (!x) continue;
      assert_int_equal(x->index, i);
      assert_int_equal(fh_object_size(x), sizes[i]);
      if (i && arr[i - 1]) assert_ptr_equal(x->ref, arr[i - 1]);
      for (size_t k = sizeof(mobj); k < sizes[i]; k++)
        if (((uint8_t *)x)[k] != mobj_byte(i, k))
          fail_msg("object %zu byte %zu corrupted after collection %d", i, k, round);
      if (hashes[i]) assert_int_equal(fh_object_hash(t, x), hashes[i]);
    }
    fh_gc_wait(h);
    if (round == 11) print_message("%s: %zu objects carry their hash word\n", collector, moved);
    if (round == 11 && strcmp(collector, "mark_sweep") != 0) assert_true(moved > 100);
  }
  size_t n = 0;
  for (size_t i = 0; i < MIXED; i++)
    if (arr[i]) hashes[n++] = fh_object_hash(t, arr[i]);
  assert_distinct(hashes, n);
  free(hashes);
  free(sizes);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_mixed_mark_compact(void **st) { (void)st, mixed_for("mark_compact"); }
static void test_mixed_concurrent(void **st) { (void)st, mixed_for("concurrent_compact"); }
static void test_mixed_semispace(void **st) { (void)st, mixed_for("semispace"); }
static void test_mixed_gen_semispace(void **st) { (void)st, mixed_for("gen_semispace"); }
static void test_mixed_mark_sweep(void **st) { (void)st, mixed_for("mark_sweep"); }

/* ---- fh_prefork and fork ------------------------------------------------- */

static void prefork_for(const char *collector) {
  test_skip_under_tsan("no new threads after a multi-threaded fork");
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=32M,non_moving_max=16M,verify=1", &ty, &t);
  test_ring g;
  test_ring_build(t, &ty, &g, RING, 4, 2);
  uint64_t *hashes = calloc(RING, sizeof *hashes);
  assert_non_null(hashes);
  for (size_t i = 0; i < RING; i += 2) hashes[i] = fh_object_hash(t, g.arr[i]);
  /* Some of them moved (hashed and moved) before the zygote compaction. */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  for (size_t i = 1; i < RING; i += 4) hashes[i] = fh_object_hash(t, g.arr[i]);
  assert_int_equal(fh_prefork(t), 0);
  assert_true(space_contains(&h->zygote.space, g.arr[1]));
  check_ring(t, &g, hashes);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    test_child_signals(30);
    fh_postfork_child(h);
    for (int round = 0; round < 6; round++) {
      for (int k = 0; k < 2000; k++) CHILD_CHECK(test_node(t, &ty, 0) != NULL);
      CHILD_CHECK(fh_collect(t, test_collect_kind(collector, round)) == 0);
      fh_gc_wait(h);
      for (size_t i = 0; i < RING; i++) {
        CHILD_CHECK(((tnode *)g.arr[i])->value == i);
        if (hashes[i]) CHILD_CHECK(fh_object_hash(t, g.arr[i]) == hashes[i]);
      }
    }
    /* Zygote objects hashed first in the child, and fresh objects. */
    uint64_t z = fh_object_hash(t, g.arr[3]);
    CHILD_CHECK(z != 0 && fh_object_hash(t, g.arr[3]) == z);
    _exit(0);
  }
  fh_postfork_parent(h);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  test_assert_child_ok(status, "child");
  for (int round = 0; round < 6; round++) {
    assert_int_equal(fh_collect(t, test_collect_kind(collector, round)), 0);
    fh_gc_wait(h);
    check_ring(t, &g, hashes);
  }
  free(hashes);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_prefork_semispace(void **st) { (void)st, prefork_for("semispace"); }
static void test_prefork_gen_semispace(void **st) { (void)st, prefork_for("gen_semispace"); }
static void test_prefork_mark_compact(void **st) { (void)st, prefork_for("mark_compact"); }
static void test_prefork_concurrent(void **st) { (void)st, prefork_for("concurrent_compact"); }
static void test_prefork_mark_sweep(void **st) { (void)st, prefork_for("mark_sweep"); }

/* ---- images -------------------------------------------------------------- */

static void image_for(const char *collector) {
  char path[128];
  snprintf(path, sizeof path, "/tmp/fh_idhash_%d_%s.img", (int)getpid(), collector);
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=16M,verify=1", &ty, &t);
  test_ring g;
  test_ring_build(t, &ty, &g, RING, 6, 1);
  uint64_t *hashes = calloc(RING, sizeof *hashes);
  assert_non_null(hashes);
  for (size_t i = 0; i < RING; i += 3) hashes[i] = fh_object_hash(t, g.arr[i]);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* some hashed and moved */
  fh_gc_wait(h);
  for (size_t i = 1; i < RING; i += 3) hashes[i] = fh_object_hash(t, g.arr[i]);
  uint64_t arr_hash = fh_object_hash(t, g.arr);
  void *roots[1] = {g.arr};
  assert_int_equal(fh_image_save(t, path, roots, 1), 0);
  check_ring(t, &g, hashes);
  fh_thread_detach(t);
  fh_heap_destroy(h);

  /* Loaded (where the saving heap's objects may have been), under every
   * collector: the same hashes, and no fresh object shares one. */
  for (size_t c = 0; c < NCOLLECTORS; c++) {
    char spec[256];
    snprintf(spec, sizeof spec, "heap_max=16M,verify=1,image_path=%s", path);
    fh_heap *h2 = test_heap_attached(collectors[c], spec, &ty, &t);
    void **r;
    assert_int_equal(fh_image_roots(h2, &r), 1);
    test_ring g2 = {r[0], RING};
    assert_true(space_contains(&h2->image.space, g2.arr));
    assert_int_equal(fh_object_hash(t, g2.arr), arr_hash);
    check_ring(t, &g2, hashes);
    /* Image objects never hashed before, hashed now. */
    uint64_t late = fh_object_hash(t, g2.arr[2]);
    enum { FRESH = 4000 };
    uint64_t *v = malloc((FRESH + RING + 2) * sizeof *v);
    assert_non_null(v);
    size_t n = 0;
    void **keep = fh_alloc(t, ty.array, FRESH * sizeof(void *));
    fh_push_root(t, (void **)&keep);
    for (size_t i = 0; i < FRESH; i++) {
      void *e = fh_alloc(t, ty.bytes, (i % 4) * 8);
      assert_non_null(e);
      fh_write_ref(t, keep, &keep[i], e);
    }
    for (int round = 0; round < 5; round++) {
      assert_int_equal(fh_collect(t, test_collect_kind(collectors[c], round)), 0);
      fh_gc_wait(h2);
      check_ring(t, &g2, hashes);
      assert_int_equal(fh_object_hash(t, g2.arr[2]), late);
    }
    for (size_t i = 0; i < FRESH; i++) v[n++] = fh_object_hash(t, keep[i]);
    for (size_t i = 0; i < RING; i++)
      if (hashes[i]) v[n++] = hashes[i];
    v[n++] = arr_hash;
    v[n++] = late;
    assert_distinct(v, n);
    free(v);
    /* Saved again from the loaded heap: image objects and fresh ones. */
    char again[160];
    snprintf(again, sizeof again, "%s.2", path);
    void *roots2[2] = {g2.arr, keep};
    uint64_t k0 = fh_object_hash(t, keep[0]);
    assert_int_equal(fh_image_save(t, again, roots2, 2), 0);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h2);
    char spec3[256];
    snprintf(spec3, sizeof spec3, "heap_max=16M,verify=1,image_path=%s", again);
    fh_heap *h3 = test_heap_attached(collectors[c], spec3, &ty, &t);
    assert_int_equal(fh_image_roots(h3, &r), 2);
    test_ring g3 = {r[0], RING};
    check_ring(t, &g3, hashes);
    assert_int_equal(fh_object_hash(t, ((void **)r[1])[0]), k0);
    assert_int_equal(fh_object_hash(t, g3.arr[2]), late);
    fh_thread_detach(t);
    fh_heap_destroy(h3);
    unlink(again);
  }
  free(hashes);
  unlink(path);
}

static void test_image_semispace(void **st) { (void)st, image_for("semispace"); }
static void test_image_mark_sweep(void **st) { (void)st, image_for("mark_sweep"); }

/* ---- mutator threads hashing concurrently ------------------------------- */

#define SHARED 2000
#define WORKERS 3

typedef struct mt_ctx {
  fh_heap *h;
  test_types ty;
  void **shared; /* a global root */
  _Atomic int stop;
  uint64_t seen[WORKERS][SHARED];
  int bad[WORKERS];
} mt_ctx;

typedef struct mt_arg {
  mt_ctx *c;
  int id;
} mt_arg;

static void *mt_worker(void *p) {
  mt_arg *a = p;
  mt_ctx *c = a->c;
  fh_thread *t = fh_thread_attach(c->h);
  uint64_t *seen = c->seen[a->id];
  unsigned r = (unsigned)a->id * 7919u + 1;
  void *mine = NULL;
  fh_push_root(t, &mine);
  while (!atomic_load(&c->stop)) {
    for (int k = 0; k < 200; k++) {
      r = r * 1103515245u + 12345u;
      size_t i = (r >> 8) % SHARED;
      uint64_t v = fh_object_hash(t, c->shared[i]);
      if (!v || (seen[i] && seen[i] != v)) c->bad[a->id]++;
      seen[i] = v;
    }
    /* Allocate (garbage, and a hashed object of its own) and reach
     * safepoints, so the collector can stop this thread. */
    uint64_t hm = mine ? fh_object_hash(t, mine) : 0;
    for (int k = 0; k < 100; k++) test_node(t, &c->ty, 0);
    if (mine && fh_object_hash(t, mine) != hm) c->bad[a->id]++;
    if ((r >> 4) % 8 == 0) mine = test_node(t, &c->ty, 1);
    fh_safepoint(t);
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

static void threads_for(const char *collector) {
  mt_ctx *c = calloc(1, sizeof *c);
  assert_non_null(c);
  fh_thread *t;
  c->h = test_heap_attached(collector, "heap_max=64M", &c->ty, &t);
  c->shared = fh_alloc(t, c->ty.array, SHARED * sizeof(void *));
  assert_non_null(c->shared);
  fh_root_add(c->h, (void **)&c->shared);
  for (size_t i = 0; i < SHARED; i++) {
    void *x = test_node(t, &c->ty, i);
    fh_write_ref(t, c->shared, &c->shared[i], x);
    for (int k = 0; k < 2; k++) test_node(t, &c->ty, 0); /* garbage between */
  }
  pthread_t th[WORKERS];
  mt_arg args[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    args[i] = (mt_arg){c, i};
    assert_int_equal(pthread_create(&th[i], NULL, mt_worker, &args[i]), 0);
  }
  for (int round = 0; round < 30; round++) {
    fh_enter_blocking(t);
    usleep(2000);
    fh_leave_blocking(t);
    assert_int_equal(fh_collect(t, test_collect_kind(collector, round)), 0);
  }
  atomic_store(&c->stop, 1);
  fh_enter_blocking(t); /* the workers may collect while this thread waits */
  for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
  fh_leave_blocking(t);
  fh_gc_wait(c->h);
  for (int i = 0; i < WORKERS; i++) assert_int_equal(c->bad[i], 0);
  /* Every thread saw the same hash for each object; the hashes differ. */
  uint64_t *all = malloc(SHARED * sizeof *all);
  assert_non_null(all);
  size_t n = 0;
  for (size_t i = 0; i < SHARED; i++) {
    uint64_t v = fh_object_hash(t, c->shared[i]);
    for (int w = 0; w < WORKERS; w++)
      if (c->seen[w][i]) assert_int_equal(c->seen[w][i], v);
    all[n++] = v;
  }
  assert_distinct(all, n);
  free(all);
  fh_root_remove(c->h, (void **)&c->shared);
  fh_thread_detach(t);
  fh_heap_destroy(c->h);
  free(c);
}

static void test_threads_concurrent(void **st) { (void)st, threads_for("concurrent_compact"); }
static void test_threads_semispace(void **st) { (void)st, threads_for("semispace"); }
static void test_threads_mark_sweep(void **st) { (void)st, threads_for("mark_sweep"); }

/* ---- bad input ---------------------------------------------------------- */

static void test_bad_input(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("semispace", "heap_max=16M", &ty, &t);
  uint64_t stack_words[4] = {0};
  tnode *x = test_node(t, &ty, 1);
  assert_int_equal(fh_object_hash(t, NULL), 0);
  assert_non_null(strstr(fh_last_error(), "fh_object_hash"));
  assert_int_equal(fh_object_hash(t, &stack_words[1]), 0);
  assert_non_null(strstr(fh_last_error(), "not an object"));
  assert_int_equal(fh_object_hash(t, (char *)x + 8), 0);
  assert_int_equal(fh_object_hash(NULL, x), 0);
  assert_non_null(strstr(fh_last_error(), "thread is NULL"));
  /* The heap is still usable, and a hash never collects. */
  size_t before = fh_object_size(x);
  uint64_t hx = fh_object_hash(t, x);
  assert_int_not_equal(hx, 0);
  assert_int_equal(fh_object_hash(t, x), hx);
  assert_int_equal(fh_object_size(x), before);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A corrupt image: two objects with one key are refused at load. */
static void test_image_duplicate_key_refused(void **st) {
  (void)st;
  char path[128];
  snprintf(path, sizeof path, "/tmp/fh_idhash_dup_%d.img", (int)getpid());
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("semispace", "heap_max=16M", &ty, &t);
  void **arr = fh_alloc(t, ty.array, 2 * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  for (int i = 0; i < 2; i++) {
    void *x = fh_alloc(t, ty.bytes, 16);
    fh_write_ref(t, arr, &arr[i], x);
    fh_object_hash(t, x);
  }
  void *roots[1] = {arr};
  assert_int_equal(fh_image_save(t, path, roots, 1), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  /* Copy the first bytes object's key word over the second's. */
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  uint8_t *b = malloc((size_t)len);
  fseek(f, 0, SEEK_SET);
  assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
  /* The objects section holds: arr (2 refs, hashed? no), then two 16-byte
   * objects each followed by a key word: find two keys by their headers. */
  size_t found[2], nf = 0;
  uint64_t want = ((uint64_t)16 << 32) | ((uint64_t)ty.bytes << 8) | FH_HDR_HASH_BITS;
  for (long i = 0; i + 32 <= len && nf < 2; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    if (w == want) found[nf++] = (size_t)i + 8 + 16;
  }
  assert_int_equal(nf, 2);
  memcpy(b + found[1], b + found[0], 8);
  image_header ih;
  memcpy(&ih, b, sizeof ih);
  ih.crc32c = 0;
  memcpy(b, &ih, sizeof ih);
  ih.crc32c = image_file_crc(b, (size_t)len);
  memcpy(b, &ih, sizeof ih);
  fseek(f, 0, SEEK_SET);
  assert_int_equal(fwrite(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  free(b);
  char spec[200];
  snprintf(spec, sizeof spec, "heap_max=16M,image_path=%s", path);
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, spec), 0);
  fh_heap *h2 = fh_heap_create(&o);
  assert_null(h2);
  assert_non_null(strstr(fh_last_error(), "same identity hash key"));
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_salt_skips_reserved_key),
      cmocka_unit_test(test_reuse_semispace),
      cmocka_unit_test(test_reuse_mark_compact),
      cmocka_unit_test(test_reuse_concurrent),
      cmocka_unit_test(test_reuse_hspace),
      cmocka_unit_test(test_nonmoving_objects),
      cmocka_unit_test(test_inline_path),
      cmocka_unit_test(test_records_follow_objects),
      cmocka_unit_test(test_mixed_mark_compact),
      cmocka_unit_test(test_mixed_concurrent),
      cmocka_unit_test(test_mixed_semispace),
      cmocka_unit_test(test_mixed_gen_semispace),
      cmocka_unit_test(test_mixed_mark_sweep),
      cmocka_unit_test(test_stable_semispace),
      cmocka_unit_test(test_stable_gen_semispace),
      cmocka_unit_test(test_stable_mark_compact),
      cmocka_unit_test(test_stable_concurrent),
      cmocka_unit_test(test_stable_mark_sweep),
      cmocka_unit_test(test_prefork_semispace),
      cmocka_unit_test(test_prefork_gen_semispace),
      cmocka_unit_test(test_prefork_mark_compact),
      cmocka_unit_test(test_prefork_concurrent),
      cmocka_unit_test(test_prefork_mark_sweep),
      cmocka_unit_test(test_image_semispace),
      cmocka_unit_test(test_image_mark_sweep),
      cmocka_unit_test(test_threads_concurrent),
      cmocka_unit_test(test_threads_semispace),
      cmocka_unit_test(test_threads_mark_sweep),
      cmocka_unit_test(test_image_duplicate_key_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
