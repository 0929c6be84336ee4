/*
 * Continuous batching over the paged KV cache, as vLLM schedules it.
 *
 * A request is waiting (queued, or preempted) or running (admitted: it owns a block table in the pool).
 * Each step:
 *
 *  1. Plan. The step's token budget (step_tokens) goes first to the running sequences that decode (one
 *     token each), then to the running sequences still absorbing their prompt, oldest first, as chunks
 *     of at most what is left of the budget.
 *  2. Admit. While the budget, a sequence slot (max_seqs) and blocks remain, waiting requests join in
 *     arrival order: the prefix cache gives them the full blocks it holds of their tokens, and the
 *     first chunk must fit in the blocks no running sequence's planned chunk needs, with one block per
 *     running sequence to spare (so that the pool does not run dry at once). A request stops
 *     the admission when it does not fit (no overtaking by smaller ones); one whose prompt shares
 *     full blocks with a running sequence that has not computed them yet is held back a step, so a
 *     common prefix submitted many times at once is computed once and then read from the cache.
 *  3. Allocate, oldest first. When the pool cannot supply a sequence's blocks, the most recently
 *     submitted running sequence is preempted: its blocks are released (the full ones stay in the
 *     prefix cache), and it goes back to the waiting queue, keeping its generated tokens and its
 *     sampler, to recompute its tokens when it is admitted again. The oldest sequence is therefore
 *     never preempted while others run, so the engine always progresses; a sequence alone that still
 *     cannot grow (it outgrew the pool) finishes with LLAMAC_FINISH_LENGTH.
 *  4. One forward pass over all planned tokens (llc_forward_batch), logits only for the sequences
 *     whose chunk reaches their last known token.
 *  5. Sample, detokenize, match stop strings, finish (end of generation, max_tokens, the context),
 *     publish newly filled blocks to the prefix cache, and release finished sequences at once.
 *
 * Nothing is allocated per token except amortized growth of the requests' token lists, the held-back
 * text and the events.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "engine/engine.h"
#include "kv/kv_cache.h"
#include "model/forward.h"

typedef struct rq {
    int id;
    int32_t *tok;           /* prompt then generated ids */
    int n_prompt, n_gen, cap;
    int max_new;            /* most generated tokens */
    bool ignore_eog, admitted_once;
    int n_cached;           /* prompt tokens the prefix cache gave at the first admission */
    float presence, frequency;
    int32_t *bias_ids;
    float *bias;
    int n_bias;
    bool logprobs;
    int top_logprobs;
    llamac_sampler *smp;
    llamac_detokenizer dt;
    char **stop;
    size_t *stop_len;
    int n_stop;
    char *held;             /* decoded text not yet released (it might begin a stop string) */
    size_t n_held, cap_held;
    llc_kv_seq kv;
    int n_computed;         /* leading tokens whose K/V are in the pool */
    int chunk;              /* tokens planned for this step */
    bool done;              /* finished during this step */
} rq;

typedef struct rq_list {
    rq **v;
    int n, cap;
} rq_list;

struct llamac_engine {
    const llamac_model *m;
    const llamac_tokenizer *tok;
    int n_vocab, n_ctx, max_seqs, step_tokens, block_size, n_blocks;
    bool prefix_cache;
    llc_forward *fwd;
    llc_kv_pool *pool;
    rq_list waiting, running, cancelled; /* waiting and running sorted by id (= arrival) */
    int next_id;
    /* the step's batch, preallocated: step_tokens tokens, max_seqs sequences */
    int32_t *b_tok, *b_pos, *b_seq, *b_out;
    const int32_t **b_tables;
    rq **b_rq;
    float *logits;
    /* the step's events and their text */
    llamac_event *ev;
    size_t *ev_off;       /* each event's text as an offset into arena until the step ends */
    size_t n_ev, cap_ev;
    char *arena;
    size_t n_arena, cap_arena;
    char *piece;
    size_t piece_cap;
    float *adj;           /* logits after bias and penalties (n_vocab) */
    uint32_t *mark, stamp; /* tokens seen in this sampling (n_vocab), by stamp */
    llamac_engine_stats st;
    double waste_sum;
    uint64_t waste_n;
    llc_engine_logits_fn hook;
    void *hook_ctx;
    llc_engine_forward_fn fwd_fn;
    void *fwd_ctx;
};

/* ---- small containers ---- */

static bool list_reserve(rq_list *l, int n) {
    if (n <= l->cap) return true;
    int cap = l->cap ? l->cap : 16;
    while (cap < n) cap *= 2;
    rq **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) return false;
    l->v = v;
    l->cap = cap;
    return true;
}

/* Inserts r keeping the list sorted by id (capacity reserved by the caller). */
static void list_insert_sorted(rq_list *l, rq *r) {
    int i = l->n;
    while (i > 0 && l->v[i - 1]->id > r->id) {
        l->v[i] = l->v[i - 1];
        i--;
    }
    l->v[i] = r;
    l->n++;
}

