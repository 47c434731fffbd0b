/* Marking for mark-compact: from the roots, over every space, into side
 * bitmaps only (no header is written).  Moving-space objects get their
 * start bit and all their live-word bits (forwarding.h), which is also the
 * per-chunk live-byte count; non-moving objects get their mark bit; immune
 * spaces are not collected, so their objects are scanned as roots.
 *
 * Stop-the-world, gc_threads markers, explicit mark stacks (no recursion).  When
 * the stack cannot grow, objects stay marked-but-unscanned and a rescan of
 * the marked objects picks them up (scanning is idempotent). */
#include "collectors/mc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "collectors/mark_stack.h"
#include "collectors/mc_marker.h"
#include "collectors/trace.h"
#include "heap/large_objects.h"
#include "heap/ephemeron.h"
#include "heap/error.h"
#include "heap/object.h"
#include "heap/sys.h"

/* A marker shares with a hungry one (pool->hungry: waiting, the pool
 * empty) when it holds at least this many objects, the older half: pushed
 * first, they are the largest subgraphs it has left.  A tree marked depth
 * first holds about one unvisited sibling per level, ~20 objects for
 * binary-trees' depth-20 trees: with a threshold of 64 (and the newest,
 * smallest half given) the helper marked a third of them, and two markers
 * took 15 ms where one took 19.5. */
#define SHARE_MIN 2
#define TAKE_MAX 64 /* and a marker takes at most this many at a time */

static void push(marker *m, void *obj) {
  if (mark_stack_push(&m->stack, obj) < 0) m->overflowed = 1;
}

/* Set the start bit of the object at `start` in this marker's bitmap; 1
 * when no marker had it.  A relaxed load may miss a bit another marker set
 * an instant ago, and then both scan the object: harmless, since scanning
 * is idempotent and the bitmaps are merged by OR.  What this buys is that
 * no marker ever does a locked read-modify-write. */
static inline int claim(marker *m, uintptr_t start) {
  size_t i = (start - m->t->begin) >> 3, w = i >> 6;
  uint64_t bit = (uint64_t)1 << (i & 63);
  uint64_t mine = atomic_load_explicit(&m->own_mark[w], memory_order_relaxed);
  if (mine & bit) return 0;
  for (unsigned k = 0; k < m->nothers; k++)
    if (atomic_load_explicit(&m->other_mark[k][w], memory_order_relaxed) & bit) return 0;
  atomic_store_explicit(&m->own_mark[w], mine | bit, memory_order_relaxed);
  return 1;
}

/* 0 when some marker's start bit for `start` is visibly set (a bit set an
 * instant ago may be missed: the ephemeron is then recorded and resolved
 * after marking, which is only slower). */
static inline int claim_would_set(marker *m, uintptr_t start) {
  size_t i = (start - m->t->begin) >> 3, w = i >> 6;
  uint64_t bit = (uint64_t)1 << (i & 63);
  if (atomic_load_explicit(&m->own_mark[w], memory_order_relaxed) & bit) return 0;
  for (unsigned k = 0; k < m->nothers; k++)
    if (atomic_load_explicit(&m->other_mark[k][w], memory_order_relaxed) & bit) return 0;
  return 1;
}

/* A referent outside the collected part: a non-moving or large object in a
 * full collection (anything else is immune, native, or old in a young
 * one).  Out of line: mark_ref's common case is the range test. */
static __attribute__((noinline)) void mark_other(marker *m, void *p) {
  if (space_contains(&m->h->non_moving.space, p) ? !non_moving_space_mark(&m->h->non_moving, p)
      : los_contains(&m->h->los, p) && !los_mark(&m->h->los, p)) {
    /* A non-moving or large object reached for the first time; a quiet
     * large one has nothing to scan. */
    if (!(los_contains(&m->h->los, p) && heap_los_quiet(m->h, p))) push(m, p);
    trace_weak_reached(m->weak, p);
  }
  /* Anything else is immune or native memory: not collected here. */
}

/* Inlined into every slot loop: a call per slot (most of them to old or
 * NULL referents in a young cycle's card scan) was a fifth of a young
 * pause's marking (fhbench young, perf). */
