/* llamac convert: any model llamac loads, written as a GGUF (llama.cpp loads it too). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kernels/types.h"
#include "model/model_export.h"

static const char usage_text[] =
    "usage: llamac convert IN OUT.gguf [--type f32|f16|bf16|q8_0|q4_0] [--tokenizer FILE]\n"
    "  IN: a GGUF, a llama2.c .bin, a Hugging Face folder or a Meta original folder\n"
    "  --type   re-encode every matrix (default: keep each tensor's type)\n";

/* Reports progress on stderr while the writer pulls tensors. */
typedef struct progress {
    bool (*fill)(void *, int, void *, uint64_t, llamac_error *);
    void *ctx;
    uint64_t done, total;
    double t0;
    bool tty;
} progress;

static bool fill_with_progress(void *ctx, int i, void *dst, uint64_t nbytes, llamac_error *err) {
    progress *p = ctx;
    if (!p->fill(p->ctx, i, dst, nbytes, err)) return false;
    p->done += nbytes;
    cli_progress("converting", p->done, p->total, p->t0);
    return true;
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type_name = NULL, *tok_path = NULL;
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {NULL, &tok_path, NULL, NULL};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "--type")) {
            if (!(type_name = cli_value(&a, o))) return 2;
        } else if (o[0] == '-' && o[1]) {
            return cli_usage("convert: unknown option '%s'", o);
        } else if (!in) {
            in = o;
        } else if (!out) {
            out = o;
        } else {
            return cli_usage("convert: one input and one output");
        }
    }
    if (!in || !out) return cli_usage("convert: IN and OUT.gguf are required");
    int type = -1;
    if (type_name) {
        type = llc_type_from_name(type_name);
        if (type < 0 || !llc_type_get((uint32_t)type)->from_float)
            return cli_usage("convert: unknown --type '%s' (f32, f16, bf16, q8_0, q4_0)", type_name);
    }
    llamac_model *m = cli_load_model(in, tok_path);
    if (!m) return 1;
    llamac_error err = {{0}};
    llc_model_src src;
    if (!llc_model_export(m, type, &src, &err)) {
        llamac_model_free(m);
        return cli_error("%s: %s", in, err.message);
    }
    progress p = {src.fill, src.ctx, 0, 0, cli_now_ms(), isatty(2)};
    for (int i = 0; i < src.n_tensors; i++)
        p.total += llc_row_size(src.tensors[i].type, src.tensors[i].cols) * (uint64_t)src.tensors[i].rows;
    src.fill = fill_with_progress;
    src.ctx = &p;
    bool ok = llc_write_gguf_model(&src, out, &err);
    src.ctx = p.ctx;
    llc_model_export_free(&src);
    llamac_model_free(m);
    if (!ok) return cli_error("%s", err.message);
    fprintf(stderr, "llamac: wrote %s: %.1f MiB in %.1f s\n", out, (double)p.total / 1048576.0, (cli_now_ms() - p.t0) / 1000.0);
    return 0;
}