static void list_remove_at(rq_list *l, int i) {
    memmove(l->v + i, l->v + i + 1, (size_t)(l->n - i - 1) * sizeof *l->v);
    l->n--;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool events_reserve(llamac_engine *e, size_t n) {
    if (n <= e->cap_ev) return true;
    size_t cap = e->cap_ev ? e->cap_ev : 64;
    while (cap < n) cap *= 2;
    llamac_event *ev = realloc(e->ev, cap * sizeof *ev);
    if (ev) e->ev = ev;
    size_t *off = realloc(e->ev_off, cap * sizeof *off);
    if (off) e->ev_off = off;
    if (!ev || !off) return false;
    e->cap_ev = cap;
    return true;
}

static void rq_free(llamac_engine *e, rq *r) {
    if (!r) return;
    llc_kv_seq_release(e->pool, &r->kv);
    llc_kv_seq_free(&r->kv);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->stop_len);
    free(r->held);
    free(r->tok);
    free(r->bias_ids);
    free(r->bias);
    llamac_sampler_free(r->smp);
    free(r);
}

static int known(const rq *r) { return r->n_prompt + r->n_gen; }

/* ---- creation ---- */

void llc_engine_set_logits_hook(llamac_engine *e, llc_engine_logits_fn fn, void *ctx) {
    e->hook = fn;
    e->hook_ctx = ctx;
}
void llc_engine_set_forward(llamac_engine *e, llc_engine_forward_fn fn, void *ctx) {
    e->fwd_fn = fn;
    e->fwd_ctx = ctx;
}

bool llc_engine_check(const llamac_engine *e, llamac_error *err) {
    if (!llc_kv_pool_check(e->pool, err)) return false;
    int bs = e->block_size;
    for (int i = 0; i < e->running.n; i++) {
        const rq *r = e->running.v[i];
        if (i > 0 && e->running.v[i - 1]->id >= r->id) return llc_fail(err, "running list out of order at %d", i);
        if (r->kv.n_tokens != r->n_computed) return llc_fail(err, "request %d: %d positions in the pool, %d computed", r->id, r->kv.n_tokens, r->n_computed);
        if (r->kv.n_blocks != (r->kv.n_tokens + bs - 1) / bs)
            return llc_fail(err, "request %d: %d blocks for %d positions", r->id, r->kv.n_blocks, r->kv.n_tokens);
        if (r->n_computed >= known(r)) return llc_fail(err, "request %d: nothing left to compute", r->id);
        for (int b = 0; b < r->kv.n_blocks; b++)
            if (r->kv.blocks[b] < 0 || r->kv.blocks[b] >= e->n_blocks || llc_kv_block_ref(e->pool, r->kv.blocks[b]) < 1)
                return llc_fail(err, "request %d: bad block %d at %d", r->id, r->kv.blocks[b], b);
    }
    if (e->running.n > e->max_seqs) return llc_fail(err, "%d sequences running, at most %d", e->running.n, e->max_seqs);
    for (int i = 0; i < e->waiting.n; i++) {
        const rq *r = e->waiting.v[i];
        if (i > 0 && e->waiting.v[i - 1]->id >= r->id) return llc_fail(err, "waiting list out of order at %d", i);
        if (r->kv.n_blocks || r->kv.n_tokens || r->n_computed) return llc_fail(err, "waiting request %d holds blocks", r->id);
    }
    if (e->running.n == 0 && llc_kv_n_used(e->pool) != 0)
        return llc_fail(err, "%d blocks in use with no sequence running", llc_kv_n_used(e->pool));
    return true;
}

int llc_engine_n_ctx(const llamac_engine *e) { return e->n_ctx; }
int llc_engine_max_seqs(const llamac_engine *e) { return e->max_seqs; }
int llc_engine_step_tokens(const llamac_engine *e) { return e->step_tokens; }

