/* Cheap plausibility checks for object pointers handed to the public API
 * (fh_critical_begin/end, fh_object_size/type, fh_image_save roots, the
 * write barrier's slow path).  A range test against the used part of each
 * space and a look at the header: enough to refuse pointers to the stack,
 * malloc, static data or unused parts of the reservation without touching
 * memory that may not be mapped.  A stale pointer to a dead object inside a
 * space can still pass; only verify=1 finds those. */
#ifndef FH_OBJECT_CHECK_H_
#define FH_OBJECT_CHECK_H_

#include "heap/heap.h"

/* 1 when obj looks like the payload of an object of h (the world need not
 * be stopped; the caller keeps it from moving, as any mutator does). */
int heap_object_plausible(fh_heap *h, const void *obj);
/* 0, or -1 with "<fn>: <obj> is not an object of this heap ..." set. */
int heap_check_object(fh_heap *h, const void *obj, const char *fn);
/* heap/fork.c: the heap (of the process-wide list) whose reservation holds
 * p, or NULL. */
fh_heap *heap_containing(const void *p);
/* heap/fork.c: rewrite h's windows for fh_object_type/size's inline path
 * (clear: none, every address of h goes out of line).  Only where no other
 * thread can be changing h's spaces or windows: zygote compaction clears
 * them before it freezes the non-moving space and refreshes them after. */
void heap_windows_refresh(fh_heap *h, int clear);

#endif
