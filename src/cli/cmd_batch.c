/*
 * llamac batch: many requests from a JSONL file through the continuous-batching engine, results as
 * JSONL in input order, a progress bar and a throughput summary on stderr.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "base/outfile.h"
#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac batch -m MODEL --input PROMPTS.jsonl [--output OUT.jsonl] [options]\n"
    "  -m, --model PATH        GGUF, llama2.c .bin, or a Hugging Face / Meta checkpoint folder\n"
    "  --tokenizer FILE        tokenizer to use (needed for .bin models without tokenizer.bin beside them)\n"
    "  -i, --input FILE        one request per line: {\"prompt\": TEXT} (BOS added as the vocabulary asks) or\n"
    "                          {\"messages\": [{\"role\": R, \"content\": TEXT}, ...]} (the model's chat format, answer\n"
    "                          prompt appended), with optional \"max_tokens\", \"temperature\", \"top_p\", \"top_k\",\n"
    "                          \"min_p\", \"seed\" and \"stop\" (a string or an array of at most 64 strings, each at most\n"
    "                          256 bytes); blank lines are skipped, any other line must be exactly one JSON object\n"
    "  -o, --output FILE       results, one JSON object per request in input order: index, text (the completion\n"
    "                          only), prompt_tokens, completion_tokens, finish_reason (stop|length) (default: stdout;\n"
    "                          a file is written beside FILE and renamed over it when complete)\n"
    "  -n, --n-predict N       max_tokens of a request that gives none (default 256)\n"
    CLI_SAMPLING_HELP
    "                          (a request without \"seed\" gets the seed plus its index)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  -c, --ctx N             most positions one sequence may use (default: the model's, at most 4096)\n"
    CLI_KV_TYPE_HELP
    "  --kv-mem SIZE           KV cache budget: bytes, or with a K, M or G suffix (2G, 512M) (default 1G, at most\n"
    "                          what --max-seqs sequences of full context need)\n"
    "  --kv-tokens N           KV cache budget in positions, all sequences together (instead of --kv-mem)\n"
    "  --max-seqs N            sequences running at once (default 64)\n"
    "  --block-size N          positions per KV block (default 16)\n"
    "  --step-tokens N         most tokens one step computes, prompt chunks and decodes together (default 512)\n"
    "  --no-prefix-cache       compute every prompt in full (no sharing of common prefixes)\n"
    "  --special               recognise special-token text (e.g. <|eot_id|>) in \"prompt\" text\n"
    "  --chat-format F         format of \"messages\": llama3 or llama2 (default: from the model)\n";

typedef struct result {
    char *text;
    size_t len, cap;
    int prompt_tokens, completion_tokens;
    llamac_finish finish;
    bool done;
} result;

static bool result_add(result *r, const char *s, size_t n) {
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        while (cap < r->len + n + 1) cap *= 2;
        char *p = realloc(r->text, cap);
        if (!p) return false;
        r->text = p;
        r->cap = cap;
    }
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = 0;
    return true;
}

/* One result line. cJSON writes the text as UTF-8 with control characters escaped; invalid UTF-8
 * bytes (a model can emit them) go through unchanged, as llamac generate prints them. */
static bool write_result(FILE *fp, int index, const result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return false;
    cJSON_AddNumberToObject(o, "index", index);
    cJSON_AddStringToObject(o, "text", r->text ? r->text : "");
    cJSON_AddNumberToObject(o, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", r->completion_tokens);
    cJSON_AddStringToObject(o, "finish_reason", r->finish == LLAMAC_FINISH_LENGTH ? "length"
                                                : r->finish == LLAMAC_FINISH_CANCELLED ? "cancelled"
                                                                                       : "stop");
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!js) return false;
    bool ok = fputs(js, fp) >= 0 && fputc('\n', fp) != EOF;
    free(js);
    return ok;
}

static void progress(int done, int total, uint64_t gen, double t0) {
    static double last;
    if (!isatty(2)) return;
    double now = cli_now_ms();
    if (done < total && now - last < 100) return;
    last = now;
    double secs = (now - t0) / 1000.0;
    int width = 30, filled = total ? (int)((double)done / total * width) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\rbatch [%s] %d/%d requests  %llu tokens  %.1f tok/s  %.1f s", bar, done, total, (unsigned long long)gen,
            secs > 0 ? (double)gen / secs : 0, secs);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

