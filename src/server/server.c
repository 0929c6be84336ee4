/*
 * llamac serve: OpenAI's wire format over libmicrohttpd, on the continuous-batching engine.
 *
 * Threads: MHD's listener and one thread per connection; one engine thread; the caller's thread waits
 * for SIGTERM/SIGINT. Shared state lives under s->mu, which the engine thread releases for every
 * llamac_engine_step: a request thread waits on it only for the few microseconds of a hand-over.
 *
 * A generation request (one HTTP request, n_choices engine requests) is shared by its connection
 * thread and the engine thread and freed by whichever lets go last (refs). Text flows one way: the
 * engine thread appends released text to each choice's buffer (bounded: a reader that falls more than
 * MAX_PENDING bytes behind is cancelled, so it cannot make the server hold unbounded memory), and the
 * connection thread takes it out under the lock and formats it without the lock.
 *
 * A client that goes away is noticed by the connection thread (a failed write, or end-of-file or
 * hang-up on its socket while it waits): it cancels the request, and the engine thread frees its KV
 * blocks before its next step.
 */
#include "server/server.h"

#include "base/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PENDING (4u << 20)   /* bytes of released text a slow reader may leave untaken */
#define WAIT_SLICE_MS 100        /* how often a waiting connection thread looks at its socket */
#define MAX_CHOICES 128          /* n times the prompts of one request */

/* ---- small helpers ---------------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static bool sb_reserve(sbuf *b, size_t extra) {
    if (b->oom) return false;
    if (b->n + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}
static void sb_add(sbuf *b, const char *s, size_t n) {
    if (!sb_reserve(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) {
        sb_add(b, tmp, (size_t)k);
        return;
    }
    if (!sb_reserve(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}
/* A JSON string literal: quotes, backslashes and control characters escaped, other bytes as they are. */
static void sb_json_str(sbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (!sb_reserve(b, n + 2)) return;
    b->p[b->n++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        const char *e = NULL;
        size_t el = 2;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                esc[0] = '\\', esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
                e = esc;
                el = 6;
            }
        }
        if (e) sb_add(b, e, el);
        else if (sb_reserve(b, 1)) b->p[b->n++] = (char)c;
    }
    if (sb_reserve(b, 1)) b->p[b->n++] = '"';
    if (b->p) b->p[b->n] = 0;
}

/* The length of s[0..n) without a UTF-8 sequence cut short at its end: a message or a quote cut to a
 * size must stay valid UTF-8 (JSON's encoding) when what it quotes was. */
