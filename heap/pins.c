/* fh_pin / fh_unpin and each collection's pin set (heap/pins.h). */
#include "heap/pins.h"

#include <stdint.h>
#include <stdlib.h>

#include "heap/addr_sort.h"
#include "heap/conservative.h"
#include "heap/error.h"
#include "heap/heap.h"
#include "heap/object_check.h"

/* The per-thread index: linear probing over a power-of-two table at
 * most half full, keyed by the object's address (pinned objects never
 * move, so keys stay valid). */
static size_t pin_hash(const void *obj, size_t cap) {
  uint64_t x = (uint64_t)(uintptr_t)obj >> 4;
  x *= 0x9E3779B97F4A7C15ull;
  return (size_t)(x >> 32) & (cap - 1);
}

/* The slot of obj in the index, or of the empty slot where it would go. */
static size_t pin_slot(const fh_thread *t, const void *obj) {
  size_t i = pin_hash(obj, t->pin_index_cap);
  while (t->pin_index[i] && t->pins[t->pin_index[i] - 1] != obj) i = (i + 1) & (t->pin_index_cap - 1);
  return i;
}

static int pin_index_grow(fh_thread *t, size_t cap) {
  uint32_t *idx = calloc(cap, sizeof *idx);
  if (!idx) return -1;
  free(t->pin_index);
  t->pin_index = idx;
  t->pin_index_cap = cap;
  for (size_t k = 0; k < t->npins; k++) t->pin_index[pin_slot(t, t->pins[k])] = (uint32_t)k + 1;
  return 0;
}

/* Room for one more distinct object in the records and the index. */
static int pins_reserve(fh_thread *t) {
  if (t->npins == t->pins_cap) {
    size_t cap = t->pins_cap ? t->pins_cap * 2 : 16;
    if (cap > UINT32_MAX - 1) return -1;
    void **grown = realloc(t->pins, cap * sizeof *grown);
    if (!grown) return -1;
    t->pins = grown;
    uint32_t *counts = realloc(t->pin_counts, cap * sizeof *counts);
    if (!counts) return -1; /* pins_cap unchanged: the larger t->pins is harmless */
    t->pin_counts = counts;
    t->pins_cap = cap;
  }
  if ((t->npins + 1) * 2 > t->pin_index_cap &&
      pin_index_grow(t, t->pin_index_cap ? t->pin_index_cap * 2 : 32) < 0)
    return -1;
  return 0;
}

int fh_pin(fh_thread *t, void *obj) {
  if (thread_check(t, "fh_pin") < 0) return -1;
  if (!obj) {
    fh_error_set("fh_pin: object is NULL");
    return -1;
  }
  fh_heap *h = t->heap;
  if (heap_check_object(h, obj, "fh_pin") < 0) return -1;
  if (pins_reserve(t) < 0) {
    fh_error_set("fh_pin: out of memory (this thread holds %zu pinned objects)", t->npins);
    return -1;
  }
  /* This thread is running, so no collection can move obj before the
   * record is in place: the next pause sees it. */
  size_t slot = pin_slot(t, obj);
  if (t->pin_index[slot]) {
    uint32_t *c = &t->pin_counts[t->pin_index[slot] - 1];
    if (*c == UINT32_MAX) {
      fh_error_set("fh_pin: %p is already pinned %u times", obj, *c);
      return -1;
    }
    ++*c;
  } else {
    t->pins[t->npins] = obj;
    t->pin_counts[t->npins] = 1;
    t->pin_index[slot] = (uint32_t)++t->npins;
  }
  /* Fault every page of the object in now, at its current address (during
   * a concurrent compaction's phase its page may not be built yet); the
   * collectors never unmap a pinned object's pages afterwards. */
  volatile const char *p = obj;
  size_t n = hdr_payload(*obj_header(obj));
  for (size_t off = 0; off < n; off += 4096) (void)p[off];
  if (n) (void)p[n - 1];
  return 0;
}

/* Empty slot i of the index, moving later entries of its probe run back
 * (no tombstones). */
static void pin_index_remove(fh_thread *t, size_t i) {
  size_t mask = t->pin_index_cap - 1;
  for (size_t j = (i + 1) & mask; t->pin_index[j]; j = (j + 1) & mask) {
    size_t home = pin_hash(t->pins[t->pin_index[j] - 1], t->pin_index_cap);
    /* j's entry may move to i when its home is not in (i, j], cyclically */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      t->pin_index[i] = t->pin_index[j];
      i = j;
    }
  }
  t->pin_index[i] = 0;
}