llamac_engine *llamac_engine_create(const llamac_model *model, const llamac_engine_params *params, llamac_error *err) {
    llamac_engine_params p = params ? *params : (llamac_engine_params){0};
    if (!model) {
        llc_fail(err, "no model");
        return NULL;
    }
    if (p.max_seqs < 0 || p.max_seqs > 65536) {
        llc_fail(err, "max_seqs must be in [1, 65536] (got %d)", p.max_seqs);
        return NULL;
    }
    if (p.n_ctx < 0 || p.n_ctx > (1 << 24)) {
        llc_fail(err, "context size must be in [1, 2^24] (got %d)", p.n_ctx);
        return NULL;
    }
    if (p.block_size < 0 || p.block_size > 4096) {
        llc_fail(err, "block size must be in [1, 4096] (got %d)", p.block_size);
        return NULL;
    }
    if (p.step_tokens < 0 || p.step_tokens > (1 << 20)) {
        llc_fail(err, "step_tokens must be in [1, 2^20] (got %d)", p.step_tokens);
        return NULL;
    }
    if (p.kv_tokens < 0) {
        llc_fail(err, "kv_tokens must be >= 0 (got %d)", p.kv_tokens);
        return NULL;
    }
    llc_forward_config c;
    if (!llc_forward_config_resolve(model, p.n_ctx, p.n_threads, p.kv_type, &c, err)) return NULL;
    llamac_model_info info;
    llamac_model_get_info(model, &info);
    int max_seqs = p.max_seqs ? p.max_seqs : 64;
    int n_ctx = c.n_ctx;
    int bs = p.block_size ? p.block_size : 16;
    int step_tokens = p.step_tokens ? p.step_tokens : 512;
    /* the budget buys blocks of the cache's type: half as many bytes a block for f16 as for f32 */
    uint64_t block_bytes = 2ull * (uint64_t)info.n_layers * (uint64_t)bs * llc_kv_row_bytes_of(c.type, c.kv_dim);
    uint64_t n_blocks;
    if (p.kv_mem) {
        n_blocks = p.kv_mem / block_bytes;
        if (n_blocks < 1) {
            llc_fail(err, "KV budget of %llu bytes is smaller than one block (%llu bytes: %d positions)",
                     (unsigned long long)p.kv_mem, (unsigned long long)block_bytes, bs);
            return NULL;
        }
    } else if (p.kv_tokens) {
        n_blocks = ((uint64_t)p.kv_tokens + (uint64_t)bs - 1) / (uint64_t)bs;
    } else {
        /* 1 GiB, but never more than every sequence at full context needs */
        n_blocks = (1ull << 30) / block_bytes;
        uint64_t most = ((uint64_t)max_seqs * (uint64_t)n_ctx + (uint64_t)bs - 1) / (uint64_t)bs;
        if (n_blocks > most) n_blocks = most;
        if (n_blocks < 1) n_blocks = 1;
    }
    if (n_blocks > (uint64_t)INT_MAX / (uint64_t)bs) n_blocks = (uint64_t)INT_MAX / (uint64_t)bs;
    /* a sequence can never hold more positions than the pool */
    if ((uint64_t)n_ctx > n_blocks * (uint64_t)bs) n_ctx = (int)(n_blocks * (uint64_t)bs);

    llamac_engine *e = calloc(1, sizeof *e);
    if (!e) {
        llc_fail(err, "out of memory");
        return NULL;
    }
    e->m = model;
    e->tok = llamac_model_tokenizer(model);
    e->n_vocab = info.n_vocab;
    e->n_ctx = n_ctx;
    e->max_seqs = max_seqs;
    e->step_tokens = step_tokens;
    e->block_size = bs;
    e->n_blocks = (int)n_blocks;
    e->prefix_cache = !p.no_prefix_cache;
    if (!llc_forward_open(model, &c, bs, (int)n_blocks, &e->fwd, &e->pool, err)) goto fail;
    e->b_tok = malloc((size_t)step_tokens * sizeof *e->b_tok);
    e->b_pos = malloc((size_t)step_tokens * sizeof *e->b_pos);
    e->b_seq = malloc((size_t)step_tokens * sizeof *e->b_seq);
    e->b_out = malloc((size_t)max_seqs * sizeof *e->b_out);
    e->b_tables = malloc((size_t)max_seqs * sizeof *e->b_tables);
    e->b_rq = malloc((size_t)max_seqs * sizeof *e->b_rq);
    e->logits = malloc((size_t)max_seqs * (size_t)info.n_vocab * sizeof *e->logits);
    e->piece_cap = llamac_detokenizer_max_bytes(e->tok) + 8;
    e->piece = malloc(e->piece_cap);
    if (!e->b_tok || !e->b_pos || !e->b_seq || !e->b_out || !e->b_tables || !e->b_rq || !e->logits || !e->piece ||
        !list_reserve(&e->running, max_seqs) || !list_reserve(&e->waiting, 64) || !list_reserve(&e->cancelled, 16) ||
        !events_reserve(e, 64)) {
        llc_fail(err, "out of memory for an engine of %d sequences", max_seqs);
        goto fail;
    }
    e->st.kv_blocks = (int)n_blocks;
    e->st.block_size = bs;
    e->st.n_ctx = n_ctx;
    return e;
fail:
    llamac_engine_free(e);
    return NULL;
}

void llamac_engine_free(llamac_engine *e) {
    if (!e) return;
    rq_list *lists[3] = {&e->waiting, &e->running, &e->cancelled};
    for (int k = 0; k < 3; k++) {
        if (e->pool)
            for (int i = 0; i < lists[k]->n; i++) rq_free(e, lists[k]->v[i]);
        free(lists[k]->v);
    }
    llc_forward_free(e->fwd);
    llc_kv_pool_free(e->pool);
    free(e->b_tok);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_out);
    free(e->b_tables);
    free(e->b_rq);
    free(e->logits);
    free(e->ev);
    free(e->ev_off);
    free(e->arena);
    free(e->piece);
    free(e->adj);
    free(e->mark);
    free(e);
}

/* ---- requests ---- */

