/* fhscheme: the allocation shim over faultheap (or Boehm GC with FHS_BDW),
 * the weak symbol table, identity hashes, finalizers. */
#include "scheme.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/mman.h>

#ifdef FHS_BDW
#define GC_THREADS 1
#include <gc.h>

void *alloc_refs(size_t n) {
  void *p = GC_MALLOC(n * sizeof(V));
  if (!p) oom();
  return p;
}
void *alloc_nonmoving(int kind, size_t n) {
  return kind == NM_REFS || kind == NM_PAIR ? alloc_refs(n) : alloc_bytes(n * sizeof(V));
}
void *alloc_bytes(size_t n) {
  void *p = GC_MALLOC_ATOMIC(n ? n : 1);
  if (!p) oom();
  memset(p, 0, n);
  return p;
}
void *alloc_pair(void) {
  void *p = GC_MALLOC(2 * sizeof(V));
  if (!p) oom();
  return p;
}
void *alloc_flo(void) {
  void *p = GC_MALLOC_ATOMIC(sizeof(double));
  if (!p) oom();
  return p;
}

/* Boehm: symbols are kept in a strong table (no ephemerons here), and an
 * object's address is its identity (nothing moves). */
static V *symtab;
static size_t symtab_n, symtab_cap;
V sym_lookup(const char *s, size_t n) {
  for (size_t i = 0; i < symtab_n; i++) {
    V str = OBJ(symtab[i])[1];
    if (LEN(str) == n && memcmp(STR(str), s, n) == 0) return symtab[i];
  }
  return 0;
}
void sym_insert(V sym) {
  if (symtab_n == symtab_cap) {
    symtab_cap = symtab_cap ? symtab_cap * 2 : 1024;
    V *nt = GC_MALLOC(symtab_cap * sizeof(V));
    if (symtab_n) memcpy(nt, symtab, symtab_n * sizeof(V));
    symtab = nt;
  }
  symtab[symtab_n++] = sym;
}
size_t sym_count(void) { return symtab_n; }
uint64_t obj_hash(V v) { return (uint64_t)(v & ~(V)7) * 0x9E3779B97F4A7C15ull; }

static void bdw_event(GC_EventType e);
static V *fin_pending; /* objects whose finalizer ran: (obj . data) pairs */
static void bdw_fin(void *obj, void *data) {
  V p = cons((V)obj, FIX((intptr_t)data));
  fin_pending[0] = cons(p, fin_pending[0]);
}
int attach_finalizer(V obj, intptr_t data) {
  GC_register_finalizer_no_order((void *)(obj & ~(V)7), bdw_fin, (void *)data, NULL, NULL);
  return 0;
}
int pop_finalized(V *obj, intptr_t *data) {
  GC_invoke_finalizers();
  if (fin_pending[0] == NIL) return 0;
  V p = CAR(fin_pending[0]);
  fin_pending[0] = CDR(fin_pending[0]);
  *obj = CAR(p);
  *data = FIXV(CDR(p));
  return 1;
}
void collect_now(void) { GC_gcollect(); }
void add_root(V *slot) { GC_add_roots(slot, slot + 1); }
void remove_root(V *slot) { GC_remove_roots(slot, slot + 1); }
void heap_init(const char *image) {
  if (image) {
    fprintf(stderr, "fhscheme: heap images need the faultheap build\n");
    exit(2);
  }
  GC_INIT();
  GC_set_on_collection_event(bdw_event);
  GC_allow_register_threads();
  GC_set_finalize_on_demand(1);
  fin_pending = GC_MALLOC_UNCOLLECTABLE(sizeof(V));
  fin_pending[0] = NIL;
}
int heap_marks_concurrently(void) { return 0; } /* Boehm GC marks in the allocating thread */
void heap_attach_thread(void) {
  struct GC_stack_base sb;
  GC_get_stack_base(&sb);
  GC_register_my_thread(&sb);
}
void heap_detach_thread(void) { GC_unregister_my_thread(); }
void heap_attach_thread_stack(void *base) { (void)base; heap_attach_thread(); } /* unused */
void heap_blocking(int enter) { (void)enter; }
void heap_fini(void) {}
/* Pauses: from stopping the world to restarting it (Boehm's collection
 * events; the callback runs under Boehm's lock and must not allocate). */
