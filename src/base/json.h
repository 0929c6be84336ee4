#ifndef LLC_JSON_H
#define LLC_JSON_H
/*
 * The one way llamac reads JSON from outside (config files, tokenizer files, safetensors headers,
 * batch requests, chat dumps, HTTP requests): exactly len bytes must hold exactly one RFC 8259 value,
 * whitespace (space, tab, CR, LF) aside. Refused, with the line and column: a NUL byte, anything after
 * the value (a second object, junk), nesting deeper than LLC_JSON_MAX_DEPTH, raw control characters
 * inside strings, a byte-order mark, numbers cJSON would misread (over 63 characters), unpaired UTF-16
 * surrogates, a \u0000 escape in an object key; and, naming the key, duplicate keys in any object
 * (cJSON would keep the first, Python the last: they would disagree on what the file says).
 * A \u0000 escape in a string value is valid JSON and accepted; cJSON's strings end at it, so callers
 * that pass text on (prompts, messages) ask for LLC_JSON_NO_NUL_ESCAPE to refuse it instead.
 */
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "llamac.h"

/* Containers inside containers: real configs and requests nest under ten deep. */
#define LLC_JSON_MAX_DEPTH 64

enum {
    LLC_JSON_NO_NUL_ESCAPE = 1, /* refuse \u0000 in string values too (it would cut the text) */
};

/* The parsed value (free with cJSON_Delete), or NULL with err = "<what>: ..." naming the problem. */
cJSON *llc_json_parse(const char *text, size_t len, const char *what, llamac_error *err);
/* The same with flags (LLC_JSON_NO_NUL_ESCAPE) and a bound on the number of values (0: none), checked
 * before cJSON builds anything (about 64 bytes a value). */
cJSON *llc_json_parse_opts(const char *text, size_t len, const char *what, unsigned flags, uint64_t max_values,
                           llamac_error *err);

#endif
