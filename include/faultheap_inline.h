/* faultheap's inline fast paths (allocation, the write barrier, roots,
 * safepoints, object size, type and identity hash, ephemeron accessors):
 * the part of the public header that is an implementation detail shared
 * between the header and the library.  Included by faultheap.h only;
 * embedders use only the functions declared there.  Kept apart so that
 * faultheap.h reads as the API and each file stays short. */
#ifndef FAULTHEAP_INLINE_H_
#define FAULTHEAP_INLINE_H_

#ifndef FAULTHEAP_H_
#error "include faultheap.h, not faultheap_inline.h"
#endif

/* ===========================================================================
 * Inline fast paths.  Everything below this line is an implementation detail
 * shared between the header and the library; embedders use only the
 * functions above.
 * ======================================================================== */

#define FH__MAX_TYPES (1u << 16)  /* type ids are below this */
#define FH__NO_TYPE 0xFFFFFFFFu   /* type_sizes[] entry of an unused id */
#define FH__VAR_SIZE 0xFFFFFFFEu  /* type_sizes[] entry of a variable type */
#define FH__VAR_CHECKED 0xFFFFFFFDu /* variable, with a minimum the slow path checks */
/* type_sizes[] holds each entry inverted (~entry), so an unused id reads 0:
 * the 256 KiB table is zero-fill-on-demand memory of which only the pages
 * of registered ids are ever touched (filled with FH__NO_TYPE it cost every
 * process 256 KiB, twice with the process-wide table of detached threads). */
#define FH__TYPE_SIZE(tab, id) (~(tab)[id])
#define FH__INLINE_MAX 4096u      /* larger payloads always take the slow path */
#define FH__HEADER_BYTES 8u
#define FH__CARD_SHIFT 9          /* 512-byte cards */
#define FH__CARD_DIRTY 1
#define FH__NO_EPHEMERONS 0xFFFFFFFFu /* matches no 16-bit type id */

/* The start of every fh_thread.  Its layout is part of the ABI. */
typedef struct fh__thread_fast {
  uintptr_t tlab_cursor;      /* next free byte of the allocation buffer */
  uintptr_t tlab_limit;       /* end of the buffer; cursor == limit: empty */
  const uint32_t *type_sizes; /* by id, inverted (FH__TYPE_SIZE): fixed payload size,
                                 FH__VAR_SIZE or FH__NO_TYPE */
  uintptr_t heap_lo;          /* reservation covered by the card table */
  uintptr_t heap_span;
  _Atomic uint8_t *cards;     /* card of address a: cards[(a - heap_lo) >> 9] */
  void ***roots_base, ***roots_top, ***roots_limit; /* root-slot stack */
  _Atomic uint32_t safepoint_requested;
  /* The heap's ephemeron type id, FH__NO_EPHEMERONS before its first
   * ephemeron and always under verify=1 (every accessor then checks). */
  _Atomic uint32_t eph_type;
  void *user; /* fh_thread_set_user */
} fh__thread_fast;

/* Address windows for fh_object_type/size without a thread: three per
 * heap (its two moving or malloc spaces, its non-moving space),
 * [begin, begin + span) with the objects below *end (the space's
 * allocation frontier, which only grows while mutators run).  Written at
 * heap create and destroy and by fh_prefork, each under a seqlock (seq odd
 * while it changes); a reader dereferences end only for an address inside
 * the window, as the out-of-line check would. */
#define FH__OBJ_WINDOWS 128
typedef struct fh__obj_window {
  _Atomic unsigned seq;
  _Atomic uintptr_t begin, span;
  const _Atomic uintptr_t *_Atomic end;
  const uint32_t *_Atomic type_sizes;
} fh__obj_window;
FH_API extern fh__obj_window fh__obj_windows[FH__OBJ_WINDOWS];
FH_API extern _Atomic unsigned fh__obj_windows_used; /* [0, used) were ever written */
FH_API size_t fh_object_size_slow(const void *obj);
FH_API uint32_t fh_object_type_slow(const void *obj);

FH_API void *fh_alloc_slow(fh_thread *t, uint32_t type, size_t payload_bytes);
FH_API uint64_t fh_object_hash_slow(fh_thread *t, const void *obj);
FH_API void fh_safepoint_slow(fh_thread *t);
FH_API void fh_write_ref_slow(fh_thread *t, void *obj, void **slot, void *value);
FH_API void fh_push_root_slow(fh_thread *t, void **slot);
FH_API void *fh_ephemeron_key_slow(fh_thread *t, void *eph);
FH_API void *fh_ephemeron_value_slow(fh_thread *t, void *eph);
FH_API void fh_ephemeron_set_value_slow(fh_thread *t, void *eph, void *value);
FH_API void fh_pop_roots_slow(fh_thread *t, size_t n);
FH_API void fh_push_roots_slow(fh_thread *t, void **const *slots, size_t n);
FH_API void fh_root_reset_slow(fh_thread *t, size_t mark);

