/* uffd/: the userfaultfd layer.  Pages and ranges only; nothing here knows
 * what an object is.
 *
 * Contract, in the order a compactor uses it:
 *
 * 1. Probe.  fh_capabilities() (public) and fh_uffd_caps() (details) run the
 *    probe once per process and cache it.  FH_UFFD_DISABLE=1 in the
 *    environment, or fh_uffd_force_disable(1), make them report no
 *    userfaultfd (FH_CAP_DONTUNMAP is still reported: it is not uffd).
 *    fh_uffd_print_caps() writes one line, including why uffd is missing.
 *
 * 2. Context.  fh_uffd_create(mode) opens a userfaultfd (always O_CLOEXEC,
 *    never an EVENT_* feature) and, in FH_UFFD_SIGBUS mode, installs the
 *    process-wide SIGBUS handler; in FH_UFFD_THREAD mode it starts a handler
 *    thread that polls the (nonblocking) fd.  Only thread mode on a fd made
 *    without UFFD_USER_MODE_ONLY lets kernel accesses (read() into a missing
 *    page) block and be resolved: fh_uffd_kernel_faults() says whether that
 *    holds.  In SIGBUS mode they fail with EFAULT.
 *
 * 3. Ranges.  fh_uffd_range_add() registers a page-aligned range (MISSING
 *    mode, optionally MINOR) and publishes it, with its resolver, in a
 *    process-wide fixed table that fault handlers read without locks.  A
 *    fault on a missing page of the range calls
 *        resolve(arg, &fault)
 *    on the faulting thread inside its SIGBUS handler, or on the handler
 *    thread.  The resolver installs the page (fh_uffd_copy / _zeropage /
 *    _move / _continue on fault->fd) and returns FH_UFFD_RESOLVED, or
 *    FH_UFFD_RESOLVED_EXISTED when the page was already there (EEXIST: it
 *    lost a race; the dispatcher then issues UFFDIO_WAKE so that threads
 *    waiting on a winner that used DONTWAKE are released), or
 *    FH_UFFD_RESOLVE_FAILED (SIGBUS mode: the signal goes to the previous
 *    handler, normally death; thread mode: counted, and the waiter is woken
 *    so the access retries).
 *    The resolver may run concurrently on several threads for the same page,
 *    and in a signal handler: it must take no lock, allocate nothing, and
 *    touch no registered missing page (a nested fault kills the process).
 *    fh_uffd_thread_buf() gives it a 4 KiB scratch page without malloc.
 *    In SIGBUS mode a thread that touches a missing page with SIGBUS
 *    blocked is killed by the kernel: never block SIGBUS in mutators.
 *
 * 4. Ending a phase.  fh_uffd_range_retire() runs the two-counter protocol:
 *    mark counter 0 done and wait for its handlers; unregister (late handlers
 *    now enter counter 1 and get ENOENT from their ioctls, which the ops
 *    report as FH_UFFD_ENOENT: resolvers should return FH_UFFD_RESOLVED then,
 *    the access retries on a now ordinary anonymous page); mark counter 1
 *    done and wait.  After it returns no resolver of the range is running or
 *    will run, so the range's side data may be freed.  Populate every page
 *    before retiring: a page still missing at unregistration becomes a fresh
 *    zero page.  A retired slot still claims its addresses so that a
 *    "spurious" late SIGBUS (a thread that faulted before unregistration and
 *    enters its handler after) just returns and retries the access.  Slots
 *    are freed (fh_uffd_destroy) and reused, so the table also keeps, for
 *    the life of the process and across fork, the address ranges that
 *    SIGBUS-mode contexts ever registered: a SIGBUS there that no slot
 *    claims is a late one and is retried too, never sent to the previous
 *    handler (unless the same thread keeps faulting at the same address:
 *    then the memory is something else now, see sigbus.c).
 *
 * 5. Fork.  A uffd belongs to the mm that created it.  Never fork with
 *    registrations live.  In the child call fh_uffd_postfork_child(u): it
 *    closes the inherited fd, forgets the child's copy of the range table and
 *    the handler thread (which does not exist in the child), and opens a
 *    fresh fd with the same mode and features.  The history of registered
 *    ranges (point 4) is kept in the child and in the parent.
 *
 * Errors: functions return 0 / a pointer / an fh_uffd_status; failures are
 * -1 / NULL / FH_UFFD_ERROR with errno set.  Nothing aborts.  Every ioctl on
 * a userfaultfd and every creation of one (not the cached capability probe)
 * goes through heap/sys.h, so tests can make any of them fail; what the
 * compactor then does is in collectors/concurrent_compact.c (install).
 *
 * Async-signal-safety: fh_uffd_copy, _zeropage, _move, _continue, _wake,
 * fh_uffd_thread_buf and everything the dispatcher calls are lock-free and
 * malloc-free.  Everything else is for ordinary context. */
