/* The safetensors header parser on files built here from the format description (u64 LE header length,
 * JSON header, data section): valid files, each kind of hostile header, and random corruptions of a
 * valid file, which must be refused with one line or give tensors that lie inside the bytes. Then a
 * small Hugging Face folder through the public API: hyperparameters, defaults, generation_config.json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "formats/safetensors.h"
#include "kernels/types.h"
#include "llamac.h"

typedef struct file {
    uint8_t *b;
    size_t n;
} file;

/* header JSON (padded with spaces to pad) + data_len bytes of data (byte i = i & 0xff). */
static file make(const char *json, size_t pad, size_t data_len) {
    size_t hl = strlen(json);
    size_t padded = pad ? (hl + pad - 1) / pad * pad : hl;
    file f = {malloc(8 + padded + data_len + 1), 8 + padded + data_len};
    assert_non_null(f.b);
    for (int i = 0; i < 8; i++) f.b[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(f.b + 8, json, hl);
    memset(f.b + 8 + hl, ' ', padded - hl);
    for (size_t i = 0; i < data_len; i++) f.b[8 + padded + i] = (uint8_t)i;
    return f;
}

static const char valid_json[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"b.weight\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[24,36]},"
    "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"c\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[36,40]},"
    "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[40,48]},"
    "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[48,48]}}";

static void test_valid(void **state) {
    (void)state;
    file f = make(valid_json, 8, 48);
    llc_safetensors st;
    llamac_error err = {{0}};
    assert_true(llc_safetensors_parse(f.b, f.n, &st, &err));
    assert_int_equal(st.n_tensors, 5); /* __metadata__ is not a tensor */
    assert_int_equal(st.data_offset % 8, 0);
    const llc_st_tensor *a = llc_safetensors_find(&st, "a.weight"), *b = llc_safetensors_find(&st, "b.weight");
    const llc_st_tensor *c = llc_safetensors_find(&st, "c"), *s = llc_safetensors_find(&st, "s");
    const llc_st_tensor *e = llc_safetensors_find(&st, "e");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(s);
    assert_non_null(e);
    assert_null(llc_safetensors_find(&st, "__metadata__"));
    assert_null(llc_safetensors_find(&st, "a"));
    assert_int_equal(a->type, LLC_F32);
    assert_int_equal(b->type, LLC_BF16);
    assert_int_equal(c->type, LLC_F16);
    assert_int_equal(s->type, -1); /* parsed and checked, not computed with */
    assert_string_equal(s->dtype, "I64");
    assert_int_equal(a->n_dims, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(s->n_dims, 0);
    assert_int_equal(s->n_elements, 1);
    assert_int_equal(e->n_elements, 0);
    assert_ptr_equal(a->data, f.b + st.data_offset);
    assert_ptr_equal(b->data, f.b + st.data_offset + 24);
    assert_int_equal(b->nbytes, 12);
    assert_int_equal(b->data[0], 24); /* the data byte at offset 24 */
    llc_safetensors_free(&st);

    /* no padding, whitespace after the JSON: fine; before it: the format says the header starts with '{' */
    free(f.b);
    f = make("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}\t\n  ", 0, 4);
    assert_true(llc_safetensors_parse(f.b, f.n, &st, &err));
    assert_int_equal(st.n_tensors, 1);
    llc_safetensors_free(&st);
    free(f.b);
    f = make(" {}", 0, 0);
    assert_false(llc_safetensors_parse(f.b, f.n, &st, &err));
    free(f.b);
    f = make("{}", 8, 0);
    assert_true(llc_safetensors_parse(f.b, f.n, &st, &err));
    assert_int_equal(st.n_tensors, 0);
    assert_null(llc_safetensors_find(&st, "x"));
    llc_safetensors_free(&st);
    free(f.b);
}

/* Parses json (+ data) and expects a refusal whose one-line message contains want. */
static void refuse(const char *json, size_t data_len, const char *want) {
    file f = make(json, 8, data_len);
    llc_safetensors st;
    llamac_error err = {{0}};
    bool ok = llc_safetensors_parse(f.b, f.n, &st, &err);
    if (ok || !strstr(err.message, want) || strchr(err.message, '\n'))
        fail_msg("header %s: got %s '%s', want an error with '%s'", json, ok ? "success" : "error", err.message, want);
    assert_null(st.tensors);
    free(f.b);
}

static void test_hostile_headers(void **state) {
    (void)state;
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "not valid JSON");
    refuse("[1,2]", 0, "not a JSON object");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} junk", 8, "not valid JSON");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, "past the end");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before they begin");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"y\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}", 16, "overlap");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate key \"x\"");
    refuse("{\"x\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'Q4_K'");
    refuse("{\"x\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no dtype");
    refuse("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "no shape");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "invalid dimension");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "invalid dimension");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "9 dimensions");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "too large");
    refuse("{\"x\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,4]}}", 4, "invalid dimension");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "data_offsets");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", 4, "data_offsets");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}", 4, "data_offsets");
    refuse("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,18446744073709551616]}}", 4,
           "data_offsets");
    refuse("{\"x\":[0,4]}", 4, "not a JSON object");
}

