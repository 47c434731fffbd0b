/* fh_image_save: write the transitive closure of some roots as a heap image
 * (format in image_format.h).
 *
 * With the world stopped (nothing moves, nothing is written): number the
 * reachable objects depth-first from the roots, lay them out (objects with
 * reference slots first, then pointer-free ones; depth-first within each
 * group), then build the whole file
 * in memory, references rewritten to preferred_base + offset and marked in
 * the relocation bitmap.  The world resumes before the file is written, to
 * a temporary name in the same directory, synced, then renamed over the
 * real name, so a crash never leaves a half image under it.
 *
 * Pins (fh_pin, conservative stack words) do not matter here: the save
 * reads the heap and writes a copy into its own buffer, and no object of
 * the heap moves, so no pin set is gathered and none is recorded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "heap/error.h"
#include "heap/identity_hash.h"
#include "heap/heap.h"
#include "heap/image_format.h"
#include "heap/object.h"
#include "heap/sys.h"

/* Object address -> offset of its header in the objects section. */
typedef struct addr_map {
  uintptr_t *keys;
  uint64_t *vals;
  size_t cap, n; /* cap a power of two, kept at most half full */
} addr_map;

static size_t addr_hash(uintptr_t a, size_t cap) {
  return (size_t)(((uint64_t)a >> 3) * 0x9E3779B97F4A7C15ull >> 17) & (cap - 1);
}

static int map_grow(addr_map *m) {
  size_t cap = m->cap ? m->cap * 2 : 4096;
  uintptr_t *k = calloc(cap, sizeof *k);
  uint64_t *v = malloc(cap * sizeof *v);
  if (!k || !v) { free(k); free(v); return -1; }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->keys[i]) continue;
    size_t j = addr_hash(m->keys[i], cap);
    while (k[j]) j = (j + 1) & (cap - 1);
    k[j] = m->keys[i];
    v[j] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  m->keys = k, m->vals = v, m->cap = cap;
  return 0;
}

/* The slot of a: found (returns 1) or where it would go (returns 0). */
static size_t map_find(const addr_map *m, uintptr_t a, int *found) {
  size_t j = addr_hash(a, m->cap);
  while (m->keys[j] && m->keys[j] != a) j = (j + 1) & (m->cap - 1);
  *found = m->keys[j] == a;
  return j;
}

typedef struct ptr_vec { void **v; size_t n, cap; } ptr_vec;

static int vec_push(ptr_vec *s, void *p) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    void **g = realloc(s->v, cap * sizeof *g);
    if (!g) return -1;
    s->v = g, s->cap = cap;
  }
  s->v[s->n++] = p;
  return 0;
}

typedef struct saver {
  fh_heap *h;
  addr_map map;
  ptr_vec stack, order;
  uint64_t objects_bytes;
  uint64_t *offsets;   /* by numbering index: offset of the header */
  int failed;          /* an error is set */
  const void *holder;  /* object being scanned, for messages */
  /* second pass */
  uint8_t *objects, *relocs;
  uint64_t nrelocs;
} saver;

static const char *type_name_of(fh_heap *h, const void *obj) {
  const fh_type_info *ti = types_get(&h->types, hdr_type(*obj_header(obj)));
  return ti ? ti->name : "?";
}

static void push_child(void **slot, void *ctx) {
  saver *s = ctx;
  void *p = slot_object(s->h->tags, *slot); /* NULL for immediates */
  if (!p || s->failed) return;
  uintptr_t a = (uintptr_t)p;
  if (a - s->h->resv_begin >= s->h->resv_size || (a & 7)) {
    fh_error_set("fh_image_save: an object of type %s holds %p, which is not a heap object "
                 "(native pointers cannot be saved)", type_name_of(s->h, s->holder), p);
    s->failed = 1;
    return;
  }
  if (vec_push(&s->stack, p) < 0) s->failed = 2;
}

