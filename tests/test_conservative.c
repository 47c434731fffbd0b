/* Conservative stack roots (stack_roots=conservative): objects referenced
 * only from C locals in deep recursion, from callee-saved registers (of
 * the collecting thread and of a parked one), and by interior pointers
 * stay alive and in place under every collector; lists built with no root
 * slot at all survive gc_stress collections on several threads. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "heap/conservative.h"
#include "heap/heap.h"
#include "support_configs.h"

#define CONS ",stack_roots=conservative"

/* The configurations of support_configs.c, conservative. */
static const test_config cons_configs[] = {
    {"semispace", CONS, {FH_COLLECT_SEMISPACE, FH_COLLECT_SEMISPACE}},
    {"gen_semispace", CONS, {FH_COLLECT_YOUNG, FH_COLLECT_DEFAULT}},
    {"mark_sweep", CONS, {FH_COLLECT_MARK_SWEEP, FH_COLLECT_HSPACE_COMPACT}},
    {"mark_compact", CONS, {FH_COLLECT_MARK_COMPACT, FH_COLLECT_SEMISPACE}},
    {"concurrent_compact", ",uffd_sigbus=1" CONS,
     {FH_COLLECT_CONCURRENT_COMPACT, FH_COLLECT_MARK_SWEEP}},
    {"concurrent_compact", ",uffd_sigbus=0" CONS,
     {FH_COLLECT_CONCURRENT_COMPACT, FH_COLLECT_MARK_COMPACT}},
};

/* Garbage between the objects a test keeps, so compaction moves things. */
static void churn(fh_thread *t, const test_types *ty, int n) {
  for (int i = 0; i < n; i++) test_node(t, ty, 0xdead);
}

/* ---- locals in deep recursion ---- */

typedef struct deep_ctx {
  const test_config *cfg;
  fh_heap *h;
  fh_thread *t;
  test_types ty;
  int finalizers_attached;
} deep_ctx;

enum { DEPTH = 200 };

/* Each level keeps its node (and, through it, a second node only the heap
 * references) in locals only; the bottom collects; each level checks its
 * nodes on the way back.  A node that moved left its old copy poisoned
 * (verify=1), one that died was freed: either way the values are wrong. */
__attribute__((noinline)) static int descend(deep_ctx *c, int depth) {
  tnode *mine = test_node(c->t, &c->ty, (uint64_t)depth);
  uintptr_t where = (uintptr_t)mine;
  tnode *child = test_node(c->t, &c->ty, 100000 + (uint64_t)depth);
  fh_write_ref(c->t, mine, (void **)&mine->next, child);
  child = NULL;
  if (depth % 8 == 0 && fh_finalizer_attach(c->t, mine, NULL) == 0) c->finalizers_attached++;
  churn(c->t, &c->ty, 3);
  int bad = 0;
  if (depth < DEPTH) {
    bad = descend(c, depth + 1);
  } else {
    for (int i = 0; i < 4; i++) {
      churn(c->t, &c->ty, 500);
      test_config_collect(c->cfg, c->t, i);
      fh_gc_wait(c->h);
    }
  }
  if ((uintptr_t)mine != where || mine->value != (uint64_t)depth ||
      mine->check != test_check((uint64_t)depth) || !mine->next ||
      mine->next->value != 100000 + (uint64_t)depth)
    bad++;
  return bad;
}

static void deep_locals_under(const test_config *cfg) {
  deep_ctx c = {.cfg = cfg};
  fh_heap *h = c.h = test_config_heap(cfg, &c.ty, &c.t);
  assert_int_equal(descend(&c, 0), 0);
  /* None was found unreachable while its frame held it. */
  void *obj, *data;
  assert_int_equal(fh_finalizer_pop(c.t, &obj, &data), 0);
  assert_true(c.finalizers_attached > 0);
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.conservative_pinned_last > 0);
  assert_true(s.stack_words_scanned > 0);
  test_config_teardown(h, c.t);
}

