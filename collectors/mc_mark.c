/* Marking for mark-compact: from the roots, over every space, into side
 * bitmaps only (no header is written).  Moving-space objects get their
 * start bit and all their live-word bits (forwarding.h), which is also the
 * per-chunk live-byte count; non-moving objects get their mark bit; immune
 * spaces are not collected, so their objects are scanned as roots.
 *
 * Stop-the-world, one thread, an explicit mark stack (no recursion).  When
 * the stack cannot grow, objects stay marked-but-unscanned and a rescan of
 * the marked objects picks them up (scanning is idempotent). */
#include "collectors/mc.h"

#include "collectors/mark_stack.h"
#include "heap/error.h"
#include "heap/object.h"

typedef struct marker {
  fh_heap *h;
  fwd_tables *t;
  mark_stack stack;
  int overflowed;
  size_t objects;
} marker;

static void push(marker *m, void *obj) {
  if (mark_stack_push(&m->stack, obj) < 0) m->overflowed = 1;
}

static void mark_slot(void **slot, void *ctx) {
  marker *m = ctx;
  void *p = *slot;
  if (!p) return;
  uintptr_t a = (uintptr_t)p;
  fwd_tables *t = m->t;
  if (a - t->begin - FH_HEADER_BYTES < t->old_top - t->begin) {
    /* Only the start bit here: the header (size, live words, type) is read
     * when the object is scanned, after drain() prefetched it. */
    if (fwd_mark_start(t, a - FH_HEADER_BYTES)) return;
    m->objects++;
    push(m, p);
  } else if (space_contains(&m->h->non_moving.space, p)) {
    if (!non_moving_space_mark(&m->h->non_moving, p)) push(m, p);
  }
  /* Anything else is immune or native memory: not collected here. */
}

static void scan(marker *m, void *obj) {
  uint64_t hd = *obj_header(obj);
  fwd_tables *t = m->t;
  uintptr_t start = obj_start(obj);
  if (start - t->begin < t->old_top - t->begin)
    fwd_mark_live(t, start, obj_total_bytes(hdr_payload(hd)));
  const fh_type_info *ti = types_get(&m->h->types, hdr_type(hd));
  if (ti) types_visit_refs(ti, obj, hdr_payload(hd), mark_slot, m);
}

/* Objects popped from the mark stack wait in a small ring while their
 * header is prefetched: the header read was most of marking's time (a
 * cache miss per object), and the ring lets several misses overlap. */
#define PREFETCH_RING 8
static void drain(marker *m) {
  void *ring[PREFETCH_RING];
  unsigned head = 0, count = 0;
  for (;;) {
    void *obj = mark_stack_pop(&m->stack);
    if (obj) {
      __builtin_prefetch(obj_header(obj));
      if (count < PREFETCH_RING) {
        ring[(head + count++) % PREFETCH_RING] = obj;
        continue;
      }
      void *ready = ring[head];
      ring[head] = obj;
      head = (head + 1) % PREFETCH_RING;
      scan(m, ready);
      continue;
    }
    if (!count) break;
    void *ready = ring[head];
    head = (head + 1) % PREFETCH_RING;
    count--;
    scan(m, ready); /* may push more: the loop pops them next */
  }
}

static void scan_if_marked_nm(void *obj, void *ctx) {
  marker *m = ctx;
  if (bitmap_test(&m->h->non_moving.mark_bits, obj_start(obj))) scan(m, obj);
}

static void scan_object_cb(void *obj, void *ctx) { scan(ctx, obj); }

/* Overflow recovery: rescan everything marked until nothing overflows. */
static void recover(marker *m) {
  while (m->overflowed) {
    m->overflowed = 0;
    fwd_tables *t = m->t;
    for (uintptr_t s = bitmap_next_set(&t->mark, t->begin, t->old_top); s;
         s = bitmap_next_set(&t->mark, s + FWD_WORD, t->old_top)) {
      scan(m, obj_from_start(s));
      drain(m);
    }
    m->h->non_moving.space.ops->walk(&m->h->non_moving.space, scan_if_marked_nm, m);
    drain(m);
  }
}

int mc_mark(fh_heap *h, fwd_tables *t, size_t *marked_objects) {
  marker m = {.h = h, .t = t};
  if (mark_stack_init(&m.stack) < 0) {
    fh_error_set("mark-compact: cannot map the mark stack");
    return -1;
  }
  roots_visit(h, mark_slot, &m);
  fh_space *spaces[HEAP_MAX_SPACES];
  unsigned n = heap_spaces(h, spaces);
  for (unsigned i = 0; i < n; i++)
    /* Not the image or zygote space: roots_visit visited the slots of
     * their dirty cards, the only ones that can point out of them, and a
     * full scan of a large image costs tens of ms per pause. */
    if (spaces[i]->kind == SPACE_IMMUNE && spaces[i] != &h->image.space &&
        spaces[i] != &h->zygote.space)
      spaces[i]->ops->walk(spaces[i], scan_object_cb, &m);
  drain(&m);
  recover(&m);
  mark_stack_destroy(&m.stack);
  if (marked_objects) *marked_objects = m.objects;
  return 0;
}
