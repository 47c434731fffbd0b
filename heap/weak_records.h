/* A table of objects the heap holds weakly, each with one word of data the
 * collector never traces, kept in native memory outside the heap.
 *
 * The heap has three: finalization records (fh_finalizer_attach; data is
 * the embedder's word), the finalization queue (objects found unreachable,
 * held strongly until fh_finalizer_pop: roots_visit visits it), and the
 * addresses that hashed objects moved away from (heap/identity_hash.c).
 * The collectors never look inside: the tracing layer (collectors/trace.h)
 * decides which records' objects died and updates the others' slots.
 *
 * Mutators add under the lock; collectors read and rewrite with the world
 * stopped (no mutator is then inside an add: adds happen at no safepoint). */
#ifndef FH_WEAK_RECORDS_H_
#define FH_WEAK_RECORDS_H_

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct weak_record {
  void *obj;     /* a payload pointer; a collector may rewrite it */
  uint64_t data; /* never traced */
} weak_record;

typedef struct weak_records {
  pthread_mutex_t lock;
  weak_record *items;
  size_t n, cap;
} weak_records;

void weak_records_init(weak_records *r);
void weak_records_destroy(weak_records *r);
/* Append (lock taken inside).  0, or -1 + fh_last_error() (no memory; the
 * table is unchanged). */
int weak_records_add(weak_records *r, void *obj, uint64_t data, const char *who);
/* Room for `more` appends without allocating (a collector reserves before
 * it starts moving, then appends with weak_records_push).  0 or -1 + error. */
int weak_records_reserve(weak_records *r, size_t more);
static inline void weak_records_push(weak_records *r, void *obj, uint64_t data) {
  r->items[r->n++] = (weak_record){obj, data};
}
/* Remove and return the last record (lock taken inside); 0 when empty. */
int weak_records_pop(weak_records *r, weak_record *out);
/* Keep the records for which keep() returns nonzero, in order (world
 * stopped or lock held). */
void weak_records_filter(weak_records *r, int (*keep)(weak_record *rec, void *ctx), void *ctx);

#endif
