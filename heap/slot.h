/* What a reference slot holds: an object's payload pointer, NULL, or,
 * when the embedder declared tagged values (fh_options tag_immediate_mask,
 * tag_pointer_mask), an immediate (never a reference) or a tagged pointer
 * (the object at value & ~ptr, the tag kept when the slot is updated).
 * Every pass that reads a slot as a reference decodes it here: marking,
 * copying, forwarding, verification, images.  With both masks 0 (the
 * default) decoding is a test and an AND that never change anything. */
#ifndef FH_SLOT_H_
#define FH_SLOT_H_

#include <stdint.h>

typedef struct slot_tags {
  uintptr_t imm; /* tag_immediate_mask */
  uintptr_t ptr; /* tag_pointer_mask */
} slot_tags;

/* The object a slot value refers to, 0 for NULL and immediates. */
static inline uintptr_t slot_target(slot_tags tg, uintptr_t v) {
  return (v & tg.imm) ? 0 : v & ~tg.ptr;
}
static inline void *slot_object(slot_tags tg, void *v) {
  return (void *)slot_target(tg, (uintptr_t)v);
}
/* The slot value that refers to obj with the tag the old value carried. */
static inline uintptr_t slot_retag(slot_tags tg, uintptr_t old, uintptr_t obj) {
  return obj | (old & tg.ptr);
}

#endif
