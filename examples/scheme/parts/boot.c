/* fhscheme, booting: the Scheme library loaded from source, or the whole
 * interpreter state booted from a heap image: part of scheme.c's one
 * translation unit (included there, never compiled alone).
 *
 * An image holds everything the interpreter needs that is not C code: the
 * symbol table (with every global's value cell), the constant pool (which
 * keeps compiled code's constants and symbols alive), the primitive
 * objects (indexes into pdefs, never function pointers) and a state vector
 * of the C counters.  Compiled code is in the heap (nodes, lambdas) and
 * closures reference it, so nothing is recompiled at boot.  Not saved:
 * ports (their C buffers; the standard ports are made anew at each boot),
 * guardians (their registrations are finalizers, which images do not keep)
 * and the dynamic state (winders, handlers: empty at the top level). */

#include <glob.h>

enum { IMG_SYMTAB, IMG_CPOOL, IMG_PRIMS, IMG_STATE, IMG_NROOTS };
enum { ST_CPOOL_N, ST_GENSYM, ST_NPRIMS, ST_KSYMS, ST_LEN };

static struct {
  const char *save_image, *image;
  int lib, prefork, boot_time;
  long requests;
} opts = {.requests = 1000};
static double boot_ms;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int boot_image(void) {
  V *roots;
  size_t n = heap_image_roots(&roots);
  if (n != IMG_NROOTS || !IS(roots[IMG_STATE], K_VECTOR) || LEN(roots[IMG_STATE]) != ST_LEN ||
      VREF(roots[IMG_STATE], ST_NPRIMS) != FIX(NPRIMS) || !IS(VREF(roots[IMG_STATE], ST_KSYMS), K_VECTOR) ||
      LEN(VREF(roots[IMG_STATE], ST_KSYMS)) != NKSYMS) {
    fprintf(stderr, "fhscheme: %s is not an image of this fhscheme (%zu roots)\n", opts.image, n);
    return -1;
  }
  sym_table_set(roots[IMG_SYMTAB]);
  cpool = roots[IMG_CPOOL];
  prims = roots[IMG_PRIMS];
  V st = roots[IMG_STATE];
  cpool_n = (size_t)FIXV(VREF(st, ST_CPOOL_N));
  gensym_counter = (int)FIXV(VREF(st, ST_GENSYM));
  booted_from_image = 1;
  /* The image's symbols never die: no keep. */
  V ks = VREF(st, ST_KSYMS);
  for (size_t i = 0; i < NKSYMS; i++) *ksym_slot[i] = VREF(ks, i);
  find_prims();
  return 0;
}

static int save_image(const char *path) {
  V st = mkvec(ST_LEN, FIX(0));
  VSET(st, ST_CPOOL_N, FIX((intptr_t)cpool_n));
  VSET(st, ST_GENSYM, FIX(gensym_counter));
  VSET(st, ST_NPRIMS, FIX(NPRIMS));
  V ks = mkvec(NKSYMS, FALSE_V);
  for (size_t i = 0; i < NKSYMS; i++) VSET(ks, i, *ksym_slot[i]);
  VSET(st, ST_KSYMS, ks);
  V roots[IMG_NROOTS];
  roots[IMG_SYMTAB] = sym_table();
  roots[IMG_CPOOL] = cpool;
  roots[IMG_PRIMS] = prims;
  roots[IMG_STATE] = st;
  return heap_save_image(path, roots, IMG_NROOTS);
}

static int run_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "fhscheme: cannot open %s\n", path);
    return 66;
  }
  Port *fp = calloc(1, sizeof *fp);
  if (!fp) oom();
  fp->f = f;
  fp->input = 1;
  fp->peeked = -2;
  int status = run_port(fp);
  fclose(f);
  free(fp);
  return status;
}

#ifndef FHS_LIBDIR
#define FHS_LIBDIR "examples/scheme/lib"
#endif
/* The library: every *.scm of FHS_LIBDIR (the environment variable, or the
 * source tree's examples/scheme/lib), in name order. */
static int load_library(void) {
  const char *dir = getenv("FHS_LIBDIR");
  if (!dir || !*dir) dir = FHS_LIBDIR;
  char pat[4096];
  snprintf(pat, sizeof pat, "%s/*.scm", dir);
  glob_t g;
  if (glob(pat, 0, NULL, &g) != 0) {
    fprintf(stderr, "fhscheme: no library in %s\n", dir);
    return 66;
  }
  int status = 0;
  for (size_t i = 0; i < g.gl_pathc && status == 0; i++) status = run_file(g.gl_pathv[i]);
  globfree(&g);
  return status;
}

/* Leading options; returns the index of the first script argument. */
static int parse_opts(int argc, char **argv) {
  int i = 1;
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "--save-image") && i + 1 < argc) opts.save_image = argv[++i];
    else if (!strcmp(argv[i], "--image") && i + 1 < argc) opts.image = argv[++i];
    else if (!strcmp(argv[i], "--lib")) opts.lib = 1;
    else if (!strcmp(argv[i], "--boot-time")) opts.boot_time = 1;
    else if (!strcmp(argv[i], "--prefork") && i + 1 < argc) opts.prefork = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--requests") && i + 1 < argc) opts.requests = atol(argv[++i]);
    else break;
  }
  if (opts.save_image && opts.image) {
    fprintf(stderr, "fhscheme: --save-image and --image exclude each other\n");
    exit(64);
  }
  return i;
}
