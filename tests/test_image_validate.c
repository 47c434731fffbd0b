/* Image validation: every way a file can be wrong gets its own message, the
 * heap is not created, and no byte pattern crashes the loader (a small
 * in-process fuzz loop here; fuzz/ runs libFuzzer for longer). */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "heap/image_validate.h"
#include "test_image.h"

static uint8_t *good;
static size_t good_n;
static image_header good_h;

static int setup(void **st) {
  (void)st;
  const char *path = img_path("valid");
  img_save_standard(path);
  good = img_read(path, &good_n);
  memcpy(&good_h, good, sizeof good_h);
  unlink(path);
  return 0;
}

static int teardown(void **st) {
  (void)st;
  free(good);
  return 0;
}

/* Load `b` as an image: must fail, with `want` in the message. */
static void expect_refused(const uint8_t *b, size_t n, const char *want) {
  const char *path = img_path("bad");
  img_write(path, b, n);
  char spec[512];
  snprintf(spec, sizeof spec, "heap_max=8M,non_moving_max=2M,image_path=%s", path);
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, spec), 0);
  fh_heap *h = fh_heap_create(&o);
  if (h) fail_msg("image accepted; expected '%s'", want);
  if (!strstr(fh_last_error(), want)) fail_msg("got '%s', expected '%s'", fh_last_error(), want);
  unlink(path);
}

typedef void (*mutator)(uint8_t *b, size_t *n, image_header *h);

