/* Pins across fh_prefork and fork(): zygote compaction leaves pinned
 * objects (fh_pin, conservative stack words) where they are, intact, with
 * the references to them from frozen zygote objects kept (and updated by
 * the collection that moves them once unpinned); a fork child forgets the
 * pins of the threads that stayed in the parent and keeps its own.
 *
 * Every scenario runs in a forked child with alarm() (a collector that
 * moved a pinned object aborts under verify=1, or reads freed memory).
 * Collections that must leave pinned objects of a moving space in place
 * are mark-sweeps (every heap can run one, and it never moves) unless the
 * heap's own collector honours pins (probed once per collector, in a child
 * of its own): then its default kind runs as well. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/heap.h"
#include "support_heap.h"

#define NO_FORK_UNDER_TSAN "no new threads after a multi-threaded fork"

static const char *const collectors[] = {"semispace", "gen_semispace", "mark_compact", "concurrent_compact",
                                         "mark_sweep"};
#define NCOLLECTORS (sizeof collectors / sizeof collectors[0])

static int in_zygote(fh_heap *h, const void *p) {
  return zygote_space_present(&h->zygote) && space_contains(&h->zygote.space, p);
}

/* The space of the heap's movable objects that holds p. */
static int in_moving_space(fh_heap *h, const void *p) {
  if (h->has_malloc_spaces) return space_contains(&heap_main_malloc(h)->space, p);
  return space_contains(&h->bump[0].space, p) || space_contains(&h->bump[1].space, p);
}

static int node_ok(const tnode *x, uint64_t v) {
  return x->value == v && x->check == test_check(v);
}

/* ---- does the heap's default collection honour fh_pin? ---- */

static int probe_fn(void *arg) {
  const char *collector = arg;
  if (!freopen("/dev/null", "w", stderr)) return 2; /* verify's abort message is expected */
  char spec[128];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=16M,verify=1", collector);
  fh_heap *h = test_child_heap(spec);
  test_types ty;
  if (!h || !test_register_types(h, &ty)) return 2;
  fh_thread *t = fh_thread_attach(h);
  for (int g = 0; g < 100; g++) test_node(t, &ty, 0);
  tnode *x = test_node(t, &ty, 42);
  uintptr_t at = (uintptr_t)x;
  x = NULL;
  if (fh_pin(t, (void *)at) < 0) return 2;
  for (int g = 0; g < 100; g++) test_node(t, &ty, 0);
  if (fh_collect(t, FH_COLLECT_DEFAULT) < 0) return 2;
  fh_gc_wait(h);
  /* Moved: verify=1 aborts (heap/pins.c), or what is left at the old
   * address is not the object. */
  return node_ok((tnode *)at, 42) ? 0 : 1;
}

/* 1 when a default collection of this collector leaves pinned objects in
 * place (the collectors learn it one by one: issue 18). */
static int honours_pins(const char *collector) {
  static int known[NCOLLECTORS];
  size_t c = 0;
  while (c < NCOLLECTORS && strcmp(collectors[c], collector) != 0) c++;
  if (c == NCOLLECTORS) return 0;
  if (!known[c]) {
    /* Under TSan the probe cannot fork (the scenarios that need it are
     * skipped there anyway): mark-sweep collections only. */
    int st = test_sanitizer_is("tsan") ? 1 : test_run_forked(probe_fn, (void *)collector, 10);
    known[c] = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 1 : 2;
    if (known[c] == 2)
      print_message("note: %s's default collection does not honour pins in this build: its "
                    "pinned-object checks use mark-sweep collections only\n", collector);
  }
  return known[c] == 1;
}

/* The collections a scenario runs while objects are pinned. */
static fh_collect_kind pinned_kind(int honours, int i) {
  return honours && i % 2 ? FH_COLLECT_DEFAULT : FH_COLLECT_MARK_SWEEP;
}

/* ---- fh_prefork with conservative stack roots ---- */

