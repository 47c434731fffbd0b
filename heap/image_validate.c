/* Heap image validation: header, checksum, section bounds, type table,
 * object walk, references, relocations, roots.  The order matters only for
 * which message a multiply-broken file gets: cheap identity checks first
 * (magic, version, byte order), then the checksum, then structure. */
#include "heap/image_validate.h"

#include <stdlib.h>
#include <string.h>

#include "heap/ephemeron.h"
#include "heap/error.h"
#include "heap/identity_hash.h"
#include "heap/object.h"
#include "heap/slot.h"

#define BAD(...) do { fh_error_set("image: " __VA_ARGS__); return -1; } while (0)

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Everything about the header that needs no other byte of the file.
 * `bytes` is the file's length; only the header's bytes are read. */
static int check_fields(const uint8_t *file, size_t bytes, image_header *h) {
  if (bytes < 8) BAD("truncated: %zu bytes, too short for a faultheap image", bytes);
  if (memcmp(file, IMAGE_MAGIC, 8) != 0) BAD("bad magic: not a faultheap image file");
  if (bytes < sizeof *h) BAD("truncated: %zu bytes, shorter than the image header", bytes);
  memcpy(h, file, sizeof *h);
  if (h->version != IMAGE_VERSION)
    BAD("format version %u, but this build reads version %u", h->version, IMAGE_VERSION);
  if (h->endian != IMAGE_ENDIAN_LITTLE)
    BAD("byte order mismatch: the image was written on a big-endian machine");
  if (h->pointer_bytes != sizeof(void *))
    BAD("pointer size %u, but this build uses %zu-byte pointers", h->pointer_bytes,
        sizeof(void *));
  if (h->header_bytes != IMAGE_HEADER_BYTES)
    BAD("header size %u, expected %u", h->header_bytes, IMAGE_HEADER_BYTES);
  if (h->tag_immediate_mask > 7 || h->tag_pointer_mask > 7 ||
      (h->tag_immediate_mask & h->tag_pointer_mask))
    BAD("tag masks 0x%llx (immediate) and 0x%llx (pointer) are not disjoint low bits",
        (unsigned long long)h->tag_immediate_mask, (unsigned long long)h->tag_pointer_mask);
  if (bytes < IMAGE_HEADER_BYTES || h->file_bytes > bytes)
    BAD("truncated: the file has %zu bytes, its header says %llu", bytes,
        (unsigned long long)h->file_bytes);
  if (h->file_bytes < bytes)
    BAD("trailing data: the file has %zu bytes, its header says %llu", bytes,
        (unsigned long long)h->file_bytes);
  return 0;
}

int image_check_header(const uint8_t *file, size_t avail, size_t file_bytes) {
  image_header h;
  if (avail < sizeof h && avail < file_bytes) return check_fields(file, avail, &h);
  return check_fields(file, file_bytes, &h);
}

static int check_identity(const uint8_t *file, size_t bytes, image_header *h, int crc_too) {
  if (check_fields(file, bytes, h) < 0) return -1;
  if (!crc_too) return 0;
  uint32_t crc = image_file_crc(file, bytes);
  if (crc != h->crc32c)
    BAD("checksum mismatch (CRC-32C %08x, header says %08x): the file is corrupt", crc,
        h->crc32c);
  return 0;
}

static int section_in_file(const image_header *h, const char *what, uint64_t off,
                           uint64_t len) {
  if ((off & 7) || off < IMAGE_HEADER_BYTES || off > h->file_bytes ||
      len > h->file_bytes - off)
    BAD("out-of-bounds section: %s at offset %llu, %llu bytes, in a %llu-byte file", what,
        (unsigned long long)off, (unsigned long long)len, (unsigned long long)h->file_bytes);
  return 0;
}

