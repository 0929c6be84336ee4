#ifndef LLC_ERROR_H
#define LLC_ERROR_H
#include <stddef.h>

#include "llamac.h"

/* Formats a one-line message into err (NULL-safe). Always returns false, so a failing path can say
 * `return llc_fail(err, "...")`. */
bool llc_fail(llamac_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies src to dst (cap bytes, NUL-terminated) with control bytes written as \xNN. */
void llc_printable(char *dst, size_t cap, const char *src);
/* A name from a file (n bytes, not NUL-terminated) fit for a one-line message: at most max bytes and
 * then "...", unprintable bytes as '?'. Returns buf. */
const char *llc_clip(const char *s, size_t n, size_t max, char *buf, size_t cap);
/* Prefixes the message already in err with "context: ". */
void llc_error_prefix(llamac_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