static uint8_t *objects(uint8_t *b) { return b + good_h.objects_offset; }
static uint64_t rd(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void set_reloc(uint8_t *b, uint64_t off, int on) {
  uint8_t *r = b + good_h.relocs_offset;
  uint64_t w = off / 8;
  if (on) r[w / 8] |= (uint8_t)(1u << (w % 8));
  else r[w / 8] &= (uint8_t)~(1u << (w % 8));
}
static uint64_t root_off(const uint8_t *b, int i) { return rd(b + good_h.roots_offset + 8 * (size_t)i); }
static void fix_digest(uint8_t *b, image_header *h) {
  h->types_digest = image_crc32c(0, b + h->types_offset, h->types_bytes);
}

/* Apply m to a copy of the good image; header changes go through *h; the
 * CRC is recomputed when fix_crc, so the check behind it is reached. */
static void refused(mutator m, int fix_crc, const char *want) {
  size_t n = good_n;
  uint8_t *b = malloc(good_n + 64);
  memcpy(b, good, good_n);
  image_header h;
  memcpy(&h, b, sizeof h);
  m(b, &n, &h);
  memcpy(b, &h, sizeof h);
  if (fix_crc && n >= sizeof h) img_fix_crc(b, n);
  expect_refused(b, n, want);
  free(b);
}

static void m_empty(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)h; *n = 0; }
static void m_tiny(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)h; *n = 7; }
static void m_short(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)h; *n = 100; }
static void m_cut(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)h; *n -= 8; }
static void m_trailing(uint8_t *b, size_t *n, image_header *h) { (void)h; memset(b + *n, 0, 8); *n += 8; }
static void m_magic(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->magic[0] = 'X'; }
static void m_version(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->version = 2; }
static void m_endian(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->endian = 0x04030201u; }
static void m_ptrsize(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->pointer_bytes = 4; }
static void m_hdrsize(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->header_bytes = 512; }
static void m_flip(uint8_t *b, size_t *n, image_header *h) { (void)n, (void)h; objects(b)[17] ^= 0x40; }
static void m_types_oob(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->types_offset = (uint64_t)1 << 40; }
static void m_gap(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->nroots--; h->roots_offset += 8; }
static void m_relocs_size(uint8_t *b, size_t *n, image_header *h) {
  (void)b, (void)n; h->relocs_bytes += 8; h->relocs_offset -= 8; h->types_bytes -= 8;
}
static void m_base(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->preferred_base += 4096; }
static void m_ntypes(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->ntypes = 70000; }
static void m_digest(uint8_t *b, size_t *n, image_header *h) { (void)n, (void)h; b[h->types_offset + 21] ^= 1; }
static void m_type_flags(uint8_t *b, size_t *n, image_header *h) {
  (void)n; b[h->types_offset + 8] = 2; fix_digest(b, h);
}
static void m_type_name_len(uint8_t *b, size_t *n, image_header *h) {
  (void)n; b[h->types_offset + 16] = 0; fix_digest(b, h);
}
static void m_type_dup(uint8_t *b, size_t *n, image_header *h) {
  (void)n;
  /* type 2 is "blob" (24-byte record after pair's 32): rename it "pair" */
  uint8_t *rec = b + h->types_offset + 32;
  assert_memory_equal(rec + 20, "blob", 4);
  memcpy(rec + 20, "pair", 4);
  fix_digest(b, h);
}
static void m_type_trailing(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->ntypes--; }
static void m_hdr_flags(uint8_t *b, size_t *n, image_header *h) { (void)n, (void)h; objects(b)[0] |= 1; }
static void m_type_id(uint8_t *b, size_t *n, image_header *h) { (void)n, (void)h; objects(b)[1] = 99; }
static void m_fixed_size(uint8_t *b, size_t *n, image_header *h) { (void)n, (void)h; objects(b)[4] = 16; }
static void m_runs_past(uint8_t *b, size_t *n, image_header *h) {
  (void)n, (void)h;
  /* first object: type "bytes" (4) with a payload far past the end */
  wr(objects(b), ((uint64_t)0x7FFFFFF0 << 32) | (4u << 8));
}
static void m_too_small(uint8_t *b, size_t *n, image_header *h) {
  (void)n, (void)h;
  /* the vec object (ref at 0) given 0 bytes would hold no ref slot:
   * rewrite the first object as a 0-byte vec followed by a filler-free gap */
  wr(objects(b), (uint64_t)0 << 32 | (3u << 8));
}
static void m_count(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->nobjects++; }
static void m_oob_ref(uint8_t *b, size_t *n, image_header *h) {
  (void)n; wr(objects(b) + 8, h->preferred_base + h->objects_bytes + 64);
}
static void m_below_ref(uint8_t *b, size_t *n, image_header *h) {
  (void)n; wr(objects(b) + 8, h->preferred_base - 4096);
}
static void m_mid_ref(uint8_t *b, size_t *n, image_header *h) {
  (void)n, (void)h; wr(objects(b) + 8, rd(objects(b) + 8) + 8);
}
static void m_no_reloc(uint8_t *b, size_t *n, image_header *h) { (void)n, (void)h; set_reloc(b, 8, 0); }
static void m_stray_reloc(uint8_t *b, size_t *n, image_header *h) {
  (void)n, (void)h; set_reloc(b, 0, 1); /* the first header word */
}
static void m_null_reloc(uint8_t *b, size_t *n, image_header *h) {
  (void)n, (void)h; set_reloc(b, root_off(b, 2) + 24, 1); /* refs array slot 3 is NULL */
}
static void m_nrelocs(uint8_t *b, size_t *n, image_header *h) { (void)b, (void)n; h->nrelocs--; }
static void m_root(uint8_t *b, size_t *n, image_header *h) { (void)n; wr(b + h->roots_offset, 16); }
static void m_root_oob(uint8_t *b, size_t *n, image_header *h) { (void)n; wr(b + h->roots_offset + 8, (uint64_t)1 << 50); }

static void test_identity_failures(void **st) {
  (void)st;
  refused(m_empty, 0, "truncated");
  refused(m_tiny, 0, "truncated");
  refused(m_short, 0, "truncated");
  refused(m_cut, 1, "truncated");
  refused(m_trailing, 1, "trailing data");
  refused(m_magic, 1, "bad magic");
  refused(m_version, 1, "format version 2");
  refused(m_endian, 1, "byte order");
  refused(m_ptrsize, 1, "pointer size 4");
  refused(m_hdrsize, 1, "header size");
  refused(m_flip, 0, "checksum mismatch");
}

static void test_structure_failures(void **st) {
  (void)st;
  refused(m_types_oob, 1, "out-of-bounds section");
  refused(m_gap, 1, "sections overlap");
  refused(m_relocs_size, 1, "relocation bitmap has");
  refused(m_base, 1, "preferred base");
  refused(m_ntypes, 1, "more than");
  refused(m_digest, 1, "type table digest mismatch");
  refused(m_type_flags, 1, "unknown flags");
  refused(m_type_name_len, 1, "name of 0 bytes");
  refused(m_type_dup, 1, "image type table");
  refused(m_type_trailing, 1, "trailing bytes");
}

