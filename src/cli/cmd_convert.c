/* llamac convert: any model llamac loads, written as a GGUF (llama.cpp loads it too). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac convert IN OUT.gguf [--type TYPE] [--tokenizer FILE] [--threads N]\n"
    "  IN: a GGUF, a llama2.c .bin, a Hugging Face folder or a Meta original folder\n"
    "  --type   re-encode the matrices: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, or the mixes q4_k_m, q4_k_s\n"
    "           (as `llamac quantize`; default: keep each tensor's type)\n";

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type_name = NULL, *tok_path = NULL;
    int n_threads = 0;
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {NULL, &tok_path, &n_threads, NULL, NULL};
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
    if (type_name && !llamac_save_type_known(type_name))
        return cli_usage("convert: unknown --type '%s' (%s)", type_name, llamac_save_type_names());
    return cli_write_gguf(in, out, tok_path, type_name, n_threads, "converting");
}
