/* Per-thread 4 KiB scratch pages for resolvers.
 *
 * A resolver builds a destination page and installs it with UFFDIO_COPY.
 * In SIGBUS mode it runs inside a signal handler on the faulting thread's
 * stack, so the page can come neither from malloc nor from the stack (which
 * may be a small sigaltstack).  The first call on a thread claims a page of
 * a pool by atomically setting a bit in a bitmap; the pool itself is mapped
 * on first use by whoever gets there first, with the raw mmap system call
 * (async-signal-safe), published by compare-and-swap.  When the pool is
 * exhausted the thread maps a private page of its own. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd/uffd.h"

#define POOL_PAGES 256u /* 1 MiB of address space, NORESERVE */
#define POOL_WORDS (POOL_PAGES / 64u)

static _Atomic(uintptr_t) pool;
static _Atomic uint64_t pool_used[POOL_WORDS];

/* initial-exec: a static-TLS access is a plain load even in the shared
 * library, never a call into the dynamic loader (which may malloc). */
#define FH_TLS __thread __attribute__((tls_model("initial-exec")))
static FH_TLS void *tls_buf;
static FH_TLS int tls_own; /* 1: tls_buf was mapped for this thread alone */

static void *raw_map(size_t len) {
  long r = syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return (r == -1) ? NULL : (void *)r;
}

static uintptr_t get_pool(void) {
  uintptr_t p = atomic_load_explicit(&pool, memory_order_acquire);
  if (p)
    return p;
  void *m = raw_map((size_t)POOL_PAGES * FH_UFFD_PAGE);
  if (!m)
    return 0;
  uintptr_t expect = 0;
  if (atomic_compare_exchange_strong_explicit(&pool, &expect, (uintptr_t)m,
                                              memory_order_acq_rel,
                                              memory_order_acquire))
    return (uintptr_t)m;
  syscall(SYS_munmap, m, (size_t)POOL_PAGES * FH_UFFD_PAGE);
  return expect;
}

void *fh_uffd_thread_buf(void) {
  if (tls_buf)
    return tls_buf;
  uintptr_t p = get_pool();
  if (p) {
    for (unsigned w = 0; w < POOL_WORDS; w++) {
      uint64_t cur = atomic_load_explicit(&pool_used[w], memory_order_relaxed);
      while (~cur) {
        unsigned bit = (unsigned)__builtin_ctzll(~cur);
        if (atomic_compare_exchange_weak_explicit(
                &pool_used[w], &cur, cur | ((uint64_t)1 << bit),
                memory_order_acquire, memory_order_relaxed)) {
          tls_buf = (void *)(p + ((size_t)w * 64u + bit) * FH_UFFD_PAGE);
          tls_own = 0;
          return tls_buf;
        }
      }
    }
  }
  tls_buf = raw_map(FH_UFFD_PAGE);
  tls_own = tls_buf != NULL;
  return tls_buf;
}

void fh_uffd_thread_buf_release(void) {
  void *b = tls_buf;
  if (!b)
    return;
  tls_buf = NULL;
  if (tls_own) {
    munmap(b, FH_UFFD_PAGE);
    tls_own = 0;
    return;
  }
  uintptr_t p = atomic_load_explicit(&pool, memory_order_acquire);
  size_t idx = ((uintptr_t)b - p) / FH_UFFD_PAGE;
  /* Drop the contents so an idle pool costs no memory; the page stays
   * mapped (MADV_DONTNEED on anonymous memory reads back zeros). */
  madvise(b, FH_UFFD_PAGE, MADV_DONTNEED);
  atomic_fetch_and_explicit(&pool_used[idx / 64u],
                            ~((uint64_t)1 << (idx % 64u)), memory_order_release);
}

static pthread_key_t buf_key;
static pthread_once_t buf_key_once = PTHREAD_ONCE_INIT;
static int buf_key_err;

static void buf_key_dtor(void *v) {
  (void)v;
  fh_uffd_thread_buf_release();
}

static void buf_key_init(void) { buf_key_err = pthread_key_create(&buf_key, buf_key_dtor); }

int fh_uffd_thread_buf_prepare(void) {
  pthread_once(&buf_key_once, buf_key_init);
  if (buf_key_err) {
    errno = buf_key_err;
    return -1;
  }
  if (!fh_uffd_thread_buf()) {
    errno = ENOMEM;
    return -1;
  }
  /* any non-NULL value makes the destructor run at thread exit */
  int e = pthread_setspecific(buf_key, (void *)1);
  if (e) {
    errno = e;
    return -1;
  }
  return 0;
}