static void test_object_failures(void **st) {
  (void)st;
  refused(m_hdr_flags, 1, "flag bits");
  refused(m_type_id, 1, "unknown type id 99");
  refused(m_fixed_size, 1, "fixed size");
  refused(m_runs_past, 1, "runs past the end");
  refused(m_too_small, 1, "cannot hold the references");
  refused(m_count, 1, "object walk found");
  refused(m_oob_ref, 1, "out-of-bounds reference");
  refused(m_below_ref, 1, "out-of-bounds reference");
  refused(m_mid_ref, 1, "points inside an object");
  refused(m_no_reloc, 1, "has no relocation");
  refused(m_stray_reloc, 1, "marks 1 words that are not references");
  refused(m_null_reloc, 1, "relocation on a null reference");
  refused(m_nrelocs, 1, "relocations");
  refused(m_root, 1, "root 0");
  refused(m_root_oob, 1, "root 1");
}

static void test_unreadable_files(void **st) {
  (void)st;
  fh_options o;
  fh_options_init(&o);
  o.image_path = "/nonexistent/dir/x.img";
  assert_null(fh_heap_create(&o));
  assert_non_null(strstr(fh_last_error(), "cannot open"));
  o.image_path = "/tmp";
  assert_null(fh_heap_create(&o));
  assert_non_null(strstr(fh_last_error(), "not a regular file"));
  o.image_path = NULL;
  o.image_share = "bogus";
  assert_null(fh_heap_create(&o));
  assert_non_null(strstr(fh_last_error(), "image_share"));
}

/* A large file that is not an image is refused from its header, without
 * reading (or mapping into the page cache) the rest of it. */
static void test_large_foreign_file_refused_from_header(void **st) {
  (void)st;
  const char *path = img_path("sparse");
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs("this is not an image", f);
  fclose(f);
  assert_int_equal(truncate(path, (off_t)8 << 30), 0); /* 8 GiB, sparse */
  fh_options o;
  fh_options_init(&o);
  o.image_path = path;
  o.heap_max = 8 << 20;
  assert_null(fh_heap_create(&o));
  assert_non_null(strstr(fh_last_error(), "bad magic"));
  /* a real header claiming another length: refused as well */
  uint8_t *b = malloc(good_n);
  memcpy(b, good, good_n);
  img_write(path, b, good_n);
  assert_int_equal(truncate(path, (off_t)8 << 30), 0);
  assert_null(fh_heap_create(&o));
  assert_non_null(strstr(fh_last_error(), "trailing data"));
  free(b);
  unlink(path);
}