/* The control: with precise stacks the same nodes are found unreachable
 * (their finalizers are queued), so the test above does see a lost root.
 * Mark-sweep only: nothing moves, so the stale locals stay readable. */
static void deep_locals_precise_control(void **state) {
  (void)state;
  static const test_config precise = {"mark_sweep", "",
                                      {FH_COLLECT_MARK_SWEEP, FH_COLLECT_MARK_SWEEP}};
  deep_ctx c = {.cfg = &precise};
  fh_heap *h = c.h = test_config_heap(&precise, &c.ty, &c.t);
  (void)descend(&c, 0);
  void *obj, *data;
  assert_int_equal(fh_finalizer_pop(c.t, &obj, &data), 1);
  test_config_teardown(h, c.t);
}

/* ---- interior pointers ---- */

enum { ARRAY_BYTES = 10000, INSIDE = 5000 };

/* Only an interior pointer leaves this function. */
__attribute__((noinline)) static unsigned char *make_array(fh_thread *t, const test_types *ty) {
  unsigned char *a = fh_alloc(t, ty->bytes, ARRAY_BYTES);
  if (!a) return NULL;
  for (int i = 0; i < ARRAY_BYTES; i++) a[i] = (unsigned char)(i * 7);
  return a + INSIDE;
}

static void interior_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  churn(t, &ty, 100);
  unsigned char *volatile mid = make_array(t, &ty);
  assert_non_null(mid);
  for (int r = 0; r < 6; r++) {
    churn(t, &ty, 300);
    test_config_collect(cfg, t, r);
    fh_gc_wait(h);
  }
  unsigned char *m = mid;
  for (int i = 0; i < ARRAY_BYTES; i++) assert_int_equal(m[i - INSIDE], (unsigned char)(i * 7));
  assert_int_equal(fh_object_size(m - INSIDE), ARRAY_BYTES);
  test_config_teardown(h, t);
}

/* ---- registers ---- */

#if defined(__x86_64__)
#define HAVE_REGISTER_TEST 1
/* The value lives in r15 alone while fn runs: the stack holds it only
 * xor'ed with `key`.  The stack is realigned for the call and kept clear
 * of this frame's red zone; fn is ordinary C and preserves r15. */
__attribute__((noinline)) static uintptr_t in_r15_across(uintptr_t hidden, uintptr_t key,
                                                         void (*fn)(void)) {
  /* hidden comes back as the value: one register for both (with a frame
   * pointer and these clobbers only r12-r14 are left for operands). */
  __asm__ volatile("mov %0, %%r15\n\t"
                   "xor %1, %%r15\n\t"
                   "mov %%rsp, %%rbx\n\t"
                   "sub $128, %%rsp\n\t"
                   "and $-16, %%rsp\n\t"
                   "call *%2\n\t"
                   "mov %%rbx, %%rsp\n\t"
                   "mov %%r15, %0\n\t"
                   "xor %%r15, %%r15\n\t"
                   : "+r"(hidden)
                   : "r"(key), "r"(fn)
                   : "rbx", "r15", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
                     "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                     "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory",
                     "cc");
  return hidden;
}
#else
#define HAVE_REGISTER_TEST 0
#endif

#define KEY ((uintptr_t)0x5a5a5a5a5a5a5a5aull)

static struct {
  const test_config *cfg;
  fh_heap *h;
  fh_thread *main_t, *other_t;
  test_types ty;
  atomic_int other_ready, done;
} reg;

/* Runs with the main thread's node in r15: collect. */
static void collect_from_register(void) {
  for (int i = 0; i < 4; i++) {
    churn(reg.main_t, &reg.ty, 400);
    test_config_collect(reg.cfg, reg.main_t, i);
    fh_gc_wait(reg.h);
  }
}

/* Runs on the other thread with its node in r15: park at safepoints. */
static void park_until_done(void) {
  atomic_store(&reg.other_ready, 1);
  while (!atomic_load(&reg.done)) fh_safepoint(reg.other_t);
}