enum { DEPTH = 150, LOCALS = 16, RING = 600, HOLDERS = 12 };

typedef struct cons_ctx {
  const char *collector;
  int honours;
  fh_heap *h;
  fh_thread *t;
  test_types ty;
  test_ring ring;
  /* Addresses as integers, in malloc memory: no stack word, no root. */
  uintptr_t *addr; /* DEPTH frames' nodes, then LOCALS array nodes */
} cons_ctx;

#define VAL(i) (7000000 + (uint64_t)(i))

/* Every stack-held node at its address and intact; the ring (frozen into
 * the zygote) still refers to the first HOLDERS of them. */
static int stack_nodes_ok(const cons_ctx *c) {
  for (size_t i = 0; i < DEPTH + LOCALS; i++)
    SCENARIO_CHECK(node_ok((const tnode *)c->addr[i], VAL(i)));
  for (size_t i = 0; i < HOLDERS; i++) {
    const tnode *z = c->ring.arr[i * 7];
    SCENARIO_CHECK((uintptr_t)z->other == c->addr[i * 11 % (DEPTH + LOCALS)]);
    SCENARIO_CHECK(node_ok(z->other->next, VAL(1000000 + i))); /* copied, reached from it */
  }
  return 0;
}

static int ring_ok(const test_ring *g) {
  for (size_t i = 0; i < g->n; i++) {
    const tnode *x = g->arr[i];
    if (!node_ok(x, i) || x->next != g->arr[(i + 1) % g->n]) return 0;
  }
  return 1;
}

/* In the fork child: collections run, the stack-held objects stay. */
__attribute__((noinline)) static void child_collects(cons_ctx *c) {
  fh_postfork_child(c->h);
  for (int r = 0; r < 6; r++) {
    for (int g = 0; g < 3000; g++) test_node(c->t, &c->ty, 0);
    CHILD_CHECK(fh_collect(c->t, pinned_kind(c->honours, r)) == 0);
    fh_gc_wait(c->h);
    CHILD_CHECK(stack_nodes_ok(c) == 0);
    CHILD_CHECK(ring_ok(&c->ring));
  }
  _exit(0);
}