static int check_sections(const image_header *h) {
  if (h->objects_offset != IMAGE_HEADER_BYTES)
    BAD("objects section at offset %llu, expected %u", (unsigned long long)h->objects_offset,
        IMAGE_HEADER_BYTES);
  if (h->objects_bytes & 7) BAD("objects section size %llu is not a multiple of 8",
                                (unsigned long long)h->objects_bytes);
  if (section_in_file(h, "objects", h->objects_offset, h->objects_bytes) < 0) return -1;
  uint64_t padded = (h->objects_bytes + IMAGE_PAGE - 1) & ~(uint64_t)(IMAGE_PAGE - 1);
  if (h->nroots > h->file_bytes / 8) BAD("out-of-bounds section: %llu roots cannot fit",
                                        (unsigned long long)h->nroots);
  if (section_in_file(h, "objects (padded)", h->objects_offset, padded) < 0 ||
      section_in_file(h, "types", h->types_offset, h->types_bytes) < 0 ||
      section_in_file(h, "relocations", h->relocs_offset, h->relocs_bytes) < 0 ||
      section_in_file(h, "roots", h->roots_offset, h->nroots * 8) < 0)
    return -1;
  uint64_t roots_end = h->roots_offset + h->nroots * 8;
  if (h->types_offset != h->objects_offset + padded ||
      h->relocs_offset != h->types_offset + h->types_bytes ||
      h->roots_offset != h->relocs_offset + h->relocs_bytes)
    BAD("sections overlap, leave gaps or are out of order");
  /* The optional object starts and hashed objects follow the roots, or
   * nothing does. */
  if (!h->starts_bytes) {
    if (h->starts_offset || h->hashed_offset || h->nhashed || h->file_bytes != roots_end)
      BAD("sections overlap, leave gaps or are out of order");
  } else {
    if (h->nhashed > h->file_bytes / 16)
      BAD("out-of-bounds section: %llu hashed objects cannot fit", (unsigned long long)h->nhashed);
    if (section_in_file(h, "object starts", h->starts_offset, h->starts_bytes) < 0 ||
        section_in_file(h, "hashed objects", h->hashed_offset, h->nhashed * 16) < 0)
      return -1;
    if (h->starts_offset != roots_end || h->hashed_offset != h->starts_offset + h->starts_bytes ||
        h->file_bytes != h->hashed_offset + h->nhashed * 16)
      BAD("sections overlap, leave gaps or are out of order");
    if (h->starts_bytes != image_relocs_bytes_for(h->objects_bytes))
      BAD("object-starts bitmap has %llu bytes; %llu bytes of objects need %zu",
          (unsigned long long)h->starts_bytes, (unsigned long long)h->objects_bytes,
          image_relocs_bytes_for(h->objects_bytes));
  }
  if (h->relocs_bytes != image_relocs_bytes_for(h->objects_bytes))
    BAD("relocation bitmap has %llu bytes; %llu bytes of objects need %zu",
        (unsigned long long)h->relocs_bytes, (unsigned long long)h->objects_bytes,
        image_relocs_bytes_for(h->objects_bytes));
  /* The base must be a 2 MiB-aligned user address with room for the image
   * (the spaces after it keep their 2 MiB alignment). */
  if (!h->preferred_base || (h->preferred_base & (IMAGE_BASE_ALIGN - 1)) ||
      h->preferred_base >= ((uint64_t)1 << 47) ||
      h->objects_bytes > ((uint64_t)1 << 47) - h->preferred_base)
    BAD("preferred base address 0x%llx is not a usable 2 MiB-aligned user address",
        (unsigned long long)h->preferred_base);
  if (h->ntypes > IMAGE_MAX_TYPES) BAD("type table holds %llu types, more than %u",
                                       (unsigned long long)h->ntypes, IMAGE_MAX_TYPES);
  return 0;
}