/* After all the refusals the preferred base is free again: nothing leaked. */
static void test_failures_leave_no_trace(void **st) {
  (void)st;
  const char *path = img_path("after");
  img_write(path, good, good_n);
  char spec[512];
  snprintf(spec, sizeof spec, "heap_max=8M,non_moving_max=2M,image_path=%s", path);
  fh_heap *h = img_heap(spec);
  if (img_base_expected()) assert_false(h->image.relocated);
  fh_heap_destroy(h);
  unlink(path);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

/* Random damage, mostly with the checksum repaired so the structural checks
 * see it: validation may accept or refuse, but never crashes or reads out
 * of bounds (ASan watches in check-asan). */
static void test_random_damage_never_crashes(void **st) {
  (void)st;
  uint8_t *b = malloc(good_n);
  int accepted = 0;
  for (int iter = 0; iter < 4000; iter++) {
    memcpy(b, good, good_n);
    size_t n = good_n;
    int edits = 1 + (int)(next_rand() % 4);
    for (int e = 0; e < edits; e++) {
      uint64_t r = next_rand();
      size_t at;
      switch (r % 4) {
      case 0: at = (size_t)(next_rand() % sizeof(image_header)); break; /* header */
      case 1: at = (size_t)(good_h.objects_offset + next_rand() % good_h.objects_bytes); break;
      default: at = (size_t)(good_h.types_offset + next_rand() % (good_n - good_h.types_offset));
      }
      if ((r >> 8) & 1)
        b[at] ^= (uint8_t)(1u << ((r >> 9) % 8));
      else
        b[at] = (uint8_t)(r >> 16);
    }
    if (next_rand() % 8 == 0) n = (size_t)(next_rand() % good_n);
    if (next_rand() % 8 && n >= sizeof(image_header)) img_fix_crc(b, n);
    image_parsed p;
    if (image_validate(b, n, &p) == 0) {
      accepted++;
      image_parsed_free(&p);
    } else {
      assert_true(strncmp(fh_last_error(), "image: ", 7) == 0);
    }
  }
  print_message("random damage: %d of 4000 still valid (payload bytes)\n", accepted);
  free(b);
}

/* image_trust=same_build (heap/image_trust.c): an image this build wrote,
 * CRC intact, skips the per-reference checks and loads to the same graph;
 * a damaged file is still refused by its CRC; a file another build wrote
 * (its build_id differs) gets every check; and the trade-off, documented:
 * a file that names this build and carries a correct CRC is believed about
 * its references. */
static fh_heap *load_bytes(const uint8_t *b, size_t n, const char *trust) {
  const char *path = img_path("trust");
  img_write(path, b, n);
  char spec[512];
  snprintf(spec, sizeof spec, "heap_max=8M,non_moving_max=2M,image_path=%s%s%s", path,
           trust ? ",image_trust=" : "", trust ? trust : "");
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, spec), 0);
  fh_heap *h = fh_heap_create(&o);
  unlink(path);
  return h;
}
static void test_same_build_trust(void **st) {
  (void)st;
  assert_int_not_equal(image_build_id(), 0); /* the test binary has a build-id note */
  assert_int_equal(good_h.build_id, image_build_id());
  fh_heap *h = load_bytes(good, good_n, "same_build");
  assert_non_null(h);
  assert_true(h->image.trusted);
  img_types ty;
  img_register(h, &ty);
  void **roots;
  assert_int_equal(fh_image_roots(h, &roots), NROOTS);
  img_check(&ty, roots);
  fh_heap_destroy(h);
  h = load_bytes(good, good_n, NULL); /* the default checks everything */
  assert_non_null(h);
  assert_false(h->image.trusted);
  fh_heap_destroy(h);
  assert_null(load_bytes(good, good_n, "always"));
  assert_non_null(strstr(fh_last_error(), "image_trust=always"));

  uint8_t *b = malloc(good_n);
  image_header hd;
  /* damage: the CRC still refuses it */
  memcpy(b, good, good_n);
  objects(b)[8] ^= 0x10;
  assert_null(load_bytes(b, good_n, "same_build"));
  assert_non_null(strstr(fh_last_error(), "checksum mismatch"));
  /* another build's file with a bad reference and a correct CRC: checked */
  memcpy(b, good, good_n);
  wr(objects(b) + 8, rd(objects(b) + 8) + 8);
  memcpy(&hd, b, sizeof hd);
  hd.build_id ^= 1;
  memcpy(b, &hd, sizeof hd);
  img_fix_crc(b, good_n);
  assert_null(load_bytes(b, good_n, "same_build"));
  assert_non_null(strstr(fh_last_error(), "points inside an object"));
  /* the same file naming this build: believed (why it is not the default) */
  hd.build_id = image_build_id();
  memcpy(b, &hd, sizeof hd);
  img_fix_crc(b, good_n);
  h = load_bytes(b, good_n, "same_build");
  assert_non_null(h);
  assert_true(h->image.trusted);
  fh_heap_destroy(h);
  assert_null(load_bytes(b, good_n, NULL));
  free(b);
}

/* image_trust=unchanged: a file fh_image_save wrote carries its mtime as a
 * stamp in the header; loaded with its size and mtime as saved, its CRC is
 * not recomputed (trusted == 2).  Any write moves the mtime, and then the
 * CRC decides as with same_build: a damaged byte is refused.  The
 * trade-off, documented: damage hidden by setting the mtime back to the
 * stamp is believed. */
