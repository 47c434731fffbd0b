/* The resolving ioctls (COPY, ZEROPAGE, MOVE, CONTINUE, WAKE) over whole
 * page-aligned ranges, and registration.
 *
 * The kernel resolves a range front to back and may stop early.  What the
 * count field and errno mean (probed on 6.18, research/art-cmc.md 4.3):
 *   count == len, return 0          all done
 *   count  > 0,  errno EAGAIN       partial: the page at dst+count was not
 *                                   done (typically it is present); go on
 *                                   from there
 *   count == -EEXIST                the first page is present (someone else
 *                                   mapped it, or a read mapped the zero
 *                                   page): done for our purpose, skip it
 *   count == -EAGAIN                the mm is changing (a pending
 *                                   non-cooperative event); nothing done,
 *                                   retry the same call
 *   ENOENT                          the destination is not registered
 *   EBUSY (MOVE)                    the source page is not exclusive
 * Everything here is async-signal-safe: ioctl and sched_yield are plain
 * system calls, and errno is restored by the signal handler's caller. */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "heap/sys.h"
#include "uffd/uffd.h"
#include "uffd/uffd_abi.h"

/* Bounded so that a caller never spins forever on an mm that stays in
 * "changing" state; we never enable the events that cause it. */
#define EAGAIN_RETRIES 100000u

enum op { OP_COPY, OP_ZEROPAGE, OP_MOVE, OP_CONTINUE };

static int aligned(uintptr_t a) { return (a & (FH_UFFD_PAGE - 1)) == 0; }

/* One ioctl over [dst+off, dst+len).  Returns the kernel's count field
 * (bytes done, or a negative errno) and sets *rc to the ioctl's result. */
static long long issue(enum op op, int fd, uintptr_t dst, uintptr_t src,
                       size_t len, unsigned flags, int *rc) {
  switch (op) {
  case OP_COPY: {
    struct uffdio_copy a = {.dst = dst, .src = src, .len = len,
                            .mode = (flags & FH_UFFD_DONTWAKE) ? UFFDIO_COPY_MODE_DONTWAKE : 0};
    *rc = sys_uffd_ioctl(fd, UFFDIO_COPY, &a);
    return a.copy;
  }
  case OP_ZEROPAGE: {
    struct uffdio_zeropage a;
    memset(&a, 0, sizeof a);
    a.range.start = dst;
    a.range.len = len;
    a.mode = (flags & FH_UFFD_DONTWAKE) ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0;
    *rc = sys_uffd_ioctl(fd, UFFDIO_ZEROPAGE, &a);
    return a.zeropage;
  }
  case OP_MOVE: {
    struct uffdio_move a = {.dst = dst, .src = src, .len = len,
                            .mode = (flags & FH_UFFD_DONTWAKE) ? UFFDIO_MOVE_MODE_DONTWAKE : 0};
    *rc = sys_uffd_ioctl(fd, UFFDIO_MOVE, &a);
    return a.move;
  }
  case OP_CONTINUE: {
    struct uffdio_continue a;
    memset(&a, 0, sizeof a);
    a.range.start = dst;
    a.range.len = len;
    a.mode = (flags & FH_UFFD_DONTWAKE) ? UFFDIO_CONTINUE_MODE_DONTWAKE : 0;
    *rc = sys_uffd_ioctl(fd, UFFDIO_CONTINUE, &a);
    return a.mapped;
  }
  }
  *rc = -1;
  errno = EINVAL;
  return -EINVAL;
}

