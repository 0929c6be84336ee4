#ifndef LLC_CHAT_H
#define LLC_CHAT_H
/*
 * Chat formats (the public calls are in llamac.h, "chat"). Internal helpers.
 */
#include <stddef.h>

#include "llamac.h"

/* Python's str.strip() on UTF-8: the bounds [*start, *start + returned length) of s[0..len) without
 * leading and trailing whitespace as str.isspace() defines it (ASCII \t\n\v\f\r, \x1c-\x1f, space,
 * U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). */
size_t llc_chat_strip(const char *s, size_t len, size_t *start);

#endif
