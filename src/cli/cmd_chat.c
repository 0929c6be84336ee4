/*
 * llamac chat: an interactive multi-turn conversation in the terminal.
 *
 * One KV cache holds the conversation. Each turn formats the whole conversation (system message,
 * kept turns, the new user message, the generation prompt) with the chat format, keeps the longest
 * prefix the cache already holds and evaluates only the rest: normally the end of the previous answer
 * (<|eot_id|> for Llama 3; " </s>" for Llama 2), the new message and the assistant header. Answers are
 * kept as the ids that were sampled, so re-formatting reproduces the cache token for token.
 *
 * When the conversation no longer fits, the oldest turns (user message + answer) go until it takes at
 * most half the context, the system message stays, and what remains is re-evaluated from the first
 * position that changed; the next turns then fit and evaluate only their own tokens.
 *
 * Ctrl-C during an answer stops it after the current token; the cut answer stays in the conversation,
 * closed as the format closes any answer. Ctrl-C at the prompt drops the line being typed; a second
 * Ctrl-C there (or two before the first one is seen, e.g. during a long prefill) quits with status 130.
 * Ctrl-D (end of input) quits with status 0.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac chat -m MODEL [--system TEXT] [options]\n"
    "  reads one message per line from stdin (a line ending in \\ continues on the next) and streams the\n"
    "  answers to stdout; per-turn statistics go to stderr. Ctrl-C stops an answer, Ctrl-D quits.\n"
    "  -m, --model FILE        GGUF or llama2.c .bin model\n"
    "  --tokenizer FILE        tokenizer to use instead of the model's\n"
    "  --system TEXT           system message (kept when old turns are dropped)\n"
    "  --chat-format F         llama3 or llama2 (default: from the model's chat template or vocabulary)\n"
    "  -n, --n-predict N       at most N tokens per answer (default -1: until end of turn or full context)\n"
    "  --temp T, --top-k K, --top-p P, --min-p P, --repeat-penalty R, --repeat-last-n N, -s/--seed S\n"
    "                          sampling, as for llamac generate\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  -c, --ctx N             context size in tokens (default: the model's, at most 4096)\n"
    "  --verbose               after each turn's statistics, the ids it evaluated: where the prefill\n"
    "                          started in the context, the prefilled ids, the answer's ids\n"
    CLI_KV_TYPE_HELP
    "  --dump-ids FILE         print the token ids of the conversation in FILE (a JSON array of\n"
    "                          {\"role\": …, \"content\": …}, or an array of such arrays: a line each) in the\n"
    "                          chat format and exit; needs only --tokenizer or -m\n"
    "  --no-generation-prompt  with --dump-ids: leave out the assistant header at the end\n";

/* ---- signals ------------------------------------------------------------------------------------ */

/* g_interrupt: a Ctrl-C not handled yet. g_armed: a Ctrl-C at the prompt was handled (a hint printed). */
static volatile sig_atomic_t g_interrupt, g_armed;

static void on_sigint(int sig) {
    (void)sig;
    if (g_interrupt || g_armed) _exit(130); /* a second Ctrl-C: at the prompt, or before the first was seen */
    g_interrupt = 1;
}

/* ---- the conversation --------------------------------------------------------------------------- */

typedef struct message {
    const char *role;
    char *text;     /* user and system messages */
    int32_t *ids;   /* answers, as sampled */
    int n_ids;
} message;

typedef struct chat {
    const llamac_tokenizer *tok;
    llamac_chat_format format;
    message *msgs;
    int n_msgs, cap_msgs, n_sys; /* n_sys: 1 when msgs[0] is the system message */
    llamac_chat_message *view;   /* what the formatter sees */
    int32_t *full;               /* the formatted conversation */
    int cap_full;
} chat;

static void message_free(message *m) {
    free(m->text);
    free(m->ids);
}

static bool chat_push(chat *c, message m) {
    if (c->n_msgs == c->cap_msgs) {
        int cap = c->cap_msgs ? 2 * c->cap_msgs : 16;
        message *v = realloc(c->msgs, (size_t)cap * sizeof *v);
        llamac_chat_message *w = realloc(c->view, (size_t)cap * sizeof *w);
        if (v) c->msgs = v;
        if (w) c->view = w;
        if (!v || !w) return false;
        c->cap_msgs = cap;
    }
    c->msgs[c->n_msgs++] = m;
    return true;
}

/* Formats the system message and the messages after the oldest `drop` others into c->full; returns
 * the number of ids, -1 after printing the error. */
