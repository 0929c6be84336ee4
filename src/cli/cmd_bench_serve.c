/*
 * llamac bench-serve: a serving benchmark in the shape of vLLM's benchmark_serving, against any
 * OpenAI-compatible server. Fixed prompt and output lengths (ignore_eos), streamed responses, a sweep
 * of concurrency levels and/or Poisson arrivals; request and token throughput and the mean, median and
 * p99 of TTFT, TPOT, ITL and end-to-end latency, named and computed as vLLM does.
 *
 * One thread drives every request through libcurl's multi interface, so the client adds no thread
 * scheduling of its own to the latencies it measures. The server's bytes are untrusted: the SSE parser
 * is incremental with bounded lines and events, every event is strict JSON, and any failure (transport,
 * status, malformed stream) is counted against that request and reported, never fatal.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "base/error.h"
#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac bench-serve --url URL [options]\n"
    "  benchmarks an OpenAI-compatible server (llamac serve, llama-server, vLLM, ...) like vLLM's\n"
    "  benchmark_serving: N streamed requests of fixed prompt and output length at each concurrency level,\n"
    "  then request and token throughput and mean/median/P99 of TTFT, TPOT, ITL and end-to-end latency\n"
    "  --url URL             the server's base address, e.g. http://127.0.0.1:8080 (a trailing /v1 is allowed)\n"
    "  --model NAME          model field of the requests (default: the first of GET /v1/models)\n"
    "  --endpoint E          completions (POST /v1/completions, default) or chat (/v1/chat/completions)\n"
    "  --input-len N         prompt tokens (default 128): random common words, adjusted to exactly N tokens\n"
    "                        through the server's POST /tokenize when it has one, else about N\n"
    "  --output-len N        tokens to generate per request (default 64; ignore_eos is set)\n"
    "  --num-prompts N       requests per level (default 2 x the concurrency; 64 when unbounded)\n"
    "  --concurrency LIST    levels of the sweep: most requests in flight at once (default 1,4,16,64;\n"
    "                        unbounded when only --request-rate is given)\n"
    "  --request-rate R      requests per second, Poisson arrivals (default inf: all at once, within the\n"
    "                        concurrency)\n"
    "  --warmup N            untimed requests before the first level (default 1)\n"
    "  --seed S              seed of the prompts and arrival times (default 0)\n"
    "  --api-key KEY         sent as 'Authorization: Bearer KEY' (default: $OPENAI_API_KEY if set)\n"
    "  --timeout S           per-request limit in seconds (default 600)\n"
    "  --json FILE|-         also write the results as JSON (to stdout with -, the tables then go to stderr)\n";

/* An SSE line or event bigger than this is a broken or hostile server, not a token. */
#define MAX_SSE_BYTES (1u << 20)
/* Responses of the plain calls (/v1/models, /tokenize) and error bodies kept for the message. */
#define MAX_BODY_BYTES (16u << 20)
#define ERR_BODY_BYTES 200
#define MAX_LEVELS CLI_MAX_LIST
#define MAX_ERROR_KINDS 8

typedef enum { EP_COMPLETIONS, EP_CHAT } endpoint_kind;
enum { TOK_NONE, TOK_VLLM, TOK_LLAMACPP }; /* dialects of POST /tokenize */

typedef struct options {
    const char *url, *model, *api_key, *json_path;
    endpoint_kind endpoint;
    int input_len, output_len, num_prompts, warmup;
    int levels[MAX_LEVELS], n_levels;
    double rate, timeout_s;
    uint64_t seed;
} options;

/* One request: its result, and the state of its streamed response while in flight. */
typedef struct bench bench;

/* A buffer that grows on demand up to MAX_SSE_BYTES (and one byte for a terminator). */
typedef struct sse_buf {
    char *p;
    size_t n, cap;
} sse_buf;

typedef struct request {
    const bench *b;
    const char *prompt;
    int prompt_tokens_est; /* from /tokenize, else the word count */
    char *body;
    CURL *h;
    double t_start, t_last; /* ms, monotonic */
    /* result */
    bool ok;
    double ttft, e2e; /* ms */
    int chunks, usage_out, usage_prompt;
    double *itl;
    int n_itl, cap_itl;
    char err[ERR_BODY_BYTES + 64];
    /* stream */
    long status;
    bool failed, event_error, done;
    sse_buf line, data;
    bool has_data;
    char errbody[ERR_BODY_BYTES + 1];
    size_t errbody_len;
} request;

struct bench {
    options o;
    endpoint_kind ep;
    char *base, *model;
    char completions_url[1024], models_url[1024], tokenize_url[1024];
    struct curl_slist *headers;
    int tokenize; /* TOK_*: the dialect the server answered */
};

/* ---- small pieces ---- */

static double now_ms(void) { return cli_now_ms(); }

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) { return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }

