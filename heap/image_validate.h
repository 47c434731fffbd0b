/* Validation of a heap image held in memory (the loader maps the file; the
 * fuzz target hands in arbitrary bytes).  Nothing in the bytes is trusted:
 * every check that fails sets a message naming what is wrong and returns
 * -1, and no input makes it read outside [file, file + bytes). */
#ifndef FH_IMAGE_VALIDATE_H_
#define FH_IMAGE_VALIDATE_H_

#include "faultheap.h"
#include "heap/image_format.h"
#include "spaces/bitmap.h"

typedef struct image_type {
  fh_type t;          /* name and ref_offsets point into image_parsed storage */
  size_t min_payload; /* variable types: every ref offset must fit */
} image_type;

typedef struct image_parsed {
  const uint8_t *file;
  size_t bytes;
  image_header hdr;
  image_type *types;  /* [ntypes + 1], indexed by id; [0] unused */
  char *names;
  uint32_t *offsets;
  fh_bitmap starts;   /* by offset in the objects section (base 0): headers;
                         a trusted file's is its own bytes (map_bytes 0) */
  size_t nrefs;       /* non-null references (== relocations) */
  /* Objects saved hashed (HASH_MOVED): object start offset and the key in
   * their hash word, for the loader to reserve (heap/identity_hash.c)
   * without reading the mapped image. */
  struct image_hashed {
    uint64_t offset, key;
  } *hashed;
  size_t nhashed, hashed_cap;
  int trusted;        /* the per-reference checks were skipped (same build);
                         2: the CRC too (unchanged since saved) */
} image_parsed;

/* The header alone (magic, version, byte order, sizes against the file's
 * length file_bytes), from its first `avail` bytes: lets the loader refuse
 * a foreign or damaged file before reading all of it. */
int image_check_header(const uint8_t *file, size_t avail, size_t file_bytes);
/* Check everything; on success fill *out (free with image_parsed_free). */
int image_validate(const uint8_t *file, size_t bytes, image_parsed *out);
/* How much a load may take on trust (image_trust=): IMAGE_TRUST_UNCHANGED
 * is what the loader passes when the file also still carries the mtime its
 * saver stamped (heap/image_load.c): that file's CRC is not recomputed. */
enum { IMAGE_TRUST_NONE, IMAGE_TRUST_SAME_BUILD, IMAGE_TRUST_UNCHANGED };
/* The same, except that with trust >= IMAGE_TRUST_SAME_BUILD, a file whose header names this
 * build (image_build_id, non-zero) skips the per-reference checks (each
 * slot a relocated reference to an object start of the image, the
 * relocation bitmap marking exactly those, roots at object starts): about
 * 60% of validation.  Everything else is still checked: the CRC-32C over
 * the whole file, header, sections, type table, and the object walk (each
 * header a known type of a size that fits).  Only for files this process's
 * build wrote itself and that are kept as safe as the executable: the CRC
 * catches damage, not a file crafted to pass it with wild references. */
int image_validate_trusting(const uint8_t *file, size_t bytes, image_parsed *out,
                            int trust);
void image_parsed_free(image_parsed *p);

#endif
