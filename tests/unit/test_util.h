#ifndef LLC_TEST_UTIL_H
#define LLC_TEST_UTIL_H
/* Helpers the tokenizer tests share: where the shared data and scratch files are, whole-file I/O, and
 * whether this is a sanitizer build (some tests run smaller there). Include after cmocka.h. */
#include <stdarg.h>
#include <stdio.h>

#include "base/mapped_file.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static char shared_dir[2048], tmp_dir[2048];

static inline void pathf(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static inline char *slurp(const char *path, size_t *size) {
    llamac_error err = {{0}};
    char *p = llc_read_file(path, (size_t)1 << 30, size, &err);
    if (!p) fail_msg("%s", err.message);
    return p;
}

static inline void spit(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

#endif
