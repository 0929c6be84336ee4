/*
 * Llama 3 byte-level BPE encode throughput on one thread.
 *
 *   bench_bpe [-j tokenizer.json] [-r rounds] [FILE...]
 *
 * Without files: about 1 MB of English prose (Debian's /usr/share/common-licenses, repeated) and 1 MB
 * of C (the headers in /usr/include), the mix peers.md's tokenizer figures use. Prints MB/s of the best round,
 * for the pre-tokenizer alone and for the whole encode.
 *
 * `llamac bench-tokenizer [--tiktoken]` is the user-facing benchmark (any tokenizer file, npm tiktoken in
 * the same run); this one also times the pre-tokenizer alone.
 *
 * Build (not part of the CMake targets): after building the library in build-bpe,
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_bpe.c build-bpe/libllamac.a -lcjson -lm -lpthread
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mapped_file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/hf_json.h"
#include "tokenizer/pretokenize.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void append_file(buf *b, const char *path, size_t limit) {
    llamac_error err = {{0}};
    size_t n;
    char *d = llc_read_file(path, (size_t)1 << 30, &n, &err);
    if (!d) {
        fprintf(stderr, "skip %s\n", err.message);
        return;
    }
    if (n > limit) n = limit;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) exit(1);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    free(d);
}

static size_t append_glob(buf *b, const char *pattern, size_t want) {
    glob_t g;
    size_t start = b->n;
    if (glob(pattern, 0, NULL, &g) != 0) return 0;
    for (size_t i = 0; i < g.gl_pathc && b->n - start < want; i++) append_file(b, g.gl_pathv[i], want - (b->n - start));
    globfree(&g);
    return b->n - start;
}

int main(int argc, char **argv) {
    const char *json = "../shared/models/llama3-tokenizer/tokenizer.json";
    const char *sh = getenv("LLAMAC_SHARED");
    char jbuf[4096];
    if (sh) {
        snprintf(jbuf, sizeof jbuf, "%s/models/llama3-tokenizer/tokenizer.json", sh);
        json = jbuf;
    }
    int rounds = 5, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-j") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) rounds = atoi(argv[++i]);
        else return fprintf(stderr, "usage: %s [-j tokenizer.json] [-r rounds] [FILE...]\n", argv[0]), 2;
    }
    buf text = {0};
    if (i < argc) {
        for (; i < argc; i++) append_file(&text, argv[i], (size_t)1 << 30);
    } else {
        /* The licences are ~260 KB: repeat them to weigh prose and code equally. */
        while (text.n < ((size_t)1 << 20))
            if (!append_glob(&text, "/usr/share/common-licenses/*", ((size_t)1 << 20) - text.n)) break;
        append_glob(&text, "/usr/include/*.h", (size_t)1 << 20);
    }
    if (!text.n) return fprintf(stderr, "no text\n"), 1;

    llamac_error err = {{0}};
    llc_hf_vocab v;
    double t0 = now();
    if (!llc_hf_vocab_load(json, &v, &err)) return fprintf(stderr, "%s\n", err.message), 1;
    double t1 = now();
    llc_str *toks = malloc((size_t)v.n_tokens * sizeof *toks), *merges = malloc((size_t)v.n_merges * sizeof *merges);
    for (int k = 0; k < v.n_tokens; k++) toks[k] = (llc_str){v.tokens[k], v.token_lens[k]};
    for (int k = 0; k < v.n_merges; k++) merges[k] = (llc_str){v.merges[k], strlen(v.merges[k])};
    llc_bpe *b = llc_bpe_create(toks, v.n_tokens, merges, v.n_merges, &err);
    double t2 = now();
    if (!b) return fprintf(stderr, "%s\n", err.message), 1;
    printf("load tokenizer.json %.0f ms, build BPE tables %.0f ms\n", 1e3 * (t1 - t0), 1e3 * (t2 - t1));

    int cap = (int)text.n + 1;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    double best_pre = 1e9, best = 1e9;
    size_t n_pre = 0;
    int n = 0;
    for (int r = 0; r < rounds; r++) {
        double a = now();
        n_pre = 0;
        for (size_t pos = 0; pos < text.n; n_pre++) pos = llc_pretok_next((const uint8_t *)text.p, text.n, pos);
        double m = now();
        n = llc_bpe_encode(b, text.p, text.n, ids, cap);
        double e = now();
        if (m - a < best_pre) best_pre = m - a;
        if (e - m < best) best = e - m;
    }
    double mb = (double)text.n / 1e6;
    printf("%.2f MB, %zu pre-tokens, %d tokens (%.2f bytes/token)\n", mb, n_pre, n, (double)text.n / n);
    printf("pre-tokenizer alone: %.1f MB/s\n", mb / best_pre);
    printf("encode (pre-tokenize + merge): %.1f MB/s, %.1f M tokens/s\n", mb / best, n / best / 1e6);
    llc_bpe_free(b);
    llc_hf_vocab_free(&v);
    free(toks);
    free(merges);
    free(ids);
    free(text.p);
    return 0;
}