static void set_err(request *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(request *r, const char *fmt, ...) {
    if (r->failed) return; /* the first cause is the one worth reporting */
    r->failed = true;
    char raw[sizeof r->err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    llc_printable(r->err, sizeof r->err, raw);
}

/* Room for n more bytes and a terminator, within MAX_SSE_BYTES; false after recording why not. */
static bool sse_reserve(request *r, sse_buf *s, size_t n, const char *what) {
    if (s->n + n > MAX_SSE_BYTES) return set_err(r, "malformed stream: %s longer than %u bytes", what, MAX_SSE_BYTES), false;
    if (s->n + n + 1 <= s->cap) return true;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->n + n + 1) cap *= 2;
    char *p = realloc(s->p, cap);
    if (!p) return set_err(r, "out of memory"), false;
    s->p = p, s->cap = cap;
    return true;
}

/* Words that are one token each in the Llama 2 and Llama 3 vocabularies (with their leading space), so a
 * prompt of N of them is close to N tokens before any adjustment. */
static const char *const words[] = {
    "the",    "of",     "and",   "to",    "in",    "is",    "was",   "that",  "for",   "on",    "with",  "as",
    "by",     "at",     "from",  "his",   "her",   "they",  "this",  "had",   "are",   "but",   "not",   "were",
    "which",  "one",    "all",   "their", "there", "been",  "has",   "when",  "who",   "will",  "more",  "would",
    "time",   "about",  "into",  "only",  "some",  "could", "them",  "other", "then",  "than",  "first", "new",
    "people", "after",  "years", "over",  "world", "where", "most",  "made",  "also",  "many",  "before", "must",
    "through", "back",  "water", "under", "while", "last",  "great", "small", "city",  "house", "light", "river",
    "state",  "music",  "story", "power", "place", "night", "order", "money", "paper", "water", "table", "field",
    "green",  "stone",  "horse", "bread", "cloud", "train", "chair", "glass", "plant", "earth", "window", "garden",
    "summer", "winter", "market", "letter", "doctor", "school", "animal", "family", "number", "friend", "mother",
    "father", "morning", "evening", "country", "history", "picture", "question", "children", "village", "mountain",
    "island", "forest", "bridge", "castle", "silver", "golden", "yellow", "orange", "simple", "strong", "little",
};
#define N_WORDS (sizeof words / sizeof words[0])

/* ---- plain HTTP calls (setup only) ---- */

typedef struct membuf {
    char *p;
    size_t n;
    bool overflow;
} membuf;

static size_t membuf_write(char *d, size_t sz, size_t nm, void *ud) {
    membuf *b = ud;
    size_t n = sz * nm;
    if (b->n + n > MAX_BODY_BYTES) {
        b->overflow = true;
        return 0;
    }
    char *p = realloc(b->p, b->n + n + 1);
    if (!p) {
        b->overflow = true;
        return 0;
    }
    memcpy(p + b->n, d, n);
    b->p = p;
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

static void common_opts(CURL *h, const bench *b, long timeout_ms) {
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, b->headers);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 30000 ? timeout_ms : 30000L);
}

/* GET (body NULL) or POST a JSON body; returns the parsed JSON of a 2xx answer, or NULL with why. */
static cJSON *http_json(const bench *b, const char *url, const char *body, char *why, size_t why_cap) {
    CURL *h = curl_easy_init();
    if (!h) return snprintf(why, why_cap, "curl_easy_init failed"), NULL;
    membuf mb = {0};
    common_opts(h, b, (long)(b->o.timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, membuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &mb);
    if (body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    cJSON *j = NULL;
    if (mb.overflow)
        snprintf(why, why_cap, "answer larger than %u bytes", MAX_BODY_BYTES);
    else if (rc != CURLE_OK)
        snprintf(why, why_cap, "%s", curl_easy_strerror(rc));
    else if (status < 200 || status > 299)
        snprintf(why, why_cap, "HTTP status %ld", status);
    else if (!mb.p || !(j = cJSON_ParseWithOpts(mb.p, NULL, true)))
        snprintf(why, why_cap, "the answer is not JSON");
    free(mb.p);
    return j;
}

/* The first model of GET /v1/models (OpenAI's list: {"data": [{"id": ...}, ...]}). */
static char *first_model(const bench *b, char *why, size_t why_cap) {
    cJSON *j = http_json(b, b->models_url, NULL, why, why_cap);
    if (!j) return NULL;
    cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data"), *m0 = cJSON_IsArray(data) ? cJSON_GetArrayItem(data, 0) : NULL;
    cJSON *id = m0 ? cJSON_GetObjectItemCaseSensitive(m0, "id") : NULL;
    char *name = cJSON_IsString(id) && id->valuestring[0] ? strdup(id->valuestring) : NULL;
    if (!name) snprintf(why, why_cap, "no model id in the answer");
    cJSON_Delete(j);
    return name;
}

/* Token count of text by POST /tokenize, or -1. Servers speak one of two dialects: vLLM's {"model",
 * "prompt"} answered by {"count": N, "tokens": [...]}, and llama.cpp's {"content"} answered by {"tokens":
 * [...]}; both strict about unknown fields. Either way without BOS or other special tokens. */
static int server_count_tokens(const bench *b, int dialect, const char *text) {
    cJSON *q = cJSON_CreateObject();
    if (dialect == TOK_VLLM) {
        cJSON_AddStringToObject(q, "model", b->model);
        cJSON_AddStringToObject(q, "prompt", text);
        cJSON_AddBoolToObject(q, "add_special_tokens", false);
    } else {
        cJSON_AddStringToObject(q, "content", text);
        cJSON_AddBoolToObject(q, "add_special", false);
    }
    char *body = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    if (!body) return -1;
    char why[256];
    cJSON *j = http_json(b, b->tokenize_url, body, why, sizeof why);
    free(body);
    if (!j) return -1;
    int n = -1;
    cJSON *count = cJSON_GetObjectItemCaseSensitive(j, "count"), *tokens = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    if (cJSON_IsNumber(count) && count->valuedouble >= 0 && count->valuedouble < 1e9)
        n = (int)count->valuedouble;
    else if (cJSON_IsArray(tokens))
        n = cJSON_GetArraySize(tokens);
    cJSON_Delete(j);
    return n;
}

/* ---- prompts ---- */

static char *words_text(const uint16_t *w, int n) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(words[w[i]]) + 1;
    char *t = malloc(len + 1), *p = t;
    if (!t) return NULL;
    for (int i = 0; i < n; i++) p += sprintf(p, "%s%s", i ? " " : "", words[w[i]]);
    *p = 0;
    return t;
}

/* A prompt of random words, distinct for every request so no server-side prefix cache helps. With
 * /tokenize the word count is corrected until the server counts exactly want tokens; where one word of
 * several tokens makes the count jump over want, that word is drawn again. Else the closest is kept. */
static char *make_prompt(const bench *b, uint64_t seed, int want, int *tokens) {
    int cap = 2 * want + 16;
    uint16_t *w = malloc((size_t)cap * sizeof *w);
    if (!w) return NULL;
    for (int i = 0; i < cap; i++) w[i] = (uint16_t)(splitmix64(&seed) % N_WORDS);
    int n = want, prev_n = -1;
    char *best = NULL;
    int best_tokens = -1;
    for (int iter = 0; iter < 16; iter++) {
        char *t = words_text(w, n);
        if (!t) break;
        int c = b->tokenize ? server_count_tokens(b, b->tokenize, t) : -1;
        if (c < 0) { /* no tokenizer: about one token per word */
            free(best);
            best = t, best_tokens = n;
            break;
        }
        if (!best || abs(c - want) < abs(best_tokens - want)) {
            free(best);
            best = t, best_tokens = c;
        } else {
            free(t);
        }
        if (c == want) break;
        int next = n + (want - c);
        if (next < 1) next = 1;
        if (next > cap) next = cap;
        if (next == prev_n) { /* oscillating between two lengths: change the word that makes the jump */
            next = n > next ? n : next;
            w[next - 1] = (uint16_t)(splitmix64(&seed) % N_WORDS);
        }
        prev_n = n, n = next;
    }
    free(w);
    *tokens = best_tokens;
    return best;
}

/* ---- the streamed response ---- */

static void note_text(request *r, double t) {
    /* Every chunk with text holds at least one token, so a stream with many more than max_tokens of them is
     * broken; the bound also caps the ITL record. */
    if (r->chunks >= 2 * r->b->o.output_len + 16)
        return set_err(r, "malformed stream: more than %d text chunks for %d tokens", r->chunks, r->b->o.output_len);
    if (r->chunks == 0) {
        r->ttft = t - r->t_start;
    } else {
        if (r->n_itl == r->cap_itl) { /* past the first 4096 tokens */
            int cap = r->cap_itl ? 2 * r->cap_itl : 64;
            double *p = realloc(r->itl, (size_t)cap * sizeof *p);
            if (!p) return set_err(r, "out of memory");
            r->itl = p, r->cap_itl = cap;
        }
        r->itl[r->n_itl++] = t - r->t_last;
    }
    r->t_last = t;
    r->chunks++;
}

static bool json_count(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return true;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9 || v->valuedouble != floor(v->valuedouble))
        return false;
    *out = (int)v->valuedouble;
    return true;
}