__attribute__((noinline)) static int deepest(cons_ctx *c) {
  tnode *volatile locals[LOCALS];
  for (size_t i = 0; i < LOCALS; i++) {
    locals[i] = test_node(c->t, &c->ty, VAL(DEPTH + i));
    c->addr[DEPTH + i] = (uintptr_t)locals[i];
  }
  /* Zygote-to-be objects (non-moving and movable ring nodes) refer to
   * stack-held ones, which refer to objects nothing else holds. */
  for (size_t i = 0; i < HOLDERS; i++) {
    tnode *z = c->ring.arr[i * 7], *held = (tnode *)c->addr[i * 11 % (DEPTH + LOCALS)];
    fh_write_ref(c->t, z, (void **)&z->other, held);
    fh_write_ref(c->t, held, (void **)&held->next, test_node(c->t, &c->ty, VAL(1000000 + i)));
  }
  fh_heap *h = c->h;
  SCENARIO_CHECK(fh_prefork(c->t) == 0);
  fh_gc_wait(h);
  SCENARIO_CHECK(stack_nodes_ok(c) == 0);
  SCENARIO_CHECK(ring_ok(&c->ring));
  /* The ring went to the zygote, but for a node a stray stack word (a
   * dead local, a spilled register) happens to pin. */
  size_t frozen = 0;
  for (size_t i = 0; i < c->ring.n; i++) {
    SCENARIO_CHECK(in_zygote(h, c->ring.arr[i]) || in_moving_space(h, c->ring.arr[i]));
    frozen += in_zygote(h, c->ring.arr[i]);
  }
  SCENARIO_CHECK(frozen + 16 >= c->ring.n);
  for (size_t i = 0; i < DEPTH + LOCALS; i++) {
    SCENARIO_CHECK(in_moving_space(h, (void *)c->addr[i]));
    SCENARIO_CHECK((uintptr_t)locals[i % LOCALS] == c->addr[DEPTH + i % LOCALS]);
  }
  /* The bump space stays walkable from its walk points: an interior
   * pointer finds its pinned object, the word after one finds the next
   * pinned object or a filler (none). */
  for (size_t i = 0; i < DEPTH + LOCALS && !h->has_malloc_spaces; i++) {
    uintptr_t start = c->addr[i] - FH__HEADER_BYTES, after = start + 40;
    bump_space *b = space_contains(&h->bump[0].space, (void *)start) ? &h->bump[0] : &h->bump[1];
    SCENARIO_CHECK(bump_space_object_at(b, c->addr[i] + 13) == start);
    uintptr_t next = bump_space_object_at(b, after);
    SCENARIO_CHECK(next == 0 || next == after);
  }
  /* What the pinned objects referred to may be pinned by stray words
   * too (it was just allocated here): intact either way (stack_nodes_ok).
   * The fh_pin scenario checks that it is copied. */
  fh_stats s;
  fh_get_stats(h, &s);
  SCENARIO_CHECK(s.pinned_last >= DEPTH + LOCALS);
  /* The child collects with the same stack. */
  pid_t pid = fork();
  SCENARIO_CHECK(pid >= 0);
  if (pid == 0) {
    alarm(60);
    child_collects(c);
  }
  int st;
  SCENARIO_CHECK(waitpid(pid, &st, 0) == pid);
  char why[128];
  if (!test_child_ok(st, why, sizeof why)) {
    fprintf(stderr, "fork child: %s\n", why);
    return 1;
  }
  /* The parent too, and the objects still held by this frame. */
  for (int r = 0; r < 4; r++) {
    SCENARIO_CHECK(fh_collect(c->t, pinned_kind(c->honours, r)) == 0);
    fh_gc_wait(h);
    SCENARIO_CHECK(stack_nodes_ok(c) == 0);
  }
  for (size_t i = 0; i < LOCALS; i++)
    SCENARIO_CHECK((uintptr_t)locals[i] == c->addr[DEPTH + i]);
  return 0;
}

__attribute__((noinline)) static int recurse(cons_ctx *c, int depth) {
  tnode *volatile mine = test_node(c->t, &c->ty, VAL(depth));
  c->addr[depth] = (uintptr_t)mine;
  int rc = depth + 1 < DEPTH ? recurse(c, depth + 1) : deepest(c);
  /* The frame's own word: the same object, unmoved. */
  if (rc == 0 && ((uintptr_t)mine != c->addr[depth] || !node_ok(mine, VAL(depth)))) rc = 1;
  return rc;
}

static int prefork_conservative_fn(void *arg) {
  cons_ctx *c = arg;
  char spec[160];
  snprintf(spec, sizeof spec,
           "collector=%s,stack_roots=conservative,heap_max=64M,non_moving_max=32M,verify=1",
           c->collector);
  c->h = test_child_heap(spec);
  if (!c->h || !test_register_types(c->h, &c->ty)) return 2;
  c->t = fh_thread_attach(c->h);
  c->addr = calloc(DEPTH + LOCALS, sizeof *c->addr);
  if (!c->t || !c->addr) return 2;
  test_ring_build(c->t, &c->ty, &c->ring, RING, 3, 2);
  int rc = recurse(c, 0);
  fh_pop_roots(c->t, 1);
  fh_thread_detach(c->t);
  fh_heap_destroy(c->h);
  free(c->addr);
  return rc;
}

static void prefork_conservative(const char *collector) {
  test_skip_under_tsan(NO_FORK_UNDER_TSAN);
  cons_ctx c = {.collector = collector, .honours = honours_pins(collector)};
  int st = test_run_forked(prefork_conservative_fn, &c, 120);
  test_assert_child_ok(st, collector);
}