static fh_heap *load_path(const char *path, const char *trust) {
  char spec[512];
  snprintf(spec, sizeof spec, "heap_max=8M,non_moving_max=2M,image_path=%s,image_trust=%s", path,
           trust);
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, spec), 0);
  return fh_heap_create(&o);
}
static void test_unchanged_trust(void **st) {
  (void)st;
  const char *path = img_path("unchanged");
  img_save_standard(path);
  size_t n;
  uint8_t *b = img_read(path, &n);
  image_header hd;
  memcpy(&hd, b, sizeof hd);
  assert_int_not_equal(hd.stamp_sec, 0);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal((uint64_t)sb.st_mtim.tv_sec, hd.stamp_sec);
  assert_int_equal((uint64_t)sb.st_mtim.tv_nsec, hd.stamp_nsec);
  fh_heap *h = load_path(path, "unchanged");
  assert_non_null(h);
  assert_int_equal(h->image.trusted, 2);
  img_types ty;
  img_register(h, &ty);
  void **roots;
  assert_int_equal(fh_image_roots(h, &roots), NROOTS);
  img_check(&ty, roots);
  fh_heap_destroy(h);
  h = load_path(path, "same_build"); /* same_build always checks the CRC */
  assert_non_null(h);
  assert_int_equal(h->image.trusted, 1);
  fh_heap_destroy(h);
  /* One byte of an object damaged in place: the mtime moved, the CRC refuses. */
  int fd = open(path, O_WRONLY);
  assert_true(fd >= 0);
  uint8_t byte = (uint8_t)(b[hd.objects_offset + 8] ^ 0x10);
  assert_int_equal(pwrite(fd, &byte, 1, (off_t)hd.objects_offset + 8), 1);
  assert_null(load_path(path, "unchanged"));
  assert_non_null(strstr(fh_last_error(), "checksum mismatch"));
  /* The mtime set back to the stamp by hand: believed, CRC unchecked. */
  struct timespec times[2] = {{0, UTIME_OMIT}, {(time_t)hd.stamp_sec, (long)hd.stamp_nsec}};
  assert_int_equal(futimens(fd, times), 0);
  close(fd);
  h = load_path(path, "unchanged");
  assert_non_null(h);
  assert_int_equal(h->image.trusted, 2);
  fh_heap_destroy(h);
  /* A file without a stamp (written before it existed): the CRC decides. */
  hd.stamp_sec = hd.stamp_nsec = 0;
  memcpy(b, &hd, sizeof hd);
  img_fix_crc(b, n);
  img_write(path, b, n);
  h = load_path(path, "unchanged");
  assert_non_null(h);
  assert_int_equal(h->image.trusted, 1);
  fh_heap_destroy(h);
  assert_null(load_path(path, "sometimes"));
  assert_non_null(strstr(fh_last_error(), "expected none, same_build or unchanged"));
  unlink(path);
  free(b);
}

/* CRC-32C: the check value of "123456789", and the hardware path (three
 * streams joined every 12 KiB block, then single words and bytes) against a
 * bit-at-a-time reference on every length class and alignment, in pieces
 * as image_file_crc feeds it. */
