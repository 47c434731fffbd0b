/* A uffd context: one userfaultfd, its fault-delivery mode, and in
 * handler-thread mode the thread that reads fault events from it.  Also the
 * fork-child recreation. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "faultheap.h"
#include "uffd/uffd_abi.h"
#include "uffd/uffd_internal.h"

static uint64_t wanted_features(fh_uffd_mode mode, unsigned want) {
  uint64_t f = 0;
  if (mode == FH_UFFD_SIGBUS)
    f |= UFFD_FEATURE_SIGBUS;
  if (want & FH_UFFD_WANT_MOVE)
    f |= UFFD_FEATURE_MOVE;
  if (want & FH_UFFD_WANT_MINOR)
    f |= UFFD_FEATURE_MINOR_SHMEM;
  return f;
}

/* Open u->fd for u->mode.  SIGBUS mode prefers UFFD_USER_MODE_ONLY (works
 * unprivileged; kernel accesses fail with EFAULT in SIGBUS mode anyway).
 * Thread mode wants a fd that lets kernel faults block, falls back to a
 * user-mode-only one (user faults still served) and is nonblocking: poll()
 * on a blocking uffd reports POLLERR at once. */
static int open_fd(fh_uffd *u) {
  uint64_t want = wanted_features(u->mode, u->want);
  if (u->mode == FH_UFFD_SIGBUS) {
    u->fd = fh_uffd_open(want, 1, 0, &u->features, &u->user_mode_only);
  } else {
    u->fd = fh_uffd_open(want, 0, 1, &u->features, &u->user_mode_only);
    if (u->fd < 0)
      u->fd = fh_uffd_open(want, 1, 1, &u->features, &u->user_mode_only);
  }
  if (u->fd < 0)
    return -1;
  if (u->mode == FH_UFFD_SIGBUS && !(u->features & UFFD_FEATURE_SIGBUS)) {
    close(u->fd);
    u->fd = -1;
    errno = EOPNOTSUPP;
    return -1;
  }
  return 0;
}

static void *handler_main(void *p) {
  fh_uffd *u = p;
  struct uffd_msg msgs[16];
  for (;;) {
    struct pollfd pf[2] = {{.fd = u->fd, .events = POLLIN},
                           {.fd = u->stop_fd, .events = POLLIN}};
    int n = poll(pf, 2, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (pf[1].revents)
      break;
    if (pf[0].revents & (POLLERR | POLLNVAL))
      break;
    ssize_t got = read(u->fd, msgs, sizeof msgs);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR)
        continue; /* another reader, or a fault already resolved */
      break;
    }
    for (size_t i = 0; i < (size_t)got / sizeof msgs[0]; i++) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
        continue; /* we enable no other events */
      uintptr_t a = (uintptr_t)msgs[i].arg.pagefault.address;
      int write = (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;
      fh_uffd_dispatch_result r = fh_uffd_dispatch(a, 0, u, write);
      /* The resolver's own ioctl woke the waiter unless it found the page
       * present (the winner may have used DONTWAKE), failed (the access
       * retries and comes back), or there was no live range (the
       * unregistration woke it already; waking again is harmless). */
      if (r != FH_UFFD_D_HANDLED)
        fh_uffd_wake(u->fd, (void *)(a & ~(uintptr_t)(FH_UFFD_PAGE - 1)),
                     FH_UFFD_PAGE);
    }
  }
  return NULL;
}

