/* What this kernel and process allow: userfaultfd (and how to create one),
 * its features and range ioctls, and MREMAP_DONTUNMAP.  Also fh_uffd_open,
 * the one place that creates userfaultfds. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "faultheap.h"
#include "heap/sys.h"
#include "uffd/uffd.h"
#include "uffd/uffd_abi.h"

static _Atomic int force_disabled;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static fh_uffd_caps probe_cache;

void fh_uffd_force_disable(int on) {
  atomic_store_explicit(&force_disabled, on ? 1 : 0, memory_order_release);
}

static int env_disabled(void) {
  const char *v = getenv("FH_UFFD_DISABLE");
  return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/* One creation attempt.  Returns the fd or -1 with errno.  The capability
 * probe (seam 0) makes raw calls: it runs once per process and its answer
 * is cached, so a failure injected into it would disable userfaultfd for
 * good instead of testing a failure path.  fh_uffd_open (seam 1) goes
 * through the system-call seam (heap/sys.h). */
static int create_fd(int via, int flags, int seam) {
  /* Either way (the system call, or /dev/userfaultfd's open and ioctl)
   * creation is one injectable call of the seam. */
  if (seam) SYS_FAIL_IF_INJECTED(SYS_USERFAULTFD, -1);
  if (via == FH_UFFD_VIA_SYSCALL) {
#ifdef SYS_userfaultfd
    return (int)syscall(SYS_userfaultfd, flags);
#else
    errno = ENOSYS;
    return -1;
#endif
  }
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0)
    return -1;
  int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
  int e = errno;
  close(dev);
  errno = e;
  return fd;
}

static int api_handshake(int fd, uint64_t features, uint64_t *got, int seam) {
  struct uffdio_api api;
  memset(&api, 0, sizeof api);
  api.api = UFFD_API;
  api.features = features;
  if ((seam ? sys_uffd_ioctl(fd, UFFDIO_API, &api) : ioctl(fd, UFFDIO_API, &api)) != 0)
    return -1;
  if (got)
    *got = api.features;
  return 0;
}

/* Register one scratch page to learn which resolving ioctls a private
 * anonymous MISSING range gets (ZEROPAGE, MOVE, POISON...). */
