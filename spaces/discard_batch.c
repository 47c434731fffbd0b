/* Batched MADV_DONTNEED (see discard_batch.h). */
#include "spaces/discard_batch.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* 0 = not tried yet, 1 = process_madvise works, -1 = use madvise. */
static _Atomic int vector_mode;

/* One process_madvise over the whole vector: 0 when every byte was
 * advised.  A pidfd of our own process is opened per call (two cheap
 * syscalls per vector of up to 512 ranges) rather than cached: a cached one
 * would name the parent after fork(), whose memory the child must never
 * advise. */
static int advise_vector(const discard_batch *b, size_t total) {
  int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (pidfd < 0) return -1;
  long r = syscall(SYS_process_madvise, pidfd, b->iov, (size_t)b->n, MADV_DONTNEED, 0u);
  int saved = errno;
  close(pidfd);
  errno = saved;
  return r == (long)total ? 0 : -1;
}

void discard_batch_flush(discard_batch *b) {
  if (!b->n) return;
  size_t total = 0;
  for (unsigned i = 0; i < b->n; i++) total += b->iov[i].iov_len;
  int mode = atomic_load_explicit(&vector_mode, memory_order_relaxed);
  int done = 0;
  if (mode >= 0) {
    done = advise_vector(b, total) == 0;
    if (mode == 0)
      atomic_store_explicit(&vector_mode, done ? 1 : -1, memory_order_relaxed);
  }
  /* Refused (an older kernel, seccomp) or partial: the rest one call per
   * range; advising a range twice is harmless. */
  if (!done)
    for (unsigned i = 0; i < b->n; i++) madvise(b->iov[i].iov_base, b->iov[i].iov_len, MADV_DONTNEED);
  b->bytes_discarded += total;
  b->n = 0;
}

void discard_batch_add(discard_batch *b, uintptr_t begin, size_t len) {
  if (!len) return;
  if (b->n) {
    struct iovec *last = &b->iov[b->n - 1];
    if ((uintptr_t)last->iov_base + last->iov_len == begin) {
      last->iov_len += len;
      return;
    }
  }
  if (b->n == DISCARD_BATCH_MAX) discard_batch_flush(b);
  b->iov[b->n++] = (struct iovec){(void *)begin, len};
}
