/* Thread-local error text behind fh_last_error(). */
#ifndef FH_ERROR_H_
#define FH_ERROR_H_

/* Record a failure for fh_last_error() (printf format). */
void fh_error_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Keep the current text but prefix it: "what: <previous text>". */
void fh_error_prefix(const char *what);

#endif
