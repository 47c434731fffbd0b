/* The type registry: how the heap finds references in an object.
 * Ids are dense from 1 (0 is the filler type) and never reused; the fixed
 * payload size of each id is mirrored into a flat array that the inline
 * allocation fast path reads (fh__thread_fast.type_sizes). */
#ifndef FH_TYPES_H_
#define FH_TYPES_H_

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "faultheap.h"

/* Internal type flags (above the public FH_TYPE_* ones; fh_register_type
 * refuses them).  TYPE_EPHEMERON: the heap's built-in ephemeron type
 * (heap/ephemeron.c).  Its two slots are ordinary reference slots for every
 * pass that updates, copies, saves or checks references; only tracing for
 * liveness treats them apart (collectors/trace.h). */
#define TYPE_EPHEMERON (1u << 30)
#define TYPE_INTERNAL_FLAGS TYPE_EPHEMERON

typedef struct fh_type_info {
  uint32_t id;
  char *name;
  size_t size;          /* fixed payload bytes, 0 = variable */
  size_t min_payload;   /* variable types: every ref offset must fit */
  uint32_t nrefs;
  uint32_t *ref_offsets;
  void (*trace)(void *obj, size_t size, fh_visit_fn visit, void *ctx);
  uint32_t flags;
  int from_image;       /* registered from a heap image's type table */
  struct fh_type_info *next_by_name; /* chain of its by_name bucket */
} fh_type_info;

/* By-name buckets: a fixed 1024 keeps chains short for thousands of types. */
#define TYPE_NAME_BUCKETS 1024

typedef struct fh_type_registry {
  pthread_mutex_t lock;          /* writers and by_name; other readers use the arrays */
  fh_type_info **by_name;        /* [TYPE_NAME_BUCKETS] chains, under lock */
  fh_type_info **info;           /* [FH__MAX_TYPES] */
  uint32_t *sizes;               /* [FH__MAX_TYPES], published to threads */
  _Atomic uint32_t next_id;
} fh_type_registry;

int types_init(fh_type_registry *r);
void types_destroy(fh_type_registry *r);
/* Register or find; 0 + fh_last_error() on invalid or conflicting types. */
uint32_t types_register(fh_type_registry *r, const fh_type *t);
/* The id registered under name, 0 if none. */
uint32_t types_find(fh_type_registry *r, const char *name);
/* The type of a valid id, NULL for an unused one. */
static inline const fh_type_info *types_get(const fh_type_registry *r, uint32_t id) {
  return id < FH__MAX_TYPES ? r->info[id] : NULL;
}
/* A process-wide type-size table in which every id reads FH__NO_TYPE, so
 * the inline fh_alloc always takes the slow path; made on first use (256
 * KiB of zero pages, never touched), NULL if that fails. */
const uint32_t *types_closed_sizes(void);
/* Check (type, payload) as fh_alloc receives them; 0 or -1 + error. */
int types_check_alloc(const fh_type_registry *r, uint32_t type, size_t payload);
/* Visit every reference slot of an object. */
void types_visit_refs(const fh_type_info *ti, void *obj, size_t payload,
                      fh_visit_fn visit, void *ctx);
/* A test on a reference slot. */
typedef int (*types_slot_pred)(void **slot, void *ctx);
/* Whether pred holds for some reference slot of an object: stops at the
 * first slot it holds for, but for a type with a trace function, which
 * visits every slot (pred is not called after the first true). */
int types_any_ref(const fh_type_info *ti, void *obj, size_t payload, types_slot_pred pred,
                  void *ctx);

#endif