static inline __attribute__((always_inline)) void mark_ref(marker *m, void *v) {
  void *p = slot_object(m->tags, v);
  if (!p) return;
  uintptr_t a = (uintptr_t)p;
  fwd_tables *t = m->t;
  if (a - t->ylo - FH_HEADER_BYTES < t->old_top - t->ylo) {
    m->hits++;
    if (__builtin_expect(m->black != NULL, 0) &&
        bump_space_black_at(m->black, m->black_base, a - FH_HEADER_BYTES))
      return;
    /* Only the start bit here: the header (size, live words, type) is read
     * when the object is scanned, after mc_marker_drain() prefetched it. */
    if (!claim(m, a - FH_HEADER_BYTES)) return;
    push(m, p);
    trace_weak_reached(m->weak, p);
  } else if (!t->young) {
    /* A young collection: everything else is old, live by assumption
     * (mc_gen.h); old objects that refer into the young part are found
     * by their dirty cards. */
    mark_other(m, p);
  }
}

/* The claim of a young object p reached from an old one on a dirty card.
 * Those referents lie anywhere in the young range, and their start-bit
 * word is a cache miss that the claim waited for: half of the card
 * scan's time (fhbench young, perf).  Their words are prefetched here and
 * claimed CLAIM_AHEAD referents later, so the misses overlap with each
 * other and with the walk over the next cards; flush_claims claims the
 * rest before anything else reads the bits (mark_roots).  Claiming later
 * changes nothing else: the card's object is logged for the update by
 * the range test (hits), and a second reference to p finds it pending
 * and is claimed in its turn, as a second reference to a marked object. */
static inline void claim_push(marker *m, void *p) {
  if (!claim(m, (uintptr_t)p - FH_HEADER_BYTES)) return;
  push(m, p);
  trace_weak_reached(m->weak, p);
}

static inline void defer_claim(marker *m, void *p) {
  size_t i = ((uintptr_t)p - FH_HEADER_BYTES - m->t->begin) >> 3;
  __builtin_prefetch((const void *)&m->own_mark[i >> 6]);
  if (m->pend_n < CLAIM_AHEAD) {
    m->pend[(m->pend_head + m->pend_n++) % CLAIM_AHEAD] = p;
    return;
  }
  void *ready = m->pend[m->pend_head];
  m->pend[m->pend_head] = p;
  m->pend_head = (m->pend_head + 1) % CLAIM_AHEAD;
  claim_push(m, ready);
}

static void flush_claims(marker *m) {
  for (; m->pend_n; m->pend_n--, m->pend_head = (m->pend_head + 1) % CLAIM_AHEAD)
    claim_push(m, m->pend[m->pend_head]);
}

/* Slots and headers are read as atomic words: while marking runs
 * concurrently mutators store into slots (fh_write_ref's relaxed atomic
 * store) and identity hashing sets header bits.  Plain loads on every
 * target we run on. */
static inline void *load_slot(void *const *slot) { return __atomic_load_n(slot, __ATOMIC_RELAXED); }

static void mark_slot(void **slot, void *ctx) { mark_ref(ctx, load_slot(slot)); }

/* A scanned ephemeron.  Helpers cannot call the tracing layer (it is
 * single-threaded): they resolve what they can at once and keep the rest,
 * with its key, until marking is over. */
static void found_ephemeron(marker *m, void *eph) {
  if (m->weak) {
    trace_ephemeron(m->weak, eph);
    return;
  }
  ephemeron *e = eph;
  void *key = e->key;
  if (!key) return; /* cleared */
  uintptr_t k = (uintptr_t)key;
  int reached = k - m->t->ylo - FH_HEADER_BYTES < m->t->old_top - m->t->ylo
                    ? !claim_would_set(m, k - FH_HEADER_BYTES)
                : m->t->young ? 1
                : space_contains(&m->h->non_moving.space, key)
                    ? bitmap_test(&m->h->non_moving.mark_bits, obj_start(key))
                    : !los_contains(&m->h->los, key) || los_is_marked(&m->h->los, key);
  if (reached) {
    mark_ref(m, e->value); /* the key needs no visit: marking moves nothing */
  } else if ((!m->ephs.items && mark_stack_init(&m->ephs) < 0) ||
             mark_stack_push(&m->ephs, eph) < 0 || mark_stack_push(&m->ephs, key) < 0) {
    /* No room to remember it: a strong pair for this cycle (the key, if
     * pushed, is then recorded without its ephemeron: dropped below). */
    if (m->ephs.n % 2) m->ephs.n--;
    mark_ref(m, key);
    mark_ref(m, e->value);
  }
}

