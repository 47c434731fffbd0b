/* The built-in ephemeron object (fh_ephemeron_new): a 16-byte payload of
 * two reference slots, key then value.  A cleared (dead) ephemeron has a
 * NULL key; its value is NULL too.  Collectors clear ephemerons whose keys
 * die (collectors/trace.h); nothing else ever writes a NULL key. */
#ifndef FH_EPHEMERON_H_
#define FH_EPHEMERON_H_

#include "heap/heap.h"

typedef struct ephemeron {
  void *key;
  void *value;
} ephemeron;

#define EPHEMERON_TYPE_NAME "faultheap.ephemeron"

/* The type's id in h, registered on first use (an image may have
 * registered it already, under the same name and layout); 0 + error. */
uint32_t ephemeron_type(fh_heap *h);
/* After an image's types are registered: if they hold the ephemeron type,
 * use its id (the inline accessors then recognise the image's ephemerons). */
void ephemeron_adopt_image_type(fh_heap *h);
/* What a thread's inline accessors compare headers with
 * (fh__thread_fast.eph_type): the id, or FH__NO_EPHEMERONS before it is
 * registered and always under verify=1. */
uint32_t ephemeron_fast_id(fh_heap *h);

#endif