int llamac_engine_submit(llamac_engine *e, const llamac_request *r, llamac_error *err) {
    if (!r || !r->prompt || r->n_prompt < 1) {
        llc_fail(err, "the prompt is empty");
        return -1;
    }
    if (r->n_prompt > e->n_ctx) {
        llc_fail(err, "the prompt has %d tokens but a sequence holds at most %d (the context size%s)", r->n_prompt, e->n_ctx,
                 e->n_ctx == e->n_blocks * e->block_size ? ", limited by the KV cache budget" : "");
        return -1;
    }
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= e->n_vocab) {
            llc_fail(err, "prompt token %d is %d, outside the vocabulary [0, %d)", i, (int)r->prompt[i], e->n_vocab);
            return -1;
        }
    if (r->max_tokens < 0) {
        llc_fail(err, "max_tokens must be >= 0 (got %d)", r->max_tokens);
        return -1;
    }
    if (r->n_stop < 0 || (r->n_stop > 0 && !r->stop)) {
        llc_fail(err, "bad stop string list");
        return -1;
    }
    if (r->n_stop > LLAMAC_MAX_STOP) {
        llc_fail(err, "%d stop strings; a request may give at most %d", r->n_stop, LLAMAC_MAX_STOP);
        return -1;
    }
    for (int i = 0; i < r->n_stop; i++) {
        if (!r->stop[i] || !r->stop[i][0]) {
            llc_fail(err, "stop string %d is empty", i);
            return -1;
        }
        if (strnlen(r->stop[i], LLAMAC_MAX_STOP_LEN + 1) > LLAMAC_MAX_STOP_LEN) {
            llc_fail(err, "stop string %d is longer than %d bytes, the most a stop string may be", i, LLAMAC_MAX_STOP_LEN);
            return -1;
        }
    }
    if (!isfinite(r->presence_penalty) || !isfinite(r->frequency_penalty) || fabsf(r->presence_penalty) > 1e6f ||
        fabsf(r->frequency_penalty) > 1e6f) {
        llc_fail(err, "presence and frequency penalties must be finite");
        return -1;
    }
    if (r->n_logit_bias < 0 || r->n_logit_bias > e->n_vocab || (r->n_logit_bias > 0 && (!r->logit_bias_ids || !r->logit_bias))) {
        llc_fail(err, "bad logit bias list");
        return -1;
    }
    for (int i = 0; i < r->n_logit_bias; i++)
        if (r->logit_bias_ids[i] < 0 || r->logit_bias_ids[i] >= e->n_vocab || !isfinite(r->logit_bias[i])) {
            llc_fail(err, "logit bias %d: token %d outside the vocabulary [0, %d) or a bias not finite", i, (int)r->logit_bias_ids[i],
                     e->n_vocab);
            return -1;
        }
    if (r->top_logprobs < 0 || r->top_logprobs > LLAMAC_MAX_TOP_LOGPROBS) {
        llc_fail(err, "top_logprobs must be in [0, %d] (got %d)", LLAMAC_MAX_TOP_LOGPROBS, r->top_logprobs);
        return -1;
    }
    if ((r->presence_penalty != 0 || r->frequency_penalty != 0 || r->n_logit_bias) && !e->adj) {
        /* scratch for requests that change the logits, allocated by the first such request */
        e->adj = malloc((size_t)e->n_vocab * sizeof *e->adj);
        e->mark = calloc((size_t)e->n_vocab, sizeof *e->mark);
        if (!e->adj || !e->mark) {
            free(e->adj);
            free(e->mark);
            e->adj = NULL;
            e->mark = NULL;
            goto oom;
        }
    }
    if (e->next_id == INT_MAX) {
        llc_fail(err, "too many requests for one engine");
        return -1;
    }
    /* every live request must fit in the waiting queue (preemption moves running ones back) */
    if (!list_reserve(&e->waiting, e->waiting.n + e->running.n + 1)) goto oom;
    rq *q = calloc(1, sizeof *q);
    if (!q) goto oom;
    llc_kv_seq_init(&q->kv);
    if (!(q->smp = llamac_sampler_create(&r->sampling, e->n_vocab, err))) {
        rq_free(e, q);
        return -1;
    }
    q->cap = r->n_prompt + 16;
    q->tok = malloc((size_t)q->cap * sizeof *q->tok);
    if (!q->tok) goto oom_q;
    memcpy(q->tok, r->prompt, (size_t)r->n_prompt * sizeof *q->tok);
    q->n_prompt = r->n_prompt;
    q->max_new = r->max_tokens > 0 ? r->max_tokens : INT_MAX;
    q->ignore_eog = r->ignore_eog;
    q->presence = r->presence_penalty;
    q->frequency = r->frequency_penalty;
    q->logprobs = r->logprobs;
    q->top_logprobs = r->logprobs ? r->top_logprobs : 0;
    if (r->n_logit_bias) {
        q->bias_ids = malloc((size_t)r->n_logit_bias * sizeof *q->bias_ids);
        q->bias = malloc((size_t)r->n_logit_bias * sizeof *q->bias);
        if (!q->bias_ids || !q->bias) goto oom_q;
        memcpy(q->bias_ids, r->logit_bias_ids, (size_t)r->n_logit_bias * sizeof *q->bias_ids);
        memcpy(q->bias, r->logit_bias, (size_t)r->n_logit_bias * sizeof *q->bias);
        q->n_bias = r->n_logit_bias;
    }
    if (r->n_stop) {
        q->stop = calloc((size_t)r->n_stop, sizeof *q->stop);
        q->stop_len = calloc((size_t)r->n_stop, sizeof *q->stop_len);
        if (!q->stop || !q->stop_len) goto oom_q;
        for (int i = 0; i < r->n_stop; i++) {
            q->stop_len[i] = strlen(r->stop[i]);
            if (!(q->stop[i] = malloc(q->stop_len[i] + 1))) goto oom_q;
            memcpy(q->stop[i], r->stop[i], q->stop_len[i] + 1);
            q->n_stop = i + 1;
        }
    }
    /* the repetition penalty looks back over the prompt too, as llamac generate does */
    for (int i = 0; i < r->n_prompt; i++) llamac_sampler_accept(q->smp, r->prompt[i]);
    llamac_detokenizer_init(&q->dt, e->tok);
    if (!r->separate_text) q->dt.prev = r->prompt[r->n_prompt - 1]; /* the text goes on from the prompt's */
    q->id = e->next_id++;
    list_insert_sorted(&e->waiting, q);
    return q->id;