/* Number every object reachable from `root`, depth-first, first child first. */
static void number_from(saver *s, void *root) {
  if (vec_push(&s->stack, root) < 0) { s->failed = 2; return; }
  while (s->stack.n && !s->failed) {
    void *obj = s->stack.v[--s->stack.n];
    if (2 * (s->map.n + 1) > s->map.cap && map_grow(&s->map) < 0) { s->failed = 2; return; }
    int found;
    size_t j = map_find(&s->map, (uintptr_t)obj, &found);
    if (found) continue;
    uint64_t hd = *obj_header(obj);
    const fh_type_info *ti = types_get(&s->h->types, hdr_type(hd));
    if (!ti) {
      fh_error_set("fh_image_save: %p has unknown type id %u (not an object?)", obj,
                   hdr_type(hd));
      s->failed = 1;
      return;
    }
    s->map.keys[j] = (uintptr_t)obj;
    s->map.vals[j] = s->order.n; /* its index; offsets come later */
    s->map.n++;
    s->objects_bytes += obj_moved_bytes(hd); /* a hashed object with its hash word */
    if (vec_push(&s->order, obj) < 0) { s->failed = 2; return; }
    size_t before = s->stack.n;
    s->holder = obj;
    types_visit_refs(ti, obj, hdr_payload(hd), push_child, s);
    /* Reverse the pushed children so the first is popped first. */
    for (size_t i = before, k = s->stack.n; i + 1 < k; i++, k--) {
      void *t = s->stack.v[i];
      s->stack.v[i] = s->stack.v[k - 1];
      s->stack.v[k - 1] = t;
    }
  }
}

static uint64_t offset_of(saver *s, const void *obj) {
  int found;
  size_t j = map_find(&s->map, (uintptr_t)obj, &found);
  return s->offsets[s->map.vals[j]];
}

static int holds_refs(fh_heap *h, const void *obj) {
  const fh_type_info *ti = types_get(&h->types, hdr_type(*obj_header(obj)));
  return ti->nrefs || (ti->flags & FH_TYPE_REF_ARRAY);
}

/* Objects that can hold references first, then the pointer-free ones, each
 * group in depth-first order: relocation then writes only the pages of the
 * first group (pdumper's hot/cold split), and strings, numbers and code
 * stay clean, shared page-cache pages even in a relocated image. */
static int assign_offsets(saver *s) {
  s->offsets = malloc((s->order.n ? s->order.n : 1) * sizeof *s->offsets);
  if (!s->offsets) return -1;
  uint64_t at = 0;
  for (int cold = 0; cold < 2; cold++)
    for (size_t i = 0; i < s->order.n; i++) {
      void *obj = s->order.v[i];
      if (holds_refs(s->h, obj) == cold) continue;
      s->offsets[i] = at;
      at += obj_moved_bytes(*obj_header(obj));
    }
  return 0;
}

static void rewrite_slot(void **slot, void *ctx) {
  saver *s = ctx;
  uintptr_t raw = (uintptr_t)*slot;
  void *p = slot_object(s->h->tags, (void *)raw);
  if (!p) return; /* NULL or an immediate: saved as it is, never relocated */
  /* The slot is in the copy; its target was numbered in pass 1.  A tag
   * stays in the low bits, which relocation (a multiple of 2 MiB) keeps. */
  uint64_t v = slot_retag(s->h->tags, raw, IMAGE_DEFAULT_BASE + offset_of(s, p) + FH_HEADER_BYTES);
  memcpy(slot, &v, 8);
  uint64_t word = ((uintptr_t)slot - (uintptr_t)s->objects) >> 3;
  s->relocs[word >> 3] |= (uint8_t)(1u << (word & 7));
  s->nrelocs++;
}

