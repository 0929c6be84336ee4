/*
 * Shared by the libFuzzer targets (fuzz/fuzz_*.c): checks and exercisers for tokenizers and models.
 * Header-only (static functions) so that each target stays one .c file for the CMake glob.
 */
#ifndef LLC_FUZZ_COMMON_H
#define LLC_FUZZ_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "formats/pickle.h"
#include "formats/safetensors.h"
#include "formats/zip.h"
#include "llamac.h"

/* libFuzzer's entry points. One-time setup belongs in LLVMFuzzerInitialize: it runs before the
 * per-input timeout starts counting, so a slow setup (big tokenizers under ASan on a busy machine)
 * cannot be blamed on the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), written apart from the library's
 * own check so that the targets judge its output independently. */
static inline bool fuzz_utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t k;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) k = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) k = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return false;
        if (n - i <= k || s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return false;
        i += k + 1;
    }
    return true;
}

/* Where the shared test data may be: $LLAMAC_SHARED, beside the repository whose build folder holds this
 * program, or relative to the working directory. Fills dirs[FUZZ_N_SHARED] (NULL entries skipped);
 * exe_rel is the caller's buffer for the second. */
#define FUZZ_N_SHARED 4
static inline void fuzz_shared_dirs(const char *dirs[FUZZ_N_SHARED], char exe_rel[4096]) {
    exe_rel[0] = 0;
    ssize_t k = readlink("/proc/self/exe", exe_rel, 4096 - 32);
    if (k > 0) {
        exe_rel[k] = 0;
        char *slash = strrchr(exe_rel, '/');
        if (slash) strcpy(slash, "/../../shared");
        else exe_rel[0] = 0;
    } else {
        exe_rel[0] = 0;
    }
    dirs[0] = getenv("LLAMAC_SHARED");
    dirs[1] = exe_rel[0] ? exe_rel : NULL;
    dirs[2] = "../shared";
    dirs[3] = "../../shared";
}

static volatile uint8_t fuzz_sink;

/* A failure must say something, on one line. */
static inline void check_message(const llamac_error *err) {
    if (!err->message[0] || strchr(err->message, '\n')) abort();
}

/* Reads the first, middle and last byte: ASan reports if a claimed range is not all valid memory. */
static inline void touch(const void *p, uint64_t n) {
    if (!n) return;
    const uint8_t *b = p;
    fuzz_sink ^= b[0];
    fuzz_sink ^= b[n - 1];
    fuzz_sink ^= b[n / 2];
}

/* An in-memory file with a path, for the loaders that take paths. */
typedef struct fuzz_memfile {
    int fd;
    char path[64];
} fuzz_memfile;

