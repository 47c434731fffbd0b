/* fhbench image-load: starting from a heap image vs building the graph.
 *
 * The graph is what a runtime builds at startup: a symbol table of
 * `--entries` (250000) interned symbols, each a tree node, its name string,
 * a value array and a boxed number (4 objects per symbol, 1 million in
 * all), inserted into a binary search tree by name, plus 32 pointer-free
 * 64 KiB "code" blobs.  Variants, each timed --runs times (median):
 *   build            fh_heap_create + register types + build the graph
 *   load             fh_heap_create(image_path=) at the preferred base
 *   load relocated   the same with the preferred base taken (relocation)
 *   load relocated + image_share=memfd
 * Loading includes the whole validation (checksum, every object and
 * reference).  After each, resident and private-dirty bytes of the image
 * mapping (build: of the whole heap) come from /proc/self/smaps, and every
 * variant's graph is checked (sorted in-order walk, counts, a checksum).
 * A last step measures page-cache sharing: a second process loads the same
 * image at its base while this one holds it; the image pages this process
 * then sees as Shared_Clean are shared. */
#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faultheap.h"
#include "heap/heap.h"
#include "heap/image_format.h"

typedef struct node {
  struct node *left, *right;
  unsigned char *name;
  void **value; /* [0] boxed number, [1] the symbol inserted before this one */
  uint64_t hash;
} node;

static const uint32_t node_offs[] = {0, 8, 16, 24};

typedef struct graph_types { uint32_t node, str, refs, num; } graph_types;

static void register_types(fh_heap *h, graph_types *ty) {
  fh_type tn = {.name = "symbol", .size = sizeof(node), .nrefs = 4, .ref_offsets = node_offs};
  fh_type ts = {.name = "string"};
  fh_type tr = {.name = "array", .flags = FH_TYPE_REF_ARRAY};
  fh_type tb = {.name = "number", .size = 8};
  ty->node = fh_register_type(h, &tn);
  ty->str = fh_register_type(h, &ts);
  ty->refs = fh_register_type(h, &tr);
  ty->num = fh_register_type(h, &tb);
}

#define NCODE 32
#define CODE_BYTES (64 * 1024)

