#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool llc_fail(llamac_error *err, const char *fmt, ...) {
    if (!err) return false;
    va_list ap;
    va_start(ap, fmt);
    char raw[sizeof err->message];
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    llc_printable(err->message, sizeof err->message, raw);
    return false;
}

/* Names in messages come from untrusted files: a newline would break the one-line promise and an
 * escape sequence could rewrite the user's terminal, so control bytes are shown as \xNN. */
void llc_printable(char *dst, size_t cap, const char *src) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p && n + 1 < cap; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            if (n + 5 >= cap) break;
            dst[n++] = '\\';
            dst[n++] = 'x';
            dst[n++] = hex[*p >> 4];
            dst[n++] = hex[*p & 15];
        } else {
            dst[n++] = (char)*p;
        }
    }
    dst[n] = 0;
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

const char *llc_clip(const char *s, size_t n, size_t max, char *buf, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++) {
        if (i == max) {
            memcpy(buf + k, "...", 3);
            k += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        buf[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[k] = 0;
    return buf;
}
