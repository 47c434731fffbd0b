#ifndef FH_OPTIONS_H_
#define FH_OPTIONS_H_
#include "faultheap.h"

/* Option names of collectors, as in spec strings ("semispace", ...). */
const char *options_collector_name(fh_collector c);
/* "precise" or "conservative". */
const char *options_stack_roots_name(fh_stack_roots r);
const char *options_heap_policy_name(fh_heap_policy p);
/* Validate a whole options struct (ranges and combinations); 0 or -1 + error. */
int options_validate(const fh_options *o);

/* The CPUs this process may run on (its affinity mask), at least 1. */
long heap_usable_cpus(void);

#endif
