/* heap_max's default: a quarter of the memory this process may use.
 *
 * The memory is the machine's (sysconf), or its cgroup's limit if lower
 * (/proc/self/cgroup; cgroup v1's hierarchical_memory_limit in
 * memory.stat, or the lowest cgroup v2 memory.max from the process's
 * cgroup up to its namespace's root), as the JVM sizes its default
 * maximum heap; under an address-space limit (RLIMIT_AS) the default also
 * stays under an eighth of it, the heap reserving several times heap_max
 * of address space.  A file that cannot be read counts as no limit.
 * Reads /proc and /sys with open/read, a few KiB of stack, errno kept. */
#ifndef FH_MEM_LIMIT_H_
#define FH_MEM_LIMIT_H_

#include <stddef.h>

/* A quarter of mem, in whole MiB, at least 256 MiB, at most 1 TiB. */
size_t heap_max_for_memory(size_t mem);
/* heap_max_for_memory of the process's memory (above), under RLIMIT_AS / 8. */
size_t heap_default_max(void);

#endif