static int parse_one_type(image_parsed *p, uint64_t id, const uint8_t *rec, size_t left,
                          size_t *used, char **name_out, uint32_t **off_out) {
  if (left < 20) BAD("type table: type %llu runs past the section", (unsigned long long)id);
  uint64_t size = rd64(rec);
  uint32_t flags = rd32(rec + 8), nrefs = rd32(rec + 12), name_len = rd32(rec + 16);
  if (name_len == 0 || name_len > IMAGE_MAX_NAME)
    BAD("type table: type %llu has a name of %u bytes (1..%u allowed)", (unsigned long long)id,
        name_len, IMAGE_MAX_NAME);
  uint64_t need = 20 + (uint64_t)name_len + 4 * (uint64_t)nrefs;
  need = (need + 7) & ~(uint64_t)7;
  if (need > left) BAD("type table: type %llu runs past the section", (unsigned long long)id);
  const char *name = (const char *)rec + 20;
  if (memchr(name, 0, name_len)) BAD("type table: type %llu has a NUL byte in its name",
                                     (unsigned long long)id);
  char *n = *name_out;
  memcpy(n, name, name_len);
  n[name_len] = 0;
  *name_out += name_len + 1;
  image_type *ti = &p->types[id];
  ti->t.name = n;
  /* The ephemeron flag only on the built-in type: its layout is then
   * checked against the heap's own when the table is registered. */
  uint32_t allowed = FH_TYPE_REF_ARRAY | (strcmp(n, EPHEMERON_TYPE_NAME) ? 0 : TYPE_EPHEMERON);
  if (flags & ~allowed) BAD("type table: type %s has unknown flags 0x%x", n, flags);
  if (size >= FH__VAR_SIZE) BAD("type table: type %s has size %llu, too large", n,
                                (unsigned long long)size);
  if (nrefs && (flags & FH_TYPE_REF_ARRAY))
    BAD("type table: type %s has both reference offsets and FH_TYPE_REF_ARRAY", n);
  ti->t.size = (size_t)size;
  ti->t.flags = flags;
  ti->t.nrefs = nrefs;
  ti->t.ref_offsets = *off_out;
  const uint8_t *offs = rec + 20 + name_len;
  for (uint32_t i = 0; i < nrefs; i++) {
    uint32_t o = rd32(offs + 4 * (size_t)i);
    if (o & 7) BAD("type table: type %s has a misaligned reference offset %u", n, o);
    if (size && (uint64_t)o + 8 > size)
      BAD("type table: type %s has reference offset %u outside its %llu bytes", n, o,
          (unsigned long long)size);
    for (uint32_t k = 0; k < i; k++)
      if ((*off_out)[k] == o) BAD("type table: type %s lists reference offset %u twice", n, o);
    (*off_out)[i] = o;
    if ((size_t)o + 8 > ti->min_payload) ti->min_payload = (size_t)o + 8;
  }
  *off_out += nrefs;
  for (uint64_t k = 20 + name_len + 4 * (uint64_t)nrefs; k < need; k++)
    if (rec[k]) BAD("type table: type %s has non-zero padding", n);
  *used = need;
  return 0;
}

static int parse_types(image_parsed *p) {
  const image_header *h = &p->hdr;
  const uint8_t *sec = p->file + h->types_offset;
  if (image_crc32c(0, sec, h->types_bytes) != h->types_digest)
    BAD("type table digest mismatch: the type table is not the one the header names");
  /* Each record is at least 24 bytes: a count past that is a lie. */
  if (h->ntypes > h->types_bytes / 24)
    BAD("type table: %llu types cannot fit in %llu bytes", (unsigned long long)h->ntypes,
        (unsigned long long)h->types_bytes);
  /* One block for the records, offsets and names (image_parsed_free frees
   * p->types): fewer fresh allocator pages touched at boot. */
  size_t types_sz = (size_t)(h->ntypes + 1) * sizeof *p->types;
  size_t offs_sz = (h->types_bytes / 4 + 1) * sizeof *p->offsets;
  p->types = calloc(1, types_sz + offs_sz + h->types_bytes + 1);
  if (!p->types) BAD("out of memory parsing the type table");
  p->offsets = (uint32_t *)((char *)p->types + types_sz);
  p->names = (char *)p->offsets + offs_sz;
  char *names = p->names;
  uint32_t *offs = p->offsets;
  size_t at = 0;
  for (uint64_t id = 1; id <= h->ntypes; id++) {
    size_t used;
    if (parse_one_type(p, id, sec + at, h->types_bytes - at, &used, &names, &offs) < 0)
      return -1;
    at += used;
  }
  if (at != h->types_bytes)
    BAD("type table: %llu trailing bytes after %llu types",
        (unsigned long long)(h->types_bytes - at), (unsigned long long)h->ntypes);
  return 0;
}