static size_t utf8_whole(const char *s, size_t n) {
    size_t j = n;
    while (j > 0 && n - j < 4 && ((unsigned char)s[j - 1] & 0xC0) == 0x80) j--;
    if (j == 0) return n;
    unsigned char lead = (unsigned char)s[j - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return want > n - (j - 1) ? j - 1 : n;
}

/* Compares a secret in time that depends on the secret's length only, not on where it differs. */
static bool secret_equal(const char *given, size_t n_given, const char *secret) {
    size_t n = strlen(secret);
    volatile unsigned char d = (unsigned char)(n_given != n);
    for (size_t i = 0; i < n; i++) d |= (unsigned char)(secret[i] ^ (i < n_given ? given[i] : 0));
    return d == 0;
}

/* ---- strict JSON ------------------------------------------------------------------------------- */

/* A request body: exactly one JSON object, read by the strict parser every JSON input goes through
 * (no NUL, nothing after the value, no duplicate key, bounded depth and size); \u0000 is refused too,
 * since it would cut a prompt short. NULL with err set otherwise. */
#define BODY_MAX_VALUES (1u << 20)
static cJSON *json_parse_strict(const char *buf, size_t len, llamac_error *err) {
    cJSON *v = llc_json_parse_opts(buf, len, "request body", LLC_JSON_NO_NUL_ESCAPE, BODY_MAX_VALUES, err);
    if (v && !cJSON_IsObject(v)) {
        cJSON_Delete(v);
        snprintf(err->message, sizeof err->message, "request body: must be a JSON object");
        return NULL;
    }
    return v;
}

/* ---- metrics ----------------------------------------------------------------------------------- */

static const double b_ttft[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double b_itl[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                               1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
static const double b_req[] = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
                               30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
#define NB(a) ((int)(sizeof a / sizeof a[0]))

typedef struct histo {
    const double *le;
    int n;
    uint64_t count[24]; /* per bucket, not cumulative; the last is +Inf */
    uint64_t total;
    double sum;
} histo;

static void histo_add(histo *h, double v) {
    int i = 0;
    while (i < h->n && v > h->le[i]) i++;
    h->count[i]++;
    h->total++;
    h->sum += v;
}

/* ---- requests ---------------------------------------------------------------------------------- */

/* A token's log-probabilities as the engine reported them, kept until formatted. */
typedef struct lp_rec {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_ids[LLAMAC_MAX_TOP_LOGPROBS];
    float top_logprobs[LLAMAC_MAX_TOP_LOGPROBS];
} lp_rec;

struct server;

typedef struct choice {
    struct greq *req;
    int index;             /* OpenAI's choice index */
    int prompt_i;          /* which prompt (completions may have several) */
    int eid;               /* engine id; -1 until submitted */
    uint64_t seed;
    /* written by the engine thread, read under s->mu */
    sbuf out;              /* released text not yet taken by the connection thread */
    sbuf lp;               /* lp_rec of the tokens not yet taken (with logprobs) */
    int n_tokens, cached;
    int finish;            /* llamac_finish */
    bool done;
    double t_last;
} choice;

typedef struct prompt {
    int32_t *ids;
    int n;
    char *text;            /* for echo: the prompt as text */
} prompt;

typedef struct greq {
    int refs;              /* the connection thread's and the engine thread's */
    pthread_cond_t cv;
    bool chat, stream, include_usage, echo;
    int n_choices, n_done, n_prompts;
    choice *ch;
    prompt *pr;
    llamac_request base;   /* sampling, max_tokens, stop, ignore_eog; prompt per choice */
    char **stop;
    int n_stop;
    int32_t *bias_ids;
    float *bias;
    bool submitted, failed, cancel, cancel_sent, in_engine;
    char error[600];
    double t_arrival;
    struct greq *next_in;  /* the incoming queue */
    char id[40];
    long created;
} greq;

typedef struct server {
    const llamac_model *m;
    const llamac_tokenizer *tok;
    llc_server_params p;
    llamac_engine *e;
    int n_ctx, n_vocab, max_seqs;
    char fingerprint[32];
    long started;
    pthread_mutex_t mu;
    pthread_cond_t engine_cv;
    pthread_condattr_t cattr;
    greq *in_head, *in_tail;
    greq **active;           /* requests with choices in the engine */
    int n_active, cap_active;
    int n_cancel;            /* requests asking to be cancelled since the engine thread last looked */
    /* engine id -> choice: open addressing, linear probing, backward-shift deletion */
    choice **map;
    int *map_key;
    int map_cap;
    int n_live;              /* choices queued or in the engine */
    int n_open;              /* generation requests whose connection thread has not let go */
    bool draining, stopping, quit;
    llamac_engine_stats st;
    /* metrics (under mu) */
    uint64_t success[3];     /* stop, length, abort */
    uint64_t http_status[600];
    histo ttft, itl, e2e, queue;
    uint64_t req_counter;
    struct MHD_Daemon *d;
} server;

static void s_log(server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log(server *s, const char *fmt, ...) {
    if (!s->p.log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->p.log(s->p.ctx, line);
}

static void greq_free(greq *r) {
    if (!r) return;
    for (int i = 0; i < r->n_choices; i++) {
        free(r->ch[i].out.p);
        free(r->ch[i].lp.p);
    }
    free(r->bias_ids);
    free(r->bias);
    free(r->ch);
    for (int i = 0; i < r->n_prompts; i++) {
        free(r->pr[i].ids);
        free(r->pr[i].text);
    }
    free(r->pr);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Drops one reference; the caller holds s->mu. Returns the request when it is to be freed (after the
 * lock is released). */
static greq *greq_unref(greq *r) { return --r->refs == 0 ? r : NULL; }

static int map_slot(const server *s, int key) { return (int)(((unsigned)key * 2654435761u) & (unsigned)(s->map_cap - 1)); }

static void map_put(server *s, int key, choice *c) {
    int i = map_slot(s, key);
    while (s->map[i]) i = (i + 1) & (s->map_cap - 1);
    s->map[i] = c;
    s->map_key[i] = key;
}
static int map_find(const server *s, int key) {
    for (int i = map_slot(s, key);; i = (i + 1) & (s->map_cap - 1)) {
        if (!s->map[i]) return -1;
        if (s->map_key[i] == key) return i;
    }
}
static void map_del_at(server *s, int i) {
    s->map[i] = NULL;
    for (int j = (i + 1) & (s->map_cap - 1); s->map[j]; j = (j + 1) & (s->map_cap - 1)) {
        int home = map_slot(s, s->map_key[j]);
        /* move j back to i when i lies cyclically in [home, j) */
        bool move = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (move) {
            s->map[i] = s->map[j];
            s->map_key[i] = s->map_key[j];
            s->map[j] = NULL;
            i = j;
        }
    }
}

/* ---- the engine thread ------------------------------------------------------------------------- */

static void active_remove(server *s, greq *r) {
    for (int i = 0; i < s->n_active; i++)
        if (s->active[i] == r) {
            s->active[i] = s->active[--s->n_active];
            return;
        }
}

/* A choice finished (or never started): counts, and lets the engine's reference go when it was the
 * request's last. Returns the request to free, if any. */
static greq *choice_done(server *s, choice *c, int finish) {
    greq *r = c->req;
    c->done = true;
    c->finish = finish;
    r->n_done++;
    s->n_live--;
    if (r->n_done < r->n_choices) return NULL;
    if (r->in_engine) {
        r->in_engine = false;
        active_remove(s, r);
    }
    pthread_cond_broadcast(&r->cv);
    return greq_unref(r);
}

/* What the engine is asked for one choice. */
static llamac_request choice_request(const greq *r, const choice *c) {
    llamac_request q = r->base;
    q.prompt = r->pr[c->prompt_i].ids;
    q.n_prompt = r->pr[c->prompt_i].n;
    q.sampling.seed = c->seed;
    return q;
}

static void submit_request(server *s, greq *r) {
    llamac_error err = {{0}};
    r->in_engine = true;
    s->active[s->n_active++] = r; /* capacity: every live choice fits (reserved at creation) */
    for (int i = 0; i < r->n_choices; i++) {
        choice *c = &r->ch[i];
        if (r->failed) {
            greq_free(choice_done(s, c, LLAMAC_FINISH_CANCELLED));
            continue;
        }
        llamac_request q = choice_request(r, c);
        int id = llamac_engine_submit(s->e, &q, &err);
        if (id < 0) {
            r->failed = true;
            snprintf(r->error, sizeof r->error, "%s", err.message);
            for (int k = 0; k < i; k++) llamac_engine_cancel(s->e, r->ch[k].eid);
            greq_free(choice_done(s, c, LLAMAC_FINISH_CANCELLED));
            continue;
        }
        c->eid = id;
        map_put(s, id, c);
    }
    r->submitted = true;
    pthread_cond_broadcast(&r->cv);
}

static void dispatch(server *s, const llamac_event *ev, int n, double t_step, double t) {
    for (int k = 0; k < n; k++) {
        int slot = map_find(s, ev[k].request);
        if (slot < 0) continue;
        choice *c = s->map[slot];
        greq *r = c->req;
        if (ev[k].token >= 0) {
            if (c->n_tokens == 0) {
                histo_add(&s->ttft, t - r->t_arrival);
                histo_add(&s->queue, t_step > r->t_arrival ? t_step - r->t_arrival : 0);
            }
            else histo_add(&s->itl, t - c->t_last);
            c->n_tokens++;
            c->t_last = t;
            if (r->base.logprobs && c->lp.n + sizeof(lp_rec) <= MAX_PENDING) {
                lp_rec rec = {.token = ev[k].token, .logprob = ev[k].logprob, .n_top = ev[k].n_top};
                memcpy(rec.top_ids, ev[k].top_ids, sizeof rec.top_ids);
                memcpy(rec.top_logprobs, ev[k].top_logprobs, sizeof rec.top_logprobs);
                sb_add(&c->lp, (const char *)&rec, sizeof rec);
            }
        }
        c->cached = ev[k].cached_tokens;
        if (ev[k].text_len) {
            if (c->out.n + ev[k].text_len > MAX_PENDING) {
                /* the reader is too slow: stop generating for it rather than buffer without bound */
                if (!r->cancel_sent) {
                    snprintf(r->error, sizeof r->error, "the client read too slowly (more than %u bytes pending)", MAX_PENDING);
                    r->failed = true;
                    r->cancel_sent = true;
                    for (int i = 0; i < r->n_choices; i++)
                        if (!r->ch[i].done && r->ch[i].eid >= 0) llamac_engine_cancel(s->e, r->ch[i].eid);
                }
            } else {
                sb_add(&c->out, ev[k].text, ev[k].text_len);
            }
        }
        if (ev[k].finish != LLAMAC_RUNNING) {
            int f = ev[k].finish;
            s->success[f == LLAMAC_FINISH_STOP ? 0 : f == LLAMAC_FINISH_LENGTH ? 1 : 2]++;
            histo_add(&s->e2e, t - r->t_arrival);
            map_del_at(s, slot);
            greq *dead = choice_done(s, c, f);
            if (dead) {
                pthread_mutex_unlock(&s->mu); /* freeing is the connection thread's business otherwise */
                greq_free(dead);
                pthread_mutex_lock(&s->mu);
            }
        }
        pthread_cond_broadcast(&r->cv);
    }
}

static void *engine_main(void *arg) {
    server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->in_head) {
            greq *r = s->in_head;
            s->in_head = r->next_in;
            if (!s->in_head) s->in_tail = NULL;
            submit_request(s, r);
        }
        if (s->n_cancel) {
            s->n_cancel = 0;
            for (int i = 0; i < s->n_active; i++) {
                greq *r = s->active[i];
                if (!r->cancel || r->cancel_sent) continue;
                r->cancel_sent = true;
                for (int k = 0; k < r->n_choices; k++)
                    if (!r->ch[k].done && r->ch[k].eid >= 0) llamac_engine_cancel(s->e, r->ch[k].eid);
            }
        }
        llamac_engine_get_stats(s->e, &s->st);
        if (llamac_engine_pending(s->e) == 0) {
            if (s->quit) break;
            pthread_cond_wait(&s->engine_cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        int n = 0;
        llamac_error err = {{0}};
        double t_step = now_s();
        const llamac_event *ev = llamac_engine_step(s->e, &n, &err);
        double t = now_s();
        pthread_mutex_lock(&s->mu);
        if (!ev) {
            /* the engine keeps the step's requests pending; a failure that repeats fails them all */
            s_log(s, "engine step failed: %s; cancelling the running requests", err.message);
            for (int i = 0; i < s->n_active; i++) {
                greq *r = s->active[i];
                if (!r->failed) snprintf(r->error, sizeof r->error, "the engine failed: %s", err.message);
                r->failed = true;
                r->cancel = true;
                s->n_cancel++;
            }
            continue;
        }
        dispatch(s, ev, n, t_step, t);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- per-connection state ---------------------------------------------------------------------- */

typedef struct conn {
    server *s;
    sbuf body;
    size_t discarded;
    bool too_big, checked;
    int status;              /* an early error decided on the first call */
    char early_msg[256];
    int fd;
    greq *req;
    /* streaming */
    sbuf out;
    size_t out_off;
    sbuf *take, *take_lp;    /* per choice: text and logprobs taken, not yet formatted */
    size_t *text_offset;     /* per choice: bytes of tokens streamed (completions' text_offset) */
    bool *fin_sent;
    int *fin;
    bool started, finished;
    double last_write;
    char *prefix;            /* the chunk's fixed beginning: {"id":…,"choices":[ */
    const char *origin;      /* the CORS origin to echo, if allowed */
} conn;

static bool peer_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        char b;
        ssize_t k = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    return false;
}

static void timed_wait(server *s, pthread_cond_t *cv, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(cv, &s->mu, &ts);
}

/* Asks the engine thread to cancel r (the client went away). Caller holds s->mu. */
static void cancel_locked(server *s, greq *r) {
    if (r->n_done == r->n_choices || r->cancel) return;
    r->cancel = true;
    s->n_cancel++;
    pthread_cond_signal(&s->engine_cv);
}

/* ---- responses --------------------------------------------------------------------------------- */

static void add_common_headers(conn *c, struct MHD_Response *resp) {
    if (c->origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", c->origin);
        if (strcmp(c->origin, "*")) MHD_add_response_header(resp, "Vary", "Origin");
    }
}

static enum MHD_Result send_buf(conn *c, struct MHD_Connection *con, int status, const char *ctype, const char *data, size_t n,
                                const char *h1, const char *v1) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (h1) MHD_add_response_header(resp, h1, v1);
    add_common_headers(c, resp);
    enum MHD_Result ok = MHD_queue_response(con, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) {
        pthread_mutex_lock(&c->s->mu);
        if (status >= 100 && status < 600) c->s->http_status[status]++;
        pthread_mutex_unlock(&c->s->mu);
    }
    return ok;
}

static enum MHD_Result send_json(conn *c, struct MHD_Connection *con, int status, const sbuf *b) {
    if (b->oom) return MHD_NO;
    return send_buf(c, con, status, "application/json", b->p ? b->p : "{}", b->p ? b->n : 2, NULL, NULL);
}

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

typedef struct api_err {
    int status;
    const char *param, *code; /* param points into param_buf or at a literal */
    char param_buf[96];
    char msg[700];
} api_err;

static void set_msg(api_err *e, const char *fmt, va_list ap) {
    if (vsnprintf(e->msg, sizeof e->msg, fmt, ap) >= (int)sizeof e->msg) e->msg[utf8_whole(e->msg, strlen(e->msg))] = 0;
}

static bool fail(api_err *e, int status, const char *param, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool fail(api_err *e, int status, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_msg(e, fmt, ap);
    va_end(ap);
    e->status = status;
    e->param = NULL;
    if (param) { /* a copy: the name may live in the request's JSON, freed before the answer */
        int k = (int)utf8_whole(param, strnlen(param, sizeof e->param_buf - 1));
        snprintf(e->param_buf, sizeof e->param_buf, "%.*s", k, param);
        e->param = e->param_buf;
    }
    return false;
}

/* An error's body in OpenAI's shape. */
static void error_json(sbuf *b, const api_err *e) {
    sb_str(b, "{\"error\":{\"message\":");
    sb_json_str(b, e->msg, strlen(e->msg));
    sb_str(b, ",\"type\":");
    sb_json_str(b, error_type(e->status), strlen(error_type(e->status)));
    sb_str(b, ",\"param\":");
    if (e->param) sb_json_str(b, e->param, strlen(e->param));
    else sb_str(b, "null");
    sb_str(b, ",\"code\":");
    if (e->code) sb_json_str(b, e->code, strlen(e->code));
    else sb_str(b, "null");
    sb_str(b, "}}");
}

static enum MHD_Result send_error(conn *c, struct MHD_Connection *con, const api_err *e) {
    sbuf b = {0};
    error_json(&b, e);
    enum MHD_Result r;
    if (b.oom) r = MHD_NO;
    else if (e->status == 429)
        r = send_buf(c, con, e->status, "application/json", b.p, b.n, "Retry-After", "1");
    else if (e->status == 413) /* the rest of the body is not worth reading */
        r = send_buf(c, con, e->status, "application/json", b.p, b.n, "Connection", "close");
    else if (e->status == 405)
        r = send_buf(c, con, e->status, "application/json", b.p, b.n, "Allow", c->early_msg[0] ? c->early_msg : "GET, POST");
    else
        r = send_json(c, con, e->status, &b);
    free(b.p);
    return r;
}

static enum MHD_Result send_error_f(conn *c, struct MHD_Connection *con, int status, const char *param, const char *code,
                                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result send_error_f(conn *c, struct MHD_Connection *con, int status, const char *param, const char *code,
                                    const char *fmt, ...) {
    api_err e = {.status = status, .param = param, .code = code};
    va_list ap;
    va_start(ap, fmt);
    set_msg(&e, fmt, ap);
    va_end(ap);
    return send_error(c, con, &e);
}

/* ---- request parsing --------------------------------------------------------------------------- */

static bool is_int(const cJSON *v, double lo, double hi) {
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= lo &&
           v->valuedouble <= hi;
}

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Every key of o must be one of the names (NULL-terminated): a parameter the server does not know
 * could change the output, so it is refused rather than ignored. */
static bool known_keys(const cJSON *o, const char *const *names, api_err *e) {
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        bool ok = false;
        for (int i = 0; names[i] && !ok; i++) ok = !strcmp(it->string, names[i]);
        if (!ok) return fail(e, 400, it->string, "unrecognized request argument supplied: %s", it->string);
    }
    return true;
}

static bool check_model(server *s, const cJSON *o, api_err *e) {
    const cJSON *m = field(o, "model");
    if (!m) return true;
    if (!cJSON_IsString(m)) return fail(e, 400, "model", "'model' must be a string");
    if (strcmp(m->valuestring, s->p.model_name)) {
        e->code = "model_not_found";
        return fail(e, 404, "model", "The model '%s' does not exist (this server serves '%s')", m->valuestring, s->p.model_name);
    }
    return true;
}

/* Text of a message's content: a string, or an array of {"type": "text", "text": …} parts joined by
 * newlines (as vLLM joins them). malloc'ed. */
static char *message_text(const cJSON *content, int i, api_err *e) {
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    if (!cJSON_IsArray(content)) {
        fail(e, 400, "messages", "messages[%d].content must be a string or an array of text parts", i);
        return NULL;
    }
    sbuf b = {0};
    const cJSON *part;
    int k = 0;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text) ||
            cJSON_GetArraySize(part) != 2) {
            free(b.p);
            fail(e, 400, "messages", "messages[%d].content[%d]: only {\"type\": \"text\", \"text\": …} parts are supported", i, k);
            return NULL;
        }
        if (k++) sb_str(&b, "\n");
        sb_str(&b, text->valuestring);
    }
    if (!b.p) sb_str(&b, "");
    if (b.oom) {
        free(b.p);
        fail(e, 500, NULL, "out of memory");
        return NULL;
    }
    return b.p;
}

/* messages -> prompt ids in the model's chat format, with the generation prompt. */
static bool chat_prompt(server *s, const cJSON *msgs, bool add_gen, prompt *out, api_err *e) {
    if (!cJSON_IsArray(msgs)) return fail(e, 400, "messages", "'messages' must be an array");
    int n = cJSON_GetArraySize(msgs);
    if (n < 1) return fail(e, 400, "messages", "'messages' must not be empty");
    if (n > 100000) return fail(e, 400, "messages", "too many messages");
    llamac_chat_message *m = calloc((size_t)n, sizeof *m);
    char **texts = calloc((size_t)n, sizeof *texts);
    bool ok = false;
    if (!m || !texts) {
        fail(e, 500, NULL, "out of memory");
        goto done;
    }
    int i = 0;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, msgs) {
        static const char *const keys[] = {"role", "content", NULL};
        if (!cJSON_IsObject(msg)) {
            fail(e, 400, "messages", "messages[%d] must be an object", i);
            goto done;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, msg) {
            bool k = !strcmp(it->string, keys[0]) || !strcmp(it->string, keys[1]);
            if (!k && !cJSON_IsNull(it)) {
                fail(e, 400, "messages", "messages[%d].%s is not supported", i, it->string);
                goto done;
            }
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        if (!cJSON_IsString(role) ||
            (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant"))) {
            fail(e, 400, "messages", "messages[%d].role must be \"system\", \"user\" or \"assistant\"", i);
            goto done;
        }
        if (!content) {
            fail(e, 400, "messages", "messages[%d].content is missing", i);
            goto done;
        }
        if (!(texts[i] = message_text(content, i, e))) goto done;
        m[i] = (llamac_chat_message){role->valuestring, texts[i], NULL, 0};
        i++;
    }
    llamac_error err = {{0}};
    int k = llamac_chat_tokenize(s->tok, LLAMAC_CHAT_AUTO, m, n, add_gen, NULL, 0, &err);
    if (k < 0) {
        fail(e, 400, "messages", "%s", err.message);
        goto done;
    }
    if (!(out->ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *out->ids))) {
        fail(e, 500, NULL, "out of memory");
        goto done;
    }
    out->n = llamac_chat_tokenize(s->tok, LLAMAC_CHAT_AUTO, m, n, add_gen, out->ids, k, &err);
    ok = out->n == k;
    if (!ok) fail(e, 500, NULL, "chat formatting changed length");
done:
    if (texts)
        for (int j = 0; j < n; j++) free(texts[j]);
    free(texts);
    free(m);
    return ok;
}

static bool text_prompt(server *s, const char *text, bool add_bos, prompt *out, api_err *e) {
    llamac_error err = {{0}};
    size_t len = strlen(text);
    int k = llamac_tokenize(s->tok, text, len, add_bos, false, NULL, 0, &err);
    if (k < 0) return fail(e, 400, "prompt", "%s", err.message);
    if (!(out->ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *out->ids)) || !(out->text = strdup(text)))
        return fail(e, 500, NULL, "out of memory");
    out->n = llamac_tokenize(s->tok, text, len, add_bos, false, out->ids, k, &err);
    if (out->n != k) return fail(e, 500, NULL, "tokenization changed length");
    return true;
}

/* Token ids as a JSON array of integers inside the vocabulary. */
static bool id_prompt(server *s, const cJSON *arr, const char *param, prompt *out, api_err *e) {
    int n = cJSON_GetArraySize(arr);
    if (!(out->ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *out->ids))) return fail(e, 500, NULL, "out of memory");
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (!is_int(v, 0, s->n_vocab - 1)) return fail(e, 400, param, "token ids must be integers in [0, %d)", s->n_vocab);
        out->ids[i++] = (int32_t)v->valuedouble;
    }
    out->n = i;
    return true;
}

/* The text of ids as the detokenizer gives it (control tokens decode to nothing). */
static char *ids_text(server *s, const int32_t *ids, int n) {
    sbuf b = {0};
    llamac_detokenizer d;
    llamac_detokenizer_init(&d, s->tok);
    size_t cap = llamac_detokenizer_max_bytes(s->tok) + 8;
    char *piece = malloc(cap);
    if (!piece) return NULL;
    for (int i = 0; i < n; i++) sb_add(&b, piece, llamac_detokenize(&d, ids[i], piece, cap));
    sb_add(&b, piece, llamac_detokenizer_flush(&d, piece, cap));
    free(piece);
    if (!b.p) sb_str(&b, "");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* The completions prompt: a string, an array of strings, an array of ids, or an array of arrays of
 * ids. */
static bool completion_prompts(server *s, const cJSON *p, greq *r, api_err *e) {
    if (!p) return fail(e, 400, "prompt", "'prompt' is required");
    int n = 1;
    bool many = false;
    if (cJSON_IsArray(p)) {
        const cJSON *first = p->child;
        if (!first) return fail(e, 400, "prompt", "'prompt' must not be empty");
        if (cJSON_IsString(first) || cJSON_IsArray(first)) {
            many = true;
            n = cJSON_GetArraySize(p);
        }
    } else if (!cJSON_IsString(p)) {
        return fail(e, 400, "prompt", "'prompt' must be a string, an array of strings, or token ids");
    }
    if (n > MAX_CHOICES) return fail(e, 400, "prompt", "at most %d prompts", MAX_CHOICES);
    if (!(r->pr = calloc((size_t)n, sizeof *r->pr))) return fail(e, 500, NULL, "out of memory");
    r->n_prompts = n;
    if (!many) {
        if (cJSON_IsString(p)) return text_prompt(s, p->valuestring, true, &r->pr[0], e);
        if (!id_prompt(s, p, "prompt", &r->pr[0], e)) return false;
        return (r->pr[0].text = ids_text(s, r->pr[0].ids, r->pr[0].n)) ? true : fail(e, 500, NULL, "out of memory");
    }
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, p) {
        if (cJSON_IsString(v)) {
            if (!text_prompt(s, v->valuestring, true, &r->pr[i], e)) return false;
        } else if (cJSON_IsArray(v)) {
            if (!id_prompt(s, v, "prompt", &r->pr[i], e)) return false;
            if (!(r->pr[i].text = ids_text(s, r->pr[i].ids, r->pr[i].n))) return fail(e, 500, NULL, "out of memory");
        } else {
            return fail(e, 400, "prompt", "'prompt' must be a string, an array of strings, or token ids");
        }
        i++;
    }
    return true;
}

/* Parameters both endpoints share; the prompts are set. */
static bool sampling_params(server *s, const cJSON *o, greq *r, api_err *e) {
    const cJSON *v;
    llamac_model_info info;
    llamac_model_get_info(s->m, &info);
    llamac_sampler_params sp = llamac_sampler_defaults();
    /* OpenAI's defaults (temperature 1, no truncation) unless the checkpoint ships its own, as vLLM */
    sp.temperature = info.default_temperature > 0 ? info.default_temperature : 1.0f;
    sp.top_p = info.default_top_p > 0 ? info.default_top_p : 1.0f;
    sp.top_k = 0;
    sp.min_p = 0;
    sp.repeat_penalty = 1;
    if ((v = field(o, "temperature"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 100))
            return fail(e, 400, "temperature", "'temperature' must be a number in [0, 100]");
        sp.temperature = (float)v->valuedouble;
    }
    if ((v = field(o, "top_p"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble <= 1))
            return fail(e, 400, "top_p", "'top_p' must be a number in (0, 1]");
        sp.top_p = (float)v->valuedouble;
    }
    if ((v = field(o, "top_k"))) {
        if (!is_int(v, -1, 1 << 24)) return fail(e, 400, "top_k", "'top_k' must be an integer >= -1 (-1 or 0: off)");
        sp.top_k = v->valuedouble > 0 ? (int)v->valuedouble : 0;
    }
    if ((v = field(o, "min_p"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1))
            return fail(e, 400, "min_p", "'min_p' must be a number in [0, 1]");
        sp.min_p = (float)v->valuedouble;
    }
    if ((v = field(o, "repetition_penalty"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble <= 100))
            return fail(e, 400, "repetition_penalty", "'repetition_penalty' must be a number in (0, 100]");
        sp.repeat_penalty = (float)v->valuedouble;
    }
    static const char *const penalties[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++)
        if ((v = field(o, penalties[i]))) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= -2 && v->valuedouble <= 2))
                return fail(e, 400, penalties[i], "'%s' must be a number in [-2, 2]", penalties[i]);
            if (i == 0) r->base.presence_penalty = (float)v->valuedouble;
            else r->base.frequency_penalty = (float)v->valuedouble;
        }
    if ((v = field(o, "logit_bias"))) {
        if (!cJSON_IsObject(v)) return fail(e, 400, "logit_bias", "'logit_bias' must be an object of token ids to numbers");
        int nb = cJSON_GetArraySize(v);
        if (nb > 1024) return fail(e, 400, "logit_bias", "'logit_bias' holds at most 1024 tokens");
        if (nb) {
            r->bias_ids = malloc((size_t)nb * sizeof *r->bias_ids);
            r->bias = malloc((size_t)nb * sizeof *r->bias);
            if (!r->bias_ids || !r->bias) return fail(e, 500, NULL, "out of memory");
        }
        const cJSON *it;
        int k = 0;
        cJSON_ArrayForEach(it, v) {
            char *end;
            errno = 0;
            long id = strtol(it->string, &end, 10);
            if (!it->string[0] || *end || errno || id < 0 || id >= s->n_vocab || it->string[0] == '+' || it->string[0] == ' ')
                return fail(e, 400, "logit_bias", "'logit_bias' keys must be token ids in [0, %d) (got \"%.*s\")", s->n_vocab,
                            (int)utf8_whole(it->string, strnlen(it->string, 40)), it->string);
            if (!cJSON_IsNumber(it) || !(it->valuedouble >= -100 && it->valuedouble <= 100))
                return fail(e, 400, "logit_bias", "'logit_bias' values must be numbers in [-100, 100]");
            r->bias_ids[k] = (int32_t)id;
            r->bias[k++] = (float)it->valuedouble;
        }
        r->base.logit_bias_ids = r->bias_ids;
        r->base.logit_bias = r->bias;
        r->base.n_logit_bias = k;
    }
    if (r->chat) {
        if ((v = field(o, "logprobs"))) {
            if (!cJSON_IsBool(v)) return fail(e, 400, "logprobs", "'logprobs' must be a boolean");
            r->base.logprobs = cJSON_IsTrue(v);
        }
        if ((v = field(o, "top_logprobs"))) {
            if (!is_int(v, 0, LLAMAC_MAX_TOP_LOGPROBS))
                return fail(e, 400, "top_logprobs", "'top_logprobs' must be an integer in [0, %d]", LLAMAC_MAX_TOP_LOGPROBS);
            if (!r->base.logprobs) return fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            r->base.top_logprobs = (int)v->valuedouble;
        }
    } else if ((v = field(o, "logprobs"))) {
        if (!is_int(v, 0, LLAMAC_MAX_TOP_LOGPROBS))
            return fail(e, 400, "logprobs", "'logprobs' must be an integer in [0, %d]", LLAMAC_MAX_TOP_LOGPROBS);
        r->base.logprobs = true;
        r->base.top_logprobs = (int)v->valuedouble;
    }
    /* seed: any 64-bit integer as the clients send it; without one, a fresh one per request */
    uint64_t seed;
    if ((v = field(o, "seed"))) {
        if (!is_int(v, -9223372036854775808.0, 18446744073709551615.0)) return fail(e, 400, "seed", "'seed' must be an integer");
        seed = v->valuedouble < 0 ? (uint64_t)(int64_t)v->valuedouble : (uint64_t)v->valuedouble;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (__atomic_add_fetch(&s->req_counter, 1, __ATOMIC_RELAXED) << 32);
    }
    int n = 1;
    if ((v = field(o, "n"))) {
        if (!is_int(v, 1, MAX_CHOICES)) return fail(e, 400, "n", "'n' must be an integer in [1, %d]", MAX_CHOICES);
        n = (int)v->valuedouble;
    }
    if (n * r->n_prompts > MAX_CHOICES) return fail(e, 400, "n", "at most %d choices (n times the prompts)", MAX_CHOICES);
    if ((v = field(o, "stop"))) {
        int k = cJSON_IsString(v) ? 1 : cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
        if (k < 0) return fail(e, 400, "stop", "'stop' must be a string or an array of strings");
        if (k > LLAMAC_MAX_STOP) return fail(e, 400, "stop", "at most %d stop strings", LLAMAC_MAX_STOP);
        if (!(r->stop = calloc((size_t)(k ? k : 1), sizeof *r->stop))) return fail(e, 500, NULL, "out of memory");
        const cJSON *it;
        if (cJSON_IsString(v)) {
            if (!v->valuestring[0]) return fail(e, 400, "stop", "stop strings must not be empty");
            if (!(r->stop[r->n_stop++] = strdup(v->valuestring))) return fail(e, 500, NULL, "out of memory");
        } else {
            cJSON_ArrayForEach(it, v) {
                if (!cJSON_IsString(it) || !it->valuestring[0]) return fail(e, 400, "stop", "'stop' must hold non-empty strings");
                if (!(r->stop[r->n_stop++] = strdup(it->valuestring))) return fail(e, 500, NULL, "out of memory");
            }
        }
        for (int i = 0; i < r->n_stop; i++)
            if (strlen(r->stop[i]) > LLAMAC_MAX_STOP_LEN)
                return fail(e, 400, "stop", "stop strings may be at most %d bytes long", LLAMAC_MAX_STOP_LEN);
    }
    const cJSON *mt = field(o, "max_tokens");
    if (r->chat && field(o, "max_completion_tokens")) {
        if (mt) return fail(e, 400, "max_completion_tokens", "give 'max_tokens' or 'max_completion_tokens', not both");
        mt = field(o, "max_completion_tokens");
    }
    int max_tokens = 0;
    if (mt) {
        if (!is_int(mt, 1, 1 << 24))
            return fail(e, 400, mt->string, "'%s' must be an integer in [1, %d]", mt->string, 1 << 24);
        max_tokens = (int)mt->valuedouble;
    }
    for (int i = 0; i < r->n_prompts; i++) {
        int np = r->pr[i].n;
        if (np < 1) return fail(e, 400, "prompt", "the prompt is empty (and the vocabulary has no BOS token to start from)");
        int want = max_tokens ? max_tokens : 1;
        if ((long)np + want > s->n_ctx) {
            e->code = "context_length_exceeded";
            if (max_tokens)
                return fail(e, 400, r->chat ? "messages" : "prompt",
                            "This model's maximum context length is %d tokens. However, you requested %ld tokens (%d in the %s, %d in "
                            "the completion). Please reduce the length of the %s or the completion.",
                            s->n_ctx, (long)np + want, np, r->chat ? "messages" : "prompt", max_tokens, r->chat ? "messages" : "prompt");
            return fail(e, 400, r->chat ? "messages" : "prompt",
                        "This model's maximum context length is %d tokens. However, your %s has %d tokens, which leaves no room for "
                        "a completion.",
                        s->n_ctx, r->chat ? "messages" : "prompt", np);
        }
    }
    if ((v = field(o, "ignore_eos"))) {
        if (!cJSON_IsBool(v)) return fail(e, 400, "ignore_eos", "'ignore_eos' must be a boolean");
        r->base.ignore_eog = cJSON_IsTrue(v);
    }
    if ((v = field(o, "stream"))) {
        if (!cJSON_IsBool(v)) return fail(e, 400, "stream", "'stream' must be a boolean");
        r->stream = cJSON_IsTrue(v);
    }
    if ((v = field(o, "stream_options"))) {
        if (!cJSON_IsObject(v)) return fail(e, 400, "stream_options", "'stream_options' must be an object");
        if (!r->stream) return fail(e, 400, "stream_options", "'stream_options' is only allowed when 'stream' is true");
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            if (strcmp(it->string, "include_usage") || (!cJSON_IsBool(it) && !cJSON_IsNull(it)))
                return fail(e, 400, "stream_options", "'stream_options' takes only 'include_usage' (a boolean)");
            r->include_usage = cJSON_IsTrue(it);
        }
    }
    if ((v = field(o, "user")) && !cJSON_IsString(v)) return fail(e, 400, "user", "'user' must be a string");
    if (!r->chat && (v = field(o, "echo"))) {
        if (!cJSON_IsBool(v)) return fail(e, 400, "echo", "'echo' must be a boolean");
        r->echo = cJSON_IsTrue(v);
        if (r->echo && r->base.logprobs) return fail(e, 400, "echo", "'echo' together with 'logprobs' is not supported by this server");
    }
    if (!r->chat && (v = field(o, "suffix"))) return fail(e, 400, "suffix", "'suffix' is not supported by this server");
    if (!r->chat && (v = field(o, "best_of"))) {
        if (!is_int(v, 1, MAX_CHOICES)) return fail(e, 400, "best_of", "'best_of' must be an integer");
        if (v->valuedouble != n) return fail(e, 400, "best_of", "'best_of' other than n is not supported by this server");
    }
    if (r->chat && (v = field(o, "response_format"))) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
        if (!cJSON_IsObject(v) || !cJSON_IsString(t) || strcmp(t->valuestring, "text") || cJSON_GetArraySize(v) != 1)
            return fail(e, 400, "response_format", "only {\"type\": \"text\"} is supported as 'response_format'");
    }
    if (r->chat) {
        static const char *const refused[] = {"tools", "tool_choice", "functions", "function_call", "parallel_tool_calls", "audio",
                                              "modalities", "prediction", "reasoning_effort", "web_search_options"};
        for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
            if (field(o, refused[i])) return fail(e, 400, refused[i], "'%s' is not supported by this server", refused[i]);
    }
    sp.repeat_last_n = 64;
    r->base.sampling = sp;
    r->base.max_tokens = max_tokens;
    r->base.stop = (const char *const *)r->stop;
    r->base.n_stop = r->n_stop;
    r->base.separate_text = r->chat;
    r->n_choices = n * r->n_prompts;
    if (!(r->ch = calloc((size_t)r->n_choices, sizeof *r->ch))) return fail(e, 500, NULL, "out of memory");
    for (int i = 0; i < r->n_choices; i++) {
        r->ch[i] = (choice){.req = r, .index = i, .prompt_i = i / n, .eid = -1, .seed = seed + (uint64_t)(i % n)};
    }
    return true;
}

