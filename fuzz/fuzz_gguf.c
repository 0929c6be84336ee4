/*
 * libFuzzer target: GGUF bytes -> reader, every accessor, the tokenizer, the model binder, and a tiny
 * forward pass + sampling when the bytes make a loadable model.
 *
 *   scripts/fuzz.sh            (builds with clang -fsanitize=fuzzer,address,undefined and runs it)
 *   build-fuzz/fuzz_gguf CORPUS_DIR -max_total_time=60
 *
 * Every input must either be rejected with a one-line error or survive all of the calls below without a
 * sanitizer report; an error message with a newline, an id outside the vocabulary, or a tensor outside
 * the bytes are reported as crashes too (abort()).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "fuzz_common.h"
#include "llamac.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;
static fuzz_memfile model_file;

static void exercise_kvs(const gguf_file *g) {
    char key[256];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        gguf_print_value(devnull, kv);
        touch(kv->key.ptr, kv->key.len);
        (void)gguf_type_name(kv->type);
        if (kv->type == GGUF_STRING) touch(kv->v.str.ptr, kv->v.str.len);
        if (kv->type == GGUF_ARRAY) {
            uint64_t n = kv->v.arr.n;
            touch(kv->v.arr.data, kv->v.arr.nbytes);
            if (kv->v.arr.type == GGUF_STRING) {
                /* validated at open: n strings exist, so n * 8 <= file size */
                llc_str *s = malloc((n ? n : 1) * sizeof *s);
                if (!s) abort();
                gguf_arr_strings(kv, s);
                for (uint64_t j = 0; j < n; j++) touch(s[j].ptr, s[j].len);
                free(s);
            } else if (kv->v.arr.type != GGUF_ARRAY) {
                uint64_t lim = n < 64 ? n : 64;
                for (uint64_t j = 0; j < lim; j++) (void)gguf_arr_num(kv, j);
                if (n) (void)gguf_arr_num(kv, n - 1);
                (void)gguf_arr_num(kv, n); /* out of range: must return 0, not read */
            }
        }
        /* the typed getters, on a NUL-terminated copy of the key */
        if (kv->key.len < sizeof key && !memchr(kv->key.ptr, 0, kv->key.len)) {
            memcpy(key, kv->key.ptr, kv->key.len);
            key[kv->key.len] = 0;
            llamac_error err = {{0}};
            uint32_t u;
            float f;
            llc_str s;
            bool b;
            if (gguf_find(g, key) == NULL) abort(); /* keys are unique, so the first match exists */
            gguf_get_u32(g, key, &u, &err);
            gguf_get_f32(g, key, &f, &err);
            if (gguf_get_str(g, key, &s, &err)) touch(s.ptr, s.len);
            gguf_get_bool(g, key, &b, &err);
            for (uint32_t t = 0; t < GGUF_NTYPES; t++) (void)gguf_get_arr(g, key, t, &err);
        }
    }
}

static void exercise_tensors(const gguf_file *g) {
    char name[256];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        touch(t->name.ptr, t->name.len);
        touch(t->data, t->nbytes); /* every tensor lies inside the bytes */
        if (t->name.len < sizeof name && !memchr(t->name.ptr, 0, t->name.len)) {
            memcpy(name, t->name.ptr, t->name.len);
            name[t->name.len] = 0;
            if (gguf_find_tensor(g, name) != t) abort(); /* names are unique */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!devnull) {
        devnull = fopen("/dev/null", "w");
        if (!devnull) abort();
        memfile_init(&model_file, "fuzz_gguf");
    }
    llamac_error err = {{0}};
    gguf_file *g = gguf_open_memory(data, size, &err);
    if (!g) {
        check_message(&err);
        return 0;
    }
    exercise_kvs(g);
    exercise_tensors(g);
    llamac_error terr = {{0}};
    llamac_tokenizer *tok = llc_tokenizer_from_gguf(g, &terr);
    if (tok) {
        exercise_tokenizer(tok);
        llamac_tokenizer_free(tok);
    } else {
        check_message(&terr);
    }
    bool has_tensors = g->n_tensors > 0;
    gguf_close(g);
    if (has_tensors) {
        /* The model loader takes a path: hand it the same bytes through an in-memory file. */
        memfile_set(&model_file, data, size);
        exercise_model(model_file.path, NULL, size);
    }
    return 0;
}
