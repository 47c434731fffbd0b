/* Ephemerons and weak references in every collector: a value lives through
 * its ephemeron only while the key lives by another path; dead keys clear
 * key and value in one collection, whatever the chain; keys in every
 * space; weak tables in ordinary arrays; several mutator threads.  Every
 * heap runs with verify=1, and the concurrent compactor in both fault
 * modes. */
#include <pthread.h>
#include <string.h>

#include "heap/heap.h"
#include "support_configs.h"

static void test_weak_reference_follows_and_clears(void **st) {
  (void)st;
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    tnode *key = test_node(t, &ty, 7), *nm = NULL;
    void *weak = NULL, *weak_nm = NULL;
    fh_push_root(t, (void **)&key);
    fh_push_root(t, (void **)&nm);
    nm = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
    fh_push_root(t, &weak);
    fh_push_root(t, &weak_nm);
    nm->value = 8, nm->check = test_check(8);
    weak = fh_ephemeron_new(t, key, NULL);
    weak_nm = fh_ephemeron_new(t, nm, NULL);
    assert_non_null(weak);
    assert_non_null(weak_nm);
    for (int i = 0; i < 4; i++) {
      test_config_collect(c, t, i);
      assert_ptr_equal(fh_ephemeron_key(t, weak), key); /* followed its moves */
      assert_ptr_equal(fh_ephemeron_key(t, weak_nm), nm);
      assert_int_equal(key->value, 7);
      assert_null(fh_ephemeron_value(t, weak));
    }
    key = NULL, nm = NULL;
    test_config_collect(c, t, 0);
    assert_null(fh_ephemeron_key(t, weak));
    assert_null(fh_ephemeron_key(t, weak_nm));
    fh_pop_roots(t, 4);
    test_config_teardown(h, t);
  }
}

/* k0 -> e0(k0, k1), e1(k1, k2), ...: each value is the next key.  The
 * ephemerons sit in an array in reverse order, so marking meets them from
 * the far end of the chain: a fix-point that rescans would need n rounds. */
static void test_chain_dies_in_one_collection(void **st) {
  (void)st;
  enum { N = 2000 };
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    void **table = fh_alloc(t, ty.array, N * sizeof(void *));
    tnode *head = NULL;
    fh_push_root(t, (void **)&table);
    fh_push_root(t, (void **)&head);
    head = test_node(t, &ty, 0);
    tnode *k = head;
    fh_push_root(t, (void **)&k);
    for (int i = 0; i < N; i++) {
      tnode *next = test_node(t, &ty, (uint64_t)i + 1);
      void *e = fh_ephemeron_new(t, k, next); /* next is rooted by nothing but e now */
      assert_non_null(e);
      fh_write_ref(t, table, &table[N - 1 - i], e);
      k = fh_ephemeron_value(t, e);
    }
    k = NULL;
    for (int round = 0; round < 2; round++) {
      test_config_collect(c, t, round);
      /* The whole chain lives through its head. */
      for (int i = 0; i < N; i++) {
        tnode *v = fh_ephemeron_value(t, table[N - 1 - i]);
        assert_non_null(v);
        assert_int_equal(v->value, i + 1);
        assert_ptr_equal(fh_ephemeron_key(t, table[N - 1 - i]), i ? fh_ephemeron_value(t, table[N - i]) : (void *)head);
      }
    }
    fh_stats before, after;
    fh_get_stats(h, &before);
    head = NULL;
    test_config_collect(c, t, 0);
    for (int i = 0; i < N; i++) {
      assert_null(fh_ephemeron_key(t, table[i]));
      assert_null(fh_ephemeron_value(t, table[i]));
    }
    fh_get_stats(h, &after);
    assert_int_equal(after.ephemerons_cleared - before.ephemerons_cleared, N);
    assert_true(after.ephemerons_traced - before.ephemerons_traced >= N);
    fh_pop_roots(t, 3);
    test_config_teardown(h, t);
  }
}

