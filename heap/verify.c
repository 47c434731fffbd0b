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
  void *p = *slot;
  uintptr_t a = (uintptr_t)p;
  fh_heap *h = c->h;
  if (!p || a - h->resv_begin >= h->resv_size) return;
  if (heap_in_bump(h, h->active, p)) {
    if ((a & 7) || !bitmap_test(&c->starts, a - FH_HEADER_BYTES))
      fail(c, "reference into the bump space that is not an object", slot, p);
  } else if (space_contains(&h->non_moving.space, p)) {
    if (!h->non_moving.space.ops->is_object(&h->non_moving.space, p))
      fail(c, "reference into the non-moving space that is not an object", slot, p);
  } else if (heap_in_bump(h, !h->active, p)) {
    fail(c, "reference into the evacuated semi-space (a stale pointer kept across an "
            "allocation without a root?)", slot, p);
  } else {
    fail(c, "reference into the heap's reservation outside every space", slot, p);
  }
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
  if (obj_start(obj) + obj_total_bytes(hdr_payload(hd)) > limit)
    fail(c, "object runs past the end of its space", obj, (void *)hd);
}

static void check_object_refs(void *obj, void *ctx) {
  verify_ctx *c = ctx;
  uint64_t hd = *obj_header(obj);
  c->holder = obj;
  c->objects++;
  types_visit_refs(types_get(&c->h->types, hdr_type(hd)), obj, hdr_payload(hd), check_ref, c);
}

static void check_nm_header(void *obj, void *ctx) {
  verify_ctx *c = ctx;
  check_header(c, obj, c->h->non_moving.space.end);
  if (hdr_type(*obj_header(obj)) == FH_FILLER_TYPE) fail(c, "filler in the non-moving space", obj, NULL);
}

void heap_verify(fh_heap *h, const char *when) {
  verify_ctx c = {.h = h, .when = when};
  bump_space *b = &h->bump[h->active];
  uintptr_t top = atomic_load(&b->top);
  if (bump_space_used(&h->bump[!h->active]) != 0)
    fail(&c, "the idle semi-space is not empty", (void *)h->bump[!h->active].space.begin, NULL);
  if (bitmap_init(&c.starts, b->space.begin, b->space.end - b->space.begin, 3) < 0) {
    fprintf(stderr, "faultheap verify (%s): cannot map the verification bitmap; skipped\n", when);
    return;
  }
  /* Pass 1: headers, and the index of object starts. */
  for (uintptr_t p = b->space.begin; p < top;) {
    void *obj = obj_from_start(p);
    check_header(&c, obj, top);
    bitmap_set(&c.starts, p);
    p += obj_total_bytes(hdr_payload(*obj_header(obj)));
  }
  h->non_moving.space.ops->walk(&h->non_moving.space, check_nm_header, &c);
  /* Pass 2: references. */
  b->space.ops->walk(&b->space, check_object_refs, &c);
  h->non_moving.space.ops->walk(&h->non_moving.space, check_object_refs, &c);
  c.holder = NULL;
  roots_visit(h, check_ref, &c);
  bitmap_destroy(&c.starts);
}
