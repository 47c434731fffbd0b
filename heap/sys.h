/* The library's one seam for the system and allocator calls that can fail.
 *
 * Every mmap, munmap, mremap, madvise, mprotect, userfaultfd ioctl,
 * userfaultfd(), pthread_create, jemalloc call and image-file call the
 * library makes goes through a sys_* wrapper here.  In production a wrapper
 * is the call plus one relaxed load of a global that is zero; tests arm the
 * seam (sys_fault_arm) to make the Nth call of one kind fail, once or from
 * then on, with an errno of their choice, and so sweep every failure path
 * of a workload (tests/test_faults.c, `make check-faults`).
 *
 * The wrappers keep each call's own failure convention (MAP_FAILED, -1 +
 * errno, an error number for pthread_create and mallctl, NULL for mallocx),
 * so converting a call site changes nothing else.  Everything here is
 * async-signal-safe (the SIGBUS handler installs pages through it): the
 * counters are lock-free atomics.
 *
 * This header may be included from every directory, uffd/ included: it
 * knows nothing of objects or heaps. */
#ifndef FH_SYS_H_
#define FH_SYS_H_

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

typedef enum {
  SYS_MMAP,
  SYS_MUNMAP,
  SYS_MREMAP,
  SYS_MADVISE,
  SYS_MPROTECT,
  SYS_UFFD_IOCTL,  /* any ioctl on a userfaultfd: API, REGISTER, COPY, ... */
  SYS_USERFAULTFD, /* userfaultfd() or open("/dev/userfaultfd") + its ioctl */
  SYS_THREAD_CREATE,
  SYS_JEMALLOC, /* mallocx, rallocx, batch allocation, mallctl */
  SYS_OPEN,
  SYS_READ,
  SYS_WRITE, /* write, pwrite, ftruncate, fsync */
  SYS_RENAME,
  SYS_NCALLS
} sys_call;

/* The name of a kind ("mmap", "madvise", ...), and the kind of a name
 * (-1: none). */
const char *sys_call_name(sys_call c);
int sys_call_by_name(const char *name);

/* ---- fault injection (tests) ---- */

/* Non-zero while the seam counts calls (armed, or counting only). */
extern _Atomic int sys_seam_active;

/* Count calls of every kind from now on; with nth > 0, make the nth call
 * of kind `c` (counted from this arm) fail with `err`, and with persistent
 * every call of that kind after it too.  nth == 0 counts only. */
void sys_fault_arm(sys_call c, uint64_t nth, int persistent, int err);
/* Stop failing and counting; the counters keep their values. */
void sys_fault_disarm(void);
/* Calls of kind c seen since the last arm, and calls made to fail. */
uint64_t sys_fault_calls(sys_call c);
uint64_t sys_fault_injected(void);

/* Out of line: count the call; return the errno to inject, or 0. */
int sys_fault_hit(sys_call c);

static inline int sys_inject(sys_call c) {
  if (__builtin_expect(atomic_load_explicit(&sys_seam_active, memory_order_relaxed), 0))
    return sys_fault_hit(c);
  return 0;
}

/* In a wrapper that reports failure by errno: return `failed` with errno
 * set when the seam fails this call. */
#define SYS_FAIL_IF_INJECTED(c, failed) \
  do {                                   \
    int e_ = sys_inject(c);              \
    if (e_) {                            \
      errno = e_;                        \
      return failed;                     \
    }                                    \
  } while (0)

/* ---- memory ---- */

static inline void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  SYS_FAIL_IF_INJECTED(SYS_MMAP, MAP_FAILED);
  return mmap(addr, len, prot, flags, fd, off);
}

static inline int sys_munmap(void *addr, size_t len) {
  SYS_FAIL_IF_INJECTED(SYS_MUNMAP, -1);
  return munmap(addr, len);
}

/* Always the raw five-argument system call: glibc 2.36's wrapper reads a
 * fifth argument only for some flags (DESIGN.md section 4). */
