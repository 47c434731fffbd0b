/* Local copy of the parts of the userfaultfd and mremap kernel ABI that the
 * build machine's headers may lack.
 *
 * Debian 12 ships linux-libc-dev 6.1, older than the kernels we run on: it
 * has no UFFDIO_MOVE (6.8), no UFFD_FEATURE_MOVE and none of the feature bits
 * after 12.  Everything here is guarded so that newer headers win, and the
 * values are the kernel's UAPI numbers (include/uapi/linux/userfaultfd.h);
 * whether the running kernel implements them is decided at run time by
 * UFFDIO_API and the ioctl mask returned by UFFDIO_REGISTER, never by these
 * macros. */
#ifndef FH_UFFD_ABI_H_
#define FH_UFFD_ABI_H_

#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#ifndef MREMAP_MAYMOVE
#define MREMAP_MAYMOVE 1
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* Linux 5.7 */
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1 /* Linux 5.11: refuse kernel-mode faults */
#endif

#ifndef USERFAULTFD_IOC
#define USERFAULTFD_IOC 0xAA
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00) /* /dev/userfaultfd, 6.1 */
#endif

/* Feature bits newer than the 6.1 headers. */
#ifndef UFFD_FEATURE_MINOR_SHMEM
#define UFFD_FEATURE_MINOR_SHMEM (1 << 10)
#endif
#ifndef UFFD_FEATURE_EXACT_ADDRESS
#define UFFD_FEATURE_EXACT_ADDRESS (1 << 11)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13) /* 6.4 */
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14) /* 6.6 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15) /* 6.7 */
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16) /* 6.8 */
#endif

/* The EVENT_* features make fork/mremap/madvise/munmap block until a reader
 * drains the event, and make resolving ioctls fail with EAGAIN meanwhile.
 * This module never asks for them; fh_uffd_open masks them out. */
#define FH_UFFD_EVENT_FEATURES                                                 \
  ((__u64)(UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |               \
           UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP))

/* UFFDIO_MOVE: ioctl number 0x05, struct layout as in the 6.8 UAPI. */
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif

#ifndef UFFDIO_MOVE
struct uffdio_move {
  __u64 dst;
  __u64 src;
  __u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
  __u64 mode;
  /* written by the kernel: bytes moved, or a negative errno */
  __s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

#ifndef UFFDIO_MOVE_MODE_DONTWAKE
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#endif
#ifndef UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#endif

#endif /* FH_UFFD_ABI_H_ */