int fh_uffd_thread_start(fh_uffd *u) {
  u->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (u->stop_fd < 0)
    return -1;
  /* The handler thread takes no asynchronous signals meant for the
   * program: block them all around pthread_create (the mask is inherited;
   * synchronous faults are delivered regardless). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&u->thread, NULL, handler_main, u);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e) {
    close(u->stop_fd);
    u->stop_fd = -1;
    errno = e;
    return -1;
  }
  u->thread_running = 1;
  return 0;
}

void fh_uffd_thread_stop(fh_uffd *u) {
  if (u->thread_running) {
    uint64_t one = 1;
    while (write(u->stop_fd, &one, sizeof one) < 0 && errno == EINTR)
      ;
    pthread_join(u->thread, NULL);
    u->thread_running = 0;
  }
  if (u->stop_fd >= 0) {
    close(u->stop_fd);
    u->stop_fd = -1;
  }
}

fh_uffd *fh_uffd_create(fh_uffd_mode mode, unsigned want) {
  if (mode != FH_UFFD_SIGBUS && mode != FH_UFFD_THREAD) {
    errno = EINVAL;
    return NULL;
  }
  unsigned caps = fh_capabilities();
  if (!(caps & FH_CAP_UFFD) || (mode == FH_UFFD_SIGBUS && !(caps & FH_CAP_UFFD_SIGBUS))) {
    errno = EOPNOTSUPP;
    return NULL;
  }
  fh_uffd *u = calloc(1, sizeof *u);
  if (!u)
    return NULL;
  u->mode = mode;
  u->want = want;
  u->fd = u->stop_fd = -1;
  if (open_fd(u) != 0)
    goto fail;
  if (mode == FH_UFFD_SIGBUS) {
    if (fh_uffd_sigbus_install() != 0)
      goto fail;
  } else if (fh_uffd_thread_start(u) != 0) {
    goto fail;
  }
  return u;
fail:;
  int e = errno;
  if (u->fd >= 0)
    close(u->fd);
  free(u);
  errno = e;
  return NULL;
}

int fh_uffd_reopen(fh_uffd *u) {
  if (!u) {
    errno = EINVAL;
    return -1;
  }
  /* The handler thread polls the fd: stop it before the fd goes. */
  fh_uffd_thread_stop(u);
  if (u->fd >= 0)
    close(u->fd); /* the last reference: the kernel drops every registration
                     and wakes every thread still waiting on a fault */
  u->fd = -1;
  if (open_fd(u) != 0)
    return -1;
  if (u->mode == FH_UFFD_THREAD && fh_uffd_thread_start(u) != 0) {
    int e = errno;
    close(u->fd);
    u->fd = -1;
    errno = e;
    return -1;
  }
  return 0;
}

void fh_uffd_destroy(fh_uffd *u) {
  if (!u)
    return;
  /* Retire first, while a handler thread still serves faults. */
  fh_uffd_ranges_retire_all(u);
  fh_uffd_thread_stop(u);
  if (u->fd >= 0)
    close(u->fd);
  free(u);
}

int fh_uffd_fd(const fh_uffd *u) { return u ? u->fd : -1; }
fh_uffd_mode fh_uffd_get_mode(const fh_uffd *u) { return u->mode; }
uint64_t fh_uffd_features(const fh_uffd *u) { return u ? u->features : 0; }
int fh_uffd_has_move(const fh_uffd *u) {
  return u && (u->features & UFFD_FEATURE_MOVE) &&
         (fh_capabilities() & FH_CAP_UFFD_MOVE);
}
int fh_uffd_kernel_faults(const fh_uffd *u) {
  return u && u->mode == FH_UFFD_THREAD && !u->user_mode_only;
}

void fh_uffd_get_stats(const fh_uffd *u, fh_uffd_stats *s) {
  memset(s, 0, sizeof *s);
  if (!u)
    return;
  s->faults = atomic_load(&u->faults);
  s->fault_ns_max = atomic_load(&u->fault_ns_max);
  s->fault_ns_total = atomic_load(&u->fault_ns_total);
  s->existed = atomic_load(&u->existed);
  s->failed = atomic_load(&u->failed);
  s->spurious = fh_uffd_ranges_spurious(u);
}

int fh_uffd_postfork_child(fh_uffd *u) {
  if (!u) {
    errno = EINVAL;
    return -1;
  }
  /* The inherited fd still refers to the parent's mm: anything done through
   * it (COPY!) would change the parent.  Closing our reference leaves the
   * parent's registrations alone (the file lives on in the parent). */
  if (u->fd >= 0)
    close(u->fd);
  u->fd = -1;
  /* The handler thread exists only in the parent. */
  u->thread_running = 0;
  if (u->stop_fd >= 0)
    close(u->stop_fd);
  u->stop_fd = -1;
  fh_uffd_ranges_forget(u);
  atomic_store(&u->faults, 0);
  atomic_store(&u->fault_ns_max, 0);
  atomic_store(&u->fault_ns_total, 0);
  atomic_store(&u->existed, 0);
  atomic_store(&u->failed, 0);
  if (open_fd(u) != 0)
    return -1;
  if (u->mode == FH_UFFD_SIGBUS) {
    fh_uffd_sigbus_postfork_child();
    return fh_uffd_sigbus_install();
  }
  return fh_uffd_thread_start(u);
}
