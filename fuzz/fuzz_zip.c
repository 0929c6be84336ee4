/*
 * libFuzzer target: bytes -> a PyTorch checkpoint archive (.pth), three ways:
 *   1. the zip directory reader (formats/zip.h): every entry's bytes lie inside the input, lookups
 *      by name find each entry;
 *   2. llc_torch_open: data.pkl through the restricted unpickler and every tensor located in the
 *      archive (its bytes are touched, so ASan reports a tensor outside the input);
 *   3. the whole Meta folder loader: the bytes become consolidated.00.pth beside a fixed params.json
 *      (a 1-layer model of dim 8 with a 32-token vocabulary) and, when they load, a few tokens are
 *      run and sampled.
 *
 *   FUZZ: speed=e2e dict=zip,pickle seeds=zip
 *
 *   scripts/fuzz.sh zip
 *   build-fuzz/fuzz_zip fuzz/corpus/zip -max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/pickle.h"
#include "formats/zip.h"
#include "fuzz_common.h"

static char dir[64];
static char pth[128];
static char tok[128];

static void write_file(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n || fclose(f) != 0) abort();
}

static void cleanup(void) {
    char p[128];
    snprintf(p, sizeof p, "%s/params.json", dir);
    unlink(p);
    unlink(pth);
    unlink(tok);
    rmdir(dir);
}

/* The folder: params.json of a model the seeds match, and a 32-token llama2.c tokenizer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(dir, sizeof dir, "/tmp/llamac-fuzz-zip.XXXXXX");
    if (!mkdtemp(dir)) abort();
    char p[128];
    snprintf(p, sizeof p, "%s/params.json", dir);
    const char *params = "{\"dim\": 8, \"n_layers\": 1, \"n_heads\": 2, \"n_kv_heads\": 1, \"vocab_size\": 32, "
                         "\"multiple_of\": 8, \"norm_eps\": 1e-05, \"rope_theta\": 10000.0}\n";
    write_file(p, params, strlen(params));
    uint8_t buf[1024];
    size_t n = 0;
    int32_t maxlen = 8;
    memcpy(buf, &maxlen, 4);
    n = 4;
    for (int i = 0; i < 32; i++) {
        char t[8];
        if (i == 0) strcpy(t, "<unk>");
        else if (i == 1) strcpy(t, "\n<s>\n");
        else if (i == 2) strcpy(t, "\n</s>\n");
        else {
            t[0] = (char)('a' + i - 3);
            t[1] = 0;
        }
        float score = -(float)i;
        int32_t len = (int32_t)strlen(t);
        memcpy(buf + n, &score, 4);
        memcpy(buf + n + 4, &len, 4);
        memcpy(buf + n + 8, t, (size_t)len);
        n += 8 + (size_t)len;
    }
    snprintf(tok, sizeof tok, "%s/tok32.bin", dir);
    write_file(tok, buf, n);
    snprintf(pth, sizeof pth, "%s/consolidated.00.pth", dir);
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse_zip_and_torch(data, size);
    write_file(pth, data, size);
    exercise_model(dir, tok, size);
    return 0;
}