oom_q:
    rq_free(e, q);
oom:
    llc_fail(err, "out of memory");
    return -1;
}

void llamac_engine_cancel(llamac_engine *e, int request) {
    rq_list *lists[2] = {&e->waiting, &e->running};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < lists[k]->n; i++) {
            rq *r = lists[k]->v[i];
            if (r->id != request) continue;
            if (!list_reserve(&e->cancelled, e->cancelled.n + 1)) return; /* out of memory: it just runs on */
            llc_kv_seq_release(e->pool, &r->kv);
            r->n_computed = 0;
            list_remove_at(lists[k], i);
            e->cancelled.v[e->cancelled.n++] = r;
            return;
        }
}

int llamac_engine_pending(const llamac_engine *e) { return e->waiting.n + e->running.n + e->cancelled.n; }

void llamac_engine_get_stats(const llamac_engine *e, llamac_engine_stats *out) {
    *out = e->st;
    out->kv_blocks_used = llc_kv_n_used(e->pool);
    out->running = e->running.n;
    out->waiting = e->waiting.n;
    out->kv_waste_blocks = e->waste_n ? e->waste_sum / (double)e->waste_n / e->block_size : 0;
}

/* ---- events ---- */

static bool emit(llamac_engine *e, const rq *r, int32_t token, const char *text, size_t len, llamac_finish finish) {
    if (!events_reserve(e, e->n_ev + 1)) return false;
    if (!grow((void **)&e->arena, &e->cap_arena, e->n_arena + len + 1, 1)) return false;
    memcpy(e->arena + e->n_arena, text, len);
    e->arena[e->n_arena + len] = 0;
    e->ev_off[e->n_ev] = e->n_arena;
    e->ev[e->n_ev++] = (llamac_event){.request = r->id, .token = token, .text = NULL, .text_len = len, .finish = finish,
                                      .cached_tokens = r->n_cached};
    e->n_arena += len + 1;
    return true;
}

static bool held_add(rq *r, const char *s, size_t n) {
    if (!grow((void **)&r->held, &r->cap_held, r->n_held + n + 1, 1)) return false;
    memcpy(r->held + r->n_held, s, n);
    r->n_held += n;
    return true;
}

/* Looks for the stop strings in the held text. Returns true with *cut = where the first one starts;
 * else false with *cut = how much of the held text can be released (the rest could begin a stop
 * string). */
static bool stop_scan(const rq *r, size_t *cut) {
    if (r->n_stop == 0) {
        *cut = r->n_held;
        return false;
    }
    size_t first = SIZE_MAX;
    for (int i = 0; i < r->n_stop; i++) {
        const char *hit = r->n_held ? memmem(r->held, r->n_held, r->stop[i], r->stop_len[i]) : NULL;
        if (hit && (size_t)(hit - r->held) < first) first = (size_t)(hit - r->held);
    }
    if (first != SIZE_MAX) {
        *cut = first;
        return true;
    }
    size_t keep_from = r->n_held;
    for (int i = 0; i < r->n_stop; i++) {
        size_t k = r->stop_len[i] - 1 < r->n_held ? r->stop_len[i] - 1 : r->n_held;
        for (; k > 0; k--)
            if (!memcmp(r->held + r->n_held - k, r->stop[i], k)) break;
        if (k > 0 && r->n_held - k < keep_from) keep_from = r->n_held - k;
    }
    *cut = keep_from;
    return false;
}

/* Emits the event of a token (or -1) with the text the held buffer can release now. A finishing
 * request releases everything it holds (after a last stop-string check): finish may turn into
 * LLAMAC_FINISH_STOP when the flushed text completes a stop string. */
