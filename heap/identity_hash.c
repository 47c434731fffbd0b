/* fh_object_hash and the reserved-key index (see heap/identity_hash.h).
 *
 * Why the header CAS of a first hash cannot race with a move: a thread in
 * fh_object_hash is RUNNING and passes no safepoint, so no stop-the-world
 * collection (semispace, mark-sweep, homogeneous, mark-compact, zygote
 * compaction in fh_prefork, the pause of concurrent compaction) runs while
 * it reads or CASes the header; those collections move objects only with
 * every mutator parked or blocked.  Concurrent compaction builds pages
 * after its pause, but from that pause on mutators only hold new addresses,
 * and a new page is installed whole before any mutator can touch it; its
 * builders read the old copies (from-space), never the new headers.  The
 * only concurrent writers of a header are therefore other first hashes of
 * the same object, and the CAS settles them: one salt wins, the others
 * read it. */
#include "heap/identity_hash.h"

#include <stdlib.h>
#include <string.h>

#include "collectors/concurrent_mark.h"
#include "heap/error.h"
#include "heap/heap.h"
#include "heap/image_validate.h"
#include "heap/object_check.h"

void idhash_init(idhash_state *s) {
  *s = (idhash_state){0};
  pthread_mutex_init(&s->lock, NULL);
}

void idhash_destroy(idhash_state *s) {
  free(s->window);
  s->window = NULL;
  free(s->keys);
  s->keys = NULL;
  s->cap = s->n = 0;
  pthread_mutex_destroy(&s->lock);
}

/* ---- the window ------------------------------------------------------ */

void idhash_window_open(fh_heap *h) {
  idhash_state *s = &h->idhash;
  s->window_n = 0;
  s->window_lost = 0;
  atomic_store_explicit(&s->window_open, 1, memory_order_relaxed);
}

int idhash_window_close(fh_heap *h, const uintptr_t **objs, size_t *n) {
  idhash_state *s = &h->idhash;
  atomic_store_explicit(&s->window_open, 0, memory_order_relaxed);
  *objs = s->window;
  *n = s->window_n;
  return s->window_lost;
}

static void window_record(idhash_state *s, uintptr_t obj) {
  pthread_mutex_lock(&s->lock);
  if (s->window_n == s->window_cap) {
    size_t cap = s->window_cap ? 2 * s->window_cap : 64;
    uintptr_t *p = realloc(s->window, cap * sizeof *p);
    if (!p) {
      s->window_lost = 1;
      pthread_mutex_unlock(&s->lock);
      return;
    }
    s->window = p;
    s->window_cap = cap;
  }
  s->window[s->window_n++] = obj;
  pthread_mutex_unlock(&s->lock);
}

/* ---- the index (lock held) ------------------------------------------- */

static int index_has(const idhash_state *s, uint64_t key) {
  if (!s->n) return 0;
  size_t mask = s->cap - 1;
  for (size_t i = idhash_mix(key) & mask;; i = (i + 1) & mask) {
    if (s->keys[i] == key) return 1;
    if (!s->keys[i]) return 0;
  }
}

/* Insert; 1 when the key was there already. */
static int index_put(idhash_state *s, uint64_t key) {
  size_t mask = s->cap - 1;
  for (size_t i = idhash_mix(key) & mask;; i = (i + 1) & mask) {
    if (s->keys[i] == key) return 1;
    if (!s->keys[i]) {
      s->keys[i] = key;
      s->n++;
      return 0;
    }
  }
}

/* Rebuild from h->hash_vacated.  The table changes only with the world
 * stopped (or at image load, before any mutator), and the caller is a
 * running mutator: it reads a stable table.  0, or -1 (no memory). */
static int index_rebuild(fh_heap *h, idhash_state *s) {
  uint64_t epoch = atomic_load_explicit(&s->epoch, memory_order_acquire);
  size_t n = h->hash_vacated.n, cap = 16;
  while (cap < 2 * n) cap *= 2;
  if (cap != s->cap) {
    uint64_t *keys = calloc(cap, sizeof *keys);
    if (!keys) return -1;
    free(s->keys);
    s->keys = keys;
    s->cap = cap;
  } else {
    __builtin_memset(s->keys, 0, cap * sizeof *s->keys);
  }
  s->n = 0;
  for (size_t i = 0; i < n; i++) index_put(s, h->hash_vacated.items[i].data);
  s->built_epoch = epoch;
  return 0;
}

