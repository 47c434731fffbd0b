/* fhscheme: declarations shared by the interpreter's files. */
#ifndef FHS_SCHEME_H
#define FHS_SCHEME_H
#include <stdio.h>
#include "value.h"

#define STR(v) ((char *)&OBJ(v)[1])   /* string/bytevector bytes */

/* heap.c */
V sym_lookup(const char *s, size_t n);
void sym_insert(V sym);
size_t sym_count(void);
uint64_t obj_hash(V v);
int attach_finalizer(V obj, intptr_t data);
int pop_finalized(V *obj, intptr_t *data);
void collect_now(void);
void add_root(V *slot);
void remove_root(V *slot);
void heap_blocking(int enter);
void heap_init(const char *image); /* image: boot from this heap image, or NULL */
int heap_marks_concurrently(void); /* a marker thread stops the world by itself */
void sym_init(void);               /* a fresh symbol table (not booting from an image) */
V sym_table(void);
V sym_entry_key(V entry); /* a symbol table entry's symbol, 0 once collected */
int heap_prefork(void);   /* fh_prefork; -1 after printing why */
void heap_postfork(int child);
void sym_table_set(V t);
size_t heap_image_roots(V **roots);
int heap_save_image(const char *path, V *roots, size_t n);
void heap_attach_thread(void);
/* The same for the interpreter on driver.c's own stack, whose top is base:
 * the conservative scan's upper end. */
void heap_attach_thread_stack(void *base);
void heap_detach_thread(void);
void heap_fini(void);
void heap_report(FILE *f);

/* scheme.c */
V cons(V a, V d);
_Noreturn void oom(void);
#endif
