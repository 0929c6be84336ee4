#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool llc_fail(llamac_error *err, const char *fmt, ...) {
    if (!err) return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* One line, always: untrusted names can carry newlines. */
    for (char *p = err->message; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return false;
}

void llc_error_prefix(llamac_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[256], old[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    /* Truncation is fine here: the message keeps its start, which names the file. */
    size_t n = strlen(prefix);
    if (n > sizeof err->message - 3) n = sizeof err->message - 3;
    memcpy(err->message, prefix, n);
    memcpy(err->message + n, ": ", 2);
    size_t rest = sizeof err->message - n - 3;
    size_t ol = strnlen(old, sizeof old);
    if (ol > rest) ol = rest;
    memcpy(err->message + n + 2, old, ol);
    err->message[n + 2 + ol] = 0;
}
