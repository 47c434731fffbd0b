/* Conservative stack roots: saving a thread's registers and stack top,
 * scanning stacks, finding the object under an ambiguous word
 * (heap/conservative.h). */
#include "heap/conservative.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "heap/error.h"
#include "heap/heap.h"

/* Stack words are read as plain memory: the sanitizers would take the
 * redzones and other threads' live frames for bugs. */
#define RAW_STACK_READ __attribute__((noinline, no_sanitize_address, no_sanitize("thread")))

int conservative_stack_new(fh_heap *h, uintptr_t stack_base, cons_stack **out) {
  *out = NULL;
  volatile uintptr_t here = 0;
  if (stack_base && stack_base <= (uintptr_t)&here) {
    fh_error_set("fh_thread_attach_stack: base %p is not above the caller's stack pointer (%p)",
                 (void *)stack_base, (void *)&here);
    return -1;
  }
  if (h->opt.stack_roots != FH_STACK_ROOTS_CONSERVATIVE) return 0;
  cons_stack *c = calloc(1, sizeof *c);
  if (!c) {
    fh_error_set("fh_thread_attach: out of memory for the conservative stack record");
    return -1;
  }
  if (stack_base) {
    /* The embedder's word: no pthread_getattr_np, which for the main
     * thread reads /proc/self/maps (~0.1 ms, a tenth of an image boot). */
    c->base = c->live = stack_base;
    *out = c;
    return 0;
  }
  pthread_attr_t attr;
  void *addr;
  size_t size;
  int err = pthread_getattr_np(pthread_self(), &attr);
  if (err == 0) {
    err = pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
  }
  if (err != 0) {
    free(c);
    fh_error_set("fh_thread_attach: stack_roots=conservative cannot find this thread's stack "
                 "(pthread_getattr_np: error %d)", err);
    return -1;
  }
  c->base = (uintptr_t)addr + size;
  c->live = c->base;
  *out = c;
  return 0;
}

int fh_thread_set_stack(fh_thread *t, void *stack_base) {
  volatile uintptr_t here = 0;
  if (!t || !stack_base) {
    fh_error_set("fh_thread_set_stack: %s is NULL", t ? "stack_base" : "thread");
    return -1;
  }
  /* The caller's frame lies on the new stack, below its base. */
  if ((uintptr_t)stack_base <= (uintptr_t)&here) {
    fh_error_set("fh_thread_set_stack: base %p is not above the caller's stack pointer (%p)",
                 stack_base, (void *)&here);
    return -1;
  }
  if (!t->cons) return 0;
  /* Only this thread writes its record, and no collection reads it while
   * the thread runs (stacks are scanned with their threads stopped). */
  t->cons->base = t->cons->live = (uintptr_t)stack_base;
  t->cons->entry = 0;
  t->cons->nsaved = 0;
  return 0;
}

/* Copy the topmost CONS_WINDOW bytes of the stack, from this frame up: the
 * caller's frame, with the registers it spilled, lies inside. */
RAW_STACK_READ static void save_window(cons_stack *c) {
  volatile uintptr_t marker = 0;
  uintptr_t sp = (uintptr_t)&marker & ~(uintptr_t)(sizeof(uintptr_t) - 1);
  if (c->entry > sp && c->entry < c->base) sp = c->entry; /* not the collector's frames */
  uintptr_t end = c->base - sp > CONS_WINDOW ? sp + CONS_WINDOW : c->base;
  size_t n = 0;
  for (uintptr_t a = sp; a < end; a += sizeof(uintptr_t)) c->saved[n++] = *(volatile uintptr_t *)a;
  c->nsaved = n;
  c->live = end;
  (void)marker;
}

__attribute__((noinline)) void conservative_save(fh_thread *t) {
  if (!t->cons) return;
  /* Every callee-saved register onto this frame, where save_window's copy
   * picks it up (its value in the caller may be the only reference). */
  __builtin_unwind_init();
  save_window(t->cons);
  __asm__ volatile("" ::: "memory"); /* no tail call: this frame must outlive the copy */
}

/* The collector's own frames below a collection's entry hold no
 * reference the mutator needs, but their slots that this call path did
 * not write still hold what earlier, deeper calls left there: a failed
 * TLAB claim's addresses, the previous collection's locals.  Scanned,
 * they pinned dead objects and kept what those reached: GCBench written
 * without root slots kept part of its dropped stretch tree through two
 * young collections and a full one (fhbench gcbench, fh-conservative).
 * The boundary is this function's frame address: above it lie its return
 * address and its caller's frame, which holds the caller's spilled
 * callee-saved registers (the mutator's values, wherever they were). */
__attribute__((noinline)) uintptr_t conservative_enter(fh_thread *t) {
  if (!t || !t->cons) return 0;
  uintptr_t prev = t->cons->entry;
  /* Always the innermost entry, should one ever nest: the frames between
   * the two would be scanned.  (None does today: the embedder's code that
   * a collection calls and that may collect, the finalizer notification,
   * runs after conservative_leave.) */
  t->cons->entry = (uintptr_t)__builtin_frame_address(0);
  return prev;
}