static const char *const chat_keys[] = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
                                        "min_p", "seed", "stop", "n", "presence_penalty", "frequency_penalty", "repetition_penalty",
                                        "logit_bias", "logprobs", "top_logprobs", "ignore_eos", "user", "stream", "stream_options",
                                        "response_format", "tools", "tool_choice", "functions", "function_call",
                                        "parallel_tool_calls", "audio", "modalities", "prediction", "reasoning_effort",
                                        "web_search_options", "metadata", "store", NULL};
static const char *const completion_keys[] = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
                                              "stop", "n", "presence_penalty", "frequency_penalty", "repetition_penalty",
                                              "logit_bias", "logprobs", "echo", "ignore_eos", "user", "stream", "stream_options",
                                              "suffix", "best_of", NULL};

/* Parses a generation body into a new request (NULL with e set). */
static greq *parse_generation(server *s, const cJSON *o, bool chat, api_err *e) {
    greq *r = calloc(1, sizeof *r);
    if (!r) {
        fail(e, 500, NULL, "out of memory");
        return NULL;
    }
    pthread_cond_init(&r->cv, &s->cattr);
    r->chat = chat;
    r->refs = 1;
    if (!known_keys(o, chat ? chat_keys : completion_keys, e) || !check_model(s, o, e)) goto bad;
    const cJSON *v;
    if ((v = field(o, "store")) && (!cJSON_IsBool(v) || cJSON_IsTrue(v))) {
        fail(e, 400, "store", "'store' is not supported by this server (only false)");
        goto bad;
    }
    if ((v = field(o, "metadata")) && !cJSON_IsObject(v)) {
        fail(e, 400, "metadata", "'metadata' must be an object");
        goto bad;
    }
    if (chat) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
        if (!msgs) {
            fail(e, 400, "messages", "'messages' is required");
            goto bad;
        }
        if (!(r->pr = calloc(1, sizeof *r->pr))) {
            fail(e, 500, NULL, "out of memory");
            goto bad;
        }
        r->n_prompts = 1;
        if (!chat_prompt(s, msgs, true, &r->pr[0], e)) goto bad;
    } else if (!completion_prompts(s, cJSON_GetObjectItemCaseSensitive(o, "prompt"), r, e)) {
        goto bad;
    }
    if (!sampling_params(s, o, r, e)) goto bad;
    return r;
