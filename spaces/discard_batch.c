/* Batched MADV_DONTNEED (see discard_batch.h). */
#include "spaces/discard_batch.h"

#include <errno.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "heap/sys.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* 1 = process_madvise works or was not tried yet, 0 = the kernel refused
 * it (then one madvise per range, for the life of the process). */
static _Atomic int vector_ok = 1;

/* Bytes advised by one process_madvise over the vector, or -1.  A pidfd of
 * our own process is opened per call (two cheap syscalls per vector of up
 * to 512 ranges) rather than cached: a cached one would name the parent
 * after fork(), whose memory the child must never advise. */
static long advise_vector(const discard_batch *b) {
  int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (pidfd < 0) return -1;
  long r = sys_process_madvise(pidfd, b->iov, (size_t)b->n, MADV_DONTNEED);
  int saved = errno;
  close(pidfd);
  errno = saved;
  return r;
}

void discard_batch_flush(discard_batch *b) {
  if (!b->n) return;
  long r = -1;
  if (atomic_load_explicit(&vector_ok, memory_order_relaxed)) {
    r = advise_vector(b);
    /* Refused outright (an older kernel, seccomp, no pidfd): stop trying. */
    if (r < 0 && (errno == EINVAL || errno == ENOSYS || errno == EPERM || errno == EBADF))
      atomic_store_explicit(&vector_ok, 0, memory_order_relaxed);
  }
  /* Refused or partial: whatever was not advised, one call per range
   * (advising a range twice is harmless).  A range the kernel would not
   * take back at all costs memory only: a batch holds pages nobody reads
   * again (from-space, from_ledger.c); what must read as zero afterwards
   * sets zero_on_failure, or goes through reserve_discard. */
  if (r != (long)b->bytes) {
    size_t skip = r > 0 ? (size_t)r : 0;
    for (unsigned i = 0; i < b->n; i++) {
      size_t len = b->iov[i].iov_len;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      char *p = (char *)b->iov[i].iov_base + skip;
      if (sys_madvise(p, len - skip, MADV_DONTNEED) != 0 && b->zero_on_failure) {
        memset(p, 0, len - skip);
        b->failures++;
      }
      skip = 0;
    }
  }
  b->n = 0;
  b->bytes = 0;
}

void discard_batch_add(discard_batch *b, uintptr_t begin, size_t len) {
  if (!len) return;
  struct iovec *last = b->n ? &b->iov[b->n - 1] : NULL;
  int joins = last && (uintptr_t)last->iov_base + last->iov_len == begin;
  if (b->bytes + len > DISCARD_BATCH_BYTES || (!joins && b->n == DISCARD_BATCH_MAX)) {
    discard_batch_flush(b);
    joins = 0;
  }
  if (joins)
    last->iov_len += len;
  else
    b->iov[b->n++] = (struct iovec){(void *)begin, len};
  b->bytes += len;
}
