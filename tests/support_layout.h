/* Random layouts of a fake moving space for the forwarding tests
 * (test_forwarding.c, test_pinned_ranges.c): small and page-spanning
 * objects, long dead gaps (empty chunks and pages), dense runs, in an
 * mmap'd range with a "from-space" copy of it and a type registry.  No
 * heap. */
#ifndef FH_TEST_SUPPORT_LAYOUT_H_
#define FH_TEST_SUPPORT_LAYOUT_H_

#include <stddef.h>
#include <stdint.h>

#include "heap/types.h"

#define SPACE ((size_t)8 << 20)

typedef struct layout {
  uintptr_t base;        /* the fake space */
  uint8_t *from;         /* its from-space copy */
  size_t n;              /* objects */
  uintptr_t *start;      /* object starts */
  size_t *bytes;         /* total bytes */
  int *live;
  uintptr_t top;
  fh_type_registry types;
  uint32_t refs, raw;    /* type ids: void *[] and bytes */
  uint32_t traced;       /* refs in every word but the last, found by a trace
                            function that first reads that last word */
} layout;

/* The traced type keeps the number of its reference words in its last
 * word (tagged so it never looks like a reference): a trace function may
 * read any word of its object, and page_build calls it for every
 * destination page the object covers, so the from-space ledger must keep
 * all of a page-spanning traced object until its last page is built. */
uint64_t traced_tag(size_t payload);
/* Set when a trace function found its tag gone (its page went back too
 * early). */
extern int traced_tag_bad;

uint64_t next_rand(void);
/* Build a random layout.  style 0: mostly small; 1: with many large objects
 * and long dead runs.  live_pct: chance an object is live. */
void make_layout(layout *L, int style, unsigned live_pct);
void free_layout(layout *L);

#endif