static inline void memfile_init(fuzz_memfile *f, const char *name) {
    f->fd = memfd_create(name, 0);
    if (f->fd < 0) abort();
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

static inline void memfile_set(fuzz_memfile *f, const void *data, size_t size) {
    if (ftruncate(f->fd, 0) != 0 || (size && pwrite(f->fd, data, size, 0) != (ssize_t)size)) abort();
}

static const char *const texts[] = {
    "Once upon a time", "", " ", "  leading and trailing  ", "<s>hi</s><|eot_id|><|begin_of_text|>",
    "\xff\xfe invalid \xc3\x28 utf8 \xe2\x82", "emoji 🦙 and 中文 and ünïcödé", "\n\n\t\r\x01",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "1234567890 3.14 don't I'm we'll",
};

/* A valid llama2.c tokenizer.bin of 32 tokens (<unk>, BOS, EOS, space, a..z, "th", "e ") into f: the
 * fixed vocabulary the model targets run with. */
static inline void memfile_set_mini_tokenizer(fuzz_memfile *f) {
    uint8_t buf[1024];
    int32_t maxlen = 8;
    memcpy(buf, &maxlen, 4);
    size_t n = 4;
    char tokens[32][8] = {"<unk>", "\n<s>\n", "\n</s>\n", " "};
    for (int i = 0; i < 26; i++) tokens[4 + i][0] = (char)('a' + i);
    strcpy(tokens[30], "th");
    strcpy(tokens[31], "e ");
    for (int i = 0; i < 32; i++) {
        float score = -(float)i;
        int32_t len = (int32_t)strlen(tokens[i]);
        memcpy(buf + n, &score, 4);
        memcpy(buf + n + 4, &len, 4);
        memcpy(buf + n + 8, tokens[i], (size_t)len);
        n += 8 + (size_t)len;
    }
    memfile_set(f, buf, n);
}

static inline void exercise_tokenizer(const llamac_tokenizer *tok) {
    int n_vocab = llamac_tokenizer_n_vocab(tok);
    (void)llamac_tokenizer_bos(tok);
    (void)llamac_tokenizer_eos(tok);
    int32_t ids[512];
    llamac_error err = {{0}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (int mode = 0; mode < 4; mode++) {
            int n = llamac_tokenize(tok, texts[i], strlen(texts[i]), mode & 1, mode & 2, ids, 512, &err);
            if (n < 0) {
                check_message(&err);
                continue;
            }
            if (n > 512) n = 512;
            for (int j = 0; j < n; j++)
                if (ids[j] < 0 || ids[j] >= n_vocab) abort(); /* tokenize must only produce real ids */
            llamac_detokenizer d;
            llamac_detokenizer_init(&d, tok);
            char buf[256];
            for (int j = 0; j < n; j++) {
                size_t len = llamac_detokenize(&d, ids[j], buf, sizeof buf);
                if (len >= sizeof buf) abort();
            }
            llamac_detokenizer_flush(&d, buf, sizeof buf);
        }
        /* a tiny output buffer: the count may exceed cap, nothing may be written past it */
        int32_t one[1];
        (void)llamac_tokenize(tok, texts[i], strlen(texts[i]), true, false, one, 1, &err);
    }
    /* every id, plus some that are not ids */
    llamac_detokenizer d;
    llamac_detokenizer_init(&d, tok);
    char buf[256];
    int lim = n_vocab < 4096 ? n_vocab : 4096;
    for (int32_t id = -2; id < lim + 2; id++) {
        const char *b;
        size_t n = llamac_token_bytes(tok, id, &b);
        touch(b, n);
        (void)llamac_tokenizer_is_eog(tok, id);
        size_t len = llamac_detokenize(&d, id, buf, sizeof buf);
        if (len >= sizeof buf) abort();
    }
    (void)llamac_detokenize(&d, INT32_MAX, buf, sizeof buf);
    (void)llamac_detokenize(&d, INT32_MIN, buf, sizeof buf);
    llamac_detokenizer_flush(&d, buf, sizeof buf);
}

/* Loads a model (and its tokenizer), lists it, and when it is small runs a few tokens through it and
 * samples from the logits with both the greedy and the full sampling path. */
static inline void exercise_model(const char *path, const char *tokenizer_path, uint64_t seed) {
    llamac_error err = {{0}};
    llamac_model_params mp = {.tokenizer_path = tokenizer_path};
    llamac_model *m = llamac_model_load(path, &mp, &err);
    if (!m) {
        check_message(&err);
        return;
    }
    llamac_model_info info;
    llamac_model_get_info(m, &info);
    (void)llamac_model_kv_bytes(m, 4096, LLAMAC_KV_F32);
    for (int i = 0; i < llamac_model_n_tensors(m); i++) {
        llamac_tensor_info ti;
        if (llamac_model_tensor(m, i, &ti)) touch(ti.name, strlen(ti.name));
    }
    const llamac_tokenizer *tok = llamac_model_tokenizer(m);
    /* A forward pass only for small models: the fuzzer wants many executions per second. */
    if (info.weight_bytes <= (4u << 20) && info.n_layers <= 8) {
        llamac_session_params sp = {.n_ctx = 8, .n_threads = 1};
        llamac_session *s = llamac_session_create(m, &sp, &err);
        if (!s) {
            check_message(&err);
        } else {
            int32_t ids[4] = {llamac_tokenizer_bos(tok) >= 0 ? llamac_tokenizer_bos(tok) : 0, 1 % info.n_vocab,
                              (info.n_vocab - 1), 2 % info.n_vocab};
            const float *logits = llamac_session_eval(s, ids, 3, &err);
            if (logits) {
                touch(logits, (uint64_t)info.n_vocab * sizeof *logits);
                llamac_sampler_params p = llamac_sampler_defaults();
                p.seed = seed;
                p.temperature = 0;
                llamac_sampler *smp = llamac_sampler_create(&p, info.n_vocab, &err);
                if (smp) {
                    int32_t next = llamac_sampler_sample(smp, logits);
                    if (next < 0 || next >= info.n_vocab) abort();
                    llamac_sampler_free(smp);
                }
                /* LLAMAC_FUZZ_SKIP_SAMPLER=1 keeps fuzzing the loaders past a known sampler bug. */
                static int skip_sampler = -1;
                if (skip_sampler < 0) skip_sampler = getenv("LLAMAC_FUZZ_SKIP_SAMPLER") != NULL;
                p = llamac_sampler_defaults();
                p.seed = seed;
                p.repeat_penalty = 1.1f;
                p.top_k = (int)(seed % 3 == 0 ? 0 : seed % 50);
                smp = skip_sampler ? NULL : llamac_sampler_create(&p, info.n_vocab, &err);
                if (smp) {
                    for (int i = 0; i < 3; i++) llamac_sampler_accept(smp, ids[i]);
                    int32_t next = llamac_sampler_sample(smp, logits);
                    if (next < 0 || next >= info.n_vocab) abort();
                    const char *b = "";
                    size_t nb = llamac_token_bytes(tok, next, &b);
                    touch(b, nb);
                    if (llamac_session_eval(s, &next, 1, &err) == NULL) check_message(&err);
                    llamac_sampler_free(smp);
                }
            } else {
                check_message(&err);
            }
            /* tokens outside the vocabulary must be refused, not looked up */
            int32_t bad[2] = {info.n_vocab, -1};
            if (llamac_session_eval(s, bad, 1, &err) != NULL || llamac_session_eval(s, bad + 1, 1, &err) != NULL) abort();
            llamac_session_free(s);
        }
    }
    llamac_model_free(m);
}

/* ---- what a parser promises once it accepts the bytes (shared by the fast and end-to-end targets) ---- */

/* Every kv through the printer, the typed getters and the array accessors; out is /dev/null. */
static inline void check_gguf_kvs(const llc_gguf_file *g, FILE *out) {
    char key[256];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const llc_gguf_kv *kv = &g->kv[i];
        llc_gguf_print_value(out, kv);
        touch(kv->key.ptr, kv->key.len);
        (void)llc_gguf_type_name(kv->type);
        if (kv->type == GGUF_STRING) touch(kv->v.str.ptr, kv->v.str.len);
        if (kv->type == GGUF_ARRAY) {
            uint64_t n = kv->v.arr.n;
            touch(kv->v.arr.data, kv->v.arr.nbytes);
            if (kv->v.arr.type == GGUF_STRING) {
                /* validated at open: n strings exist, so n * 8 <= file size */
                llc_str *s = malloc((n ? n : 1) * sizeof *s);
                if (!s) abort();
                llc_gguf_arr_strings(kv, s);
                for (uint64_t j = 0; j < n; j++) touch(s[j].ptr, s[j].len);
                free(s);
            } else if (kv->v.arr.type != GGUF_ARRAY) {
                uint64_t lim = n < 64 ? n : 64;
                for (uint64_t j = 0; j < lim; j++) (void)llc_gguf_arr_num(kv, j);
                if (n) (void)llc_gguf_arr_num(kv, n - 1);
                (void)llc_gguf_arr_num(kv, n); /* out of range: must return 0, not read */
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
            if (llc_gguf_find(g, key) == NULL) abort(); /* keys are unique, so the first match exists */
            llc_gguf_get_u32(g, key, &u, &err);
            llc_gguf_get_f32(g, key, &f, &err);
            if (llc_gguf_get_str(g, key, &s, &err)) touch(s.ptr, s.len);
            llc_gguf_get_bool(g, key, &b, &err);
            for (uint32_t t = 0; t < GGUF_NTYPES; t++) (void)llc_gguf_get_arr(g, key, t, &err);
        }
    }
}

/* Every tensor lies inside the bytes and is found by its (unique) name. */
static inline void check_gguf_tensors(const llc_gguf_file *g) {
    char name[256];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const llc_gguf_tensor *t = &g->tensors[i];
        touch(t->name.ptr, t->name.len);
        touch(t->data, t->nbytes);
        if (t->name.len < sizeof name && !memchr(t->name.ptr, 0, t->name.len)) {
            memcpy(name, t->name.ptr, t->name.len);
            name[t->name.len] = 0;
            if (llc_gguf_find_tensor(g, name) != t) abort();
        }
    }
}

