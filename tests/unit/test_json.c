/* The strict JSON parser (src/base/json.c) against hand-written expectations: valid JSON it must
 * accept (whitespace, nesting, every escape, numbers, a buffer that is not NUL-terminated) with the
 * values it must give, and malformed or ambiguous JSON it must refuse, with the message (the problem
 * and where it is) it must give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/json.h"

static cJSON *parse_n(const char *text, size_t len, unsigned flags, uint64_t max_values) {
    llamac_error err = {{0}};
    cJSON *v = llc_json_parse_opts(text, len, "t", flags, max_values, &err);
    if (!v) fail_msg("'%.80s' refused: %s", text, err.message);
    return v;
}

static cJSON *parse(const char *text) { return parse_n(text, strlen(text), 0, 0); }

/* Refused with exactly the message want. */
static void refuse_n(const char *text, size_t len, unsigned flags, uint64_t max_values, const char *want) {
    llamac_error err = {{0}};
    cJSON *v = llc_json_parse_opts(text, len, "t", flags, max_values, &err);
    if (v) {
        cJSON_Delete(v);
        fail_msg("'%.80s' accepted, want '%s'", text, want);
    }
    if (strcmp(err.message, want) != 0) fail_msg("'%.80s': got '%s', want '%s'", text, err.message, want);
}

static void refuse(const char *text, const char *want) { refuse_n(text, strlen(text), 0, 0, want); }

static void test_accepts(void **state) {
    (void)state;
    cJSON *v = parse(" \t\r\n{ \"a\" : [ 1 , [ 2 , [ 3 ] ] , { \"b\" : null } ] , \"c\":{} , \"d\":[] }\n\n ");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(v, "a");
    assert_int_equal(cJSON_GetArraySize(a), 3);
    assert_true(a->child->valuedouble == 1);
    assert_true(a->child->next->child->next->child->valuedouble == 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(a->child->next->next, "b")));
    assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(v, "c")));
    assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(v, "d")));
    cJSON_Delete(v);

    /* every escape; \u00e9 is C3 A9 in UTF-8, the pair \ud83d\ude00 is U+1F600 = F0 9F 98 80 */
    v = parse("\"x\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u00E9\"");
    assert_string_equal(v->valuestring, "x\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80\xc3\xa9");
    cJSON_Delete(v);
    /* raw UTF-8 passes through */
    v = parse("{\"\xc3\xa9t\xc3\xa9\":\"\xe4\xb8\xad\"}");
    assert_string_equal(v->child->string, "\xc3\xa9t\xc3\xa9");
    assert_string_equal(v->child->valuestring, "\xe4\xb8\xad");
    cJSON_Delete(v);
    /* \u0000 is a valid escape in a value: cJSON's string ends there */
    v = parse("[\"a\\u0000b\"]");
    assert_int_equal(v->child->valuestring[0], 'a');
    assert_int_equal(v->child->valuestring[1], 0);
    cJSON_Delete(v);

    v = parse("[0, -0, 1.5e3, -2E-2, 1e+2, 123456789012, 0.25, true, false, null]");
    const double want[] = {0, 0, 1500, -0.02, 100, 123456789012.0, 0.25};
    const cJSON *c = v->child;
    for (int i = 0; i < 7; i++, c = c->next) assert_true(cJSON_IsNumber(c) && c->valuedouble == want[i]);
    assert_true(cJSON_IsTrue(c) && cJSON_IsFalse(c->next) && cJSON_IsNull(c->next->next));
    cJSON_Delete(v);
    v = parse("\"s\"");
    assert_string_equal(v->valuestring, "s");
    cJSON_Delete(v);
    v = parse("7");
    assert_true(v->valuedouble == 7);
    cJSON_Delete(v);

    /* exactly len bytes: what follows in memory is not looked at */
    const char buf[] = "{\"a\":[1]}garbage";
    v = parse_n(buf, 9, 0, 0);
    assert_true(cJSON_GetObjectItemCaseSensitive(v, "a")->child->valuedouble == 1);
    cJSON_Delete(v);

    /* nesting up to the bound */
    char deep[2 * LLC_JSON_MAX_DEPTH + 1];
    memset(deep, '[', LLC_JSON_MAX_DEPTH);
    memset(deep + LLC_JSON_MAX_DEPTH, ']', LLC_JSON_MAX_DEPTH);
    deep[2 * LLC_JSON_MAX_DEPTH] = 0;
    cJSON_Delete(parse(deep));

    /* the same key in different objects, keys that share a prefix, a large object of distinct keys */
    cJSON_Delete(parse("{\"a\":{\"x\":1},\"b\":{\"x\":2},\"ab\":3,\"x\":[{\"x\":1},{\"x\":2}]}"));
    char big[4096];
    size_t n = 0;
    big[n++] = '{';
    for (int i = 0; i < 200; i++) n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    big[n++] = '}';
    big[n] = 0;
    v = parse(big);
    assert_int_equal(cJSON_GetArraySize(v), 200);
    cJSON_Delete(v);

    /* 63 characters of number, the most cJSON reads */
    char num[80] = "[1";
    memset(num + 2, '0', 62);
    strcpy(num + 64, "]");
    v = parse(num);
    assert_true(v->child->valuedouble == 1e62);
    cJSON_Delete(v);

    /* the value bound counts every value, containers included: [1,2,3] is four */
    cJSON_Delete(parse_n("[1,2,3]", 7, 0, 4));
}

