#include "collectors/mark_stack.h"

#include <string.h>
#include <sys/mman.h>

#include "heap/sys.h"
#include "spaces/reserve.h"

#define MARK_STACK_INITIAL_BYTES ((size_t)64 << 10)

int mark_stack_init(mark_stack *s) {
  memset(s, 0, sizeof *s);
  void *p = reserve_map_table(MARK_STACK_INITIAL_BYTES);
  if (!p) return -1;
  s->items = p;
  s->map_bytes = MARK_STACK_INITIAL_BYTES;
  s->cap = s->map_bytes / sizeof(void *);
  return 0;
}

void mark_stack_destroy(mark_stack *s) {
  if (s->items) sys_munmap(s->items, s->map_bytes);
  memset(s, 0, sizeof *s);
}

int mark_stack_grow(mark_stack *s) {
  size_t bytes = s->map_bytes * 2;
  void *p = sys_mremap(s->items, s->map_bytes, bytes, MREMAP_MAYMOVE, NULL);
  if (p == MAP_FAILED) return -1;
  s->items = p;
  s->map_bytes = bytes;
  s->cap = bytes / sizeof(void *);
  return 0;
}

void mark_stack_trim(mark_stack *s) {
  if (s->n || s->map_bytes <= MARK_STACK_INITIAL_BYTES) return;
  sys_munmap((char *)s->items + MARK_STACK_INITIAL_BYTES, s->map_bytes - MARK_STACK_INITIAL_BYTES);
  s->map_bytes = MARK_STACK_INITIAL_BYTES;
  s->cap = s->map_bytes / sizeof(void *);
}
