/* GCBench against a peer allocator, built once per allocator by
 * bench/baselines.mk as build/bench/gcbench-<variant>:
 *   -DGCB_GLIBC     glibc malloc/free
 *   -DGCB_JEMALLOC  malloc/free, linked with -ljemalloc
 *   -DGCB_MIMALLOC  malloc/free, linked with -lmimalloc
 *   -DGCB_BOEHM     GC_MALLOC (GC_MALLOC_ATOMIC for the doubles), never freed
 * The malloc variants free each tree explicitly after use.  Separate programs,
 * because linking jemalloc or mimalloc replaces malloc for the whole process.
 *
 * Prints one line, "gcbench variant=... ms=... verify_ms=... trees=...
 * [collections=... gc_ms=...]", and exits 1 if a tree or the array was wrong,
 * or if malloc is not served by the allocator this program was built for.
 * fhbench gcbench runs it and reads that line. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#if defined(GCB_BOEHM)
#include <gc.h>
#define GCB_VARIANT "boehm" /* GC_MALLOC: malloc itself is not used */
#elif defined(GCB_JEMALLOC)
#define GCB_VARIANT "jemalloc"
#define GCB_MALLOC_LIB "jemalloc"
#elif defined(GCB_MIMALLOC)
#define GCB_VARIANT "mimalloc"
#define GCB_MALLOC_LIB "mimalloc"
#elif defined(GCB_GLIBC)
#define GCB_VARIANT "glibc"
#define GCB_MALLOC_LIB "libc.so"
#else
#error "define one of GCB_GLIBC, GCB_JEMALLOC, GCB_MIMALLOC, GCB_BOEHM"
#endif

/* allocator interface for gcbench_core.h */
#include <stdio.h>
static void *gcb_new_node(void);
static double *gcb_new_doubles(size_t n);
static void gcb_store(void *obj, void **field, void *value);
static void gcb_root(void **slot);
static void gcb_unroot(size_t n);
static void gcb_free_tree(void *tree);
static void gcb_free_doubles(double *a);
static void gcb_poll(void);

#include "gcbench_core.h"
#include "binarytrees_core.h"

static void out_of_memory(void) {
  fprintf(stderr, "gcbench-%s: out of memory\n", GCB_VARIANT);
  exit(1);
}

/* these programs hold every pointer in ordinary C variables: the allocators
 * do not move objects, and Boehm scans the stack conservatively */
static void gcb_root(void **slot) { (void)slot; }
static void gcb_unroot(size_t n) { (void)n; }
static void gcb_poll(void) {}
static void gcb_store(void *obj, void **field, void *value) {
  (void)obj;
  *field = value;
}

#if defined(GCB_BOEHM)
static void *gcb_new_node(void) {
  void *p = GC_MALLOC(sizeof(gcb_node)); /* zeroed */
  if (p == NULL) out_of_memory();
  return p;
}
static double *gcb_new_doubles(size_t n) {
  double *p = GC_MALLOC_ATOMIC(n * sizeof(double)); /* no pointers inside */
  if (p == NULL) out_of_memory();
  return p;
}
static void gcb_free_tree(void *tree) { (void)tree; }
static void gcb_free_doubles(double *a) { (void)a; }
#else
static void *gcb_new_node(void) {
  gcb_node *n = malloc(sizeof *n);
  if (n == NULL) out_of_memory();
  /* the same zeroed node every other variant gets */
  n->left = n->right = NULL;
  n->i = n->j = 0;
  return n;
}
static double *gcb_new_doubles(size_t n) {
  double *p = malloc(n * sizeof(double));
  if (p == NULL) out_of_memory();
  return p;
}
static void gcb_free_tree(void *tree) {
  gcb_node *n = tree;
  if (n == NULL) return;
  gcb_free_tree(n->left);
  gcb_free_tree(n->right);
  free(n);
}
static void gcb_free_doubles(double *a) { free(a); }
#endif

/* The file name of the object that serves malloc in this process. */
static const char *malloc_provider(void) {
  Dl_info info;
  void *sym = dlsym(RTLD_DEFAULT, "malloc");
  if (sym == NULL || dladdr(sym, &info) == 0 || info.dli_fname == NULL) return "?";
  const char *slash = strrchr(info.dli_fname, '/');
  return slash ? slash + 1 : info.dli_fname;
}

int main(int argc, char **argv) {
  /* "binarytrees N" runs binary-trees of depth N instead of GCBench. */
  int bt = argc == 3 && strcmp(argv[1], "binarytrees") == 0;
  if (argc > 1 && !bt) {
    fprintf(stderr, "usage: gcbench-%s [binarytrees DEPTH] (fhbench gcbench and binarytrees run it)\n",
            GCB_VARIANT);
    return 2;
  }
  const char *provider = malloc_provider();
#ifdef GCB_MALLOC_LIB
  if (strstr(provider, GCB_MALLOC_LIB) == NULL) {
    fprintf(stderr, "gcbench-%s: malloc is served by %s, not %s\n", GCB_VARIANT,
            provider, GCB_MALLOC_LIB);
    return 1;
  }
#endif
#if defined(GCB_BOEHM)
  GC_INIT();
  GC_start_performance_measurement();
#endif

  gcb_result r;
  if (bt)
    bt_run(atoi(argv[2]), &r);
  else
    gcb_run(&r);

  printf("%s variant=%s ms=%.3f verify_ms=%.3f trees=%ld failures=%d", bt ? "binarytrees" : "gcbench", GCB_VARIANT,
         r.ms, r.verify_ms, r.trees, r.failures);
#if defined(GCB_BOEHM)
  printf(" collections=%lu gc_ms=%lu", (unsigned long)GC_get_gc_no(),
         (unsigned long)GC_get_full_gc_total_time());
#endif
  printf(" malloc=%s\n", provider);
  return r.failures ? 1 : 0;
}