static void test_refuses(void **state) {
    (void)state;
    refuse("{\"prompt\":\"a\"}{\"prompt\":\"b\"}", "t: not valid JSON: more after the JSON value (one value only) at column 15");
    refuse("{\"prompt\":\"c\"} trailing junk", "t: not valid JSON: more after the JSON value (one value only) at column 16");
    refuse("{\"a\":1}\n\n  x", "t: not valid JSON: more after the JSON value (one value only) at line 3, column 3");
    refuse_n("{\"a\":1}\0{\"b\":2}", 15, 0, 0, "t: not valid JSON: NUL byte at column 8");
    refuse_n("{\"a\":\"x\0y\"}", 11, 0, 0, "t: not valid JSON: NUL byte at column 8");
    refuse("", "t: not valid JSON: unexpected end of input at column 1");
    refuse(" \n ", "t: not valid JSON: unexpected end of input at line 2, column 2");
    refuse("{\"a\":1,}", "t: not valid JSON: expected a string key at column 8");
    refuse("{'a':1}", "t: not valid JSON: expected a string key at column 2");
    refuse("{\"a\" 1}", "t: not valid JSON: expected ':' after a key at column 6");
    refuse("{\"a\":1 \"b\":2}", "t: not valid JSON: expected ',' or '}' at column 8");
    refuse("[1 2]", "t: not valid JSON: expected ',' or ']' at column 4");
    refuse("[1,]", "t: not valid JSON: unexpected character at column 4");
    refuse("[01]", "t: not valid JSON: expected ',' or ']' at column 3");
    refuse("[1.]", "t: not valid JSON: invalid number at column 2");
    refuse("[.5]", "t: not valid JSON: unexpected character at column 2");
    refuse("[-]", "t: not valid JSON: invalid number at column 2");
    refuse("[1e]", "t: not valid JSON: invalid number at column 2");
    refuse("[+1]", "t: not valid JSON: unexpected character at column 2");
    refuse("[NaN]", "t: not valid JSON: unexpected character at column 2");
    refuse("[Infinity]", "t: not valid JSON: unexpected character at column 2");
    refuse("[tru]", "t: not valid JSON: unexpected character at column 2");
    refuse("[nul", "t: not valid JSON: unexpected character at column 2");
    refuse("[1", "t: not valid JSON: expected ',' or ']' at column 3");
    refuse("{\"a\":", "t: not valid JSON: unexpected end of input at column 6");
    refuse("\"abc", "t: not valid JSON: unterminated string at column 1");
    refuse("\"abc\\", "t: not valid JSON: unterminated string at column 1");
    refuse("\"a\x01z\"", "t: not valid JSON: control character inside a string (it must be escaped) at column 3");
    refuse("\"a\tz\"", "t: not valid JSON: control character inside a string (it must be escaped) at column 3");
    refuse("\"\\x\"", "t: not valid JSON: invalid escape in a string at column 2");
    refuse("\"\\u12\"", "t: not valid JSON: invalid \\u escape in a string at column 2");
    refuse("\"\\u12g4\"", "t: not valid JSON: invalid \\u escape in a string at column 2");
    refuse("\"\\ud800\"", "t: not valid JSON: unpaired UTF-16 surrogate in a string at column 2");
    refuse("\"\\udc00\"", "t: not valid JSON: unpaired UTF-16 surrogate in a string at column 2");
    refuse("\"\\ud800\\u0041\"", "t: not valid JSON: unpaired UTF-16 surrogate in a string at column 2");
    refuse("{\"a\\u0000b\":1}", "t: not valid JSON: \\u0000 in an object key at column 4");
    refuse_n("[\"a\\u0000b\"]", 12, LLC_JSON_NO_NUL_ESCAPE, 0,
             "t: not valid JSON: \\u0000 in a string (it would cut the text) at column 4");
    refuse("\xef\xbb\xbf{}", "t: not valid JSON: unexpected character at column 1");
    refuse("\f{}", "t: not valid JSON: unexpected character at column 1");
    refuse("{}\v", "t: not valid JSON: more after the JSON value (one value only) at column 3");
    char num[80] = "[1";
    memset(num + 2, '0', 63);
    strcpy(num + 65, "]");
    refuse(num, "t: not valid JSON: number longer than 63 characters at column 2");
    refuse_n("[1,2,3]", 7, 0, 3, "t: not valid JSON: more than 3 JSON values at column 6");

    /* one level too deep */
    char deep[2 * LLC_JSON_MAX_DEPTH + 3];
    memset(deep, '[', LLC_JSON_MAX_DEPTH + 1);
    memset(deep + LLC_JSON_MAX_DEPTH + 1, ']', LLC_JSON_MAX_DEPTH + 1);
    deep[2 * LLC_JSON_MAX_DEPTH + 2] = 0;
    refuse(deep, "t: not valid JSON: nested deeper than 64 at column 65");
    /* a hundred thousand deep is refused as quickly, without recursing that deep */
    size_t n = 100000;
    char *very = malloc(n + 1);
    assert_non_null(very);
    memset(very, '{', n);
    very[n] = 0;
    refuse(very, "t: not valid JSON: expected a string key at column 2");
    memset(very, '[', n);
    refuse(very, "t: not valid JSON: nested deeper than 64 at column 65");
    free(very);

    /* duplicate keys anywhere: cJSON would keep the first, Python the last */
    refuse("{\"prompt\":\"a\",\"prompt\":\"b\"}", "t: duplicate key \"prompt\" in an object (readers disagree on which one counts)");
    refuse("{\"a\":[{\"x\":{\"b\":1,\"c\":2,\"b\":3}}]}", "t: duplicate key \"b\" in an object (readers disagree on which one counts)");
    refuse("{\"\\u001b[2J\":1,\"\\u001b[2J\":2}", "t: duplicate key \"?[2J\" in an object (readers disagree on which one counts)");
    char big[4096];
    size_t k = 0;
    big[k++] = '{';
    for (int i = 0; i < 200; i++) k += (size_t)snprintf(big + k, sizeof big - k, "\"k%d\":%d,", i, i);
    k += (size_t)snprintf(big + k, sizeof big - k, "\"k17\":0}");
    refuse(big, "t: duplicate key \"k17\" in an object (readers disagree on which one counts)");

    /* NULL what: still one line naming JSON */
    llamac_error err = {{0}};
    assert_null(llc_json_parse("[", 1, NULL, &err));
    assert_string_equal(err.message, "JSON: not valid JSON: unexpected end of input at column 2");
    assert_null(llc_json_parse("[", 1, "x", NULL)); /* no error sink: no crash */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
