/* A weak eq?-hash table and a finalized file handle on faultheap.
 *
 * The table maps objects to values without keeping the objects alive.
 * Each bucket is a strong chain of links; each link holds an ephemeron
 * (key = the object, value = the mapped value), so a dead key clears its
 * entry and nothing else.  Buckets are chosen by fh_object_hash, which
 * stays the same however often the object moves: no rehash after a
 * collection.  A "port" owns a file descriptor; a finalizer closes it once
 * the port is unreachable.
 *
 * Built by `make` as build/examples/weak; prints what it checked. */
#include <faultheap.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

enum { BUCKETS = 64 };

typedef struct entry { /* a bucket's chain: strong */
  void *eph;
  struct entry *next;
} entry;
typedef struct port {
  int fd;
} port;
typedef struct thing {
  long n;
} thing;

static uint32_t t_refs, t_entry, t_port, t_thing;

/* table: a reference array of BUCKETS chains.  0, or -1 (out of memory). */
static int table_put(fh_thread *t, void **table, void *key, void *value) {
  size_t b = fh_object_hash(t, key) % BUCKETS;
  fh_push_root(t, (void **)&table); /* allocation may move all three */
  void *eph = fh_ephemeron_new(t, key, value);
  fh_push_root(t, &eph);
  entry *l = eph ? fh_alloc(t, t_entry, sizeof *l) : NULL;
  fh_pop_roots(t, 2);
  if (!l) return -1;
  fh_write_ref(t, l, &l->eph, eph);
  fh_write_ref(t, l, (void **)&l->next, table[b]);
  fh_write_ref(t, table, &table[b], l);
  return 0;
}

static void *table_get(fh_thread *t, void **table, void *key) {
  for (entry *l = table[fh_object_hash(t, key) % BUCKETS]; l; l = l->next)
    if (fh_ephemeron_key(t, l->eph) == key) return fh_ephemeron_value(t, l->eph);
  return NULL;
}

/* Unlink the entries whose keys died (their ephemerons read NULL). */
static size_t table_sweep(fh_thread *t, void **table) {
  size_t removed = 0;
  for (size_t b = 0; b < BUCKETS; b++) {
    entry *prev = NULL;
    for (entry *l = table[b]; l; l = l->next) {
      if (fh_ephemeron_key(t, l->eph)) {
        prev = l;
        continue;
      }
      if (prev) fh_write_ref(t, prev, (void **)&prev->next, l->next);
      else fh_write_ref(t, table, &table[b], l->next);
      removed++;
    }
  }
  return removed;
}

static void *open_port(fh_thread *t, const char *path) {
  port *p = fh_alloc(t, t_port, sizeof *p);
  if (!p) return NULL;
  p->fd = open(path, O_RDONLY);
  /* data is an opaque word: here the descriptor, for the finalizer. */
  if (p->fd < 0 || fh_finalizer_attach(t, p, (void *)(intptr_t)p->fd) < 0) return NULL;
  return p;
}

static int closed;
static void close_ports(fh_thread *t) {
  void *obj, *data;
  while (fh_finalizer_pop(t, &obj, &data)) {
    close((int)(intptr_t)data);
    closed++;
  }
}

int main(void) {
  fh_heap *h = fh_heap_create(NULL);
  if (!h) {
    fprintf(stderr, "fh_heap_create: %s\n", fh_last_error());
    return 1;
  }
  static const uint32_t entry_refs[] = {0, 8};
  t_refs = fh_register_type(h, &(fh_type){.name = "refs", .flags = FH_TYPE_REF_ARRAY});
  t_entry = fh_register_type(
      h, &(fh_type){.name = "entry", .size = sizeof(entry), .nrefs = 2, .ref_offsets = entry_refs});
  t_port = fh_register_type(h, &(fh_type){.name = "port", .size = sizeof(port)});
  t_thing = fh_register_type(h, &(fh_type){.name = "thing", .size = sizeof(thing)});
  fh_thread *t = fh_thread_attach(h);

  void **table = fh_alloc(t, t_refs, BUCKETS * sizeof(void *));
  thing *kept = NULL;
  fh_push_root(t, (void **)&table); /* rooted before the next allocation */
  fh_push_root(t, (void **)&kept);
  kept = fh_alloc(t, t_thing, sizeof *kept);
  kept->n = 42;
  int ok = table_put(t, table, kept, kept) == 0; /* maps kept to itself: still weak */
  for (int i = 0; i < 1000 && ok; i++) {         /* keys nobody else holds */
    thing *k = fh_alloc(t, t_thing, sizeof *k);
    ok = k && (k->n = i, table_put(t, table, k, k) == 0);
  }
  for (int i = 0; i < 100 && ok; i++) ok = open_port(t, "/dev/null") != NULL; /* dropped */
  if (!ok) {
    fprintf(stderr, "setting up: %s\n", fh_last_error());
    return 1;
  }

  fh_collect(t, FH_COLLECT_DEFAULT); /* moves kept; clears the dropped keys */
  fh_gc_wait(h);
  close_ports(t);
  size_t removed = table_sweep(t, table);
  thing *found = table_get(t, table, kept);
  printf("kept found after moving: %s (n = %ld)\n", found == kept ? "yes" : "no",
         found ? found->n : -1L);
  printf("entries of dead keys removed: %zu of 1000\n", removed);
  printf("ports closed by finalizers: %d of 100\n", closed);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return found == kept && removed == 1000 && closed == 100 ? 0 : 1;
}