/* ---- first hash ------------------------------------------------------ */

/* The smallest salt >= the floor whose key at addr no live moved object
 * holds, or IDHASH_SALTS (error set) when there is none. */
static unsigned pick_salt(fh_heap *h, uintptr_t addr) {
  idhash_state *s = &h->idhash;
  unsigned salt = atomic_load_explicit(&s->salt_floor, memory_order_relaxed);
  /* Nothing ever recorded (the common case): no lock. */
  if (atomic_load_explicit(&s->epoch, memory_order_acquire) == 0 || salt >= IDHASH_SALTS) {
    if (salt >= IDHASH_SALTS)
      fh_error_set("fh_object_hash: no hash salt left (records of moved hashed objects were "
                   "lost for want of memory)");
    return salt;
  }
  pthread_mutex_lock(&s->lock);
  if (s->built_epoch != atomic_load_explicit(&s->epoch, memory_order_acquire) &&
      index_rebuild(h, s) < 0) {
    pthread_mutex_unlock(&s->lock);
    fh_error_set("fh_object_hash: out of memory for the index of %zu moved hashed objects",
                 h->hash_vacated.n);
    return IDHASH_SALTS;
  }
  while (salt < IDHASH_SALTS && index_has(s, idhash_make_key(addr, salt))) salt++;
  pthread_mutex_unlock(&s->lock);
  if (salt >= IDHASH_SALTS)
    fh_error_set("fh_object_hash: %p: all %u hash salts of this address are held by live "
                 "objects once hashed there", (void *)addr, IDHASH_SALTS);
  return salt;
}

/* An object of a bump space will gain its hash word when it moves: claim an
 * 8-byte filler in the same space now, so the space's used bytes cover it
 * (identity_hash.h).  0, or -1 + error (the space is full). */
static int reserve_word(fh_thread *t, bump_space *b) {
  fh__thread_fast *f = &t->fast;
  uintptr_t cur = f->tlab_cursor;
  if (cur >= b->space.begin && cur < b->space.end && f->tlab_limit - cur >= FH_HASH_WORD_BYTES) {
    obj_write_filler(cur, FH_HASH_WORD_BYTES);
    f->tlab_cursor = cur + FH_HASH_WORD_BYTES;
    return 0;
  }
  /* As heap/alloc.c claims: the range is noted until it is walkable. */
  t->claim_lo = 0;
  uintptr_t p = bump_space_claim(b, FH_HASH_WORD_BYTES, b->space.end);
  if (!p) {
    fh_error_set("fh_object_hash: %s is full: no room for the hash word the object will "
                 "carry when it moves", b->space.name);
    return -1;
  }
  t->claim_lo = p;
  t->claim_hi = p + FH_HASH_WORD_BYTES;
  atomic_signal_fence(memory_order_seq_cst);
  obj_write_filler(p, FH_HASH_WORD_BYTES);
  atomic_signal_fence(memory_order_seq_cst);
  t->claim_lo = t->claim_hi = 0;
  return 0;
}