static void *other_thread(void *arg) {
  fh_heap *h = arg;
  reg.other_t = fh_thread_attach(h);
  tnode *n = test_node(reg.other_t, &reg.ty, 4242);
  uintptr_t hidden = (uintptr_t)n ^ KEY;
  n = NULL;
#if HAVE_REGISTER_TEST
  uintptr_t back = in_r15_across(hidden, KEY, park_until_done);
#else
  uintptr_t back = hidden ^ KEY;
  park_until_done();
#endif
  tnode *m = (tnode *)back;
  int ok = back == (hidden ^ KEY) && m->value == 4242 && m->check == test_check(4242);
  fh_thread_detach(reg.other_t);
  return (void *)(uintptr_t)ok;
}

static void registers_under(const test_config *cfg) {
  if (!HAVE_REGISTER_TEST) skip();
  reg.cfg = cfg;
  atomic_store(&reg.other_ready, 0);
  atomic_store(&reg.done, 0);
  fh_heap *h = reg.h = test_config_heap(cfg, &reg.ty, &reg.main_t);
  pthread_t th;
  fh_enter_blocking(reg.main_t);
  assert_int_equal(pthread_create(&th, NULL, other_thread, h), 0);
  while (!atomic_load(&reg.other_ready)) sched_yield();
  fh_leave_blocking(reg.main_t);
  tnode *n = test_node(reg.main_t, &reg.ty, 777);
  uintptr_t hidden = (uintptr_t)n ^ KEY;
  n = NULL;
#if HAVE_REGISTER_TEST
  uintptr_t back = in_r15_across(hidden, KEY, collect_from_register);
#else
  uintptr_t back = hidden ^ KEY;
  collect_from_register();
#endif
  atomic_store(&reg.done, 1);
  void *ok;
  fh_enter_blocking(reg.main_t);
  pthread_join(th, &ok);
  fh_leave_blocking(reg.main_t);
  assert_true(ok != NULL);
  tnode *m = (tnode *)back;
  assert_int_equal(back, hidden ^ KEY);
  assert_int_equal(m->value, 777);
  assert_int_equal(m->check, test_check(777));
  test_config_teardown(h, reg.main_t);
}

/* ---- no root slots at all, several threads, gc_stress ---- */

enum { LIST = 1500, THREADS = 3 };

typedef struct list_job {
  fh_heap *h;
  const test_types *ty;
  int ok;
} list_job;

/* Builds a list holding its head in a local only (as Boehm-style code
 * does), collections striking at every few allocations, and checks it. */
static void *build_list(void *arg) {
  list_job *j = arg;
  fh_thread *t = fh_thread_attach(j->h);
  tnode *head = NULL;
  for (int i = 0; i < LIST; i++) {
    tnode *n = test_node(t, j->ty, (uint64_t)i);
    fh_write_ref(t, n, (void **)&n->next, head);
    head = n;
    if (i % 16 == 0) churn(t, j->ty, 8);
    fh_safepoint(t);
  }
  int ok = 1;
  uint64_t want = LIST;
  for (tnode *n = head; n; n = n->next)
    if (n->value != --want || n->check != test_check(n->value)) ok = 0;
  j->ok = ok && want == 0;
  fh_thread_detach(t);
  return NULL;
}

