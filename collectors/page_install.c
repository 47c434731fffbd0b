/* Installing built pages of a compaction, whatever the userfaultfd ioctls
 * do (collectors/mc.h: mc_install).
 *
 * A page marked PAGE_MAPPED must be present: a mutator waiting for it
 * goes on to read it, and at the end of the phase a page still missing
 * would become a page of zeroes.  So an install never gives up:
 *   1. UFFDIO_COPY, retried on any error (ENOMEM, EAGAIN, EINTR...) with a
 *      short backoff (INSTALL_RETRIES attempts, ~3 ms in all);
 *   2. still failing: the uffd is taken as broken for the rest of the
 *      phase (no installer tries an ioctl again), and the bytes go into a
 *      fresh anonymous mapping that mremap(MREMAP_FIXED) puts over the
 *      destination: that replaces the missing pages without any uffd
 *      ioctl, in a signal handler too (plain system calls).  It splits the
 *      moving space's VMA, which the next cycle's DONTUNMAP needs whole:
 *      the next pause copies the space aside and maps it afresh
 *      (mark_compact.c: move_aside), only after such a phase.  In thread
 *      mode the faulting thread sleeps in the kernel until a WAKE, which
 *      fails too: the end of the phase closes the uffd, which wakes every
 *      waiter (end_range);
 *   3. mremap failing as well (mmap refused, the VMA limit): report once
 *      on stderr and in fh_dump, and keep trying both ways with a longer
 *      backoff.  Waiting is all a mutator needing that page can do; no
 *      page is ever given up as zeroes. */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "collectors/mc.h"
#include "heap/sys.h"

#define INSTALL_RETRIES 6

/* Before try i + 2: a yield, then 40 us .. 2 ms (~3 ms in all). */
static void install_backoff(unsigned i) {
  static const long ns[INSTALL_RETRIES - 1] = {0, 20000, 100000, 400000, 1000000};
  if (i == 0 || i >= INSTALL_RETRIES - 1) {
    sched_yield();
  } else {
    struct timespec ts = {0, ns[i] * 2};
    nanosleep(&ts, NULL);
  }
}

void mc_mark_broken(mc_state *m, int err) {
  int zero = 0;
  atomic_compare_exchange_strong(&m->uffd_errno, &zero, err ? err : EIO);
  atomic_store_explicit(&m->uffd_broken, 1, memory_order_release);
}

/* Put len bytes from src at dst (registered, missing) without an ioctl.
 * 0, or -1 + errno with nothing changed. */
static int install_by_remap(mc_state *m, int fd, uint8_t *dst, const uint8_t *src, size_t len) {
  void *s = sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (s == MAP_FAILED) return -1;
  memcpy(s, src, len);
  if (sys_mremap(s, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == MAP_FAILED) {
    int e = errno;
    sys_munmap(s, len);
    errno = e;
    return -1;
  }
  atomic_store(&m->space_split, 1);
  atomic_fetch_add_explicit(&m->remap_pages, len / FWD_PAGE, memory_order_relaxed);
  /* Thread mode: whoever faulted here sleeps in the kernel.  A failing
   * WAKE leaves it to the uffd's close at the end of the phase. */
  fh_uffd_wake(fd, dst, len);
  return 0;
}

static void report_stuck(mc_state *m) {
  if (atomic_exchange(&m->install_stuck, 1)) return;
  static const char msg[] = "faultheap: concurrent_compact: a page can be installed neither "
                            "by userfaultfd nor by mremap; retrying\n";
  ssize_t w = write(2, msg, sizeof msg - 1); /* async-signal-safe */
  (void)w;
}

/* Install len bytes (whole pages) from src at dst, a registered range whose
 * pages nobody else installs (they are claimed). */
void mc_install(mc_state *m, int fd, uint8_t *dst, const uint8_t *src, size_t len) {
  size_t done = 0;
  for (;;) {
    if (!atomic_load_explicit(&m->uffd_broken, memory_order_acquire)) {
      for (unsigned i = 0; i < INSTALL_RETRIES; i++) {
        fh_uffd_res res;
        fh_uffd_status st = fh_uffd_copy(fd, dst + done, src + done, len - done, 0, &res);
        done += res.done;
        if (st == FH_UFFD_OK || st == FH_UFFD_EXISTED) return;
        if (atomic_load_explicit(&m->uffd_broken, memory_order_acquire)) break;
        if (i + 1 < INSTALL_RETRIES) {
          install_backoff(i);
        } else {
          mc_mark_broken(m, errno);
        }
      }
    }
    if (install_by_remap(m, fd, dst + done, src + done, len - done) == 0) return;
    report_stuck(m);
    /* Nothing worked: try the ioctl again too, it may have recovered. */
    atomic_store(&m->uffd_broken, 0);
    struct timespec ts = {0, 10000000L};
    nanosleep(&ts, NULL);
  }
}
