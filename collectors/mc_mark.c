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
#include "collectors/trace.h"
#include "heap/large_objects.h"
#include "heap/ephemeron.h"
#include "heap/error.h"
#include "heap/object.h"
#include "heap/sys.h"

/* Parallel marking (gc_threads markers): each marker has its own stack;
 * one with work to spare while others are idle gives half of it (or half
 * of the rest of an array it is scanning) to a shared pool, idle markers
 * take from it, and marking ends when every marker is idle and the pool is
 * empty.  Each marker sets bits only in bitmaps of its own (forwarding.h:
 * extra_mark), merged when marking ends. */
#define MAX_ARRAY_CONTS 64

typedef struct array_cont {
  void **slots;
  size_t next, n;
} array_cont;

typedef struct mark_pool {
  pthread_mutex_t lock;
  pthread_cond_t cv;
  mark_stack items;
  array_cont ranges[MAX_ARRAY_CONTS]; /* parts of arrays still to scan */
  unsigned nranges;
  unsigned nthreads, idle;
  int done;
  unsigned merged; /* markers whose share of the merge is done */
  /* Read without the lock: a marker is idle and the pool has nothing for
   * it (so a busy marker should share).  Kept by pool_hint under it. */
  _Atomic int hungry;
  /* Bit k: marker k's bitmaps are faulted in (marker 0's always are), so
   * the others may read its start bits (see look_for_others). */
  _Atomic unsigned bitmaps_ready;
} mark_pool;

/* A reference array is scanned ARRAY_CHUNK slots at a time: the rest waits
 * as a continuation until the objects found in the chunk are drained.
 * Scanning a huge array at once would push every element it reaches (the
 * fhbench pause table: 6.7M nodes, a 53 MiB mark stack, resident memory
 * the cycle then had to account for); in chunks the stack stays small, and
 * the rest of an array can be split with an idle marker.  The
 * continuations are few (one per array being scanned, nested only through
 * arrays reached from arrays); when they run out, an array is scanned
 * whole, as before. */
#define ARRAY_CHUNK 512

/* Claims a card scan keeps in flight (defer_claim). */
#define CLAIM_AHEAD 16

typedef struct marker {
  fh_heap *h;
  slot_tags tags;             /* how slots hold references (heap/slot.h) */
  fwd_tables *t;
  unsigned index;             /* 0: the collecting thread */
  _Atomic uint64_t *own_mark; /* the start bits this marker sets */
  fh_bitmap *own_live;        /* and live-word bits */
  _Atomic uint64_t *other_mark[FWD_MAX_MARKERS - 1]; /* the others' start bits */
  unsigned nothers;
  unsigned unseen;     /* bit k: marker k, whose start bits are not read yet */
  mark_stack stack;
  array_cont arrays[MAX_ARRAY_CONTS];
  unsigned narrays;
  int overflowed;
  unsigned hits;       /* slots found referring into [ylo, old_top) (scan_old) */
  mark_pool *pool;     /* NULL: marking alone */
  mc_mark_crew *crew;  /* the helpers' crew, for helpers */
  /* Ephemerons: marker 0 hands them to the tracing layer; helpers keep
   * theirs here until marking is over (the layer is single-threaded). */
  trace_weak *weak;
  mark_stack ephs;
  /* Concurrent marking (collectors/cc_concurrent.c): drain returns once
   * the budget is over (checked every 64 objects); NULL with the world
   * stopped. */
  gc_budget *budget;
  /* Young referents found on dirty cards, waiting for their claim while
   * their start-bit word is prefetched (defer_claim). */
  void *pend[CLAIM_AHEAD];
  unsigned pend_head, pend_n;
} marker;

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
    /* Only the start bit here: the header (size, live words, type) is read
     * when the object is scanned, after drain() prefetched it. */
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

static void drain(marker *m) {
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
  drain(ctx);
}

