/* The GGUF reader on bytes built by hand from the format description (every value type, nested
 * arrays, alignment), on the real stories260K file, and the writer read back by the reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "base/fp16.h"
#include "formats/gguf.h"
#include "kernels/types.h"
#include "tokenizer/tokenizer.h"

typedef struct buf {
    unsigned char b[4096];
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n) {
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}

static size_t type_field_at; /* where build() put the tensor's type */

/* A v3 file with one kv of each type, a nested array, and one f32 tensor [3 x 2] at alignment 64. */
static size_t build(buf *b, uint32_t version) {
    b->n = 0;
    put(b, "GGUF", 4);
    u32(b, version);
    u64(b, 1);  /* tensors */
    u64(b, 15); /* kvs */
    uint8_t u8v = 200; str(b, "k.u8"); u32(b, GGUF_U8); put(b, &u8v, 1);
    int8_t i8v = -100; str(b, "k.i8"); u32(b, GGUF_I8); put(b, &i8v, 1);
    uint16_t u16v = 60000; str(b, "k.u16"); u32(b, GGUF_U16); put(b, &u16v, 2);
    int16_t i16v = -30000; str(b, "k.i16"); u32(b, GGUF_I16); put(b, &i16v, 2);
    str(b, "k.u32"); u32(b, GGUF_U32); u32(b, 4000000000u);
    int32_t i32v = -2000000000; str(b, "k.i32"); u32(b, GGUF_I32); put(b, &i32v, 4);
    float f32v = 1.5f; str(b, "k.f32"); u32(b, GGUF_F32); put(b, &f32v, 4);
    uint8_t t = 1; str(b, "k.bool"); u32(b, GGUF_BOOL); put(b, &t, 1);
    str(b, "k.str"); u32(b, GGUF_STRING); str(b, "héllo");
    str(b, "k.u64"); u32(b, GGUF_U64); u64(b, 1ull << 40);
    int64_t i64v = -(1ll << 40); str(b, "k.i64"); u32(b, GGUF_I64); put(b, &i64v, 8);
    double f64v = -2.25; str(b, "k.f64"); u32(b, GGUF_F64); put(b, &f64v, 8);
    str(b, "k.strs"); u32(b, GGUF_ARRAY); u32(b, GGUF_STRING); u64(b, 3); str(b, "a"); str(b, ""); str(b, "ccc");
    /* [[1, 2], [3]] as arrays of i32 */
    str(b, "k.nested"); u32(b, GGUF_ARRAY); u32(b, GGUF_ARRAY); u64(b, 2);
    u32(b, GGUF_I32); u64(b, 2); u32(b, 1); u32(b, 2);
    u32(b, GGUF_I32); u64(b, 1); u32(b, 3);
    str(b, "general.alignment"); u32(b, GGUF_U32); u32(b, 64);
    /* tensor info */
    str(b, "w"); u32(b, 2); u64(b, 3); u64(b, 2);
    type_field_at = b->n;
    u32(b, LLC_F32); u64(b, 0);
    while (b->n % 64) b->b[b->n++] = 0;
    float w[6] = {1, 2, 3, 4, 5, 6};
    put(b, w, sizeof w);
    return b->n;
}