bad:
    greq_free(r);
    return NULL;
}

/* A generation body (bytes as received) into a new request (NULL with e set). */
static greq *generation_from_body(server *s, const char *body, size_t n, bool chat, api_err *e) {
    llamac_error jerr = {{0}};
    cJSON *o = json_parse_strict(body ? body : "", n, &jerr);
    if (!o) {
        fail(e, 400, NULL, "%s", jerr.message);
        return NULL;
    }
    greq *r = parse_generation(s, o, chat, e);
    cJSON_Delete(o);
    return r;
}

/* ---- generation: hand-over, waiting, responses ------------------------------------------------- */

static void usage_json(sbuf *b, const greq *r) {
    long prompt_tokens = 0, completion = 0, cached = 0;
    for (int i = 0; i < r->n_prompts; i++) prompt_tokens += r->pr[i].n;
    for (int i = 0; i < r->n_choices; i++) {
        completion += r->ch[i].n_tokens;
        if (i % (r->n_choices / r->n_prompts) == 0) cached += r->ch[i].cached;
    }
    sb_printf(b,
              "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld,\"prompt_tokens_details\":{\"cached_tokens\":%ld}}",
              prompt_tokens, completion, prompt_tokens + completion, cached);
}

/* A token's text as a JSON string: its bytes, with bytes that are not valid UTF-8 on their own (a
 * piece of a character) as U+FFFD, so the JSON stays valid; the exact bytes go in "bytes". */