/* A JSON number that must be an integer in [min, max]. */
static bool json_int(const cJSON *v, double min, double max, double *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < min || v->valuedouble > max) return false;
    *out = v->valuedouble;
    return true;
}

typedef struct line_ctx {
    const char *path;
    int line;
} line_ctx;

static void line_error(const line_ctx *lc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line_error(const line_ctx *lc, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_error("%s:%d: %s", lc->path, lc->line, msg);
}

/* A request is a few dozen values; messages are bounded by the context (below), so this only stops a
 * hostile line from making cJSON build gigabytes of tree. */
#define LINE_MAX_VALUES (1u << 20)

/* Parses one request line and submits it. Returns the request id, or -1 after printing the error. */
static int submit_line(llamac_engine *e, const llamac_tokenizer *tok, const line_ctx *lc, const char *text, size_t len,
                       const cli_sampling *smp, int index, int n_new, bool special, int chat_fmt, int n_ctx,
                       int *n_prompt_out) {
    int id = -1;
    int32_t *ids = NULL;
    const char **stops = NULL;
    llamac_chat_message *msgs = NULL;
    char what[512];
    snprintf(what, sizeof what, "%s:%d", lc->path, lc->line);
    llamac_error perr = {{0}};
    /* the strings go to the tokenizer as C strings: a \u0000 would cut them */
    cJSON *o = llc_json_parse_opts(text, len, what, LLC_JSON_NO_NUL_ESCAPE, LINE_MAX_VALUES, &perr);
    if (!o) {
        cli_error("%s", perr.message);
        return -1;
    }
    if (!cJSON_IsObject(o)) {
        line_error(lc, "expected a JSON object, got %s", cJSON_IsArray(o) ? "an array" : "a value");
        goto done;
    }
    /* a misspelt or unsupported field ("max_tokenz", "n") would otherwise run with the defaults */
    static const char *const known[] = {"prompt", "messages", "max_tokens", "temperature", "top_p",
                                        "top_k",  "min_p",    "seed",       "stop"};
    const cJSON *field;
    cJSON_ArrayForEach(field, o) {
        size_t k = 0;
        while (k < sizeof known / sizeof *known && strcmp(field->string, known[k]) != 0) k++;
        if (k == sizeof known / sizeof *known) {
            line_error(lc, "unknown field \"%.64s\" (a request takes prompt or messages, max_tokens, temperature, "
                           "top_p, top_k, min_p, seed, stop)", field->string);
            goto done;
        }
    }
    llamac_request rq = {.max_tokens = n_new, .sampling = smp->sp};
    rq.sampling.seed = smp->sp.seed + (uint64_t)index;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(o, "messages");
    const cJSON *v;
    double d;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "max_tokens")) && !cJSON_IsNull(v)) {
        if (!json_int(v, 1, 1 << 24, &d)) {
            line_error(lc, "\"max_tokens\" must be an integer in [1, %d]", 1 << 24);
            goto done;
        }
        rq.max_tokens = (int)d;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "temperature")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 1e6) {
            line_error(lc, "\"temperature\" must be a number >= 0");
            goto done;
        }
        rq.sampling.temperature = (float)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "top_p")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble <= 1)) {
            line_error(lc, "\"top_p\" must be a number in (0, 1]");
            goto done;
        }
        rq.sampling.top_p = (float)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "top_k")) && !cJSON_IsNull(v)) {
        if (!json_int(v, 0, 1 << 24, &d)) {
            line_error(lc, "\"top_k\" must be an integer >= 0");
            goto done;
        }
        rq.sampling.top_k = (int)d;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "min_p")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1)) {
            line_error(lc, "\"min_p\" must be a number in [0, 1]");
            goto done;
        }
        rq.sampling.min_p = (float)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "seed")) && !cJSON_IsNull(v)) {
        if (!json_int(v, 0, 9007199254740992.0, &d)) {
            line_error(lc, "\"seed\" must be an integer in [0, 2^53]");
            goto done;
        }
        rq.sampling.seed = (uint64_t)d;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "stop")) && !cJSON_IsNull(v)) {
        int n = cJSON_IsString(v) ? 1 : cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
        if (n < 0) {
            line_error(lc, "\"stop\" must be a string or an array of strings");
            goto done;
        }
        if (n > LLAMAC_MAX_STOP) {
            line_error(lc, "\"stop\" has %d strings; a request may give at most %d", n, LLAMAC_MAX_STOP);
            goto done;
        }
        if (!(stops = calloc((size_t)(n > 0 ? n : 1), sizeof *stops))) {
            line_error(lc, "out of memory");
            goto done;
        }
        int i = 0;
        const cJSON *s;
        if (cJSON_IsString(v)) stops[i++] = v->valuestring;
        else
            cJSON_ArrayForEach(s, v) stops[i++] = cJSON_IsString(s) ? s->valuestring : "";
        for (i = 0; i < n; i++)
            if (!stops[i][0]) {
                line_error(lc, "\"stop\" must be a string or an array of strings, none empty");
                goto done;
            }
        rq.stop = stops;
        rq.n_stop = n;
    }
    int n_prompt = -1;
    if (cJSON_IsString(prompt) && !messages) {
        llamac_error terr = {{0}};
        size_t plen = strlen(prompt->valuestring);
        int k = llamac_tokenize(tok, prompt->valuestring, plen, true, special, NULL, 0, &terr);
        if (k < 0 || !(ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *ids))) {
            line_error(lc, "%s", k < 0 ? terr.message : "out of memory");
            goto done;
        }
        n_prompt = llamac_tokenize(tok, prompt->valuestring, plen, true, special, ids, k, &terr);
    } else if (cJSON_IsArray(messages) && !prompt) {
        int n = cJSON_GetArraySize(messages);
        if (n < 1) {
            line_error(lc, "\"messages\" must be a non-empty array of {\"role\": ..., \"content\": ...}");
            goto done;
        }
        if (n > n_ctx) { /* every message takes at least one position */
            line_error(lc, "\"messages\" has %d messages, more than the context's %d positions could hold", n, n_ctx);
            goto done;
        }
        if (!(msgs = calloc((size_t)n, sizeof *msgs))) {
            line_error(lc, "out of memory");
            goto done;
        }
        int i = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, messages) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            if (!cJSON_IsString(role) || !cJSON_IsString(content) || cJSON_GetArraySize(m) != 2) {
                line_error(lc, "message %d needs \"role\" and \"content\" strings and nothing else", i);
                goto done;
            }
            msgs[i++] = (llamac_chat_message){role->valuestring, content->valuestring, NULL, 0};
        }
        llamac_error cerr = {{0}};
        int k = llamac_chat_tokenize(tok, (llamac_chat_format)chat_fmt, msgs, n, true, NULL, 0, &cerr);
        if (k < 0 || !(ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *ids))) {
            line_error(lc, "%s", k < 0 ? cerr.message : "out of memory");
            goto done;
        }
        n_prompt = llamac_chat_tokenize(tok, (llamac_chat_format)chat_fmt, msgs, n, true, ids, k, &cerr);
        rq.separate_text = true; /* an answer is a text of its own, as llamac generate --chat prints it */
    } else {
        line_error(lc, "needs \"prompt\" (a string) or \"messages\" (an array), one of them");
        goto done;
    }
    if (n_prompt == 0) {
        line_error(lc, "the prompt is empty and the vocabulary has no BOS token to start from");
        goto done;
    }
    rq.prompt = ids;
    rq.n_prompt = n_prompt;
    llamac_error err = {{0}};
    if ((id = llamac_engine_submit(e, &rq, &err)) < 0) line_error(lc, "%s", err.message);
    *n_prompt_out = n_prompt;