static void test_hand_built(void **state) {
    (void)state;
    static buf b;
    for (uint32_t version = 2; version <= 3; version++) {
        build(&b, version);
        llamac_error err = {{0}};
        llc_gguf_file *g = llc_gguf_open_memory(b.b, b.n, &err);
        if (!g) fail_msg("%s", err.message);
        assert_int_equal(g->n_kv, 15);
        assert_int_equal(llc_gguf_find(g, "k.u8")->v.u, 200);
        assert_int_equal(llc_gguf_find(g, "k.i8")->v.i, -100);
        assert_int_equal(llc_gguf_find(g, "k.u16")->v.u, 60000);
        assert_int_equal(llc_gguf_find(g, "k.i16")->v.i, -30000);
        assert_int_equal(llc_gguf_find(g, "k.u32")->v.u, 4000000000u);
        assert_int_equal(llc_gguf_find(g, "k.i32")->v.i, -2000000000);
        assert_true(llc_gguf_find(g, "k.f32")->v.f == 1.5);
        assert_int_equal(llc_gguf_find(g, "k.bool")->v.u, 1);
        assert_true(llc_str_eq(llc_gguf_find(g, "k.str")->v.str, "héllo"));
        assert_int_equal(llc_gguf_find(g, "k.u64")->v.u, 1ull << 40);
        assert_int_equal(llc_gguf_find(g, "k.i64")->v.i, -(1ll << 40));
        assert_true(llc_gguf_find(g, "k.f64")->v.f == -2.25);
        const llc_gguf_kv *s = llc_gguf_get_arr(g, "k.strs", GGUF_STRING, &err);
        assert_non_null(s);
        llc_str strs[3];
        llc_gguf_arr_strings(s, strs);
        assert_true(llc_str_eq(strs[0], "a") && llc_str_eq(strs[1], "") && llc_str_eq(strs[2], "ccc"));
        const llc_gguf_kv *nested = llc_gguf_find(g, "k.nested");
        assert_int_equal(nested->v.arr.type, GGUF_ARRAY);
        assert_int_equal(nested->v.arr.n, 2);
        uint32_t u;
        assert_true(llc_gguf_get_u32(g, "k.u16", &u, &err) && u == 60000);
        assert_false(llc_gguf_get_u32(g, "k.i32", &u, &err)); /* negative: out of range for u32 */
        assert_int_equal(g->alignment, 64);
        const llc_gguf_tensor *t = llc_gguf_find_tensor(g, "w");
        assert_non_null(t);
        assert_int_equal(t->ne[0], 3);
        assert_int_equal(t->ne[1], 2);
        assert_int_equal(t->nbytes, 24);
        assert_true(((const float *)t->data)[5] == 6.0f);
        FILE *null = fopen("/dev/null", "w");
        for (uint64_t i = 0; i < g->n_kv; i++) llc_gguf_print_value(null, &g->kv[i]);
        fclose(null);
        llc_gguf_close(g);
    }
}

/* Every truncation of a valid file is an error, never a read past the end (ASan checks that). */
static void test_truncations(void **state) {
    (void)state;
    static buf b;
    size_t n = build(&b, 3);
    for (size_t cut = 0; cut < n; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.b, cut);
        llamac_error err = {{0}};
        llc_gguf_file *g = llc_gguf_open_memory(copy, cut, &err);
        assert_null(g);
        assert_true(err.message[0] != 0);
        free(copy);
    }
}

static void test_hostile(void **state) {
    (void)state;
    static buf b;
    llamac_error err = {{0}};
    size_t n = build(&b, 3);
    b.b[4] = 4; /* version 4 */
    assert_null(llc_gguf_open_memory(b.b, n, &err));
    assert_non_null(strstr(err.message, "version"));
    n = build(&b, 3);
    memset(b.b + 16, 0xff, 8); /* n_kv = 2^64-1 */
    assert_null(llc_gguf_open_memory(b.b, n, &err));
    n = build(&b, 3);
    b.b[type_field_at] = 99; /* unknown tensor type */
    assert_null(llc_gguf_open_memory(b.b, n, &err));
    assert_non_null(strstr(err.message, "type 99"));
    n = build(&b, 3);
    b.b[type_field_at + 4] = 1; /* offset 1: misaligned */
    assert_null(llc_gguf_open_memory(b.b, n, &err));
    assert_non_null(strstr(err.message, "aligned"));
    n = build(&b, 3);
    b.b[type_field_at + 5] = 1; /* offset 256: past the end */
    assert_null(llc_gguf_open_memory(b.b, n, &err));
    assert_non_null(strstr(err.message, "past the end"));
}

