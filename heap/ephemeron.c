/* fh_ephemeron_*: the public face of the built-in ephemeron type. */
#include "heap/ephemeron.h"

#include <stddef.h>

#include "collectors/concurrent_mark.h"
#include "heap/error.h"
#include "heap/object.h"
#include "heap/object_check.h"

uint32_t ephemeron_fast_id(fh_heap *h) {
  uint32_t id = atomic_load_explicit(&h->eph_type, memory_order_acquire);
  /* While concurrent marking runs the slow paths log what they return
   * (collectors/concurrent_mark.h): a key read then may be stored where
   * the marker never looks. */
  return id && !h->opt.verify && !atomic_load_explicit(&h->cm_black, memory_order_relaxed)
             ? id
             : FH__NO_EPHEMERONS;
}

/* Make id the heap's ephemeron type and tell every attached thread's
 * inline accessors.  A thread that reads the old value meanwhile takes the
 * slow path, which finds the type by its flag: only slower.  The thread
 * list is stable under world_lock (attach and detach take it too). */
static void publish(fh_heap *h, uint32_t id) {
  atomic_store_explicit(&h->eph_type, id, memory_order_release);
  pthread_mutex_lock(&h->world_lock);
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link)
    atomic_store_explicit(&t->fast.eph_type, ephemeron_fast_id(h), memory_order_relaxed);
  pthread_mutex_unlock(&h->world_lock);
}

/* Registered lazily, not at heap creation: the embedder's first type keeps
 * id 1, and an image's type table (registered first, in its own id order)
 * may contain it. */
uint32_t ephemeron_type(fh_heap *h) {
  uint32_t id = atomic_load_explicit(&h->eph_type, memory_order_acquire);
  if (id) return id;
  static const uint32_t offsets[] = {offsetof(ephemeron, key), offsetof(ephemeron, value)};
  fh_type t = {.name = EPHEMERON_TYPE_NAME,
               .size = sizeof(ephemeron),
               .nrefs = 2,
               .ref_offsets = offsets,
               .flags = TYPE_EPHEMERON};
  /* Registration is idempotent by name: racing first calls get one id. */
  id = types_register(&h->types, &t);
  if (id) publish(h, id);
  else fh_error_prefix("fh_ephemeron_new: cannot register the ephemeron type");
  return id;
}

void ephemeron_adopt_image_type(fh_heap *h) {
  uint32_t id = types_find(&h->types, EPHEMERON_TYPE_NAME);
  if (id) publish(h, id); /* at heap creation: no thread yet */
}

/* eph as an ephemeron of t's heap, or NULL + error naming fn. */
static ephemeron *as_ephemeron(fh_thread *t, const void *eph, const char *fn) {
  if (thread_check(t, fn) < 0) return NULL;
  fh_heap *h = thread_heap(t);
  if (heap_check_object(h, eph, fn) < 0) return NULL;
  /* By the type's flag, not eph_type: an image's ephemerons exist before
   * this heap's first fh_ephemeron_new. */
  uint32_t type = hdr_type(*obj_header(eph));
  const fh_type_info *ti = types_get(&h->types, type);
  if (!ti || !(ti->flags & TYPE_EPHEMERON)) {
    fh_error_set("%s: %p is an object of type %u, not an ephemeron", fn, eph,
                 hdr_type(*obj_header(eph)));
    return NULL;
  }
  return (ephemeron *)eph;
}

/* NULL or an object of t's heap (0), else -1 + error. */
static int check_ref(fh_thread *t, const void *p, const char *fn, const char *what) {
  if (!p || heap_check_object(thread_heap(t), p, fn) == 0) return 0;
  fh_error_prefix(what);
  return -1;
}

void *fh_ephemeron_new(fh_thread *t, void *key, void *value) {
  if (thread_check(t, "fh_ephemeron_new") < 0) return NULL;
  if (check_ref(t, key, "fh_ephemeron_new", "key") < 0 ||
      check_ref(t, value, "fh_ephemeron_new", "value") < 0)
    return NULL;
  if (!key) value = NULL; /* born dead: key and value always agree */
  uint32_t type = ephemeron_type(thread_heap(t));
  if (!type) return NULL;
  /* The allocation may collect and move both. */
  fh_push_root(t, &key);
  fh_push_root(t, &value);
  ephemeron *e = fh_alloc(t, type, sizeof *e);
  fh_pop_roots(t, 2);
  if (!e) return NULL;
  fh_write_ref(t, e, &e->key, key);
  fh_write_ref(t, e, &e->value, value);
  return e;
}

/* The slow paths: what the inline accessors could not recognise (bad
 * input, an image's ephemerons before this heap registered the type,
 * verify=1).  Errors name the public call. */
/* The keep-alive barrier of concurrent marking: an object read out of an
 * ephemeron while marking runs is logged, so it is marked even if its
 * only other holder was weak. */
static void *kept(fh_thread *t, void **slot) {
  void *v = __atomic_load_n(slot, __ATOMIC_RELAXED);
  if (t->ms_black) cmark_satb_log(t, v);
  return v;
}

void *fh_ephemeron_key_slow(fh_thread *t, void *eph) {
  ephemeron *e = as_ephemeron(t, eph, "fh_ephemeron_key");
  return e ? kept(t, &e->key) : NULL;
}

void *fh_ephemeron_value_slow(fh_thread *t, void *eph) {
  ephemeron *e = as_ephemeron(t, eph, "fh_ephemeron_value");
  return e && e->key ? kept(t, &e->value) : NULL;
}

void fh_ephemeron_set_value_slow(fh_thread *t, void *eph, void *value) {
  ephemeron *e = as_ephemeron(t, eph, "fh_ephemeron_set_value");
  if (!e || check_ref(t, value, "fh_ephemeron_set_value", "value") < 0) return;
  if (e->key) fh_write_ref(t, e, &e->value, value); /* cleared: nothing */
}