static int check_types(fh_heap *h, uint32_t ntypes) {
  for (uint32_t id = 1; id <= ntypes; id++) {
    const fh_type_info *ti = types_get(&h->types, id);
    if (ti && ti->trace) {
      fh_error_set("fh_image_save: type %s has a trace callback, which an image cannot store "
                   "(describe it with ref_offsets or FH_TYPE_REF_ARRAY)", ti->name);
      return -1;
    }
    for (uint32_t i = 0; ti && i < ti->nrefs; i++)
      for (uint32_t k = 0; k < i; k++)
        if (ti->ref_offsets[k] == ti->ref_offsets[i]) {
          fh_error_set("fh_image_save: type %s lists reference offset %u twice", ti->name,
                       ti->ref_offsets[i]);
          return -1;
        }
  }
  return 0;
}

static size_t types_section_bytes(fh_heap *h, uint32_t ntypes) {
  size_t n = 0;
  for (uint32_t id = 1; id <= ntypes; id++) {
    const fh_type_info *ti = types_get(&h->types, id);
    n += (20 + strlen(ti->name) + 4 * (size_t)ti->nrefs + 7) & ~(size_t)7;
  }
  return n;
}

static void write_types(fh_heap *h, uint32_t ntypes, uint8_t *out) {
  for (uint32_t id = 1; id <= ntypes; id++) {
    const fh_type_info *ti = types_get(&h->types, id);
    uint64_t size = ti->size;
    uint32_t name_len = (uint32_t)strlen(ti->name);
    memcpy(out, &size, 8);
    memcpy(out + 8, &ti->flags, 4);
    memcpy(out + 12, &ti->nrefs, 4);
    memcpy(out + 16, &name_len, 4);
    memcpy(out + 20, ti->name, name_len);
    if (ti->nrefs) memcpy(out + 20 + name_len, ti->ref_offsets, 4 * (size_t)ti->nrefs);
    out += (20 + name_len + 4 * (size_t)ti->nrefs + 7) & ~(size_t)7;
  }
}

/* Lay out the whole file in *file (mmapped; free with munmap). */
static int by_offset(const void *a, const void *b) {
  uint64_t x, y;
  memcpy(&x, a, 8);
  memcpy(&y, b, 8);
  return x < y ? -1 : x > y;
}

