/* See spaces/large_object_space.h. */
#include "spaces/large_object_space.h"

#include <stdlib.h>
#include <string.h>

#include "heap/error.h"

static size_t los_used(const fh_space *sp) {
  return atomic_load(&((const large_object_space *)sp)->used);
}

static size_t los_resident(const fh_space *sp) {
  const large_object_space *s = (const large_object_space *)sp;
  return reserve_resident(sp->begin, atomic_load(&s->frontier));
}

static void los_walk(fh_space *sp, fh_object_fn fn, void *ctx) {
  large_object_space *s = (large_object_space *)sp;
  uintptr_t end = atomic_load_explicit(&s->frontier, memory_order_acquire);
  for (uintptr_t p = bitmap_next_set(&s->starts, sp->begin, end); p;
       p = bitmap_next_set(&s->starts, p + FH_PAGE, end))
    fn(obj_from_start(p), ctx);
}

static int los_is_object(const fh_space *sp, const void *obj) {
  return los_is_start((const large_object_space *)sp, obj_start(obj));
}

static const fh_space_ops los_ops = {los_used, los_resident, los_walk, los_is_object};

int los_init(large_object_space *s, uintptr_t begin, size_t capacity) {
  memset(s, 0, sizeof *s);
  s->space = (fh_space){"large object space", SPACE_LARGE, begin, begin + capacity, &los_ops};
  atomic_store(&s->frontier, begin);
  s->batch.zero_on_failure = 1;
  if (bitmap_init(&s->starts, begin, capacity, LOS_PAGE_SHIFT) < 0 ||
      bitmap_init(&s->marks, begin, capacity, LOS_PAGE_SHIFT) < 0 ||
      bitmap_init(&s->quiet, begin, capacity, LOS_PAGE_SHIFT) < 0 ||
      bitmap_init(&s->checked, begin, capacity, LOS_PAGE_SHIFT) < 0) {
    fh_error_set("cannot map the bitmaps of the large object space");
    los_destroy(s);
    return -1;
  }
  pthread_mutex_init(&s->lock, NULL);
  return 0;
}

void los_destroy(large_object_space *s) {
  if (!s->space.ops) return;
  if (s->starts.words) bitmap_destroy(&s->starts);
  if (s->marks.words) bitmap_destroy(&s->marks);
  if (s->quiet.words) bitmap_destroy(&s->quiet);
  if (s->checked.words) bitmap_destroy(&s->checked);
  free(s->runs);
  if (s->checked.words) pthread_mutex_destroy(&s->lock); /* initialised after the bitmaps */
  memset(s, 0, sizeof *s);
}

/* First fit over the free runs, else the frontier.  Lock held. */
static uintptr_t take_pages(large_object_space *s, size_t bytes) {
  for (size_t i = 0; i < s->nruns; i++) {
    los_run *r = &s->runs[i];
    if (r->bytes < bytes) continue;
    uintptr_t p = r->begin;
    r->begin += bytes;
    r->bytes -= bytes;
    if (!r->bytes) {
      memmove(r, r + 1, (s->nruns - i - 1) * sizeof *r);
      s->nruns--;
    }
    return p;
  }
  uintptr_t f = atomic_load_explicit(&s->frontier, memory_order_relaxed);
  if (bytes > s->space.end - f) return 0;
  /* Release: a reader that sees the new frontier and then a start bit
   * below it reads memory that is mapped (it always is) and zero or a
   * header. */
  atomic_store_explicit(&s->frontier, f + bytes, memory_order_release);
  return f;
}

void *los_alloc(large_object_space *s, uint32_t type, size_t payload) {
  size_t bytes = los_object_bytes(payload);
  pthread_mutex_lock(&s->lock);
  uintptr_t p = take_pages(s, bytes);
  pthread_mutex_unlock(&s->lock);
  if (!p) return NULL;
  /* Free pages read as zero (fresh, or discarded by the sweep). */
  *(uint64_t *)p = fh__make_header(type, payload);
  /* The bit after the header: whoever sees the bit sees the header. */
  atomic_thread_fence(memory_order_release);
  bitmap_set(&s->starts, p);
  atomic_fetch_add_explicit(&s->used, bytes, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->objects, 1, memory_order_relaxed);
  return obj_from_start(p);
}

uintptr_t los_object_at(const large_object_space *s, uintptr_t a) {
  uintptr_t end = atomic_load_explicit(&s->frontier, memory_order_acquire);
  if (a < s->space.begin || a >= end) return 0;
  uintptr_t p = bitmap_prev_set(&s->starts, s->space.begin, a);
  if (!p) return 0;
  return a < p + los_object_bytes(hdr_payload(*(const uint64_t *)p)) ? p : 0;
}

