#include "collectors/mark.h"

#include "heap/barrier.h"
#include "heap/ephemeron.h"
#include "heap/large_objects.h"
#include "heap/error.h"
#include "heap/object.h"
#include "spaces/reserve.h"

int marker_init(marker *m, fh_heap *h) {
  *m = (marker){.h = h, .tags = h->tags};
  if (mark_stack_init(&m->stack) < 0) {
    fh_error_set("marking: cannot map the mark stack");
    return -1;
  }
  m->ms = h->has_malloc_spaces ? heap_main_malloc(h) : NULL;
  bump_space *b = &h->bump[h->active];
  if (bump_space_used(b)) {
    m->bump_lo = b->space.begin;
    m->bump_hi = atomic_load(&b->top);
    if (bitmap_init(&m->bump_marks, m->bump_lo, m->bump_hi - m->bump_lo, 3) < 0) {
      mark_stack_destroy(&m->stack);
      fh_error_set("marking: cannot map a mark bitmap for the bump space");
      return -1;
    }
  }
  return 0;
}

void marker_destroy(marker *m) {
  mark_stack_destroy(&m->stack);
  trace_weak_destroy(&m->weak);
  if (m->bump_marks.words) bitmap_destroy(&m->bump_marks);
}

static inline void push(marker *m, void *obj) {
  if (mark_stack_push(&m->stack, obj) < 0) m->overflowed = 1;
  trace_weak_reached(&m->weak, obj);
}

/* Set the mark bit of the object starting at `start`; 1 if it was set.
 * Marking runs on one thread with the world stopped, so a plain load and
 * store do (a locked read-modify-write per object cost a tenth of it). */
static inline int mark_bit(fh_bitmap *b, uintptr_t start, int concurrent) {
  size_t i = bitmap_index(b, start);
  _Atomic uint64_t *w = &b->words[i >> 6];
  uint64_t bit = (uint64_t)1 << (i & 63), old = atomic_load_explicit(w, memory_order_relaxed);
  if (old & bit) return 1;
  /* While mutators run (concurrent marking), they set mark bits of the
   * objects they allocate in the same words (black allocation,
   * heap/malloc_heap.c): a locked OR, and only the winner scans. */
  if (__builtin_expect(concurrent, 0))
    return (atomic_fetch_or_explicit(w, bit, memory_order_relaxed) & bit) != 0;
  atomic_store_explicit(w, old | bit, memory_order_relaxed);
  return 0;
}

/* Slots of a large reference array a paced drain scans between two looks
 * at its budget (about 50-100 us). */
#define MARK_ARRAY_CHUNK 4096

/* A reference slot, read as one atomic word: during concurrent marking the
 * mutators store into it (fh_write_ref's relaxed atomic store).  A plain
 * load on every target we run on. */
static inline void *load_slot(void *const *slot) { return __atomic_load_n(slot, __ATOMIC_RELAXED); }

static inline void mark_ref(marker *m, void *v) {
  void *p = slot_object(m->tags, v);
  if (!p) return;
  uintptr_t a = (uintptr_t)p;
  fh_heap *h = m->h;
  if (a - h->resv_begin >= h->resv_size) return; /* native memory */
  int c = m->concurrent;
  if (m->ms && space_contains(&m->ms->space, p)) {
    if (!mark_bit(&m->ms->mark_bits, obj_start(p), c)) push(m, p);
  } else if (space_contains(&h->non_moving.space, p)) {
    if (!mark_bit(&h->non_moving.mark_bits, obj_start(p), c)) push(m, p);
  } else if (los_contains(&h->los, p)) {
    if (!mark_bit(&h->los.marks, obj_start(p), c)) {
      if (heap_los_quiet(h, p)) trace_weak_reached(&m->weak, p); /* nothing to scan */
      else push(m, p);
    }
  } else if (a - m->bump_lo < m->bump_hi - m->bump_lo) {
    if (!mark_bit(&m->bump_marks, obj_start(p), c)) push(m, p);
  }
  /* Immune spaces are not collected; nothing else holds objects. */
}

void marker_visit(void **slot, void *ctx) { mark_ref(ctx, load_slot(slot)); }

static void scan_refs(marker *m, void *obj, uint64_t hd);

/* Scan an object popped from the mark stack: pushed once, when it was
 * marked, so its bytes count once toward the main space's live size. */
static void scan(marker *m, void *obj) {
  if (m->on_scan) m->on_scan(m, obj);
  /* Atomic: identity hashing may set header bits meanwhile. */
  uint64_t hd = __atomic_load_n(obj_header(obj), __ATOMIC_RELAXED);
  if (m->ms && space_contains(&m->ms->space, obj)) {
    size_t bytes = malloc_object_bytes_hd(hd);
    m->ms_live += bytes;
    /* Concurrent marking leaves the cover bits alone: mutators find holes
     * in runs by them meanwhile; the sweep derives them instead
     * (malloc_space.h: derive_cover). */
    if (!m->concurrent) malloc_space_cover(m->ms, obj_start(obj), bytes);
  }
  scan_refs(m, obj, hd);
}