static __attribute__((noinline)) uint64_t first_hash(fh_thread *t, const void *obj) {
  fh_heap *h = t->heap;
  uintptr_t a = (uintptr_t)obj;
  if (a >= IDHASH_ADDR_LIMIT) {
    fh_error_set("fh_object_hash: %p lies above 2^51: no identity hash", obj);
    return 0;
  }
  uint64_t *hp = obj_header(obj);
  unsigned salt = pick_salt(h, a);
  if (salt >= IDHASH_SALTS) return 0;
  for (int i = 0; i < 2; i++)
    if (space_contains(&h->bump[i].space, obj) && reserve_word(t, &h->bump[i]) < 0) return 0;
  for (int i = 0; h->has_malloc_spaces && i < 2; i++)
    if (space_contains(&h->malloc[i].space, obj))
      atomic_fetch_add_explicit(&h->idhash.malloc_hashed, 1, memory_order_relaxed);
  uint64_t hd = __atomic_load_n(hp, __ATOMIC_ACQUIRE);
  while (!(hd & FH_HDR_HASHED)) {
    uint64_t want = hdr_with_salt(hd | FH_HDR_HASHED, salt);
    /* Release: a thread that reads HASHED reads the salt with it. */
    if (__atomic_compare_exchange_n(hp, &hd, want, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      /* Concurrent marking of a compactor (collectors/cc_concurrent.c):
       * the marker may have scanned the object before it was hashed, and
       * it must grow when it moves; the remark finds it in the log. */
      if (t->ms_black && space_contains(&h->bump[h->active].space, obj))
        cmark_satb_log(t, (void *)obj);
      /* After such a marking, until the flip (world stopped meanwhile
       * only: open and close happen in pauses, this thread runs). */
      else if (atomic_load_explicit(&h->idhash.window_open, memory_order_relaxed) &&
               space_contains(&h->bump[h->active].space, obj))
        window_record(&h->idhash, a);
      return idhash_mix(idhash_make_key(a, salt));
    }
  }
  return idhash_mix(obj_hash_key(obj, hd)); /* another thread hashed it first */
}

/* fh_object_hash (faultheap_inline.h) when its inline path cannot answer. */
uint64_t fh_object_hash_slow(fh_thread *t, const void *obj) {
  if (__builtin_expect(!t || t->magic != THREAD_LIVE, 0)) {
    thread_check(t, "fh_object_hash");
    return 0;
  }
  if (__builtin_expect(!heap_object_plausible(t->heap, obj), 0)) {
    heap_check_object(t->heap, obj, "fh_object_hash");
    return 0;
  }
  uint64_t hd = __atomic_load_n(obj_header(obj), __ATOMIC_ACQUIRE);
  if (__builtin_expect(hd & FH_HDR_HASHED, 1)) return idhash_mix(obj_hash_key(obj, hd));
  return first_hash(t, obj);
}

/* ---- collectors ------------------------------------------------------ */

void idhash_vacate(fh_heap *h, void *rec_obj, uint64_t key) {
  weak_records *r = &h->hash_vacated;
  if (r->n == r->cap && weak_records_reserve(r, r->n ? r->n : 64) < 0) {
    /* No memory in a pause: the key cannot be reserved alone, so every
     * salt up to its own is retired for every address (never a collision;
     * fh_object_hash fails once none is left). */
    unsigned salt = (unsigned)(key >> 48) + 1;
    idhash_state *s = &h->idhash;
    if (atomic_load_explicit(&s->salt_floor, memory_order_relaxed) < salt)
      atomic_store_explicit(&s->salt_floor, salt, memory_order_relaxed);
    return;
  }
  weak_records_push(r, rec_obj, key);
  atomic_fetch_add_explicit(&h->idhash.epoch, 1, memory_order_release);
}

void idhash_reserve_vacated(fh_heap *h, size_t more) {
  weak_records *r = &h->hash_vacated;
  /* The lock orders the move against index_rebuild, the one reader of the
   * table beside a running marker; pauses (its writers) stop the marker. */
  pthread_mutex_lock(&h->idhash.lock);
  size_t cap = r->cap;
  if (r->n + more > cap && weak_records_reserve(r, more) == 0)
    memset(r->items + cap, 0, (r->cap - cap) * sizeof *r->items);
  pthread_mutex_unlock(&h->idhash.lock);
}

int idhash_record_image(fh_heap *h, const struct image_parsed *p) {
  if (!p->nhashed) return 0;
  /* A set of the image's keys, to refuse an image that repeats one. */
  idhash_state set = {0};
  set.cap = 16;
  while (set.cap < 2 * p->nhashed) set.cap *= 2;
  set.keys = calloc(set.cap, sizeof *set.keys);
  weak_records *r = &h->hash_vacated;
  if (!set.keys || weak_records_reserve(r, p->nhashed) < 0) {
    free(set.keys);
    fh_error_set("image load: out of memory for the keys of %zu hashed objects", p->nhashed);
    return -1;
  }
  size_t before = r->n;
  for (size_t i = 0; i < p->nhashed; i++) {
    if (index_put(&set, p->hashed[i].key)) {
      r->n = before;
      free(set.keys);
      fh_error_set("image load: two objects carry the same identity hash key (corrupt image)");
      return -1;
    }
    /* Only the address: the image's pages are not read. */
    weak_records_push(r, obj_from_start(h->image.space.begin + p->hashed[i].offset),
                      p->hashed[i].key);
  }
  free(set.keys);
  atomic_fetch_add(&h->idhash.epoch, 1);
  return 0;
}