/* Overflow recovery: rescan everything marked until nothing overflows. */
static void recover(marker *m) {
  while (m->overflowed) {
    m->overflowed = 0;
    fwd_tables *t = m->t;
    for (uintptr_t s = bitmap_next_set(&t->mark, t->ylo, t->old_top); s;
         s = bitmap_next_set(&t->mark, s + FWD_WORD, t->old_top)) {
      scan(m, obj_from_start(s));
      drain(m);
    }
    if (t->young) continue; /* nothing else is marked */
    m->h->non_moving.space.ops->walk(&m->h->non_moving.space, scan_if_marked_nm, m);
    drain(m);
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
  drain(ctx);
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

/* After marking: OR this marker's share of the word range of every
 * marker's bitmaps into the shared ones, in parallel with the others.
 * Marking is over for all of them (the pool said done, under its lock), so
 * no marker writes a bit any more. */
static void merge_share(marker *m, unsigned nmarkers) {
  size_t w0 = (fwd_marker_base(m->t) - m->t->begin) >> 9, words = fwd_used_words(m->t) - w0;
  fwd_merge_markers(m->t, nmarkers, w0 + words * m->index / nmarkers,
                    w0 + words * (m->index + 1) / nmarkers);
}

/* The helper markers of one marking, kept until mc_mark_end: after the
 * merge they give their own bitmaps back while the collecting thread goes
 * on with the pause (fwd_compute reads only the shared bitmaps). */
struct mc_mark_crew {
  mark_pool pool;
  marker helpers[FWD_MAX_MARKERS - 1];
  gc_task tasks[FWD_MAX_MARKERS - 1];
  gc_pool *threads;
  unsigned nh;
};

/* Merge this marker's share, then wait until every marker has merged its
 * own: until then others read this marker's bitmaps. */
static void merge_and_wait(marker *m, unsigned nmarkers) {
  merge_share(m, nmarkers);
  mark_pool *pool = m->pool;
  pthread_mutex_lock(&pool->lock);
  if (++pool->merged == pool->nthreads) pthread_cond_broadcast(&pool->cv);
  while (pool->merged < pool->nthreads) pthread_cond_wait(&pool->cv, &pool->lock);
  pthread_mutex_unlock(&pool->lock);
}

static void *marker_main(void *arg) {
  marker *m = arg;
  fwd_prepare_marker(m->t, m->index); /* while marker 0 starts from the roots */
  atomic_fetch_or_explicit(&m->pool->bitmaps_ready, 1u << m->index, memory_order_release);
  drain(m);
  merge_and_wait(m, m->crew->nh + 1);
  fwd_release_marker(m->t, m->index);
  mark_stack_destroy(&m->stack); /* empty; its flags and ephs stay for marker 0 */
  return NULL;
}

/* How many markers: gc_threads (FH_MC_MARK_THREADS=N overrides it, for
 * measurements), at most FWD_MAX_MARKERS, and one for a space whose used
 * part is small (a helper thread and its bitmaps cost more than they save). */
#define PARALLEL_MARK_MIN_BYTES ((size_t)32 << 20)
static unsigned markers_wanted(const fh_heap *h, const fwd_tables *t) {
  unsigned n = h->opt.gc_threads;
  const char *e = getenv("FH_MC_MARK_THREADS");
  if (e && *e) n = (unsigned)strtoul(e, NULL, 10);
  else if (t->old_top - t->ylo < PARALLEL_MARK_MIN_BYTES) n = 1;
  /* A young cycle marks what survives its young generation, not its
   * range: one marker unless the last young cycle kept much (helpers cost
   * a thread start and bitmap traffic per cycle; binary-trees' 128 MiB
   * young generations mostly die). */
  else if (t->young && h->mc && mc_gen_last_young_live(&h->mc->gen) < PARALLEL_MARK_MIN_BYTES)
    n = 1;
  if (n < 1) n = 1;
  return n > FWD_MAX_MARKERS ? FWD_MAX_MARKERS : n;
}

/* Marker k's view of the bitmaps (k of n). */
static void marker_setup(marker *m, fh_heap *h, fwd_tables *t, unsigned k, unsigned n,
                         mark_pool *pool) {
  *m = (marker){.h = h, .tags = h->tags, .t = t, .index = k, .pool = pool};
  m->own_mark = k ? t->extra_mark[k - 1].words : t->mark.words;
  m->own_live = k ? &t->extra_live[k - 1] : &t->live;
  for (unsigned j = 0; j < n; j++)
    if (j == 0 && k != 0)
      m->other_mark[m->nothers++] = t->mark.words; /* faulted in before marking */
    else if (j != k)
      m->unseen |= 1u << j; /* look_for_others */
}

/* Start up to n - 1 helpers (all, or the first few when a thread or a
 * stack cannot be had).  NULL when none started.  The helpers that did
 * start are set up for all n, but read only the start bits of markers that
 * said their bitmaps are ready, which one that never started never does. */
static mc_mark_crew *crew_start(fh_heap *h, fwd_tables *t, unsigned n) {
  mc_mark_crew *crew = calloc(1, sizeof *crew);
  if (!crew) return NULL;
  if (mark_stack_init(&crew->pool.items) < 0) {
    free(crew);
    return NULL;
  }
  mark_pool *pool = &crew->pool;
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->cv, NULL);
  pool->nthreads = 1;
  crew->threads = &h->pool;
  atomic_store(&pool->bitmaps_ready, 1u); /* marker 0's */
  for (; crew->nh + 1 < n && crew->nh < FWD_MAX_MARKERS - 1; crew->nh++) {
    marker *hm = &crew->helpers[crew->nh];
    marker_setup(hm, h, t, crew->nh + 1, n, pool);
    hm->crew = crew;
    if (mark_stack_init(&hm->stack) < 0) break;
    /* Under the lock: helpers already started read it when idle. */
    pthread_mutex_lock(&pool->lock);
    pool->nthreads++; /* counted before it can go idle */
    pthread_mutex_unlock(&pool->lock);
    if (gc_pool_start(&h->pool, &crew->tasks[crew->nh], "fh-mark", marker_main, hm) != 0) {
      pthread_mutex_lock(&pool->lock);
      pool->nthreads--;
      pthread_mutex_unlock(&pool->lock);
      mark_stack_destroy(&hm->stack);
      break;
    }
  }
  if (crew->nh) return crew;
  mark_stack_destroy(&pool->items);
  pthread_mutex_destroy(&pool->lock);
  pthread_cond_destroy(&pool->cv);
  free(crew);
  return NULL;
}

void mc_mark_end(mc_mark_crew *crew) {
  if (!crew) return;
  for (unsigned i = 0; i < crew->nh; i++) gc_pool_join(crew->threads, crew->tasks[i]);
  mark_stack_destroy(&crew->pool.items);
  pthread_mutex_destroy(&crew->pool.lock);
  pthread_cond_destroy(&crew->pool.cv);
  free(crew);
}

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
  unsigned n = fwd_add_markers(t, markers_wanted(h, t));
  mc_mark_crew *crew = n > 1 ? crew_start(h, t, n) : NULL;
  n = crew ? crew->nh + 1 : 1;
  marker m;
  marker_setup(&m, h, t, 0, n, crew ? &crew->pool : NULL);
  m.stack = stack;
  trace_weak weak;
  trace_weak_init(&weak, h, &mc_trace_ops, &m);
  m.weak = &weak;
  mark_roots(&m);
  drain(&m); /* with helpers: returns when all of them ran out of work */
  if (crew) {
    merge_and_wait(&m, n);
    /* Alone again, on the merged bitmaps, with its (empty) stack; the
     * helpers' flags were set before their merge, so before the wait. */
    int overflowed = m.overflowed;
    for (unsigned i = 0; i < crew->nh; i++) overflowed |= crew->helpers[i].overflowed;
    stack = m.stack;
    marker_setup(&m, h, t, 0, 1, NULL);
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
  marker_setup(&c->m, h, t, 0, 1, NULL);
  c->m.stack = stack;
  trace_weak_init(&c->weak, h, &mc_trace_ops, &c->m);
  c->m.weak = &c->weak;
  mark_roots(&c->m);
  return c;
}

void mc_cmark_visit(mc_cmarker *c, void *v) {
  marker *m = &c->m;
  mark_ref(m, v);
  /* Identity hashing logs the object it hashes while marking runs
   * (heap/identity_hash.c): one scanned before it was hashed must still
   * grow when it moves. */
  uintptr_t a = (uintptr_t)slot_object(m->tags, v);
  fwd_tables *t = m->t;
  if (a && a - t->ylo - FH_HEADER_BYTES < t->old_top - t->ylo &&
      hdr_hash_grows(__atomic_load_n(obj_header((void *)a), __ATOMIC_ACQUIRE)))
    fwd_mark_grows(t, a - FH_HEADER_BYTES);
}

void mc_cmark_drain(mc_cmarker *c, gc_budget *b) {
  c->m.budget = b;
  drain(&c->m);
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
  drain(m);
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

size_t mc_mark_black(fwd_tables *t, uintptr_t from, uintptr_t to) {
  size_t marked = 0;
  /* Every object the mutators allocated since the initial pause (TLABs
   * retired in this pause: the range is parseable by headers, fillers
   * between) is live for the cycle. */
  for (uintptr_t a = from; a < to;) {
    /* Atomic: after a split remark this runs beside the mutators, which
     * may hash (CAS) a header; its size and type never change. */
    uint64_t hd = __atomic_load_n((const uint64_t *)a, __ATOMIC_RELAXED);
    size_t bytes = obj_bytes(hd);
    if (hdr_type(hd) != FH_FILLER_TYPE) {
      fwd_mark_start(t, a);
      fwd_mark_scanned(t, &t->live, a, hd);
      marked += bytes;
    }
    a += bytes;
  }
  return marked;
}
