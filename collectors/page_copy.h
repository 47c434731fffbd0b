/* Pass 1 of building a destination page: copying its live words out of
 * from-space by runs of the live-words bitmap (see page_copy.c). */
#ifndef FH_PAGE_COPY_H_
#define FH_PAGE_COPY_H_

#include <stddef.h>
#include <stdint.h>

#include "collectors/forwarding.h"

/* Copy `bytes` (a multiple of 8) of live words into out, starting with the
 * live word at old address a0 and going up in address order; word a lives
 * at a + from_delta in from-space.  Async-signal-safe. */
void page_copy_live(const fwd_tables *t, uintptr_t from_delta, uintptr_t a0, uint8_t *out,
                    size_t bytes);

/* Old address of the k-th (0-based) live word at or after the live word at
 * old address a0. */
uintptr_t page_old_word(const fwd_tables *t, uintptr_t a0, size_t k);

#endif
