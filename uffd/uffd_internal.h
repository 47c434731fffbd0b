/* Private to uffd/: the context struct and the range table's dispatcher,
 * shared by context.c, ranges.c and sigbus.c. */
#ifndef FH_UFFD_INTERNAL_H_
#define FH_UFFD_INTERNAL_H_

#include <pthread.h>
#include <stdatomic.h>

#include "uffd/uffd.h"

struct fh_uffd {
  int fd;
  fh_uffd_mode mode;
  unsigned want;         /* FH_UFFD_WANT_* given at creation */
  uint64_t features;     /* enabled UFFD_FEATURE_* */
  int user_mode_only;    /* the fd was made with UFFD_USER_MODE_ONLY */
  /* handler-thread mode */
  int stop_fd;           /* eventfd that wakes the thread's poll() */
  int thread_running;
  pthread_t thread;
  /* statistics, updated by handlers */
  _Atomic uint64_t faults, fault_ns_max, fault_ns_total, existed, failed;
};

typedef enum {
  FH_UFFD_D_NOT_OURS,  /* no slot claims the address */
  FH_UFFD_D_HANDLED,   /* resolver ran and succeeded */
  FH_UFFD_D_SPURIOUS,  /* the range is retired: return and retry */
  FH_UFFD_D_FAILED,    /* resolver failed */
  FH_UFFD_D_STALE      /* SIGBUS only: no slot claims the address, but a
                          range once registered did: a late signal from
                          before its unregistration; return and retry */
} fh_uffd_dispatch_result;

/* Find the slot containing addr and run its resolver under the in-flight
 * accounting.  from_sigbus: only ranges of SIGBUS-mode contexts match;
 * otherwise only ranges of ctx.  Async-signal-safe. */
fh_uffd_dispatch_result fh_uffd_dispatch(uintptr_t addr, int from_sigbus,
                                         fh_uffd *ctx, int write);

/* Drop every slot of u without unregistering (fork child; single thread). */
void fh_uffd_ranges_forget(fh_uffd *u);
/* Retire every live slot of u (destroy). */
void fh_uffd_ranges_retire_all(fh_uffd *u);
/* Spurious faults counted in u's current (live or retired) slots. */
uint64_t fh_uffd_ranges_spurious(const fh_uffd *u);
/* Late SIGBUSes answered FH_UFFD_D_STALE so far (tests). */
uint64_t fh_uffd_stale_faults(void);
/* Reset sigbus.c's lock in a fork child. */
void fh_uffd_sigbus_postfork_child(void);
/* Start / stop the handler thread of a thread-mode context. */
int fh_uffd_thread_start(fh_uffd *u);
void fh_uffd_thread_stop(fh_uffd *u);

#endif