static void test_hostile_lengths(void **state) {
    (void)state;
    llc_safetensors st;
    llamac_error err = {{0}};
    uint8_t small[7] = {0};
    assert_false(llc_safetensors_parse(small, sizeof small, &st, &err));
    assert_non_null(strstr(err.message, "too short"));

    file f = make(valid_json, 8, 48);
    /* length beyond the file, beyond the 100 MB limit, and 2^64-1 (no wrap-around in the check) */
    uint64_t lens[] = {f.n - 7, 100000001ull, UINT64_MAX, 1ull << 63};
    const char *want[] = {"past the end", "limit", "limit", "limit"};
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 8; k++) f.b[k] = (uint8_t)(lens[i] >> (8 * k));
        assert_false(llc_safetensors_parse(f.b, f.n, &st, &err));
        if (!strstr(err.message, want[i])) fail_msg("length %llu: '%s'", (unsigned long long)lens[i], err.message);
    }
    /* a header that eats the data: the offsets now run past the (empty) data section */
    uint64_t all = f.n - 8;
    for (int k = 0; k < 8; k++) f.b[k] = (uint8_t)(all >> (8 * k));
    assert_false(llc_safetensors_parse(f.b, f.n, &st, &err));
    free(f.b);

    /* a header of millions of tiny values is refused before cJSON builds a tree of gigabytes */
    size_t n = 8u << 20;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memcpy(big, "{\"a\":[", 6);
    for (size_t i = 6; i + 2 < n; i += 2) memcpy(big + i, "0,", 2);
    memcpy(big + n - 3, "0]}", 4);
    f = make(big, 8, 0);
    assert_false(llc_safetensors_parse(f.b, f.n, &st, &err));
    assert_non_null(strstr(err.message, "JSON values"));
    free(f.b);
    free(big);
}

/* Random byte changes to a valid file: every outcome is a one-line error, or tensors inside the bytes
 * that do not overlap. */
static void test_corruptions(void **state) {
    (void)state;
    file f = make(valid_json, 8, 48);
    uint8_t *copy = malloc(f.n);
    assert_non_null(copy);
    uint64_t rng = 12345;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(copy, f.b, f.n);
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(rng >> 33) % f.n;
            static const char pool[] = "0123456789[]{},:\" -.eE\\FIBU";
            copy[pos] = (rng >> 20) & 1 ? (uint8_t)pool[(rng >> 24) % (sizeof pool - 1)] : (uint8_t)(rng >> 40);
        }
        size_t len = iter % 7 == 0 ? (size_t)(rng >> 45) % f.n : f.n;
        llc_safetensors st;
        llamac_error err = {{0}};
        if (!llc_safetensors_parse(copy, len, &st, &err)) {
            if (!err.message[0] || strchr(err.message, '\n')) fail_msg("bad message '%s'", err.message);
            continue;
        }
        accepted++;
        for (int i = 0; i < st.n_tensors; i++) {
            const llc_st_tensor *t = &st.tensors[i];
            assert_true(t->data >= copy + st.data_offset && t->data + t->nbytes <= copy + len);
            assert_ptr_equal(llc_safetensors_find(&st, t->name), t);
            for (int j = i + 1; j < st.n_tensors; j++) {
                const llc_st_tensor *u = &st.tensors[j];
                bool disjoint = !t->nbytes || !u->nbytes || t->data + t->nbytes <= u->data || u->data + u->nbytes <= t->data;
                assert_true(disjoint);
            }
        }
        llc_safetensors_free(&st);
    }
    assert_true(accepted > 0);
    free(copy);
    free(f.b);
}

/* ---- a whole folder through the public API: config.json, generation_config.json, the weights --- */

