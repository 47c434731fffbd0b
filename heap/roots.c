/* Root slots: global slots registered by the embedder, each thread's root
 * stack (fh_push_root), and the embedder's scanner callback. */
#include <stdlib.h>

#include "heap/error.h"
#include "heap/heap.h"
#include "heap/image_load.h"
#include "heap/zygote.h"

void fh_root_add(fh_heap *h, void **slot) {
  if (!h || !slot) {
    fh_error_set("fh_root_add: %s is NULL", h ? "slot" : "heap");
    return;
  }
  pthread_mutex_lock(&h->roots_lock);
  if (h->nglobal_roots == h->global_roots_cap) {
    size_t cap = h->global_roots_cap ? h->global_roots_cap * 2 : 64;
    void ***grown = realloc(h->global_roots, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&h->roots_lock);
      fh_error_set("fh_root_add: out of memory");
      return;
    }
    h->global_roots = grown;
    h->global_roots_cap = cap;
  }
  h->global_roots[h->nglobal_roots++] = slot;
  pthread_mutex_unlock(&h->roots_lock);
}

void fh_root_remove(fh_heap *h, void **slot) {
  if (!h || !slot) {
    fh_error_set("fh_root_remove: %s is NULL", h ? "slot" : "heap");
    return;
  }
  pthread_mutex_lock(&h->roots_lock);
  size_t i = h->nglobal_roots;
  while (i-- > 0)
    if (h->global_roots[i] == slot) break;
  if (i < h->nglobal_roots)
    h->global_roots[i] = h->global_roots[--h->nglobal_roots];
  else
    fh_error_set("fh_root_remove: slot %p was not registered", (void *)slot);
  pthread_mutex_unlock(&h->roots_lock);
}

void fh_set_root_scanner(fh_heap *h, fh_root_scanner scan, void *user) {
  if (!h) { fh_error_set("fh_set_root_scanner: heap is NULL"); return; }
  pthread_mutex_lock(&h->roots_lock);
  /* Two subsystems each setting "the" scanner would otherwise lose one's
   * roots without a word: the second is refused. */
  fh_root_scanner old = h->scanner;
  void *old_user = h->scanner_user;
  int taken = scan && old && (old != scan || old_user != user);
  if (!taken) {
    h->scanner = scan;
    h->scanner_user = user;
  }
  pthread_mutex_unlock(&h->roots_lock);
  if (taken)
    fh_error_set("fh_set_root_scanner: a root scanner (%p, user %p) is already set; remove it "
                 "with fh_set_root_scanner(h, NULL, NULL) first", (void *)(uintptr_t)old,
                 old_user);
}

void roots_visit(fh_heap *h, fh_visit_fn visit, void *ctx) {
  pthread_mutex_lock(&h->roots_lock);
  for (size_t i = 0; i < h->nglobal_roots; i++) visit(h->global_roots[i], ctx);
  fh_root_scanner scan = h->scanner;
  void *user = h->scanner_user;
  pthread_mutex_unlock(&h->roots_lock);
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link)
    for (void ***s = t->fast.roots_base; s < t->fast.roots_top; s++) visit(*s, ctx);
  if (scan) scan(visit, ctx, user);
  pins_visit_roots(h, visit, ctx);
  /* Objects queued for finalization live until fh_finalizer_pop. */
  for (size_t i = 0; i < h->fin_queue.n; i++) visit(&h->fin_queue.items[i].obj, ctx);
  /* References out of the image and zygote spaces: slots in their dirty
   * cards. */
  image_visit_dirty_refs(h, visit, ctx);
  zygote_visit_dirty_refs(h, visit, ctx);
}