/* Tensors inside the data section, found by name, sharing no byte. */
static inline void check_safetensors(const llc_safetensors *st, const uint8_t *data, size_t size) {
    const uint8_t *lo = data + st->data_offset, *hi = data + size;
    for (int i = 0; i < st->n_tensors; i++) {
        const llc_st_tensor *t = &st->tensors[i];
        if (t->data < lo || t->nbytes > (uint64_t)(hi - t->data)) abort();
        touch(t->data, t->nbytes);
        touch(t->name, strlen(t->name));
        if (llc_safetensors_find(st, t->name) != t) abort();
        /* sorted by name, so overlapping neighbours in memory need not be neighbours here: check all
         * pairs for the small inputs a fuzzer makes */
        for (int j = i + 1; j < st->n_tensors && st->n_tensors <= 256; j++) {
            const llc_st_tensor *u = &st->tensors[j];
            if (t->nbytes && u->nbytes && t->data < u->data + u->nbytes && u->data < t->data + t->nbytes) abort();
        }
    }
}

/* Every entry's bytes inside the input, every lookup by name finding its entry. */
static inline void check_zip(const llc_zip *z, const uint8_t *data, size_t size) {
    for (size_t i = 0; i < z->n_entries; i++) {
        const llc_zip_entry *e = &z->entries[i];
        if (e->data < data || e->size > size || e->data + e->size > data + size) abort();
        touch(e->data, e->size);
        touch(e->name, e->name_len);
        if (llc_zip_find(z, e->name, e->name_len) != e) abort();
    }
    (void)llc_zip_find(z, "", 0);
}