static double bdw_pause_start, bdw_pause_total, bdw_pause_max;
static unsigned long bdw_collections;
static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
static void bdw_event(GC_EventType e) {
  if (e == GC_EVENT_START) bdw_collections++;
  else if (e == GC_EVENT_PRE_STOP_WORLD) bdw_pause_start = mono_ms();
  else if (e == GC_EVENT_POST_START_WORLD && bdw_pause_start > 0) {
    double p = mono_ms() - bdw_pause_start;
    bdw_pause_total += p;
    if (p > bdw_pause_max) bdw_pause_max = p;
    bdw_pause_start = 0;
  }
}
void heap_report(FILE *f) {
  fprintf(f, "bdw: %lu collections, pauses %.1f ms total, %.2f ms max, heap %zu MiB\n", bdw_collections,
          bdw_pause_total, bdw_pause_max, (size_t)GC_get_heap_size() >> 20);
}
void sym_init(void) {}
V sym_entry_key(V entry) { return entry; }
int heap_prefork(void) {
  fprintf(stderr, "fhscheme: --prefork needs the faultheap build\n");
  return -1;
}
void heap_postfork(int child) { (void)child; }
V sym_table(void) { return 0; }
void sym_table_set(V t) { (void)t; }
size_t heap_image_roots(V **roots) { *roots = NULL; return 0; }
int heap_save_image(const char *path, V *roots, size_t n) {
  (void)path; (void)roots; (void)n;
  fprintf(stderr, "fhscheme: heap images need the faultheap build\n");
  return -1;
}

#else

/* jemalloc (faultheap's malloc, and the process's) reads this at its first
 * call.  One automatic arena: the interpreter's own mallocs are few (ports,
 * thread records), and the arena a second thread would get costs ~0.3 MiB
 * of resident metadata and slabs in every process; the heap's malloc
 * spaces use arenas of their own, unaffected.  Thread caches keep freed
 * blocks of up to 1 KiB (jemalloc's default: 32 KiB): the heap's own
 * mallocs and frees of larger blocks (tables, records) otherwise stay
 * cached, resident, in every tcache (~0.5 MiB of tcache_bytes at the end
 * of a small program); the suite's small programs peaked 0.1-0.18 MiB
 * lower (medians of 5), with the same CPU time. */
__attribute__((visibility("default"))) const char *malloc_conf = "narenas:1,tcache_max:1024";

fh_heap *H;
_Thread_local fh_thread *T;
static uint32_t ty_refs, ty_bytes, ty_pair, ty_flo;

static void *chk(void *p) {
  if (!p) oom();
  return p;
}
void *alloc_refs(size_t n) { return chk(fh_alloc(T, ty_refs, n * sizeof(V))); }
void *alloc_nonmoving(int kind, size_t n) {
  static const int dummy = 0;
  (void)dummy;
  uint32_t ty = kind == NM_REFS ? ty_refs : kind == NM_BYTES ? ty_bytes : kind == NM_PAIR ? ty_pair : ty_flo;
  return chk(fh_alloc_nonmoving(T, ty, n * sizeof(V)));
}
void *alloc_bytes(size_t n) { return chk(fh_alloc(T, ty_bytes, n)); }
void *alloc_pair(void) { return chk(fh_alloc(T, ty_pair, 2 * sizeof(V))); }
void *alloc_flo(void) { return chk(fh_alloc(T, ty_flo, sizeof(double))); }

/* The symbol table: a heap vector of buckets, each a list of ephemerons
 * whose key is the symbol (value NULL: a weak reference).  Symbols are
 * allocated non-moving, so compiled code may hold them (and their global
 * value cells) directly; a symbol that no code, datum or variable holds is
 * collected and its entry swept out on the next insert into its bucket. */
enum { SYM_BUCKETS = 4096 };
static V symtab; /* a global root */

static size_t str_hash(const char *s, size_t n) {
  size_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}