static int chat_format(chat *c, int drop, bool gen) {
    int n = 0;
    for (int i = 0; i < c->n_msgs; i++) {
        if (i >= c->n_sys && i < c->n_sys + drop) continue;
        const message *m = &c->msgs[i];
        /* an empty answer still goes as (zero) ids: a non-NULL pointer */
        static const int32_t none[1] = {0};
        c->view[n++] = (llamac_chat_message){m->role, m->text, m->text ? NULL : m->ids ? m->ids : none, m->n_ids};
    }
    llamac_error err = {{0}};
    for (;;) {
        int k = llamac_chat_tokenize(c->tok, c->format, c->view, n, gen, c->full, c->cap_full, &err);
        if (k < 0) {
            cli_error("%s", err.message);
            return -1;
        }
        if (k <= c->cap_full) return k;
        int32_t *p = realloc(c->full, (size_t)k * sizeof *p);
        if (!p) {
            cli_error("out of memory formatting the conversation (%d tokens)", k);
            return -1;
        }
        c->full = p;
        c->cap_full = k;
    }
}

/* ---- --dump-ids --------------------------------------------------------------------------------- */

/* Prints one conversation (a JSON array of {"role", "content"}) as a line of ids; false after an error. */
static bool dump_one(const llamac_tokenizer *tok, llamac_chat_format format, const char *path, const cJSON *conv, bool gen) {
    int n = cJSON_GetArraySize(conv);
    bool ok = false;
    llamac_chat_message *msgs = calloc((size_t)(n > 0 ? n : 1), sizeof *msgs);
    int32_t *ids = NULL;
    if (!msgs) {
        cli_error("out of memory");
        goto done;
    }
    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, conv) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(o, "role"), *content = cJSON_GetObjectItemCaseSensitive(o, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            cli_error("%s: message %d needs string \"role\" and \"content\"", path, i);
            goto done;
        }
        msgs[i++] = (llamac_chat_message){role->valuestring, content->valuestring, NULL, 0};
    }
    llamac_error err = {{0}};
    int k = llamac_chat_tokenize(tok, format, msgs, n, gen, NULL, 0, &err);
    if (k < 0) {
        cli_error("%s", err.message);
        goto done;
    }
    if (!(ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *ids))) {
        cli_error("out of memory");
        goto done;
    }
    llamac_chat_tokenize(tok, format, msgs, n, gen, ids, k, &err);
    for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    ok = true;
done:
    free(ids);
    free(msgs);
    return ok;
}

/* --dump-ids: the file holds one conversation, or an array of them (one line of ids each). */
static int dump_ids(const llamac_tokenizer *tok, llamac_chat_format format, const char *path, bool gen) {
    size_t len;
    char *text = cli_read_text(path, &len);
    if (!text) return 1;
    llamac_error perr = {{0}};
    /* the texts go to the tokenizer as C strings (a \u0000 would cut them); the value bound keeps a
     * hostile file from making cJSON build gigabytes of tree (64 bytes a value) */
    cJSON *root = llc_json_parse_opts(text, len, path, LLC_JSON_NO_NUL_ESCAPE, 1u << 24, &perr);
    free(text);
    if (!root) return cli_error("%s", perr.message);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return cli_error("%s: expected a JSON array of {\"role\": …, \"content\": …} (or an array of such arrays)", path);
    }
    bool ok = true;
    if (cJSON_IsArray(root->child)) {
        const cJSON *conv;
        cJSON_ArrayForEach(conv, root) {
            if (!cJSON_IsArray(conv)) {
                cli_error("%s: every conversation must be an array of messages", path);
                ok = false;
            } else {
                ok = dump_one(tok, format, path, conv, gen);
            }
            if (!ok) break;
        }
    } else {
        ok = dump_one(tok, format, path, root, gen);
    }
    cJSON_Delete(root);
    return ok ? 0 : 1;
}

/* ---- reading messages --------------------------------------------------------------------------- */

/* stdin read directly (not through stdio), so that a Ctrl-C reaching us just before a read cannot be
 * missed: SIGINT stays blocked between the check of the flag and ppoll, which unblocks it atomically. */
typedef struct reader {
    char buf[4096];
    size_t pos, len;
    bool eof;
} reader;

typedef enum { READ_LINE, READ_EOF, READ_INTERRUPTED } read_result;