/* A key reachable only through its own ephemeron's value must die. */
static void test_key_only_through_own_value_dies(void **st) {
  (void)st;
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    tnode *key = test_node(t, &ty, 1), *value = NULL;
    void *e = NULL;
    fh_push_root(t, (void **)&key);
    fh_push_root(t, (void **)&value);
    fh_push_root(t, &e);
    value = test_node(t, &ty, 2);
    fh_write_ref(t, value, (void **)&value->next, key);
    e = fh_ephemeron_new(t, key, value);
    test_config_collect(c, t, 0);
    assert_ptr_equal(fh_ephemeron_value(t, e), value);
    key = NULL, value = NULL;
    test_config_collect(c, t, 1);
    assert_null(fh_ephemeron_key(t, e));
    assert_null(fh_ephemeron_value(t, e));
    fh_pop_roots(t, 3);
    test_config_teardown(h, t);
  }
}

/* A weak table: an array of ephemerons, half of whose keys stay rooted.
 * Values hold their keys' numbers and a big payload reachable only through
 * the table; set_value replaces values and does nothing on a cleared
 * entry. */
static void test_weak_table(void **st) {
  (void)st;
  enum { N = 3000 };
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    void **table = fh_alloc(t, ty.array, N * sizeof(void *)), **keys = NULL;
    fh_push_root(t, (void **)&table); /* before the next allocation moves it */
    fh_push_root(t, (void **)&keys);
    keys = fh_alloc(t, ty.array, N * sizeof(void *));
    for (int i = 0; i < N; i++) {
      tnode *k = test_node(t, &ty, (uint64_t)i);
      fh_write_ref(t, keys, &keys[i], k);
      tnode *v = test_node(t, &ty, (uint64_t)i + 1000000);
      fh_push_root(t, (void **)&v);
      void *blob = fh_alloc(t, ty.array, 64 * sizeof(void *));
      fh_write_ref(t, v, (void **)&v->other, blob);
      void *e = fh_ephemeron_new(t, keys[i], v);
      fh_pop_roots(t, 1);
      assert_non_null(e);
      fh_write_ref(t, table, &table[i], e);
    }
    for (int i = 0; i < N; i += 2) fh_write_ref(t, keys, &keys[i], NULL); /* drop even keys */
    for (int round = 0; round < 3; round++) {
      test_config_collect(c, t, round);
      for (int i = 0; i < N; i++) {
        tnode *k = fh_ephemeron_key(t, table[i]), *v = fh_ephemeron_value(t, table[i]);
        if (i % 2 == 0) {
          assert_null(k);
          assert_null(v);
          fh_ephemeron_set_value(t, table[i], keys); /* cleared: a no-op */
          assert_null(fh_ephemeron_value(t, table[i]));
        } else {
          assert_ptr_equal(k, keys[i]);
          assert_int_equal(k->value, i);
          assert_non_null(v);
          assert_int_equal(v->value, (uint64_t)i + (round ? 2000000u : 1000000u));
          if (round == 0) assert_non_null(v->other); /* reached only through the table */
          if (round == 0) {
            tnode *nv = test_node(t, &ty, (uint64_t)i + 2000000);
            fh_ephemeron_set_value(t, table[i], nv);
          }
        }
      }
    }
    fh_pop_roots(t, 2);
    test_config_teardown(h, t);
  }
}

static void test_bad_input(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=16M", &ty, &t);
  tnode *n = test_node(t, &ty, 1);
  int local;
  assert_null(fh_ephemeron_key(t, n));
  assert_non_null(strstr(fh_last_error(), "not an ephemeron"));
  assert_null(fh_ephemeron_value(t, &local));
  assert_non_null(strstr(fh_last_error(), "not an object"));
  assert_null(fh_ephemeron_new(t, &local, NULL));
  assert_non_null(strstr(fh_last_error(), "key"));
  assert_null(fh_ephemeron_new(NULL, n, NULL));
  fh_ephemeron_set_value(t, n, NULL);
  assert_non_null(strstr(fh_last_error(), "not an ephemeron"));
  void *dead = fh_ephemeron_new(t, NULL, n); /* born cleared */
  assert_non_null(dead);
  assert_null(fh_ephemeron_key(t, dead));
  assert_null(fh_ephemeron_value(t, dead));
  test_config_teardown(h, t);
}