static void token_json(sbuf *b, const llamac_tokenizer *tok, int32_t id, bool with_bytes) {
    const char *p = NULL;
    size_t n = llamac_token_bytes(tok, id, &p);
    sbuf t = {0};
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)p[i + k] >> 6) == 2;
        if (ok) {
            sb_add(&t, p + i, len);
            i += len;
        } else {
            sb_str(&t, "\xef\xbf\xbd");
            i++;
        }
    }
    sb_str(b, with_bytes ? "\"token\":" : "");
    sb_json_str(b, t.p ? t.p : "", t.n);
    b->oom |= t.oom;
    free(t.p);
    if (with_bytes) {
        sb_str(b, ",\"bytes\":[");
        for (size_t i = 0; i < n; i++) sb_printf(b, "%s%u", i ? "," : "", (unsigned char)p[i]);
        sb_str(b, "]");
    }
}

static double finite_lp(float x) { return isfinite(x) ? x : -9999.0; }

/* The logprobs object of n records: chat's {"content": [...]} or completions' parallel lists. */
static void logprobs_json(sbuf *b, const llamac_tokenizer *tok, bool chat, const lp_rec *rec, size_t n, size_t *text_offset) {
    if (chat) {
        sb_str(b, "{\"content\":[");
        for (size_t i = 0; i < n; i++) {
            sb_str(b, i ? ",{" : "{");
            token_json(b, tok, rec[i].token, true);
            sb_printf(b, ",\"logprob\":%.9g,\"top_logprobs\":[", finite_lp(rec[i].logprob));
            for (int k = 0; k < rec[i].n_top; k++) {
                sb_str(b, k ? ",{" : "{");
                token_json(b, tok, rec[i].top_ids[k], true);
                sb_printf(b, ",\"logprob\":%.9g}", finite_lp(rec[i].top_logprobs[k]));
            }
            sb_str(b, "]}");
        }
        sb_str(b, "],\"refusal\":null}");
        return;
    }
    sb_str(b, "{\"tokens\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) sb_str(b, ",");
        token_json(b, tok, rec[i].token, false);
    }
    sb_str(b, "],\"token_logprobs\":[");
    for (size_t i = 0; i < n; i++) sb_printf(b, "%s%.9g", i ? "," : "", finite_lp(rec[i].logprob));
    sb_str(b, "],\"top_logprobs\":[");
    for (size_t i = 0; i < n; i++) {
        sb_str(b, i ? ",{" : "{");
        for (int k = 0; k < rec[i].n_top; k++) {
            if (k) sb_str(b, ",");
            token_json(b, tok, rec[i].top_ids[k], false);
            sb_printf(b, ":%.9g", finite_lp(rec[i].top_logprobs[k]));
        }
        sb_str(b, "}");
    }
    /* byte offsets of the tokens in the completion's text */
    sb_str(b, "],\"text_offset\":[");
    for (size_t i = 0; i < n; i++) {
        const char *p;
        sb_printf(b, "%s%zu", i ? "," : "", *text_offset);
        *text_offset += llamac_token_bytes(tok, rec[i].token, &p);
    }
    sb_str(b, "]}");
}

static const char *finish_name(int f) { return f == LLAMAC_FINISH_LENGTH ? "length" : "stop"; }

/* Queues r for the engine thread and waits until it is submitted. Returns false (e set) when the
 * server is draining, the queue is full, or the engine refused it. */
static bool hand_over(server *s, greq *r, api_err *e) {
    pthread_mutex_lock(&s->mu);
    if (s->draining) {
        pthread_mutex_unlock(&s->mu);
        return fail(e, 503, NULL, "the server is shutting down");
    }
    int limit = s->max_seqs + s->p.max_queue;
    if (s->n_live + r->n_choices > limit) {
        pthread_mutex_unlock(&s->mu);
        e->code = "queue_full";
        return fail(e, 429, NULL, "the server is busy: %d requests are queued or running (at most %d); retry later", s->n_live, limit);
    }
    /* the active list and the id map must never need to grow in the engine thread */
    if (s->n_active + 1 > s->cap_active) {
        pthread_mutex_unlock(&s->mu);
        return fail(e, 500, NULL, "internal error: active list full");
    }
    r->t_arrival = now_s();
    r->refs = 2;
    s->n_live += r->n_choices;
    s->n_open++;
    r->next_in = NULL;
    if (s->in_tail) s->in_tail->next_in = r;
    else s->in_head = r;
    s->in_tail = r;
    pthread_cond_signal(&s->engine_cv);
    while (!r->submitted) pthread_cond_wait(&r->cv, &s->mu);
    bool ok = !r->failed;
    if (!ok) {
        fail(e, 400, NULL, "%s", r->error);
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void response_id(server *s, greq *r) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->created = (long)ts.tv_sec;
    uint64_t k = __atomic_add_fetch(&s->req_counter, 1, __ATOMIC_RELAXED);
    snprintf(r->id, sizeof r->id, "%s-%lx%09lx%llx", r->chat ? "chatcmpl" : "cmpl", (long)ts.tv_sec, ts.tv_nsec, (unsigned long long)k);
}

static enum MHD_Result finish_plain(conn *c, struct MHD_Connection *con) {
    server *s = c->s;
    greq *r = c->req;
    /* wait for every choice, watching the socket: a client that leaves cancels its request */
    pthread_mutex_lock(&s->mu);
    while (r->n_done < r->n_choices) {
        timed_wait(s, &r->cv, WAIT_SLICE_MS);
        if (r->n_done == r->n_choices) break;
        pthread_mutex_unlock(&s->mu);
        bool gone = peer_gone(c->fd);
        pthread_mutex_lock(&s->mu);
        if (gone || s->stopping) {
            cancel_locked(s, r);
            pthread_mutex_unlock(&s->mu);
            return MHD_NO;
        }
    }
    bool failed = r->failed, cancelled = false;
    for (int i = 0; i < r->n_choices; i++) cancelled |= r->ch[i].finish == LLAMAC_FINISH_CANCELLED;
    pthread_mutex_unlock(&s->mu);
    if (failed || cancelled)
        return send_error_f(c, con, failed ? 500 : 503, NULL, NULL, "%s", failed ? r->error : "the request was cancelled (the server is shutting down)");
    sbuf b = {0};
    sb_printf(&b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", r->id, r->chat ? "chat.completion" : "text_completion",
              r->created);
    sb_json_str(&b, s->p.model_name, strlen(s->p.model_name));
    sb_printf(&b, ",\"system_fingerprint\":\"%s\",\"choices\":[", s->fingerprint);
    for (int i = 0; i < r->n_choices; i++) {
        const choice *ch = &r->ch[i];
        sb_printf(&b, "%s{\"index\":%d,", i ? "," : "", ch->index);
        if (r->chat) {
            sb_str(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
            sb_json_str(&b, ch->out.p ? ch->out.p : "", ch->out.n);
            sb_str(&b, "},");
        } else {
            sb_str(&b, "\"text\":");
            if (r->echo) {
                sbuf t = {0};
                sb_str(&t, r->pr[ch->prompt_i].text ? r->pr[ch->prompt_i].text : "");
                sb_add(&t, ch->out.p ? ch->out.p : "", ch->out.n);
                sb_json_str(&b, t.p ? t.p : "", t.n);
                b.oom |= t.oom;
                free(t.p);
            } else {
                sb_json_str(&b, ch->out.p ? ch->out.p : "", ch->out.n);
            }
            sb_str(&b, ",");
        }
        sb_str(&b, "\"logprobs\":");
        if (r->base.logprobs) {
            size_t off = 0;
            logprobs_json(&b, s->tok, r->chat, (const lp_rec *)ch->lp.p, ch->lp.n / sizeof(lp_rec), &off);
        } else {
            sb_str(&b, "null");
        }
        sb_printf(&b, ",\"finish_reason\":\"%s\"}", finish_name(ch->finish));
    }
    sb_str(&b, "],\"usage\":");
    usage_json(&b, r);
    sb_str(&b, "}");
    enum MHD_Result res = b.oom ? send_error_f(c, con, 500, NULL, NULL, "out of memory") : send_json(c, con, 200, &b);
    free(b.p);
    return res;
}

/* One SSE event for choice i: text and/or its finish reason. */
static void sse_chunk(conn *c, int i, const char *text, size_t n, const char *finish, bool role, const sbuf *lp) {
    greq *r = c->req;
    sbuf *b = &c->out;
    sb_str(b, "data: ");
    sb_str(b, c->prefix);
    sb_printf(b, "{\"index\":%d,", r->ch[i].index);
    if (r->chat) {
        sb_str(b, "\"delta\":{");
        if (role) sb_str(b, "\"role\":\"assistant\",\"content\":\"\"");
        else if (text) {
            sb_str(b, "\"content\":");
            sb_json_str(b, text, n);
        }
        sb_str(b, "},");
    } else {
        sb_str(b, "\"text\":");
        sb_json_str(b, text ? text : "", text ? n : 0);
        sb_str(b, ",");
    }
    sb_str(b, "\"logprobs\":");
    if (lp && r->base.logprobs) logprobs_json(b, c->s->tok, r->chat, (const lp_rec *)lp->p, lp->n / sizeof(lp_rec), &c->text_offset[i]);
    else sb_str(b, "null");
    sb_str(b, ",\"finish_reason\":");
    if (finish) sb_printf(b, "\"%s\"", finish);
    else sb_str(b, "null");
    sb_str(b, "}]");
    if (r->include_usage) sb_str(b, ",\"usage\":null");
    sb_str(b, "}\n\n");
}

/* Formats what the engine released since the last call into c->out. Returns false when the stream
 * cannot go on (the request failed or was cancelled). */
static bool sse_fill(conn *c) {
    server *s = c->s;
    greq *r = c->req;
    if (!c->started) {
        c->started = true;
        for (int i = 0; i < r->n_choices; i++) {
            if (r->chat) sse_chunk(c, i, NULL, 0, NULL, true, NULL);
            else if (r->echo) {
                const char *t = r->pr[r->ch[i].prompt_i].text;
                sse_chunk(c, i, t, strlen(t), NULL, false, NULL);
            }
        }
    }
    bool all_done, failed;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < r->n_choices; i++) {
        choice *ch = &r->ch[i];
        if (ch->out.n) {
            sb_add(&c->take[i], ch->out.p, ch->out.n);
            ch->out.n = 0;
        }
        if (ch->lp.n) {
            sb_add(&c->take_lp[i], ch->lp.p, ch->lp.n);
            ch->lp.n = 0;
        }
        c->fin[i] = ch->done ? ch->finish : LLAMAC_RUNNING;
    }
    all_done = r->n_done == r->n_choices;
    failed = r->failed;
    pthread_mutex_unlock(&s->mu);
    if (failed) return false;
    for (int i = 0; i < r->n_choices; i++) {
        if (c->take[i].n || c->take_lp[i].n) {
            sse_chunk(c, i, c->take[i].p ? c->take[i].p : "", c->take[i].n, NULL, false, &c->take_lp[i]);
            c->take[i].n = 0;
            c->take_lp[i].n = 0;
        }
        if (c->fin[i] != LLAMAC_RUNNING && !c->fin_sent[i]) {
            if (c->fin[i] == LLAMAC_FINISH_CANCELLED) return false;
            c->fin_sent[i] = true;
            sse_chunk(c, i, NULL, 0, finish_name(c->fin[i]), false, NULL);
        }
    }
    if (all_done) {
        if (r->include_usage) {
            sb_str(&c->out, "data: ");
            sb_str(&c->out, c->prefix);
            c->out.n--; /* "choices":[ → "choices":[] */
            sb_str(&c->out, "[],\"usage\":");
            usage_json(&c->out, r);
            sb_str(&c->out, "}\n\n");
        }
        sb_str(&c->out, "data: [DONE]\n\n");
        c->finished = true;
    }
    return !c->out.oom;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    conn *c = cls;
    server *s = c->s;
    for (;;) {
        if (c->out_off < c->out.n) {
            size_t k = c->out.n - c->out_off < max ? c->out.n - c->out_off : max;
            memcpy(buf, c->out.p + c->out_off, k);
            c->out_off += k;
            c->last_write = now_s();
            return (ssize_t)k;
        }
        c->out.n = c->out_off = 0;
        if (c->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!sse_fill(c)) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (c->out.n) continue;
        pthread_mutex_lock(&s->mu);
        bool idle = true;
        for (int i = 0; i < c->req->n_choices && idle; i++) idle = !c->req->ch[i].out.n && !c->req->ch[i].lp.n && !(c->req->ch[i].done && !c->fin_sent[i]);
        if (idle && !s->stopping) timed_wait(s, &c->req->cv, WAIT_SLICE_MS);
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping || peer_gone(c->fd)) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (now_s() - c->last_write >= s->p.keepalive) sb_str(&c->out, ": keep-alive\n\n");
    }
}