void los_walk_marked(large_object_space *s, fh_object_fn fn, void *ctx) {
  uintptr_t end = atomic_load_explicit(&s->frontier, memory_order_acquire);
  for (uintptr_t p = bitmap_next_set(&s->marks, s->space.begin, end); p;
       p = bitmap_next_set(&s->marks, p + FH_PAGE, end))
    fn(obj_from_start(p), ctx);
}

/* Record [p, p + bytes) as free, merging with its neighbours.  Lock held.
 * 0, or -1 when the run table cannot grow (the pages stay unusable). */
static int add_run(large_object_space *s, uintptr_t p, size_t bytes) {
  size_t lo = 0, hi = s->nruns;
  while (lo < hi) { /* the first run above p */
    size_t mid = (lo + hi) / 2;
    if (s->runs[mid].begin < p) lo = mid + 1;
    else hi = mid;
  }
  int after_prev = lo > 0 && s->runs[lo - 1].begin + s->runs[lo - 1].bytes == p;
  int before_next = lo < s->nruns && p + bytes == s->runs[lo].begin;
  if (after_prev && before_next) {
    s->runs[lo - 1].bytes += bytes + s->runs[lo].bytes;
    memmove(&s->runs[lo], &s->runs[lo + 1], (s->nruns - lo - 1) * sizeof *s->runs);
    s->nruns--;
    return 0;
  }
  if (after_prev) {
    s->runs[lo - 1].bytes += bytes;
    return 0;
  }
  if (before_next) {
    s->runs[lo].begin = p;
    s->runs[lo].bytes += bytes;
    return 0;
  }
  if (s->nruns == s->runs_cap) {
    size_t cap = s->runs_cap ? 2 * s->runs_cap : 16;
    los_run *g = realloc(s->runs, cap * sizeof *g);
    if (!g) return -1;
    s->runs = g;
    s->runs_cap = cap;
  }
  memmove(&s->runs[lo + 1], &s->runs[lo], (s->nruns - lo) * sizeof *s->runs);
  s->runs[lo] = (los_run){p, bytes};
  s->nruns++;
  return 0;
}

/* The header of the object at p, or of its copy when it was moved out. */
static uint64_t header_at(uintptr_t p) {
  uint64_t hd = *(const uint64_t *)p;
  return hdr_is_forwarded(hd) ? *obj_header(hdr_forwardee(hd)) : hd;
}

/* Free the objects with mark bits clear (forwarded: only those forwarded). */
static size_t sweep(large_object_space *s, int forwarded) {
  pthread_mutex_lock(&s->lock); /* the world is stopped; for form's sake */
  uintptr_t end = atomic_load_explicit(&s->frontier, memory_order_relaxed);
  size_t freed = 0, nfreed = 0;
  for (uintptr_t p = bitmap_next_set(&s->starts, s->space.begin, end); p;
       p = bitmap_next_set(&s->starts, p + FH_PAGE, end)) {
    if (forwarded ? !hdr_is_forwarded(*(const uint64_t *)p) : bitmap_test(&s->marks, p)) continue;
    size_t bytes = los_object_bytes(hdr_payload(header_at(p)));
    bitmap_clear(&s->starts, p);
    bitmap_clear(&s->quiet, p);
    bitmap_clear(&s->checked, p);
    /* The pages must read as zero when handed out again: the batch zeroes
     * them by hand where the kernel would not take them back (the memory
     * then stays resident, which is all that is lost).  One madvise per
     * object cost ~10 us each (a TLB shootdown while another thread runs):
     * 1-32 KiB objects made a semispace heap 1.8x slower. */
    discard_batch_add(&s->batch, p, bytes);
    if (add_run(s, p, bytes) < 0) s->lost_bytes += bytes;
    freed += bytes;
    nfreed++;
  }
  discard_batch_flush(&s->batch); /* before any page is handed out again */
  s->discard_failures = s->batch.failures;
  /* A free run at the top goes back behind the frontier. */
  if (s->nruns && s->runs[s->nruns - 1].begin + s->runs[s->nruns - 1].bytes == end) {
    atomic_store_explicit(&s->frontier, s->runs[s->nruns - 1].begin, memory_order_relaxed);
    s->nruns--;
  }
  if (end > s->space.begin) bitmap_clear_range(&s->marks, s->space.begin, end);
  s->freed_objects += nfreed;
  atomic_fetch_sub_explicit(&s->used, freed, memory_order_relaxed);
  atomic_fetch_sub_explicit(&s->objects, nfreed, memory_order_relaxed);
  pthread_mutex_unlock(&s->lock);
  return freed;
}

size_t los_sweep(large_object_space *s) { return sweep(s, 0); }

void los_release_forwarded(large_object_space *s) { (void)sweep(s, 1); }

void los_clear_marks(large_object_space *s) {
  uintptr_t end = atomic_load_explicit(&s->frontier, memory_order_relaxed);
  if (end > s->space.begin) bitmap_clear_range(&s->marks, s->space.begin, end);
}