static fh_uffd_status run(enum op op, int fd, void *dstp, const void *srcp,
                          size_t len, unsigned flags, fh_uffd_res *res) {
  fh_uffd_res local;
  if (!res)
    res = &local;
  memset(res, 0, sizeof *res);
  uintptr_t dst = (uintptr_t)dstp, src = (uintptr_t)srcp;
  if (!aligned(dst) || !aligned(src) || !aligned(len)) {
    errno = EINVAL;
    return FH_UFFD_ERROR;
  }
  size_t off = 0;
  unsigned spins = 0;
  while (off < len) {
    int rc;
    long long n = issue(op, fd, dst + off, src ? src + off : 0, len - off,
                        flags, &rc);
    if (rc == 0) {
      off = len;
      break;
    }
    int e = errno;
    if (n > 0) { /* short: resume at the page that stopped it */
      off += (size_t)n;
      continue;
    }
    if (e == EEXIST || n == -EEXIST) {
      /* Someone else mapped this page: fine for us.  Wake its waiters
       * unless told not to, in case the winner used DONTWAKE. */
      if (!(flags & FH_UFFD_DONTWAKE))
        fh_uffd_wake(fd, (void *)(dst + off), FH_UFFD_PAGE);
      res->existed++;
      off += FH_UFFD_PAGE;
      continue;
    }
    if (e == EAGAIN && n == -EAGAIN && spins < EAGAIN_RETRIES) {
      spins++;
      res->retries++;
      sched_yield();
      continue;
    }
    res->done = off;
    errno = e;
    /* For MOVE, ENOENT also means a hole in the source; both mean "do not
     * retry this", and the caller knows which from its own state. */
    if (e == ENOENT)
      return FH_UFFD_ENOENT;
    if (e == EBUSY && op == OP_MOVE)
      return FH_UFFD_BUSY;
    return FH_UFFD_ERROR;
  }
  res->done = len;
  return res->existed ? FH_UFFD_EXISTED : FH_UFFD_OK;
}

fh_uffd_status fh_uffd_copy(int fd, void *dst, const void *src, size_t len,
                            unsigned flags, fh_uffd_res *res) {
  return run(OP_COPY, fd, dst, src, len, flags, res);
}

fh_uffd_status fh_uffd_zeropage(int fd, void *dst, size_t len, unsigned flags,
                                fh_uffd_res *res) {
  return run(OP_ZEROPAGE, fd, dst, NULL, len, flags, res);
}

fh_uffd_status fh_uffd_move(int fd, void *dst, void *src, size_t len,
                            unsigned flags, fh_uffd_res *res) {
  return run(OP_MOVE, fd, dst, src, len, flags, res);
}

fh_uffd_status fh_uffd_continue(int fd, void *dst, size_t len, unsigned flags,
                                fh_uffd_res *res) {
  return run(OP_CONTINUE, fd, dst, NULL, len, flags, res);
}

/* A lost wake leaves a thread-mode waiter asleep until the range is
 * unregistered or the uffd closed: retry a failure a few times first. */
#define WAKE_TRIES 4
int fh_uffd_wake(int fd, void *addr, size_t len) {
  struct uffdio_range r = {.start = (uintptr_t)addr, .len = len};
  int rc = -1;
  for (unsigned i = 0; i < WAKE_TRIES; i++) {
    rc = sys_uffd_ioctl(fd, UFFDIO_WAKE, &r);
    if (rc == 0 || errno == EBADF || errno == EINVAL)
      break;
    sched_yield();
  }
  return rc;
}

int fh_uffd_register(int fd, void *addr, size_t len, unsigned modes,
                     uint64_t *ioctls) {
  if (!aligned((uintptr_t)addr) || !aligned(len) || len == 0 ||
      (modes & ~(FH_UFFD_REG_MISSING | FH_UFFD_REG_MINOR)) || modes == 0) {
    errno = EINVAL;
    return -1;
  }
  struct uffdio_register reg;
  memset(&reg, 0, sizeof reg);
  reg.range.start = (uintptr_t)addr;
  reg.range.len = len;
  if (modes & FH_UFFD_REG_MISSING)
    reg.mode |= UFFDIO_REGISTER_MODE_MISSING;
  if (modes & FH_UFFD_REG_MINOR)
    reg.mode |= UFFDIO_REGISTER_MODE_MINOR;
  if (sys_uffd_ioctl(fd, UFFDIO_REGISTER, &reg) != 0)
    return -1;
  if (ioctls)
    *ioctls = reg.ioctls;
  return 0;
}

int fh_uffd_unregister(int fd, void *addr, size_t len) {
  if (!aligned((uintptr_t)addr) || !aligned(len)) {
    errno = EINVAL;
    return -1;
  }
  struct uffdio_range r = {.start = (uintptr_t)addr, .len = len};
  return sys_uffd_ioctl(fd, UFFDIO_UNREGISTER, &r);
}

const char *fh_uffd_status_name(fh_uffd_status s) {
  switch (s) {
  case FH_UFFD_OK: return "ok";
  case FH_UFFD_EXISTED: return "existed";
  case FH_UFFD_ENOENT: return "enoent";
  case FH_UFFD_BUSY: return "busy";
  case FH_UFFD_ERROR: return "error";
  }
  return "?";
}
