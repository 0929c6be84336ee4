/*
 * llamac serve: the OpenAI-compatible HTTP server (src/server) from the command line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "server/server.h"

static const char usage_text[] =
    "usage: llamac serve -m MODEL [options]\n"
    "  -m, --model PATH        GGUF, llama2.c .bin, or a Hugging Face / Meta checkpoint folder\n"
    "  --tokenizer FILE        tokenizer to use (needed for .bin models without tokenizer.bin beside them)\n"
    "  --host ADDR             address to listen on (default 127.0.0.1; 0.0.0.0 or :: for every interface)\n"
    "  --port N                TCP port (default 8080; 0: any free port, printed when listening)\n"
    "  --api-key KEY           require \"Authorization: Bearer KEY\" on /v1/*, /tokenize and /detokenize\n"
    "  --api-key-file F        the same, the key read from the first line of F (keeps it out of ps)\n"
    "  --model-name NAME       the model id clients send and /v1/models lists (default: the file name)\n"
    "  --max-seqs N            requests running at once (default 64)\n"
    "  --max-queue N           requests waiting beyond those before new ones get 429 (default 256)\n"
    "  --kv-mem SIZE           KV cache budget: bytes, or with a K, M or G suffix (default 1G, at most what\n"
    "                          --max-seqs sequences of full context need)\n"
    CLI_KV_TYPE_HELP
    "  -c, --ctx N             most positions one request may use, prompt and answer (default: the model's, at\n"
    "                          most 4096)\n"
    "  --step-tokens N         most tokens one engine step computes (default 512)\n"
    "  -t, --threads N         threads of the forward pass (default: all cores)\n"
    "  --cors-origins LIST     comma-separated origins allowed to call from a browser, or * (default: none)\n"
    "  --timeout S             on SIGTERM/SIGINT, seconds running requests get to finish (default 30)\n"
    "  --keepalive S           seconds between SSE keep-alive comments on an idle stream (default 15)\n"
    "  --max-body SIZE         largest request body (default 8M; larger: 413)\n"
    "  --max-connections N     concurrent connections (default 1024)\n"
    "  --no-prefix-cache       compute every prompt in full\n";

static void on_ready(void *ctx, const char *host, int port) {
    (void)ctx;
    fprintf(stderr, "llamac: serve: listening on http://%s%s%s:%d\n", strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
            port);
    fflush(stderr);
}

static void on_log(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "llamac: serve: %s\n", line);
    fflush(stderr);
}

static char *read_key_file(const char *path) {
    size_t len = 0;
    char *text = cli_read_text(path, &len);
    if (!text) return NULL;
    size_t n = strcspn(text, "\r\n");
    text[n] = 0;
    if (!n || memchr(text, 0, n) != NULL) {
        cli_error("%s: the first line holds no API key", path);
        free(text);
        return NULL;
    }
    return text;
}

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *key_file = NULL, *v;
    int n_ctx = 0, n_threads = 0;
    uint64_t max_body = 8u << 20;
    llc_server_params p = {.host = "127.0.0.1", .port = 8080, .max_queue = 256, .drain_timeout = 30, .keepalive = 15,
                           .max_connections = 1024, .on_ready = on_ready, .log = on_log};
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {&model_path, &tok_path, &n_threads, &n_ctx, &p.engine.kv_type};
    float f;
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "--host")) {
            if (!(p.host = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--port")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 0, 65535, &p.port)) return 2;
        } else if (!strcmp(o, "--api-key")) {
            if (!(p.api_key = cli_value(&a, o))) return 2;
            if (!p.api_key[0]) return cli_usage("serve: --api-key is empty");
        } else if (!strcmp(o, "--api-key-file")) {
            if (!(key_file = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--model-name")) {
            if (!(p.model_name = cli_value(&a, o))) return 2;
            if (!p.model_name[0]) return cli_usage("serve: --model-name is empty");
        } else if (!strcmp(o, "--max-seqs")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 65536, &p.engine.max_seqs)) return 2;
        } else if (!strcmp(o, "--max-queue")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 0, 1 << 20, &p.max_queue)) return 2;
        } else if (!strcmp(o, "--kv-mem")) {
            if (!(v = cli_value(&a, o)) || !cli_size(o, v, &p.engine.kv_mem)) return 2;
        } else if (!strcmp(o, "--step-tokens")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 1 << 20, &p.engine.step_tokens)) return 2;
        } else if (!strcmp(o, "--cors-origins")) {
            if (!(p.cors_origins = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--timeout")) {
            if (!(v = cli_value(&a, o)) || !cli_float(o, v, 0, 86400, &f)) return 2;
            p.drain_timeout = f;
        } else if (!strcmp(o, "--keepalive")) {
            if (!(v = cli_value(&a, o)) || !cli_float(o, v, 0.05, 3600, &f)) return 2;
            p.keepalive = f;
        } else if (!strcmp(o, "--max-body")) {
            if (!(v = cli_value(&a, o)) || !cli_size(o, v, &max_body)) return 2;
            if (max_body > (1ull << 30)) return cli_usage("serve: --max-body is at most 1G");
        } else if (!strcmp(o, "--max-connections")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 65536, &p.max_connections)) return 2;
        } else if (!strcmp(o, "--no-prefix-cache")) {
            p.engine.no_prefix_cache = true;
        } else {
            return cli_usage("serve: unknown option '%s' (see llamac serve --help)", o);
        }
    }
    if (!model_path) return cli_usage("serve: -m MODEL is required");
    if (p.api_key && key_file) return cli_usage("serve: give --api-key or --api-key-file, not both");
    p.max_body = (size_t)max_body;
    p.engine.n_ctx = n_ctx;
    p.engine.n_threads = n_threads;
    char *key = NULL, *name = NULL;
    if (key_file && !(p.api_key = key = read_key_file(key_file))) return 1;
    if (!p.model_name) {
        /* the file (or folder) name without its extension */
        const char *base = model_path + strlen(model_path);
        while (base > model_path && base[-1] == '/') base--;
        const char *end = base;
        while (base > model_path && base[-1] != '/') base--;
        const char *dot = memchr(base, '.', (size_t)(end - base));
        size_t n = dot && dot > base ? (size_t)(dot - base) : (size_t)(end - base);
        if (!n || !(name = strndup(base, n))) {
            free(key);
            return cli_usage("serve: give --model-name (no name in '%s')", model_path);
        }
        p.model_name = name;
    }
    llamac_model *m = cli_load_model(model_path, tok_path);
    int rc = 1;
    if (m) {
        llamac_error err = {{0}};
        if (llc_serve(m, &p, &err) == 0) rc = 0;
        else cli_error("%s", err.message);
    }
    llamac_model_free(m);
    free(key);
    free(name);
    return rc;
}