void marker_rescan(marker *m, void *obj) {
  scan_refs(m, obj, __atomic_load_n(obj_header(obj), __ATOMIC_RELAXED));
}

static void scan_refs(marker *m, void *obj, uint64_t hd) {
  const fh_type_info *ti = types_get(&m->h->types, hdr_type(hd));
  if (!ti) return;
  /* The two common layouts inline (this loop is most of a collection's
   * time); trace functions go through the visitor. */
  if (ti->nrefs) {
    if (__builtin_expect(ti->flags & TYPE_EPHEMERON, 0)) {
      trace_ephemeron(&m->weak, obj);
      return;
    }
    for (uint32_t i = 0; i < ti->nrefs; i++)
      mark_ref(m, load_slot((void **)((char *)obj + ti->ref_offsets[i])));
  } else if (ti->flags & FH_TYPE_REF_ARRAY) {
    void **slots = obj;
    size_t n = hdr_payload(hd) / sizeof(void *);
    if (m->chunk_arrays && n > MARK_ARRAY_CHUNK) {
      /* drain_until scans it; nothing else is pending (it finishes one
       * array before it scans another object). */
      m->array = slots;
      m->array_next = 0;
      m->array_n = n;
      return;
    }
    for (size_t i = 0; i < n; i++) mark_ref(m, load_slot(&slots[i]));
  } else if (ti->trace) {
    ti->trace(obj, hdr_payload(hd), marker_visit, m);
  }
}

/* Objects go from the stack through a small FIFO whose entries are
 * prefetched when they enter it: marking is bound by the cache miss on each
 * object's header, and by the time an object leaves the FIFO its header has
 * usually arrived.  The order stays depth-first but for the window.  32:
 * with 8, half of scan()'s time was still the wait on the header (GCBench,
 * mark_sweep: total pause 68-74 ms with 8, 57-67 with 16, 50-58 with 32,
 * 54-58 with 64). */
#define PREFETCH_WINDOW 32

/* The array a paced drain is scanning, a chunk at a time; 0 when the
 * budget ended first (the rest waits for the next drain). */
static int scan_array_chunks(marker *m, gc_budget *b) {
  while (m->array) {
    size_t e = m->array_next + MARK_ARRAY_CHUNK < m->array_n ? m->array_next + MARK_ARRAY_CHUNK
                                                             : m->array_n;
    for (size_t i = m->array_next; i < e; i++) mark_ref(m, load_slot(&m->array[i]));
    m->array_next = e;
    if (e == m->array_n) m->array = NULL;
    else if (b && gc_budget_over(b)) return 0;
  }
  return 1;
}

/* Drain; with a budget, return early (objects left on the stack, an
 * array's slots left for later) once it is over (gc_budget_over),
 * checked every 256 objects and between an array's chunks. */
static void drain_until(marker *m, gc_budget *b) {
  void *q[PREFETCH_WINDOW];
  unsigned head = 0, n = 0, tick = 0;
  m->chunk_arrays = b != NULL;
  for (;;) {
    if (!scan_array_chunks(m, b) || (b && !(++tick & 255) && gc_budget_over(b))) {
      /* Put the window's objects back: they are marked, not scanned. */
      while (n) {
        if (mark_stack_push(&m->stack, q[head]) < 0) m->overflowed = 1;
        head = (head + 1) % PREFETCH_WINDOW;
        n--;
      }
      break;
    }
    while (n < PREFETCH_WINDOW) {
      void *o = mark_stack_pop(&m->stack);
      if (!o) break;
      obj_prefetch_head(o);
      q[(head + n++) % PREFETCH_WINDOW] = o;
    }
    if (!n) break;
    void *obj = q[head];
    head = (head + 1) % PREFETCH_WINDOW;
    n--;
    scan(m, obj);
  }
  m->chunk_arrays = 0;
}

static void drain(marker *m) { drain_until(m, NULL); }

size_t marker_step(marker *m, size_t n) {
  size_t done = 0;
  for (void *o; done < n && (o = mark_stack_pop(&m->stack)); done++) scan(m, o);
  return done;
}

void marker_drain_until(marker *m, gc_budget *b) { drain_until(m, b); }

/* Overflow recovery: scanning a marked object again is harmless (its
 * referents are marked already or get marked now), so rescan all marked
 * objects until a pass completes without overflowing. */
/* 1 when obj was marked, or lies where this marking collects nothing. */
static int is_live(void *ctx, const void *obj) {
  marker *m = ctx;
  fh_heap *h = m->h;
  uintptr_t s = obj_start(obj);
  if (m->ms && space_contains(&m->ms->space, obj)) return bitmap_test(&m->ms->mark_bits, s);
  if (space_contains(&h->non_moving.space, obj)) return bitmap_test(&h->non_moving.mark_bits, s);
  if (los_contains(&h->los, obj)) return los_is_marked(&h->los, obj);
  if (s >= m->bump_lo && s < m->bump_hi) return bitmap_test(&m->bump_marks, s);
  return 1;
}