/* One SSE event's data: "[DONE]" or a chunk object. */
static void on_event(request *r, double t) {
    const bench *b = r->b;
    char *d = r->data.p;
    d[r->data.n] = 0;
    if (memchr(d, 0, r->data.n)) return set_err(r, "malformed stream: a NUL byte in an event");
    if (r->event_error) return set_err(r, "server sent an error event: %.*s", ERR_BODY_BYTES, d);
    if (r->done) return set_err(r, "data after [DONE]");
    if (!strcmp(d, "[DONE]")) {
        r->done = true;
        return;
    }
    cJSON *j = cJSON_ParseWithOpts(d, NULL, true);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return set_err(r, "malformed stream: event data is not a JSON object: %.*s", 80, d);
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (e) {
        char *s = cJSON_PrintUnformatted(e);
        set_err(r, "server sent an error: %.*s", ERR_BODY_BYTES, s ? s : "?");
        free(s);
        cJSON_Delete(j);
        return;
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices"), *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (choices && !cJSON_IsArray(choices)) {
        cJSON_Delete(j);
        return set_err(r, "malformed stream: choices is not an array");
    }
    const cJSON *c0 = cJSON_GetArrayItem(choices, 0), *text = NULL;
    if (c0 && b->ep == EP_COMPLETIONS) {
        text = cJSON_GetObjectItemCaseSensitive(c0, "text");
    } else if (c0) {
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c0, "delta");
        text = cJSON_GetObjectItemCaseSensitive(delta, "content");
        if (!cJSON_IsString(text) || !text->valuestring[0]) text = cJSON_GetObjectItemCaseSensitive(delta, "reasoning_content");
    }
    if (text && !cJSON_IsString(text) && !cJSON_IsNull(text)) {
        cJSON_Delete(j);
        return set_err(r, "malformed stream: the text of a chunk is not a string");
    }
    if (cJSON_IsString(text) && text->valuestring[0]) note_text(r, t);
    if (usage && !cJSON_IsNull(usage)) {
        if (!cJSON_IsObject(usage) || !json_count(usage, "completion_tokens", &r->usage_out) ||
            !json_count(usage, "prompt_tokens", &r->usage_prompt))
            set_err(r, "malformed stream: bad usage object");
    }
    cJSON_Delete(j);
}

/* One SSE line (without its terminator). Fields other than data, event and error are ignored, as the SSE
 * specification says; a blank line ends the event. */
static void on_line(request *r, const char *s, size_t n, double t) {
    if (n == 0) {
        if (r->has_data) on_event(r, t);
        r->has_data = r->event_error = false;
        r->data.n = 0;
        return;
    }
    if (s[0] == ':') return;
    size_t f = 0;
    while (f < n && s[f] != ':') f++;
    const char *v = s + f;
    size_t vn = 0;
    if (f < n) {
        v = s + f + 1, vn = n - f - 1;
        if (vn && *v == ' ') v++, vn--;
    }
    if (f == 4 && !memcmp(s, "data", 4)) {
        if (!sse_reserve(r, &r->data, vn + 1, "an event")) return;
        if (r->has_data) r->data.p[r->data.n++] = '\n';
        memcpy(r->data.p + r->data.n, v, vn);
        r->data.n += vn;
        r->has_data = true;
    } else if (f == 5 && !memcmp(s, "event", 5)) {
        r->event_error = vn == 5 && !memcmp(v, "error", 5);
    } else if (f == 5 && !memcmp(s, "error", 5)) { /* llama.cpp's server streams errors as "error: {...}" */
        set_err(r, "server sent an error: %.*s", (int)(vn < ERR_BODY_BYTES ? vn : ERR_BODY_BYTES), v);
    }
}

