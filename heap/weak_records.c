#include "heap/weak_records.h"

#include <stdlib.h>

#include "heap/error.h"

void weak_records_init(weak_records *r) {
  *r = (weak_records){0};
  pthread_mutex_init(&r->lock, NULL);
}

void weak_records_destroy(weak_records *r) {
  free(r->items);
  r->items = NULL;
  r->n = r->cap = 0;
  pthread_mutex_destroy(&r->lock);
}

/* Lock held (or world stopped). */
static int grow_to(weak_records *r, size_t need) {
  if (need <= r->cap) return 0;
  size_t cap = r->cap ? r->cap : 64;
  while (cap < need) cap *= 2;
  weak_record *items = realloc(r->items, cap * sizeof *items);
  if (!items) return -1;
  r->items = items;
  r->cap = cap;
  return 0;
}

int weak_records_add(weak_records *r, void *obj, uint64_t data, const char *who) {
  pthread_mutex_lock(&r->lock);
  int rc = grow_to(r, r->n + 1);
  if (rc == 0) weak_records_push(r, obj, data);
  pthread_mutex_unlock(&r->lock);
  if (rc < 0) fh_error_set("%s: out of memory for its record (%zu held)", who, r->n);
  return rc;
}

int weak_records_reserve(weak_records *r, size_t more) {
  if (grow_to(r, r->n + more) == 0) return 0;
  fh_error_set("out of memory reserving %zu weak records (%zu held)", more, r->n);
  return -1;
}

int weak_records_pop(weak_records *r, weak_record *out) {
  pthread_mutex_lock(&r->lock);
  int got = r->n > 0;
  if (got) *out = r->items[--r->n];
  pthread_mutex_unlock(&r->lock);
  return got;
}

void weak_records_filter(weak_records *r, int (*keep)(weak_record *rec, void *ctx), void *ctx) {
  size_t j = 0;
  for (size_t i = 0; i < r->n; i++)
    if (keep(&r->items[i], ctx)) r->items[j++] = r->items[i];
  r->n = j;
}