static inline uint64_t fh__make_header(uint32_t type, size_t payload) {
  return ((uint64_t)payload << 32) | ((uint64_t)type << 8);
}

/* The header of obj when obj is the start of an object in one of the
 * windows, checked as the out-of-line path checks it (aligned, below the
 * frontier, not forwarded nor a filler, a registered type whose fixed size
 * matches, the payload below the frontier); 0 (never a valid header: type
 * 0 is the filler) otherwise, and the caller takes the slow path. */
static inline uint64_t fh__object_header(const void *obj) {
  uintptr_t a = (uintptr_t)obj;
  unsigned used = atomic_load_explicit(&fh__obj_windows_used, memory_order_acquire);
  for (unsigned i = 0; i < used; i++) {
    fh__obj_window *w = &fh__obj_windows[i];
    unsigned q = atomic_load_explicit(&w->seq, memory_order_acquire);
    uintptr_t b = atomic_load_explicit(&w->begin, memory_order_acquire);
    uintptr_t span = atomic_load_explicit(&w->span, memory_order_acquire);
    if (a - FH__HEADER_BYTES - b >= span) continue;
    const _Atomic uintptr_t *endp = atomic_load_explicit(&w->end, memory_order_acquire);
    const uint32_t *sizes = atomic_load_explicit(&w->type_sizes, memory_order_acquire);
    /* Acquire loads above: the re-check cannot move before them. */
    if ((q & 1) || atomic_load_explicit(&w->seq, memory_order_relaxed) != q || (a & 7u))
      return 0;
    uintptr_t end = atomic_load_explicit(endp, memory_order_acquire);
    if (a > end) return 0;
    /* Below the frontier, so mapped: read it (atomically: fh_object_hash
     * may be setting hash bits meanwhile). */
#if defined(__GNUC__)
    uint64_t hd = __atomic_load_n((const uint64_t *)(a - FH__HEADER_BYTES), __ATOMIC_RELAXED);
#else
    uint64_t hd = *(const volatile uint64_t *)(a - FH__HEADER_BYTES);
#endif
    uint32_t type = (uint32_t)(hd >> 8) % FH__MAX_TYPES, want;
    if ((hd & 1u) || type == 0) return 0; /* forwarded, or a filler */
    want = FH__TYPE_SIZE(sizes, type);
    if (want == FH__NO_TYPE) return 0;
    if (want < FH__VAR_CHECKED && want != (uint32_t)(hd >> 32)) return 0;
    return (hd >> 32) <= end - a ? hd : 0;
  }
  return 0;
}

/* Identity hashing's header bits and key (the library's heap/object.h and
 * heap/identity_hash.h use these definitions): an object is hashed in
 * place (its key is its address and a salt held in header bits 3-7 and
 * 24-31) or, once moved, carries its key in the word after its payload. */
#define FH__HDR_HASHED 2u
#define FH__HDR_HASH_MOVED 4u
static inline unsigned fh__hdr_salt(uint64_t hd) {
  return (unsigned)((hd >> 3) & 31u) | (unsigned)((hd >> 24) & 0xFFu) << 5;
}
static inline uint64_t fh__hash_key_at(uintptr_t payload, unsigned salt) {
  return (uint64_t)salt << 48 | (uint64_t)(payload >> 3);
}
/* The word after a HASH_MOVED object's payload (rounded up to 8 bytes). */
static inline const uint64_t *fh__hash_word(const void *obj, uint64_t hd) {
  return (const uint64_t *)((uintptr_t)obj + (((hd >> 32) + 7u) & ~(uint64_t)7u));
}
static inline uint64_t fh__hash_key(const void *obj, uint64_t hd) {
  if (hd & FH__HDR_HASH_MOVED) return *fh__hash_word(obj, hd);
  return fh__hash_key_at((uintptr_t)obj, fh__hdr_salt(hd));
}
/* A 64-bit bijection (murmur3's finaliser): mix(0) = 0, and no key is 0. */
static inline uint64_t fh__hash_mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

