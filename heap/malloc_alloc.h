/* The mark-sweep allocation fast path: an object from the thread's prepaid
 * budget, straight from fh_alloc_slow (heap/alloc.c) into mallocx.
 *
 * Inline so that an allocation costs one call below fh_alloc (fh_alloc_slow)
 * (plus jemalloc's own for objects too large for runs).  It used to go through the out-of-line
 * malloc_heap_alloc_slow too, which refills budgets and runs collections and
 * so saves six registers and a large frame on every entry; going straight
 * made GCBench (collector=mark_sweep) about 6% faster.  heap/malloc_heap.c
 * has the rest (refills, runs and holes, held-back allocation bits). */
#ifndef FH_MALLOC_ALLOC_H_
#define FH_MALLOC_ALLOC_H_

#include <stdatomic.h>
#include <string.h>

#include "heap/heap.h"
#include "heap/object.h"
#include "heap/sys.h"

/* Zero nw words.  Straight-line stores for the common tiny objects: a loop
 * here becomes `rep stos`, whose start-up cost dwarfed a 24-byte node. */
static inline void malloc_heap_zero_words(uint64_t *w, size_t nw) {
  switch (nw) {
  case 6: w[5] = 0; __attribute__((fallthrough));
  case 5: w[4] = 0; __attribute__((fallthrough));
  case 4: w[3] = 0; __attribute__((fallthrough));
  case 3: w[2] = 0; __attribute__((fallthrough));
  case 2: w[1] = 0; __attribute__((fallthrough));
  case 1: w[0] = 0; __attribute__((fallthrough));
  case 0: return;
  default: break;
  }
  /* Up to a run object's 64 words: 16-byte stores.  A memset here became
   * `rep stos`, a fifth of the time of 64-256-byte allocations (perf); the
   * empty asm keeps GCC from turning the loop back into one. */
  typedef uint64_t v2 __attribute__((vector_size(16), aligned(8)));
  size_t i = 0;
  for (; i + 2 <= nw; i += 2) {
    *(v2 *)(w + i) = (v2){0, 0};
    __asm__("" : : "r"(w + i) : "memory");
  }
  if (i < nw) w[i] = 0;
}

/* An object of `bytes` (malloc_object_bytes(n)) that the budget covers, or
 * NULL when jemalloc found no room (the caller takes the slow path).  The
 * budget's refill cached the flags and the bitmap in the thread.  Small
 * objects are bumped out of the thread's hole in a run (no jemalloc call);
 * larger ones are one mallocx each. */
/* Always inlined into fh_alloc_slow: the fault-injection seam's check and
 * the signal fence took it past GCC's inlining limit at -O2 (+17
 * instructions an allocation, callgrind). */
__attribute__((always_inline)) static inline void *
malloc_heap_alloc_budget(fh_thread *t, uint32_t type, size_t n, size_t bytes) {
  void *mem;
  if (FH__LIKELY(bytes <= MS_RUN_OBJ_MAX)) {
    uintptr_t cur = t->ms_main.cur;
    if (FH__LIKELY(bytes <= t->ms_main.end - cur)) {
      t->ms_main.cur = cur + bytes;
      mem = (void *)cur;
    } else {
      mem = malloc_heap_next_hole(t, bytes);
      if (FH__UNLIKELY(!mem)) return NULL;
    }
    /* Holes hold what dead objects left: zero the payload here, a few
     * stores for the common tiny objects. */
    malloc_heap_zero_words((uint64_t *)mem + 1, (n + 7) >> 3);
  } else {
    /* MALLOCX_ZERO skips memory jemalloc knows is still zero. */
    mem = sys_mallocx(bytes, t->ms_flags | MALLOCX_ZERO);
    if (FH__UNLIKELY(!mem)) return NULL;
  }
  *(uint64_t *)mem = fh__make_header(type, n);
  /* The bit after the header, as the compiler emits them: a fork child
   * publishes an absent thread's held-back bits (heap/fork.c). */
  atomic_signal_fence(memory_order_seq_cst);
  size_t i = ((uintptr_t)mem - t->ms_bits_base) >> MS_GRANULE_SHIFT;
  _Atomic uint64_t *word = &t->ms_bits_words[i >> 6];
  if (FH__UNLIKELY(t->ms_black)) {
    /* Concurrent marking runs: the object is live for this cycle, and its
     * bits are set before it is returned (collectors/concurrent_mark.h). */
    malloc_heap_alloc_black(t, word, (uint64_t)1 << (i & 63), bytes);
  } else {
    if (FH__UNLIKELY(word != t->ms_pending_word)) {
      malloc_heap_publish_pending(t);
      t->ms_pending_word = word;
    }
    t->ms_pending_mask |= (uint64_t)1 << (i & 63);
  }
  t->ms_budget -= bytes;
  t->ms_unposted += bytes;
  return (char *)mem + FH_HEADER_BYTES;
}

/* fh_alloc on a mark-sweep heap, arguments already checked.  A thread has
 * a budget only on a heap with malloc spaces, so the budget test is also
 * the collector test. */
static inline void *malloc_heap_alloc(fh_thread *t, uint32_t type, size_t n) {
  size_t bytes = malloc_object_bytes(n);
  if (FH__LIKELY(bytes <= t->ms_budget)) {
    void *obj = malloc_heap_alloc_budget(t, type, n, bytes);
    if (FH__LIKELY(obj != NULL)) return obj;
  }
  return malloc_heap_alloc_slow(t, type, n);
}

#endif