#ifndef FH_UFFD_H_
#define FH_UFFD_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FH_UFFD_PAGE 4096u
#define FH_UFFD_MAX_RANGES 64 /* process-wide range slots */

/* ---- probe (probe.c) ---------------------------------------------------- */

/* how a userfaultfd could be created */
enum {
  FH_UFFD_VIA_NONE = 0,
  FH_UFFD_VIA_SYSCALL = 1, /* userfaultfd(2) */
  FH_UFFD_VIA_DEV = 2      /* /dev/userfaultfd + USERFAULTFD_IOC_NEW */
};

typedef struct fh_uffd_caps {
  unsigned caps;           /* FH_CAP_* bits, as fh_capabilities() */
  uint64_t features;       /* UFFDIO_API features the kernel offers */
  uint64_t range_ioctls;   /* ioctl mask of a private anonymous MISSING range */
  int disabled;            /* 1: FH_UFFD_DISABLE env, 2: fh_uffd_force_disable */
  int via_user_mode_only;  /* how a UFFD_USER_MODE_ONLY fd is made, or NONE */
  int via_kernel_faults;   /* how a fd that allows kernel faults is made, or NONE */
  int err_syscall_umo;     /* errno of userfaultfd(UFFD_USER_MODE_ONLY), 0 = ok */
  int err_syscall;         /* errno of userfaultfd(0) */
  int err_dev;             /* errno of /dev/userfaultfd (open or ioctl) */
  int err_api;             /* errno of UFFDIO_API, 0 = ok */
  int err_dontunmap;       /* errno of the MREMAP_DONTUNMAP probe, 0 = ok */
} fh_uffd_caps;

/* The cached probe result (thread-safe; probes once).  Reflects the
 * force-disable hook at the time of the call. */
void fh_uffd_caps_get(fh_uffd_caps *out);
/* The capabilities without probing: 1 and *caps when the probe has run, or
 * userfaultfd is off anyway (FH_UFFD_DISABLE, fh_uffd_force_disable: no
 * FH_CAP_UFFD then); 0 when only the probe (~55 us) can tell. */
int fh_uffd_caps_if_known(unsigned *caps);
/* Probe now, uncached (tests; respects the env var and the hook). */
void fh_uffd_probe_now(fh_uffd_caps *out);
/* Tests of the fallback path: 1 makes every probe and create report no uffd. */
void fh_uffd_force_disable(int on);
/* One line, ending in '\n': "uffd: yes (...) features ... | dontunmap: yes". */
void fh_uffd_print_caps(FILE *out);
/* Open a userfaultfd: O_CLOEXEC plus O_NONBLOCK when nonblock; with
 * user_mode_only 1 tries UFFD_USER_MODE_ONLY first and falls back to a plain
 * fd, with 0 it insists on a fd that allows kernel-mode faults.  Negotiates
 * UFFDIO_API with want_features & offered & ~EVENT_*, returning the enabled
 * set in *got.  -1 + errno (ENOSYS/EPERM/..., EOPNOTSUPP when disabled). */
int fh_uffd_open(uint64_t want_features, int user_mode_only, int nonblock,
                 uint64_t *got, int *is_user_mode_only);

/* ---- resolving operations (ops.c) -- async-signal-safe -------------------- */

typedef enum {
  FH_UFFD_OK = 0,       /* every page installed by this call */
  FH_UFFD_EXISTED = 1,  /* done, but res->existed pages were already present
                           (EEXIST: someone else mapped them; skipped) */
  FH_UFFD_ENOENT = 2,   /* destination not registered (any more) */
  FH_UFFD_BUSY = 3,     /* MOVE only: a source page is not exclusive (COW
                           shared since a fork, pinned): COPY from res->done */
  FH_UFFD_ERROR = -1    /* other failure, errno set; res->done is valid */
} fh_uffd_status;