static uint64_t mix(uint64_t x) {
  x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

static int name_cmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

/* roots[0] the tree, roots[1] the array of code blobs. */
static void build_graph(fh_thread *t, const graph_types *ty, long entries, void **roots) {
  roots[0] = roots[1] = NULL;
  fh_push_root(t, &roots[0]);
  fh_push_root(t, &roots[1]);
  roots[1] = fh_alloc(t, ty->refs, NCODE * sizeof(void *));
  for (int i = 0; i < NCODE; i++) {
    unsigned char *code = fh_alloc(t, ty->str, CODE_BYTES);
    for (int k = 0; k < CODE_BYTES; k += 64) code[k] = (unsigned char)(i + k);
    fh_write_ref(t, roots[1], &((void **)roots[1])[i], code);
  }
  node *n = NULL, *prev = NULL;
  unsigned char *s = NULL;
  void **v = NULL;
  uint64_t *num = NULL;
  fh_push_root(t, (void **)&n);
  fh_push_root(t, (void **)&prev);
  fh_push_root(t, (void **)&s);
  fh_push_root(t, (void **)&v);
  fh_push_root(t, (void **)&num);
  for (long i = 0; i < entries; i++) {
    uint64_t hsh = mix((uint64_t)i);
    char name[32];
    int len = snprintf(name, sizeof name, "sym_%016" PRIx64 "_%ld", hsh, i % 97);
    s = fh_alloc(t, ty->str, (size_t)len);
    memcpy(s, name, (size_t)len);
    num = fh_alloc(t, ty->num, 8);
    *num = (uint64_t)i;
    v = fh_alloc(t, ty->refs, 2 * sizeof(void *));
    fh_write_ref(t, v, &v[0], num);
    fh_write_ref(t, v, &v[1], prev);
    n = fh_alloc(t, ty->node, sizeof(node));
    n->hash = hsh;
    fh_write_ref(t, n, (void **)&n->name, s);
    fh_write_ref(t, n, (void **)&n->value, v);
    /* Intern: walk down the tree by name. */
    node **link = (node **)&roots[0], *parent = NULL;
    while (*link) {
      parent = *link;
      int c = name_cmp(s, (size_t)len, parent->name, fh_object_size(parent->name));
      link = c < 0 ? &parent->left : &parent->right;
    }
    if (parent)
      fh_write_ref(t, parent, (void **)link, n);
    else
      roots[0] = n;
    prev = n;
  }
  fh_pop_roots(t, 7);
}

typedef struct walk { long count; uint64_t sum; const unsigned char *last; size_t last_n; int sorted; } walk;

static void walk_tree(node *n, walk *w) {
  while (n) { /* in order; recursion only on the left spine keeps depth sane */
    walk_tree(n->left, w);
    size_t len = fh_object_size(n->name);
    if (w->last && name_cmp(w->last, w->last_n, n->name, len) > 0) w->sorted = 0;
    w->last = n->name, w->last_n = len;
    w->count++;
    w->sum += *(uint64_t *)n->value[0] ^ n->hash;
    n = n->right;
  }
}

/* 0 when the graph is complete and consistent. */
static int check_graph(void **roots, long entries, uint64_t want_sum) {
  walk w = {0, 0, NULL, 0, 1};
  walk_tree(roots[0], &w);
  void **code = roots[1];
  for (int i = 0; i < NCODE; i++)
    if (fh_object_size(code[i]) != CODE_BYTES || ((unsigned char *)code[i])[64] != (unsigned char)(i + 64))
      return -1;
  return w.count == entries && w.sorted && w.sum == want_sum ? 0 : -1;
}

static uint64_t expected_sum(long entries) {
  uint64_t s = 0;
  for (long i = 0; i < entries; i++) s += (uint64_t)i ^ mix((uint64_t)i);
  return s;
}

/* Rss and Private_Dirty of the mappings inside [lo, hi), from smaps. */
typedef struct mem { size_t rss, private_dirty, shared_clean, anon; } mem;
static mem smaps_range(uintptr_t lo, uintptr_t hi) {
  mem m = {0, 0, 0, 0};
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return m;
  char line[512];
  int in = 0;
  while (fgets(line, sizeof line, f)) {
    uintptr_t a, b;
    size_t kb;
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' '))
      in = a < hi && b > lo;
    else if (in && sscanf(line, "Rss: %zu kB", &kb) == 1)
      m.rss += kb << 10;
    else if (in && sscanf(line, "Private_Dirty: %zu kB", &kb) == 1)
      m.private_dirty += kb << 10;
    else if (in && sscanf(line, "Shared_Clean: %zu kB", &kb) == 1)
      m.shared_clean += kb << 10;
    else if (in && sscanf(line, "Anonymous: %zu kB", &kb) == 1)
      m.anon += kb << 10;
  }
  fclose(f);
  return m;
}

static fh_heap *load_heap(const char *path, const char *share) {
  fh_options o;
  fh_options_init(&o);
  o.image_path = path;
  o.image_share = share;
  fh_heap *h = fh_heap_create(&o);
  if (!h) fprintf(stderr, "image-load: %s\n", fh_last_error());
  return h;
}

/* Pages of the objects section holding at least one relocation. */
static size_t pointer_pages(const char *path, size_t *image_pages) {
  FILE *f = fopen(path, "rb");
  image_header h;
  size_t pages = 0;
  *image_pages = 0;
  if (!f || fread(&h, sizeof h, 1, f) != 1) goto out;
  *image_pages = (size_t)((h.objects_bytes + 4095) / 4096);
  uint8_t *r = malloc(h.relocs_bytes);
  if (r && fseek(f, (long)h.relocs_offset, SEEK_SET) == 0 && fread(r, 1, h.relocs_bytes, f) == h.relocs_bytes)
    for (size_t p = 0; p < *image_pages; p++) { /* 512 words = 64 bitmap bytes per page */
      int any = 0;
      for (size_t k = p * 64; k < (p + 1) * 64 && k < h.relocs_bytes; k++) any |= r[k];
      pages += any != 0;
    }
  free(r);
out:
  if (f) fclose(f);
  return pages;
}

