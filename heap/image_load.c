/* Loading a heap image: see image_load.h.  Everything that can fail because
 * of the file fails in image_load_open, before the heap exists; install
 * fails only for lack of resources. */
#include "heap/image_load.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heap/error.h"
#include "heap/object.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

/* image_trust=unchanged: this build's file, its size and mtime still those
 * its saver stamped (image_save.c sets the mtime after writing; any later
 * write(), truncate or mmap store moves it to the time of that write).
 * Then the bytes are the ones whose CRC the saver computed, and reading
 * them all again to recompute it (fhscheme's 653 KB: ~0.09 ms of a 0.33 ms
 * boot, with populating the mapping it needs) would only find the same
 * value: that is left to the file system, as for the executable itself.
 * A file set back to the stamp on purpose (touch -d) is believed, as
 * same_build believes a file with a correct CRC: only for images kept as
 * safe as the program. */
static int unchanged_since_saved(const uint8_t *head, const struct stat *st) {
  image_header h;
  memcpy(&h, head, sizeof h);
  uint64_t mine = image_build_id();
  return mine && h.build_id == mine && h.stamp_sec && h.file_bytes == (uint64_t)st->st_size &&
         (uint64_t)st->st_mtim.tv_sec == h.stamp_sec &&
         (uint64_t)st->st_mtim.tv_nsec == h.stamp_nsec;
}

int image_load_open(image_load *ld, const char *path, int trust) {
  memset(ld, 0, sizeof *ld);
  /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
   * writer forever; the type check below refuses it (and devices,
   * directories) right away.  On a regular file the flag changes nothing
   * (reads of regular files never block in the O_NONBLOCK sense), so it
   * stays set: clearing it took two fcntl calls of every boot. */
  ld->fd = sys_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
  if (ld->fd < 0) {
    fh_error_set("image %s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(ld->fd, &st) < 0) {
    fh_error_set("image %s: cannot stat: %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    fh_error_set("image %s: not a regular file (%s)", path,
                 S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO"
                 : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                 : S_ISSOCK(st.st_mode) ? "a socket" : "not a file");
    goto fail;
  }
  ld->bytes = (size_t)st.st_size;
  /* The header first: a foreign, truncated or damaged file is refused
   * before the rest of it is read. */
  uint8_t head[IMAGE_HEADER_BYTES];
  ssize_t n = sys_pread(ld->fd, head, sizeof head, 0);
  if (n < 0) {
    fh_error_set("image %s: cannot read: %s", path, strerror(errno));
    goto fail;
  }
  if (image_check_header(head, (size_t)n, ld->bytes) < 0) {
    fh_error_prefix(path);
    goto fail;
  }
  if (trust >= IMAGE_TRUST_UNCHANGED && !unchanged_since_saved(head, &st))
    trust = IMAGE_TRUST_SAME_BUILD; /* the CRC decides, as for same_build */
  /* Populated read-only when validation reads every page anyway (the CRC):
   * one call is cheaper than a fault per page.  An unchanged file is read
   * only where the sections after the objects lie, so it is mapped lazily.
   * The pages are the page cache's, shared with the mapping install makes. */
  int populate = trust >= IMAGE_TRUST_UNCHANGED ? 0 : MAP_POPULATE;
  void *m = sys_mmap(NULL, ld->bytes, PROT_READ, MAP_PRIVATE | populate, ld->fd, 0);
  if (m == MAP_FAILED) {
    fh_error_set("image %s: cannot map %zu bytes: %s", path, ld->bytes, strerror(errno));
    goto fail;
  }
  ld->file = m;
  if (image_validate_trusting(ld->file, ld->bytes, &ld->parsed, trust) < 0) {
    fh_error_prefix(path);
    goto fail;
  }
  return 0;
fail:
  image_load_close(ld);
  return -1;
}

size_t image_load_region_bytes(const image_load *ld) {
  return align_up(ld->parsed.hdr.objects_bytes, FH_PMD);
}

#if defined(__SANITIZE_THREAD__)
#define IMAGE_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IMAGE_UNDER_TSAN 1
#endif
#endif

uintptr_t image_load_preferred_base(const image_load *ld) {
#ifdef IMAGE_UNDER_TSAN
  /* ThreadSanitizer keeps that part of the address space for its shadow
   * memory and kills a process that maps there: always relocate. */
  (void)ld;
  return 0;
#else
  return (uintptr_t)ld->parsed.hdr.preferred_base;
#endif
}

void image_load_close(image_load *ld) {
  image_parsed_free(&ld->parsed);
  if (ld->file) sys_munmap(ld->file, ld->bytes); /* a failure leaks the mapping only */
  if (ld->fd >= 0) close(ld->fd);
  memset(ld, 0, sizeof *ld);
  ld->fd = -1;
}

static int register_types(fh_heap *h, const image_parsed *p) {
  for (uint64_t id = 1; id <= p->hdr.ntypes; id++) {
    uint32_t got = types_register(&h->types, &p->types[id].t);
    if (!got) {
      fh_error_prefix("image type table");
      return -1;
    }
    if (got != id) {
      fh_error_set("image type table: type %s is defined twice (ids %u and %llu)",
                   p->types[id].t.name, got, (unsigned long long)id);
      return -1;
    }
    h->types.info[got]->from_image = 1; /* for the message of a later mismatch */
  }
  return 0;
}

/* Add delta to every word the relocation bitmap marks.  Only pages holding
 * a reference are written, so only they become private copies. */
static void relocate(uint8_t *objects, const uint8_t *relocs, size_t relocs_bytes,
                     uint64_t delta) {
  for (size_t i = 0; i < relocs_bytes; i += 8) {
    uint64_t bits;
    memcpy(&bits, relocs + i, 8);
    while (bits) {
      size_t word = i * 8 + (size_t)__builtin_ctzll(bits);
      bits &= bits - 1;
      uint64_t *w = (uint64_t *)(objects + word * 8);
      *w += delta;
    }
  }
}

/* image_share=memfd: build the relocated image once in a sealed memfd and
 * map that privately, so the relocated pages are page-cache pages that
 * forked children share instead of this process's private copies. */
static int map_relocated_memfd(image_space *s, const image_load *ld, uintptr_t at,
                               size_t mapped, uint64_t delta) {
  const image_header *hd = &ld->parsed.hdr;
  int fd = sys_memfd_create("faultheap-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 || sys_ftruncate(fd, (off_t)mapped) < 0) {
    fh_error_set("image_share=memfd: cannot create the memfd: %s", strerror(errno));
    goto fail;
  }
  void *w = sys_mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (w == MAP_FAILED) {
    fh_error_set("image_share=memfd: cannot map the memfd: %s", strerror(errno));
    goto fail;
  }
  memcpy(w, ld->file + hd->objects_offset, hd->objects_bytes);
  relocate(w, ld->file + hd->relocs_offset, hd->relocs_bytes, delta);
  /* If this fails the writable mapping stays, and the seal below refuses
   * (EBUSY): the load fails cleanly. */
  sys_munmap(w, mapped);
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
    fh_error_set("image_share=memfd: cannot seal the memfd: %s", strerror(errno));
    goto fail;
  }
  if (sys_mmap((void *)at, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) ==
      MAP_FAILED) {
    fh_error_set("image_share=memfd: cannot map the sealed image: %s", strerror(errno));
    goto fail;
  }
  s->memfd = fd;
  s->has_memfd = 1;
  return 0;
fail:
  if (fd >= 0) close(fd);
  return -1;
}