static void test_cons_semispace(void **s) { (void)s; prefork_conservative("semispace"); }
static void test_cons_mark_compact(void **s) { (void)s; prefork_conservative("mark_compact"); }
static void test_cons_concurrent(void **s) { (void)s; prefork_conservative("concurrent_compact"); }
static void test_cons_mark_sweep(void **s) { (void)s; prefork_conservative("mark_sweep"); }

/* ---- fh_prefork with an object pinned by fh_pin ---- */

typedef struct pin_ctx {
  const char *collector;
  int honours;
} pin_ctx;

/* Ring nodes that refer to the pinned object (non-moving ones among them:
 * every third ring node is). */
static const size_t holders[] = {0, 1, 2, 3, 10, 41};
#define NHOLDERS (sizeof holders / sizeof holders[0])

static int holders_see(const test_ring *g, uintptr_t x) {
  for (size_t k = 0; k < NHOLDERS; k++) {
    const tnode *z = g->arr[holders[k]];
    SCENARIO_CHECK((uintptr_t)z->other == x);
    SCENARIO_CHECK(node_ok(z->other, 4242));
    SCENARIO_CHECK(node_ok(z->other->next, 4343));
  }
  return 0;
}

static int prefork_pinned_fn(void *arg) {
  const pin_ctx *c = arg;
  char spec[128];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=64M,non_moving_max=32M,verify=1",
           c->collector);
  fh_heap *h = test_child_heap(spec);
  test_types ty;
  if (!h || !test_register_types(h, &ty)) return 2;
  fh_thread *t = fh_thread_attach(h);
  test_ring g;
  test_ring_build(t, &ty, &g, 400, 3, 1);
  for (int k = 0; k < 500; k++) test_node(t, &ty, 0); /* garbage below it */
  tnode *x = test_node(t, &ty, 4242);
  /* Only the pinned object refers to this one: scanning it must copy it. */
  fh_write_ref(t, x, (void **)&x->next, test_node(t, &ty, 4343));
  SCENARIO_CHECK(fh_pin(t, x) == 0);
  uintptr_t at = (uintptr_t)x;
  for (size_t k = 0; k < NHOLDERS; k++) {
    tnode *z = g.arr[holders[k]];
    fh_write_ref(t, z, (void **)&z->other, x);
  }
  x = NULL; /* from here only the integer: the pin keeps it */
  for (int k = 0; k < 500; k++) test_node(t, &ty, 0); /* and above it */

  /* Two generations: the second must keep the first's references too. */
  for (int gen = 0; gen < 2; gen++) {
    SCENARIO_CHECK(fh_prefork(t) == 0);
    fh_gc_wait(h);
    SCENARIO_CHECK(ring_ok(&g));
    for (size_t i = 0; i < g.n; i++) SCENARIO_CHECK(in_zygote(h, g.arr[i]));
    SCENARIO_CHECK(in_moving_space(h, (void *)at));
    SCENARIO_CHECK(holders_see(&g, at) == 0);
    SCENARIO_CHECK(in_zygote(h, ((tnode *)at)->next));
    /* Only the pinned object stayed: the bump space ends right after it. */
    if (!h->has_malloc_spaces) {
      bump_space *b = &h->bump[h->active];
      SCENARIO_CHECK(atomic_load(&b->top) == at - FH__HEADER_BYTES + 40);
    } else {
      SCENARIO_CHECK(atomic_load(&heap_main_malloc(h)->used) == 48);
    }
    for (int r = 0; r < 4; r++) {
      for (int k = 0; k < 2000; k++) test_node(t, &ty, 0);
      SCENARIO_CHECK(fh_collect(t, pinned_kind(c->honours, r)) == 0);
      fh_gc_wait(h);
      SCENARIO_CHECK(holders_see(&g, at) == 0);
    }
    if (gen == 0) {
      /* New objects for the next generation. */
      for (int k = 0; k < 200; k++) test_node(t, &ty, 0);
    }
  }

  /* Unpinned, it moves with the next moving collection, and the zygote's
   * references to it (found through their cards) follow. */
  fh_unpin(t, (void *)at);
  int moved = 0;
  for (int r = 0; r < 6; r++) {
    for (int k = 0; k < 2000; k++) test_node(t, &ty, 0);
    fh_collect_kind kind = h->has_malloc_spaces ? FH_COLLECT_HSPACE_COMPACT : FH_COLLECT_DEFAULT;
    SCENARIO_CHECK(fh_collect(t, kind) == 0);
    fh_gc_wait(h);
    uintptr_t now = (uintptr_t)((tnode *)g.arr[holders[0]])->other;
    if (now != at) moved = 1;
    SCENARIO_CHECK(holders_see(&g, now) == 0);
    SCENARIO_CHECK(ring_ok(&g));
  }
  SCENARIO_CHECK(moved);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