V sym_lookup(const char *s, size_t n) {
  V b = OBJ(symtab)[1 + str_hash(s, n) % SYM_BUCKETS];
  for (; b != NIL; b = CDR(b)) {
    V sym = (V)fh_ephemeron_key(T, (void *)CAR(b));
    if (!sym) continue;
    V str = OBJ(sym)[1];
    if (LEN(str) == n && memcmp(STR(str), s, n) == 0) return sym;
  }
  return 0;
}
void sym_insert(V sym) {
  V str = OBJ(sym)[1];
  size_t i = 1 + str_hash(STR(str), LEN(str)) % SYM_BUCKETS;
  V eph = (V)fh_ephemeron_new(T, (void *)sym, NULL);
  if (!eph) oom();
  /* Sweep the cleared entries of this bucket while we are here. */
  V prev = 0;
  for (V b = OBJ(symtab)[i]; b != NIL; b = CDR(b)) {
    if (fh_ephemeron_key(T, (void *)CAR(b))) {
      prev = b;
      continue;
    }
    if (prev) WB(PP(prev), &CDR(prev), CDR(b));
    else WB(OBJ(symtab), &OBJ(symtab)[i], CDR(b));
  }
  V cell = cons(eph, OBJ(symtab)[i]);
  WB(OBJ(symtab), &OBJ(symtab)[i], cell);
}
size_t sym_count(void) {
  size_t n = 0;
  for (size_t i = 1; i <= SYM_BUCKETS; i++)
    for (V b = OBJ(symtab)[i]; b != NIL; b = CDR(b))
      if (fh_ephemeron_key(T, (void *)CAR(b))) n++;
  return n;
}
uint64_t obj_hash(V v) { return fh_object_hash(T, (void *)(v & ~(V)7)); }

int attach_finalizer(V obj, intptr_t data) {
  return fh_finalizer_attach(T, (void *)(obj & ~(V)7), (void *)data);
}
int pop_finalized(V *obj, intptr_t *data) {
  void *o, *d;
  if (fh_finalizer_pop(T, &o, &d) != 1) return 0;
  /* Restore the tag: finalizers are attached to untagged objects. */
  *obj = (V)o;
  *data = (intptr_t)d;
  return 1;
}
void collect_now(void) { fh_collect(T, FH_COLLECT_DEFAULT); }
void add_root(V *slot) { fh_root_add(H, (void **)slot); }

/* concurrent_mark=1 (mark_sweep and concurrent_compact; harmless
 * elsewhere): the marker thread asks for the remark pause itself. */
static int marks_concurrently;
int heap_marks_concurrently(void) { return marks_concurrently; }