static size_t stream_write(char *d, size_t sz, size_t nm, void *ud) {
    request *r = ud;
    size_t n = sz * nm;
    if (r->status == 0) curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->status < 200 || r->status > 299) { /* keep the start of the error body for the message */
        size_t k = ERR_BODY_BYTES - r->errbody_len < n ? ERR_BODY_BYTES - r->errbody_len : n;
        memcpy(r->errbody + r->errbody_len, d, k);
        r->errbody_len += k;
        return n;
    }
    double t = now_ms();
    size_t i = 0;
    while (i < n && !r->failed) {
        char *nl = memchr(d + i, '\n', n - i);
        size_t seg = nl ? (size_t)(nl - (d + i)) : n - i;
        if (!sse_reserve(r, &r->line, seg, "a line")) break;
        memcpy(r->line.p + r->line.n, d + i, seg);
        r->line.n += seg;
        i += seg;
        if (!nl) break;
        i++;
        size_t len = r->line.n;
        if (len && r->line.p[len - 1] == '\r') len--;
        on_line(r, r->line.p, len, t);
        r->line.n = 0;
    }
    return r->failed ? 0 : n; /* 0 aborts the transfer */
}

/* ---- one level of the sweep ---- */

typedef struct level {
    int concurrency; /* 0: unbounded */
    int n;
    request *reqs;
    double duration_ms;
} level;

static char *request_body(const bench *b, const char *prompt) {
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "model", b->model);
    if (b->ep == EP_COMPLETIONS) {
        cJSON_AddStringToObject(q, "prompt", prompt);
    } else {
        cJSON *msgs = cJSON_AddArrayToObject(q, "messages"), *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", prompt);
        cJSON_AddItemToArray(msgs, m);
    }
    cJSON_AddNumberToObject(q, "max_tokens", b->o.output_len);
    cJSON_AddNumberToObject(q, "temperature", 0);
    cJSON_AddBoolToObject(q, "ignore_eos", true);
    cJSON_AddBoolToObject(q, "stream", true);
    cJSON *so = cJSON_AddObjectToObject(q, "stream_options");
    cJSON_AddBoolToObject(so, "include_usage", true);
    char *s = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    return s;
}

static bool start_request(CURLM *m, const bench *b, request *r) {
    r->h = curl_easy_init();
    if (!r->h) return set_err(r, "curl_easy_init failed"), false;
    common_opts(r->h, b, (long)(b->o.timeout_s * 1000));
    curl_easy_setopt(r->h, CURLOPT_URL, b->completions_url);
    curl_easy_setopt(r->h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->h, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->h, CURLOPT_PRIVATE, (char *)r);
    r->t_start = now_ms();
    if (curl_multi_add_handle(m, r->h) != CURLM_OK) {
        curl_easy_cleanup(r->h);
        r->h = NULL;
        return set_err(r, "curl_multi_add_handle failed"), false;
    }
    return true;
}

static void finish_request(request *r, CURLcode rc) {
    double t = now_ms();
    if (r->status == 0) curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->failed) {
        /* the stream's own error is the cause; curl only reports the abort */
    } else if (r->status != 0 && (r->status < 200 || r->status > 299)) {
        r->errbody[r->errbody_len] = 0;
        set_err(r, "HTTP status %ld: %s", r->status, r->errbody);
    } else if (rc != CURLE_OK) {
        set_err(r, "%s", curl_easy_strerror(rc));
    } else {
        /* A last line or event without its terminator still counts: the connection closed cleanly. */
        if (r->line.n) on_line(r, r->line.p, r->line.n, t);
        if (!r->failed && r->has_data) on_event(r, t);
        if (!r->failed && r->chunks == 0) set_err(r, "the stream had no text chunk");
    }
    r->ok = !r->failed;
    if (r->ok) r->e2e = t - r->t_start;
    free(r->line.p), free(r->data.p);
    r->line = r->data = (sse_buf){0};
}

static int output_tokens(const request *r) { return r->usage_out >= 0 ? r->usage_out : r->chunks; }

/* Runs the level's requests, at most concurrency at once, the k-th not before arrival[k] ms. */
static bool run_level(const bench *b, level *L, const double *arrival) {
    CURLM *m = curl_multi_init();
    if (!m) return cli_error("curl_multi_init failed"), false;
    int next = 0, running = 0, finished = 0;
    double t0 = now_ms();
    while (finished < L->n) {
        double t = now_ms() - t0;
        while (next < L->n && (L->concurrency == 0 || running < L->concurrency) && arrival[next] <= t) {
            if (start_request(m, b, &L->reqs[next++]))
                running++;
            else
                finished++;
        }
        int still;
        curl_multi_perform(m, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            request *r = NULL;
            CURLcode rc = msg->data.result;
            CURL *h = msg->easy_handle;
            curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&r);
            finish_request(r, rc);
            curl_multi_remove_handle(m, h);
            curl_easy_cleanup(h);
            r->h = NULL;
            running--, finished++;
        }
        if (finished >= L->n) break;
        int wait = 100;
        if (next < L->n && (L->concurrency == 0 || running < L->concurrency)) {
            double dt = arrival[next] - (now_ms() - t0);
            wait = dt <= 0 ? 0 : dt < 100 ? (int)ceil(dt) : 100;
        }
        if (wait > 0 || running > 0) curl_multi_poll(m, NULL, 0, wait, NULL);
    }
    L->duration_ms = now_ms() - t0;
    curl_multi_cleanup(m);
    return true;
}

/* ---- statistics, as numpy computes them ---- */