static void test_writer_round_trip(void **state) {
    (void)state;
    char tmp[4096];
    const char *dir = getenv("LLAMAC_TMP");
    if (dir) mkdir(dir, 0755);
    snprintf(tmp, sizeof tmp, "%s/test_gguf_roundtrip.gguf", dir ? dir : "/tmp");
    llc_gguf_writer *w = llc_gguf_writer_create();
    llc_gguf_write_str(w, "general.architecture", "llama");
    llc_gguf_write_u32(w, "a.u32", 7);
    llc_gguf_write_f32(w, "a.f32", 0.25f);
    llc_gguf_write_bool(w, "a.bool", true);
    const char *strs[2] = {"x", "yz"};
    llc_gguf_write_str_arr(w, "a.strs", strs, NULL, 2);
    int32_t ints[3] = {5, -6, 7};
    llc_gguf_write_arr(w, "a.ints", GGUF_I32, ints, 3);
    float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)i - 32;
    block_q8_0 q[2];
    llc_type_get(LLC_Q8_0)->from_float(data, q, 64);
    int64_t ne[2] = {32, 2};
    llc_gguf_writer_add_tensor(w, "q", LLC_Q8_0, 2, ne, q, sizeof q);
    int64_t ne1[1] = {5};
    llc_gguf_writer_add_tensor(w, "f", LLC_F32, 1, ne1, data, 20);
    llamac_error err = {{0}};
    assert_true(llc_gguf_writer_save(w, tmp, NULL, NULL, &err));
    llc_gguf_writer_free(w);
    llc_gguf_file *g = llc_gguf_open(tmp, &err);
    if (!g) fail_msg("%s", err.message);
    assert_int_equal(llc_gguf_find(g, "a.u32")->v.u, 7);
    assert_true(llc_gguf_find(g, "a.f32")->v.f == 0.25);
    assert_true(llc_gguf_arr_num(llc_gguf_find(g, "a.ints"), 1) == -6.0);
    const llc_gguf_tensor *t = llc_gguf_find_tensor(g, "q");
    assert_int_equal(t->type, LLC_Q8_0);
    assert_int_equal(t->nbytes, 68);
    assert_memory_equal(t->data, q, sizeof q);
    assert_memory_equal(llc_gguf_find_tensor(g, "f")->data, data, 20);
    assert_int_equal((uintptr_t)llc_gguf_find_tensor(g, "f")->data % 32, 0);
    llc_gguf_close(g);
    remove(tmp);
}

static void test_real_file(void **state) {
    (void)state;
    char path[4096];
    const char *shared = getenv("LLAMAC_SHARED");
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", shared ? shared : "../shared");
    llamac_error err = {{0}};
    llc_gguf_file *g = llc_gguf_open(path, &err);
    if (!g) fail_msg("%s", err.message);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_tensors, 48);
    uint32_t v;
    assert_true(llc_gguf_get_u32(g, "llama.block_count", &v, &err) && v == 5);
    assert_true(llc_gguf_get_u32(g, "llama.embedding_length", &v, &err) && v == 64);
    assert_true(llc_gguf_get_u32(g, "llama.attention.head_count_kv", &v, &err) && v == 4);
    const llc_gguf_tensor *t = llc_gguf_find_tensor(g, "token_embd.weight");
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    llc_gguf_close(g);
}

