/* Type registration and validation.  Registration is rare and serialised by
 * a mutex, which also guards the by-name hash table (names are looked up
 * only while registering); the per-id arrays are fixed-size so lock-free
 * readers never see them move. */
#include "heap/types.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "heap/error.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

#define TYPE_KNOWN_FLAGS (FH_TYPE_REF_ARRAY | TYPE_INTERNAL_FLAGS)

static unsigned long name_hash(const char *s) {
  unsigned long h = 1469598103934665603ul; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ul;
  return h;
}

int types_init(fh_type_registry *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->lock, NULL);
  r->info = reserve_map_table(FH__MAX_TYPES * sizeof *r->info);
  /* Zero, that is FH__NO_TYPE inverted, until a type is registered. */
  r->sizes = reserve_map_table(FH__MAX_TYPES * sizeof *r->sizes);
  /* Lookups by name happen only when types are registered, under the
   * lock: a plain chained table does, with no RCU and so no per-thread
   * registration that could fail on a thread's first call (issue 14). */
  /* A table, not calloc: calloc zeroed its 8 KiB, two fresh pages at every
   * heap creation; the table's pages are zero until a name lands on them. */
  r->by_name = reserve_map_table(TYPE_NAME_BUCKETS * sizeof *r->by_name);
  if (!r->info || !r->sizes || !r->by_name) {
    fh_error_set("cannot allocate the type registry");
    types_destroy(r);
    return -1;
  }
  atomic_store(&r->next_id, 1);
  return 0;
}

static uint32_t *closed_sizes;
static void closed_sizes_make(void) {
  /* All zero (FH__NO_TYPE inverted) and never written: no page of it is
   * ever resident.  Never freed: threads of any heap may point at it. */
  closed_sizes = reserve_map_table(FH__MAX_TYPES * sizeof *closed_sizes);
}

const uint32_t *types_closed_sizes(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, closed_sizes_make);
  return closed_sizes;
}

void types_destroy(fh_type_registry *r) {
  if (r->info) {
    for (uint32_t i = 1; i < atomic_load(&r->next_id); i++) {
      fh_type_info *ti = r->info[i];
      if (!ti) continue;
      free(ti); /* its name and ref offsets are in the same block */
    }
    sys_munmap(r->info, FH__MAX_TYPES * sizeof *r->info);
  }
  if (r->by_name) sys_munmap(r->by_name, TYPE_NAME_BUCKETS * sizeof *r->by_name);
  if (r->sizes) sys_munmap(r->sizes, FH__MAX_TYPES * sizeof *r->sizes);
  pthread_mutex_destroy(&r->lock);
  memset(r, 0, sizeof *r);
}

/* Checks that need no registry: shape of the description itself. */
static int validate_type(const fh_type *t) {
  if (!t) { fh_error_set("fh_register_type: type description is NULL"); return -1; }
  if (!t->name || !t->name[0]) { fh_error_set("fh_register_type: type has no name"); return -1; }
  const char *n = t->name;
  if (strlen(n) > 255) {
    fh_error_set("fh_register_type: type name longer than 255 bytes");
    return -1;
  }
  if (t->flags & ~TYPE_KNOWN_FLAGS) {
    fh_error_set("fh_register_type(%s): unknown flags 0x%x", n, t->flags & ~TYPE_KNOWN_FLAGS);
    return -1;
  }
  if (t->size >= FH__VAR_SIZE) {
    fh_error_set("fh_register_type(%s): size %zu is too large (max %u)", n, t->size, FH__VAR_SIZE - 1);
    return -1;
  }
  int ways = (t->nrefs > 0) + (t->trace != NULL) + ((t->flags & FH_TYPE_REF_ARRAY) != 0);
  if (ways > 1) {
    fh_error_set("fh_register_type(%s): give only one of ref_offsets, trace, FH_TYPE_REF_ARRAY", n);
    return -1;
  }
  if (t->nrefs && !t->ref_offsets) {
    fh_error_set("fh_register_type(%s): nrefs is %u but ref_offsets is NULL", n, t->nrefs);
    return -1;
  }
  for (uint32_t i = 0; i < t->nrefs; i++) {
    uint32_t off = t->ref_offsets[i];
    if (off % sizeof(void *)) {
      fh_error_set("fh_register_type(%s): ref offset %u is not pointer-aligned", n, off);
      return -1;
    }
    if (t->size && (size_t)off + sizeof(void *) > t->size) {
      fh_error_set("fh_register_type(%s): ref offset %u lies outside the %zu-byte object", n, off,
                   t->size);
      return -1;
    }
  }
  return 0;
}

static int same_layout(const fh_type_info *a, const fh_type *b) {
  if (a->size != b->size || a->nrefs != b->nrefs || a->trace != b->trace || a->flags != b->flags)
    return 0;
  return b->nrefs == 0 || memcmp(a->ref_offsets, b->ref_offsets, b->nrefs * sizeof(uint32_t)) == 0;
}

static fh_type_info **name_bucket(fh_type_registry *r, const char *name) {
  return &r->by_name[name_hash(name) % TYPE_NAME_BUCKETS];
}

static fh_type_info *lookup_locked(fh_type_registry *r, const char *name) {
  for (fh_type_info *ti = *name_bucket(r, name); ti; ti = ti->next_by_name)
    if (strcmp(ti->name, name) == 0) return ti;
  return NULL;
}