static int build_file(saver *s, void **roots, size_t nroots, uint8_t **file, size_t *bytes) {
  fh_heap *h = s->h;
  uint32_t ntypes = atomic_load(&h->types.next_id) - 1;
  image_header hd;
  memset(&hd, 0, sizeof hd);
  memcpy(hd.magic, IMAGE_MAGIC, 8);
  hd.version = IMAGE_VERSION;
  hd.header_bytes = IMAGE_HEADER_BYTES;
  hd.pointer_bytes = sizeof(void *);
  hd.endian = IMAGE_ENDIAN_LITTLE;
  hd.preferred_base = IMAGE_DEFAULT_BASE;
  hd.objects_offset = IMAGE_HEADER_BYTES;
  hd.objects_bytes = s->objects_bytes;
  hd.types_offset =
      hd.objects_offset + ((s->objects_bytes + IMAGE_PAGE - 1) & ~(uint64_t)(IMAGE_PAGE - 1));
  hd.types_bytes = types_section_bytes(h, ntypes);
  hd.relocs_offset = hd.types_offset + hd.types_bytes;
  hd.relocs_bytes = image_relocs_bytes_for(s->objects_bytes);
  hd.roots_offset = hd.relocs_offset + hd.relocs_bytes;
  hd.nroots = nroots;
  /* The object starts and hashed objects, which a trusted load takes
   * instead of walking every object (heap/image_validate.c). */
  hd.file_bytes = hd.roots_offset + 8 * nroots;
  if (s->objects_bytes) { /* else absent (all zero): there is nothing to walk */
    hd.starts_offset = hd.file_bytes;
    hd.starts_bytes = image_relocs_bytes_for(s->objects_bytes);
    hd.hashed_offset = hd.starts_offset + hd.starts_bytes;
    for (size_t i = 0; i < s->order.n; i++)
      hd.nhashed += (*obj_header(s->order.v[i]) & FH_HDR_HASHED) != 0;
    hd.file_bytes = hd.hashed_offset + 16 * hd.nhashed;
  }
  hd.nobjects = s->order.n;
  hd.ntypes = ntypes;
  void *m = sys_mmap(NULL, hd.file_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    fh_error_set("fh_image_save: cannot allocate %llu bytes for the image",
                 (unsigned long long)hd.file_bytes);
    return -1;
  }
  uint8_t *f = m;
  s->objects = f + hd.objects_offset;
  s->relocs = f + hd.relocs_offset;
  /* Unused when there are no objects (the loop does not run). */
  uint8_t *starts = f + hd.starts_offset, *hashed = f + hd.hashed_offset;
  for (size_t i = 0; i < s->order.n; i++) {
    void *obj = s->order.v[i];
    uint64_t at = s->offsets[i];
    uint64_t word = *obj_header(obj);
    size_t payload = hdr_payload(word);
    uint64_t clean = fh__make_header(hdr_type(word), payload);
    starts[at >> 6] |= (uint8_t)(1u << ((at >> 3) & 7));
    /* A hashed object is saved moved: its key rides in its hash word, as
     * its address changes at load (the loader reserves the key). */
    if (word & FH_HDR_HASHED) {
      clean |= FH_HDR_HASH_BITS;
      uint64_t key = obj_hash_key(obj, word);
      memcpy(s->objects + at + obj_total_bytes(payload), &key, 8);
      memcpy(hashed, &at, 8);
      memcpy(hashed + 8, &key, 8);
      hashed += 16;
    }
    memcpy(s->objects + at, &clean, 8);
    memcpy(s->objects + at + 8, obj, payload);
    types_visit_refs(types_get(&h->types, hdr_type(word)), s->objects + at + 8, payload,
                     rewrite_slot, s);
  }
  /* By offset, as the object walk lists them (offsets put the objects
   * holding references first, so the order above is not theirs). */
  qsort(f + hd.hashed_offset, hd.nhashed, 16, by_offset);
  hd.nrelocs = s->nrelocs;
  hd.tag_immediate_mask = s->h->tags.imm;
  hd.tag_pointer_mask = s->h->tags.ptr;
  hd.build_id = image_build_id();
  /* A stamp no later write can reproduce by chance: this moment, to the
   * nanosecond (write_file sets the file's mtime to it).  Never 0, which
   * means "no stamp" (the clock is past 1970). */
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  hd.stamp_sec = (uint64_t)now.tv_sec;
  hd.stamp_nsec = (uint64_t)now.tv_nsec;
  write_types(h, ntypes, f + hd.types_offset);
  hd.types_digest = image_crc32c(0, f + hd.types_offset, hd.types_bytes);
  for (size_t i = 0; i < nroots; i++) {
    uint64_t off = roots[i] ? offset_of(s, roots[i]) + FH_HEADER_BYTES : 0;
    memcpy(f + hd.roots_offset + 8 * i, &off, 8);
  }
  memcpy(f, &hd, sizeof hd);
  hd.crc32c = image_file_crc(f, hd.file_bytes);
  memcpy(f, &hd, sizeof hd);
  *file = f;
  *bytes = hd.file_bytes;
  return 0;
}

static int check_root(fh_heap *h, void *p, size_t i) {
  fh_space *spaces[HEAP_MAX_SPACES];
  unsigned n = heap_spaces(h, spaces);
  for (unsigned k = 0; k < n; k++)
    if (space_contains(spaces[k], p) && !((uintptr_t)p & 7) &&
        spaces[k]->ops->is_object(spaces[k], p))
      return 0;
  fh_error_set("fh_image_save: root %zu (%p) is not an object of this heap", i, p);
  return -1;
}