static int walk_objects(image_parsed *p) {
  const image_header *h = &p->hdr;
  const uint8_t *obj = p->file + h->objects_offset;
  uint64_t n = 0, end = h->objects_bytes;
  for (uint64_t at = 0; at < end; n++) {
    uint64_t hd = rd64(obj + at);
    uint32_t type = hdr_type(hd);
    size_t payload = hdr_payload(hd);
    /* The one flag state an image holds: hashed and moved (its key in the
     * word after it); no salt, nothing above the type id. */
    if (((hd & 0xFF) && (hd & 0xFF) != FH_HDR_HASH_BITS) || (hd & 0xFF000000u))
      BAD("object at offset %llu: header 0x%llx has flag bits set",
          (unsigned long long)at, (unsigned long long)hd);
    if (type == 0 || type > h->ntypes)
      BAD("object at offset %llu: unknown type id %u (the image defines %llu types)",
          (unsigned long long)at, type, (unsigned long long)h->ntypes);
    const image_type *ti = &p->types[type];
    if (ti->t.size && payload != ti->t.size)
      BAD("object at offset %llu: %zu bytes, but type %s has fixed size %zu",
          (unsigned long long)at, payload, ti->t.name, ti->t.size);
    if (payload < ti->min_payload)
      BAD("object at offset %llu: %zu bytes cannot hold the references of type %s",
          (unsigned long long)at, payload, ti->t.name);
    uint64_t total = obj_bytes(hd);
    if (total > end - at)
      BAD("object at offset %llu (%zu bytes) runs past the end of the objects section",
          (unsigned long long)at, payload);
    if (hd & FH_HDR_HASH_MOVED) {
      uint64_t key = rd64(obj + at + obj_total_bytes(payload));
      if (key == 0 || key >> (48 + IDHASH_SALT_BITS))
        BAD("object at offset %llu: identity hash key 0x%llx is out of range",
            (unsigned long long)at, (unsigned long long)key);
      if (p->nhashed == p->hashed_cap) {
        size_t cap = p->hashed_cap ? 2 * p->hashed_cap : 64;
        struct image_hashed *m = realloc(p->hashed, cap * sizeof *m);
        if (!m) BAD("out of memory listing %zu hashed objects", p->nhashed);
        p->hashed = m;
        p->hashed_cap = cap;
      }
      p->hashed[p->nhashed++] = (struct image_hashed){at, key};
    }
    /* Single-threaded here: a plain read-modify-write, not the atomic
     * fetch-or of bitmap_set (which costs several ms over 1M objects). */
    _Atomic uint64_t *w = &p->starts.words[at >> 9];
    atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) |
                                 (uint64_t)1 << ((at >> 3) & 63), memory_order_relaxed);
    at += total;
  }
  if (n != h->nobjects)
    BAD("object walk found %llu objects, the header says %llu", (unsigned long long)n,
        (unsigned long long)h->nobjects);
  return 0;
}

/* A trusted file's starts bitmap and hashed-object list, with the checks
 * that cost nothing next to reading them: as many starts as objects, the
 * first at offset 0, none past the end; each hashed record at a start,
 * its key in range and the same as in the object's hash word.  The bitmap
 * is the file's own bytes, borrowed (map_bytes 0: bitmap_destroy leaves
 * it), not a copy: copying it faulted in fresh pages at every boot, and
 * the loader keeps the file mapped for the image space instead. */