/* Several mutators churn weak tables of their own while they and the others
 * collect; each checks its table after every collection it sees. */
typedef struct churn {
  fh_heap *h;
  const test_config *c;
  test_types ty;
  int failed;
} churn;

static void *churn_thread(void *arg) {
  churn *ch = arg;
  fh_thread *t = fh_thread_attach(ch->h);
  enum { N = 256 };
  void **table = fh_alloc(t, ch->ty.array, N * sizeof(void *)), **keys = NULL;
  fh_push_root(t, (void **)&table);
  fh_push_root(t, (void **)&keys);
  keys = fh_alloc(t, ch->ty.array, N * sizeof(void *));
  for (int round = 0; round < 40 && !ch->failed; round++) {
    for (int i = 0; i < N; i++) {
      tnode *k = test_node(t, &ch->ty, (uint64_t)(round * N + i));
      fh_push_root(t, (void **)&k);
      tnode *v = test_node(t, &ch->ty, test_check((uint64_t)(round * N + i)));
      void *e = fh_ephemeron_new(t, k, v);
      if (!e) ch->failed = 1;
      fh_write_ref(t, table, &table[i], e);
      fh_write_ref(t, keys, &keys[i], i % 3 ? NULL : k);
      fh_pop_roots(t, 1);
    }
    if (round % 4 == 0 && fh_collect(t, ch->c->kinds[round % 8 ? 0 : 1]) != 0) ch->failed = 1;
    for (int i = 0; i < N; i++) {
      tnode *k = fh_ephemeron_key(t, table[i]), *v = fh_ephemeron_value(t, table[i]);
      if ((k == NULL) != (v == NULL)) ch->failed = 1;
      if (i % 3 == 0 && (k != keys[i] || !v || v->value != test_check(k->value))) ch->failed = 1;
      if (k && v && v->value != test_check(k->value)) ch->failed = 1;
    }
  }
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  return NULL;
}

static void test_several_mutators(void **st) {
  (void)st;
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    churn ch = {.c = &test_configs[ci]};
    char spec[256];
    snprintf(spec, sizeof spec, "collector=%s,heap_max=64M,verify=1%s", ch.c->collector,
             ch.c->extra);
    ch.h = test_heap(spec);
    test_register(ch.h, &ch.ty);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&th[i], NULL, churn_thread, &ch), 0);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    assert_false(ch.failed);
    fh_heap_destroy(ch.h);
  }
}

/* 10^6 ephemerons in one collection, half of their keys alive (fhbench
 * ephemerons measures the cost per ephemeron; here: every live key's entry
 * survives and every dead one clears, with verify=1). */
static void test_many_ephemerons(void **st) {
  (void)st;
  enum { N = 1000000 };
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=256M,verify=1", &ty, &t);
  void **table = fh_alloc(t, ty.array, N * sizeof(void *)), **keys = NULL;
  fh_push_root(t, (void **)&table);
  fh_push_root(t, (void **)&keys);
  keys = fh_alloc(t, ty.array, N * sizeof(void *));
  for (int i = 0; i < N; i++) {
    tnode *k = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, keys, &keys[i], k);
    void *e = fh_ephemeron_new(t, k, k);
    fh_write_ref(t, table, &table[i], e);
  }
  for (int i = 0; i < N; i += 2) fh_write_ref(t, keys, &keys[i], NULL);
  fh_stats before, after;
  fh_get_stats(h, &before);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  fh_get_stats(h, &after);
  assert_int_equal(after.ephemerons_cleared - before.ephemerons_cleared, N / 2);
  for (int i = 0; i < N; i++) {
    tnode *k = fh_ephemeron_key(t, table[i]);
    if (i % 2) assert_int_equal(k->value, i);
    else assert_null(k);
  }
  fh_pop_roots(t, 2);
  test_config_teardown(h, t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_weak_reference_follows_and_clears),
      cmocka_unit_test(test_chain_dies_in_one_collection),
      cmocka_unit_test(test_key_only_through_own_value_dies),
      cmocka_unit_test(test_weak_table),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_several_mutators),
      cmocka_unit_test(test_many_ephemerons),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