static inline void *sys_mremap(void *old, size_t old_len, size_t new_len, int flags,
                               void *new_addr) {
  SYS_FAIL_IF_INJECTED(SYS_MREMAP, MAP_FAILED);
  return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

static inline int sys_madvise(void *addr, size_t len, int advice) {
  SYS_FAIL_IF_INJECTED(SYS_MADVISE, -1);
  return madvise(addr, len, advice);
}

static inline int sys_mprotect(void *addr, size_t len, int prot) {
  SYS_FAIL_IF_INJECTED(SYS_MPROTECT, -1);
  return mprotect(addr, len, prot);
}

/* process_madvise(pidfd, iov, n, advice, 0) through the system call,
 * counted as a madvise; bytes advised, or -1 + errno. */
static inline long sys_process_madvise(int pidfd, const struct iovec *iov, size_t n,
                                       int advice) {
  SYS_FAIL_IF_INJECTED(SYS_MADVISE, -1);
#ifdef SYS_process_madvise
  return syscall(SYS_process_madvise, pidfd, iov, n, advice, 0u);
#else
  errno = ENOSYS;
  return -1;
#endif
}

/* ---- userfaultfd ---- */

static inline int sys_uffd_ioctl(int fd, unsigned long req, void *arg) {
  SYS_FAIL_IF_INJECTED(SYS_UFFD_IOCTL, -1);
  return ioctl(fd, req, arg);
}

/* userfaultfd() itself, by the system call or through /dev/userfaultfd, is
 * one call of kind SYS_USERFAULTFD: uffd/probe.c (create_fd) checks the
 * seam before either. */

/* ---- threads ---- */

/* pthread_create's convention: 0, or an error number (errno untouched). */
static inline int sys_thread_create(pthread_t *th, const pthread_attr_t *attr,
                                    void *(*fn)(void *), void *arg) {
  int e = sys_inject(SYS_THREAD_CREATE);
  if (e) return e;
  return pthread_create(th, attr, fn, arg);
}

/* ---- jemalloc ---- */

/* jemalloc started (by sys_jemalloc_start, under sys_jemalloc_start_lock).
 * The library's first jemalloc call is always a mallctl (an arena or a
 * tcache is made before anything is allocated from it), and the wrappers
 * below start jemalloc first.  The private jemalloc (Makefile: JE_PRIVATE)
 * has no constructor: its start-up holds its own start-up lock, and a
 * fork() from another thread meanwhile would leave that lock held in the
 * child by a thread the child does not have.  The fork's prepare handler
 * holds sys_jemalloc_start_lock across the fork (heap/fork.c), so a
 * start-up either ends before the fork or begins after it. */
extern _Atomic int sys_jemalloc_started;
extern pthread_mutex_t sys_jemalloc_start_lock;
void sys_jemalloc_start(void);
static inline void sys_jemalloc_note_call(void) {
  if (!atomic_load_explicit(&sys_jemalloc_started, memory_order_acquire)) sys_jemalloc_start();
}

static inline void *sys_mallocx(size_t size, int flags) {
  if (sys_inject(SYS_JEMALLOC)) return NULL;
  return mallocx(size, flags);
}

/* mallctl's convention: 0, or an error number. */
static inline int sys_mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
                              size_t newlen) {
  int e = sys_inject(SYS_JEMALLOC);
  if (e) return e;
  sys_jemalloc_note_call();
  return mallctl(name, oldp, oldlenp, newp, newlen);
}

/* mallctlbymib's convention: 0, or an error number. */
static inline int sys_mallctlbymib(const size_t *mib, size_t miblen, void *oldp,
                                   size_t *oldlenp, void *newp, size_t newlen) {
  int e = sys_inject(SYS_JEMALLOC);
  if (e) return e;
  sys_jemalloc_note_call();
  return mallctlbymib(mib, miblen, oldp, oldlenp, newp, newlen);
}

/* ---- files (images, /dev/userfaultfd) ---- */

static inline int sys_open(const char *path, int flags, mode_t mode) {
  SYS_FAIL_IF_INJECTED(SYS_OPEN, -1);
  return open(path, flags, mode);
}

/* mkstemp(template) and memfd_create(name, flags), counted as opens. */
static inline int sys_mkstemp(char *tmpl) {
  SYS_FAIL_IF_INJECTED(SYS_OPEN, -1);
  return mkstemp(tmpl);
}

static inline int sys_memfd_create(const char *name, unsigned flags) {
  SYS_FAIL_IF_INJECTED(SYS_OPEN, -1);
  return memfd_create(name, flags);
}

static inline ssize_t sys_read(int fd, void *buf, size_t n) {
  SYS_FAIL_IF_INJECTED(SYS_READ, -1);
  return read(fd, buf, n);
}

static inline ssize_t sys_pread(int fd, void *buf, size_t n, off_t off) {
  SYS_FAIL_IF_INJECTED(SYS_READ, -1);
  return pread(fd, buf, n, off);
}

static inline ssize_t sys_write(int fd, const void *buf, size_t n) {
  SYS_FAIL_IF_INJECTED(SYS_WRITE, -1);
  return write(fd, buf, n);
}

static inline ssize_t sys_pwrite(int fd, const void *buf, size_t n, off_t off) {
  SYS_FAIL_IF_INJECTED(SYS_WRITE, -1);
  return pwrite(fd, buf, n, off);
}

static inline int sys_fsync(int fd) {
  SYS_FAIL_IF_INJECTED(SYS_WRITE, -1);
  return fsync(fd);
}

static inline int sys_ftruncate(int fd, off_t len) {
  SYS_FAIL_IF_INJECTED(SYS_WRITE, -1);
  return ftruncate(fd, len);
}

static inline int sys_rename(const char *from, const char *to) {
  SYS_FAIL_IF_INJECTED(SYS_RENAME, -1);
  return rename(from, to);
}

#endif