static void scan(marker *m, void *obj) {
  uint64_t hd = __atomic_load_n(obj_header(obj), __ATOMIC_RELAXED);
  fwd_tables *t = m->t;
  uintptr_t start = obj_start(obj);
  if (start - t->ylo < t->old_top - t->ylo)
    fwd_mark_scanned(t, m->own_live, start, hd); /* with a hashed object's growth */
  const fh_type_info *ti = types_get(&m->h->types, hdr_type(hd));
  if (!ti) return;
  /* The common layouts inline (no call per slot); trace functions as given. */
  if (ti->nrefs) {
    if (__builtin_expect(ti->flags & TYPE_EPHEMERON, 0)) {
      found_ephemeron(m, obj);
      return;
    }
    for (uint32_t i = 0; i < ti->nrefs; i++)
      mark_ref(m, load_slot((void **)((char *)obj + ti->ref_offsets[i])));
  } else if (ti->flags & FH_TYPE_REF_ARRAY) {
    void **slots = obj;
    size_t n = hdr_payload(hd) / sizeof(void *), now = n;
    if (n > ARRAY_CHUNK && m->narrays < MAX_ARRAY_CONTS) {
      m->arrays[m->narrays++] = (array_cont){slots, ARRAY_CHUNK, n};
      now = ARRAY_CHUNK;
    }
    for (size_t i = 0; i < now; i++) mark_ref(m, load_slot(&slots[i]));
  } else if (ti->trace) {
    ti->trace(obj, hdr_payload(hd), mark_slot, m);
  }
}

/* Objects popped from the mark stack wait in a small ring while their
 * header is prefetched: the header read was most of marking's time (a
 * cache miss per object), and the ring lets several misses overlap. */
#define PREFETCH_RING 8
/* The array continuation with the most slots left, if it has enough to
 * be worth splitting; NULL otherwise. */
static array_cont *splittable(marker *m) {
  array_cont *best = NULL;
  for (unsigned i = 0; i < m->narrays; i++)
    if (!best || m->arrays[i].n - m->arrays[i].next > best->n - best->next) best = &m->arrays[i];
  return best && best->n - best->next >= 2 * ARRAY_CHUNK ? best : NULL;
}

/* Pool lock held. */
static void pool_hint(mark_pool *pool) {
  atomic_store_explicit(&pool->hungry, pool->idle && !pool->nranges && !pool->items.n,
                        memory_order_relaxed);
}

/* Give the pool the second half of the biggest array continuation, and
 * the older half of the stack when it holds at least SHARE_MIN. */
static void share(marker *m) {
  mark_pool *pool = m->pool;
  pthread_mutex_lock(&pool->lock);
  array_cont *c = splittable(m);
  if (c && pool->nranges < MAX_ARRAY_CONTS) {
    size_t mid = c->next + (c->n - c->next) / 2;
    pool->ranges[pool->nranges++] = (array_cont){c->slots, mid, c->n};
    c->n = mid;
  }
  if (m->stack.n >= SHARE_MIN) {
    size_t give = m->stack.n / 2, k = 0;
    for (; k < give; k++)
      if (mark_stack_push(&pool->items, m->stack.items[k]) < 0) break; /* the rest stays */
    memmove(m->stack.items, m->stack.items + k, (m->stack.n - k) * sizeof *m->stack.items);
    m->stack.n -= k;
  }
  pool_hint(pool);
  pthread_cond_broadcast(&pool->cv);
  pthread_mutex_unlock(&pool->lock);
}

/* Out of work (no stack, no array continuation): take a range of an
 * array or some objects from the pool, or wait for some, or find that
 * everybody is out (returns 0). */
static int refill(marker *m) {
  mark_pool *pool = m->pool;
  if (!pool) return 0;
  pthread_mutex_lock(&pool->lock);
  pool->idle++;
  pool_hint(pool);
  while (pool->items.n == 0 && pool->nranges == 0 && !pool->done) {
    if (pool->idle == pool->nthreads) {
      pool->done = 1;
      pthread_cond_broadcast(&pool->cv);
      break;
    }
    pthread_cond_wait(&pool->cv, &pool->lock);
  }
  int working = !pool->done;
  if (working) {
    pool->idle--;
    if (pool->nranges)
      m->arrays[m->narrays++] = pool->ranges[--pool->nranges]; /* narrays was 0 */
    else
      while (m->stack.n < TAKE_MAX && pool->items.n)
        if (mark_stack_push(&m->stack, mark_stack_pop(&pool->items)) < 0) {
          m->overflowed = 1;
          break;
        }
    pool_hint(pool);
  }
  pthread_mutex_unlock(&pool->lock);
  return working;
}

