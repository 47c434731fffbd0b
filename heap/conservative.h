/* Conservative stack roots (stack_roots=conservative).
 *
 * At a collection, every attached thread's stack, from its stack pointer
 * to its base, and its callee-saved registers are read word by word; a
 * word that points into an object of a collectable space (its header, its
 * payload or anywhere inside) keeps that object alive and pins it for the
 * collection (heap/pins.h).  Such words are never rewritten.
 *
 * A thread's registers and the top of its stack are saved each time it
 * parks at a safepoint or blocks (fh_enter_blocking, the internal waits):
 * conservative_save spills the callee-saved registers onto the stack
 * (__builtin_unwind_init) and copies the topmost CONS_WINDOW bytes of the
 * stack, those frames included, into the thread.  A blocked thread goes on
 * running native code below that point and may reuse those frames, but no
 * heap pointer it holds can be anywhere but in that copy or in the frames
 * above, which it cannot leave while blocked without fh_leave_blocking.
 * The collecting thread saves itself the same way just before the scan. */
#ifndef FH_CONSERVATIVE_H_
#define FH_CONSERVATIVE_H_

#include <stdint.h>

#include "heap/pins.h"

#define CONS_WINDOW 4096u /* bytes of the stack's top copied at each save */

typedef struct cons_stack {
  uintptr_t base;  /* highest address of the thread's stack (exclusive) */
  uintptr_t live;  /* [live, base): frames scanned in place */
  uintptr_t entry; /* inside gc_run: the collector's own frames lie below it (0: not inside) */
  size_t nsaved;   /* words of saved[] in use */
  uintptr_t saved[CONS_WINDOW / sizeof(uintptr_t)]; /* [sp, live) as it was */
} cons_stack;

/* At attach, on the attaching thread: its stack record (*out NULL when
 * the heap's stacks are precise), the stack's base from the thread
 * library unless stack_base is given (fh_thread_attach_stack).  0, or -1 +
 * fh_last_error(). */
int conservative_stack_new(fh_heap *h, uintptr_t stack_base, cons_stack **out);
/* Save the calling thread's registers and stack top (it is t's owner):
 * from the frame that calls it, or from the entry boundary when t is
 * inside a collection it runs or waits for (conservative_enter). */
void conservative_save(fh_thread *t);
/* At the entry of a collection on t's own thread (gc_run), whose caller
 * has spilled every callee-saved register into its frame
 * (__builtin_unwind_init): the stack from the caller's frame up is what
 * this thread's scan reads from then on, not the collector's own frames
 * below it.  Returns the boundary to restore with conservative_leave. */
uintptr_t conservative_enter(fh_thread *t);
void conservative_leave(fh_thread *t, uintptr_t prev);
/* Zero some dead stack below the caller (allocation slow paths, with
 * stack_roots=conservative), so stale words there do not pin and retain
 * objects later (see conservative.c). */
void conservative_clear_below(void);
/* pins_gather's part: add every object a stack word points into. */
int conservative_scan(fh_heap *h, fh_thread *self, pin_set *s);
/* The object (start) of a collectable space containing address a, or 0. */
uintptr_t conservative_object_at(fh_heap *h, uintptr_t a);

#endif