static enum MHD_Result start_stream(conn *c, struct MHD_Connection *con) {
    server *s = c->s;
    greq *r = c->req;
    int n = r->n_choices;
    c->take = calloc((size_t)n, sizeof *c->take);
    c->take_lp = calloc((size_t)n, sizeof *c->take_lp);
    c->text_offset = calloc((size_t)n, sizeof *c->text_offset);
    c->fin_sent = calloc((size_t)n, sizeof *c->fin_sent);
    c->fin = calloc((size_t)n, sizeof *c->fin);
    sbuf p = {0};
    sb_printf(&p, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", r->id, r->chat ? "chat.completion.chunk" : "text_completion",
              r->created);
    sb_json_str(&p, s->p.model_name, strlen(s->p.model_name));
    sb_printf(&p, ",\"system_fingerprint\":\"%s\",\"choices\":[", s->fingerprint);
    c->prefix = p.p;
    if (!c->take || !c->take_lp || !c->text_offset || !c->fin_sent || !c->fin || p.oom) return MHD_NO;
    c->last_write = now_s();
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, c, NULL);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* nginx: pass events through at once */
    add_common_headers(c, resp);
    enum MHD_Result ok = MHD_queue_response(con, 200, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) {
        pthread_mutex_lock(&s->mu);
        s->http_status[200]++;
        pthread_mutex_unlock(&s->mu);
    }
    return ok;
}

static enum MHD_Result handle_generation(conn *c, struct MHD_Connection *con, bool chat) {
    server *s = c->s;
    api_err e = {0};
    greq *r = generation_from_body(s, c->body.p, c->body.n, chat, &e);
    if (!r) return send_error(c, con, &e);
    response_id(s, r);
    if (!hand_over(s, r, &e)) {
        if (r->refs == 1) greq_free(r); /* never queued */
        else c->req = r;                /* the engine thread lets go of it by itself */
        return send_error(c, con, &e);
    }
    c->req = r;
    return r->stream ? start_stream(c, con) : finish_plain(c, con);
}

/* ---- other endpoints --------------------------------------------------------------------------- */

static enum MHD_Result handle_models(conn *c, struct MHD_Connection *con, const char *id) {
    server *s = c->s;
    if (id && strcmp(id, s->p.model_name))
        return send_error_f(c, con, 404, "model", "model_not_found", "The model '%s' does not exist", id);
    sbuf b = {0};
    if (!id) sb_str(&b, "{\"object\":\"list\",\"data\":[");
    sb_str(&b, "{\"id\":");
    sb_json_str(&b, s->p.model_name, strlen(s->p.model_name));
    sb_printf(&b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"llamac\",\"root\":", s->started);
    sb_json_str(&b, s->p.model_name, strlen(s->p.model_name));
    sb_printf(&b, ",\"parent\":null,\"max_model_len\":%d}", s->n_ctx);
    if (!id) sb_str(&b, "]}");
    enum MHD_Result r = send_json(c, con, 200, &b);
    free(b.p);
    return r;
}

/* /tokenize: the answer's JSON into out, or false with e set. */
static bool tokenize_answer(server *s, const char *body, size_t n, sbuf *out, api_err *e) {
    llamac_error jerr = {{0}};
    cJSON *o = json_parse_strict(body ? body : "", n, &jerr);
    if (!o) return fail(e, 400, NULL, "%s", jerr.message);
    static const char *const keys[] = {"model", "prompt", "messages", "add_special_tokens", "add_generation_prompt", NULL};
    prompt p = {0};
    const cJSON *prompt_v = cJSON_GetObjectItemCaseSensitive(o, "prompt"), *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    const cJSON *v;
    bool ok = known_keys(o, keys, e) && check_model(s, o, e);
    if (ok && !!prompt_v == !!msgs) ok = fail(e, 400, "prompt", "give 'prompt' (a string) or 'messages', one of them");
    if (ok && prompt_v) {
        bool special = true;
        if ((v = field(o, "add_special_tokens"))) {
            if (!cJSON_IsBool(v)) ok = fail(e, 400, "add_special_tokens", "'add_special_tokens' must be a boolean");
            special = cJSON_IsTrue(v);
        }
        if (ok && !cJSON_IsString(prompt_v)) ok = fail(e, 400, "prompt", "'prompt' must be a string");
        if (ok) ok = text_prompt(s, prompt_v->valuestring, special, &p, e);
    } else if (ok) {
        bool gen = true;
        if ((v = field(o, "add_generation_prompt"))) {
            if (!cJSON_IsBool(v)) ok = fail(e, 400, "add_generation_prompt", "'add_generation_prompt' must be a boolean");
            gen = cJSON_IsTrue(v);
        }
        if (ok) ok = chat_prompt(s, msgs, gen, &p, e);
    }
    cJSON_Delete(o);
    if (ok) {
        sb_printf(out, "{\"count\":%d,\"max_model_len\":%d,\"tokens\":[", p.n, s->n_ctx);
        for (int i = 0; i < p.n; i++) sb_printf(out, "%s%d", i ? "," : "", (int)p.ids[i]);
        sb_str(out, "]}");
    }
    free(p.ids);
    free(p.text);
    return ok;
}

/* /detokenize: the answer's JSON into out, or false with e set. */
static bool detokenize_answer(server *s, const char *body, size_t n, sbuf *out, api_err *e) {
    llamac_error jerr = {{0}};
    cJSON *o = json_parse_strict(body ? body : "", n, &jerr);
    if (!o) return fail(e, 400, NULL, "%s", jerr.message);
    static const char *const keys[] = {"model", "tokens", NULL};
    prompt p = {0};
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    bool ok = known_keys(o, keys, e) && check_model(s, o, e);
    if (ok && !cJSON_IsArray(t)) ok = fail(e, 400, "tokens", "'tokens' must be an array of token ids");
    if (ok) ok = id_prompt(s, t, "tokens", &p, e);
    cJSON_Delete(o);
    char *text = ok ? ids_text(s, p.ids, p.n) : NULL;
    if (ok && !text) ok = fail(e, 500, NULL, "out of memory");
    if (ok) {
        sb_str(out, "{\"prompt\":");
        sb_json_str(out, text, strlen(text));
        sb_str(out, "}");
    }
    free(text);
    free(p.ids);
    return ok;
}