typedef struct fh_uffd_res {
  size_t done;    /* bytes from the start of the range that are now mapped
                     (installed or found present); the failing page is at
                     dst + done */
  size_t existed; /* pages skipped because present */
  unsigned retries; /* EAGAIN (-EAGAIN count: mapping changing) retries */
} fh_uffd_res;

#define FH_UFFD_DONTWAKE 1u /* do not wake waiters; wake later with _wake */

/* All lengths and addresses page-aligned (else FH_UFFD_ERROR/EINVAL).  A
 * short copy (EAGAIN with a positive count) continues where it stopped; an
 * EEXIST page is skipped and counted; res may be NULL. */
fh_uffd_status fh_uffd_copy(int fd, void *dst, const void *src, size_t len,
                            unsigned flags, fh_uffd_res *res);
fh_uffd_status fh_uffd_zeropage(int fd, void *dst, size_t len, unsigned flags,
                                fh_uffd_res *res);
/* MOVE: on EEXIST the destination page is skipped and its source page stays
 * where it was. */
fh_uffd_status fh_uffd_move(int fd, void *dst, void *src, size_t len,
                            unsigned flags, fh_uffd_res *res);
/* CONTINUE (MINOR mode on shmem): map the page-cache page already there. */
fh_uffd_status fh_uffd_continue(int fd, void *dst, size_t len, unsigned flags,
                                fh_uffd_res *res);
int fh_uffd_wake(int fd, void *addr, size_t len);

#define FH_UFFD_REG_MISSING 1u
#define FH_UFFD_REG_MINOR 4u
/* Register / unregister [addr, addr+len) on fd.  *ioctls (may be NULL) gets
 * the kernel's mask of resolving ioctls valid there (bit 1<<_UFFDIO_COPY...).
 * Ordinary context only (takes mmap_lock for write). */
int fh_uffd_register(int fd, void *addr, size_t len, unsigned modes,
                     uint64_t *ioctls);
int fh_uffd_unregister(int fd, void *addr, size_t len);
const char *fh_uffd_status_name(fh_uffd_status s);

/* ---- address-space helpers (remap.c) ------------------------------------ */

#define FH_UFFD_PMD_SIZE ((size_t)2 << 20)
#define FH_UFFD_PUD_SIZE ((size_t)1 << 30)
/* The alignment that lets mremap move page tables at the highest level:
 * 1 GiB for len >= 1 GiB, else 2 MiB. */
size_t fh_uffd_best_align(size_t len);
/* Reserve len bytes aligned to align (0: fh_uffd_best_align(len)), private
 * anonymous MAP_NORESERVE, with protection prot (PROT_NONE for a reservation,
 * PROT_READ|PROT_WRITE for memory).  NULL + errno on failure. */
void *fh_uffd_reserve(size_t len, size_t align, int prot);
int fh_uffd_unreserve(void *addr, size_t len);
/* mremap(src, len, len, MAYMOVE|FIXED|DONTUNMAP, dst) through the raw
 * syscall (glibc 2.36 reads a garbage fifth argument otherwise).  The page
 * tables of src move to dst (replacing whatever was mapped there); src stays
 * mapped, empty, still one VMA, and keeps any uffd registration.  src must
 * be a single VMA (EFAULT otherwise). */
int fh_uffd_mremap_dontunmap(void *src, size_t len, void *dst);
/* Number of VMAs overlapping [addr, addr+len), from /proc/self/maps (debug
 * checks: the moving space must stay one VMA).  -1 + errno on failure. */
int fh_uffd_count_vmas(const void *addr, size_t len);

/* ---- per-thread page buffers (pagebuf.c) --------------------------------- */

/* This thread's 4 KiB scratch page, page-aligned.  Async-signal-safe: the
 * first call on a thread claims a page from a preallocated pool with an
 * atomic bitmap (or, once the pool is exhausted, maps one with the raw mmap
 * syscall); later calls return it from TLS.  NULL only if both fail. */
void *fh_uffd_thread_buf(void);
/* Ordinary context, optional: claim the buffer now and arrange for it to be
 * returned to the pool when the thread exits. */
int fh_uffd_thread_buf_prepare(void);
/* Give this thread's buffer back now (thread detach). */
void fh_uffd_thread_buf_release(void);

