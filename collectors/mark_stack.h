/* An explicit, growable stack of objects still to scan.  Tracing never
 * recurses on the C stack, so a ten-million-element list is just a loop. */
#ifndef FH_MARK_STACK_H_
#define FH_MARK_STACK_H_

#include <stddef.h>

typedef struct mark_stack {
  void **items;
  size_t n, cap;
  size_t map_bytes;
} mark_stack;

int mark_stack_init(mark_stack *s);
void mark_stack_destroy(mark_stack *s);
/* Grow by doubling (mremap); -1 when memory is exhausted. */
int mark_stack_grow(mark_stack *s);
/* An empty stack gives back what it grew by (the concurrent marker does it
 * before the remark, so the pause does not unmap a large stack). */
void mark_stack_trim(mark_stack *s);

static inline int mark_stack_push(mark_stack *s, void *obj) {
  if (s->n == s->cap && mark_stack_grow(s) < 0) return -1;
  s->items[s->n++] = obj;
  return 0;
}
static inline void *mark_stack_pop(mark_stack *s) { return s->n ? s->items[--s->n] : NULL; }

#endif