typedef struct results {
  double build_ms, load_ms, reloc_ms, memfd_ms, save_ms;
  double walk_build_ms, walk_load_ms, walk_reloc_ms, walk_memfd_ms;
  mem build_mem, load_mem, reloc_mem, memfd_mem;    /* right after loading */
  mem load_walk, reloc_walk, memfd_walk;            /* after reading the whole graph */
  size_t image_bytes, image_pages, ptr_pages, shared_clean_two_procs;
} results;

static int measure_sharing(const char *path, results *r) {
  int go[2], done[2];
  if (pipe(go) < 0 || pipe(done) < 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    char c;
    fh_heap *h = load_heap(path, NULL);
    void **roots;
    if (!h || fh_image_roots(h, &roots) != 2) _exit(1);
    walk w = {0, 0, NULL, 0, 1};
    walk_tree(roots[0], &w);
    if (write(done[1], "x", 1) != 1 || read(go[0], &c, 1) != 1) _exit(1);
    _exit(0);
  }
  fh_heap *h = load_heap(path, NULL);
  void **roots;
  int ok = h && fh_image_roots(h, &roots) == 2 && !h->image.relocated;
  if (ok) {
    walk w = {0, 0, NULL, 0, 1};
    walk_tree(roots[0], &w);
    char c;
    ok = read(done[0], &c, 1) == 1;
    mem m = smaps_range(h->image.space.begin, h->image.space.begin + h->image.mapped);
    r->shared_clean_two_procs = m.shared_clean;
  }
  if (write(go[1], "x", 1) != 1) ok = 0;
  int st;
  waitpid(pid, &st, 0);
  if (h) fh_heap_destroy(h);
  close(go[0]), close(go[1]), close(done[0]), close(done[1]);
  return ok && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void print_json(const char *file, const results *r, long entries, int runs) {
  FILE *f = fopen(file, "w");
  if (!f) { perror(file); return; }
  fprintf(f, "{\"workload\":\"image-load\",\"machine\":");
  bench_json_machine(f);
  fprintf(f, ",\"objects\":%ld,\"runs\":%d,\"image_bytes\":%zu,"
             "\"build_ms\":%.3f,\"load_ms\":%.3f,\"load_relocated_ms\":%.3f,"
             "\"load_relocated_memfd_ms\":%.3f,\"save_ms\":%.3f,"
             "\"resident_after_build_bytes\":%zu,\"private_dirty_after_build_bytes\":%zu,"
             "\"resident_after_load_bytes\":%zu,\"private_dirty_after_load_bytes\":%zu,"
             "\"resident_after_relocated_load_bytes\":%zu,"
             "\"private_dirty_after_relocated_load_bytes\":%zu,"
             "\"private_dirty_after_relocated_memfd_load_bytes\":%zu,"
             "\"private_dirty_after_load_and_walk_bytes\":%zu,"
             "\"private_copies_after_load_and_walk_bytes\":%zu,"
             "\"private_copies_after_relocated_load_and_walk_bytes\":%zu,"
             "\"private_copies_after_relocated_memfd_load_and_walk_bytes\":%zu,"
             "\"first_walk_after_build_ms\":%.3f,\"first_walk_after_load_ms\":%.3f,"
             "\"first_walk_after_relocated_load_ms\":%.3f,"
             "\"first_walk_after_relocated_memfd_load_ms\":%.3f,"
             "\"image_pages\":%zu,\"pointer_pages\":%zu,"
             "\"shared_clean_two_processes_bytes\":%zu}\n",
          entries * 4 + NCODE + 1, runs, r->image_bytes, r->build_ms, r->load_ms, r->reloc_ms,
          r->memfd_ms, r->save_ms, r->build_mem.rss, r->build_mem.private_dirty, r->load_mem.rss,
          r->load_mem.private_dirty, r->reloc_mem.rss, r->reloc_mem.private_dirty,
          r->memfd_mem.private_dirty, r->load_walk.private_dirty, r->load_walk.anon,
          r->reloc_walk.anon, r->memfd_walk.anon, r->walk_build_ms, r->walk_load_ms,
          r->walk_reloc_ms, r->walk_memfd_ms, r->image_pages, r->ptr_pages, r->shared_clean_two_procs);
  fclose(f);
}

int wl_image_load(int argc, char **argv) {
  static const char *const with_value[] = {"--json", "--runs", "--entries", "--dir", NULL};
  if (bench_check_flags(argc, argv, with_value, NULL) != 0) return 2;
  int runs = bench_runs_flag(argc, argv, 5);
  if (runs < 0) return 2;
  if (runs > 1000) runs = 1000;
  const char *ent = bench_flag(argc, argv, "--entries");
  long entries = ent ? atol(ent) : 250000;
  if (entries < 1 || entries > 10000000) { fprintf(stderr, "image-load: bad --entries\n"); return 2; }
  const char *dir = bench_flag(argc, argv, "--dir");
  char path[4096];
  snprintf(path, sizeof path, "%s/fhbench-image-%d.img", dir ? dir : "/tmp", (int)getpid());
  uint64_t want = expected_sum(entries);
  results r;
  memset(&r, 0, sizeof r);
  double *t_build = calloc((size_t)runs, sizeof(double)), *t_load = calloc((size_t)runs, sizeof(double));
  double *t_reloc = calloc((size_t)runs, sizeof(double)), *t_memfd = calloc((size_t)runs, sizeof(double));
  /* the first full walk of the graph after each: loaded pages fault in */
  double w_build[1000], w_load[1000], w_reloc[1000], w_memfd[1000];
  int bad = 0;
  bench_print_header(stdout);

  for (int run = 0; run < runs; run++) { /* build from scratch; the first run saves */
    bench_progress("image-load: build %d/%d", run + 1, runs);
    uint64_t t0 = bench_now_ns();
    fh_heap *h = fh_heap_create(NULL);
    if (!h) { fprintf(stderr, "image-load: %s\n", fh_last_error()); return 1; }
    graph_types ty;
    register_types(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    void *roots[2];
    build_graph(t, &ty, entries, roots);
    t_build[run] = (double)(bench_now_ns() - t0) / 1e6;
    fh_push_root(t, &roots[0]);
    fh_push_root(t, &roots[1]);
    uint64_t w0 = bench_now_ns();
    if (check_graph(roots, entries, want) < 0) { fprintf(stderr, "image-load: built graph wrong\n"); bad = 1; }
    w_build[run] = (double)(bench_now_ns() - w0) / 1e6;
    if (run == 0) {
      r.build_mem = smaps_range(h->resv_begin, h->resv_begin + h->resv_size);
      uint64_t s0 = bench_now_ns();
      if (fh_image_save(t, path, roots, 2) < 0) { fprintf(stderr, "image-load: %s\n", fh_last_error()); return 1; }
      r.save_ms = (double)(bench_now_ns() - s0) / 1e6;
    }
    fh_pop_roots(t, 2);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  r.ptr_pages = pointer_pages(path, &r.image_pages);
  r.image_bytes = r.image_pages * 4096;

  for (int run = 0; run < runs; run++) {
    bench_progress("image-load: load %d/%d", run + 1, runs);
    for (int variant = 0; variant < 3; variant++) {
      /* Relocated variants: a heap at the preferred base takes it. */
      fh_heap *blocker = variant ? load_heap(path, NULL) : NULL;
      uint64_t t0 = bench_now_ns();
      fh_heap *h = load_heap(path, variant == 2 ? "memfd" : NULL);
      void **roots;
      size_t n = h ? fh_image_roots(h, &roots) : 0;
      double ms = (double)(bench_now_ns() - t0) / 1e6;
      if (!h || n != 2 || h->image.relocated != (variant != 0)) { bad = 1; break; }
      (variant == 0 ? t_load : variant == 1 ? t_reloc : t_memfd)[run] = ms;
      if (run == 0) {
        /* memory right after loading, before anything reads the graph */
        mem m = smaps_range(h->image.space.begin, h->image.space.begin + h->image.mapped);
        *(variant == 0 ? &r.load_mem : variant == 1 ? &r.reloc_mem : &r.memfd_mem) = m;
      }
      uint64_t w0 = bench_now_ns();
      if (check_graph(roots, entries, want) < 0) { fprintf(stderr, "image-load: loaded graph wrong\n"); bad = 1; }
      (variant == 0 ? w_load : variant == 1 ? w_reloc : w_memfd)[run] = (double)(bench_now_ns() - w0) / 1e6;
      if (run == 0) {
        mem m = smaps_range(h->image.space.begin, h->image.space.begin + h->image.mapped);
        *(variant == 0 ? &r.load_walk : variant == 1 ? &r.reloc_walk : &r.memfd_walk) = m;
      }
      fh_heap_destroy(h);
      if (blocker) fh_heap_destroy(blocker);
    }
  }
  if (measure_sharing(path, &r) < 0) { fprintf(stderr, "image-load: sharing measurement failed\n"); bad = 1; }
  bench_progress_done();
  r.build_ms = bench_median(t_build, (size_t)runs);
  r.load_ms = bench_median(t_load, (size_t)runs);
  r.reloc_ms = bench_median(t_reloc, (size_t)runs);
  r.memfd_ms = bench_median(t_memfd, (size_t)runs);
  r.walk_build_ms = bench_median(w_build, (size_t)runs);
  r.walk_load_ms = bench_median(w_load, (size_t)runs);
  r.walk_reloc_ms = bench_median(w_reloc, (size_t)runs);
  r.walk_memfd_ms = bench_median(w_memfd, (size_t)runs);

  printf("image-load: %ld objects, image %.1f MiB (%zu pages, %zu hold pointers), medians of %d runs\n",
         entries * 4 + NCODE + 1, r.image_bytes / 1048576.0, r.image_pages, r.ptr_pages, runs);
  printf("  MiB: resident and private dirty right after the load (build: after building, whole\n"
         "  heap); then, after reading the whole graph, resident and private copies (Anonymous)\n");
  printf("  walk ms: the first full walk of the graph afterwards (loaded pages fault in)\n");
  printf("  %-24s %9s %8s %9s %9s %11s %9s %8s\n", "variant", "ms", "speedup", "resident", "pr.dirty",
         "resid.walk", "copies", "walk ms");
  printf("  %-24s %9.2f %8s %9.1f %9.2f %11s %9s %8.2f\n", "build from scratch", r.build_ms, "1.0x",
         r.build_mem.rss / 1048576.0, r.build_mem.private_dirty / 1048576.0, "", "", r.walk_build_ms);
  const char *names[3] = {"load at preferred base", "load relocated", "load relocated, memfd"};
  double ms[3] = {r.load_ms, r.reloc_ms, r.memfd_ms};
  double wms[3] = {r.walk_load_ms, r.walk_reloc_ms, r.walk_memfd_ms};
  mem *after[3] = {&r.load_mem, &r.reloc_mem, &r.memfd_mem}, *walked[3] = {&r.load_walk, &r.reloc_walk, &r.memfd_walk};
  for (int v = 0; v < 3; v++)
    printf("  %-24s %9.2f %7.1fx %9.1f %9.2f %11.1f %9.2f %8.2f\n", names[v], ms[v], r.build_ms / ms[v],
           after[v]->rss / 1048576.0, after[v]->private_dirty / 1048576.0, walked[v]->rss / 1048576.0,
           walked[v]->anon / 1048576.0, wms[v]);
  printf("  save: %.1f ms; two processes at the base: %.1f MiB of the image shared clean\n", r.save_ms,
         r.shared_clean_two_procs / 1048576.0);
  printf("  targets: load >= 20x faster than build: %s; private dirty after load <= 5%% of image: %s; "
         "relocation dirties only pointer pages (%zu <= %zu): %s\n",
         r.build_ms >= 20 * r.load_ms ? "yes" : "NO",
         r.load_mem.private_dirty * 20 <= r.image_bytes ? "yes" : "NO",
         r.reloc_mem.private_dirty / 4096, r.ptr_pages,
         r.reloc_mem.private_dirty / 4096 <= r.ptr_pages ? "yes" : "NO");
  const char *json = bench_flag(argc, argv, "--json");
  if (json) print_json(json, &r, entries, runs);
  unlink(path);
  free(t_build), free(t_load), free(t_reloc), free(t_memfd);
  return bad;
}