void conservative_leave(fh_thread *t, uintptr_t prev) {
  if (t && t->cons) t->cons->entry = prev;
}

/* Zeroes CONS_CLEAR bytes of the stack below the caller: this function's
 * own frame.  Deep call chains that have returned leave pointers in the
 * dead stack below; a later chain that reaches as deep finds them in
 * slots it has not written yet (padding, spill slots), and the scan would
 * keep their objects alive: GCBench's dropped 16 MiB stretch tree was kept
 * that way for the whole run.  Boehm GC clears the same way. */
#define CONS_CLEAR 4096u

__attribute__((noinline)) void conservative_clear_below(void) {
  volatile uintptr_t dead[CONS_CLEAR / sizeof(uintptr_t)];
  for (size_t i = 0; i < sizeof dead / sizeof dead[0]; i++) dead[i] = 0;
}

/* The object whose allocation bit is the last at or before a, if a lies
 * inside it (malloc and non-moving spaces: bits mark every object). */
static uintptr_t alloc_bits_object_at(const fh_bitmap *bits, uintptr_t lo, uintptr_t frontier,
                                      uintptr_t a) {
  if (a >= frontier) return 0;
  uintptr_t p = bitmap_prev_set(bits, lo, a & ~(uintptr_t)15);
  if (!p) return 0;
  return a < p + obj_bytes(*(const uint64_t *)p) ? p : 0;
}

uintptr_t conservative_object_at(fh_heap *h, uintptr_t a) {
  const void *p = (const void *)a;
  for (int i = 0; i < 2; i++)
    if (space_contains(&h->bump[i].space, p)) return bump_space_object_at(&h->bump[i], a);
  non_moving_space *nm = &h->non_moving;
  if (space_contains(&nm->space, p))
    return alloc_bits_object_at(&nm->alloc_bits, nm->space.begin,
                                nm->space.begin + arena_mapped(&nm->arena), a);
  if (los_contains(&h->los, p)) return los_object_at(&h->los, a); /* interior pointers too */
  if (h->has_malloc_spaces)
    for (int i = 0; i < 2; i++)
      if (space_contains(&h->malloc[i].space, p))
        return alloc_bits_object_at(&h->malloc[i].alloc_bits, h->malloc[i].space.begin,
                                    malloc_space_frontier(&h->malloc[i]), a);
  return 0; /* image, zygote, guards: nothing there moves or dies */
}

/* Words already looked up this scan, by value: stacks repeat the same
 * pointers (every frame of a recursion, saved copies), and each distinct
 * object should reach the pin set once (sorting repeats cost more than the
 * scan itself).  Direct-mapped; a collision only costs a second lookup
 * and a repeat in the set, which pins_gather drops. */
typedef struct scan_ctx {
  fh_heap *h;
  pin_set *s;
  uintptr_t lo, span; /* the reservation */
  size_t words;
  uintptr_t *seen; /* [PIN_SEEN_SLOTS] word values looked up (0: empty) */
} scan_ctx;

static int consider(scan_ctx *c, uintptr_t v) {
  if (v - c->lo >= c->span) return 0;
  size_t k = (size_t)((v >> 3) * 0x9E3779B97F4A7C15ull >> (64 - PIN_SEEN_BITS));
  if (c->seen[k] == v) return 0; /* looked up (and added, if an object) */
  c->seen[k] = v;
  uintptr_t start = conservative_object_at(c->h, v);
  return start ? pin_set_add(c->s, start) : 0;
}

RAW_STACK_READ static int scan_words(scan_ctx *c, uintptr_t lo, uintptr_t hi) {
  for (uintptr_t a = lo; a < hi; a += sizeof(uintptr_t))
    if (consider(c, *(volatile const uintptr_t *)a) < 0) return -1;
  c->words += (hi - lo) / sizeof(uintptr_t);
  return 0;
}

static int scan_all(scan_ctx *c, fh_thread *self) {
  if (self) conservative_save(self);
  fh_thread *t;
  cds_list_for_each_entry(t, &c->h->threads, link) {
    cons_stack *st = t->cons;
    if (!st) continue;
    for (size_t i = 0; i < st->nsaved; i++)
      if (consider(c, st->saved[i]) < 0) return -1;
    c->words += st->nsaved;
    if (scan_words(c, st->live, st->base) < 0) return -1;
  }
  c->s->words_scanned = c->words;
  return 0;
}

int conservative_scan(fh_heap *h, fh_thread *self, pin_set *s) {
  /* Kept from one collection to the next: a fresh 32 KiB each time cost
   * more in page faults and TLB shootdowns than the scan itself. */
  if (!s->seen && !(s->seen = malloc(PIN_SEEN_SLOTS * sizeof *s->seen))) {
    fh_error_set("collection: out of memory scanning stacks conservatively");
    return -1;
  }
  memset(s->seen, 0, PIN_SEEN_SLOTS * sizeof *s->seen);
  scan_ctx c = {.h = h, .s = s, .lo = h->resv_begin, .span = h->resv_size, .seen = s->seen};
  return scan_all(&c, self);
}