void heap_init(const char *image) {
  fh_options o;
  fh_options_init(&o);
  /* Conservative stack roots: the interpreter keeps values in C locals
   * everywhere (the evaluator's argument arrays, the compiler, the reader);
   * with stack scanning none of them needs a root slot, and the hot call
   * path pays nothing for root bookkeeping.  Heap fields stay precise.
   * The collector is the heap's default (concurrent compaction where
   * userfaultfd works); FHS_OPTIONS=collector=... picks another.
   * min_alloc_trigger=512K: a small program's heap is its live data plus
   * 512 KiB of room instead of the library's 4 MiB (the suite's small
   * programs peaked at 12 MiB with 4M, 5.0 with 1M, 4.5 with 512K, against
   * Boehm's 3.0-3.5); a collection of a small heap takes ~0.2 ms, so the
   * cost is 0-15% more CPU on the small programs.  growth_factor_pct=250:
   * collect after allocating 1.5x the live data (the library's 300: 2x),
   * so a heap is ~2.5x its live data.  CPU time (user + sys, medians of 5)
   * and peak RSS of threads, rewrite, destruct at 300 / 250 / 200: 0.63 /
   * 0.67 / 0.78 s, 0.25 / 0.27 / 0.32, 0.59 / 0.65 / 0.72; 7.6 / 7.0 / 6.5
   * MiB (rewrite), 9.8 / 9.0 / 7.9 (destruct).  200 (Boehm's ~2x) saved
   * most but put threads and rewrite over Boehm's time (issue 20: peak
   * RSS <= 1.0x Boehm's with time <= 1.0x, no program over 1.3x). */
  const char *defaults =
      "stack_roots=conservative,heap_max=4G,min_alloc_trigger=512K,growth_factor_pct=250";
  if (fh_options_parse(&o, defaults) < 0) {
    fprintf(stderr, "fhscheme: %s\n", fh_last_error());
    exit(2);
  }
  const char *env = getenv("FHS_OPTIONS");
  if (env && *env && fh_options_parse(&o, env) < 0) {
    fprintf(stderr, "fhscheme: FHS_OPTIONS: %s\n", fh_last_error());
    exit(2);
  }
  /* Booting from an image: mapped as the image space at its preferred base
   * (or relocated, then through a sealed memfd so forked workers share the
   * relocated pages too). */
  if (image) {
    o.image_path = image;
    o.image_share = "memfd";
    /* fhscheme reads images it wrote itself (--save-image): when this same
     * binary wrote it and its CRC holds, the per-reference checks are
     * skipped (heap creation 0.8 -> 0.6 ms); when the file also still has
     * the mtime the save gave it (nothing wrote to it since), its CRC is
     * not recomputed either (0.09 ms of a 0.33 ms boot); any other file is
     * validated in full.  FHS_OPTIONS=image_trust=same_build always checks
     * the CRC, image_trust=none everything. */
    if (!o.image_trust) o.image_trust = "unchanged";
    /* Tests: take the image's preferred base first, so it is relocated. */
    if (getenv("FHS_IMAGE_RELOCATE"))
      mmap((void *)0x200000000000ull, 4096, PROT_NONE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  }
  o.tag_immediate_mask = 0x1;
  o.tag_pointer_mask = 0x6;
  o.stack_roots = FH_STACK_ROOTS_CONSERVATIVE;
  marks_concurrently = o.concurrent_mark != 0;
  H = fh_heap_create(&o);
  if (!H) {
    fprintf(stderr, "fhscheme: %s\n", fh_last_error());
    exit(2);
  }
  fh_type t;
  memset(&t, 0, sizeof t);
  t.name = "scm-refs";
  t.flags = FH_TYPE_REF_ARRAY;
  ty_refs = fh_register_type(H, &t);
  memset(&t, 0, sizeof t);
  t.name = "scm-bytes";
  ty_bytes = fh_register_type(H, &t);
  static const uint32_t pair_offs[2] = {0, 8};
  memset(&t, 0, sizeof t);
  t.name = "scm-pair";
  t.size = 16;
  t.nrefs = 2;
  t.ref_offsets = pair_offs;
  ty_pair = fh_register_type(H, &t);
  memset(&t, 0, sizeof t);
  t.name = "scm-flonum";
  t.size = 8;
  ty_flo = fh_register_type(H, &t);
  if (!ty_refs || !ty_bytes || !ty_pair || !ty_flo) {
    fprintf(stderr, "fhscheme: %s\n", fh_last_error());
    exit(2);
  }
}
void heap_attach_thread(void) { heap_attach_thread_stack(NULL); }
void heap_attach_thread_stack(void *base) {
  T = fh_thread_attach_stack(H, base);
  if (!T) {
    fprintf(stderr, "fhscheme: %s\n", fh_last_error());
    exit(2);
  }
  static int once;
  if (!once) {
    once = 1;
    fh_root_add(H, (void **)&symtab);
  }
}
/* Around a wait that does not touch the heap (a lock, a join, a sleep):
 * collections go on without this thread meanwhile. */
void heap_blocking(int enter) {
  if (enter) fh_enter_blocking(T);
  else fh_leave_blocking(T);
}
void remove_root(V *slot) { fh_root_remove(H, (void **)slot); }
void sym_init(void) {
  V *tab = alloc_refs(1 + SYM_BUCKETS);
  tab[0] = MKHDR(K_VECTOR, SYM_BUCKETS);
  for (size_t i = 1; i <= SYM_BUCKETS; i++) tab[i] = NIL;
  symtab = (V)tab;
}
V sym_table(void) { return symtab; }
V sym_entry_key(V entry) { return (V)fh_ephemeron_key(T, (void *)entry); }
int heap_prefork(void) {
  if (fh_prefork(T) < 0) {
    fprintf(stderr, "fhscheme: fh_prefork: %s\n", fh_last_error());
    return -1;
  }
  return 0;
}
void heap_postfork(int child) {
  if (child) fh_postfork_child(H);
  else fh_postfork_parent(H);
}
void sym_table_set(V t) { symtab = t; }
size_t heap_image_roots(V **roots) { return fh_image_roots(H, (void ***)roots); }
int heap_save_image(const char *path, V *roots, size_t n) {
  if (fh_image_save(T, path, (void **)roots, n) < 0) {
    fprintf(stderr, "fhscheme: --save-image %s: %s\n", path, fh_last_error());
    return -1;
  }
  return 0;
}
void heap_detach_thread(void) { fh_thread_detach(T); }
/* At a normal end (every thread detached): the collector's threads are
 * joined and the memory goes back, as an embedder's shutdown should. */
void heap_fini(void) { fh_heap_destroy(H); }
void heap_report(FILE *f) {
  fh_stats s;
  fh_get_stats(H, &s);
  fprintf(f, "faultheap: %llu collections, pauses %.1f ms total, %.2f ms max, %llu MiB allocated, stack scan %.1f ms total, %llu objects pinned at the last\n",
          (unsigned long long)s.collections, s.pause_ns_total / 1e6, s.pause_ns_max / 1e6,
          (unsigned long long)(s.bytes_allocated >> 20), s.stack_scan_ns_total / 1e6,
          (unsigned long long)s.conservative_pinned_last);
}
#endif