static uint64_t probe_range_ioctls(int fd) {
  void *p = mmap(NULL, FH_UFFD_PAGE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return 0;
  struct uffdio_register reg;
  memset(&reg, 0, sizeof reg);
  reg.range.start = (uintptr_t)p;
  reg.range.len = FH_UFFD_PAGE;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  uint64_t mask = 0;
  if (ioctl(fd, UFFDIO_REGISTER, &reg) == 0) {
    mask = reg.ioctls;
    struct uffdio_range r = {.start = (uintptr_t)p, .len = FH_UFFD_PAGE};
    ioctl(fd, UFFDIO_UNREGISTER, &r);
  }
  munmap(p, FH_UFFD_PAGE);
  return mask;
}

/* MREMAP_DONTUNMAP on a scratch page: content must arrive at dst and src
 * must stay mapped and read as zero.  The raw syscall avoids glibc 2.36's
 * fifth-argument read (research/art-cmc.md 4.9). */
static int probe_dontunmap(void) {
  char *src = mmap(NULL, FH_UFFD_PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (src == MAP_FAILED)
    return errno;
  char *dst = mmap(NULL, FH_UFFD_PAGE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (dst == MAP_FAILED) {
    int e = errno;
    munmap(src, FH_UFFD_PAGE);
    return e;
  }
  src[0] = 42;
  int err = 0;
  long r = syscall(SYS_mremap, src, FH_UFFD_PAGE, FH_UFFD_PAGE,
                   MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
  if (r == -1)
    err = errno;
  else if (dst[0] != 42 || src[0] != 0)
    err = EINVAL; /* flag ignored by some odd kernel: not usable */
  munmap(src, FH_UFFD_PAGE);
  munmap(dst, FH_UFFD_PAGE);
  return err;
}

void fh_uffd_probe_now(fh_uffd_caps *c) {
  memset(c, 0, sizeof *c);
  c->err_dontunmap = probe_dontunmap();
  if (c->err_dontunmap == 0)
    c->caps |= FH_CAP_DONTUNMAP;
  if (env_disabled()) {
    /* Do not even try the syscall: the variable may be set precisely
     * because a seccomp filter kills on it. */
    c->disabled = 1;
    return;
  }
  if (atomic_load_explicit(&force_disabled, memory_order_acquire)) {
    c->disabled = 2;
    return;
  }

  int fd_umo = create_fd(FH_UFFD_VIA_SYSCALL, O_CLOEXEC | UFFD_USER_MODE_ONLY, 0);
  c->err_syscall_umo = fd_umo < 0 ? errno : 0;
  int fd_sys = create_fd(FH_UFFD_VIA_SYSCALL, O_CLOEXEC, 0);
  c->err_syscall = fd_sys < 0 ? errno : 0;
  /* The device is only a way around a refused system call: when both
   * worked it would never be used, and trying it (open, ioctl, two closes:
   * ~12 us) is a sixth of the probe every heap creation waits for.  err_dev
   * then stays 0, and is printed only when no way worked. */
  int fd_dev = -1;
  if (fd_umo < 0 || fd_sys < 0) {
    fd_dev = create_fd(FH_UFFD_VIA_DEV, O_CLOEXEC, 0);
    c->err_dev = fd_dev < 0 ? errno : 0;
  }

  if (fd_umo >= 0)
    c->via_user_mode_only = FH_UFFD_VIA_SYSCALL;
  else if (fd_dev >= 0)
    c->via_user_mode_only = FH_UFFD_VIA_DEV; /* the device takes the flag too */
  if (fd_sys >= 0)
    c->via_kernel_faults = FH_UFFD_VIA_SYSCALL;
  else if (fd_dev >= 0)
    c->via_kernel_faults = FH_UFFD_VIA_DEV;

  /* A uffd accepts UFFDIO_API once: features=0 on a throwaway fd returns
   * everything offered; real fds are negotiated again in fh_uffd_open. */
  int fd = fd_umo >= 0 ? fd_umo : fd_sys >= 0 ? fd_sys : fd_dev;
  if (fd >= 0) {
    if (api_handshake(fd, 0, &c->features, 0) == 0) {
      c->caps |= FH_CAP_UFFD;
      c->range_ioctls = probe_range_ioctls(fd);
      if (c->features & UFFD_FEATURE_SIGBUS)
        c->caps |= FH_CAP_UFFD_SIGBUS;
      if ((c->features & UFFD_FEATURE_MOVE) &&
          (c->range_ioctls & ((uint64_t)1 << _UFFDIO_MOVE)))
        c->caps |= FH_CAP_UFFD_MOVE;
      if (c->features & UFFD_FEATURE_MINOR_SHMEM)
        c->caps |= FH_CAP_UFFD_MINOR;
    } else {
      c->err_api = errno;
      c->via_user_mode_only = c->via_kernel_faults = FH_UFFD_VIA_NONE;
    }
  }
  if (fd_umo >= 0)
    close(fd_umo);
  if (fd_sys >= 0)
    close(fd_sys);
  if (fd_dev >= 0)
    close(fd_dev);
}

static _Atomic int probe_done;

static void probe_once_fn(void) {
  fh_uffd_probe_now(&probe_cache);
  atomic_store_explicit(&probe_done, 1, memory_order_release);
}

int fh_uffd_caps_if_known(unsigned *caps) {
  if (atomic_load_explicit(&probe_done, memory_order_acquire)) {
    *caps = fh_capabilities();
    return 1;
  }
  if (env_disabled() || atomic_load_explicit(&force_disabled, memory_order_acquire)) {
    *caps = 0;
    return 1;
  }
  return 0;
}

void fh_uffd_caps_get(fh_uffd_caps *out) {
  pthread_once(&probe_once, probe_once_fn);
  *out = probe_cache;
  if (!out->disabled && atomic_load_explicit(&force_disabled, memory_order_acquire)) {
    out->disabled = 2;
    out->caps &= FH_CAP_DONTUNMAP;
    out->via_user_mode_only = out->via_kernel_faults = FH_UFFD_VIA_NONE;
  }
}

FH_API unsigned fh_capabilities(void) {
  fh_uffd_caps c;
  fh_uffd_caps_get(&c);
  return c.caps;
}

int fh_uffd_open(uint64_t want, int user_mode_only, int nonblock,
                 uint64_t *got, int *is_umo) {
  fh_uffd_caps c;
  fh_uffd_caps_get(&c);
  if (!(c.caps & FH_CAP_UFFD)) {
    errno = c.disabled ? EOPNOTSUPP
            : c.err_api ? c.err_api
            : c.err_syscall ? c.err_syscall
                            : EOPNOTSUPP;
    return -1;
  }
  int base = O_CLOEXEC | (nonblock ? O_NONBLOCK : 0);
  int fd = -1, umo = 0;
  if (user_mode_only && c.via_user_mode_only != FH_UFFD_VIA_NONE) {
    fd = create_fd(c.via_user_mode_only, base | UFFD_USER_MODE_ONLY, 1);
    umo = fd >= 0;
  }
  if (fd < 0 && c.via_kernel_faults != FH_UFFD_VIA_NONE)
    fd = create_fd(c.via_kernel_faults, base, 1);
  if (fd < 0) {
    if (errno == 0)
      errno = EPERM;
    return -1;
  }
  uint64_t req = want & c.features & ~(uint64_t)FH_UFFD_EVENT_FEATURES;
  if (api_handshake(fd, req, NULL, 1) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  if (got)
    *got = req; /* the kernel echoes all it offers; req is what is on */
  if (is_umo)
    *is_umo = umo;
  return fd;
}

static const char *via_name(int via) {
  return via == FH_UFFD_VIA_SYSCALL ? "syscall"
         : via == FH_UFFD_VIA_DEV   ? "/dev/userfaultfd"
                                    : "none";
}

static const char *err_name(int e) {
  if (e == 0)
    return "ok";
  const char *n = strerrorname_np(e);
  return n ? n : "error";
}

void fh_uffd_print_caps(FILE *out) {
  fh_uffd_caps c;
  fh_uffd_caps_get(&c);
  if (c.caps & FH_CAP_UFFD) {
    static const struct {
      uint64_t bit;
      const char *name;
    } names[] = {
        {UFFD_FEATURE_SIGBUS, "sigbus"},
        {UFFD_FEATURE_MOVE, "move"},
        {UFFD_FEATURE_MINOR_SHMEM, "minor-shmem"},
        {UFFD_FEATURE_MISSING_SHMEM, "missing-shmem"},
        {UFFD_FEATURE_PAGEFAULT_FLAG_WP, "wp"},
        {UFFD_FEATURE_WP_ASYNC, "wp-async"},
        {UFFD_FEATURE_POISON, "poison"},
        {UFFD_FEATURE_EVENT_FORK, "event-fork"},
        {UFFD_FEATURE_EVENT_REMAP, "event-remap"},
        {UFFD_FEATURE_EVENT_REMOVE, "event-remove"},
        {UFFD_FEATURE_EVENT_UNMAP, "event-unmap"},
    };
    fprintf(out, "uffd: yes (user-mode-only via %s, kernel faults via %s) "
                 "offers features=0x%llx [",
            via_name(c.via_user_mode_only), via_name(c.via_kernel_faults),
            (unsigned long long)c.features);
    const char *sep = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
      if (c.features & names[i].bit) {
        fprintf(out, "%s%s", sep, names[i].name);
        sep = " ";
      }
    fprintf(out, "] anon ioctls=0x%llx%s%s",
            (unsigned long long)c.range_ioctls,
            (c.range_ioctls & ((uint64_t)1 << _UFFDIO_ZEROPAGE)) ? " zeropage" : "",
            (c.caps & FH_CAP_UFFD_MOVE) ? " move" : "");
  } else if (c.disabled == 1) {
    fputs("uffd: no (disabled by FH_UFFD_DISABLE)", out);
  } else if (c.disabled == 2) {
    fputs("uffd: no (disabled by fh_uffd_force_disable)", out);
  } else if (c.err_api) {
    fprintf(out, "uffd: no (UFFDIO_API: %s)", err_name(c.err_api));
  } else {
    fprintf(out, "uffd: no (userfaultfd(USER_MODE_ONLY): %s, userfaultfd: %s, "
                 "/dev/userfaultfd: %s)",
            err_name(c.err_syscall_umo), err_name(c.err_syscall),
            err_name(c.err_dev));
  }
  if (c.err_dontunmap == 0)
    fputs("; mremap dontunmap: yes\n", out);
  else
    fprintf(out, "; mremap dontunmap: no (%s)\n", err_name(c.err_dontunmap));
}
