/* Heap verification (verify=1): every header and every reference, before
 * and after each collection.  A reference must be NULL, point outside the
 * heap's reservation (native memory the collectors ignore), or point at the
 * payload of an object that exists.  The first violation is printed with
 * the offending object and the process aborts: this is a debugging mode,
 * and a heap with a dangling reference cannot be trusted further. */
#include <stdio.h>
#include <stdlib.h>

#include "heap/heap.h"
#include "heap/object.h"
#include "spaces/bitmap.h"

typedef struct verify_ctx {
  fh_heap *h;
  const char *when;
  fh_bitmap starts; /* object starts in the active bump space */
  /* ... and in the idle one, where a mostly-copying semispace cycle keeps
   * pinned objects (collectors/semi_fixed.h); words NULL when it is empty. */
  fh_bitmap idle_starts;
  const void *holder; /* object whose slots are being checked, NULL for roots */
  size_t objects;
} verify_ctx;

static void __attribute__((noreturn)) fail(verify_ctx *c, const char *what, const void *where,
                                           const void *value) {
  fprintf(stderr, "faultheap verify (%s): %s\n", c->when, what);
  if (c->holder) {
    uint64_t hd = *obj_header(c->holder);
    const fh_type_info *ti = types_get(&c->h->types, hdr_type(hd));
    fprintf(stderr, "  in object %p (type %u %s, %zu bytes), slot %p (offset %td) holds %p\n",
            c->holder, hdr_type(hd), ti ? ti->name : "?", hdr_payload(hd), where,
            (const char *)where - (const char *)c->holder, value);
  } else {
    fprintf(stderr, "  root slot %p holds %p\n", where, value);
  }
  fh_dump(c->h, stderr);
  abort();
}

static void check_ref(void **slot, void *ctx) {
  verify_ctx *c = ctx;
  fh_heap *h = c->h;
  void *p = slot_object(h->tags, *slot); /* NULL for immediates */
  uintptr_t a = (uintptr_t)p;
  if (!p || a - h->resv_begin >= h->resv_size) return;
  if (heap_in_bump(h, h->active, p)) {
    if ((a & 7) || !bitmap_test(&c->starts, a - FH_HEADER_BYTES))
      fail(c, "reference into the bump space that is not an object", slot, p);
    return;
  }
  if (heap_in_bump(h, !h->active, p)) {
    if (c->idle_starts.words && !(a & 7) &&
        a - FH_HEADER_BYTES < atomic_load(&h->bump[!h->active].top) &&
        bitmap_test(&c->idle_starts, a - FH_HEADER_BYTES))
      return;
    fail(c, "reference into the evacuated semi-space (a stale pointer kept across an "
            "allocation without a root?)", slot, p);
  }
  fh_space *spaces[HEAP_MAX_SPACES];
  unsigned n = heap_spaces(h, spaces);
  for (unsigned i = 0; i < n; i++) {
    if (!space_contains(spaces[i], p)) continue;
    if (!spaces[i]->ops->is_object(spaces[i], p)) {
      char what[128];
      snprintf(what, sizeof what, "reference into the %s that is not an object", spaces[i]->name);
      fail(c, what, slot, p);
    }
    return;
  }
  fail(c, "reference into the heap's reservation outside every space", slot, p);
}

static void check_header(verify_ctx *c, const void *obj, uintptr_t limit) {
  uint64_t hd = *obj_header(obj);
  c->holder = obj;
  if (hdr_is_forwarded(hd)) fail(c, "forwarded header outside a collection", obj, (void *)hd);
  uint32_t type = hdr_type(hd);
  if (type == FH_FILLER_TYPE) return;
  const fh_type_info *ti = types_get(&c->h->types, type);
  if (!ti) fail(c, "object header with an unregistered type id", obj, (void *)hd);
  if (ti->size && hdr_payload(hd) != ti->size)
    fail(c, "object size disagrees with its fixed-size type", obj, (void *)hd);
  if (obj_start(obj) + obj_bytes(hd) > limit)
    fail(c, "object runs past the end of its space", obj, (void *)hd);
}

static void check_object_refs(void *obj, void *ctx) {
  verify_ctx *c = ctx;
  uint64_t hd = *obj_header(obj);
  c->holder = obj;
  c->objects++;
  types_visit_refs(types_get(&c->h->types, hdr_type(hd)), obj, hdr_payload(hd), check_ref, c);
}

typedef struct space_walk {
  verify_ctx *c;
  fh_space *space;
} space_walk;

static void check_space_header(void *obj, void *ctx) {
  space_walk *w = ctx;
  check_header(w->c, obj, w->space->end);
}

void heap_poison(uintptr_t lo, uintptr_t hi) {
  for (uint64_t *w = (uint64_t *)lo; (uintptr_t)w < hi; w++) *w = FH_POISON;
}

void heap_verify(fh_heap *h, const char *when) {
  verify_ctx c = {.h = h, .when = when};
  bump_space *b = &h->bump[h->active];
  uintptr_t top = atomic_load(&b->top);
  bump_space *idle = &h->bump[!h->active];
  uintptr_t idle_top = atomic_load(&idle->top);
  if (bitmap_init(&c.starts, b->space.begin, b->space.end - b->space.begin, 3) < 0 ||
      (idle_top > idle->space.begin &&
       bitmap_init(&c.idle_starts, idle->space.begin, idle_top - idle->space.begin, 3) < 0)) {
    fprintf(stderr, "faultheap verify (%s): cannot map the verification bitmap; skipped\n", when);
    bitmap_destroy(&c.starts);
    return;
  }
  /* The idle half: empty, or pinned objects between fillers. */
  for (uintptr_t p = idle->space.begin; p < idle_top;) {
    void *obj = obj_from_start(p);
    check_header(&c, obj, idle_top);
    if (hdr_type(*obj_header(obj)) != FH_FILLER_TYPE) bitmap_set(&c.idle_starts, p);
    p += obj_bytes(*obj_header(obj));
  }
  /* Pass 1: headers, and the index of object starts. */
  for (uintptr_t p = b->space.begin; p < top;) {
    void *obj = obj_from_start(p);
    check_header(&c, obj, top);
    bitmap_set(&c.starts, p);
    p += obj_bytes(*obj_header(obj));
  }
  fh_space *spaces[HEAP_MAX_SPACES];
  unsigned n = heap_spaces(h, spaces);
  for (unsigned i = 0; i < n; i++) {
    if (spaces[i]->kind == SPACE_BUMP) continue; /* done above, in one pass */
    space_walk w = {&c, spaces[i]};
    spaces[i]->ops->walk(spaces[i], check_space_header, &w);
  }
  /* Pass 2: references. */
  for (unsigned i = 0; i < n; i++) spaces[i]->ops->walk(spaces[i], check_object_refs, &c);
  c.holder = NULL;
  roots_visit(h, check_ref, &c);
  bitmap_destroy(&c.starts);
  bitmap_destroy(&c.idle_starts);
}