static void prefork_pinned(const char *collector) {
  pin_ctx c = {collector, honours_pins(collector)};
  int st = test_run_isolated(prefork_pinned_fn, &c, 120);
  test_assert_child_ok(st, collector);
}

static void test_pin_semispace(void **s) { (void)s; prefork_pinned("semispace"); }
static void test_pin_mark_compact(void **s) { (void)s; prefork_pinned("mark_compact"); }
static void test_pin_concurrent(void **s) { (void)s; prefork_pinned("concurrent_compact"); }
static void test_pin_mark_sweep(void **s) { (void)s; prefork_pinned("mark_sweep"); }

/* ---- fork(): the other threads' pins stay in the parent ---- */

typedef struct pinner {
  fh_heap *h;
  const test_types *ty;
  void **root;       /* a root array slot of the main thread's */
  uintptr_t pinned;  /* the object it pinned */
  int pipe_ready[2], pipe_go[2];
} pinner;

static void *pinner_main(void *arg) {
  pinner *p = arg;
  fh_thread *t = fh_thread_attach(p->h);
  tnode *x = test_node(t, p->ty, 5151);
  if (fh_pin(t, x) < 0) abort();
  p->pinned = (uintptr_t)x;
  *p->root = x; /* also reachable from the main thread's root */
  fh_enter_blocking(t); /* parked across the fork */
  char b = 1;
  if (write(p->pipe_ready[1], &b, 1) != 1 || read(p->pipe_go[0], &b, 1) != 1) abort();
  fh_leave_blocking(t);
  fh_unpin(t, x);
  fh_thread_detach(t);
  return NULL;
}

typedef struct fork_ctx {
  const char *collector;
  const char *stack_roots;
  int honours;
} fork_ctx;