static void write_bytes(const char *dir, const char *name, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A tied 1-layer model (dim 8, 2 heads, 1 KV head, ffn 16) over tok512.bin's 512 tokens, F32 matrices
 * and BF16 norms (converted at load). */
static void write_folder(const char *dir, const char *generation_config) {
    static const struct { const char *name; int rows, cols; } ts[] = {
        {"model.embed_tokens.weight", 512, 8}, {"model.layers.0.self_attn.q_proj.weight", 8, 8},
        {"model.layers.0.self_attn.k_proj.weight", 4, 8}, {"model.layers.0.self_attn.v_proj.weight", 4, 8},
        {"model.layers.0.self_attn.o_proj.weight", 8, 8}, {"model.layers.0.mlp.gate_proj.weight", 16, 8},
        {"model.layers.0.mlp.up_proj.weight", 16, 8}, {"model.layers.0.mlp.down_proj.weight", 8, 16},
        {"model.norm.weight", 0, 8}, {"model.layers.0.input_layernorm.weight", 0, 8},
        {"model.layers.0.post_attention_layernorm.weight", 0, 8},
    };
    char header[4096] = "{";
    size_t off = 0, hn = 1;
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        bool vec = ts[i].rows == 0;
        size_t bytes = vec ? (size_t)ts[i].cols * 2 : (size_t)ts[i].rows * ts[i].cols * 4;
        char shape[32];
        if (vec) snprintf(shape, sizeof shape, "[%d]", ts[i].cols);
        else snprintf(shape, sizeof shape, "[%d,%d]", ts[i].rows, ts[i].cols);
        hn += (size_t)snprintf(header + hn, sizeof header - hn, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                               i ? "," : "", ts[i].name, vec ? "BF16" : "F32", shape, off, off + bytes);
        off += bytes;
    }
    memcpy(header + hn, "}", 2);
    file f = make(header, 8, off);
    /* small weights, norms exactly 1.0 in bf16 (0x3f80) */
    size_t data = (size_t)(f.n - off);
    for (size_t i = 0; i + 4 <= off; i += 4) {
        float v = (float)((int)(i * 7919 % 200) - 100) / 400.0f;
        memcpy(f.b + data + i, &v, 4);
    }
    for (size_t i = off - 3 * 16; i < off; i += 2) {
        f.b[data + i] = 0x80;
        f.b[data + i + 1] = 0x3f;
    }
    write_bytes(dir, "model.safetensors", f.b, f.n);
    free(f.b);
    static const char config[] =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 512,"
        " \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-06, \"tie_word_embeddings\": true,"
        " \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0,"
        " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16}}";
    write_bytes(dir, "config.json", config, strlen(config));
    if (generation_config) write_bytes(dir, "generation_config.json", generation_config, strlen(generation_config));
}

static void test_folder_api(void **state) {
    (void)state;
    const char *shared = getenv("LLAMAC_SHARED");
    char tok[1024], dir[] = "/tmp/llamac-test-st.XXXXXX";
    snprintf(tok, sizeof tok, "%s/models/stories260K/tok512.bin", shared ? shared : "../shared");
    FILE *probe = fopen(tok, "rb");
    if (!probe) skip();
    fclose(probe);
    assert_non_null(mkdtemp(dir));
    llamac_model_params mp = {.tokenizer_path = tok};
    llamac_error err = {{0}};

    write_folder(dir, "{\"do_sample\": true, \"temperature\": 0.6, \"top_p\": 0.9, \"eos_token_id\": [2]}");
    llamac_model *m = llamac_model_load(dir, &mp, &err);
    if (!m) fail_msg("%s", err.message);
    llamac_model_info info;
    llamac_model_get_info(m, &info);
    assert_string_equal(info.format, "hf");
    assert_int_equal(info.n_layers, 1);
    assert_int_equal(info.n_heads, 2);
    assert_int_equal(info.n_kv_heads, 1);
    assert_int_equal(info.n_vocab, 512);
    assert_int_equal(info.n_ctx_train, 64);
    assert_true(info.tied_output);
    assert_true(info.has_rope_freqs);
    assert_float_equal(info.rms_eps, 1e-6f, 0);
    assert_float_equal(info.rope_theta, 10000.0f, 0); /* LlamaConfig's default */
    assert_float_equal(info.default_temperature, 0.6f, 0);
    assert_float_equal(info.default_top_p, 0.9f, 0);
    assert_string_equal(info.weight_type, "f32");
    llamac_session *s = llamac_session_create(m, &(llamac_session_params){.n_ctx = 8, .n_threads = 1}, &err);
    assert_non_null(s);
    int32_t ids[3] = {1, 100, 200};
    const float *logits = llamac_session_eval(s, ids, 3, &err);
    assert_non_null(logits);
    for (int i = 0; i < 512; i++) assert_true(logits[i] == logits[i] && logits[i] > -1e6f && logits[i] < 1e6f);
    llamac_session_free(s);
    llamac_model_free(m);

    /* do_sample false: transformers decodes greedily and ignores temperature, so no default is taken */
    write_folder(dir, "{\"do_sample\": false, \"temperature\": 0.6, \"top_p\": 0.9}");
    m = llamac_model_load(dir, &mp, &err);
    assert_non_null(m);
    llamac_model_get_info(m, &info);
    assert_float_equal(info.default_temperature, 0.0f, 0);
    assert_float_equal(info.default_top_p, 0.0f, 0);
    llamac_model_free(m);

    static const char *const files[] = {"model.safetensors", "config.json", "generation_config.json"};
    for (int i = 0; i < 3; i++) {
        char p[1100];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_hostile_lengths),
        cmocka_unit_test(test_corruptions),
        cmocka_unit_test(test_folder_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