typedef struct dist {
    double mean, median, std, p99;
} dist;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy.percentile's default (linear interpolation between the closest ranks); zeros when empty, as vLLM. */
static double percentile(const double *sorted, int n, double p) {
    if (n == 0) return 0;
    double idx = p / 100.0 * (n - 1);
    int lo = (int)floor(idx), hi = (int)ceil(idx);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo);
}

static dist summarize(double *x, int n) {
    dist d = {0, 0, 0, 0};
    if (n == 0) return d;
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    for (int i = 0; i < n; i++) d.mean += x[i];
    d.mean /= n;
    for (int i = 0; i < n; i++) d.std += (x[i] - d.mean) * (x[i] - d.mean);
    d.std = sqrt(d.std / n); /* numpy.std: population */
    d.median = percentile(x, n, 50);
    d.p99 = percentile(x, n, 99);
    return d;
}

typedef struct error_kind {
    char msg[96];
    int count;
} error_kind;

typedef struct result {
    int concurrency, num_prompts, completed, failed;
    double duration_s;
    long long input_tokens, output_tokens;
    double req_s, out_tok_s, total_tok_s;
    dist ttft, tpot, itl, e2el;
    int short_outputs; /* fewer output tokens than asked: the server ignored ignore_eos or max_tokens */
    error_kind errors[MAX_ERROR_KINDS];
    int n_error_kinds, other_errors;
} result;

static void add_error(result *res, const char *msg) {
    char key[96];
    snprintf(key, sizeof key, "%s", msg);
    for (int i = 0; i < res->n_error_kinds; i++)
        if (!strcmp(res->errors[i].msg, key)) return (void)res->errors[i].count++;
    if (res->n_error_kinds == MAX_ERROR_KINDS) return (void)res->other_errors++;
    snprintf(res->errors[res->n_error_kinds].msg, sizeof res->errors[0].msg, "%s", key);
    res->errors[res->n_error_kinds++].count = 1;
}

static bool compute(const bench *b, const level *L, result *res) {
    memset(res, 0, sizeof *res);
    res->concurrency = L->concurrency;
    res->num_prompts = L->n;
    res->duration_s = L->duration_ms / 1000.0;
    size_t n_itl = 0;
    for (int i = 0; i < L->n; i++) n_itl += (size_t)L->reqs[i].n_itl;
    double *ttft = malloc((size_t)L->n * sizeof *ttft), *tpot = malloc((size_t)L->n * sizeof *tpot),
           *e2el = malloc((size_t)L->n * sizeof *e2el), *itl = malloc((n_itl + 1) * sizeof *itl);
    if (!ttft || !tpot || !e2el || !itl) {
        free(ttft), free(tpot), free(e2el), free(itl);
        return cli_error("out of memory"), false;
    }
    int n_ok = 0, n_tpot = 0;
    n_itl = 0;
    for (int i = 0; i < L->n; i++) {
        const request *r = &L->reqs[i];
        if (!r->ok) {
            res->failed++;
            add_error(res, r->err);
            continue;
        }
        int out = output_tokens(r);
        res->input_tokens += r->usage_prompt >= 0 ? r->usage_prompt : r->prompt_tokens_est;
        res->output_tokens += out;
        if (out < b->o.output_len) res->short_outputs++;
        ttft[n_ok] = r->ttft;
        e2el[n_ok++] = r->e2e;
        if (out > 1) tpot[n_tpot++] = (r->e2e - r->ttft) / (out - 1);
        memcpy(itl + n_itl, r->itl, (size_t)r->n_itl * sizeof *itl);
        n_itl += (size_t)r->n_itl;
    }
    res->completed = n_ok;
    double dur = res->duration_s > 0 ? res->duration_s : 1e-9;
    res->req_s = n_ok / dur;
    res->out_tok_s = (double)res->output_tokens / dur;
    res->total_tok_s = (double)(res->output_tokens + res->input_tokens) / dur;
    res->ttft = summarize(ttft, n_ok);
    res->tpot = summarize(tpot, n_tpot);
    res->itl = summarize(itl, (int)n_itl);
    res->e2el = summarize(e2el, n_ok);
    free(ttft), free(tpot), free(e2el), free(itl);
    return true;
}

/* ---- output ---- */

static void centered(FILE *fp, const char *s, char fill) { /* Python's '{:c^50}' */
    int len = (int)strlen(s), pad = 50 - len, left = pad / 2;
    for (int i = 0; i < left; i++) fputc(fill, fp);
    fputs(s, fp);
    for (int i = 0; i < pad - left; i++) fputc(fill, fp);
    fputc('\n', fp);
}

static void print_dist(FILE *fp, const char *title, const char *name, dist d) {
    char k[64];
    centered(fp, title, '-');
    snprintf(k, sizeof k, "Mean %s (ms):", name);
    fprintf(fp, "%-40s %.2f\n", k, d.mean);
    snprintf(k, sizeof k, "Median %s (ms):", name);
    fprintf(fp, "%-40s %.2f\n", k, d.median);
    snprintf(k, sizeof k, "P99 %s (ms):", name);
    fprintf(fp, "%-40s %.2f\n", k, d.p99);
}