int marker_is_marked(marker *m, const void *obj) { return is_live(m, obj); }

static void add_if_marked(void *obj, void *ctx) {
  marker *m = ctx;
  if (is_live(m, obj)) m->ms_live += malloc_object_bytes_hd(*obj_header(obj));
}

static void rescan_if_marked(void *obj, void *ctx) {
  marker *m = ctx;
  if (is_live(m, obj)) {
    scan(m, obj);
    drain(m);
  }
}

static void scan_immune_object(void *obj, void *ctx) {
  marker *m = ctx;
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&m->h->types, hdr_type(hd));
  if (ti) types_visit_refs(ti, obj, hdr_payload(hd), marker_visit, m);
}

typedef struct immune_walk {
  fh_heap *h;
  fh_object_fn fn;
  void *ctx;
} immune_walk;

static void visit_if_dirty(void *obj, void *ctx) {
  immune_walk *w = ctx;
  uintptr_t s = obj_start(obj), e = s + obj_bytes(*obj_header(obj));
  for (uintptr_t c = align_down(s, FH_CARD_BYTES); c < e; c += FH_CARD_BYTES)
    if (*card_for(w->h, c)) {
      w->fn(obj, w->ctx);
      return;
    }
}

void immune_visit_dirty_objects(fh_heap *h, fh_object_fn fn, void *ctx) {
  fh_space *spaces[HEAP_MAX_SPACES];
  unsigned n = heap_spaces(h, spaces);
  immune_walk w = {h, fn, ctx};
  for (unsigned i = 0; i < n; i++)
    /* Not the image or zygote space: every caller has run roots_visit,
     * which visits the objects on their dirty cards through their starts
     * bitmaps, without this walk over every header. */
    if (spaces[i]->kind == SPACE_IMMUNE && spaces[i] != &h->image.space &&
        spaces[i] != &h->zygote.space)
      spaces[i]->ops->walk(spaces[i], visit_if_dirty, &w);
}

/* A filler's payload length is a 32-bit header field. */
#define FILLER_MAX ((size_t)1 << 31)

void marker_fill_dead_bump(marker *m) {
  uintptr_t run = 0; /* start of the current run of dead space, 0: none */
  for (uintptr_t p = m->bump_lo; p < m->bump_hi;) {
    uint64_t hd = *(uint64_t *)p;
    size_t bytes = obj_bytes(hd);
    int dead = hdr_type(hd) == FH_FILLER_TYPE || !bitmap_test(&m->bump_marks, p);
    if (dead && !run) run = p;
    if (!dead || p + bytes - run > FILLER_MAX) {
      if (run && run < p) obj_write_filler(run, p - run);
      run = dead ? p : 0;
    }
    p += bytes;
  }
  if (run) obj_write_filler(run, m->bump_hi - run);
}

/* Drain, with overflow recovery.  0, or -1 when m->failed. */
static int drain_all(void *ctx) {
  marker *m = ctx;
  fh_heap *h = m->h;
  drain(m);
  int recovered = 0;
  while (m->overflowed) {
    recovered = 1;
    if (m->on_scan) {
      m->failed = 1;
      fh_error_set("marking ran out of memory for its mark stack");
      return -1;
    }
    m->overflowed = 0;
    if (m->ms) m->ms->space.ops->walk(&m->ms->space, rescan_if_marked, m);
    h->non_moving.space.ops->walk(&h->non_moving.space, rescan_if_marked, m);
    los_walk_marked(&h->los, rescan_if_marked, m);
    if (m->bump_hi > m->bump_lo) h->bump[h->active].space.ops->walk(&h->bump[h->active].space,
                                                                      rescan_if_marked, m);
  }
  /* Rescans counted some objects twice; mark-sweep sets the main space's
   * `used` from ms_live (malloc_space_sweep_begin): count again. */
  if (recovered && m->ms) {
    m->recounted = 1; /* black objects included (collectors/concurrent_mark.c) */
    m->ms_live = 0;
    m->ms->space.ops->walk(&m->ms->space, add_if_marked, m);
  }
  return 0;
}

static const trace_ops marker_trace_ops = {.is_live = is_live, .visit = marker_visit, .drain = drain_all};

void marker_start(marker *m) { trace_weak_init(&m->weak, m->h, &marker_trace_ops, m); }

void marker_mark_roots(marker *m) {
  roots_visit(m->h, marker_visit, m);
  immune_visit_dirty_objects(m->h, scan_immune_object, m);
}

int marker_finish(marker *m) {
  if (drain_all(m) < 0 || trace_weak_finish(&m->weak) < 0) return -1;
  return 0;
}

int marker_run(marker *m) {
  marker_start(m);
  marker_mark_roots(m);
  return marker_finish(m);
}