static int fork_pins_fn(void *arg) {
  const fork_ctx *c = arg;
  char spec[160];
  snprintf(spec, sizeof spec, "collector=%s,stack_roots=%s,heap_max=64M,verify=1",
           c->collector, c->stack_roots);
  fh_heap *h = test_child_heap(spec);
  test_types ty;
  if (!h || !test_register_types(h, &ty)) return 2;
  fh_thread *t = fh_thread_attach(h);
  void **roots = fh_alloc(t, ty.array, 4 * sizeof(void *));
  SCENARIO_CHECK(roots != NULL);
  fh_push_root(t, (void **)&roots);
  void *slot = NULL; /* the pinner's object, as a root of this thread */
  fh_push_root(t, &slot);
  pinner p = {.h = h, .ty = &ty, .root = &slot};
  SCENARIO_CHECK(pipe(p.pipe_ready) == 0 && pipe(p.pipe_go) == 0);
  pthread_t th;
  SCENARIO_CHECK(pthread_create(&th, NULL, pinner_main, &p) == 0);
  char b;
  fh_enter_blocking(t);
  SCENARIO_CHECK(read(p.pipe_ready[0], &b, 1) == 1);
  fh_leave_blocking(t);
  int precise = strcmp(c->stack_roots, "precise") == 0;
  /* In the parent the other thread's pin holds. */
  SCENARIO_CHECK(fh_collect(t, pinned_kind(c->honours, 1)) == 0);
  fh_gc_wait(h);
  SCENARIO_CHECK((uintptr_t)slot == p.pinned);
  pid_t pid = fork();
  SCENARIO_CHECK(pid >= 0);
  if (pid == 0) {
    alarm(60);
    fh_postfork_child(h);
    CHILD_CHECK(h->nthreads == 1);
    /* The child's own pin. */
    tnode *mine = test_node(t, &ty, 6161);
    CHILD_CHECK(fh_pin(t, mine) == 0);
    uintptr_t mine_at = (uintptr_t)mine;
    mine = NULL;
    for (int r = 0; r < 6; r++) {
      for (int g = 0; g < 3000; g++) test_node(t, &ty, 0);
      /* Only this thread's pin counts now: the absent one's object is an
       * ordinary object here, moved by any moving collection. */
      fh_collect_kind kind = r % 2 ? FH_COLLECT_MARK_SWEEP
                                   : (c->honours ? FH_COLLECT_DEFAULT : FH_COLLECT_MARK_SWEEP);
      CHILD_CHECK(fh_collect(t, kind) == 0);
      fh_gc_wait(h);
      CHILD_CHECK(node_ok((tnode *)mine_at, 6161));
      CHILD_CHECK(node_ok(slot, 5151));
      fh_stats s;
      fh_get_stats(h, &s);
      if (precise) CHILD_CHECK(s.pinned_last == 1);
    }
    fh_unpin(t, (void *)mine_at);
    /* A moving collection: with conservative stacks only where the
     * collector honours their pins. */
    CHILD_CHECK(fh_collect(t, precise || c->honours ? FH_COLLECT_DEFAULT
                                                    : FH_COLLECT_MARK_SWEEP) == 0);
    fh_gc_wait(h);
    CHILD_CHECK(node_ok(slot, 5151));
    _exit(0);
  }
  int st;
  SCENARIO_CHECK(waitpid(pid, &st, 0) == pid);
  b = 1;
  SCENARIO_CHECK(write(p.pipe_go[1], &b, 1) == 1);
  fh_enter_blocking(t);
  pthread_join(th, NULL);
  fh_leave_blocking(t);
  char why[128];
  if (!test_child_ok(st, why, sizeof why)) {
    fprintf(stderr, "fork child (%s, %s): %s\n", c->collector, c->stack_roots, why);
    return 1;
  }
  SCENARIO_CHECK(node_ok(slot, 5151));
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

static void test_fork_drops_other_pins(void **s) {
  (void)s;
  test_skip_under_tsan(NO_FORK_UNDER_TSAN);
  static const char *const modes[] = {"precise", "conservative"};
  for (size_t c = 0; c < NCOLLECTORS; c++)
    for (size_t m = 0; m < 2; m++) {
      fork_ctx ctx = {collectors[c], modes[m], honours_pins(collectors[c])};
      int st = test_run_forked(fork_pins_fn, &ctx, 120);
      char what[96];
      snprintf(what, sizeof what, "%s, stack_roots=%s", collectors[c], modes[m]);
      test_assert_child_ok(st, what);
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cons_semispace),
      cmocka_unit_test(test_cons_mark_compact),
      cmocka_unit_test(test_cons_concurrent),
      cmocka_unit_test(test_cons_mark_sweep),
      cmocka_unit_test(test_pin_semispace),
      cmocka_unit_test(test_pin_mark_compact),
      cmocka_unit_test(test_pin_concurrent),
      cmocka_unit_test(test_pin_mark_sweep),
      cmocka_unit_test(test_fork_drops_other_pins),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