static bool wait_input(void) {
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    bool ok = false;
    if (!g_interrupt) {
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        ok = ppoll(&pfd, 1, NULL, &old) >= 0 || errno != EINTR;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok && !g_interrupt;
}

/* One message into *buf: a line, or several joined when they end in a backslash. */
static read_result read_message(reader *rd, char **buf, size_t *cap, size_t *len, bool tty) {
    *len = 0;
    bool prompt = true;
    for (;;) {
        if (tty && prompt) {
            fputs(*len ? ". " : "> ", stdout);
            fflush(stdout);
            prompt = false;
        }
        /* take what the buffer holds, up to a newline */
        char *nl = rd->pos < rd->len ? memchr(rd->buf + rd->pos, '\n', rd->len - rd->pos) : NULL;
        size_t take = nl ? (size_t)(nl - (rd->buf + rd->pos)) : rd->len - rd->pos;
        if (*len + take + 2 > *cap) {
            size_t c = *cap ? *cap : 256;
            while (c < *len + take + 2) c *= 2;
            char *p = realloc(*buf, c);
            if (!p) return READ_EOF;
            *buf = p;
            *cap = c;
        }
        memcpy(*buf + *len, rd->buf + rd->pos, take);
        *len += take;
        (*buf)[*len] = 0;
        rd->pos += take + (nl ? 1 : 0);
        if (nl || (rd->eof && *len > 0)) {
            while (*len > 0 && (*buf)[*len - 1] == '\r') (*buf)[--*len] = 0;
            if (*len > 0 && (*buf)[*len - 1] == '\\' && !rd->eof) { /* continued on the next line */
                (*buf)[*len - 1] = '\n';
                prompt = true;
                continue;
            }
            return READ_LINE;
        }
        if (rd->eof) return READ_EOF;
        /* need more input */
        if (!wait_input()) return READ_INTERRUPTED;
        ssize_t n = read(0, rd->buf, sizeof rd->buf);
        if (n < 0 && errno == EINTR) return READ_INTERRUPTED;
        rd->pos = 0;
        rd->len = n > 0 ? (size_t)n : 0;
        if (n <= 0) rd->eof = true;
    }
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\v' && *s != '\f') return false;
    return true;
}

/* ---- the command -------------------------------------------------------------------------------- */

int cmd_chat(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *system = NULL, *format_name = NULL, *dump = NULL;
    int n_predict = -1, n_ctx = 0, n_threads = 0;
    bool gen_prompt = true, verbose = false;
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
        if (!strcmp(o, "--system")) {
            if (!(system = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--chat-format")) {
            if (!(format_name = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--dump-ids")) {
            if (!(dump = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--no-generation-prompt")) {
            gen_prompt = false;
        } else if (!strcmp(o, "--verbose")) {
            verbose = true;
        } else if (!strcmp(o, "-n") || !strcmp(o, "--n-predict")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, -1, 1 << 24, &n_predict)) return 2;
        } else {
            return cli_usage("chat: unknown option '%s' (see llamac chat --help)", o);
        }
    }
    int fmt = LLAMAC_CHAT_AUTO;
    if (format_name && (fmt = llamac_chat_format_from_name(format_name)) < 0)
        return cli_usage("chat: unknown --chat-format '%s' (llama3, llama2)", format_name);
    if (!gen_prompt && !dump) return cli_usage("chat: --no-generation-prompt goes with --dump-ids");
    if (dump && system) return cli_usage("chat: with --dump-ids the system message belongs in the JSON file");
    if (dump && !model_path) {
        if (!tok_path) return cli_usage("chat: --dump-ids needs --tokenizer FILE or -m MODEL");
        llamac_error err = {{0}};
        llamac_tokenizer *t = llamac_tokenizer_load(tok_path, &err);
        if (!t) return cli_error("%s", err.message);
        int rc = dump_ids(t, (llamac_chat_format)fmt, dump, gen_prompt);
        llamac_tokenizer_free(t);
        return rc;
    }
    if (!model_path) return cli_usage("chat: -m MODEL is required");

    llamac_model *m = cli_load_model(model_path, tok_path);
    if (m) cli_sampling_finish(&smp_opts, m);
    if (!m) return 1;
    const llamac_tokenizer *tok = llamac_model_tokenizer(m);
    if (dump) {
        int rc = dump_ids(tok, (llamac_chat_format)fmt, dump, gen_prompt);
        llamac_model_free(m);
        return rc;
    }

    int rc = 1;
    chat c = {.tok = tok, .format = fmt == LLAMAC_CHAT_AUTO ? llamac_chat_format_detect(tok) : (llamac_chat_format)fmt};
    llamac_session *s = NULL;
    llamac_sampler *smp = NULL;
    int32_t *cache = NULL;
    char *piece = NULL, *line = NULL;
    reader *rd = NULL;
    size_t line_cap = 0, line_len;
    llamac_error err = {{0}};
    llamac_session_params spar = {.n_ctx = n_ctx, .n_threads = n_threads, .kv_type = kv_type};
    /* The session's worker threads start with SIGINT blocked, so Ctrl-C always reaches this thread
     * (and interrupts its wait at the prompt). */
    sigset_t sigint, old_mask;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigint, &old_mask);
    s = llamac_session_create(m, &spar, &err);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (!s ||
        !(smp = llamac_sampler_create(&smp_opts.sp, llamac_tokenizer_n_vocab(tok), &err))) {
        cli_error("%s", err.message);
        goto done;
    }
    int ctx = llamac_session_n_ctx(s);
    size_t piece_cap = llamac_detokenizer_max_bytes(tok);
    /* The cache's ids, plus one: an answer's last sampled token may wait for the next turn's prefill. */
    if (!(cache = malloc(((size_t)ctx + 1) * sizeof *cache)) || !(piece = malloc(piece_cap))) {
        cli_error("out of memory");
        goto done;
    }
    int n_cache = 0; /* ids of cache[] that are in the KV cache */
    if (system) {
        if (!chat_push(&c, (message){"system", strdup(system), NULL, 0}) || !c.msgs[0].text) {
            cli_error("out of memory");
            goto done;
        }
        c.n_sys = 1;
    }
    /* Up front: the format suits the vocabulary, and the system message leaves room for a message. */
    if (!chat_push(&c, (message){"user", strdup(""), NULL, 0}) || !c.msgs[c.n_msgs - 1].text) {
        cli_error("out of memory");
        goto done;
    }
    int k0 = chat_format(&c, 0, true);
    message_free(&c.msgs[--c.n_msgs]);
    if (k0 < 0) goto done;
    if (k0 >= ctx) {
        cli_error("%s takes %d tokens but the context holds %d: use a larger --ctx%s", system ? "the system message" : "the chat format alone",
                  k0, ctx, system ? " or a shorter system message" : "");
        goto done;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a read at the prompt returns on Ctrl-C */
    sigaction(SIGINT, &sa, NULL);

    bool tty = isatty(0);
    if (!(rd = calloc(1, sizeof *rd))) {
        cli_error("out of memory");
        goto done;
    }
    fprintf(stderr, "llamac: chat format %s, context %d, seed %llu%s\n", llamac_chat_format_name(c.format), ctx,
            (unsigned long long)smp_opts.sp.seed, tty ? " | Ctrl-C stops an answer, Ctrl-D quits" : "");
    llamac_detokenizer dt;
    for (;;) {
        read_result r = read_message(rd, &line, &line_cap, &line_len, tty);
        if (r == READ_EOF) break;
        if (r == READ_INTERRUPTED) {
            /* the line being typed is gone (the terminal flushes it); one more Ctrl-C now quits */
            g_armed = 1;
            g_interrupt = 0;
            fputs(tty ? "\n(Ctrl-C again to quit, Ctrl-D to end)\n" : "llamac: interrupted (Ctrl-C again to quit)\n", stderr);
            continue;
        }
        g_armed = 0;
        g_interrupt = 0;
        if (blank(line)) continue;

        /* ---- format the conversation with the new message, dropping old turns if needed ---- */
        char *text = strdup(line);
        if (!text || !chat_push(&c, (message){"user", text, NULL, 0})) {
            free(text);
            cli_error("out of memory");
            goto done;
        }
        int reserve = n_predict >= 0 ? (n_predict < ctx / 2 ? n_predict : ctx / 2) : ctx / 4;
        if (reserve < 1) reserve = 1;
        int drop = 0, n_full;
        if ((n_full = chat_format(&c, 0, true)) < 0) goto done;
        /* Dropping turns shifts the positions of those kept, so they are evaluated again. Dropping just
         * enough for this turn would make every later turn drop and re-evaluate again; down to half the
         * context, the next turns fit and evaluate only their own tokens. */
        if (n_full + reserve > ctx) {
            while (c.n_sys + drop + 1 < c.n_msgs && (n_full + reserve > ctx || n_full > ctx / 2)) {
                drop += 2; /* a turn: a user message and its answer */
                if ((n_full = chat_format(&c, drop, true)) < 0) goto done;
            }
        }
        if (n_full >= ctx) {
            cli_error("this message needs %d tokens with the system message and the chat format, but the context "
                      "holds %d: message skipped",
                      n_full, ctx);
            message_free(&c.msgs[--c.n_msgs]);
            continue;
        }
        if (drop > 0) {
            for (int i = c.n_sys; i < c.n_sys + drop; i++) message_free(&c.msgs[i]);
            memmove(c.msgs + c.n_sys, c.msgs + c.n_sys + drop, (size_t)(c.n_msgs - c.n_sys - drop) * sizeof *c.msgs);
            c.n_msgs -= drop;
            fprintf(stderr, "llamac: context full (%d tokens): dropped the oldest %d turn%s, %d kept\n", ctx, drop / 2,
                    drop == 2 ? "" : "s", (c.n_msgs - c.n_sys - 1) / 2);
        }

        /* ---- prefill what the cache does not hold yet ---- */
        int common = 0;
        while (common < n_cache && common < n_full && cache[common] == c.full[common]) common++;
        if (common == n_full) common--; /* the last token's logits are needed */
        if (common < llamac_session_pos(s)) llamac_session_truncate(s, common);
        int n_new = n_full - common;
        double t0 = cli_now_ms();
        const float *logits = llamac_session_eval(s, c.full + common, n_new, &err);
        if (!logits) {
            cli_error("%s", err.message);
            goto done;
        }
        double t_prefill = cli_now_ms() - t0;
        memcpy(cache + common, c.full + common, (size_t)n_new * sizeof *cache);
        n_cache = n_full;
        for (int i = common; i < n_full; i++) llamac_sampler_accept(smp, c.full[i]);

        /* ---- the answer: sampled ids go to cache[] as they are evaluated ---- */
        int32_t *ans = cache + n_cache;
        int n_gen = 0;
        const char *reason = "end";
        llamac_detokenizer_init(&dt, tok);
        double t1 = cli_now_ms();
        for (;;) {
            if (g_interrupt) {
                reason = "interrupted";
                break;
            }
            if (n_predict >= 0 && n_gen >= n_predict) {
                reason = "length";
                break;
            }
            int32_t next = llamac_sampler_sample(smp, logits);
            if (llamac_tokenizer_is_eog(tok, next)) break;
            ans[n_gen++] = next;
            llamac_sampler_accept(smp, next);
            size_t k = llamac_detokenize(&dt, next, piece, piece_cap);
            fwrite(piece, 1, k, stdout);
            fflush(stdout);
            if (n_predict >= 0 && n_gen >= n_predict) {
                reason = "length";
                break;
            }
            if (llamac_session_pos(s) >= ctx) {
                reason = "context full";
                break;
            }
            if (!(logits = llamac_session_eval(s, &next, 1, &err))) {
                cli_error("%s", err.message);
                goto done;
            }
        }
        double t_gen = cli_now_ms() - t1;
        n_cache = llamac_session_pos(s);
        size_t k = llamac_detokenizer_flush(&dt, piece, piece_cap);
        fwrite(piece, 1, k, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        clearerr(stdout);

        int32_t *kept = malloc((size_t)(n_gen > 0 ? n_gen : 1) * sizeof *kept);
        if (!kept || !chat_push(&c, (message){"assistant", NULL, kept, n_gen})) {
            free(kept);
            cli_error("out of memory");
            goto done;
        }
        memcpy(kept, ans, (size_t)n_gen * sizeof *kept);
        int n_evals = n_cache - n_full; /* decode passes: the last sampled id may not have had one */
        if (!strcmp(reason, "context full"))
            fprintf(stderr, "llamac: context full (%d tokens): answer cut; the oldest turns make room for the next message\n", ctx);
        fprintf(stderr, "llamac: [prefill %d tok, %.1f tok/s | answer %d tok, %.1f tok/s, %s | context %d/%d]\n", n_new,
                t_prefill > 0 ? n_new * 1000.0 / t_prefill : 0.0, n_gen,
                t_gen > 0 && n_evals > 0 ? n_evals * 1000.0 / t_gen : 0.0, reason, n_cache, ctx);
        if (verbose) {
            fprintf(stderr, "llamac: [ids] prefill at %d:", common);
            for (int i = common; i < n_full; i++) fprintf(stderr, " %d", c.full[i]);
            fputs(" | answer:", stderr);
            for (int i = 0; i < n_gen; i++) fprintf(stderr, " %d", kept[i]);
            fputc('\n', stderr);
        }
        g_interrupt = 0;
    }
    rc = 0;
done:
    signal(SIGINT, SIG_DFL);
    fflush(stdout);
    for (int i = 0; i < c.n_msgs; i++) message_free(&c.msgs[i]);
    free(c.msgs);
    free(c.view);
    free(c.full);
    free(line);
    free(rd);
    free(piece);
    free(cache);
    llamac_sampler_free(smp);
    llamac_session_free(s);
    llamac_model_free(m);
    return rc;
}
