/* SIGBUS mode: the process-wide SIGBUS handler.
 *
 * With UFFD_FEATURE_SIGBUS the kernel answers a fault on a missing page of a
 * registered range with SIGBUS / BUS_ADRERR at the faulting address instead
 * of queueing an event.  The faulting thread resolves its own page in the
 * handler and returns, so the access is retried and now succeeds: no
 * context switch (art-cmc.md 2.8, 9.1).
 *
 * Any other SIGBUS (a truncated file mapping, a hardware error, a kill)
 * goes to whatever handler was installed before ours.  That handler is kept
 * in one of two slots, the index published atomically, so that
 * re-installation (when someone replaced our handler) never changes a slot
 * a running handler may be reading.
 *
 * Pitfalls the handler lives with (probed): a fault while SIGBUS is blocked
 * kills the process, and so does a nested fault inside this handler unless
 * SA_NODEFER; we do not set SA_NODEFER, so resolvers must touch no missing
 * registered page. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "uffd/uffd_internal.h"

static struct sigaction prev[2];
static _Atomic int prev_idx;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

static void chain(int sig, siginfo_t *si, void *uc) {
  const struct sigaction *old = &prev[atomic_load_explicit(&prev_idx, memory_order_acquire)];
  if (old->sa_flags & SA_SIGINFO) {
    if (old->sa_sigaction) {
      old->sa_sigaction(sig, si, uc);
      return;
    }
  } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
    old->sa_handler(sig);
    return;
  }
  /* Default action (an ignored fault-SIGBUS is forced to default by the
   * kernel too): restore SIG_DFL and re-raise.  The signal stays pending
   * while this handler runs with SIGBUS blocked, and kills on return, with
   * the right status and core dump. */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
  raise(sig);
}

/* A late SIGBUS is one-shot: after the handler returns the access meets an
 * ordinary page.  The same thread faulting at the same remembered address
 * over and over is something else (the memory was unmapped and reused, say
 * for a truncated file): after STALE_REPEATS in a row it goes to the
 * previous handler instead of looping forever.  Thread-local, initial-exec
 * (no allocation on first access in a signal handler; see pagebuf.c). */
#define STALE_REPEATS 64
static __thread __attribute__((tls_model("initial-exec"))) uintptr_t stale_addr;
static __thread __attribute__((tls_model("initial-exec"))) unsigned stale_repeats;

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
  int saved_errno = errno;
  if (si && si->si_code == BUS_ADRERR) {
    uintptr_t a = (uintptr_t)si->si_addr;
    switch (fh_uffd_dispatch(a, 1, NULL, -1)) {
    case FH_UFFD_D_STALE: /* the range is gone, even its context: retry */
      if (a == stale_addr && ++stale_repeats >= STALE_REPEATS) {
        stale_repeats = 0;
        break;
      }
      if (a != stale_addr)
        stale_addr = a, stale_repeats = 0;
      errno = saved_errno;
      return;
    case FH_UFFD_D_HANDLED:
    case FH_UFFD_D_SPURIOUS: /* range finished: the access retries */
      stale_addr = 0;
      errno = saved_errno;
      return;
    case FH_UFFD_D_FAILED: /* a resolver bug: let the old handler decide */
    case FH_UFFD_D_NOT_OURS:
      break;
    }
  }
  errno = saved_errno;
  chain(sig, si, uc);
}

int fh_uffd_sigbus_install(void) {
  pthread_mutex_lock(&install_lock);
  struct sigaction cur;
  if (sigaction(SIGBUS, NULL, &cur) != 0) {
    int e = errno;
    pthread_mutex_unlock(&install_lock);
    errno = e;
    return -1;
  }
  if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus) {
    pthread_mutex_unlock(&install_lock);
    return 0;
  }
  int next = 1 - atomic_load_explicit(&prev_idx, memory_order_relaxed);
  prev[next] = cur;
  atomic_store_explicit(&prev_idx, next, memory_order_release);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  int rc = sigaction(SIGBUS, &sa, NULL);
  int e = errno;
  pthread_mutex_unlock(&install_lock);
  errno = e;
  return rc;
}

void fh_uffd_sigbus_postfork_child(void) {
  /* Only the forking thread exists in the child; another parent thread
   * may have held the lock at the fork. */
  pthread_mutex_init(&install_lock, NULL);
}