static inline uint32_t fh_object_type(const void *obj) {
  uint64_t hd = fh__object_header(obj);
  return FH__LIKELY(hd != 0) ? (uint32_t)(hd >> 8) % FH__MAX_TYPES : fh_object_type_slow(obj);
}

static inline size_t fh_object_size(const void *obj) {
  uint64_t hd = fh__object_header(obj);
  return FH__LIKELY(hd != 0) ? (size_t)(hd >> 32) : fh_object_size_slow(obj);
}

/* An object already hashed, in a moving, malloc or non-moving space, is
 * answered here: its header says where its key is.  A first hash (a
 * header CAS, and records while concurrent marking runs), other spaces,
 * verify=1 and a detached thread (heap_span 0) take the slow path.  The
 * header load is relaxed: the key comes from the header word itself or
 * from a hash word the collector wrote with the world stopped. */
static inline uint64_t fh_object_hash(fh_thread *t, const void *obj) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  if (FH__LIKELY(t != NULL && (uintptr_t)obj - f->heap_lo < f->heap_span)) {
    uint64_t hd = fh__object_header(obj);
    if (FH__LIKELY(hd & FH__HDR_HASHED)) return fh__hash_mix(fh__hash_key(obj, hd));
  }
  return fh_object_hash_slow(t, obj);
}

static inline void *fh_alloc(fh_thread *t, uint32_t type, size_t n) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  if (FH__LIKELY(t != NULL && type < FH__MAX_TYPES && n <= FH__INLINE_MAX)) {
    uint32_t want = FH__TYPE_SIZE(f->type_sizes, type);
    uintptr_t bytes = ((uintptr_t)n + FH__HEADER_BYTES + 7u) & ~(uintptr_t)7u;
    uintptr_t cur = f->tlab_cursor;
    if (FH__LIKELY((want == n || want == FH__VAR_SIZE) &&
                   bytes <= f->tlab_limit - cur)) {
      f->tlab_cursor = cur + bytes;
      *(uint64_t *)cur = fh__make_header(type, n); /* payload is pre-zeroed */
      return (void *)(cur + FH__HEADER_BYTES);
    }
  }
  return fh_alloc_slow(t, type, n);
}

static inline void fh_safepoint(fh_thread *t) {
  if (FH__LIKELY(t != NULL) &&
      FH__UNLIKELY(atomic_load_explicit(
          &((fh__thread_fast *)t)->safepoint_requested, memory_order_relaxed)))
    fh_safepoint_slow(t);
}

static inline void fh_write_ref(fh_thread *t, void *obj, void **slot, void *value) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  uintptr_t off;
  if (FH__LIKELY(t != NULL && slot != NULL) &&
      FH__LIKELY((off = (uintptr_t)obj - f->heap_lo) < f->heap_span)) {
    /* The slot as one atomic word: a concurrent marker may read it
     * meanwhile (a plain store on every target we run on). */
#if defined(__GNUC__)
    __atomic_store_n(slot, value, __ATOMIC_RELAXED);
#else
    *slot = value;
#endif
    /* Release: the store above is ordered before the card mark.  A
     * concurrent marker clears a dirty card with an acquire exchange and
     * then reads the card's objects; had the card been marked before the
     * slot store became visible, the marker could clear it, read the old
     * value and never look again.  Threads may dirty the same card at
     * once; a release byte store is a plain store on x86 (TSO) and one
     * stlrb on arm64. */
    atomic_store_explicit(&f->cards[off >> FH__CARD_SHIFT], FH__CARD_DIRTY, memory_order_release);
    return;
  }
  fh_write_ref_slow(t, obj, slot, value);
}

/* The ephemeron at eph as two slots (key, value), or NULL: not one of this
 * heap's (the slow path says why), or verify=1 (which checks everything).
 * Few instructions on purpose: weak-table lookups are bound by the cache
 * miss on the ephemeron, and a longer path leaves fewer of those misses in
 * flight at once (a lookup loop ran 1.6-2.8x slower with a 2x longer path).
 * Mutators never see a forwarded header (copying runs with the world
 * stopped), so the type field is all there is to test. */
static inline void **fh__ephemeron_slots(fh_thread *t, void *eph) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  if (FH__LIKELY(t != NULL && (uintptr_t)eph - f->heap_lo < f->heap_span)) {
    uint64_t hd = *(const uint64_t *)((uintptr_t)eph - FH__HEADER_BYTES);
    if (FH__LIKELY((uint32_t)(hd >> 8) % FH__MAX_TYPES ==
                   atomic_load_explicit(&f->eph_type, memory_order_relaxed)))
      return (void **)eph;
  }
  return NULL;
}