static bool emit_text(llamac_engine *e, rq *r, int32_t token, llamac_finish finish) {
    if (finish != LLAMAC_RUNNING) {
        size_t n = llamac_detokenizer_flush(&r->dt, e->piece, e->piece_cap);
        if (!held_add(r, e->piece, n)) return false;
    }
    size_t cut;
    bool stopped = stop_scan(r, &cut);
    if (stopped) finish = LLAMAC_FINISH_STOP;
    else if (finish != LLAMAC_RUNNING) cut = r->n_held;
    if (!emit(e, r, token, r->held, cut, finish)) return false;
    if (finish != LLAMAC_RUNNING) {
        r->n_held = 0;
        r->done = true;
    } else {
        memmove(r->held, r->held + cut, r->n_held - cut);
        r->n_held -= cut;
    }
    return true;
}

/* ---- scheduling ---- */

/* Puts a running sequence back in the waiting queue: blocks released, tokens and sampler kept. */
static void preempt(llamac_engine *e, int running_index) {
    rq *r = e->running.v[running_index];
    llc_kv_seq_release(e->pool, &r->kv);
    r->n_computed = 0;
    r->chunk = 0;
    list_remove_at(&e->running, running_index);
    list_insert_sorted(&e->waiting, r); /* capacity: every request fits in waiting (reserved at submit) */
}

/* Whether r's tokens share more full blocks with a running sequence that has not computed them yet
 * than the prefix cache gave it (matched positions): waiting one step more lets it reuse them. */
static bool prefix_pending(const llamac_engine *e, const rq *r, int matched) {
    int bs = e->block_size, n = known(r) - 1;
    for (int i = 0; i < e->running.n; i++) {
        const rq *s = e->running.v[i];
        int lim = n < known(s) ? n : known(s);
        if (lim < matched + bs) continue;
        int L = 0;
        while (L < lim && r->tok[L] == s->tok[L]) L++;
        int Lb = L / bs * bs;
        if (Lb > matched && s->n_computed < Lb) return true;
    }
    return false;
}

/* Plans every running sequence's chunk; returns the budget left, adds the blocks they need to *reserved. */
static int plan_running(llamac_engine *e, int *reserved) {
    int budget = e->step_tokens;
    for (int i = 0; i < e->running.n; i++) {
        rq *r = e->running.v[i];
        r->chunk = 0;
        if (known(r) - r->n_computed == 1 && budget > 0) {
            r->chunk = 1;
            budget--;
        }
    }
    for (int i = 0; i < e->running.n; i++) {
        rq *r = e->running.v[i];
        int left = known(r) - r->n_computed;
        if (left > 1 && budget > 0) {
            r->chunk = left < budget ? left : budget;
            budget -= r->chunk;
        }
        if (r->chunk) *reserved += llc_kv_seq_blocks_needed(e->pool, &r->kv, r->chunk);
    }
    return budget;
}

static void admit(llamac_engine *e, int budget, int reserved) {
    /* held-back requests are skipped, but only so many per step: a long queue behind one shared
     * prefix must not cost a scan of the whole queue every step */
    int skipped = 0;
    for (int w = 0; w < e->waiting.n && budget > 0 && e->running.n < e->max_seqs && skipped <= e->max_seqs;) {
        rq *r = e->waiting.v[w];
        int n = known(r), matched = 0;
        if (e->prefix_cache) matched = llc_kv_seq_match_prefix(e->pool, &r->kv, r->tok, n);
        r->n_computed = matched;
        if (e->prefix_cache && prefix_pending(e, r, matched)) {
            llc_kv_seq_release(e->pool, &r->kv);
            r->n_computed = 0;
            w++;
            skipped++;
            continue;
        }
        int left = n - matched, chunk = left < budget ? left : budget;
        int need = llc_kv_seq_blocks_needed(e->pool, &r->kv, chunk);
        /* headroom of one block per running sequence (each needs a new one every block_size tokens),
         * so a newcomer is not preempted again at once when the pool is nearly full */
        if (need + e->running.n > llc_kv_n_available(e->pool) - reserved) {
            llc_kv_seq_release(e->pool, &r->kv);
            r->n_computed = 0;
            break;
        }
        if (!r->admitted_once) {
            r->admitted_once = true;
            e->st.prompt_tokens += (uint64_t)r->n_prompt;
            r->n_cached = matched < r->n_prompt ? matched : r->n_prompt;
            e->st.prompt_tokens_cached += (uint64_t)r->n_cached;
        }
        r->chunk = chunk;
        budget -= chunk;
        reserved += need;
        list_remove_at(&e->waiting, w);
        list_insert_sorted(&e->running, r);
    }
}

/* Finds blocks for every planned chunk, preempting the newest sequences when the pool runs dry. */
static bool allocate(llamac_engine *e) {
    for (int i = 0; i < e->running.n; i++) {
        rq *r = e->running.v[i];
        if (!r->chunk) continue;
        while (!llc_kv_seq_append(e->pool, &r->kv, r->chunk)) {
            int victim = e->running.n - 1;
            if (victim == 0) {
                /* alone and still no room: it outgrew the pool */
                r->chunk = 0;
                if (!emit_text(e, r, -1, LLAMAC_FINISH_LENGTH)) return false;
                break;
            }
            e->st.preemptions++;
            preempt(e, victim);
            if (victim == i) {
                i--;
                break;
            }
        }
    }
    return true;
}

