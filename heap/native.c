/* fh_malloc / fh_free: native memory for the runtime's buffers, served by a
 * jemalloc arena over its own reservation (outside the heap's reservation,
 * so no collector, barrier or verifier ever mistakes it for objects) and
 * never swept.  An allocation bitmap records the blocks handed out, which
 * makes fh_free of a foreign pointer or a double free an error instead of
 * heap corruption.
 *
 * Accounting (ART's registerNativeAllocation idea): the usable size of each
 * block is added to the bytes allocated since the last collection, so heavy
 * native allocation brings the next collection forward (a runtime typically
 * frees native buffers from finalizers that only a collection runs), and
 * the live native bytes appear in fh_get_stats as the "native" space. */
#include <string.h>

#include "heap/error.h"
#include "heap/heap.h"
#include "spaces/reserve.h"

static size_t native_used(const fh_space *s) {
  return atomic_load(&((const malloc_space *)s)->used);
}
static size_t native_resident(const fh_space *s) {
  if (!s->end) return 0; /* not made yet */
  return malloc_space_resident((const malloc_space *)s);
}
/* Native blocks are not objects: walking yields nothing. */
static void native_walk(fh_space *s, fh_object_fn fn, void *ctx) { (void)s, (void)fn, (void)ctx; }
static int native_is_object(const fh_space *s, const void *obj) { (void)s, (void)obj; return 0; }
static const fh_space_ops native_ops = {native_used, native_resident, native_walk,
                                        native_is_object};

/* The reservation, bitmaps and jemalloc arena are made by the first
 * fh_malloc, not by fh_heap_create: a heap whose embedder never asks for
 * native memory (most) pays nothing for them, and heap creation is ~80 us
 * and ~90 KiB resident shorter (an arena's creation writes some 20 pages
 * of jemalloc metadata).  Until then the space is listed, empty, under the
 * same name (fh_get_stats), with no range: fh_free of any pointer is then
 * refused as foreign. */
static const char native_name[] = "native (fh_malloc)";

int native_init(fh_heap *h) {
  h->native.space = (fh_space){native_name, SPACE_MALLOC, 0, 0, &native_ops};
  h->native.limit = h->native_limit = align_up(heap_reserved_max(h), FH_PMD);
  pthread_mutex_init(&h->native_lock, NULL);
  return 0;
}

/* Under native_lock and stats_lock (fh_get_stats reads the space under
 * the latter, so it never sees it half made); 0, or -1 with the error set
 * and nothing left behind, so a later fh_malloc tries again. */
static int native_make(fh_heap *h) {
  size_t limit = h->native_limit;
  /* Room for jemalloc's metadata and size classes besides `limit`. */
  h->native_resv_size = arena_range_bytes(limit);
  h->native_resv = reserve_range(h->native_resv_size, FH_PMD, 0);
  if (!h->native_resv || reserve_commit(h->native_resv, h->native_resv_size) < 0) {
    fh_error_set("cannot reserve %zu MiB for native memory (fh_malloc)",
                 h->native_resv_size >> 20);
    goto fail;
  }
  if (malloc_space_init(&h->native, native_name, h->native_resv, h->native_resv_size, limit) <
      0)
    goto fail; /* it destroyed what it had made */
  h->native.space.ops = &native_ops;
  return 0;
fail:
  reserve_release(h->native_resv, h->native_resv_size);
  h->native_resv = 0;
  h->native.space = (fh_space){native_name, SPACE_MALLOC, 0, 0, &native_ops};
  h->native.limit = limit;
  return -1;
}

/* The space, made on first use; 0, or -1 with the error set. */
static int native_ready(fh_heap *h) {
  if (atomic_load_explicit(&h->native_made, memory_order_acquire)) return 0;
  pthread_mutex_lock(&h->native_lock);
  int rc = 0;
  if (!atomic_load_explicit(&h->native_made, memory_order_relaxed)) {
    pthread_mutex_lock(&h->stats_lock);
    rc = native_make(h);
    pthread_mutex_unlock(&h->stats_lock);
    if (rc == 0) atomic_store_explicit(&h->native_made, 1, memory_order_release);
  }
  pthread_mutex_unlock(&h->native_lock);
  return rc;
}

void native_destroy(fh_heap *h) {
  if (!h->native.space.ops) return; /* native_init never ran */
  if (atomic_load(&h->native_made)) malloc_space_destroy(&h->native);
  reserve_release(h->native_resv, h->native_resv_size);
  h->native_resv = 0;
  h->native.space.ops = NULL;
  pthread_mutex_destroy(&h->native_lock);
}

void *fh_malloc(fh_heap *h, size_t n) {
  if (!h) {
    fh_error_set("fh_malloc: heap is NULL");
    return NULL;
  }
  /* 16-byte granules keep every block on its own allocation bit. */
  size_t want = n < 16 ? 16 : (n + 15) & ~(size_t)15;
  /* native_limit, not native.limit: the space's struct is rewritten while
   * the first fh_malloc makes it. */
  if (want < n || want > h->native_limit) {
    fh_error_set("fh_malloc: %zu bytes is more than native memory can hold (%zu bytes)", n,
                 h->native_limit);
    return NULL;
  }
  if (native_ready(h) < 0) {
    fh_error_prefix("fh_malloc");
    return NULL;
  }
  void *p = arena_alloc_cached(&h->native.arena, want, -1);
  if (!p) {
    fh_error_set("fh_malloc: out of native memory: %zu bytes requested, %zu of %zu in use", n,
                 atomic_load(&h->native.used), h->native.limit);
    return NULL;
  }
  size_t usable = sallocx(p, 0);
  atomic_fetch_add(&h->native.used, usable);
  atomic_fetch_add_explicit(&h->alloc_since_gc, usable, memory_order_relaxed);
  bitmap_set(&h->native.alloc_bits, (uintptr_t)p);
  return p;
}

void fh_free(fh_heap *h, void *p) {
  if (!h) {
    fh_error_set("fh_free: heap is NULL");
    return;
  }
  if (!p) return;
  uintptr_t a = (uintptr_t)p;
  /* Acquire: a block handed out by another thread's fh_malloc was made
   * after the space was published. */
  if (!atomic_load_explicit(&h->native_made, memory_order_acquire) ||
      !space_contains(&h->native.space, p) || (a & 15)) {
    fh_error_set("fh_free: %p was not returned by fh_malloc of this heap; nothing freed", p);
    return;
  }
  fh_bitmap *bits = &h->native.alloc_bits;
  /* Clear the bit atomically: of two racing frees of one block, one wins. */
  size_t i = bitmap_index(bits, a);
  uint64_t m = (uint64_t)1 << (i & 63);
  if (!(atomic_fetch_and(&bits->words[i >> 6], ~m) & m)) {
    fh_error_set("fh_free: %p is not an allocated block (freed twice?); nothing freed", p);
    return;
  }
  atomic_fetch_sub(&h->native.used, sallocx(p, 0));
  arena_free_cached(p, -1);
}
