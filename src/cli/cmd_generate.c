/* llamac generate: stream a prompt's continuation to stdout, timings to stderr. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac generate -m MODEL -p PROMPT [options]\n"
    "  -m, --model PATH        GGUF, llama2.c .bin, or a Hugging Face / Meta checkpoint folder\n"
    "                          or ORG/NAME[:QUANT] from the Hugging Face cache (every -m; see llamac pull)\n"
    "  --pull                  with -m ORG/NAME: download it first (every -m)\n"
    "  --tokenizer FILE        tokenizer to use (needed for .bin models without tokenizer.bin beside them)\n"
    "  -p, --prompt TEXT       prompt (BOS is added as the vocabulary asks)\n"
    "  -f, --file FILE         read the prompt from a file\n"
    "  -n, --n-predict N       new tokens to generate (default 256; stops earlier at end of text)\n"
    CLI_SAMPLING_HELP
    "  -t, --threads N         threads (default: all cores)\n"
    "  -c, --ctx N             context size in tokens (default: the model's, at most 4096)\n"
    CLI_KV_TYPE_HELP
    "  --special               recognise special-token text (e.g. <|eot_id|>) in the prompt\n"
    "  --json                  print one JSON object (prompt_ids, ids, text, timings) instead of streaming\n"
    "  --chat                  the prompt is a user message in the model's chat format (only the answer is printed)\n"
    "  --system TEXT           with --chat: a system message\n"
    "  --chat-format F         with --chat: llama3 or llama2 (default: from the model's chat template or vocabulary)\n";

typedef struct outbuf {
    char *p;
    size_t n, cap;
} outbuf;

static void out_add(outbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = NULL, *prompt_file = NULL;
    const char *system = NULL, *chat_format = NULL;
    bool chat = false;
    int n_new = 256, n_ctx = 0, n_threads = 0;
    bool json = false, special = false;
    cli_sampling smp_opts;
    cli_sampling_init(&smp_opts);
    cli_args a = {argc, 1, argv, false};
    llamac_kv_type kv_type = LLAMAC_KV_F32;
    const cli_common common = {&model_path, &tok_path, &n_threads, &n_ctx, &kv_type};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i], *v;
        CLI_COMMON_OPTIONS(a, common, usage_text)
        int sampling = cli_sampling_option(&a, &smp_opts);
        if (sampling < 0) return 2;
        if (sampling > 0) continue;
        if (!strcmp(o, "-p") || !strcmp(o, "--prompt")) {
            if (!(prompt = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "-f") || !strcmp(o, "--file")) {
            if (!(prompt_file = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "-n") || !strcmp(o, "--n-predict")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 0, 1 << 24, &n_new)) return 2;
        } else if (!strcmp(o, "--special")) {
            special = true;
        } else if (!strcmp(o, "--json")) {
            json = true;
        } else if (!strcmp(o, "--chat")) {
            chat = true;
        } else if (!strcmp(o, "--system")) {
            if (!(system = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--chat-format")) {
            if (!(chat_format = cli_value(&a, o))) return 2;
        } else {
            return cli_usage("generate: unknown option '%s' (see llamac generate --help)", o);
        }
    }
    if (!model_path) return cli_usage("generate: -m MODEL is required");
    if (!prompt && !prompt_file) return cli_usage("generate: a prompt is required (-p TEXT or -f FILE)");
    if (prompt && prompt_file) return cli_usage("generate: give -p or -f, not both");
    int chat_fmt = LLAMAC_CHAT_AUTO;
    if (!chat && (system || chat_format)) return cli_usage("generate: --system and --chat-format go with --chat");
    if (chat && special) return cli_usage("generate: --special does not apply with --chat (message text is never parsed for special tokens)");
    if (chat_format && (chat_fmt = llamac_chat_format_from_name(chat_format)) < 0)
        return cli_usage("generate: unknown --chat-format '%s' (llama3, llama2)", chat_format);

    int rc = 1;
    char *file_text = NULL;
    int32_t *ids = NULL, *gen = NULL;
    llamac_session *s = NULL;
    llamac_sampler *smp = NULL;
    outbuf text = {0};
    char *piece = NULL;
    size_t prompt_len = 0;
    if (prompt_file) {
        if (!(file_text = cli_read_text(prompt_file, &prompt_len))) return 1;
        prompt = file_text;
    } else {
        prompt_len = strlen(prompt);
    }
    double t0 = cli_now_ms();
    llamac_model *m = cli_load_model(model_path, tok_path);
    if (m) cli_sampling_finish(&smp_opts, m);
    if (!m) goto done;
    double t_load = cli_now_ms() - t0;
    const llamac_tokenizer *tok = llamac_model_tokenizer(m);
    llamac_model_info info;
    llamac_model_get_info(m, &info);
    int n_prompt;
    if (chat) {
        /* -p is the user message; the prompt is the conversation in the chat format, generation prompt included */
        if (memchr(prompt, 0, prompt_len)) {
            cli_error("the prompt contains a NUL byte");
            goto done;
        }
        llamac_chat_message msgs[2] = {{"system", system, NULL, 0}, {"user", prompt, NULL, 0}};
        llamac_error cerr = {{0}};
        int k = llamac_chat_tokenize(tok, (llamac_chat_format)chat_fmt, msgs + !system, 1 + !!system, true, NULL, 0, &cerr);
        if (k < 0 || !(ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *ids))) {
            cli_error("%s", k < 0 ? cerr.message : "out of memory");
            goto done;
        }
        n_prompt = llamac_chat_tokenize(tok, (llamac_chat_format)chat_fmt, msgs + !system, 1 + !!system, true, ids, k, &cerr);
    } else {
        n_prompt = cli_tokenize(tok, prompt, prompt_len, true, special, &ids);
    }
    if (n_prompt < 0) goto done;
    if (n_prompt == 0) {
        cli_error("the prompt is empty and the vocabulary has no BOS token to start from");
        goto done;
    }
    llamac_error err = {{0}};
    llamac_session_params spar = {.n_ctx = n_ctx, .n_threads = n_threads, .kv_type = kv_type};
    if (!(s = llamac_session_create(m, &spar, &err))) {
        cli_error("%s", err.message);
        goto done;
    }
    int ctx = llamac_session_n_ctx(s);
    if (n_prompt >= ctx) {
        cli_error("the prompt has %d tokens but the context holds %d: use a shorter prompt or a larger --ctx", n_prompt, ctx);
        goto done;
    }
    if (!(smp = llamac_sampler_create(&smp_opts.sp, info.n_vocab, &err))) {
        cli_error("%s", err.message);
        goto done;
    }
    if (!(gen = malloc(((size_t)n_new + 1) * sizeof *gen))) {
        cli_error("out of memory");
        goto done;
    }
    llamac_detokenizer dt;
    llamac_detokenizer_init(&dt, tok);
    size_t piece_cap = llamac_detokenizer_max_bytes(tok);
    if (!(piece = malloc(piece_cap))) {
        cli_error("out of memory");
        goto done;
    }
    for (int i = 0; i < n_prompt; i++) {
        llamac_sampler_accept(smp, ids[i]);
        size_t n = llamac_detokenize(&dt, ids[i], piece, piece_cap);
        if (!json && !chat) fwrite(piece, 1, n, stdout);
    }
    if (chat) llamac_detokenizer_init(&dt, tok); /* the answer starts a text of its own */
    if (!json) fflush(stdout);

    double t1 = cli_now_ms();
    const float *logits = llamac_session_eval(s, ids, n_prompt, &err);
    if (!logits) {
        cli_error("%s", err.message);
        goto done;
    }
    double t_prompt = cli_now_ms() - t1;
    int n_gen = 0;
    bool ctx_full = false;
    double t2 = cli_now_ms();
    while (n_gen < n_new) {
        int32_t next = llamac_sampler_sample(smp, logits);
        if (llamac_tokenizer_is_eog(tok, next)) break;
        gen[n_gen++] = next;
        llamac_sampler_accept(smp, next);
        size_t n = llamac_detokenize(&dt, next, piece, piece_cap);
        if (json) out_add(&text, piece, n);
        else {
            fwrite(piece, 1, n, stdout);
            fflush(stdout);
        }
        if (n_gen == n_new) break;
        if (llamac_session_pos(s) >= ctx) {
            ctx_full = true;
            break;
        }
        if (!(logits = llamac_session_eval(s, &next, 1, &err))) {
            cli_error("%s", err.message);
            goto done;
        }
    }
    double t_gen = cli_now_ms() - t2;
    size_t n = llamac_detokenizer_flush(&dt, piece, piece_cap);
    if (json) out_add(&text, piece, n);
    else {
        fwrite(piece, 1, n, stdout);
        fputc('\n', stdout);
    }
    /* Decode timing counts the evaluations after the prompt: n_gen tokens were sampled but the last
     * one needed no forward pass, so n_gen - 1 passes over n_gen samples is the honest rate. */
    int n_eval = n_gen > 1 ? n_gen - 1 : 0;
    double prompt_tps = t_prompt > 0 ? n_prompt * 1000.0 / t_prompt : 0;
    double gen_tps = t_gen > 0 && n_eval > 0 ? n_eval * 1000.0 / t_gen : 0;
    if (ctx_full) fprintf(stderr, "llamac: context full (%d tokens): generation stopped\n", ctx);
    if (json) {
        cJSON *o = cJSON_CreateObject(), *t = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "prompt_ids", cJSON_CreateIntArray(ids, n_prompt));
        cJSON_AddItemToObject(o, "ids", cJSON_CreateIntArray(gen, n_gen));
        cJSON_AddStringToObject(o, "text", text.p ? text.p : "");
        cJSON_AddStringToObject(o, "finish_reason", n_gen == n_new ? "length" : ctx_full ? "context" : "stop");
        cJSON_AddNumberToObject(t, "load_ms", t_load);
        cJSON_AddNumberToObject(t, "prompt_tokens", n_prompt);
        cJSON_AddNumberToObject(t, "prompt_ms", t_prompt);
        cJSON_AddNumberToObject(t, "prompt_tok_s", prompt_tps);
        cJSON_AddNumberToObject(t, "gen_tokens", n_gen);
        cJSON_AddNumberToObject(t, "gen_ms", t_gen);
        cJSON_AddNumberToObject(t, "gen_tok_s", gen_tps);
        cJSON_AddNumberToObject(t, "peak_rss_mb", cli_peak_rss_mb());
        cJSON_AddItemToObject(o, "timings", t);
        char *js = cJSON_PrintUnformatted(o);
        if (js) puts(js);
        free(js);
        cJSON_Delete(o);
    }
    fprintf(stderr, "llamac: seed %llu | load %.0f ms | prompt %d tok, %.1f tok/s | generated %d tok, %.1f tok/s | peak RSS %.1f MiB\n",
            (unsigned long long)smp_opts.sp.seed, t_load, n_prompt, prompt_tps, n_gen, gen_tps, cli_peak_rss_mb());
    rc = 0;
done:
    fflush(stdout);
    free(text.p);
    free(piece);
    free(gen);
    free(ids);
    free(file_text);
    llamac_sampler_free(smp);
    llamac_session_free(s);
    llamac_model_free(m);
    return rc;
}
