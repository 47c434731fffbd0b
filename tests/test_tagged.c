/* Tagged values (tag_immediate_mask, tag_pointer_mask) under every
 * collector: immediates are never read as references nor rewritten, even
 * when they look like heap addresses; tagged pointers keep their objects
 * alive and keep their tags when the objects move, in object fields and in
 * root slots; images record the masks and refuse a heap with others. */
#include <string.h>

#include "support_configs.h"
#include "test_image.h"

#define IMM 0x1u  /* odd words are fixnums */
#define PTAG 0x6u /* two tag bits on pointers */

static const char tag_opts[] = ",tag_immediate_mask=0x1,tag_pointer_mask=0x6";

static fh_heap *tagged_heap(const test_config *c, test_types *ty, fh_thread **t) {
  char rest[256];
  snprintf(rest, sizeof rest, "heap_max=64M,verify=1%s%s", tag_opts, c->extra);
  return test_heap_attached(c->collector, rest, ty, t);
}

static void *tagp(void *p, uintptr_t tag) { return (void *)((uintptr_t)p | tag); }
static void *untag(void *v) { return (void *)((uintptr_t)v & ~(uintptr_t)PTAG); }
static uintptr_t tag_of(void *v) { return (uintptr_t)v & PTAG; }

static void test_options(void **st) {
  (void)st;
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(o.tag_immediate_mask, 0);
  assert_int_equal(o.tag_pointer_mask, 0);
  assert_int_equal(fh_options_parse(&o, "tag_immediate_mask=0x1,tag_pointer_mask=6"), 0);
  assert_int_equal(o.tag_immediate_mask, 1);
  assert_int_equal(o.tag_pointer_mask, 6);
  assert_int_equal(fh_options_parse(&o, "tag_pointer_mask=0x3"), -1); /* shares bit 0 */
  assert_non_null(strstr(fh_last_error(), "share bits"));
  assert_int_equal(fh_options_parse(&o, "tag_immediate_mask=0x8"), -1);
  assert_non_null(strstr(fh_last_error(), "out of range"));
  assert_int_equal(fh_options_parse(&o, "tag_immediate_mask=0xq"), -1);
  assert_int_equal(o.tag_immediate_mask, 1); /* unchanged by the failures */
}

/* An array of slots: even i holds node i tagged with (i % 4) << 1 (the
 * node reachable only through it), odd i holds an immediate that looks
 * like the address of a live node (a "fixnum" whose bits point into the
 * heap).  A root holds a tagged pointer to a node, another an immediate. */
static void test_slots_keep_tags_and_immediates(void **st) {
  (void)st;
  enum { N = 600 };
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = tagged_heap(c, &ty, &t);
    void **arr = NULL, *root_tagged = NULL, *root_imm = NULL;
    fh_push_root(t, (void **)&arr);
    fh_push_root(t, &root_tagged);
    fh_push_root(t, &root_imm);
    arr = fh_alloc(t, ty.array, N * sizeof(void *));
    tnode *decoy = test_node(t, &ty, 12345); /* garbage: only immediates "point" at it */
    uintptr_t decoy_addr = (uintptr_t)decoy;
    for (int i = 0; i < N; i++) {
      if (i % 2 == 0) {
        tnode *n = test_node(t, &ty, (uint64_t)i);
        fh_write_ref(t, arr, &arr[i], tagp(n, (uintptr_t)(i % 4) << 1));
      } else {
        /* an odd word whose other bits are a heap address */
        fh_write_ref(t, arr, &arr[i], (void *)(decoy_addr | IMM));
      }
    }
    root_tagged = tagp(test_node(t, &ty, 777), 0x4);
    root_imm = (void *)(decoy_addr | IMM);
    for (int round = 0; round < 4; round++) {
      test_config_collect(c, t, round);
      for (int i = 0; i < N; i++) {
        if (i % 2 == 0) {
          assert_int_equal(tag_of(arr[i]), (uintptr_t)(i % 4) << 1);
          tnode *n = untag(arr[i]);
          assert_int_equal(n->value, i);
          assert_int_equal(n->check, test_check((uint64_t)i));
        } else {
          assert_ptr_equal(arr[i], (void *)(decoy_addr | IMM)); /* never rewritten */
        }
      }
      assert_int_equal(tag_of(root_tagged), 0x4);
      assert_int_equal(((tnode *)untag(root_tagged))->value, 777);
      assert_ptr_equal(root_imm, (void *)(decoy_addr | IMM));
    }
    fh_pop_roots(t, 3);
    test_config_teardown(h, t);
  }
}