static void no_roots_threads_under(const test_config *cfg) {
  char rest[160];
  snprintf(rest, sizeof rest, "heap_max=64M,verify=1,gc_stress=97%s", cfg->extra);
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(cfg->collector, rest, &ty, &t);
  list_job jobs[THREADS];
  pthread_t th[THREADS];
  fh_enter_blocking(t);
  for (int i = 0; i < THREADS; i++) {
    jobs[i] = (list_job){h, &ty, 0};
    assert_int_equal(pthread_create(&th[i], NULL, build_list, &jobs[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  fh_leave_blocking(t);
  for (int i = 0; i < THREADS; i++) assert_true(jobs[i].ok);
  test_config_teardown(h, t);
}

/* ---- hashed objects next to a stack-pinned one ---- */

/* A list of hashed cells built and walked under gc_stress, the cell in
 * hand pinned by the stack at each collection: the pinned range holds
 * hashed neighbours (which keep their address and must not grow) right
 * above growers sliding down.  A builder that sized range objects by their
 * header grew them on the page a grower made slow, and shifted the range
 * (verify=1 aborted: "reference into the bump space that is not an
 * object"). */
static int hashed_list_child(void *arg) {
  const test_config *cfg = arg;
  char spec[256];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=64M,verify=1,gc_stress=50%s", cfg->collector,
           cfg->extra);
  fh_heap *h = test_child_heap(spec);
  CHILD_CHECK(h != NULL);
  test_types ty;
  CHILD_CHECK(test_register_types(h, &ty));
  fh_thread *t = fh_thread_attach(h);
  static void *head;
  head = NULL;
  fh_root_add(h, &head);
  for (long i = 0; i < 1000; i++) {
    void **c = fh_alloc(t, ty.array, 2 * sizeof(void *));
    CHILD_CHECK(c != NULL);
    c[0] = NULL;
    fh_write_ref(t, c, &c[1], head);
    head = c;
  }
  uint64_t hashes[1000];
  for (int round = 0; round < 3; round++) {
    long k = 0;
    for (void **c = head; c; c = c[1], k++) {
      uint64_t hv = fh_object_hash(t, c);
      if (round == 0) hashes[k] = hv;
      CHILD_CHECK(hashes[k] == hv);
      fh_alloc(t, ty.array, 16);
    }
  }
  CHILD_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == 0);
  fh_gc_wait(h);
  long n = 0;
  for (void **c = head; c; c = c[1]) CHILD_CHECK(fh_object_hash(t, c) == hashes[n++]);
  CHILD_CHECK(n == 1000);
  fh_root_remove(h, &head);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

static void hashed_list_under(const test_config *cfg) {
  test_skip_under_tsan("gc_stress with verify=1 on every allocation is too slow under TSan");
  test_assert_child_ok(test_run_forked(hashed_list_child, (void *)cfg, 60), cfg->collector);
}

/* ---- a stack of the embedder's own (fh_thread_set_stack) ---- */

/* The thread switches to a stack it mapped itself (makecontext, as
 * fhscheme's interpreter does) and says where it ends: a list held only by
 * locals on that stack survives moving collections with verify=1.  Without
 * the call the scan would run from the new stack's pointer up to the OS
 * stack's base (a range of unrelated memory, or a fault). */
#include <sys/mman.h>
#include <ucontext.h>

#define OWN_STACK_BYTES ((size_t)1 << 20)
static ucontext_t own_main, own_ctx;
static struct own_job {
  const char *collector;
  fh_heap *h;
  fh_thread *t;
  test_types ty;
  void *top;
  int attach_inside; /* fh_thread_attach_stack on the new stack */
  int ok;
} own;

static void own_stack_body(void) {
  if (own.attach_inside) own.ok = (own.t = fh_thread_attach_stack(own.h, own.top)) != NULL;
  else own.ok = fh_thread_set_stack(own.t, own.top) == 0;
  tnode *head = NULL; /* on the new stack only: no root slot */
  for (uint64_t i = 0; i < 2000 && own.ok; i++) {
    tnode *n = test_node(own.t, &own.ty, i);
    fh_write_ref(own.t, n, (void **)&n->next, head);
    head = n;
    if (i % 500 == 0) churn(own.t, &own.ty, 3000);
  }
  for (int c = 0; c < 3 && own.ok; c++) {
    churn(own.t, &own.ty, 3000);
    own.ok = fh_collect(own.t, FH_COLLECT_DEFAULT) == 0;
  }
  uint64_t want = 2000;
  for (tnode *n = head; n && own.ok; n = n->next)
    own.ok = n->value == --want && n->check == test_check(n->value);
  own.ok = own.ok && want == 0;
} /* returns to own_main (uc_link) */

static int own_stack_child(void *arg) {
  own.collector = arg;
  own.attach_inside = getenv("FH_TEST_ATTACH_INSIDE") != NULL;
  char spec[160];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=64M,verify=1" CONS, own.collector);
  own.h = test_child_heap(spec);
  CHILD_CHECK(own.h != NULL);
  CHILD_CHECK(test_register_types(own.h, &own.ty));
  if (!own.attach_inside) own.t = fh_thread_attach(own.h);
  CHILD_CHECK(own.attach_inside || own.t != NULL);
  char *stk = mmap(NULL, OWN_STACK_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  CHILD_CHECK(stk != MAP_FAILED);
  CHILD_CHECK(getcontext(&own_ctx) == 0);
  own_ctx.uc_stack.ss_sp = stk;
  own_ctx.uc_stack.ss_size = OWN_STACK_BYTES;
  own_ctx.uc_link = &own_main;
  own.top = stk + OWN_STACK_BYTES;
  makecontext(&own_ctx, own_stack_body, 0);
  CHILD_CHECK(swapcontext(&own_main, &own_ctx) == 0);
  CHILD_CHECK(own.ok);
  /* back on the OS stack: a base below the caller is refused */
  CHILD_CHECK(fh_thread_set_stack(own.t, stk) == -1);
  CHILD_CHECK(fh_thread_attach_stack(own.h, stk) == NULL);
  fh_thread_detach(own.t);
  fh_heap_destroy(own.h);
  return 0;
}

static void own_stack(void **state) {
  (void)state;
  /* The sanitizers follow switched stacks with annotations fhscheme does
   * not make; fhscheme itself keeps a thread under them. */
  if (test_sanitized()) skip();
  assert_int_equal(fh_thread_set_stack(NULL, &own), -1);
  assert_non_null(strstr(fh_last_error(), "thread is NULL"));
  test_assert_child_ok(test_run_forked(own_stack_child, "mark_compact", 60), "mark_compact");
  test_assert_child_ok(test_run_forked(own_stack_child, "semispace", 60), "semispace");
  test_assert_child_ok(test_run_forked(own_stack_child, "mark_sweep", 60), "mark_sweep");
  setenv("FH_TEST_ATTACH_INSIDE", "1", 1); /* read by the forked children */
  test_assert_child_ok(test_run_forked(own_stack_child, "mark_compact", 60), "attach_stack");
  test_assert_child_ok(test_run_forked(own_stack_child, "semispace", 60), "attach_stack");
  unsetenv("FH_TEST_ATTACH_INSIDE");
}

/* ---- the option ---- */

static void option_parses(void **state) {
  (void)state;
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(o.stack_roots, FH_STACK_ROOTS_PRECISE);
  assert_int_equal(fh_options_parse(&o, "stack_roots=conservative"), 0);
  assert_int_equal(o.stack_roots, FH_STACK_ROOTS_CONSERVATIVE);
  assert_int_equal(fh_options_parse(&o, "stack_roots=sometimes"), -1);
  assert_non_null(strstr(fh_last_error(), "precise, conservative"));
  assert_int_equal(o.stack_roots, FH_STACK_ROOTS_CONSERVATIVE);
}

/* ---- the collector's own frames ---- */

/* A weak reference (an ephemeron with no value) to a fresh node that
 * nothing else references, made 4 KiB down the stack: the words its
 * making leaves in dead frames lie far below the calls that collect next,
 * under any sanitizer's frame layout. */
__attribute__((noinline)) static void *weak_to_fresh_node(fh_thread *t, const test_types *ty) {
  return fh_ephemeron_new(t, test_node(t, ty, 77), NULL);
}

__attribute__((noinline)) static void *weak_to_fresh(fh_thread *t, const test_types *ty) {
  volatile char pad[4096];
  pad[0] = 0;
  void *eph = weak_to_fresh_node(t, ty);
  __asm__ volatile("" : : "r"(pad) : "memory");
  return eph;
}

/* Where the collecting thread's scan starts: read at the start event,
 * inside the collection. */
typedef struct entry_probe {
  fh_thread *t;
  uintptr_t entry;
} entry_probe;

static void note_entry(fh_heap *h, const fh_gc_event *e, void *user) {
  (void)h;
  entry_probe *p = user;
  if (!e->end && p->t->cons) p->entry = p->t->cons->entry;
}

enum { PLANTED_WORDS = 2048 }; /* 16 KiB */

/* Fills the dead stack below the caller with pointers into the weak
 * reference's node, but only below `below`: where the collection's own
 * frames will lie, not the frames of the calls that lead to it. */
__attribute__((noinline)) static void plant_key_below(fh_thread *t, void *eph, uintptr_t below) {
  volatile uintptr_t area[PLANTED_WORDS];
  uintptr_t key = (uintptr_t)fh_ephemeron_key(t, eph);
  for (size_t i = 0; i < PLANTED_WORDS; i++)
    area[i] = (uintptr_t)&area[i] < below ? key + 8 * (i % 4) : 0;
  __asm__ volatile("" : : "r"(area) : "memory"); /* the stores stay */
}

/* A node whose address only the dead stack below a collection's entry
 * holds (what earlier, deeper calls left there) dies: the collecting
 * thread's scan starts where it entered the collection, and the slots of
 * the collector's own frames that its path did not write are not read
 * (heap/conservative.c: conservative_enter).  The first collection finds
 * the entry; the second, by the same calls, runs over the planted words. */
static void stale_collector_frames_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  entry_probe probe = {t, 0};
  fh_set_gc_callback(h, note_entry, &probe);
  test_config_collect(cfg, t, 0);
  fh_gc_wait(h);
  assert_true(probe.entry != 0);
  void *volatile eph = weak_to_fresh(t, &ty);
  assert_non_null(eph);
  plant_key_below(t, eph, probe.entry - 64);
  test_config_collect(cfg, t, 0);
  fh_gc_wait(h);
  assert_null(fh_ephemeron_key(t, eph));
  fh_set_gc_callback(h, NULL, NULL);
  test_config_teardown(h, t);
}

/* One test per configuration of cons_configs, named after it. */
#define PER_CONFIG(fn)                                                                 \
  static void fn##_semispace(void **s) { (void)s; fn##_under(&cons_configs[0]); }     \
  static void fn##_gen_semispace(void **s) { (void)s; fn##_under(&cons_configs[1]); } \
  static void fn##_mark_sweep(void **s) { (void)s; fn##_under(&cons_configs[2]); }    \
  static void fn##_mark_compact(void **s) { (void)s; fn##_under(&cons_configs[3]); }  \
  static void fn##_cc_sigbus(void **s) {                                              \
    (void)s;                                                                          \
    test_skip_without_uffd();                                                         \
    fn##_under(&cons_configs[4]);                                                     \
  }                                                                                   \
  static void fn##_cc_thread(void **s) {                                              \
    (void)s;                                                                          \
    test_skip_without_uffd();                                                         \
    fn##_under(&cons_configs[5]);                                                     \
  }
PER_CONFIG(deep_locals)
PER_CONFIG(interior)
PER_CONFIG(registers)
PER_CONFIG(no_roots_threads)
PER_CONFIG(hashed_list)
PER_CONFIG(stale_collector_frames)

#define TESTS_OF(fn)                                                                     \
  cmocka_unit_test(fn##_semispace), cmocka_unit_test(fn##_gen_semispace),                \
      cmocka_unit_test(fn##_mark_sweep), cmocka_unit_test(fn##_mark_compact),            \
      cmocka_unit_test(fn##_cc_sigbus), cmocka_unit_test(fn##_cc_thread)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(option_parses),
      TESTS_OF(deep_locals),
      cmocka_unit_test(deep_locals_precise_control),
      TESTS_OF(interior),
      TESTS_OF(registers),
      TESTS_OF(no_roots_threads),
      TESTS_OF(hashed_list),
      TESTS_OF(stale_collector_frames),
      cmocka_unit_test(own_stack),
  };
  const char *only = getenv("FH_TEST_FILTER"); /* e.g. "*_mark_sweep" */
  if (only) cmocka_set_test_filter(only);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