int image_load_install(fh_heap *h, image_load *ld, uintptr_t at) {
  image_parsed *p = &ld->parsed;
  const image_header *hd = &p->hdr;
  if (hd->tag_immediate_mask != h->tags.imm || hd->tag_pointer_mask != h->tags.ptr) {
    fh_error_set("image: saved by a heap with tag_immediate_mask=0x%llx, tag_pointer_mask=0x%llx; "
                 "this heap has 0x%lx, 0x%lx (slots would be read differently)",
                 (unsigned long long)hd->tag_immediate_mask,
                 (unsigned long long)hd->tag_pointer_mask, (unsigned long)h->tags.imm,
                 (unsigned long)h->tags.ptr);
    return -1;
  }
  if (register_types(h, p) < 0) return -1;
  size_t mapped = align_up(hd->objects_bytes, FH_PAGE);
  uint64_t delta = (uint64_t)at - hd->preferred_base;
  int relocated = at != hd->preferred_base;
  if (mapped && relocated && h->opt.image_share && strcmp(h->opt.image_share, "memfd") == 0) {
    if (map_relocated_memfd(&h->image, ld, at, mapped, delta) < 0) return -1;
  } else if (mapped) {
    void *m = sys_mmap((void *)at, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, ld->fd,
                       (off_t)hd->objects_offset);
    if (m == MAP_FAILED) {
      fh_error_set("image: cannot map the objects section: %s", strerror(errno));
      return -1;
    }
    if (relocated) relocate(m, ld->file + hd->relocs_offset, hd->relocs_bytes, delta);
  }
  h->image.roots = calloc(hd->nroots ? hd->nroots : 1, sizeof *h->image.roots);
  if (!h->image.roots) {
    fh_error_set("image: out of memory for %llu roots", (unsigned long long)hd->nroots);
    return -1;
  }
  h->image.nroots = (size_t)hd->nroots;
  for (size_t i = 0; i < h->image.nroots; i++) {
    uint64_t off;
    memcpy(&off, ld->file + hd->roots_offset + 8 * i, 8);
    h->image.roots[i] = off ? (void *)(at + off) : NULL;
  }
  image_space_init(&h->image, at, hd->objects_bytes, mapped);
  h->image.starts = p->starts; /* offset-indexed; the space owns it now */
  if (p->starts.words && !p->starts.map_bytes) {
    /* Borrowed from the file's mapping: the space keeps that mapping. */
    h->image.file = ld->file;
    h->image.file_bytes = ld->bytes;
    ld->file = NULL;
  }
  memset(&p->starts, 0, sizeof p->starts);
  h->image.nobjects = hd->nobjects;
  h->image.relocated = relocated;
  h->image.trusted = p->trusted;
  return 0;
}

size_t fh_image_roots(fh_heap *h, void ***roots) {
  if (!h || !roots) {
    fh_error_set("fh_image_roots: %s is NULL", h ? "roots" : "heap");
    return 0;
  }
  if (!image_space_present(&h->image)) {
    *roots = NULL;
    return 0;
  }
  *roots = h->image.roots;
  return h->image.nroots;
}