static inline void *fh_ephemeron_key(fh_thread *t, void *eph) {
  void **e = fh__ephemeron_slots(t, eph);
  return FH__LIKELY(e != NULL) ? e[0] : fh_ephemeron_key_slow(t, eph);
}

static inline void *fh_ephemeron_value(fh_thread *t, void *eph) {
  void **e = fh__ephemeron_slots(t, eph);
  if (FH__LIKELY(e != NULL)) return e[0] ? e[1] : NULL; /* cleared: both NULL */
  return fh_ephemeron_value_slow(t, eph);
}

static inline void fh_ephemeron_set_value(fh_thread *t, void *eph, void *value) {
  void **e = fh__ephemeron_slots(t, eph);
  if (FH__LIKELY(e != NULL)) {
    if (e[0]) fh_write_ref(t, eph, &e[1], value);
  } else {
    fh_ephemeron_set_value_slow(t, eph, value);
  }
}

static inline void fh_push_root(fh_thread *t, void **slot) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  if (FH__LIKELY(t != NULL && slot != NULL && f->roots_top < f->roots_limit))
    *f->roots_top++ = slot;
  else
    fh_push_root_slow(t, slot);
}

/* One bounds check, then a copy without early exit (the compiler may
 * vectorise it); a NULL entry leaves the copies above top unpublished and
 * the slow path reports it. */
static inline void fh_push_roots(fh_thread *t, void **const *slots, size_t n) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  if (FH__LIKELY(t != NULL && slots != NULL &&
                 n <= (size_t)(f->roots_limit - f->roots_top))) {
    void ***top = f->roots_top;
    int all = 1;
    for (size_t i = 0; i < n; i++) {
      top[i] = slots[i];
      all &= slots[i] != NULL;
    }
    if (FH__LIKELY(all)) {
      f->roots_top = top + n;
      return;
    }
  }
  fh_push_roots_slow(t, slots, n);
}

#define FH__NARGS(...) FH__NARGS_(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define FH__NARGS_(a0, a1, a2, a3, a4, a5, a6, a7, n, ...) (n)
#define FH__PAD8(...) FH__PAD8_(__VA_ARGS__, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
#define FH__PAD8_(a0, a1, a2, a3, a4, a5, a6, a7, ...) a0, a1, a2, a3, a4, a5, a6, a7

/* FH_PUSH_ROOTS's body: n (1..8) is a constant and the slots are scalars,
 * so every test on them folds away; only the slow path builds an array. */
static inline void fh__push_roots8(fh_thread *t, size_t n, void **a0, void **a1, void **a2,
                                   void **a3, void **a4, void **a5, void **a6, void **a7) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  if (FH__LIKELY(t != NULL && n <= (size_t)(f->roots_limit - f->roots_top) && a0 != NULL &&
                 (n < 2 || a1 != NULL) && (n < 3 || a2 != NULL) && (n < 4 || a3 != NULL) &&
                 (n < 5 || a4 != NULL) && (n < 6 || a5 != NULL) && (n < 7 || a6 != NULL) &&
                 (n < 8 || a7 != NULL))) {
    void ***top = f->roots_top;
    top[0] = a0;
    if (n > 1) top[1] = a1;
    if (n > 2) top[2] = a2;
    if (n > 3) top[3] = a3;
    if (n > 4) top[4] = a4;
    if (n > 5) top[5] = a5;
    if (n > 6) top[6] = a6;
    if (n > 7) top[7] = a7;
    f->roots_top = top + n;
    return;
  }
  {
    void **const s[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    fh_push_roots_slow(t, s, n);
  }
}

static inline size_t fh_root_mark(fh_thread *t) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  return t != NULL ? (size_t)(f->roots_top - f->roots_base) : 0;
}

static inline void fh_root_reset(fh_thread *t, size_t mark) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  if (FH__LIKELY(t != NULL && mark <= (size_t)(f->roots_top - f->roots_base)))
    f->roots_top = f->roots_base + mark;
  else
    fh_root_reset_slow(t, mark);
}

static inline void *fh_thread_user(fh_thread *t) {
  return t != NULL ? ((fh__thread_fast *)t)->user : NULL;
}

static inline void fh_pop_roots(fh_thread *t, size_t n) {
  fh__thread_fast *f = (fh__thread_fast *)t;
  if (FH__LIKELY(t != NULL && n <= (size_t)(f->roots_top - f->roots_base)))
    f->roots_top -= n;
  else
    fh_pop_roots_slow(t, n);
}

#endif /* FAULTHEAP_INLINE_H_ */