/* stories260K.gguf rewritten key by key, with bad_key (if any) holding a string instead of its number. */
static void write_model(const char *path, const char *bad_key) {
    char src[4096];
    const char *shared = getenv("LLAMAC_SHARED");
    snprintf(src, sizeof src, "%s/models/stories260K/stories260K.gguf", shared ? shared : "../shared");
    llamac_error err = {{0}};
    llc_gguf_file *g = llc_gguf_open(src, &err);
    if (!g) fail_msg("%s", err.message);
    llamac_tokenizer *tok = llc_tokenizer_from_gguf(g, &err);
    if (!tok) fail_msg("%s", err.message);
    llc_gguf_writer *w = llc_gguf_writer_create();
    llc_gguf_write_str(w, "general.architecture", "llama");
    static const char *const ints[] = {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                                       "llama.attention.head_count", "llama.attention.head_count_kv", "llama.context_length"};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        uint32_t v = 0;
        assert_true(llc_gguf_get_u32(g, ints[i], &v, &err));
        if (bad_key && !strcmp(ints[i], bad_key)) llc_gguf_write_str(w, ints[i], "512");
        else llc_gguf_write_u32(w, ints[i], v);
    }
    if (bad_key && !strcmp(bad_key, "llama.rope.freq_base")) llc_gguf_write_str(w, bad_key, "10000");
    else llc_gguf_write_f32(w, "llama.rope.freq_base", 10000.0f);
    llc_tokenizer_write_gguf(tok, w);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const llc_gguf_tensor *t = &g->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        llc_gguf_writer_add_tensor(w, name, t->type, (int)t->n_dims, t->ne, t->data, t->nbytes);
    }
    if (!llc_gguf_writer_save(w, path, NULL, NULL, &err)) fail_msg("%s", err.message);
    llc_gguf_writer_free(w);
    llamac_tokenizer_free(tok);
    llc_gguf_close(g);
}

/* An optional llama.* key of the wrong type fails the load through the public API, with an error
 * struct and without one (NULL is allowed): the loader once told an absent key from a bad one by
 * reading err->message, so with err NULL the key was ignored and the default used. */
static void test_model_bad_optional_key(void **state) {
    (void)state;
    char tmp[4096];
    const char *dir = getenv("LLAMAC_TMP");
    if (dir) mkdir(dir, 0755);
    snprintf(tmp, sizeof tmp, "%s/test_gguf_bad_optional_key.gguf", dir ? dir : "/tmp");
    write_model(tmp, NULL); /* the control: the same file with every key well typed loads */
    llamac_model *m = llamac_model_load(tmp, NULL, NULL);
    assert_non_null(m);
    llamac_model_free(m);
    static const char *const bad[] = {"llama.context_length", "llama.rope.freq_base"}; /* opt_u32, opt_f32 */
    for (int i = 0; i < 2; i++) {
        write_model(tmp, bad[i]);
        assert_null(llamac_model_load(tmp, NULL, NULL));
        llamac_error err = {{0}};
        assert_null(llamac_model_load(tmp, NULL, &err));
        if (!strstr(err.message, bad[i])) fail_msg("%s: %s", bad[i], err.message);
    }
    remove(tmp);
}

/* Known IEEE encodings, not our own round trips. */
static void test_fp16_bf16(void **state) {
    (void)state;
    assert_int_equal(llc_fp32_to_fp16(1.0f), 0x3c00);
    assert_int_equal(llc_fp32_to_fp16(-2.0f), 0xc000);
    assert_int_equal(llc_fp32_to_fp16(65504.0f), 0x7bff);
    assert_int_equal(llc_fp32_to_fp16(1e6f), 0x7c00);
    assert_int_equal(llc_fp32_to_fp16(5.960464477539063e-08f), 0x0001); /* smallest subnormal */
    assert_int_equal(llc_fp32_to_fp16(1.0009765625f), 0x3c01);
    assert_int_equal(llc_fp32_to_fp16(1.00048828125f), 0x3c00); /* tie to even */
    assert_true(llc_fp16_to_fp32(0x3555) == 0.333251953125f);
    assert_true(llc_fp16_to_fp32(0x0001) == 5.960464477539063e-08f);
    assert_int_equal(llc_fp32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(llc_fp32_to_bf16(3.14159265f), 0x4049);
    assert_true(llc_bf16_to_fp32(0xc0a0) == -5.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_built),  cmocka_unit_test(test_truncations), cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_writer_round_trip), cmocka_unit_test(test_real_file), cmocka_unit_test(test_fp16_bf16),
        cmocka_unit_test(test_model_bad_optional_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
