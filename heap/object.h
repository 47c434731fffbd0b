/* The object header: one 8-byte word in front of every object's payload.
 *
 *   normal:     [63..32 payload bytes][31..24 salt hi][23..8 type id]
 *               [7..3 salt lo][2 HASH_MOVED][1 HASHED][0 clear]
 *   forwarded:  [63..3 address of the copy's payload][2..1 zero][bit 0 set]
 *
 * Identity hash states (heap/identity_hash.h): neither bit, never hashed;
 * HASHED, the hash derives from the current payload address and the 13-bit
 * salt; HASHED|HASH_MOVED, the object was moved after it was hashed and
 * carries its hash key in one extra 8-byte word right after its aligned
 * end: it occupies obj_bytes(header) = obj_total_bytes(payload) + 8.
 * Every walker and sizer that steps over objects uses obj_bytes.
 *
 * Forwarding is used only while a copying collection runs (semi-space,
 * homogeneous and zygote compaction); mark-compact never writes headers.
 * Type id 0 is the filler type: its payload is dead space that keeps a bump
 * space walkable where a thread-local buffer was retired early. */
#ifndef FH_OBJECT_H_
#define FH_OBJECT_H_

#include <stddef.h>
#include <stdint.h>

#include "faultheap.h"

#define FH_HEADER_BYTES FH__HEADER_BYTES
#define FH_OBJ_ALIGN 8u
#define FH_FILLER_TYPE 0u
#define FH_HDR_FORWARDED 1u
#define FH_HDR_HASHED FH__HDR_HASHED /* faultheap_inline.h: fh_object_hash reads them */
#define FH_HDR_HASH_MOVED FH__HDR_HASH_MOVED
#define FH_HDR_HASH_BITS (FH_HDR_HASHED | FH_HDR_HASH_MOVED)
#define FH_HASH_WORD_BYTES 8u

static inline uint64_t *obj_header(const void *payload) {
  return (uint64_t *)((uintptr_t)payload - FH_HEADER_BYTES);
}
/* Prefetch an object's header and the 56 bytes after it, where the
 * reference slots of small objects lie.  Those 64 bytes span two cache
 * lines unless the header starts one; prefetching only the header's line
 * left the slot loads missing (fhbench pause's nodes start 8 bytes before
 * a line: marking went from ~100 to ~86 ms with the second prefetch). */
static inline void obj_prefetch_head(const void *payload) {
  __builtin_prefetch(obj_header(payload));
  __builtin_prefetch((const char *)obj_header(payload) + 63);
}
static inline void *obj_from_start(uintptr_t start) {
  return (void *)(start + FH_HEADER_BYTES);
}
static inline uintptr_t obj_start(const void *payload) {
  return (uintptr_t)payload - FH_HEADER_BYTES;
}
/* Type ids are below FH__MAX_TYPES = 2^16; header bits 31..24 hold salt. */
static inline uint32_t hdr_type(uint64_t h) { return (uint32_t)(h >> 8) & (FH__MAX_TYPES - 1); }
static inline size_t hdr_payload(uint64_t h) { return (size_t)(h >> 32); }
static inline int hdr_is_forwarded(uint64_t h) { return (int)(h & FH_HDR_FORWARDED); }
static inline void *hdr_forwardee(uint64_t h) { return (void *)(uintptr_t)(h & ~(uint64_t)7); }
static inline uint64_t hdr_make_forward(const void *to) {
  return (uint64_t)(uintptr_t)to | FH_HDR_FORWARDED;
}

/* Bytes an object of `payload` bytes occupies in a bump space. */
static inline size_t obj_total_bytes(size_t payload) {
  return (payload + FH_HEADER_BYTES + FH_OBJ_ALIGN - 1) & ~(size_t)(FH_OBJ_ALIGN - 1);
}

/* Bytes the object with header h occupies now (its hash word included). */
static inline size_t obj_bytes(uint64_t h) {
  return obj_total_bytes(hdr_payload(h)) + ((h & FH_HDR_HASH_MOVED) << 1);
}
/* Bytes it occupies once moved: a HASHED object gains its hash word. */
static inline size_t obj_moved_bytes(uint64_t h) {
  return obj_total_bytes(hdr_payload(h)) + ((h & FH_HDR_HASHED) << 2);
}
/* Hashed in place: a move must append the hash word (heap/identity_hash.h). */
static inline int hdr_hash_grows(uint64_t h) {
  return (h & FH_HDR_HASH_BITS) == FH_HDR_HASHED;
}

/* Write a filler covering [start, start + bytes); bytes is a multiple of 8, >= 8. */
static inline void obj_write_filler(uintptr_t start, size_t bytes) {
  *(uint64_t *)start = fh__make_header(FH_FILLER_TYPE, bytes - FH_HEADER_BYTES);
}

#endif