static int take_saved_starts(image_parsed *p) {
  const image_header *h = &p->hdr;
  const uint8_t *bits = p->file + h->starts_offset;
  uint64_t n = 0;
  for (uint64_t i = 0; i < h->starts_bytes; i += 8) n += (uint64_t)__builtin_popcountll(rd64(bits + i));
  uint64_t words = h->objects_bytes / 8, last = words ? words - 1 : 0;
  int tail = words && (last >> 6) < h->starts_bytes / 8 &&
             (rd64(bits + (last >> 6) * 8) >> (last & 63) >> 1) != 0;
  if (n != h->nobjects || (words && !(bits[0] & 1)) || tail)
    BAD("object-starts bitmap marks %llu objects, the header says %llu",
        (unsigned long long)n, (unsigned long long)h->nobjects);
  if (p->starts.words) bitmap_destroy(&p->starts); /* a walk's, if any */
  p->starts = (fh_bitmap){.base = 0, .shift = 3,
                          .nbits = (h->objects_bytes ? h->objects_bytes : 8) >> 3,
                          .words = (_Atomic uint64_t *)(uintptr_t)bits, .map_bytes = 0};
  if (!h->nhashed) return 0;
  p->hashed = malloc(h->nhashed * sizeof *p->hashed);
  if (!p->hashed) BAD("out of memory listing %llu hashed objects", (unsigned long long)h->nhashed);
  p->hashed_cap = (size_t)h->nhashed;
  const uint8_t *rec = p->file + h->hashed_offset;
  const uint8_t *obj = p->file + h->objects_offset;
  for (uint64_t i = 0; i < h->nhashed; i++, rec += 16) {
    uint64_t at = rd64(rec), key = rd64(rec + 8);
    if (at >= h->objects_bytes || (at & 7) || !((bits[at >> 6] >> ((at >> 3) & 7)) & 1))
      BAD("hashed object %llu at offset %llu is not an object start", (unsigned long long)i,
          (unsigned long long)at);
    uint64_t hd = rd64(obj + at);
    uint64_t end = at + obj_total_bytes(hdr_payload(hd));
    if (!(hd & FH_HDR_HASH_MOVED) || end > h->objects_bytes - 8 || rd64(obj + end) != key ||
        key == 0 || key >> (48 + IDHASH_SALT_BITS))
      BAD("hashed object at offset %llu: bad header or identity hash key",
          (unsigned long long)at);
    p->hashed[p->nhashed++] = (struct image_hashed){at, key};
  }
  return 0;
}

typedef struct ref_check {
  image_parsed *p;
  const uint8_t *obj, *relocs;
  size_t nrefs;
} ref_check;

static int reloc_bit(const uint8_t *relocs, uint64_t word) {
  return (relocs[word >> 3] >> (word & 7)) & 1;
}

static int check_slot(ref_check *c, uint64_t slot) {
  const image_header *h = &c->p->hdr;
  slot_tags tags = {h->tag_immediate_mask, h->tag_pointer_mask};
  uint64_t v = slot_target(tags, rd64(c->obj + slot));
  int bit = reloc_bit(c->relocs, slot >> 3);
  if (!v) {
    if (bit) BAD("relocation on a null reference or an immediate at offset %llu",
                 (unsigned long long)slot);
    return 0;
  }
  if (!bit) BAD("reference at offset %llu has no relocation", (unsigned long long)slot);
  uint64_t t = v - h->preferred_base;
  if (v < h->preferred_base || t >= h->objects_bytes || t < 8)
    BAD("out-of-bounds reference at offset %llu: 0x%llx lies outside the image",
        (unsigned long long)slot, (unsigned long long)v);
  if ((t & 7) || !bitmap_test(&c->p->starts, t - 8))
    BAD("reference at offset %llu points inside an object, not at one",
        (unsigned long long)slot);
  c->nrefs++;
  return 0;
}

