/* llamac tokenize: ids of a text, from a model's tokenizer or a tokenizer file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mapped_file.h"
#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac tokenize (-m MODEL | --tokenizer FILE) [--no-bos] [--special] [--json] (TEXT | --file PATH)\n"
    "  prints the token ids, space-separated (or a JSON array with --json)\n"
    "  --no-bos     do not add the BOS token\n"
    "  --special    recognise special-token text such as <s> or <|eot_id|>\n";

static bool is_gguf(const char *path) {
    char magic[4] = {0};
    size_t got = 0;
    return llc_read_head(path, magic, 4, &got, NULL) && got == 4 && memcmp(magic, "GGUF", 4) == 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *text = NULL, *file = NULL;
    bool bos = true, json = false, special = false;
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {&model_path, &tok_path, NULL, NULL, NULL};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "--file") || !strcmp(o, "-f")) {
            if (!(file = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--no-bos")) {
            bos = false;
        } else if (!strcmp(o, "--special")) {
            special = true;
        } else if (!strcmp(o, "--json")) {
            json = true;
        } else if (o[0] == '-' && o[1] && !text) {
            return cli_usage("tokenize: unknown option '%s'", o);
        } else if (!text) {
            text = o;
        } else {
            return cli_usage("tokenize: more than one text given (quote it)");
        }
    }
    if (!model_path && !tok_path) return cli_usage("tokenize: give -m MODEL or --tokenizer FILE");
    if (!text == !file) return cli_usage("tokenize: give the text or --file PATH");
    size_t len = 0;
    char *buf = NULL;
    if (file) {
        if (!(buf = cli_read_text(file, &len))) return 1;
        text = buf;
    } else {
        len = strlen(text);
    }
    llamac_model *m = NULL;
    llamac_tokenizer *own = NULL;
    const llamac_tokenizer *tok;
    llamac_error err = {{0}};
    int rc = 1;
    int32_t *ids = NULL;
    if (model_path && !tok_path && !is_gguf(model_path)) {
        if (!(m = cli_load_model(model_path, NULL))) goto done;
        tok = llamac_model_tokenizer(m);
    } else {
        /* A GGUF's vocabulary is read without binding its weights, so vocabulary-only files work too. */
        if (!tok_path) tok_path = model_path;
        if (!(own = llamac_tokenizer_load(tok_path, &err))) {
            cli_error("%s", err.message);
            goto done;
        }
        tok = own;
    }
    int n = cli_tokenize(tok, text, len, bos, special, &ids);
    if (n < 0) goto done;
    if (json) putchar('[');
    for (int i = 0; i < n; i++) printf(json ? "%s%d" : "%s%d", i ? (json ? ", " : " ") : "", ids[i]);
    puts(json ? "]" : "");
    rc = 0;
done:
    free(ids);
    free(buf);
    llamac_tokenizer_free(own);
    llamac_model_free(m);
    return rc;
}