done:
    free(ids);
    free(stops);
    free(msgs);
    cJSON_Delete(o);
    return id;
}

int cmd_batch(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *in_path = NULL, *out_path = NULL, *chat_format = NULL, *v;
    int n_new = 256, n_ctx = 0, n_threads = 0;
    bool special = false;
    llamac_engine_params ep = {0};
    cli_sampling smp_opts;
    cli_sampling_init(&smp_opts);
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {&model_path, &tok_path, &n_threads, &n_ctx, &ep.kv_type};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        int sampling = cli_sampling_option(&a, &smp_opts);
        if (sampling < 0) return 2;
        if (sampling > 0) continue;
        if (!strcmp(o, "-i") || !strcmp(o, "--input")) {
            if (!(in_path = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "-o") || !strcmp(o, "--output")) {
            if (!(out_path = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "-n") || !strcmp(o, "--n-predict")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 1 << 24, &n_new)) return 2;
        } else if (!strcmp(o, "--kv-mem")) {
            if (!(v = cli_value(&a, o)) || !cli_size(o, v, &ep.kv_mem)) return 2;
        } else if (!strcmp(o, "--kv-tokens")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 1 << 30, &ep.kv_tokens)) return 2;
        } else if (!strcmp(o, "--max-seqs")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 65536, &ep.max_seqs)) return 2;
        } else if (!strcmp(o, "--block-size")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 4096, &ep.block_size)) return 2;
        } else if (!strcmp(o, "--step-tokens")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 1 << 20, &ep.step_tokens)) return 2;
        } else if (!strcmp(o, "--no-prefix-cache")) {
            ep.no_prefix_cache = true;
        } else if (!strcmp(o, "--special")) {
            special = true;
        } else if (!strcmp(o, "--chat-format")) {
            if (!(chat_format = cli_value(&a, o))) return 2;
        } else {
            return cli_usage("batch: unknown option '%s' (see llamac batch --help)", o);
        }
    }
    if (!model_path) return cli_usage("batch: -m MODEL is required");
    if (!in_path) return cli_usage("batch: --input FILE is required");
    if (ep.kv_mem && ep.kv_tokens) return cli_usage("batch: give --kv-mem or --kv-tokens, not both");
    int chat_fmt = LLAMAC_CHAT_AUTO;
    if (chat_format && (chat_fmt = llamac_chat_format_from_name(chat_format)) < 0)
        return cli_usage("batch: unknown --chat-format '%s' (llama3, llama2)", chat_format);
    ep.n_threads = n_threads;
    ep.n_ctx = n_ctx;

    if (out_path) {
        llamac_error oerr = {{0}};
        if (!llc_outfile_check(out_path, &oerr)) return cli_error("%s", oerr.message);
    }
    int rc = 1;
    size_t in_len = 0;
    char *input = cli_read_text(in_path, &in_len);
    if (!input) return 1;
    llamac_model *m = NULL;
    llamac_engine *e = NULL;
    result *res = NULL;
    llc_outfile of = {.slot = -1};
    FILE *out = NULL;
    int n_req = 0, cap_req = 0;

    double t0 = cli_now_ms();
    if (!(m = cli_load_model(model_path, tok_path))) goto done;
    cli_sampling_finish(&smp_opts, m);
    const llamac_tokenizer *tok = llamac_model_tokenizer(m);
    llamac_error err = {{0}};
    if (!(e = llamac_engine_create(m, &ep, &err))) {
        cli_error("%s", err.message);
        goto done;
    }
    double t_load = cli_now_ms() - t0;

    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    /* every line is parsed and submitted before anything runs: a bad line fails the whole batch */
    int line = 0;
    for (size_t pos = 0; pos < in_len;) {
        const char *s = input + pos, *nl = memchr(s, '\n', in_len - pos);
        size_t len = nl ? (size_t)(nl - s) : in_len - pos;
        pos += len + (nl ? 1 : 0);
        line++;
        size_t k = 0;
        while (k < len && isspace((unsigned char)s[k])) k++;
        if (k == len) continue;
        if (n_req == cap_req) {
            cap_req = cap_req ? cap_req * 2 : 64;
            result *nr = realloc(res, (size_t)cap_req * sizeof *nr);
            if (!nr) {
                cli_error("out of memory");
                goto done;
            }
            res = nr;
        }
        line_ctx lc = {in_path, line};
        int n_prompt = 0;
        int id = submit_line(e, tok, &lc, s, len, &smp_opts, n_req, n_new, special, chat_fmt, st.n_ctx, &n_prompt);
        if (id < 0) goto done;
        if (id != n_req) { /* a fresh engine numbers requests 0, 1, ... */
            cli_error("internal error: unexpected request id");
            goto done;
        }
        res[n_req] = (result){.prompt_tokens = n_prompt};
        n_req++;
    }
    if (n_req == 0) {
        cli_error("%s: no requests (the file is empty)", in_path);
        goto done;
    }
    if (out_path) {
        if (!llc_outfile_open(&of, out_path, &err)) {
            cli_error("%s", err.message);
            goto done;
        }
        out = of.f;
    } else {
        out = stdout;
    }
    llamac_engine_get_stats(e, &st);
    fprintf(stderr,
            "llamac: batch: %d requests, up to %d at once, KV cache %d blocks of %d positions (%s, %.1f MiB), context %d, %s\n", n_req,
            ep.max_seqs ? ep.max_seqs : 64, st.kv_blocks, st.block_size, llamac_kv_type_name(ep.kv_type),
            (double)llamac_model_kv_bytes(m, st.kv_blocks * st.block_size, ep.kv_type) / 1048576.0, st.n_ctx,
            ep.no_prefix_cache ? "no prefix cache" : "prefix cache on");

    double t1 = cli_now_ms();
    int n_done = 0, next_out = 0;
    uint64_t gen = 0;
    while (llamac_engine_pending(e) > 0) {
        int ne;
        const llamac_event *ev = llamac_engine_step(e, &ne, &err);
        if (!ev) {
            cli_error("%s", err.message);
            goto done;
        }
        for (int k = 0; k < ne; k++) {
            if (ev[k].request < 0 || ev[k].request >= n_req) continue;
            result *r = &res[ev[k].request];
            if (ev[k].token >= 0) {
                r->completion_tokens++;
                gen++;
            }
            if (ev[k].text_len && !result_add(r, ev[k].text, ev[k].text_len)) {
                cli_error("out of memory");
                goto done;
            }
            if (ev[k].finish != LLAMAC_RUNNING) {
                r->finish = ev[k].finish;
                r->done = true;
                n_done++;
            }
        }
        /* results go out in input order as soon as every earlier one is complete */
        for (; next_out < n_req && res[next_out].done; next_out++) {
            if (!write_result(out, next_out, &res[next_out])) {
                cli_error("cannot write %s: %s", out_path ? out_path : "standard output", strerror(errno));
                goto done;
            }
            free(res[next_out].text);
            res[next_out].text = NULL;
        }
        if (out == stdout) fflush(out);
        progress(n_done, n_req, gen, t1);
    }
    double secs = (cli_now_ms() - t1) / 1000.0;
    if (out != stdout) {
        out = NULL;
        if (!llc_outfile_commit(&of, &err)) {
            cli_error("%s", err.message);
            goto done;
        }
    }
    llamac_engine_get_stats(e, &st);
    uint64_t computed_prompt = st.prompt_tokens - st.prompt_tokens_cached;
    fprintf(stderr,
            "llamac: batch: %d requests in %.2f s (load %.0f ms) | prompt %llu tok (%llu computed, %llu from the prefix cache) | "
            "generated %llu tok, %.1f tok/s | computed %llu tok in %llu steps, %.1f tok/s | preemptions %llu | "
            "KV peak %d/%d blocks of %d, fragmentation %.2f blocks per sequence (at most %d positions) | peak RSS %.1f MiB\n",
            n_req, secs, t_load, (unsigned long long)st.prompt_tokens, (unsigned long long)computed_prompt,
            (unsigned long long)st.prompt_tokens_cached, (unsigned long long)st.generated_tokens,
            secs > 0 ? (double)st.generated_tokens / secs : 0, (unsigned long long)st.computed_tokens, (unsigned long long)st.steps,
            secs > 0 ? (double)st.computed_tokens / secs : 0, (unsigned long long)st.preemptions, st.kv_blocks_peak, st.kv_blocks,
            st.block_size, st.kv_waste_blocks, st.kv_waste_max, cli_peak_rss_mb());
    rc = 0;
done:
    llc_outfile_abort(&of);
    if (out == stdout) fflush(stdout);
    if (res)
        for (int i = 0; i < n_req; i++) free(res[i].text);
    free(res);
    free(input);
    llamac_engine_free(e);
    llamac_model_free(m);
    return rc;
}