static bool finish_done(llamac_engine *e) {
    for (int i = 0; i < e->running.n;) {
        rq *r = e->running.v[i];
        if (r->done) {
            list_remove_at(&e->running, i);
            rq_free(e, r);
        } else {
            i++;
        }
    }
    return true;
}

/* The logits r samples from: the model's, or a copy with its bias and penalties applied. */
static const float *adjusted(llamac_engine *e, const rq *r, const float *logits) {
    if (!r->n_bias && r->presence == 0 && r->frequency == 0) return logits;
    memcpy(e->adj, logits, (size_t)e->n_vocab * sizeof *e->adj);
    for (int i = 0; i < r->n_bias; i++) e->adj[r->bias_ids[i]] += r->bias[i];
    if (r->n_gen) {
        if (++e->stamp == 0) { /* wrapped: old marks could look current */
            memset(e->mark, 0, (size_t)e->n_vocab * sizeof *e->mark);
            e->stamp = 1;
        }
        for (int i = 0; i < r->n_gen; i++) {
            int32_t t = r->tok[r->n_prompt + i];
            e->adj[t] -= r->frequency;
            if (e->mark[t] != e->stamp) {
                e->mark[t] = e->stamp;
                e->adj[t] -= r->presence;
            }
        }
    }
    return e->adj;
}

/* The log-probability of t and the k most likely tokens' under the model's logits, into ev. */
static void logprobs(const llamac_engine *e, const float *l, int32_t t, int k, llamac_event *ev) {
    int n = e->n_vocab;
    float max = -INFINITY;
    for (int i = 0; i < n; i++)
        if (l[i] > max) max = l[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)l[i] - max);
    double lse = max + log(sum);
    ev->logprob = (float)(l[t] - lse);
    /* the k largest by insertion: k is at most 20 */
    int m = 0;
    for (int i = 0; i < n && k > 0; i++) {
        if (m == k && !(l[i] > l[ev->top_ids[k - 1]])) continue;
        int j = m < k ? m++ : k - 1;
        while (j > 0 && l[i] > l[ev->top_ids[j - 1]]) {
            ev->top_ids[j] = ev->top_ids[j - 1];
            j--;
        }
        ev->top_ids[j] = i;
    }
    ev->n_top = m;
    for (int i = 0; i < m; i++) ev->top_logprobs[i] = (float)(l[ev->top_ids[i]] - lse);
}

/* Samples the next token of r from logits and emits its event. */
static bool advance(llamac_engine *e, rq *r, const float *logits) {
    if (e->hook) e->hook(e->hook_ctx, r->id, known(r) - 1, logits, e->n_vocab);
    int32_t t = llamac_sampler_sample(r->smp, adjusted(e, r, logits));
    if (!r->ignore_eog && llamac_tokenizer_is_eog(e->tok, t)) return emit_text(e, r, -1, LLAMAC_FINISH_STOP);
    if (known(r) == r->cap) {
        int cap = r->cap * 2;
        int32_t *q = realloc(r->tok, (size_t)cap * sizeof *q);
        if (!q) return false;
        r->tok = q;
        r->cap = cap;
    }
    r->tok[r->n_prompt + r->n_gen++] = t;
    e->st.generated_tokens++;
    llamac_sampler_accept(r->smp, t);
    size_t n = llamac_detokenize(&r->dt, t, e->piece, e->piece_cap);
    if (!held_add(r, e->piece, n)) return false;
    llamac_finish f = LLAMAC_RUNNING;
    /* the next step would compute this token at position known - 1: it must be inside the context */
    if (r->n_gen >= r->max_new || known(r) - 1 >= e->n_ctx) f = LLAMAC_FINISH_LENGTH;
    if (!emit_text(e, r, t, f)) return false;
    if (r->logprobs) logprobs(e, logits, t, r->top_logprobs, &e->ev[e->n_ev - 1]);
    return true;
}