static enum MHD_Result handle_tokenize(conn *c, struct MHD_Connection *con, bool detokenize) {
    api_err e = {0};
    sbuf b = {0};
    bool ok = detokenize ? detokenize_answer(c->s, c->body.p, c->body.n, &b, &e) : tokenize_answer(c->s, c->body.p, c->body.n, &b, &e);
    enum MHD_Result res = ok ? send_json(c, con, 200, &b) : send_error(c, con, &e);
    free(b.p);
    return res;
}

static void label_value(sbuf *b, const char *v) {
    for (; *v; v++) {
        if (*v == '\\' || *v == '"') sb_printf(b, "\\%c", *v);
        else if (*v == '\n') sb_str(b, "\\n");
        else sb_add(b, v, 1);
    }
}

static void metric_head(sbuf *b, const char *name, const char *type, const char *help) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric_value(sbuf *b, const char *name, const char *model, const char *extra, double v) {
    sb_printf(b, "%s{model_name=\"", name);
    label_value(b, model);
    sb_printf(b, "\"%s} %.17g\n", extra ? extra : "", v);
}

static void metric_histo(sbuf *b, const char *name, const char *help, const histo *h, const char *model) {
    metric_head(b, name, "histogram", help);
    uint64_t cum = 0;
    char bucket[128], le[64];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    for (int i = 0; i <= h->n; i++) {
        cum += h->count[i];
        if (i < h->n) snprintf(le, sizeof le, ",le=\"%g\"", h->le[i]);
        else snprintf(le, sizeof le, ",le=\"+Inf\"");
        metric_value(b, bucket, model, le, (double)cum);
    }
    snprintf(bucket, sizeof bucket, "%s_sum", name);
    metric_value(b, bucket, model, NULL, h->sum);
    snprintf(bucket, sizeof bucket, "%s_count", name);
    metric_value(b, bucket, model, NULL, (double)h->total);
}

static enum MHD_Result handle_metrics(conn *c, struct MHD_Connection *con) {
    server *s = c->s;
    sbuf b = {0};
    const char *mn = s->p.model_name;
    pthread_mutex_lock(&s->mu);
    llamac_engine_stats st = s->st;
    /* queued but not yet in the engine count as waiting */
    int queued = 0;
    for (greq *r = s->in_head; r; r = r->next_in) queued += r->n_choices;
    metric_head(&b, "vllm:num_requests_running", "gauge", "Number of requests in model execution batches.");
    metric_value(&b, "vllm:num_requests_running", mn, NULL, st.running);
    metric_head(&b, "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.");
    metric_value(&b, "vllm:num_requests_waiting", mn, NULL, st.waiting + queued);
    metric_head(&b, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.");
    metric_value(&b, "vllm:kv_cache_usage_perc", mn, NULL, st.kv_blocks ? (double)st.kv_blocks_used / st.kv_blocks : 0);
    metric_head(&b, "vllm:prefix_cache_queries", "counter", "Prefix cache queries, in terms of number of queried tokens.");
    metric_value(&b, "vllm:prefix_cache_queries_total", mn, NULL, (double)st.prompt_tokens);
    metric_head(&b, "vllm:prefix_cache_hits", "counter", "Prefix cache hits, in terms of number of cached tokens.");
    metric_value(&b, "vllm:prefix_cache_hits_total", mn, NULL, (double)st.prompt_tokens_cached);
    metric_head(&b, "vllm:prompt_tokens", "counter", "Number of prefill tokens processed.");
    metric_value(&b, "vllm:prompt_tokens_total", mn, NULL, (double)st.prompt_tokens);
    metric_head(&b, "vllm:generation_tokens", "counter", "Number of generation tokens processed.");
    metric_value(&b, "vllm:generation_tokens_total", mn, NULL, (double)st.generated_tokens);
    metric_head(&b, "vllm:num_preemptions", "counter", "Cumulative number of preemption from the engine.");
    metric_value(&b, "vllm:num_preemptions_total", mn, NULL, (double)st.preemptions);
    metric_head(&b, "vllm:request_success", "counter", "Count of successfully processed requests.");
    static const char *const reasons[3] = {"stop", "length", "abort"};
    for (int i = 0; i < 3; i++) {
        char l[64];
        snprintf(l, sizeof l, ",finished_reason=\"%s\"", reasons[i]);
        metric_value(&b, "vllm:request_success_total", mn, l, (double)s->success[i]);
    }
    metric_histo(&b, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", &s->ttft, mn);
    metric_histo(&b, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", &s->itl, mn);
    metric_histo(&b, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", &s->e2e, mn);
    metric_histo(&b, "vllm:request_queue_time_seconds",
                 "Histogram of time the request waited before its first token step (queue and prefill) in seconds.", &s->queue, mn);
    metric_head(&b, "llamac:kv_cache_blocks_used", "gauge", "KV cache blocks in use by running requests.");
    metric_value(&b, "llamac:kv_cache_blocks_used", mn, NULL, st.kv_blocks_used);
    metric_head(&b, "llamac:kv_cache_blocks", "gauge", "KV cache blocks in the pool.");
    metric_value(&b, "llamac:kv_cache_blocks", mn, NULL, st.kv_blocks);
    metric_head(&b, "llamac:http_requests", "counter", "HTTP responses by status code.");
    for (int code = 100; code < 600; code++)
        if (s->http_status[code]) {
            char l[64];
            snprintf(l, sizeof l, ",status=\"%d\"", code);
            metric_value(&b, "llamac:http_requests_total", mn, l, (double)s->http_status[code]);
        }
    pthread_mutex_unlock(&s->mu);
    enum MHD_Result r = b.oom ? MHD_NO : send_buf(c, con, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.n, NULL, NULL);
    free(b.p);
    return r;
}

/* ---- routing ----------------------------------------------------------------------------------- */

typedef enum route {
    R_NONE,
    R_HEALTH,
    R_METRICS,
    R_MODELS,
    R_MODEL,
    R_CHAT,
    R_COMPLETIONS,
    R_TOKENIZE,
    R_DETOKENIZE
} route;

static route find_route(const char *url, const char **allow) {
    static const struct {
        const char *path;
        route r;
        const char *allow;
    } routes[] = {{"/health", R_HEALTH, "GET"},
                  {"/metrics", R_METRICS, "GET"},
                  {"/v1/models", R_MODELS, "GET"},
                  {"/v1/chat/completions", R_CHAT, "POST"},
                  {"/v1/completions", R_COMPLETIONS, "POST"},
                  {"/tokenize", R_TOKENIZE, "POST"},
                  {"/detokenize", R_DETOKENIZE, "POST"}};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) {
            *allow = routes[i].allow;
            return routes[i].r;
        }
    if (!strncmp(url, "/v1/models/", 11) && url[11]) {
        *allow = "GET";
        return R_MODEL;
    }
    return R_NONE;
}

static const char *cors_match(server *s, const char *origin) {
    if (!s->p.cors_origins || !origin) return NULL;
    const char *list = s->p.cors_origins;
    size_t n = strlen(origin);
    while (*list) {
        const char *end = strchr(list, ',');
        size_t len = end ? (size_t)(end - list) : strlen(list);
        while (len && *list == ' ') list++, len--;
        while (len && list[len - 1] == ' ') len--;
        if (len == 1 && *list == '*') return "*";
        if (len == n && !memcmp(list, origin, n)) return origin;
        if (!end) break;
        list = end + 1;
    }
    return NULL;
}

static bool authorized(server *s, struct MHD_Connection *con) {
    if (!s->p.api_key) return true;
    const char *h = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    while (*h == ' ') h++;
    return secret_equal(h, strlen(h), s->p.api_key);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url, const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    conn *c = *con_cls;
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return MHD_NO;
        c->s = s;
        c->fd = -1;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) c->fd = ci->connect_fd;
        c->origin = cors_match(s, MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Origin"));
        *con_cls = c;
        /* decisions that need no body are made now: the body is then never read */
        const char *allow = NULL;
        route r = find_route(url, &allow);
        bool post = !strcmp(method, "POST");
        if (!strcmp(method, "OPTIONS") && r != R_NONE && c->origin) {
            struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            if (!resp) return MHD_NO;
            add_common_headers(c, resp);
            MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
            MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
            MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
            enum MHD_Result ok = MHD_queue_response(con, 204, resp);
            MHD_destroy_response(resp);
            return ok;
        }
        if (r == R_NONE) return send_error_f(c, con, 404, NULL, NULL, "Not found: %s %s", method, url);
        if (strcmp(method, allow) && !(r != R_NONE && !strcmp(method, "HEAD") && !strcmp(allow, "GET"))) {
            snprintf(c->early_msg, sizeof c->early_msg, "%s", allow);
            return send_error_f(c, con, 405, NULL, NULL, "Method %s not allowed on %s (use %s)", method, url, allow);
        }
        if (r != R_HEALTH && r != R_METRICS && !authorized(s, con))
            return send_error_f(c, con, 401, NULL, "invalid_api_key", "Incorrect or missing API key (Authorization: Bearer KEY)");
        if (post) {
            const char *ct = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Type");
            if (ct && (strncasecmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';' && ct[16] != ' ')))
                return send_error_f(c, con, 415, NULL, NULL, "Content-Type must be application/json (got '%.*s')",
                                    (int)utf8_whole(ct, strnlen(ct, 100)), ct);
            const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
            if (cl) {
                char *end;
                errno = 0;
                unsigned long long len = strtoull(cl, &end, 10);
                if (errno || *end || len > s->p.max_body)
                    return send_error_f(c, con, 413, NULL, NULL, "the request body is larger than %zu bytes", s->p.max_body);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->too_big || c->body.n + n > c->s->p.max_body) {
            /* a chunked body over the limit: read and dropped up to a point, then the connection goes */
            c->too_big = true;
            c->discarded += n;
            return c->discarded > 16 * c->s->p.max_body + (1u << 20) ? MHD_NO : MHD_YES;
        }
        sb_add(&c->body, upload, n);
        return c->body.oom ? MHD_NO : MHD_YES;
    }
    if (c->too_big) return send_error_f(c, con, 413, NULL, NULL, "the request body is larger than %zu bytes", s->p.max_body);
    const char *allow = NULL;
    switch (find_route(url, &allow)) {
    case R_HEALTH: {
        pthread_mutex_lock(&s->mu);
        bool draining = s->draining;
        pthread_mutex_unlock(&s->mu);
        if (draining) return send_error_f(c, con, 503, NULL, NULL, "the server is shutting down");
        return send_buf(c, con, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL, NULL);
    }
    case R_METRICS: return handle_metrics(c, con);
    case R_MODELS: return handle_models(c, con, NULL);
    case R_MODEL: return handle_models(c, con, url + 11);
    case R_CHAT: return handle_generation(c, con, true);
    case R_COMPLETIONS: return handle_generation(c, con, false);
    case R_TOKENIZE: return handle_tokenize(c, con, false);
    case R_DETOKENIZE: return handle_tokenize(c, con, true);
    default: return send_error_f(c, con, 404, NULL, NULL, "Not found");
    }
}

/* The request is over (answered, or the connection broke): a generation still running is
 * cancelled, and the connection thread lets go of it. */
static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)con;
    (void)toe;
    server *s = cls;
    conn *c = *con_cls;
    if (!c) return;
    *con_cls = NULL;
    greq *dead = NULL;
    if (c->req) {
        pthread_mutex_lock(&s->mu);
        cancel_locked(s, c->req);
        dead = greq_unref(c->req);
        s->n_open--;
        pthread_mutex_unlock(&s->mu);
    }
    if (c->take)
        for (int i = 0; i < c->req->n_choices; i++) free(c->take[i].p);
    if (c->take_lp)
        for (int i = 0; i < c->req->n_choices; i++) free(c->take_lp[i].p);
    free(c->take_lp);
    free(c->text_offset);
    greq_free(dead);
    free(c->take);
    free(c->fin_sent);
    free(c->fin);
    free(c->prefix);
    free(c->out.p);
    free(c->body.p);
    free(c);
}

