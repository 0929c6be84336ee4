/* SHA-256 (src/base/sha256.c) against FIPS 180-4's published vectors, fed whole and in uneven pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/sha256.h"

static void digest_of(const char *data, size_t n, size_t piece, char hex[65]) {
    llc_sha256 s;
    uint8_t d[32];
    llc_sha256_init(&s);
    for (size_t i = 0; i < n; i += piece) llc_sha256_update(&s, data + i, n - i < piece ? n - i : piece);
    llc_sha256_final(&s, d);
    llc_sha256_hex(d, hex);
}

static void check(const char *data, size_t n, const char *want) {
    static const size_t pieces[] = {1, 3, 55, 56, 63, 64, 65, 1000, (size_t)1 << 30};
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
        char hex[65];
        digest_of(data, n, pieces[k], hex);
        if (strcmp(hex, want)) fail_msg("%zu bytes in pieces of %zu: %s, want %s", n, pieces[k], hex, want);
    }
}

static void test_vectors(void **state) {
    (void)state;
    check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *four = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check(four, strlen(four), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void **state) {
    (void)state;
    size_t n = 1000000;
    char *a = malloc(n);
    assert_non_null(a);
    memset(a, 'a', n);
    check(a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_million_a),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