/* The next chunk of the innermost array being scanned. */
static void continue_array(marker *m) {
  array_cont *c = &m->arrays[m->narrays - 1];
  size_t end = c->n - c->next > ARRAY_CHUNK ? c->next + ARRAY_CHUNK : c->n;
  void **slots = c->slots;
  size_t i = c->next;
  c->next = end;
  if (end == c->n) m->narrays--;
  for (; i < end; i++) mark_ref(m, load_slot(&slots[i]));
}

/* Start reading the start bits of the markers whose bitmaps are now
 * faulted in.  Before that a marker has set no bit, so there is nothing to
 * miss; and reading its pages earlier would map the shared zero page
 * there, which its own MADV_POPULATE_WRITE must then replace page by page,
 * each with a TLB flush of every CPU running the heap: an IPI into the
 * other markers per page (fhbench pause: ~19 ms of a helper's time per
 * cycle, and the interrupts landed on marker 0).  A bit set just as this
 * looks costs at most a second scan of that object, as in claim. */
static void look_for_others(marker *m) {
  unsigned ready = atomic_load_explicit(&m->pool->bitmaps_ready, memory_order_acquire);
  for (unsigned now = m->unseen & ready; now; now &= now - 1) {
    unsigned k = (unsigned)__builtin_ctz(now);
    m->other_mark[m->nothers++] = m->t->extra_mark[k - 1].words;
  }
  m->unseen &= ~ready;
}

void mc_marker_drain(marker *m) {
  void *ring[PREFETCH_RING];
  unsigned head = 0, count = 0, tick = 0;
  for (;;) {
    if (m->budget && !(++tick & 63) && gc_budget_over(m->budget)) {
      /* Stopped (the remark pause is coming) or the burst is over: what
       * waits in the ring goes back on the stack, marked but not scanned;
       * the next burst or the remark drains it. */
      for (; count; count--, head = (head + 1) % PREFETCH_RING) push(m, ring[head]);
      return;
    }
    if (m->unseen) look_for_others(m);
    if (m->pool && atomic_load_explicit(&m->pool->hungry, memory_order_relaxed) &&
        (m->stack.n >= SHARE_MIN || splittable(m)))
      share(m);
    void *obj = mark_stack_pop(&m->stack);
    if (obj) {
      obj_prefetch_head(obj);
      if (count < PREFETCH_RING) {
        ring[(head + count++) % PREFETCH_RING] = obj;
        continue;
      }
      void *ready = ring[head];
      ring[head] = obj;
      head = (head + 1) % PREFETCH_RING;
      scan(m, ready);
      continue;
    }
    if (!count) {
      if (m->narrays) {
        continue_array(m);
        continue;
      }
      if (refill(m)) continue;
      break;
    }
    void *ready = ring[head];
    head = (head + 1) % PREFETCH_RING;
    count--;
    scan(m, ready); /* may push more: the loop pops them next */
  }
}

static void scan_if_marked_nm(void *obj, void *ctx) {
  marker *m = ctx;
  if (bitmap_test(&m->h->non_moving.mark_bits, obj_start(obj))) scan(m, obj);
}

static void scan_object_cb(void *obj, void *ctx) { scan(ctx, obj); }

/* A young cycle's old bump object on a dirty card, scanned as a root:
 * whether it may refer into the collected part, for the log the update
 * forwards (mc_gen.h), found by the scan itself instead of a second pass
 * over its slots: a slot mark_ref found in range, an array whose rest
 * waits as a continuation, or an ephemeron (the tracing layer may hold
 * its key unvisited). */