/* World stopped: number the closure and lay out the file. */
static int snapshot(saver *s, void **roots, size_t nroots, uint8_t **file, size_t *bytes) {
  fh_heap *h = s->h;
  if (check_types(h, atomic_load(&h->types.next_id) - 1) < 0) return -1;
  if (map_grow(&s->map) < 0) s->failed = 2;
  for (size_t i = 0; i < nroots && !s->failed; i++) {
    if (!roots[i]) continue;
    if (check_root(h, roots[i], i) < 0) return -1;
    number_from(s, roots[i]);
  }
  if (s->failed == 2) fh_error_set("fh_image_save: out of memory numbering objects");
  if (s->failed) return -1;
  if (assign_offsets(s) < 0) {
    fh_error_set("fh_image_save: out of memory laying out %zu objects", s->order.n);
    return -1;
  }
  return build_file(s, roots, nroots, file, bytes);
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = sys_write(fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

static int write_file(const char *path, const uint8_t *file, size_t bytes) {
  size_t len = strlen(path);
  char *tmp = malloc(len + 16);
  if (!tmp) { fh_error_set("fh_image_save: out of memory"); return -1; }
  snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
  int fd = sys_mkstemp(tmp);
  if (fd < 0) {
    fh_error_set("fh_image_save: cannot create %s: %s", tmp, strerror(errno));
    free(tmp);
    return -1;
  }
  int rc = -1;
  /* The header's stamp becomes the file's mtime (before the fsync, so both
   * reach the disk together; rename keeps it).  If the file system refuses
   * or rounds it, loads just never find the file unchanged and check its
   * CRC, as image_trust=same_build always does. */
  image_header hd;
  memcpy(&hd, file, sizeof hd);
  struct timespec times[2] = {{0, UTIME_OMIT}, {(time_t)hd.stamp_sec, (long)hd.stamp_nsec}};
  if (write_all(fd, file, bytes) < 0 || fchmod(fd, 0644) < 0 ||
      (futimens(fd, times), sys_fsync(fd) < 0)) {
    fh_error_set("fh_image_save: cannot write %s: %s", tmp, strerror(errno));
    close(fd);
  } else if (close(fd) < 0) {
    fh_error_set("fh_image_save: cannot close %s: %s", tmp, strerror(errno));
  } else if (sys_rename(tmp, path) < 0) {
    fh_error_set("fh_image_save: cannot rename %s to %s: %s", tmp, path, strerror(errno));
  } else {
    rc = 0;
  }
  if (rc < 0) unlink(tmp);
  free(tmp);
  return rc;
}

int fh_image_save(fh_thread *t, const char *path, void **roots, size_t nroots) {
  if (thread_check(t, "fh_image_save") < 0) return -1;
  if (!path || (!roots && nroots)) {
    fh_error_set("fh_image_save: %s is NULL", !path ? "path" : "roots");
    return -1;
  }
  fh_heap *h = t->heap;
  /* Path problems are found before the world stops: the file is replaced
   * by rename(), which would as happily replace a FIFO or a device node,
   * and fail on a directory only after the whole closure was copied.  An
   * unwritable or missing directory is found by mkstemp (write_file). */
  struct stat st;
  if (!*path) {
    fh_error_set("fh_image_save: the path is empty");
    return -1;
  }
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    fh_error_set("fh_image_save: %s exists and is not a regular file (%s); nothing was written",
                 path, S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : "not a file");
    return -1;
  }
  saver s = {.h = h};
  uint8_t *file = NULL;
  size_t bytes = 0;
  if (t->critical) {
    fh_error_set("fh_image_save: cannot stop the world inside this thread's own critical "
                 "section");
    return -1;
  }
  gc_lock_acquire(t);
  /* As a collection: a previous collection's concurrent phase (compaction,
   * sweeping) ends first, so every object is in place and readable. */
  fh_gc_wait(h);
  if (world_stop(h, t) < 0) {
    gc_lock_release(t);
    fh_error_prefix("fh_image_save");
    return -1;
  }
  int rc = snapshot(&s, roots, nroots, &file, &bytes);
  world_resume(h);
  gc_lock_release(t);
  free(s.map.keys);
  free(s.map.vals);
  free(s.stack.v);
  free(s.order.v);
  free(s.offsets);
  if (rc == 0) {
    rc = write_file(path, file, bytes);
    sys_munmap(file, bytes); /* a failure leaks the buffer only */
  }
  return rc;
}
