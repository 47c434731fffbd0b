/* The on-disk format of a heap image (DESIGN.md section 6).
 *
 * A file is four sections after a one-page header, every offset and size a
 * multiple of 8 and every field little-endian (the only byte order the
 * loader accepts; the header records it so a big-endian file is refused by
 * name, not misread):
 *
 *   [0, 4096)            header (struct image_header, zero-padded)
 *   objects              page-aligned, so it can be mmapped from the file:
 *                        objects back to back as in a bump space (header
 *                        word + payload, 8-aligned, no fillers); every
 *                        reference holds preferred_base + the payload's
 *                        offset in this section, so at the preferred base no
 *                        word needs rewriting.  Zero-padded to a page.
 *   types                ntypes records, ids 1..ntypes in order:
 *                          u64 size, u32 flags, u32 nrefs, u32 name_len,
 *                          name bytes, nrefs x u32 offsets, zero pad to 8
 *   relocations          bitmap, one bit per 8-byte word of the objects
 *                        section: the word is a reference to relocate
 *   roots                nroots x u64: payload offset in the objects section
 *                        (>= 8), or 0 for a NULL root
 *   starts (optional)    bitmap as relocations: the word is an object's header
 *   hashed (optional)    nhashed x (u64 header offset, u64 key): the objects
 *                        saved hashed, by offset
 *
 * The two optional sections (starts_bytes 0: absent, as in files written
 * before them) repeat what the object walk finds; only a trusted load
 * (image_trust=same_build, this build's file) takes them instead of
 * walking, and an untrusted one walks and ignores them.
 *
 * The CRC-32C covers the header (with its crc field zero) followed by every
 * byte after it.  types_digest is the CRC-32C of the types section alone: it
 * names the type table in messages and lets tools compare two images'
 * types without parsing them.
 *
 * The preferred base is fixed (IMAGE_DEFAULT_BASE): every image prefers the
 * same address, so the first heap of a process that loads an image maps it
 * without relocation, whatever heap saved it. */
#ifndef FH_IMAGE_FORMAT_H_
#define FH_IMAGE_FORMAT_H_

#include <stddef.h>
#include <stdint.h>

#define IMAGE_MAGIC "FHIMAGE1"       /* 8 bytes, no NUL stored */
#define IMAGE_VERSION 1u
#define IMAGE_ENDIAN_LITTLE 0x01020304u /* as read on a little-endian host */
#define IMAGE_HEADER_BYTES 4096u
#define IMAGE_PAGE 4096u
#define IMAGE_BASE_ALIGN ((uint64_t)2 << 20)
#define IMAGE_DEFAULT_BASE ((uint64_t)0x200000000000) /* 32 TiB */
#define IMAGE_MAX_TYPES 65535u
#define IMAGE_MAX_NAME 255u

typedef struct image_header {
  char magic[8];
  uint32_t version;
  uint32_t header_bytes;   /* IMAGE_HEADER_BYTES */
  uint32_t pointer_bytes;  /* sizeof(void *) of the saver: 8 */
  uint32_t endian;         /* IMAGE_ENDIAN_LITTLE */
  uint32_t crc32c;         /* see above */
  uint32_t types_digest;   /* CRC-32C of the types section */
  uint64_t preferred_base; /* address of the objects section's first byte */
  uint64_t file_bytes;     /* the whole file */
  uint64_t objects_offset, objects_bytes; /* bytes used by objects (unpadded) */
  uint64_t types_offset, types_bytes;
  uint64_t relocs_offset, relocs_bytes;
  uint64_t roots_offset, nroots;
  uint64_t nobjects, ntypes, nrelocs;
  /* The saver's fh_options tag masks (what a reference slot may hold);
   * zero in files written before they existed, which had none. */
  uint64_t tag_immediate_mask, tag_pointer_mask;
  /* The saving library's build (image_build_id), zero in files written
   * before it existed or by a build without a build-id note: a load with
   * image_trust=same_build skips the per-reference checks only when it
   * equals the loader's own (and the CRC matches, as always). */
  uint64_t build_id;
  /* The optional sections (zero in files written before them). */
  uint64_t starts_offset, starts_bytes;
  uint64_t hashed_offset, nhashed;
  /* The modification time the saver gave the file (futimens after writing
   * it; zero in files written before it existed, or when that failed).  A
   * load with image_trust=unchanged of this build's file whose size and
   * st_mtim still equal it takes the file as unchanged since saved and
   * skips the CRC (heap/image_load.c): any write to the file moves its
   * mtime to the time of that write. */
  uint64_t stamp_sec, stamp_nsec;
} image_header;

/* CRC-32C (Castagnoli), as in iSCSI and ext4: crc = image_crc32c(crc, p, n),
 * starting from 0.  Uses the SSE4.2 instruction when the CPU has it. */
uint32_t image_crc32c(uint32_t crc, const void *p, size_t n);
/* The checksum a file's header should record: header with crc32c zeroed,
 * then the bytes from header_bytes to the end. */
uint32_t image_file_crc(const uint8_t *file, size_t bytes);

/* This build's identity (heap/image_trust.c): from the GNU build-id note
 * of the object this code is linked into; 0 when there is none. */
uint64_t image_build_id(void);

static inline size_t image_relocs_bytes_for(uint64_t objects_bytes) {
  return (size_t)(((objects_bytes / 8) + 63) / 64 * 8);
}

#endif
