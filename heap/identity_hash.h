/* Identity hashing (fh_object_hash): address-based, with the states in the
 * header (heap/object.h: HASHED, HASH_MOVED).
 *
 * An object's hash is mix(key), mix a 64-bit bijection, key a 61-bit word:
 *   key = salt << 48 | payload address >> 3      (addresses below 2^51)
 * A HASHED object's key is computed from its current address and the salt
 * in its header.  When a collector moves a HASHED object it becomes
 * HASHED|HASH_MOVED and its key is written into the extra word after its
 * end, which it carries from then on (images included).
 *
 * Uniqueness.  Live hashed objects have pairwise distinct keys, so distinct
 * hashes (mix is a bijection).  A HASHED object at address A holds key
 * (A, s); no other live object can be at A.  A moved object's key (A, s)
 * stays reserved while it lives: the move appends (object, key) to
 * h->hash_vacated (the tracing layer drops the records of dead objects and
 * updates the others'), and a first hash at A picks the smallest salt whose
 * (A, salt) is in no record.  Keys from a loaded image are recorded at load.
 * A salt is 13 bits: 8192 live objects that were all hashed at the same
 * address exhaust it; fh_object_hash then fails (0 + error) rather than
 * collide.  A record the collector could not store (no memory in a pause)
 * raises a salt floor above its salt for every address instead.
 *
 * Room for the hash word.  A first hash of an object in a bump space (the
 * moving space of semispace and the compactors) claims an 8-byte filler in
 * the same space, so that the space's used bytes always cover the words its
 * HASHED objects will gain when they move: the copy (semispace) or the
 * compacted space (mark-compact) never outgrows the space.  Malloc-space
 * objects get their word from the destination's allocation (homogeneous
 * compaction plans it and fails whole when it does not fit); non-moving,
 * zygote and image objects never move. */
#ifndef FH_IDENTITY_HASH_H_
#define FH_IDENTITY_HASH_H_

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "heap/object.h"

#define IDHASH_SALT_BITS 13u
#define IDHASH_SALTS (1u << IDHASH_SALT_BITS)
#define IDHASH_ADDR_LIMIT ((uintptr_t)1 << 51)

struct fh_heap;

/* The index of reserved keys (the data words of h->hash_vacated): an open
 * addressing set, rebuilt by the first first-hash after a collection that
 * recorded keys (epoch changed).  Keys are only ever added to the table in
 * pauses and at image load, never while a mutator reads it. */
typedef struct idhash_state {
  pthread_mutex_t lock; /* the index; taken only by first hashes, never across a safepoint */
  uint64_t *keys;       /* [cap], 0 = empty */
  size_t cap, n;
  uint64_t built_epoch;
  _Atomic uint64_t epoch;      /* bumped whenever a key is recorded */
  _Atomic unsigned salt_floor; /* first salt a first hash may pick */
  _Atomic size_t malloc_hashed; /* first hashes of malloc-space objects (zygote room) */
  /* The window (idhash_window_open): objects of the active bump space
   * hashed for the first time while it is open, under `lock`; `lost`: one
   * could not be recorded (no memory). */
  _Atomic int window_open;
  uintptr_t *window;
  size_t window_n, window_cap;
  int window_lost;
} idhash_state;

void idhash_init(idhash_state *s);
void idhash_destroy(idhash_state *s);

/* Concurrent compaction between its remark and its flip (collectors/
 * cc_concurrent.c): its forwarding, computed meanwhile, gave no hash word
 * to an object hashed after marking scanned it.  Open (world stopped):
 * every first hash of an active bump-space object is recorded from now on.
 * Close (world stopped): *objs and *n are the payloads recorded (valid
 * until the next open), and the return value is nonzero when one was lost
 * (the caller must then look at every object). */
void idhash_window_open(struct fh_heap *h);
int idhash_window_close(struct fh_heap *h, const uintptr_t **objs, size_t *n);

/* The key layout lives in faultheap_inline.h, whose fh_object_hash
 * answers already hashed objects inline. */
static inline uint64_t idhash_mix(uint64_t x) { return fh__hash_mix(x); }
static inline unsigned hdr_salt(uint64_t h) { return fh__hdr_salt(h); }
static inline uint64_t hdr_with_salt(uint64_t h, unsigned salt) {
  return h | (uint64_t)(salt & 31u) << 3 | (uint64_t)(salt >> 5) << 24;
}
static inline uint64_t idhash_make_key(uintptr_t payload, unsigned salt) {
  return fh__hash_key_at(payload, salt);
}
/* The hash word of a HASH_MOVED object with header h starting at start. */
static inline uint64_t *obj_hash_word(uintptr_t start, uint64_t h) {
  return (uint64_t *)(uintptr_t)fh__hash_word(obj_from_start(start), h);
}
/* The key of a hashed object (header h) whose payload is at obj. */
static inline uint64_t obj_hash_key(const void *obj, uint64_t h) { return fh__hash_key(obj, h); }

/* ---- for collectors (world stopped) ---------------------------------- */

/* A HASHED object (hdr_hash_grows(h)) moves: keep its key reserved with a
 * record for rec_obj (the payload address the collector's weak-record
 * update will see: the new copy for semispace, the old address for the
 * collectors that update records in a later pass). */
void idhash_vacate(struct fh_heap *h, void *rec_obj, uint64_t key);
/* Room for `more` records beyond those held, its memory touched: a
 * concurrent marker calls it as it finds growers (under the index's lock,
 * beside running mutators), so that the pause that records them neither
 * grows the table nor faults its pages in (fhscheme's hashtables: 20,000
 * growers took 0.36 ms of a remark where the table grew from 128
 * records, 0.10-0.15 ms where it had room).  Without memory it does
 * nothing: the pause grows the table as before. */
void idhash_reserve_vacated(struct fh_heap *h, size_t more);

/* After copying obj_total_bytes(old header) bytes of a growing object to
 * dst_start: mark the copy moved and write its hash word. */
static inline void idhash_finish_copy(uintptr_t dst_start, uint64_t old_h, uint64_t key) {
  *(uint64_t *)dst_start = old_h | FH_HDR_HASH_MOVED;
  *obj_hash_word(dst_start, old_h) = key;
}

/* Copying collectors: the object obj (header hd) was copied whole (its
 * obj_bytes) to dst_start; when it grows, finish the copy and record its
 * key for the copy at dst_start.  Returns the bytes the copy occupies. */
static inline size_t idhash_copied(struct fh_heap *h, const void *obj, uint64_t hd,
                                   uintptr_t dst_start, int record_new) {
  if (__builtin_expect(!hdr_hash_grows(hd), 1)) return obj_bytes(hd);
  uint64_t key = obj_hash_key(obj, hd);
  idhash_finish_copy(dst_start, hd, key);
  idhash_vacate(h, record_new ? obj_from_start(dst_start) : (void *)obj, key);
  return obj_moved_bytes(hd);
}

/* Image load: record every key its moved-hashed objects carry (they may
 * collide with addresses of this heap).  0, or -1 + error (two objects of
 * the image carry one key: a corrupt image). */
struct image_parsed;
int idhash_record_image(struct fh_heap *h, const struct image_parsed *p);

#endif