/* ---- lifecycle --------------------------------------------------------------------------------- */

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    server *s = cls;
    if (!s->p.log) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    s->p.log(s->p.ctx, line);
}

/* The ids clients may name: those both the tokenizer and the model's output know. */
static int served_vocab(const llamac_model *model) {
    llamac_model_info info;
    llamac_model_get_info(model, &info);
    int n = llamac_tokenizer_n_vocab(llamac_model_tokenizer(model));
    return info.n_vocab < n ? info.n_vocab : n;
}

int llc_serve(const llamac_model *model, const llc_server_params *params, llamac_error *err) {
    server *s = calloc(1, sizeof *s);
    int rc = -1;
    bool mu_init = false, engine_started = false;
    pthread_t engine_thread;
    struct addrinfo *ai = NULL;
    MHD_socket quiesced = MHD_INVALID_SOCKET;
    if (!s) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return -1;
    }
    /* SIGTERM and SIGINT go to this thread's sigwait: every thread started from here on (the forward
     * pass's workers, the engine's, MHD's) blocks them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->m = model;
    s->tok = llamac_model_tokenizer(model);
    s->p = *params;
    if (!s->p.host) s->p.host = "127.0.0.1";
    if (s->p.keepalive <= 0) s->p.keepalive = 15;
    if (!s->p.max_body) s->p.max_body = 8u << 20;
    if (s->p.max_connections <= 0) s->p.max_connections = 1024;
    if (!s->p.model_name || !s->p.model_name[0]) {
        snprintf(err->message, sizeof err->message, "no model name");
        goto done;
    }
    if (s->p.api_key && !s->p.api_key[0]) {
        snprintf(err->message, sizeof err->message, "the API key is empty");
        goto done;
    }
    if (!(s->e = llamac_engine_create(model, &s->p.engine, err))) goto done;
    llamac_engine_get_stats(s->e, &s->st);
    s->n_ctx = s->st.n_ctx;
    s->n_vocab = served_vocab(model);
    {
        llamac_model_info info;
        llamac_model_get_info(model, &info);
        /* what answers depend on besides the request: the weights' shape and the KV cache's type */
        uint64_t h = 1469598103934665603ull;
        const char *parts[] = {info.name ? info.name : "", info.weight_type ? info.weight_type : "",
                               llamac_kv_type_name(s->p.engine.kv_type)};
        for (int i = 0; i < 3; i++)
            for (const char *q = parts[i]; *q; q++) h = (h ^ (unsigned char)*q) * 1099511628211ull;
        h = (h ^ info.n_params) * 1099511628211ull;
        snprintf(s->fingerprint, sizeof s->fingerprint, "fp_llamac_%012llx", (unsigned long long)(h & 0xffffffffffffull));
    }
    s->max_seqs = s->p.engine.max_seqs ? s->p.engine.max_seqs : 64;
    if (s->p.max_queue < 0) s->p.max_queue = 0;
    int limit = s->max_seqs + s->p.max_queue;
    s->cap_active = limit;
    s->map_cap = 16;
    while (s->map_cap < 2 * limit) s->map_cap *= 2;
    s->active = calloc((size_t)s->cap_active, sizeof *s->active);
    s->map = calloc((size_t)s->map_cap, sizeof *s->map);
    s->map_key = calloc((size_t)s->map_cap, sizeof *s->map_key);
    if (!s->active || !s->map || !s->map_key) {
        snprintf(err->message, sizeof err->message, "out of memory");
        goto done;
    }
    s->ttft = (histo){.le = b_ttft, .n = NB(b_ttft)};
    s->itl = (histo){.le = b_itl, .n = NB(b_itl)};
    s->e2e = (histo){.le = b_req, .n = NB(b_req)};
    s->queue = (histo){.le = b_req, .n = NB(b_req)};
    s->started = (long)time(NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&s->cattr);
    pthread_condattr_setclock(&s->cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->engine_cv, &s->cattr);
    mu_init = true;


    if (pthread_create(&engine_thread, NULL, engine_main, s)) {
        snprintf(err->message, sizeof err->message, "cannot start the engine thread");
        goto done;
    }
    engine_started = true;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", s->p.port);
    int gai = getaddrinfo(s->p.host, port_s, &hints, &ai);
    if (gai) {
        snprintf(err->message, sizeof err->message, "cannot resolve host '%s': %s", s->p.host, gai_strerror(gai));
        goto done;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)s->p.port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)s->p.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_THREAD_STACK_SIZE,
                            (size_t)(512 * 1024), MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)512, MHD_OPTION_END);
    if (!s->d) {
        snprintf(err->message, sizeof err->message, "cannot listen on %s port %d: %s", s->p.host, s->p.port,
                 errno ? strerror(errno) : "libmicrohttpd refused to start");
        goto done;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : s->p.port;
    if (s->p.on_ready) s->p.on_ready(s->p.ctx, s->p.host, port);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    s_log(s, "received %s: draining (at most %.0f s)", sig == SIGINT ? "SIGINT" : "SIGTERM", s->p.drain_timeout);
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
    quiesced = MHD_quiesce_daemon(s->d); /* no new connections; open ones carry on */
    double deadline = now_s() + s->p.drain_timeout;
    for (bool cancelled = false;;) {
        pthread_mutex_lock(&s->mu);
        bool busy = s->n_open > 0 || s->n_live > 0;
        if (busy && !cancelled && now_s() >= deadline) {
            cancelled = true;
            for (greq *r = s->in_head; r; r = r->next_in) r->cancel = true;
            for (int i = 0; i < s->n_active; i++) cancel_locked(s, s->active[i]);
            s->n_cancel++;
            pthread_cond_signal(&s->engine_cv);
            deadline = now_s() + 5; /* the cancelled requests' connections get this long to close */
        } else if (busy && cancelled && now_s() >= deadline) {
            busy = false;
        }
        pthread_mutex_unlock(&s->mu);
        if (!busy) break;
        /* a second signal: no more waiting for the running requests */
        struct timespec ts = {0, 20 * 1000000L};
        if (sigtimedwait(&sigs, NULL, &ts) > 0 && !cancelled) deadline = now_s();
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    MHD_stop_daemon(s->d);
    s->d = NULL;
    rc = 0;
done:
    if (s->d) MHD_stop_daemon(s->d);
    if (quiesced != MHD_INVALID_SOCKET) close(quiesced);
    if (engine_started) {
        pthread_mutex_lock(&s->mu);
        s->quit = true;
        /* anything still in the engine (a connection that never let go) is cancelled now */
        for (int i = 0; i < s->n_active; i++) {
            greq *r = s->active[i];
            for (int k = 0; k < r->n_choices; k++)
                if (!r->ch[k].done && r->ch[k].eid >= 0) llamac_engine_cancel(s->e, r->ch[k].eid);
        }
        pthread_cond_signal(&s->engine_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(engine_thread, NULL);
    }
    if (ai) freeaddrinfo(ai);
    llamac_engine_free(s->e);
    free(s->active);
    free(s->map);
    free(s->map_key);
    if (mu_init) {
        pthread_cond_destroy(&s->engine_cv);
        pthread_condattr_destroy(&s->cattr);
        pthread_mutex_destroy(&s->mu);
    }
    free(s);
    return rc;
}

int llc_server_interpret(const llamac_model *model, const char *model_name, int n_ctx, const char *path, const char *body,
                         size_t len, char **answer, void (*on_request)(void *ctx, const llamac_request *q, bool stream),
                         void *ctx) {
    *answer = NULL;
    server *s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->m = model;
    s->tok = llamac_model_tokenizer(model);
    s->p.model_name = model_name;
    s->n_ctx = n_ctx;
    s->n_vocab = served_vocab(model);
    pthread_condattr_init(&s->cattr);
    pthread_condattr_setclock(&s->cattr, CLOCK_MONOTONIC);
    api_err e = {0};
    sbuf b = {0};
    bool ok = false;
    const char *allow = NULL;
    route rt = find_route(path, &allow);
    if (rt == R_CHAT || rt == R_COMPLETIONS) {
        greq *r = generation_from_body(s, body, len, rt == R_CHAT, &e);
        if ((ok = r != NULL)) {
            for (int i = 0; i < r->n_choices; i++) {
                llamac_request q = choice_request(r, &r->ch[i]);
                on_request(ctx, &q, r->stream);
            }
            greq_free(r);
        }
    } else if (rt == R_TOKENIZE || rt == R_DETOKENIZE) {
        ok = rt == R_TOKENIZE ? tokenize_answer(s, body, len, &b, &e) : detokenize_answer(s, body, len, &b, &e);
    } else {
        fail(&e, 404, NULL, "Not found: POST %s", path);
    }
    pthread_condattr_destroy(&s->cattr);
    free(s);
    if (!ok) error_json(&b, &e);
    if (b.oom) {
        free(b.p);
        return -1;
    }
    *answer = b.p;
    return ok ? 200 : e.status;
}
