/* Giving many scattered page ranges back to the system at once.
 *
 * madvise(MADV_DONTNEED) of a page that other threads have touched flushes
 * their TLBs: a shootdown IPI per call, ~10 us per single-page call on this
 * VM while another thread runs.  process_madvise() takes a vector of ranges
 * and (Linux >= 6.13 for advice on the calling process itself, batched TLB
 * flushes since 6.16) pays that once per vector: ~0.6 us per range here
 * (fhbench pause; docs/architecture.md).  Where the kernel refuses it, the
 * batch falls back to one madvise per range, once and for all.
 *
 * A batch is plain memory owned by one thread at a time; not signal-safe. */
#ifndef FH_DISCARD_BATCH_H_
#define FH_DISCARD_BATCH_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define DISCARD_BATCH_MAX 512 /* ranges per system call (UIO_MAXIOV is 1024) */
/* Bytes per system call: the kernel caps a vector's total near 2 GiB
 * (MAX_RW_COUNT) and would advise only part of a larger one. */
#define DISCARD_BATCH_BYTES ((size_t)1 << 30)

typedef struct discard_batch {
  struct iovec iov[DISCARD_BATCH_MAX];
  unsigned n;
  size_t bytes; /* queued */
  /* Set by an owner whose pages must read as zero afterwards (the
   * large-object space): a range the kernel would not take back is zeroed
   * by hand and counted. */
  int zero_on_failure;
  uint64_t failures;
} discard_batch;

/* Queue [begin, begin + len) (page-aligned); a range touching the last one
 * queued extends it.  Flushes when the vector is full. */
void discard_batch_add(discard_batch *b, uintptr_t begin, size_t len);
/* Give every queued range back now. */
void discard_batch_flush(discard_batch *b);

#endif