static void print_result(FILE *fp, const bench *b, const result *r) {
    centered(fp, " Serving Benchmark Result ", '=');
    fprintf(fp, "%-40s %d\n", "Successful requests:", r->completed);
    fprintf(fp, "%-40s %d\n", "Failed requests:", r->failed);
    if (r->concurrency) fprintf(fp, "%-40s %d\n", "Maximum request concurrency:", r->concurrency);
    if (isinf(b->o.rate))
        fprintf(fp, "%-40s %s\n", "Request rate configured (RPS):", "inf");
    else
        fprintf(fp, "%-40s %.2f\n", "Request rate configured (RPS):", b->o.rate);
    fprintf(fp, "%-40s %.2f\n", "Benchmark duration (s):", r->duration_s);
    fprintf(fp, "%-40s %lld\n", "Total input tokens:", r->input_tokens);
    fprintf(fp, "%-40s %lld\n", "Total generated tokens:", r->output_tokens);
    fprintf(fp, "%-40s %.2f\n", "Request throughput (req/s):", r->req_s);
    fprintf(fp, "%-40s %.2f\n", "Output token throughput (tok/s):", r->out_tok_s);
    fprintf(fp, "%-40s %.2f\n", "Total Token throughput (tok/s):", r->total_tok_s);
    print_dist(fp, "Time to First Token", "TTFT", r->ttft);
    print_dist(fp, "Time per Output Token (excl. 1st token)", "TPOT", r->tpot);
    print_dist(fp, "Inter-token Latency", "ITL", r->itl);
    print_dist(fp, "End-to-end Latency", "E2EL", r->e2el);
    for (int i = 0; i < 50; i++) fputc('=', fp);
    fputc('\n', fp);
    if (r->short_outputs)
        fprintf(fp, "note: %d requests generated fewer than %d tokens (the server stopped before max_tokens)\n",
                r->short_outputs, b->o.output_len);
    for (int i = 0; i < r->n_error_kinds; i++) fprintf(fp, "error (%d requests): %s\n", r->errors[i].count, r->errors[i].msg);
    if (r->other_errors) fprintf(fp, "error (%d requests): other kinds\n", r->other_errors);
}

static void print_summary(FILE *fp, const result *rs, int n) {
    fprintf(fp, "\n| concurrency | ok/failed | req/s | output tok/s | TTFT mean/median/p99 (ms) | TPOT mean/median/p99 (ms) "
                "| ITL mean/median/p99 (ms) | E2EL mean/median/p99 (ms) |\n");
    fprintf(fp, "|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        char c[16];
        if (r->concurrency)
            snprintf(c, sizeof c, "%d", r->concurrency);
        else
            snprintf(c, sizeof c, "inf");
        fprintf(fp, "| %s | %d/%d | %.2f | %.2f | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.0f / %.0f / %.0f |\n",
                c, r->completed, r->failed, r->req_s, r->out_tok_s, r->ttft.mean, r->ttft.median, r->ttft.p99, r->tpot.mean,
                r->tpot.median, r->tpot.p99, r->itl.mean, r->itl.median, r->itl.p99, r->e2el.mean, r->e2el.median, r->e2el.p99);
    }
}

static void json_dist(cJSON *o, const char *name, dist d) {
    char k[32];
    snprintf(k, sizeof k, "mean_%s_ms", name);
    cJSON_AddNumberToObject(o, k, d.mean);
    snprintf(k, sizeof k, "median_%s_ms", name);
    cJSON_AddNumberToObject(o, k, d.median);
    snprintf(k, sizeof k, "std_%s_ms", name);
    cJSON_AddNumberToObject(o, k, d.std);
    snprintf(k, sizeof k, "p99_%s_ms", name);
    cJSON_AddNumberToObject(o, k, d.p99);
}

static bool write_json(const bench *b, const result *rs, int n, double mean_prompt_tokens) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "url", b->base);
    cJSON_AddStringToObject(root, "model", b->model);
    cJSON_AddStringToObject(root, "endpoint", b->ep == EP_CHAT ? "chat" : "completions");
    cJSON_AddNumberToObject(root, "input_len", b->o.input_len);
    cJSON_AddNumberToObject(root, "output_len", b->o.output_len);
    cJSON_AddBoolToObject(root, "input_len_exact", b->tokenize != TOK_NONE);
    cJSON_AddNumberToObject(root, "mean_prompt_tokens_planned", mean_prompt_tokens);
    if (isinf(b->o.rate))
        cJSON_AddStringToObject(root, "request_rate", "inf");
    else
        cJSON_AddNumberToObject(root, "request_rate", b->o.rate);
    cJSON_AddNumberToObject(root, "seed", (double)b->o.seed);
    cJSON *runs = cJSON_AddArrayToObject(root, "runs");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        cJSON *o = cJSON_CreateObject();
        if (r->concurrency)
            cJSON_AddNumberToObject(o, "max_concurrency", r->concurrency);
        else
            cJSON_AddNullToObject(o, "max_concurrency");
        cJSON_AddNumberToObject(o, "num_prompts", r->num_prompts);
        cJSON_AddNumberToObject(o, "completed", r->completed);
        cJSON_AddNumberToObject(o, "failed", r->failed);
        cJSON_AddNumberToObject(o, "duration", r->duration_s);
        cJSON_AddNumberToObject(o, "total_input_tokens", (double)r->input_tokens);
        cJSON_AddNumberToObject(o, "total_output_tokens", (double)r->output_tokens);
        cJSON_AddNumberToObject(o, "request_throughput", r->req_s);
        cJSON_AddNumberToObject(o, "output_throughput", r->out_tok_s);
        cJSON_AddNumberToObject(o, "total_token_throughput", r->total_tok_s);
        json_dist(o, "ttft", r->ttft);
        json_dist(o, "tpot", r->tpot);
        json_dist(o, "itl", r->itl);
        json_dist(o, "e2el", r->e2el);
        cJSON_AddNumberToObject(o, "short_outputs", r->short_outputs);
        cJSON *errs = cJSON_AddArrayToObject(o, "errors");
        for (int k = 0; k < r->n_error_kinds; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "message", r->errors[k].msg);
            cJSON_AddNumberToObject(e, "count", r->errors[k].count);
            cJSON_AddItemToArray(errs, e);
        }
        if (r->other_errors) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "message", "other kinds");
            cJSON_AddNumberToObject(e, "count", r->other_errors);
            cJSON_AddItemToArray(errs, e);
        }
        cJSON_AddItemToArray(runs, o);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return cli_error("out of memory"), false;
    bool ok;
    if (!strcmp(b->o.json_path, "-")) {
        ok = printf("%s\n", s) >= 0 && fflush(stdout) == 0;
    } else {
        FILE *fp = fopen(b->o.json_path, "w");
        ok = fp && fprintf(fp, "%s\n", s) >= 0;
        if (fp && fclose(fp) != 0) ok = false;
        if (!ok) cli_error("cannot write %s: %s", b->o.json_path, strerror(errno));
    }
    free(s);
    return ok;
}