static int scan_old_cb(void *obj, void *ctx) {
  marker *m = ctx;
  unsigned arrays = m->narrays;
  m->hits = 0;
  /* The common case inline: a fixed layout (an old object lies below the
   * floor, so scan's live-word bookkeeping does not apply), its type read
   * once; most of a card's objects refer to nothing young. */
  const fh_type_info *ti = types_get(&m->h->types, hdr_type(*obj_header(obj)));
  if (!ti) return 0;
  if (ti->flags & TYPE_EPHEMERON) {
    scan(m, obj);
    return 1;
  }
  if (ti->nrefs) {
    const fwd_tables *t = m->t;
    for (uint32_t i = 0; i < ti->nrefs; i++) {
      void *p = slot_object(m->tags, load_slot((void **)((char *)obj + ti->ref_offsets[i])));
      /* Anything but a young referent is old (or NULL): nothing to do. */
      if ((uintptr_t)p - t->ylo - FH_HEADER_BYTES < t->old_top - t->ylo) {
        m->hits++;
        defer_claim(m, p);
      }
    }
    return m->hits != 0;
  }
  scan(m, obj);
  return m->hits || m->narrays != arrays;
}

static void rescan_large(void *obj, void *ctx) {
  scan(ctx, obj);
  mc_marker_drain(ctx);
}

/* Overflow recovery: rescan everything marked until nothing overflows. */
static void recover(marker *m) {
  while (m->overflowed) {
    m->overflowed = 0;
    fwd_tables *t = m->t;
    for (uintptr_t s = bitmap_next_set(&t->mark, t->ylo, t->old_top); s;
         s = bitmap_next_set(&t->mark, s + FWD_WORD, t->old_top)) {
      scan(m, obj_from_start(s));
      mc_marker_drain(m);
    }
    if (t->young) continue; /* nothing else is marked */
    m->h->non_moving.space.ops->walk(&m->h->non_moving.space, scan_if_marked_nm, m);
    mc_marker_drain(m);
    los_walk_marked(&m->h->los, rescan_large, m);
  }
}

/* The tracing layer's view of marker 0, alone after the merge. */
static int mc_is_live(void *ctx, const void *obj) {
  marker *m = ctx;
  uintptr_t s = obj_start(obj);
  if (s - m->t->ylo < m->t->old_top - m->t->ylo) return bitmap_test(&m->t->mark, s);
  if (m->t->young) return 1; /* old: live by assumption */
  if (space_contains(&m->h->non_moving.space, obj))
    return bitmap_test(&m->h->non_moving.mark_bits, s);
  if (los_contains(&m->h->los, obj)) return los_is_marked(&m->h->los, obj);
  return 1;
}

static int mc_drain(void *ctx) {
  mc_marker_drain(ctx);
  recover(ctx);
  return 0;
}

static void mc_prefetch(void *ctx, const void *obj) {
  marker *m = ctx;
  uintptr_t s = obj_start(obj);
  if (s - m->t->ylo < m->t->old_top - m->t->ylo)
    __builtin_prefetch(&m->t->mark.words[bitmap_index(&m->t->mark, s) >> 6]);
}

static const trace_ops mc_trace_ops = {
    .is_live = mc_is_live, .visit = mark_slot, .drain = mc_drain, .prefetch = mc_prefetch};

/* Push the roots (world stopped). */
static void mark_roots(marker *m) {
  fh_heap *h = m->h;
  roots_visit(h, mark_slot, m);
  /* A young collection: the old objects on dirty cards are roots too. */
  if (m->t->young) {
    mc_gen_visit_old(h, scan_old_cb, scan_object_cb, m);
    flush_claims(m);
  }
  fh_space *spaces[HEAP_MAX_SPACES];
  unsigned ns = heap_spaces(h, spaces);
  for (unsigned i = 0; i < ns; i++)
    /* Not the image or zygote space: roots_visit visited the slots of
     * their dirty cards, the only ones that can point out of them, and a
     * full scan of a large image costs tens of ms per pause. */
    if (spaces[i]->kind == SPACE_IMMUNE && spaces[i] != &h->image.space &&
        spaces[i] != &h->zygote.space)
      spaces[i]->ops->walk(spaces[i], scan_object_cb, m);
}