static inline void check_torch(const llc_torch_file *f, const uint8_t *data, size_t size) {
    for (size_t i = 0; i < f->n_tensors; i++) {
        const llc_torch_tensor *t = &f->tensors[i];
        if (t->data < data || t->nbytes > size || t->data + t->nbytes > data + size) abort();
        touch(t->data, t->nbytes);
        char name[128];
        if (t->name_len < sizeof name && !memchr(t->name, 0, t->name_len)) {
            memcpy(name, t->name, t->name_len);
            name[t->name_len] = 0;
            if (llc_torch_find(f, name) != t) abort();
        }
    }
}

/* The bytes as a zip directory, then as a PyTorch checkpoint: opened, checked, closed (the fast zip
 * target does only this; the end-to-end one goes on to load them as a Meta model). */
static inline void parse_zip_and_torch(const uint8_t *data, size_t size) {
    llamac_error err = {{0}};
    llc_zip z;
    if (llc_zip_open(&z, data, size, "fuzz.pth", &err)) {
        check_zip(&z, data, size);
        llc_zip_close(&z);
    } else {
        check_message(&err);
    }
    llc_torch_file f;
    err.message[0] = 0;
    if (llc_torch_open(&f, data, size, "fuzz.pth", &err)) {
        check_torch(&f, data, size);
        llc_torch_close(&f);
    } else {
        check_message(&err);
    }
}

/* Descriptions that hold together: inside their storage, shape matching the count, names unique and
 * sorted, names and keys pointing into the pickle. */
static inline void check_pickle(const llc_pickle_tensors *t, const uint8_t *data, size_t size) {
    for (size_t i = 0; i < t->n; i++) {
        const llc_pickle_tensor *p = &t->v[i];
        if (p->name < (const char *)data || p->name + p->name_len > (const char *)data + size) abort();
        if (p->key < (const char *)data || p->key + p->key_len > (const char *)data + size) abort();
        touch(p->name, p->name_len);
        touch(p->key, p->key_len);
        if (p->offset > p->storage_numel || p->n_elements > p->storage_numel - p->offset) abort();
        if (p->n_dims < 0 || p->n_dims > LLC_TORCH_MAX_DIMS || p->elem_size == 0 || !p->dtype) abort();
        uint64_t n = 1;
        for (int d = 0; d < p->n_dims; d++) n *= (uint64_t)p->shape[d];
        if (n != p->n_elements) abort();
        if (i > 0) {
            size_t a = t->v[i - 1].name_len, b = p->name_len, m = a < b ? a : b;
            int c = memcmp(t->v[i - 1].name, p->name, m);
            if (c > 0 || (c == 0 && a >= b)) abort();
        }
    }
}

/* A vocabulary a loader accepted, cheaply (the fast targets): sizes, specials and every id's bytes. */
static inline void check_tokenizer_cheap(const llamac_tokenizer *tok) {
    int n_vocab = llamac_tokenizer_n_vocab(tok);
    if (n_vocab <= 0) abort();
    int32_t bos = llamac_tokenizer_bos(tok), eos = llamac_tokenizer_eos(tok);
    if (bos < -1 || bos >= n_vocab || eos < -1 || eos >= n_vocab) abort();
    for (int32_t id = 0; id < n_vocab; id++) {
        const char *b;
        size_t n = llamac_token_bytes(tok, id, &b);
        touch(b, n);
    }
}

/* A tokenizer parser's verdict: refused with a proper message, or accepted and then checked and freed. */
static inline void check_tokenizer_result(llamac_tokenizer *tok, const llamac_error *err) {
    if (!tok) {
        check_message(err);
        return;
    }
    check_tokenizer_cheap(tok);
    llamac_tokenizer_free(tok);
}

#endif