/* ---- fault delivery (fault.c, sigbus.c, handler_thread.c) --------------- */

typedef enum { FH_UFFD_SIGBUS = 0, FH_UFFD_THREAD = 1 } fh_uffd_mode;

typedef struct fh_uffd fh_uffd;

typedef struct fh_uffd_fault {
  int fd;             /* the context's userfaultfd */
  fh_uffd_mode mode;  /* who is calling: the faulting thread or the handler */
  uintptr_t page;     /* page-aligned fault address */
  uintptr_t addr;     /* exact address where known (SIGBUS), else == page */
  int write;          /* 1 if a write fault (thread mode only; SIGBUS: -1) */
  uintptr_t range_lo, range_hi; /* the registered range */
} fh_uffd_fault;

enum {
  FH_UFFD_RESOLVED = 0,
  FH_UFFD_RESOLVED_EXISTED = 1,
  FH_UFFD_RESOLVE_FAILED = -1
};
typedef int (*fh_uffd_resolve_fn)(void *arg, const fh_uffd_fault *f);

#define FH_UFFD_WANT_MOVE 1u  /* enable UFFD_FEATURE_MOVE when offered */
#define FH_UFFD_WANT_MINOR 2u /* enable UFFD_FEATURE_MINOR_SHMEM */

/* NULL + errno (EOPNOTSUPP when uffd is unavailable or disabled). */
fh_uffd *fh_uffd_create(fh_uffd_mode mode, unsigned want);
/* Stops the handler thread, retires remaining ranges, closes the fd. */
void fh_uffd_destroy(fh_uffd *u);
/* When the fd can no longer be trusted (an UNREGISTER failed, ioctls keep
 * failing): with no live range of u left, close the fd, which drops every
 * registration still on it and wakes every thread waiting on one of its
 * faults, and open a fresh one (and handler thread) with the same mode and
 * features.  Unlike destroy, u and its retired slots stay, so a late SIGBUS
 * for a retired range still finds it and just retries.  0, or -1 + errno
 * with fh_uffd_fd(u) == -1 (call it again later; destroy stays safe). */
int fh_uffd_reopen(fh_uffd *u);
int fh_uffd_fd(const fh_uffd *u);
fh_uffd_mode fh_uffd_get_mode(const fh_uffd *u);
uint64_t fh_uffd_features(const fh_uffd *u); /* enabled UFFD_FEATURE_* */
int fh_uffd_has_move(const fh_uffd *u);
/* 1 when a kernel access to a missing page blocks and is resolved. */
int fh_uffd_kernel_faults(const fh_uffd *u);

/* Register and publish.  Returns a range id >= 0, or -1 + errno (ENOSPC:
 * table full).  *ioctls as for fh_uffd_register.  modes: FH_UFFD_REG_*. */
int fh_uffd_range_add(fh_uffd *u, void *addr, size_t len, unsigned modes,
                      fh_uffd_resolve_fn resolve, void *arg, uint64_t *ioctls);
/* Two-counter termination protocol (point 4 above), then unregister.
 * Returns the unregistration's result (0, or -1 + errno); the slot is
 * retired either way. */
int fh_uffd_range_retire(fh_uffd *u, int id);

typedef struct fh_uffd_stats {
  uint64_t faults;       /* resolver calls */
  uint64_t fault_ns_max; /* longest resolver call */
  uint64_t fault_ns_total;
  uint64_t existed;      /* resolver returned RESOLVED_EXISTED */
  uint64_t spurious;     /* faults on retired ranges, just retried */
  uint64_t failed;       /* resolver returned FAILED */
} fh_uffd_stats;
void fh_uffd_get_stats(const fh_uffd *u, fh_uffd_stats *s);

/* In a forked child, before anything else touches u: drop the parent's fd
 * and handler thread, forget this context's ranges (without unregistering:
 * the child's VMAs are not registered), open a fresh fd with the same mode
 * and features (and, in thread mode, a new handler thread).  0 or -1 + errno;
 * after -1, u is still safe to destroy. */
int fh_uffd_postfork_child(fh_uffd *u);

/* SIGBUS handler installation (done by fh_uffd_create in SIGBUS mode).  If
 * some other handler replaced ours since, it is re-installed, chaining to
 * that one.  0 or -1 + errno. */
int fh_uffd_sigbus_install(void);

#endif /* FH_UFFD_H_ */