uint32_t types_find(fh_type_registry *r, const char *name) {
  pthread_mutex_lock(&r->lock);
  fh_type_info *ti = lookup_locked(r, name);
  pthread_mutex_unlock(&r->lock);
  return ti ? ti->id : 0;
}

uint32_t types_register(fh_type_registry *r, const fh_type *t) {
  if (validate_type(t) < 0) return 0;
  pthread_mutex_lock(&r->lock);
  uint32_t id = 0;
  fh_type_info *old = lookup_locked(r, t->name);
  if (old) {
    if (same_layout(old, t))
      id = old->id;
    else
      fh_error_set("fh_register_type(%s): a type of this name is already registered with "
                   "another layout (id %u%s)", t->name, old->id,
                   old->from_image ? ", defined by the heap image: the image was saved by a "
                                     "program whose types differ" : "");
    goto out;
  }
  uint32_t next = atomic_load(&r->next_id);
  if (next >= FH__MAX_TYPES) {
    fh_error_set("fh_register_type(%s): too many types (max %u)", t->name, FH__MAX_TYPES - 1);
    goto out;
  }
  /* One block: the record, its ref offsets, its name.  Three mallocs of
   * different size classes each touched a fresh jemalloc slab (and tcache
   * bin) page at start-up: ~10 page faults of an image boot. */
  size_t name_len = strlen(t->name);
  fh_type_info *ti = calloc(1, sizeof *ti + t->nrefs * sizeof(uint32_t) + name_len + 1);
  if (!ti) {
    fh_error_set("fh_register_type(%s): out of memory", t->name);
    goto out;
  }
  ti->ref_offsets = t->nrefs ? (uint32_t *)(ti + 1) : NULL;
  ti->name = (char *)(ti + 1) + t->nrefs * sizeof(uint32_t);
  memcpy(ti->name, t->name, name_len + 1);
  ti->id = next;
  ti->size = t->size;
  ti->nrefs = t->nrefs;
  ti->trace = t->trace;
  ti->flags = t->flags;
  for (uint32_t i = 0; i < t->nrefs; i++) {
    ti->ref_offsets[i] = t->ref_offsets[i];
    if (t->ref_offsets[i] + sizeof(void *) > ti->min_payload)
      ti->min_payload = t->ref_offsets[i] + sizeof(void *);
  }
  r->info[next] = ti;
  /* The size entry is what makes the id allocatable on the fast path:
   * publish it after the info it guards. */
  atomic_thread_fence(memory_order_release);
  /* A variable type with fixed ref offsets needs its minimum checked, which
   * the inline path does not do: route it to the slow path. */
  r->sizes[next] = ~(t->size ? (uint32_t)t->size : ti->min_payload ? FH__VAR_CHECKED : FH__VAR_SIZE);
  fh_type_info **b = name_bucket(r, ti->name);
  ti->next_by_name = *b;
  *b = ti;
  atomic_store(&r->next_id, next + 1);
  id = next;
out:
  pthread_mutex_unlock(&r->lock);
  return id;
}

int types_check_alloc(const fh_type_registry *r, uint32_t type, size_t payload) {
  const fh_type_info *ti = types_get(r, type);
  if (!ti) {
    fh_error_set("fh_alloc: type id %u is not registered", type);
    return -1;
  }
  if (ti->size && payload != ti->size) {
    fh_error_set("fh_alloc: type %s has fixed size %zu, not %zu", ti->name, ti->size, payload);
    return -1;
  }
  if (payload < ti->min_payload) {
    fh_error_set("fh_alloc: %zu bytes cannot hold the references of type %s (needs %zu)",
                 payload, ti->name, ti->min_payload);
    return -1;
  }
  return 0;
}

void types_visit_refs(const fh_type_info *ti, void *obj, size_t payload, fh_visit_fn visit,
                      void *ctx) {
  if (ti->nrefs) {
    for (uint32_t i = 0; i < ti->nrefs; i++)
      visit((void **)((char *)obj + ti->ref_offsets[i]), ctx);
  } else if (ti->flags & FH_TYPE_REF_ARRAY) {
    void **slots = obj;
    size_t n = payload / sizeof(void *);
    for (size_t i = 0; i < n; i++) visit(&slots[i], ctx);
  } else if (ti->trace) {
    ti->trace(obj, payload, visit, ctx);
  }
}

typedef struct any_ref {
  types_slot_pred pred;
  void *ctx;
  int found;
} any_ref;

static void any_ref_visit(void **slot, void *ctx) {
  any_ref *a = ctx;
  if (!a->found) a->found = a->pred(slot, a->ctx) != 0;
}

int types_any_ref(const fh_type_info *ti, void *obj, size_t payload, types_slot_pred pred,
                  void *ctx) {
  if (ti->nrefs) {
    for (uint32_t i = 0; i < ti->nrefs; i++)
      if (pred((void **)((char *)obj + ti->ref_offsets[i]), ctx)) return 1;
  } else if (ti->flags & FH_TYPE_REF_ARRAY) {
    void **slots = obj;
    size_t n = payload / sizeof(void *);
    for (size_t i = 0; i < n; i++)
      if (pred(&slots[i], ctx)) return 1;
  } else if (ti->trace) {
    any_ref a = {pred, ctx, 0};
    ti->trace(obj, payload, any_ref_visit, &a);
    return a.found;
  }
  return 0;
}