int mc_mark(fh_heap *h, fwd_tables *t, mc_mark_crew **crew_out) {
  *crew_out = NULL;
  mark_stack stack;
  /* The stack is kept between cycles (mc_gen.stack): a map and an unmap
   * per young pause were 2% of it. */
  mark_stack *kept = h->mc && &h->mc->t == t ? &h->mc->gen.stack : NULL;
  if (kept && kept->items) {
    stack = *kept;
    *kept = (mark_stack){0};
    stack.n = 0;
  } else if (mark_stack_init(&stack) < 0) {
    fh_error_set("mark-compact: cannot map the mark stack");
    return -1;
  }
  unsigned n = fwd_add_markers(t, mc_markers_wanted(h, t));
  mc_mark_crew *crew = n > 1 ? mc_crew_start(h, t, n) : NULL;
  n = crew ? crew->nh + 1 : 1;
  marker m;
  mc_marker_setup(&m, h, t, 0, n, crew ? &crew->pool : NULL);
  m.stack = stack;
  trace_weak weak;
  trace_weak_init(&weak, h, &mc_trace_ops, &m);
  m.weak = &weak;
  mark_roots(&m);
  mc_marker_drain(&m); /* with helpers: returns when all of them ran out of work */
  if (crew) {
    mc_merge_and_wait(&m, n);
    /* Alone again, on the merged bitmaps, with its (empty) stack; the
     * helpers' flags were set before their merge, so before the wait. */
    int overflowed = m.overflowed;
    for (unsigned i = 0; i < crew->nh; i++) overflowed |= crew->helpers[i].overflowed;
    stack = m.stack;
    mc_marker_setup(&m, h, t, 0, 1, NULL);
    m.stack = stack;
    m.overflowed = overflowed;
    m.weak = &weak;
    for (unsigned i = 0; i < crew->nh; i++) {
      mark_stack *e = &crew->helpers[i].ephs;
      for (size_t k = 0; k + 1 < e->n; k += 2) trace_ephemeron_recorded(&weak, e->items[k], e->items[k + 1]);
      mark_stack_destroy(e);
    }
  }
  recover(&m);
  trace_weak_finish(&weak); /* drains with marker 0: never fails */
  trace_weak_destroy(&weak);
  if (kept) {
    mark_stack_trim(&m.stack); /* empty: what it grew by goes back */
    *kept = m.stack;
  } else {
    mark_stack_destroy(&m.stack);
  }
  *crew_out = crew;
  return 0;
}

/* ---- concurrent marking (collectors/cc_concurrent.c) ----
 * One marker (marker 0's bitmaps, so no merge), run by the concurrent-
 * marking driver's task while mutators run.  Only it writes the start and
 * live-word bitmaps: black allocation is an address boundary
 * (mc_mark_black), not bits set by mutators.  Non-moving and large
 * objects' mark bits are shared with the mutators' black allocation
 * (heap_alloc_black_other): both sides set them with atomic ORs. */
struct mc_cmarker {
  marker m;
  trace_weak weak;
};

mc_cmarker *mc_cmark_begin(fh_heap *h, fwd_tables *t) {
  mc_cmarker *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  mark_stack stack;
  if (mark_stack_init(&stack) < 0) {
    free(c);
    return NULL;
  }
  mc_marker_setup(&c->m, h, t, 0, 1, NULL);
  c->m.stack = stack;
  trace_weak_init(&c->weak, h, &mc_trace_ops, &c->m);
  c->m.weak = &c->weak;
  mark_roots(&c->m);
  return c;
}

void mc_cmark_skip_black(mc_cmarker *c, const bump_space *b) {
  c->m.black = b->black;
  c->m.black_base = b->space.begin;
}

void mc_cmark_visit(mc_cmarker *c, void *v) {
  marker *m = &c->m;
  mark_ref(m, v);
  /* Identity hashing logs the object it hashes while marking runs
   * (heap/identity_hash.c): one scanned before it was hashed must still
   * grow when it moves, and so must one of a recorded claim, in a hole
   * or above the boundary, marked black before it was hashed
   * (cc_concurrent.c: black_complete_claims).  So the bound is the
   * space's top now, not the boundary (old_top): bounded by the boundary,
   * objects the marker had marked above it and a mutator hashed later
   * moved without their hash words, and eq-hashtables lost their keys.
   * A logged object was written before it was logged: its header is
   * there to read, and the top had passed it.  The top is read only for
   * the few logged objects above the boundary: the mutators write its
   * cache line at every claim, and the log holds every overwritten
   * reference. */
  uintptr_t a = (uintptr_t)slot_object(m->tags, v);
  fwd_tables *t = m->t;
  if (!a || a - t->ylo - FH_HEADER_BYTES >= t->old_top - t->ylo) {
    const bump_space *b = &m->h->bump[m->h->active];
    uintptr_t top = atomic_load_explicit(&b->top, memory_order_relaxed);
    if (!a || a < t->old_top + FH_HEADER_BYTES || a - FH_HEADER_BYTES >= top) return;
  }
  if (hdr_hash_grows(__atomic_load_n(obj_header((void *)a), __ATOMIC_ACQUIRE)))
    fwd_mark_grows(t, a - FH_HEADER_BYTES);
}

