/* Strict JSON parsing (see json.h): a validating pass with positions, then cJSON builds the tree,
 * then every object is checked for duplicate keys. */
#include "base/json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* cJSON copies a number into a 64-byte buffer and silently reads only its first 63 characters. */
#define MAX_NUMBER_CHARS 63

typedef struct scan {
    const char *s;
    size_t n, i;
    const char *what;
    unsigned flags;
    uint64_t values, max_values;
    llamac_error *err;
} scan;

static bool fail_at(const scan *sc, size_t pos, const char *why) {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < pos && k < sc->n; k++) {
        if (sc->s[k] == '\n') line++, col = 1;
        else col++;
    }
    if (memchr(sc->s, '\n', sc->n))
        return llc_fail(sc->err, "%s: not valid JSON: %s at line %zu, column %zu", sc->what, why, line, col);
    return llc_fail(sc->err, "%s: not valid JSON: %s at column %zu", sc->what, why, col);
}

static void skip_ws(scan *sc) {
    while (sc->i < sc->n) {
        char c = sc->s[sc->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        sc->i++;
    }
}

static int hex4(const char *p) {
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

/* At the opening quote. */
static bool scan_string(scan *sc, bool key) {
    size_t start = sc->i++;
    for (;;) {
        if (sc->i >= sc->n) return fail_at(sc, start, "unterminated string");
        unsigned char c = (unsigned char)sc->s[sc->i];
        if (c == '"') {
            sc->i++;
            return true;
        }
        if (c < 0x20) return fail_at(sc, sc->i, "control character inside a string (it must be escaped)");
        if (c != '\\') {
            sc->i++;
            continue;
        }
        if (sc->i + 1 >= sc->n) return fail_at(sc, start, "unterminated string");
        char e = sc->s[sc->i + 1];
        if (e != 'u') {
            if (!strchr("\"\\/bfnrt", e) || !e) return fail_at(sc, sc->i, "invalid escape in a string");
            sc->i += 2;
            continue;
        }
        int cp = sc->i + 6 <= sc->n ? hex4(sc->s + sc->i + 2) : -1;
        if (cp < 0) return fail_at(sc, sc->i, "invalid \\u escape in a string");
        if (cp == 0 && key) return fail_at(sc, sc->i, "\\u0000 in an object key");
        if (cp == 0 && (sc->flags & LLC_JSON_NO_NUL_ESCAPE)) return fail_at(sc, sc->i, "\\u0000 in a string (it would cut the text)");
        if (cp >= 0xDC00 && cp <= 0xDFFF) return fail_at(sc, sc->i, "unpaired UTF-16 surrogate in a string");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            const char *q = sc->s + sc->i + 6;
            int lo = sc->i + 12 <= sc->n && q[0] == '\\' && q[1] == 'u' ? hex4(q + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) return fail_at(sc, sc->i, "unpaired UTF-16 surrogate in a string");
            sc->i += 6;
        }
        sc->i += 6;
    }
}

static bool is_digit(const scan *sc, size_t i) { return i < sc->n && sc->s[i] >= '0' && sc->s[i] <= '9'; }

static bool scan_number(scan *sc) {
    size_t start = sc->i, i = sc->i;
    if (i < sc->n && sc->s[i] == '-') i++;
    if (!is_digit(sc, i)) return fail_at(sc, start, "invalid number");
    if (sc->s[i] == '0') i++;
    else
        while (is_digit(sc, i)) i++;
    if (i < sc->n && sc->s[i] == '.') {
        if (!is_digit(sc, ++i)) return fail_at(sc, start, "invalid number");
        while (is_digit(sc, i)) i++;
    }
    if (i < sc->n && (sc->s[i] == 'e' || sc->s[i] == 'E')) {
        i++;
        if (i < sc->n && (sc->s[i] == '+' || sc->s[i] == '-')) i++;
        if (!is_digit(sc, i)) return fail_at(sc, start, "invalid number");
        while (is_digit(sc, i)) i++;
    }
    if (i - start > MAX_NUMBER_CHARS) return fail_at(sc, start, "number longer than 63 characters");
    sc->i = i;
    return true;
}

static bool scan_literal(scan *sc, const char *word) {
    size_t k = strlen(word);
    if (sc->n - sc->i < k || memcmp(sc->s + sc->i, word, k) != 0) return fail_at(sc, sc->i, "unexpected character");
    sc->i += k;
    return true;
}

/* One value at sc->i (whitespace skipped before it); depth: containers already open around it. */
static bool scan_value(scan *sc, int depth) {
    skip_ws(sc);
    if (sc->i >= sc->n) return fail_at(sc, sc->i, "unexpected end of input");
    if (sc->max_values && ++sc->values > sc->max_values) {
        char why[96];
        snprintf(why, sizeof why, "more than %llu JSON values", (unsigned long long)sc->max_values);
        return fail_at(sc, sc->i, why);
    }
    char c = sc->s[sc->i];
    if (c == '{' || c == '[') {
        if (depth >= LLC_JSON_MAX_DEPTH) {
            char why[64];
            snprintf(why, sizeof why, "nested deeper than %d", LLC_JSON_MAX_DEPTH);
            return fail_at(sc, sc->i, why);
        }
        char close = c == '{' ? '}' : ']';
        sc->i++;
        skip_ws(sc);
        if (sc->i < sc->n && sc->s[sc->i] == close) {
            sc->i++;
            return true;
        }
        for (;;) {
            if (c == '{') {
                skip_ws(sc);
                if (sc->i >= sc->n || sc->s[sc->i] != '"') return fail_at(sc, sc->i, "expected a string key");
                if (!scan_string(sc, true)) return false;
                skip_ws(sc);
                if (sc->i >= sc->n || sc->s[sc->i] != ':') return fail_at(sc, sc->i, "expected ':' after a key");
                sc->i++;
            }
            if (!scan_value(sc, depth + 1)) return false;
            skip_ws(sc);
            if (sc->i < sc->n && sc->s[sc->i] == ',') {
                sc->i++;
                continue;
            }
            if (sc->i < sc->n && sc->s[sc->i] == close) {
                sc->i++;
                return true;
            }
            return fail_at(sc, sc->i, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (c == '"') return scan_string(sc, false);
    if (c == '-' || (c >= '0' && c <= '9')) return scan_number(sc);
    if (c == 't') return scan_literal(sc, "true");
    if (c == 'f') return scan_literal(sc, "false");
    if (c == 'n') return scan_literal(sc, "null");
    return fail_at(sc, sc->i, "unexpected character");
}

static int cmp_key(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The first duplicate key in any object under v, or NULL. Small objects are compared pair by pair,
 * large ones (a vocabulary) sorted. *keys is a scratch array, grown as needed; NULL in *oom when it
 * could not be. */
static const char *find_duplicate(const cJSON *v, const char ***keys, size_t *cap, bool *oom) {
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v)) return NULL;
    if (cJSON_IsObject(v)) {
        size_t n = 0;
        for (const cJSON *c = v->child; c; c = c->next) n++;
        if (n <= 16) {
            for (const cJSON *a = v->child; a; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                    if (!strcmp(a->string, b->string)) return a->string;
        } else {
            if (n > *cap) {
                const char **k = realloc(*keys, n * sizeof *k);
                if (!k) {
                    *oom = true;
                    return NULL;
                }
                *keys = k;
                *cap = n;
            }
            size_t i = 0;
            for (const cJSON *c = v->child; c; c = c->next) (*keys)[i++] = c->string;
            qsort(*keys, n, sizeof **keys, cmp_key);
            for (i = 1; i < n; i++)
                if (!strcmp((*keys)[i - 1], (*keys)[i])) return (*keys)[i];
        }
    }
    for (const cJSON *c = v->child; c; c = c->next) {
        const char *d = find_duplicate(c, keys, cap, oom);
        if (d || *oom) return d;
    }
    return NULL;
}

cJSON *llc_json_parse_opts(const char *text, size_t len, const char *what, unsigned flags, uint64_t max_values,
                           llamac_error *err) {
    scan sc = {text, len, 0, what ? what : "JSON", flags, 0, max_values, err};
    const char *nul = len ? memchr(text, 0, len) : NULL;
    if (nul) return fail_at(&sc, (size_t)(nul - text), "NUL byte"), NULL;
    if (!scan_value(&sc, 0)) return NULL;
    skip_ws(&sc);
    if (sc.i < len) return fail_at(&sc, sc.i, "more after the JSON value (one value only)"), NULL;
    /* What the scan accepts, cJSON parses; a failure here is cJSON running out of memory. */
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, NULL, 0);
    if (!root) return llc_fail(err, "%s: out of memory parsing JSON (%zu bytes)", sc.what, len), NULL;
    const char **keys = NULL;
    size_t cap = 0;
    bool oom = false;
    const char *dup = find_duplicate(root, &keys, &cap, &oom);
    if (dup || oom) {
        char buf[96];
        if (oom) llc_fail(err, "%s: out of memory checking JSON keys", sc.what);
        else
            llc_fail(err, "%s: duplicate key \"%s\" in an object (readers disagree on which one counts)", sc.what,
                     llc_clip(dup, strlen(dup), 64, buf, sizeof buf));
        cJSON_Delete(root);
        root = NULL;
    }
    free(keys);
    return root;
}

cJSON *llc_json_parse(const char *text, size_t len, const char *what, llamac_error *err) {
    return llc_json_parse_opts(text, len, what, 0, 0, err);
}
