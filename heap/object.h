/* The object header: one 8-byte word in front of every object's payload.
 *
 *   normal:     [63..32 payload bytes][31..8 type id][7..0 flags, bit 0 clear]
 *   forwarded:  [63..3 address of the copy's payload][2..1 zero][bit 0 set]
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
static inline uint32_t hdr_type(uint64_t h) { return (uint32_t)(h >> 8) & 0xFFFFFFu; }
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

/* Write a filler covering [start, start + bytes); bytes is a multiple of 8, >= 8. */
static inline void obj_write_filler(uintptr_t start, size_t bytes) {
  *(uint64_t *)start = fh__make_header(FH_FILLER_TYPE, bytes - FH_HEADER_BYTES);
}

#endif