void mc_cmark_drain(mc_cmarker *c, gc_budget *b) {
  c->m.budget = b;
  mc_marker_drain(&c->m);
  c->m.budget = NULL;
  /* Emptied: its pages go now, not in the remark pause. */
  if (!c->m.stack.n && !c->m.narrays) mark_stack_trim(&c->m.stack);
}

size_t mc_cmark_step(mc_cmarker *c, size_t n) {
  marker *m = &c->m;
  size_t done = 0;
  while (done < n) {
    void *obj = mark_stack_pop(&m->stack);
    if (obj) scan(m, obj);
    else if (m->narrays) continue_array(m);
    else break;
    done++;
  }
  return done;
}

void mc_cmark_finish(mc_cmarker *c) {
  marker *m = &c->m;
  m->budget = NULL;
  /* The roots again: an object read through a weak path into a root,
   * conservative stack words and pins of the remark (SATB covers every
   * reference that was in the heap when marking began). */
  roots_visit(m->h, mark_slot, m);
  mc_marker_drain(m);
  recover(m);
  trace_weak_finish(&c->weak); /* drains with this marker: never fails */
  mc_cmark_abandon(c);
}

void mc_cmark_abandon(mc_cmarker *c) {
  if (!c) return;
  trace_weak_destroy(&c->weak);
  mark_stack_destroy(&c->m.stack);
  mark_stack_destroy(&c->m.ephs);
  free(c);
}

/* OR bits into a bitmap word (one writer: the world is stopped or, after a
 * split remark, this marker is the only one; relaxed, as other readers
 * may look meanwhile). */
static inline void or_bits(_Atomic uint64_t *w, uint64_t bits) {
  if (bits)
    atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) | bits,
                          memory_order_relaxed);
}

size_t mc_mark_black(fwd_tables *t, uintptr_t from, uintptr_t to) {
  size_t marked = 0;
  /* Every object the mutators allocated since the initial pause (TLABs
   * retired in this pause: the range is parseable by headers, fillers
   * between) is live for the cycle.  The bits of one bitmap word (64
   * granules: a few objects) are gathered in registers and stored once:
   * two calls per object, each loading and storing the same bitmap word
   * again, made this 1.7-1.8 ms of the remark pause for the 8 MiB that
   * fhscheme's threads program allocated while one marker ran (1.3-1.5
   * ms since: most of what is left is reading the headers). */
  _Atomic uint64_t *mark = t->mark.words, *live = t->live.words;
  size_t cw = (from - t->begin) >> 9; /* the bitmap word being gathered */
  uint64_t mbits = 0, lbits = 0;
  for (uintptr_t a = from; a < to;) {
    /* Atomic: after a split remark this runs beside the mutators, which
     * may hash (CAS) a header; its size and type never change. */
    uint64_t hd = __atomic_load_n((const uint64_t *)a, __ATOMIC_RELAXED);
    size_t bytes = obj_bytes(hd);
    if (hdr_type(hd) != FH_FILLER_TYPE) {
      size_t i = (a - t->begin) >> 3, last = i + (bytes >> 3) - 1; /* granules */
      if (i >> 6 != cw) {
        or_bits(&mark[cw], mbits);
        or_bits(&live[cw], lbits);
        cw = i >> 6;
        mbits = lbits = 0;
      }
      mbits |= (uint64_t)1 << (i & 63);
      /* Its live granules up to the end of this word, then any whole
       * words, then those of its last word, which is gathered next. */
      lbits |= ~(uint64_t)0 << (i & 63);
      if (last >> 6 == cw) {
        lbits &= ~(uint64_t)0 >> (63 - (last & 63));
      } else {
        or_bits(&mark[cw], mbits);
        or_bits(&live[cw], lbits);
        for (size_t w = cw + 1; w < last >> 6; w++) or_bits(&live[w], ~(uint64_t)0);
        cw = last >> 6;
        mbits = 0;
        lbits = ~(uint64_t)0 >> (63 - (last & 63));
      }
      if (__builtin_expect(hdr_hash_grows(hd), 0)) fwd_mark_grows(t, a);
      marked += bytes;
    }
    a += bytes;
  }
  or_bits(&mark[cw], mbits);
  or_bits(&live[cw], lbits);
  return marked;
}