/* Tagged pointers in fixed reference offsets (the fast marking path) and
 * a chain only they hold together. */
static void test_tagged_chain(void **st) {
  (void)st;
  enum { N = 3000 };
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = tagged_heap(c, &ty, &t);
    tnode *head = NULL;
    fh_push_root(t, (void **)&head);
    head = test_node(t, &ty, 0);
    tnode *tail = head;
    fh_push_root(t, (void **)&tail);
    for (int i = 1; i < N; i++) {
      tnode *n = test_node(t, &ty, (uint64_t)i);
      fh_write_ref(t, tail, (void **)&tail->next, tagp(n, 0x2));
      fh_write_ref(t, tail, (void **)&tail->other, (void *)(uintptr_t)(2 * i + 1)); /* fixnum */
      tail = n;
    }
    tail = NULL;
    for (int round = 0; round < 3; round++) {
      test_config_collect(c, t, round);
      int i = 0;
      for (tnode *n = head; n; n = untag(n->next), i++) {
        assert_int_equal(n->value, i);
        if (n->next) {
          assert_int_equal(tag_of(n->next), 0x2);
          assert_int_equal((uintptr_t)n->other, 2 * (i + 1) + 1);
        }
      }
      assert_int_equal(i, N);
    }
    fh_pop_roots(t, 2);
    test_config_teardown(h, t);
  }
}

/* An image keeps tags and immediates, and loads only with the same masks. */
static void test_image_round_trip(void **st) {
  (void)st;
  const char *path = img_path("tagged");
  {
    fh_heap *h = img_heap("heap_max=16M,tag_immediate_mask=0x1,tag_pointer_mask=0x6");
    img_types ty;
    img_register(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    void *roots[1] = {NULL};
    fh_push_root(t, &roots[0]);
    pair *a = fh_alloc(t, ty.pair, sizeof(pair));
    roots[0] = a;
    pair *b = fh_alloc(t, ty.pair, sizeof(pair));
    a = roots[0];
    b->value = 2;
    fh_write_ref(t, a, (void **)&a->a, tagp(b, 0x6));
    fh_write_ref(t, a, (void **)&a->b, (void *)(uintptr_t)0x200000000001ull); /* odd */
    assert_int_equal(fh_image_save(t, path, roots, 1), 0);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  char spec[512];
  snprintf(spec, sizeof spec,
           "heap_max=16M,verify=1,tag_immediate_mask=0x1,tag_pointer_mask=0x6,image_path=%s", path);
  fh_heap *h = img_heap(spec);
  void **roots;
  assert_int_equal(fh_image_roots(h, &roots), 1);
  pair *a = roots[0];
  assert_int_equal(tag_of(a->a), 0x6);
  assert_int_equal(((pair *)untag(a->a))->value, 2);
  assert_ptr_equal(a->b, (void *)(uintptr_t)0x200000000001ull);
  fh_heap_destroy(h);
  fh_options o;
  fh_options_init(&o);
  snprintf(spec, sizeof spec, "heap_max=16M,image_path=%s", path);
  assert_int_equal(fh_options_parse(&o, spec), 0);
  assert_null(fh_heap_create(&o));
  assert_non_null(strstr(fh_last_error(), "tag_immediate_mask"));
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_slots_keep_tags_and_immediates),
      cmocka_unit_test(test_tagged_chain),
      cmocka_unit_test(test_image_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
