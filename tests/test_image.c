/* Heap images: save and load round trips over every kind of type, loading
 * at the preferred base and relocated (two heaps from one image in one
 * process), types matched by name and layout, saving refusals. */
#include <fcntl.h>
#include <sys/wait.h>

#include "test_image.h"

static void test_round_trip_every_kind(void **st) {
  (void)st;
  const char *path = img_path("rt");
  img_save_standard(path);
  char spec[512];
  snprintf(spec, sizeof spec, "heap_max=16M,verify=1,image_path=%s", path);
  fh_heap *h = img_heap(spec);
  img_types ty;
  img_register(h, &ty); /* same names and layouts: the image's ids */
  assert_int_equal(ty.pair, 1);
  assert_int_equal(ty.refs, 5);
  void **roots;
  assert_int_equal(fh_image_roots(h, &roots), NROOTS);
  img_check(&ty, roots);
  /* every object of the graph is in the image space */
  assert_true(image_space_present(&h->image));
  assert_true(space_contains(&h->image.space, roots[0]));
  assert_true(space_contains(&h->image.space, roots[3])); /* was non-moving */
  assert_int_equal(h->image.nobjects, NPAIR + 5);
  fh_thread *t = fh_thread_attach(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* verify=1 checks it all */
  img_check(&ty, roots);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  unlink(path);
}

static void test_no_image_no_roots(void **st) {
  (void)st;
  fh_heap *h = img_heap(NULL);
  void **roots = (void **)1;
  assert_int_equal(fh_image_roots(h, &roots), 0);
  assert_null(roots);
  fh_heap_destroy(h);
}


static fh_heap *load(const char *path, const char *extra) {
  char spec[512];
  snprintf(spec, sizeof spec, "heap_max=16M,non_moving_max=4M,image_path=%s%s%s", path,
           extra ? "," : "", extra ? extra : "");
  return img_heap(spec);
}

static void test_load_twice_relocates(void **st) {
  (void)st;
  const char *path = img_path("twice");
  img_save_standard(path);
  fh_heap *h1 = load(path, "verify=1"), *h2 = load(path, "verify=1");
  if (img_base_expected()) {
    assert_false(h1->image.relocated); /* the first one got the preferred base */
    assert_int_equal(h1->image.space.begin, IMAGE_DEFAULT_BASE);
  }
  assert_true(h2->image.relocated);
  assert_int_not_equal(h2->image.space.begin, IMAGE_DEFAULT_BASE);
  img_types ty;
  img_register(h1, &ty);
  void **r1, **r2;
  assert_int_equal(fh_image_roots(h1, &r1), NROOTS);
  assert_int_equal(fh_image_roots(h2, &r2), NROOTS);
  img_check(&ty, r1);
  img_check(&ty, r2);
  assert_ptr_not_equal(r1[0], r2[0]);
  /* Independent: writes and collections in one never show in the other. */
  fh_thread *t1 = fh_thread_attach(h1);
  fh_thread *t2 = fh_thread_attach(h2);
  pair *p1 = r1[0], *p2 = r2[0];
  blob *b1 = fh_alloc(t1, ty.blob, sizeof(blob));
  b1->x = 41;
  fh_write_ref(t1, r1[2], &((void **)r1[2])[3], b1);
  fh_write_ref(t2, r2[2], &((void **)r2[2])[3], r2[0]);
  p1->a->value = 12345;
  assert_int_equal(p2->a->value, 1);
  assert_int_equal(fh_collect(t1, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(fh_collect(t2, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(((blob *)((void **)r1[2])[3])->x, 41);
  assert_ptr_equal(((void **)r2[2])[3], r2[0]);
  p1->a->value = 1;
  fh_thread_detach(t1);
  fh_thread_detach(t2);
  fh_heap_destroy(h1);
  fh_heap_destroy(h2);
  unlink(path);
}

/* Fresh objects reachable only from image objects survive every collector:
 * the image's dirty cards are roots, and moved objects are updated there. */
static void test_image_refs_survive_every_collector(void **st) {
  (void)st;
  const char *path = img_path("collectors");
  img_save_standard(path);
  static const char *const collectors[] = {"semispace", "gen_semispace", "mark_sweep", "mark_compact",
                                           "concurrent_compact"};
  int ran = 0;
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    char spec[512];
    snprintf(spec, sizeof spec, "heap_max=16M,non_moving_max=4M,verify=1,collector=%s,image_path=%s",
             collectors[c], path);
    fh_options o;
    fh_options_init(&o);
    assert_int_equal(fh_options_parse(&o, spec), 0);
    fh_heap *h = fh_heap_create(&o);
    if (!h) {
      print_message("collector %s: skipped (%s)\n", collectors[c], fh_last_error());
      continue;
    }
    ran++;
    img_types ty;
    img_register(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    void **roots;
    assert_int_equal(fh_image_roots(h, &roots), NROOTS);
    /* Every pair's b gets a fresh two-object chain: pair -> vec -> blob. */
    pair *p = roots[0];
    uintptr_t before = 0;
    for (int i = 0; i < NPAIR; i++, p = p->a) {
      /* garbage below each chain, so sliding compactors move the chain */
      assert_non_null(fh_alloc(t, ty.bytes, 200));
      blob *b = fh_alloc(t, ty.blob, sizeof(blob));
      b->x = (uint64_t)i, b->y = ~(uint64_t)i;
      fh_push_root(t, (void **)&b);
      void **v = fh_alloc(t, ty.vec, 16);
      fh_pop_roots(t, 1);
      fh_write_ref(t, v, &v[0], b);
      ((uint64_t *)v)[1] = (uint64_t)i * 3;
      fh_write_ref(t, p, (void **)&p->b, v);
      if (i == 0) before = (uintptr_t)v;
    }
    for (int round = 0; round < 3; round++) {
      for (int k = 0; k < 20000; k++) assert_non_null(fh_alloc(t, ty.bytes, 100)); /* garbage */
      assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
      p = roots[0];
      for (int i = 0; i < NPAIR; i++, p = p->a) {
        void **v = (void **)p->b;
        assert_int_equal(fh_object_type(v), ty.vec);
        assert_int_equal(((uint64_t *)v)[1], (uint64_t)i * 3);
        blob *b = v[0];
        assert_int_equal(fh_object_type(b), ty.blob);
        assert_true(b->x == (uint64_t)i && b->y == ~(uint64_t)i);
        assert_int_equal(p->value, (uint64_t)i);
      }
    }
    print_message("collector %s: first fresh object %s\n", collectors[c],
                  (uintptr_t)((pair *)roots[0])->b != before ? "moved" : "stayed");
    /* Saving from this heap copies image and fresh objects alike. */
    const char *again = img_path("collectors2");
    assert_int_equal(fh_image_save(t, again, roots, NROOTS), 0);
    fh_heap *h2 = load(again, "verify=1");
    void **r2;
    assert_int_equal(fh_image_roots(h2, &r2), NROOTS);
    p = r2[0];
    for (int i = 0; i < NPAIR; i++, p = p->a) {
      void **v = (void **)p->b;
      assert_true(space_contains(&h2->image.space, v));
      assert_int_equal(((uint64_t *)v)[1], (uint64_t)i * 3);
      assert_int_equal(((blob *)v[0])->x, (uint64_t)i);
    }
    fh_heap_destroy(h2);
    unlink(again);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  assert_true(ran >= 1);
  unlink(path);
}

static void test_types_match_by_name_and_layout(void **st) {
  (void)st;
  const char *path = img_path("types");
  img_save_standard(path);
  fh_heap *h = load(path, NULL);
  /* Before the embedder registers anything, the image's types exist. */
  static const uint32_t one[] = {0};
  fh_type other = {.name = "pair", .size = sizeof(pair), .nrefs = 1, .ref_offsets = one};
  assert_int_equal(fh_register_type(h, &other), 0);
  assert_non_null(strstr(fh_last_error(), "pair"));
  assert_non_null(strstr(fh_last_error(), "another layout"));
  assert_non_null(strstr(fh_last_error(), "defined by the heap image"));
  fh_type same = {.name = "pair", .size = sizeof(pair), .nrefs = 2, .ref_offsets = pair_offs};
  assert_int_equal(fh_register_type(h, &same), 1);
  fh_type fresh = {.name = "fresh", .size = 8};
  assert_int_equal(fh_register_type(h, &fresh), 6);
  fh_heap_destroy(h);
  unlink(path);
}

static void trace_nothing(void *obj, size_t size, fh_visit_fn visit, void *ctx) {
  (void)obj, (void)size, (void)visit, (void)ctx;
}

static void test_save_refusals(void **st) {
  (void)st;
  const char *path = img_path("refused");
  unlink(path);
  fh_heap *h = img_heap("heap_max=8M");
  img_types ty;
  img_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  pair *p = fh_alloc(t, ty.pair, sizeof(pair));
  void *roots[1] = {p};
  fh_push_root(t, &roots[0]);
  /* a native pointer in a reference slot */
  int native;
  p->a = (pair *)&native;
  assert_int_equal(fh_image_save(t, path, roots, 1), -1);
  assert_non_null(strstr(fh_last_error(), "pair"));
  assert_non_null(strstr(fh_last_error(), "not a heap object"));
  p = roots[0];
  p->a = NULL;
  /* a root that is not an object */
  void *bad[1] = {(char *)roots[0] + 8};
  assert_int_equal(fh_image_save(t, path, bad, 1), -1);
  assert_non_null(strstr(fh_last_error(), "root 0"));
  /* a type with a trace callback, named */
  fh_type traced = {.name = "traced_thing", .size = 16, .trace = trace_nothing};
  assert_int_not_equal(fh_register_type(h, &traced), 0);
  assert_int_equal(fh_image_save(t, path, roots, 1), -1);
  assert_non_null(strstr(fh_last_error(), "traced_thing"));
  assert_int_equal(access(path, F_OK), -1); /* nothing under the real name */
  /* bad arguments */
  assert_int_equal(fh_image_save(NULL, path, roots, 1), -1);
  assert_int_equal(fh_image_save(t, NULL, roots, 1), -1);
  assert_int_equal(fh_image_save(t, path, NULL, 1), -1);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A heap loaded from an image saves a new image mixing its image objects
 * and fresh ones; the new image loads and holds both. */
static void test_image_of_an_image(void **st) {
  (void)st;
  const char *path = img_path("gen1"), *path2 = img_path("gen2");
  img_save_standard(path);
  fh_heap *h = load(path, NULL);
  img_types ty;
  img_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void **r;
  fh_image_roots(h, &r);
  pair *fresh = fh_alloc(t, ty.pair, sizeof(pair));
  fresh->value = 4242;
  fh_write_ref(t, fresh, (void **)&fresh->a, r[0]);
  fh_write_ref(t, r[2], &((void **)r[2])[3], fresh);
  void *roots[NROOTS + 1];
  for (int i = 0; i < NROOTS; i++) roots[i] = r[i];
  roots[NROOTS] = fresh;
  assert_int_equal(fh_image_save(t, path2, roots, NROOTS + 1), 0);
  ((void **)r[2])[3] = NULL; /* the standard check expects it NULL */
  fh_thread_detach(t);
  fh_heap_destroy(h);
  fh_heap *h2 = load(path2, "verify=1");
  void **r2;
  assert_int_equal(fh_image_roots(h2, &r2), NROOTS + 1);
  pair *f2 = r2[NROOTS];
  assert_int_equal(f2->value, 4242);
  assert_ptr_equal(f2->a, r2[0]);
  assert_ptr_equal(((void **)r2[2])[3], f2);
  ((void **)r2[2])[3] = NULL;
  img_check(&ty, r2);
  fh_heap_destroy(h2);
  unlink(path);
  unlink(path2);
}


/* Sum of one smaps field over the mappings inside [lo, hi). */
static size_t smaps_field(uintptr_t lo, uintptr_t hi, const char *field) {
  FILE *f = fopen("/proc/self/smaps", "r");
  assert_non_null(f);
  char line[512];
  int in = 0;
  size_t total = 0, kb;
  while (fgets(line, sizeof line, f)) {
    unsigned long a, b;
    if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' '))
      in = a < hi && b > lo;
    else if (in && strncmp(line, field, strlen(field)) == 0 &&
             sscanf(line + strlen(field), " %zu kB", &kb) == 1)
      total += kb << 10;
  }
  fclose(f);
  return total;
}

static size_t private_dirty(uintptr_t lo, uintptr_t hi) {
  return smaps_field(lo, hi, "Private_Dirty:");
}

/* Private copies (copy-on-write of a file or memfd page): "Anonymous".  A
 * memfd's own pages count as Private_Dirty while one process maps them
 * (shmem pages are always dirty) but are page-cache pages, not copies. */
static size_t anonymous(uintptr_t lo, uintptr_t hi) { return smaps_field(lo, hi, "Anonymous:"); }

/* Pointer-free objects are laid out after the others, so relocation writes
 * only the pages before them; at the preferred base nothing is written. */
static void test_relocation_dirties_only_pointer_pages(void **st) {
  (void)st;
  if (!img_base_expected()) skip(); /* measures a load at the preferred base */
  const char *path = img_path("dirty");
  fh_heap *h = img_heap("heap_max=16M");
  img_types ty;
  img_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void *root = NULL;
  fh_push_root(t, &root);
  root = fh_alloc(t, ty.refs, 3 * sizeof(void *));
  for (int i = 0; i < 2; i++) {
    void *big = fh_alloc(t, ty.bytes, 64 * 1024); /* 16 pointer-free pages each */
    memset(big, 0x5A, 64 * 1024);
    fh_write_ref(t, root, &((void **)root)[i], big);
  }
  pair *p = fh_alloc(t, ty.pair, sizeof(pair));
  fh_write_ref(t, root, &((void **)root)[2], p);
  fh_write_ref(t, p, (void **)&p->a, p);
  assert_int_equal(fh_image_save(t, path, &root, 1), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);

  fh_heap *h1 = load(path, NULL), *h2 = load(path, NULL);
  assert_false(h1->image.relocated);
  assert_true(h2->image.relocated);
  uintptr_t b1 = h1->image.space.begin, b2 = h2->image.space.begin;
  assert_int_equal(private_dirty(b1, b1 + h1->image.mapped), 0);
  void **r1;
  assert_int_equal(fh_image_roots(h1, &r1), 1);
  size_t sum = 0;
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 64 * 1024; k++) sum += ((unsigned char *)((void **)r1[0])[i])[k];
  assert_int_equal(sum, 2u * 64 * 1024 * 0x5A);
  assert_int_equal(private_dirty(b1, b1 + h1->image.mapped), 0); /* reading keeps it clean */
  size_t d2 = private_dirty(b2, b2 + h2->image.mapped);
  print_message("relocated: %zu of %zu image pages dirty\n", d2 / 4096, h2->image.mapped / 4096);
  assert_true(d2 >= 4096 && d2 <= 4096); /* the array and the pair share the first page */
  void **r2;
  assert_int_equal(fh_image_roots(h2, &r2), 1);
  void **arr = r2[0];
  assert_int_equal(((unsigned char *)arr[1])[65535], 0x5A);
  assert_ptr_equal(((pair *)arr[2])->a, arr[2]);
  fh_heap_destroy(h1);
  fh_heap_destroy(h2);
  unlink(path);
}


/* image_share=memfd: the relocated image lives in a sealed memfd, mapped
 * privately: this process holds no private copy of the relocated pages,
 * and a forked child shares them and may still write its own copy. */
static void test_memfd_share_relocated(void **st) {
  (void)st;
  skip_fork_under_tsan();
  const char *path = img_path("memfd");
  img_save_standard(path);
  fh_heap *h1 = load(path, NULL), *h2 = load(path, "image_share=memfd,verify=1");
  assert_true(h2->image.relocated);
  assert_true(h2->image.has_memfd);
  int seals = fcntl(h2->image.memfd, F_GET_SEALS);
  assert_true(seals & F_SEAL_WRITE);
  assert_true(seals & F_SEAL_SHRINK);
  uintptr_t b2 = h2->image.space.begin;
  assert_int_equal(private_dirty(b2, b2 + h2->image.mapped), 0);
  img_types ty;
  img_register(h2, &ty);
  void **r2;
  assert_int_equal(fh_image_roots(h2, &r2), NROOTS);
  img_check(&ty, r2);
  assert_int_equal(anonymous(b2, b2 + h2->image.mapped), 0); /* reading copies nothing */
  pid_t pid = fork();
  if (pid == 0) {
    pair *p = r2[0];
    int ok = p->a->value == 1;
    p->a->value = 999; /* copy-on-write in the child only */
    _exit(ok && p->a->value == 999 ? 0 : 1);
  }
  int stt;
  assert_int_equal(waitpid(pid, &stt, 0), pid);
  assert_true(WIFEXITED(stt) && WEXITSTATUS(stt) == 0);
  img_check(&ty, r2); /* the parent's image is untouched */
  /* Writes after loading work as in any image (copy-on-write). */
  fh_thread *t = fh_thread_attach(h2);
  blob *b = fh_alloc(t, ty.blob, sizeof(blob));
  b->x = 5;
  fh_write_ref(t, r2[2], &((void **)r2[2])[3], b);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(((blob *)((void **)r2[2])[3])->x, 5);
  fh_thread_detach(t);
  fh_heap_destroy(h2);
  fh_heap_destroy(h1);
  unlink(path);
}


/* The barrier dirties the card of the object, not of the slot: a store to
 * the far end of a large image array must still be found. */
static void test_far_slot_of_large_image_object(void **st) {
  (void)st;
  const char *path = img_path("far");
  fh_heap *h = img_heap("heap_max=16M");
  img_types ty;
  img_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void *root = NULL;
  fh_push_root(t, &root);
  root = fh_alloc(t, ty.refs, 4096); /* 512 slots over 9 cards */
  assert_int_equal(fh_image_save(t, path, &root, 1), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  static const char *const collectors[] = {"semispace", "gen_semispace", "mark_sweep", "mark_compact",
                                           "concurrent_compact"};
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    char extra[64];
    snprintf(extra, sizeof extra, "verify=1,collector=%s", collectors[c]);
    char spec[512];
    snprintf(spec, sizeof spec, "heap_max=16M,non_moving_max=4M,image_path=%s,%s", path, extra);
    fh_options o;
    fh_options_init(&o);
    assert_int_equal(fh_options_parse(&o, spec), 0);
    fh_heap *h2 = fh_heap_create(&o);
    if (!h2) continue; /* collector not in this build */
    img_register(h2, &ty);
    fh_thread *t2 = fh_thread_attach(h2);
    void **r;
    assert_int_equal(fh_image_roots(h2, &r), 1);
    void **arr = r[0];
    for (int k = 0; k < 1000; k++) assert_non_null(fh_alloc(t2, ty.bytes, 64)); /* garbage */
    blob *b = fh_alloc(t2, ty.blob, sizeof(blob));
    b->x = 77;
    fh_write_ref(t2, arr, &arr[511], b); /* slot 4 KiB past the dirtied card */
    b = NULL;
    for (int round = 0; round < 3; round++) {
      for (int k = 0; k < 5000; k++) assert_non_null(fh_alloc(t2, ty.bytes, 64));
      assert_int_equal(fh_collect(t2, FH_COLLECT_DEFAULT), 0);
      assert_int_equal(fh_object_type(arr[511]), ty.blob);
      assert_int_equal(((blob *)arr[511])->x, 77);
    }
    fh_thread_detach(t2);
    fh_heap_destroy(h2);
  }
  unlink(path);
}


/* Collections read an image only through its dirty cards: after several
 * collections of every collector, the pages of a large image that this
 * process has mapped are the few the test touched (smaps Rss of the image
 * mapping counts exactly the pages mapped in this process). */
static void test_collections_leave_clean_image_pages_alone(void **st) {
  (void)st;
  if (!img_base_expected()) skip(); /* measures a load at the preferred base */
  const char *path = img_path("untouched");
  fh_heap *h = img_heap("heap_max=32M");
  img_types ty;
  img_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void *root = NULL;
  fh_push_root(t, &root);
  for (int i = 0; i < 40000; i++) { /* a 1.25 MiB list: about 300 pages */
    pair *p = fh_alloc(t, ty.pair, sizeof(pair));
    p->value = (uint64_t)i;
    fh_write_ref(t, p, (void **)&p->a, root);
    root = p;
  }
  assert_int_equal(fh_image_save(t, path, &root, 1), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  static const char *const collectors[] = {"semispace", "gen_semispace", "mark_sweep", "mark_compact",
                                           "concurrent_compact"};
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    char spec[512];
    snprintf(spec, sizeof spec, "heap_max=16M,non_moving_max=4M,collector=%s,image_path=%s",
             collectors[c], path);
    fh_options o;
    fh_options_init(&o);
    assert_int_equal(fh_options_parse(&o, spec), 0);
    fh_heap *h2 = fh_heap_create(&o);
    if (!h2) continue;
    img_register(h2, &ty);
    fh_thread *t2 = fh_thread_attach(h2);
    void **r;
    assert_int_equal(fh_image_roots(h2, &r), 1);
    pair *head = r[0];
    blob *b = fh_alloc(t2, ty.blob, sizeof(blob));
    b->x = 9;
    fh_write_ref(t2, head, (void **)&head->b, b);
    for (int round = 0; round < 3; round++) {
      for (int k = 0; k < 5000; k++) assert_non_null(fh_alloc(t2, ty.bytes, 64));
      assert_int_equal(fh_collect(t2, FH_COLLECT_DEFAULT), 0);
    }
    fh_gc_wait(h2);
    assert_int_equal(((blob *)head->b)->x, 9);
    uintptr_t lo = h2->image.space.begin;
    size_t rss = smaps_field(lo, lo + h2->image.mapped, "Rss:");
    print_message("collector %s: %zu of %zu image pages mapped after 3 collections\n",
                  collectors[c], rss / 4096, h2->image.mapped / 4096);
    /* the head's page and its neighbours (fault-around maps up to 16) */
    assert_true(rss <= 16 * 4096);
    fh_thread_detach(t2);
    fh_heap_destroy(h2);
  }
  unlink(path);
}


/* fh_prefork with an image (relocated into a memfd): references from image
 * objects to objects compacted into the zygote space follow them, and a
 * forked child sees the image and those objects. */
static void test_prefork_with_image(void **st) {
  (void)st;
  skip_fork_under_tsan();
  const char *path = img_path("prefork");
  img_save_standard(path);
  fh_heap *h1 = load(path, NULL);
  static const char *const collectors[] = {"semispace", "mark_compact"};
  for (size_t c = 0; c < sizeof collectors / sizeof *collectors; c++) {
    char extra[128];
    snprintf(extra, sizeof extra, "verify=1,image_share=memfd,collector=%s", collectors[c]);
    char spec[512];
    snprintf(spec, sizeof spec, "heap_max=16M,non_moving_max=8M,image_path=%s,%s", path, extra);
    fh_options o;
    fh_options_init(&o);
    assert_int_equal(fh_options_parse(&o, spec), 0);
    fh_heap *h = fh_heap_create(&o);
    if (!h) continue;
    assert_true(h->image.relocated && h->image.has_memfd);
    img_types ty;
    img_register(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    void **r;
    assert_int_equal(fh_image_roots(h, &r), NROOTS);
    assert_non_null(fh_alloc(t, ty.bytes, 1000)); /* garbage first */
    blob *b = fh_alloc(t, ty.blob, sizeof(blob));
    b->x = 31;
    void *before = b;
    fh_write_ref(t, r[2], &((void **)r[2])[3], b);
    if (fh_prefork(t) < 0) fail_msg("fh_prefork: %s", fh_last_error());
    void *after = ((void **)r[2])[3];
    assert_int_equal(((blob *)after)->x, 31);
    print_message("collector %s: fresh object %s by fh_prefork\n", collectors[c],
                  after != before ? "moved" : "not moved");
    pid_t pid = fork();
    if (pid == 0) {
      fh_postfork_child(h);
      blob *cb = ((void **)r[2])[3];
      pair *p = r[0];
      _exit(cb->x == 31 && p->a->value == 1 && fh_collect(t, FH_COLLECT_DEFAULT) == 0 &&
                    ((blob *)((void **)r[2])[3])->x == 31 ? 0 : 1);
    }
    fh_postfork_parent(h);
    int stt;
    assert_int_equal(waitpid(pid, &stt, 0), pid);
    assert_true(WIFEXITED(stt) && WEXITSTATUS(stt) == 0);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    assert_int_equal(((blob *)((void **)r[2])[3])->x, 31);
    ((void **)r[2])[3] = NULL;
    img_check(&ty, r);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  fh_heap_destroy(h1);
  unlink(path);
}


/* Images without objects: no roots, or only NULL roots. */
static void test_empty_images(void **st) {
  (void)st;
  const char *path = img_path("empty");
  for (size_t nroots = 0; nroots < 3; nroots += 2) {
    fh_heap *h = img_heap("heap_max=8M");
    img_types ty;
    img_register(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    void *roots[2] = {NULL, NULL};
    assert_int_equal(fh_image_save(t, path, roots, nroots), 0);
    fh_thread_detach(t);
    fh_heap_destroy(h);
    fh_heap *h2 = load(path, "verify=1");
    void **r;
    assert_int_equal(fh_image_roots(h2, &r), nroots);
    for (size_t k = 0; k < nroots; k++) assert_null(r[k]);
    img_register(h2, &ty); /* the types came through all the same */
    assert_int_equal(ty.pair, 1);
    fh_thread *t2 = fh_thread_attach(h2);
    assert_non_null(fh_alloc(t2, ty.pair, sizeof(pair)));
    assert_int_equal(fh_collect(t2, FH_COLLECT_DEFAULT), 0);
    fh_thread_detach(t2);
    fh_heap_destroy(h2);
  }
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_every_kind),
      cmocka_unit_test(test_no_image_no_roots),
      cmocka_unit_test(test_load_twice_relocates),
      cmocka_unit_test(test_image_refs_survive_every_collector),
      cmocka_unit_test(test_types_match_by_name_and_layout),
      cmocka_unit_test(test_save_refusals),
      cmocka_unit_test(test_image_of_an_image),
      cmocka_unit_test(test_relocation_dirties_only_pointer_pages),
      cmocka_unit_test(test_memfd_share_relocated),
      cmocka_unit_test(test_far_slot_of_large_image_object),
      cmocka_unit_test(test_collections_leave_clean_image_pages_alone),
      cmocka_unit_test(test_prefork_with_image),
      cmocka_unit_test(test_empty_images),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