static int check_refs(image_parsed *p) {
  const image_header *h = &p->hdr;
  ref_check c = {p, p->file + h->objects_offset, p->file + h->relocs_offset, 0};
  for (uint64_t at = 0; at < h->objects_bytes;) {
    uint64_t hd = rd64(c.obj + at);
    const image_type *ti = &p->types[hdr_type(hd)];
    size_t payload = hdr_payload(hd);
    uint64_t pay = at + FH_HEADER_BYTES;
    for (uint32_t i = 0; i < ti->t.nrefs; i++)
      if (check_slot(&c, pay + ti->t.ref_offsets[i]) < 0) return -1;
    if (ti->t.flags & FH_TYPE_REF_ARRAY)
      for (size_t k = 0; k + 8 <= payload; k += 8)
        if (check_slot(&c, pay + k) < 0) return -1;
    at += obj_bytes(hd);
  }
  /* Every marked word has been matched to a reference slot; any other
   * marked word (a header, a scalar) would be corrupted by relocation. */
  size_t marked = 0;
  for (uint64_t i = 0; i < h->relocs_bytes; i += 8)
    marked += (size_t)__builtin_popcountll(rd64(c.relocs + i));
  if (marked != c.nrefs)
    BAD("relocation bitmap marks %zu words that are not references",
        marked > c.nrefs ? marked - c.nrefs : 0);
  if (c.nrefs != h->nrelocs)
    BAD("%zu references found, the header says %llu relocations", c.nrefs,
        (unsigned long long)h->nrelocs);
  p->nrefs = c.nrefs;
  return 0;
}

static int check_roots(image_parsed *p) {
  const image_header *h = &p->hdr;
  for (uint64_t i = 0; i < h->nroots; i++) {
    uint64_t r = rd64(p->file + h->roots_offset + 8 * i);
    if (!r) continue;
    if (r < 8 || r >= h->objects_bytes || (r & 7) || !bitmap_test(&p->starts, r - 8))
      BAD("root %llu (offset %llu) is not an object of the image", (unsigned long long)i,
          (unsigned long long)r);
  }
  return 0;
}

int image_validate(const uint8_t *file, size_t bytes, image_parsed *out) {
  return image_validate_trusting(file, bytes, out, 0);
}

int image_validate_trusting(const uint8_t *file, size_t bytes, image_parsed *out,
                            int trust) {
  memset(out, 0, sizeof *out);
  out->file = file;
  out->bytes = bytes;
  uint64_t mine = trust >= IMAGE_TRUST_SAME_BUILD ? image_build_id() : 0;
  image_header peek;
  /* Unchanged since this build saved it (the loader compared the stamp):
   * no CRC.  The header fields are checked all the same. */
  int unchanged = trust >= IMAGE_TRUST_UNCHANGED && mine && bytes >= sizeof peek &&
                  (memcpy(&peek, file, sizeof peek), peek.build_id == mine);
  if (check_identity(file, bytes, &out->hdr, !unchanged) < 0 || check_sections(&out->hdr) < 0 ||
      parse_types(out) < 0)
    goto fail;
  int own = mine && out->hdr.build_id == mine;
  if ((!own || !out->hdr.starts_bytes) &&
      bitmap_init(&out->starts, 0, out->hdr.objects_bytes ? out->hdr.objects_bytes : 8, 3) < 0) {
    fh_error_set("image: cannot map the object-starts bitmap");
    goto fail;
  }
  if (own) {
    /* This build's own file, its CRC checked: the saved object starts
     * instead of the walk (fhscheme's 14,000 objects: ~65 us). */
    if (out->hdr.starts_bytes ? take_saved_starts(out) < 0 : walk_objects(out) < 0) goto fail;
    out->trusted = unchanged ? 2 : 1;
    out->nrefs = (size_t)out->hdr.nrelocs;
    return 0;
  }
  if (walk_objects(out) < 0) goto fail;
  if (check_refs(out) < 0 || check_roots(out) < 0) goto fail;
  return 0;
fail:
  image_parsed_free(out);
  return -1;
}

void image_parsed_free(image_parsed *p) {
  free(p->types); /* names and offsets are in its block */
  free(p->hashed);
  p->hashed = NULL;
  p->nhashed = p->hashed_cap = 0;
  if (p->starts.words) bitmap_destroy(&p->starts);
  p->types = NULL;
  p->names = NULL;
  p->offsets = NULL;
}