static uint32_t crc_reference(uint32_t crc, const uint8_t *p, size_t n) {
  uint32_t c = ~crc;
  while (n--) {
    c ^= *p++;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

static void test_crc32c(void **st) {
  (void)st;
  assert_int_equal(image_crc32c(0, "123456789", 9), 0xE3069283u);
  size_t cap = 3 * 3 * 4096 + 100;
  uint8_t *buf = malloc(cap + 8);
  assert_non_null(buf);
  uint32_t r = 12345;
  for (size_t i = 0; i < cap + 8; i++) {
    r = r * 1103515245u + 12345u;
    buf[i] = (uint8_t)(r >> 16);
  }
  const size_t lens[] = {0, 1, 7, 8, 9, 4095, 3 * 4096 - 1, 3 * 4096, 3 * 4096 + 1,
                         3 * 4096 + 13, 2 * 3 * 4096 + 4103, cap};
  for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
    for (size_t off = 0; off < 8; off++) {
      size_t n = lens[li];
      uint32_t want = crc_reference(0, buf + off, n);
      assert_int_equal(image_crc32c(0, buf + off, n), want);
      size_t cut = n / 3; /* in two pieces */
      assert_int_equal(image_crc32c(image_crc32c(0, buf + off, cut), buf + off + cut, n - cut),
                       want);
    }
  free(buf);
}

/* The object starts and hashed objects a saved file carries: a trusted
 * parse takes them instead of walking, and gets exactly what the walk finds
 * (here with objects hashed before saving); a damaged starts bit or hashed
 * record in a trusted file (CRC fixed) is refused, and ignored by a full
 * check, which walks; a file without them (as older savers wrote) is
 * walked either way; their layout is checked for every file. */
static void parses_equal(const image_parsed *a, const image_parsed *b) {
  assert_int_equal(a->hdr.nobjects, b->hdr.nobjects);
  size_t words = image_relocs_bytes_for(a->hdr.objects_bytes) / 8;
  for (size_t i = 0; i < words; i++)
    assert_int_equal(atomic_load(&a->starts.words[i]), atomic_load(&b->starts.words[i]));
  assert_int_equal(a->nhashed, b->nhashed);
  for (size_t i = 0; i < a->nhashed; i++) {
    assert_int_equal(a->hashed[i].offset, b->hashed[i].offset);
    assert_int_equal(a->hashed[i].key, b->hashed[i].key);
  }
}

static void test_saved_object_starts(void **st) {
  (void)st;
  const char *path = img_path("hashed");
  fh_heap *h = img_heap("heap_max=16M,non_moving_max=4M");
  img_types ty;
  img_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void *roots[NROOTS];
  img_build(t, &ty, roots);
  for (int i = 0; i < NROOTS; i++) fh_push_root(t, &roots[i]);
  for (int i = 0; i < NROOTS; i++)
    if (roots[i]) (void)fh_object_hash(t, roots[i]);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* hashed objects move: keys saved */
  assert_int_equal(fh_image_save(t, path, roots, NROOTS), 0);
  fh_pop_roots(t, NROOTS);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  size_t n;
  uint8_t *b = img_read(path, &n);
  unlink(path);
  image_header hd;
  memcpy(&hd, b, sizeof hd);
  assert_int_not_equal(hd.starts_bytes, 0);
  assert_true(hd.nhashed > 0);

  image_parsed walked, taken;
  assert_int_equal(image_validate(b, n, &walked), 0);
  assert_false(walked.trusted);
  assert_int_equal(image_validate_trusting(b, n, &taken, 1), 0);
  assert_true(taken.trusted);
  parses_equal(&walked, &taken);
  image_parsed_free(&taken);

  uint8_t *c = malloc(n);
  /* a start bit too many */
  memcpy(c, b, n);
  c[hd.starts_offset + hd.starts_bytes - 1] ^= 0x80;
  img_fix_crc(c, n);
  assert_int_equal(image_validate_trusting(c, n, &taken, 1), -1);
  assert_non_null(strstr(fh_last_error(), "object-starts bitmap marks"));
  assert_int_equal(image_validate(c, n, &taken), 0); /* walked: not read */
  image_parsed_free(&taken);
  /* a hashed record off its object, and one with another key */
  for (int k = 0; k < 2; k++) {
    memcpy(c, b, n);
    uint64_t v;
    memcpy(&v, c + hd.hashed_offset + 8 * k, 8);
    v += k ? 1 : 8;
    memcpy(c + hd.hashed_offset + 8 * k, &v, 8);
    img_fix_crc(c, n);
    assert_int_equal(image_validate_trusting(c, n, &taken, 1), -1);
    assert_non_null(strstr(fh_last_error(), k ? "identity hash key" : "hashed object"));
  }
  /* wrong bitmap size, and a gap before it */
  memcpy(c, b, n);
  image_header bad = hd;
  bad.starts_bytes += 8;
  bad.hashed_offset += 8;
  bad.file_bytes = n; /* now past the end by 8 */
  memcpy(c, &bad, sizeof bad);
  img_fix_crc(c, n);
  assert_int_equal(image_validate(c, n, &taken), -1);
  memcpy(c, b, n);
  bad = hd;
  bad.starts_offset += 8;
  memcpy(c, &bad, sizeof bad);
  img_fix_crc(c, n);
  assert_int_equal(image_validate(c, n, &taken), -1);
  assert_non_null(strstr(fh_last_error(), "sections overlap"));

  /* without the sections: walked, trusted or not */
  memcpy(c, b, n);
  size_t old_n = (size_t)hd.starts_offset;
  bad = hd;
  bad.starts_offset = bad.starts_bytes = bad.hashed_offset = bad.nhashed = 0;
  bad.file_bytes = old_n;
  memcpy(c, &bad, sizeof bad);
  img_fix_crc(c, old_n);
  assert_int_equal(image_validate_trusting(c, old_n, &taken, 1), 0);
  assert_true(taken.trusted);
  parses_equal(&walked, &taken);
  image_parsed_free(&taken);
  image_parsed_free(&walked);
  free(c);
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identity_failures),
      cmocka_unit_test(test_structure_failures),
      cmocka_unit_test(test_object_failures),
      cmocka_unit_test(test_unreadable_files),
      cmocka_unit_test(test_large_foreign_file_refused_from_header),
      cmocka_unit_test(test_failures_leave_no_trace),
      cmocka_unit_test(test_random_damage_never_crashes),
      cmocka_unit_test(test_same_build_trust),
      cmocka_unit_test(test_unchanged_trust),
      cmocka_unit_test(test_crc32c),
      cmocka_unit_test(test_saved_object_starts),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