const llamac_event *llamac_engine_step(llamac_engine *e, int *n_events, llamac_error *err) {
    *n_events = 0;
    e->n_ev = 0;
    e->n_arena = 0;
    for (int i = 0; i < e->running.n; i++) e->running.v[i]->done = false;
    int reserved = 0;
    int budget = plan_running(e, &reserved);
    admit(e, budget, reserved);
    if (!allocate(e)) goto oom;

    /* the batch: sequences in arrival order, each its chunk */
    int nt = 0, ns = 0, no = 0;
    for (int i = 0; i < e->running.n; i++) {
        rq *r = e->running.v[i];
        if (!r->chunk || r->done) continue;
        e->b_rq[ns] = r;
        e->b_tables[ns] = r->kv.blocks;
        for (int k = 0; k < r->chunk; k++) {
            int pos = r->n_computed + k;
            e->b_tok[nt] = r->tok[pos];
            e->b_pos[nt] = pos;
            e->b_seq[nt] = ns;
            nt++;
        }
        if (r->n_computed + r->chunk == known(r)) e->b_out[no++] = nt - 1;
        ns++;
    }
    if (nt > 0) {
        llc_batch b = {.n_tok = nt, .tokens = e->b_tok, .pos = e->b_pos, .seq = e->b_seq, .block_tables = e->b_tables,
                       .n_seqs = ns, .n_out = no, .out_idx = e->b_out, .logits = e->logits};
        if (!(e->fwd_fn ? e->fwd_fn(e->fwd_ctx, e->pool, &b, err) : llc_forward_batch(e->fwd, e->pool, &b, err))) {
            /* nothing of this step happened: the sequences start over from the waiting queue */
            for (int i = e->running.n - 1; i >= 0; i--) preempt(e, i);
            e->n_ev = 0;
            return NULL;
        }
        e->st.steps++;
        e->st.computed_tokens += (uint64_t)nt;
        int o = 0;
        for (int s = 0; s < ns; s++) {
            rq *r = e->b_rq[s];
            bool out = r->n_computed + r->chunk == known(r);
            r->n_computed += r->chunk;
            r->chunk = 0;
            if (e->prefix_cache) llc_kv_seq_publish(e->pool, &r->kv, r->tok);
            if (out && !advance(e, r, e->logits + (size_t)o++ * (size_t)e->n_vocab)) goto oom;
        }
    }
    finish_done(e);
    for (int i = 0; i < e->cancelled.n; i++) {
        rq *r = e->cancelled.v[i];
        if (!emit(e, r, -1, "", 0, LLAMAC_FINISH_CANCELLED)) goto oom;
        rq_free(e, r);
    }
    e->cancelled.n = 0;

    /* memory accounting */
    int used = llc_kv_n_used(e->pool);
    if (used > e->st.kv_blocks_peak) e->st.kv_blocks_peak = used;
    for (int i = 0; i < e->running.n; i++) {
        const rq *r = e->running.v[i];
        int waste = r->kv.n_blocks * e->block_size - r->kv.n_tokens;
        e->waste_sum += waste;
        e->waste_n++;
        if (waste > e->st.kv_waste_max) e->st.kv_waste_max = waste;
    }
    for (size_t i = 0; i < e->n_ev; i++) e->ev[i].text = e->arena + e->ev_off[i];
    *n_events = (int)e->n_ev;
    return e->ev;
oom:
    llc_fail(err, "out of memory");
    return NULL;
}

/* ---- the seed-style call ---- */

int llamac_text_completion(const llamac_model *model, const char *const *prompts, int n, float temperature, float top_p,
                           int max_gen_len, char **out, llamac_error *err) {
    if (n < 0 || (n > 0 && (!prompts || !out))) return llc_fail(err, "bad arguments"), -1;
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (n == 0) return 0;
    const llamac_tokenizer *tok = llamac_model_tokenizer(model);
    llamac_engine *e = llamac_engine_create(model, NULL, err);
    if (!e) return -1;
    int rc = -1;
    size_t *len = calloc((size_t)n, sizeof *len), *cap = calloc((size_t)n, sizeof *cap);
    int32_t *buf = NULL;
    if (!len || !cap) goto oom;
    for (int i = 0; i < n; i++) {
        size_t plen = strlen(prompts[i]);
        int k = llamac_tokenize(tok, prompts[i], plen, true, false, NULL, 0, err);
        if (k < 0) goto done;
        int32_t *nb = realloc(buf, (size_t)(k > 0 ? k : 1) * sizeof *nb);
        if (!nb) goto oom;
        buf = nb;
        k = llamac_tokenize(tok, prompts[i], plen, true, false, buf, k, err);
        if (k < 0) goto done;
        llamac_request r = {.prompt = buf, .n_prompt = k, .max_tokens = max_gen_len, .sampling = llamac_sampler_defaults()};
        r.sampling.temperature = temperature;
        r.sampling.top_p = top_p;
        r.sampling.top_k = 0;
        r.sampling.min_p = 0;
        r.sampling.seed += (uint64_t)i;
        if (llamac_engine_submit(e, &r, err) != i) {
            llc_error_prefix(err, "prompt %d", i);
            goto done;
        }
        if (!(out[i] = malloc(1))) goto oom;
        out[i][0] = 0;
        cap[i] = 1;
    }
    while (llamac_engine_pending(e) > 0) {
        int ne;
        const llamac_event *ev = llamac_engine_step(e, &ne, err);
        if (!ev) goto done;
        for (int k = 0; k < ne; k++) {
            int i = ev[k].request; /* a fresh engine numbers them 0, 1, ... */
            if (i < 0 || i >= n || !ev[k].text_len) continue;
            if (!grow((void **)&out[i], &cap[i], len[i] + ev[k].text_len + 1, 1)) goto oom;
            memcpy(out[i] + len[i], ev[k].text, ev[k].text_len);
            len[i] += ev[k].text_len;
            out[i][len[i]] = 0;
        }
    }
    rc = 0;
    goto done;
oom:
    llc_fail(err, "out of memory");
done:
    if (rc != 0)
        for (int i = 0; i < n; i++) {
            free(out[i]);
            out[i] = NULL;
        }
    free(len);
    free(cap);
    free(buf);
    llamac_engine_free(e);
    return rc;
}