void fh_unpin(fh_thread *t, void *obj) {
  if (thread_check(t, "fh_unpin") < 0) return;
  size_t slot = t->pin_index_cap ? pin_slot(t, obj) : 0;
  if (!t->pin_index_cap || !t->pin_index[slot]) {
    fh_error_set("fh_unpin: %p is not pinned by this thread (%zu objects pinned)", obj, t->npins);
    return;
  }
  size_t k = t->pin_index[slot] - 1;
  if (--t->pin_counts[k]) return;
  pin_index_remove(t, slot);
  size_t last = --t->npins;
  if (k != last) { /* the last record takes k's place */
    t->pins[k] = t->pins[last];
    t->pin_counts[k] = t->pin_counts[last];
    t->pin_index[pin_slot(t, t->pins[k])] = (uint32_t)k + 1;
  }
}

void pins_thread_drop(fh_thread *t) {
  free(t->pins);
  free(t->pin_counts);
  free(t->pin_index);
  t->pins = NULL;
  t->pin_counts = NULL;
  t->pin_index = NULL;
  t->npins = t->pins_cap = t->pin_index_cap = 0;
}

int pin_set_add(pin_set *s, uintptr_t start) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    uintptr_t *grown = realloc(s->starts, cap * sizeof *grown);
    if (!grown) {
      fh_error_set("collection: out of memory for the set of %zu pinned objects", s->n);
      return -1;
    }
    s->starts = grown;
    s->cap = cap;
  }
  s->starts[s->n++] = start;
  return 0;
}

/* Sort starts[from, n) and drop repeats there; returns the new n. */
static size_t sort_unique(uintptr_t *v, size_t from, size_t n) {
  if (n - from > 1) (void)addr_sort(v + from, n - from); /* qsort without scratch memory */
  size_t out = from;
  for (size_t i = from; i < n; i++)
    if (out == from || v[out - 1] != v[i]) v[out++] = v[i];
  return out;
}

/* Image and zygote objects never move nor die: no need to pin them. */
static int collectable(fh_heap *h, uintptr_t start) {
  const void *p = (const void *)start;
  return space_contains(&h->bump[0].space, p) || space_contains(&h->bump[1].space, p) ||
         space_contains(&h->non_moving.space, p) || los_contains(&h->los, p) ||
         (h->has_malloc_spaces &&
          (space_contains(&h->malloc[0].space, p) || space_contains(&h->malloc[1].space, p)));
}

int pins_gather(fh_heap *h, fh_thread *self) {
  pin_set *s = &h->pins;
  s->n = s->explicit_objects = s->conservative_objects = s->words_scanned = 0;
  s->scan_ns = 0;
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link) {
    for (size_t i = 0; i < t->npins; i++) {
      uintptr_t start = (uintptr_t)obj_header(t->pins[i]);
      if (collectable(h, start) && pin_set_add(s, start) < 0) return -1;
    }
  }
  s->n = s->explicit_objects = sort_unique(s->starts, 0, s->n);
  if (h->opt.stack_roots == FH_STACK_ROOTS_CONSERVATIVE) {
    uint64_t t0 = heap_now_ns();
    size_t from = s->n;
    if (conservative_scan(h, self, s) < 0) return -1;
    s->n = sort_unique(s->starts, from, s->n);
    s->conservative_objects = s->n - from;
    s->n = sort_unique(s->starts, 0, s->n);
    s->scan_ns = heap_now_ns() - t0;
  }
  s->gathered = 1;
  return 0;
}

void pins_release(fh_heap *h) {
  h->pins.n = 0;
  h->pins.gathered = 0;
}

void pins_account(fh_heap *h) {
  pin_set *s = &h->pins;
  s->last_pinned = s->n;
  s->last_conservative = s->conservative_objects;
  s->words_total += s->words_scanned;
  s->scan_ns_total += s->scan_ns;
  if (s->scan_ns > s->scan_ns_max) s->scan_ns_max = s->scan_ns;
}

void pins_visit_roots(fh_heap *h, fh_visit_fn visit, void *ctx) {
  const pin_set *s = &h->pins;
  if (!s->gathered) return;
  for (size_t i = 0; i < s->n; i++) {
    /* A scratch slot: the pin's address is the object's for the whole
     * collection, whatever the collector writes back. */
    void *obj = (void *)(s->starts[i] + FH_HEADER_BYTES), *slot = obj;
    visit(&slot, ctx);
    if (h->opt.verify && slot != obj) {
      fprintf(stderr, "faultheap verify: a collection moved the pinned object %p to %p\n", obj,
              slot);
      abort();
    }
  }
}

void pins_destroy(fh_heap *h) {
  free(h->pins.starts);
  free(h->pins.seen);
  h->pins = (pin_set){0};
}
