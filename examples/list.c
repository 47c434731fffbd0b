/* The README's example: a linked list that survives collections. */
#include <faultheap.h>
#include <stdio.h>

typedef struct node {
  struct node *next; /* a reference: offset 0 */
  long value;
} node;

int main(void) {
  fh_options o;
  fh_options_init(&o);
  if (fh_options_parse(&o, "heap_max=64M,collector=semispace,verify=1") < 0) {
    fprintf(stderr, "options: %s\n", fh_last_error());
    return 1;
  }
  fh_heap *h = fh_heap_create(&o);
  if (!h) {
    fprintf(stderr, "heap: %s\n", fh_last_error());
    return 1;
  }
  static const uint32_t node_refs[] = {0};
  uint32_t node_type = fh_register_type(
      h, &(fh_type){.name = "node", .size = sizeof(node), .nrefs = 1, .ref_offsets = node_refs});
  fh_thread *t = fh_thread_attach(h);

  /* Any allocation may move objects: keep the list head in a root slot and
   * re-read it after every fh_alloc. */
  node *head = NULL;
  fh_push_root(t, (void **)&head);
  for (long i = 0; i < 1000000; i++) {
    node *n = fh_alloc(t, node_type, sizeof(node));
    if (!n) {
      fprintf(stderr, "alloc: %s\n", fh_last_error());
      return 1;
    }
    n->value = i;
    fh_write_ref(t, n, (void **)&n->next, head);
    head = n;
    if (i % 4 == 0) head = head->next; /* drop every fourth node: garbage */
  }
  fh_collect(t, FH_COLLECT_DEFAULT);

  long count = 0, sum = 0;
  for (node *n = head; n; n = n->next) count++, sum += n->value;
  printf("%ld nodes, sum %ld\n", count, sum);
  fh_dump(h, stdout);

  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}