/* ---- the command ---- */

static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.endpoint = EP_COMPLETIONS, .input_len = 128, .output_len = 64, .warmup = 1, .rate = INFINITY,
                   .timeout_s = 600};
    bool levels_given = false;
    cli_args a = {argc, 1, argv, false};
    cli_common common = {0};
    for (; a.i < argc; a.i++) {
        CLI_COMMON_OPTIONS(a, common, usage_text);
        const char *opt = argv[a.i], *v;
        float f;
        if (!strcmp(opt, "--url")) {
            if (!(o->url = cli_value(&a, opt))) return 2;
        } else if (!strcmp(opt, "--model")) {
            if (!(o->model = cli_value(&a, opt))) return 2;
        } else if (!strcmp(opt, "--api-key")) {
            if (!(o->api_key = cli_value(&a, opt))) return 2;
        } else if (!strcmp(opt, "--json")) {
            if (!(o->json_path = cli_value(&a, opt))) return 2;
        } else if (!strcmp(opt, "--endpoint")) {
            if (!(v = cli_value(&a, opt))) return 2;
            if (!strcmp(v, "completions"))
                o->endpoint = EP_COMPLETIONS;
            else if (!strcmp(v, "chat"))
                o->endpoint = EP_CHAT;
            else
                return cli_usage("option --endpoint expects completions or chat, got '%s'", v);
        } else if (!strcmp(opt, "--input-len")) {
            if (!(v = cli_value(&a, opt)) || !cli_int(opt, v, 1, 1 << 20, &o->input_len)) return 2;
        } else if (!strcmp(opt, "--output-len")) {
            if (!(v = cli_value(&a, opt)) || !cli_int(opt, v, 1, 1 << 20, &o->output_len)) return 2;
        } else if (!strcmp(opt, "--num-prompts")) {
            if (!(v = cli_value(&a, opt)) || !cli_int(opt, v, 1, 1 << 20, &o->num_prompts)) return 2;
        } else if (!strcmp(opt, "--warmup")) {
            if (!(v = cli_value(&a, opt)) || !cli_int(opt, v, 0, 1024, &o->warmup)) return 2;
        } else if (!strcmp(opt, "--concurrency")) {
            if (!(v = cli_value(&a, opt)) || (o->n_levels = cli_int_list(opt, v, 1, 4096, o->levels)) < 0) return 2;
            levels_given = true;
        } else if (!strcmp(opt, "--request-rate")) {
            if (!(v = cli_value(&a, opt))) return 2;
            if (!strcmp(v, "inf"))
                o->rate = INFINITY;
            else if (!cli_float(opt, v, 1e-6, 1e9, &f))
                return 2;
            else
                o->rate = f;
        } else if (!strcmp(opt, "--seed")) {
            if (!(v = cli_value(&a, opt)) || !cli_u64(opt, v, &o->seed)) return 2;
        } else if (!strcmp(opt, "--timeout")) {
            if (!(v = cli_value(&a, opt)) || !cli_float(opt, v, 0.001, 1e6, &f)) return 2;
            o->timeout_s = f;
        } else {
            return cli_usage("unknown option '%s' (try llamac bench-serve --help)", opt);
        }
    }
    if (!o->url) return cli_usage("--url is required (try llamac bench-serve --help)");
    if (!levels_given) {
        if (isinf(o->rate)) {
            const int sweep[] = {1, 4, 16, 64};
            o->n_levels = 4;
            memcpy(o->levels, sweep, sizeof sweep);
        } else {
            o->n_levels = 1, o->levels[0] = 0;
        }
    }
    if (!o->api_key) {
        const char *k = getenv("OPENAI_API_KEY");
        if (k && *k) o->api_key = k;
    }
    return -1;
}

static int level_prompts(const options *o, int concurrency) {
    if (o->num_prompts) return o->num_prompts;
    if (concurrency == 0) return 64;
    return 2 * concurrency;
}

static bool setup(bench *b) {
    size_t n = strlen(b->o.url);
    b->base = malloc(n + 1);
    if (!b->base) return cli_error("out of memory"), false;
    memcpy(b->base, b->o.url, n + 1);
    while (n && b->base[n - 1] == '/') b->base[--n] = 0;
    if (n >= 3 && !strcmp(b->base + n - 3, "/v1")) b->base[n -= 3] = 0;
    if (strncmp(b->base, "http://", 7) && strncmp(b->base, "https://", 8))
        return cli_error("--url must start with http:// or https://, got '%s'", b->o.url), false;
    if (n + 32 > sizeof b->completions_url) return cli_error("--url is too long"), false;
    snprintf(b->completions_url, sizeof b->completions_url, "%s%s", b->base,
             b->ep == EP_CHAT ? "/v1/chat/completions" : "/v1/completions");
    snprintf(b->models_url, sizeof b->models_url, "%s/v1/models", b->base);
    snprintf(b->tokenize_url, sizeof b->tokenize_url, "%s/tokenize", b->base);
    b->headers = curl_slist_append(NULL, "Content-Type: application/json");
    b->headers = curl_slist_append(b->headers, "Expect:"); /* no 100-continue round trip before the body */
    if (b->o.api_key) {
        size_t kn = strlen(b->o.api_key) + 32;
        char *h = malloc(kn);
        if (!h) return cli_error("out of memory"), false;
        snprintf(h, kn, "Authorization: Bearer %s", b->o.api_key);
        b->headers = curl_slist_append(b->headers, h);
        free(h);
    }
    if (!b->headers) return cli_error("out of memory"), false;
    char why[256];
    if (b->o.model) {
        b->model = strdup(b->o.model);
    } else if (!(b->model = first_model(b, why, sizeof why))) {
        return cli_error("cannot read the model name from GET %s (%s); give --model", b->models_url, why), false;
    }
    if (!b->model) return cli_error("out of memory"), false;
    if (server_count_tokens(b, TOK_VLLM, "hello world") > 0)
        b->tokenize = TOK_VLLM;
    else if (server_count_tokens(b, TOK_LLAMACPP, "hello world") > 0)
        b->tokenize = TOK_LLAMACPP;
    if (!b->tokenize)
        fprintf(stderr, "bench-serve: the server has no POST /tokenize: prompts are about %d tokens (%d words); "
                        "the totals count the server's usage.prompt_tokens\n",
                b->o.input_len, b->o.input_len);
    return true;
}

