/* fh_last_error(): a per-thread buffer, so concurrent failures on different
 * threads never garble each other's text. */
#include "heap/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "faultheap.h"

static _Thread_local char last_error[512];

const char *fh_last_error(void) { return last_error; }

void fh_clear_error(void) { last_error[0] = 0; }

void fh_error_set(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
}

void fh_error_prefix(const char *what) {
  char old[sizeof last_error];
  memcpy(old, last_error, sizeof old);
  size_t n = strlen(what);
  if (n > sizeof last_error - 3) n = sizeof last_error - 3;
  memcpy(last_error, what, n);
  memcpy(last_error + n, ": ", 2);
  size_t room = sizeof last_error - n - 3;
  size_t m = strnlen(old, room);
  memcpy(last_error + n + 2, old, m);
  last_error[n + 2 + m] = 0;
}