static void free_level(level *L) {
    for (int i = 0; i < L->n; i++) {
        request *r = &L->reqs[i];
        free((char *)r->prompt), free(r->body), free(r->itl), free(r->line.p), free(r->data.p);
    }
    free(L->reqs);
    L->reqs = NULL;
}

/* Prompts and bodies for n requests; prompt k of the whole run is seeded by (seed, k). */
static bool prepare_level(bench *b, level *L, int n, int concurrency, uint64_t *prompt_index, double *planned_sum, long *planned_n) {
    L->concurrency = concurrency;
    L->n = n;
    L->reqs = calloc((size_t)n, sizeof *L->reqs);
    if (!L->reqs) return cli_error("out of memory"), false;
    for (int i = 0; i < n; i++) {
        request *r = &L->reqs[i];
        r->b = b;
        r->usage_out = r->usage_prompt = -1;
        uint64_t s = b->o.seed * 0x100000001B3ull + (*prompt_index)++;
        splitmix64(&s);
        r->prompt = make_prompt(b, s, b->o.input_len, &r->prompt_tokens_est);
        r->body = r->prompt ? request_body(b, r->prompt) : NULL;
        r->cap_itl = b->o.output_len < 4096 ? b->o.output_len : 4096;
        r->itl = malloc((size_t)r->cap_itl * sizeof *r->itl);
        if (!r->body || !r->itl) return cli_error("out of memory"), false;
        *planned_sum += r->prompt_tokens_est, (*planned_n)++;
    }
    return true;
}

int cmd_bench_serve(int argc, char **argv) {
    bench b = {0};
    int rc = parse_options(argc, argv, &b.o);
    if (rc >= 0) return rc;
    b.ep = b.o.endpoint;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return cli_error("curl_global_init failed");
    FILE *out = b.o.json_path && !strcmp(b.o.json_path, "-") ? stderr : stdout;
    result results[MAX_LEVELS];
    int n_results = 0, total_ok = 0;
    rc = 1;
    uint64_t prompt_index = 0, arrival_seed = b.o.seed ^ 0xA5A5A5A5DEADBEEFull;
    double planned_sum = 0;
    long planned_n = 0;
    double *arrival = NULL;
    if (!setup(&b)) goto done;
    fprintf(stderr, "bench-serve: %s, model %s, %s, input %d, output %d tokens\n", b.base, b.model,
            b.ep == EP_CHAT ? "chat" : "completions", b.o.input_len, b.o.output_len);
    if (b.o.warmup) {
        level w = {0};
        double dummy = 0;
        long dn = 0;
        arrival = calloc((size_t)b.o.warmup, sizeof *arrival);
        bool ok = arrival && prepare_level(&b, &w, b.o.warmup, 1, &prompt_index, &dummy, &dn) && run_level(&b, &w, arrival);
        for (int i = 0; ok && i < w.n; i++)
            if (!w.reqs[i].ok) fprintf(stderr, "bench-serve: warm-up request failed: %s\n", w.reqs[i].err);
        free_level(&w);
        free(arrival);
        arrival = NULL;
        if (!ok) goto done;
    }
    for (int li = 0; li < b.o.n_levels; li++) {
        level L = {0};
        int n = level_prompts(&b.o, b.o.levels[li]);
        arrival = malloc((size_t)n * sizeof *arrival);
        if (!arrival) {
            cli_error("out of memory");
            goto done;
        }
        /* vLLM's schedule: the first request at once, then exponential gaps of mean 1/rate. */
        double t = 0;
        for (int i = 0; i < n; i++) {
            arrival[i] = t;
            if (!isinf(b.o.rate)) t += -log(1.0 - uniform01(&arrival_seed)) / b.o.rate * 1000.0;
        }
        if (b.o.levels[li])
            fprintf(stderr, "bench-serve: concurrency %d, %d requests\n", b.o.levels[li], n);
        else
            fprintf(stderr, "bench-serve: %d requests\n", n);
        bool ok = prepare_level(&b, &L, n, b.o.levels[li], &prompt_index, &planned_sum, &planned_n) && run_level(&b, &L, arrival) &&
                  compute(&b, &L, &results[n_results]);
        free_level(&L);
        free(arrival);
        arrival = NULL;
        if (!ok) goto done;
        print_result(out, &b, &results[n_results]);
        fflush(out);
        total_ok += results[n_results++].completed;
    }
    if (n_results > 1) print_summary(out, results, n_results);
    if (b.o.json_path && !write_json(&b, results, n_results, planned_n ? planned_sum / planned_n : 0)) goto done;
    rc = total_ok > 0 ? 0 : cli_error("no request succeeded");
done:
    free(arrival);
    curl_slist_free_all(b.headers);
    free(b.base), free(b.model);
    curl_global_cleanup();
    return rc;
}
