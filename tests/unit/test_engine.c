/*
 * The batching engine (llamac_engine_*, llamac_text_completion): every request's greedy tokens equal
 * what llamac_session computes for the same prompt alone, and its logits agree within LOGIT_TOL, with
 * mixed prompt lengths, requests joining and finishing at different steps, preemption forced by a tiny
 * KV budget, prefix-cache hits and misses, stop strings and cancellation. After every run the pool is
 * empty (no block in use) and the engine's invariants hold after every step.
 *
 * A second family of tests replaces the forward pass with a fake one (llc_engine_set_forward) whose
 * "keys" are a hash chain over each sequence's tokens, read back through the block tables: any
 * scheduling or paging mistake (a wrong block, a position computed twice or never, a shared block
 * overwritten) changes the tokens. It runs hundreds of random requests through tiny pools, with
 * sampling, preemption, prefix sharing and cancellation, against a sequential reference exactly.
 *
 * With a KV cache of f16, bf16 or q8_0 the engine's outputs equal a session's with the same type
 * (batching changes nothing for any type), and a byte budget buys blocks of the type's size.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "kv/kv_cache.h"
#include "model/forward.h"
#include "llamac.h"

/* Largest |engine logit - session logit| allowed, relative to max(1, largest |session logit|). The
 * engine's batches group rows differently from a session's (a decode token next to other sequences'
 * prompt chunks), and the matmul kernels may accumulate a row differently in a bigger batch. */
#define LOGIT_TOL 1e-4

static llamac_model *M;
static const llamac_tokenizer *TOK;
static int NV, KV_DIM;
static double worst_logit_diff;
static llamac_kv_type KVT = LLAMAC_KV_F32; /* the sessions' KV type (the engines' is set per test) */

static int setup(void **state) {
    (void)state;
    const char *shared = getenv("LLAMAC_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", shared ? shared : "../shared");
    llamac_error err = {{0}};
    M = llamac_model_load(path, NULL, &err);
    if (!M) {
        fprintf(stderr, "load %s: %s\n", path, err.message);
        return -1;
    }
    TOK = llamac_model_tokenizer(M);
    NV = llamac_tokenizer_n_vocab(TOK);
    llamac_model_info info;
    llamac_model_get_info(M, &info);
    KV_DIM = info.n_kv_heads * info.head_dim;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    llamac_model_free(M);
    fprintf(stderr, "test_engine: largest logit difference engine vs session: %.3g (relative; tolerance %.0e)\n",
            worst_logit_diff, LOGIT_TOL);
    return 0;
}

static int tokenize(const char *text, int32_t *ids, int cap) {
    llamac_error err = {{0}};
    int n = llamac_tokenize(TOK, text, strlen(text), true, false, ids, cap, &err);
    assert_true(n > 0 && n <= cap);
    return n;
}

/* ---- the reference: a session, greedy, as llamac generate runs it ---- */

#define MAX_GEN 256

typedef struct reference {
    int32_t ids[MAX_GEN];
    int n;
    bool eog;        /* ended by an end-of-generation token */
    float *logits;   /* [n + 1][NV]: the logits each token (and the end) was chosen from */
} reference;

static void session_greedy(const int32_t *prompt, int n_prompt, int max_new, int n_ctx, reference *ref) {
    llamac_error err = {{0}};
    llamac_session_params sp = {.n_ctx = n_ctx, .n_threads = 2, .kv_type = KVT};
    llamac_session *s = llamac_session_create(M, &sp, &err);
    assert_non_null(s);
    ref->n = 0;
    ref->eog = false;
    ref->logits = malloc((size_t)(max_new + 1) * (size_t)NV * sizeof(float));
    assert_non_null(ref->logits);
    const float *l = llamac_session_eval(s, prompt, n_prompt, &err);
    assert_non_null(l);
    while (ref->n < max_new) {
        memcpy(ref->logits + (size_t)ref->n * NV, l, (size_t)NV * sizeof(float));
        int32_t best = 0;
        for (int i = 1; i < NV; i++)
            if (l[i] > l[best]) best = i;
        if (llamac_tokenizer_is_eog(TOK, best)) {
            ref->eog = true;
            break;
        }
        ref->ids[ref->n++] = best;
        if (ref->n == max_new || llamac_session_pos(s) >= n_ctx) break;
        assert_non_null(l = llamac_session_eval(s, &best, 1, &err));
    }
    llamac_session_free(s);
}

/* ---- running jobs through an engine ---- */

typedef struct job {
    const int32_t *prompt;
    int n_prompt, max_new;
    int submit_step;   /* submitted before this step */
    int cancel_step;   /* cancelled before this step; -1: never */
    const char *stop;
    llamac_sampler_params sp; /* temperature 0 unless set */
    bool ignore_eog, sampled;
} job;

/* A greedy job. */
static job gj(const int32_t *prompt, int n_prompt, int max_new, int submit_step) {
    return (job){.prompt = prompt, .n_prompt = n_prompt, .max_new = max_new, .submit_step = submit_step, .cancel_step = -1};
}

typedef struct outcome {
    int id;
    int32_t ids[MAX_GEN];
    int n;
    char text[16384];
    size_t len;
    llamac_finish finish;
    bool finished;
    int n_events_after_finish;
    float *logits;     /* [MAX_GEN + 1][NV] from the logits hook, by generated-token index */
    bool *have_logits;
} outcome;

typedef struct hook_ctx {
    outcome *out;
    int n;
    const job *jobs;
} hook_ctx;

static void logits_hook(void *ctx, int request, int pos, const float *logits, int n_vocab) {
    hook_ctx *h = ctx;
    for (int j = 0; j < h->n; j++) {
        if (h->out[j].id != request) continue;
        int k = pos - (h->jobs[j].n_prompt - 1);
        assert_true(k >= 0 && k <= MAX_GEN);
        assert_false(h->out[j].have_logits[k]); /* each position's logits once */
        if (h->out[j].logits) memcpy(h->out[j].logits + (size_t)k * (size_t)n_vocab, logits, (size_t)n_vocab * sizeof(float));
        h->out[j].have_logits[k] = true;
    }
}

static void check_engine(llamac_engine *e) {
    llamac_error err = {{0}};
    if (!llc_engine_check(e, &err)) fail_msg("engine invariant: %s", err.message);
}

/* Runs the jobs; returns the steps taken. */
static int run_jobs_opt(llamac_engine *e, const job *jobs, int nj, outcome *out, bool record_logits) {
    hook_ctx hc = {out, nj, jobs};
    for (int j = 0; j < nj; j++) {
        memset(&out[j], 0, sizeof out[j]);
        out[j].id = -1;
        out[j].have_logits = calloc(MAX_GEN + 1, sizeof(bool));
        assert_non_null(out[j].have_logits);
        if (record_logits) assert_non_null(out[j].logits = calloc((size_t)(MAX_GEN + 1) * (size_t)NV, sizeof(float)));
    }
    llc_engine_set_logits_hook(e, logits_hook, &hc);
    int submitted = 0, step = 0;
    for (;; step++) {
        for (int j = 0; j < nj; j++) {
            if (jobs[j].submit_step == step) {
                llamac_error err = {{0}};
                const char *stops[1] = {jobs[j].stop};
                llamac_request r = {.prompt = jobs[j].prompt, .n_prompt = jobs[j].n_prompt, .max_tokens = jobs[j].max_new,
                                    .sampling = jobs[j].sp, .stop = stops, .n_stop = jobs[j].stop ? 1 : 0,
                                    .ignore_eog = jobs[j].ignore_eog};
                if (!jobs[j].sampled) {
                    r.sampling = llamac_sampler_defaults();
                    r.sampling.temperature = 0;
                }
                out[j].id = llamac_engine_submit(e, &r, &err);
                if (out[j].id < 0) fail_msg("submit %d: %s", j, err.message);
                submitted++;
            }
            if (jobs[j].cancel_step == step && out[j].id >= 0) llamac_engine_cancel(e, out[j].id);
        }
        if (submitted == nj && llamac_engine_pending(e) == 0) break;
        assert_true(step < 100000);
        llamac_error err = {{0}};
        int ne = -1;
        const llamac_event *ev = llamac_engine_step(e, &ne, &err);
        if (!ev) fail_msg("step: %s", err.message);
        assert_true(ne >= 0);
        for (int k = 0; k < ne; k++) {
            int j = 0;
            while (j < nj && out[j].id != ev[k].request) j++;
            assert_true(j < nj);
            outcome *o = &out[j];
            if (o->finished) o->n_events_after_finish++;
            if (ev[k].token >= 0) {
                assert_true(o->n < MAX_GEN);
                o->ids[o->n++] = ev[k].token;
            }
            assert_true(o->len + ev[k].text_len < sizeof o->text);
            assert_int_equal(ev[k].text[ev[k].text_len], 0); /* NUL-terminated (a byte token may put NULs inside) */
            memcpy(o->text + o->len, ev[k].text, ev[k].text_len);
            o->len += ev[k].text_len;
            o->text[o->len] = 0;
            if (ev[k].finish != LLAMAC_RUNNING) {
                o->finished = true;
                o->finish = ev[k].finish;
            }
        }
        check_engine(e);
    }
    llc_engine_set_logits_hook(e, NULL, NULL);
    for (int j = 0; j < nj; j++) {
        assert_true(out[j].finished);
        assert_int_equal(out[j].n_events_after_finish, 0);
    }
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    assert_int_equal(st.kv_blocks_used, 0); /* every block back */
    assert_int_equal(st.running, 0);
    assert_int_equal(st.waiting, 0);
    return step;
}

static int run_jobs(llamac_engine *e, const job *jobs, int nj, outcome *out) { return run_jobs_opt(e, jobs, nj, out, true); }

static void free_outcomes(outcome *out, int n) {
    for (int j = 0; j < n; j++) {
        free(out[j].logits);
        free(out[j].have_logits);
    }
}

/* The text of ids following a prompt that ended with token prev (as llamac generate prints it). */
static void detok(int32_t prev, const int32_t *ids, int n, char *text, size_t cap) {
    llamac_detokenizer dt;
    llamac_detokenizer_init(&dt, TOK);
    dt.prev = prev;
    size_t len = 0;
    char piece[256];
    for (int i = 0; i < n; i++) {
        size_t k = llamac_detokenize(&dt, ids[i], piece, sizeof piece);
        assert_true(len + k < cap);
        memcpy(text + len, piece, k);
        len += k;
    }
    size_t k = llamac_detokenizer_flush(&dt, piece, sizeof piece);
    assert_true(len + k < cap);
    memcpy(text + len, piece, k);
    text[len + k] = 0;
}

/* Each non-cancelled greedy job against the session: same tokens, same finish, logits within tolerance. */
static void check_against_session(const job *jobs, int nj, const outcome *out, int n_ctx) {
    for (int j = 0; j < nj; j++) {
        reference ref;
        int max_new = jobs[j].max_new ? jobs[j].max_new : MAX_GEN - 1;
        session_greedy(jobs[j].prompt, jobs[j].n_prompt, max_new, n_ctx, &ref);
        const outcome *o = &out[j];
        bool cancelled = o->finish == LLAMAC_FINISH_CANCELLED;
        if (cancelled) assert_true(o->n <= ref.n);
        else if (!jobs[j].stop) assert_int_equal(o->n, ref.n);
        for (int i = 0; i < o->n; i++)
            if (o->ids[i] != ref.ids[i]) fail_msg("job %d: token %d is %d, the session's %d", j, i, o->ids[i], ref.ids[i]);
        if (!cancelled && !jobs[j].stop) {
            assert_int_equal(o->finish, ref.eog ? LLAMAC_FINISH_STOP : LLAMAC_FINISH_LENGTH);
            char want[16384];
            detok(jobs[j].prompt[jobs[j].n_prompt - 1], ref.ids, ref.n, want, sizeof want);
            assert_string_equal(o->text, want);
        }
        /* logits of every token the engine chose, and of the end when it saw one */
        int n_l = o->n + (!cancelled && ref.eog && o->n == ref.n ? 1 : 0);
        for (int k = 0; k < n_l; k++) {
            assert_true(o->have_logits[k]);
            const float *a = o->logits + (size_t)k * NV, *b = ref.logits + (size_t)k * NV;
            double mx = 1, d = 0;
            for (int v = 0; v < NV; v++) {
                if (fabs(b[v]) > mx) mx = fabs(b[v]);
                if (fabs(a[v] - b[v]) > d) d = fabs(a[v] - b[v]);
            }
            if (d / mx > worst_logit_diff) worst_logit_diff = d / mx;
            if (d / mx > LOGIT_TOL) fail_msg("job %d token %d: logits differ by %g (scale %g)", j, k, d, mx);
        }
        free(ref.logits);
    }
}

static const char *const STORIES[] = {
    "Once upon a time",
    "Lily and Tom went to the park with a big red ball. They played all day and",
    "The little dog was sad because",
    "One day, a girl named Sue found a shiny stone in the garden. She showed it to her mom and her mom said it was very "
    "special. Sue put the stone in her pocket and went to play with her friend Ben. Ben had a toy car and a kite. They ran "
    "to the hill to fly the kite. The wind was strong and the kite went up high in the sky. Then",
    "Tim",
    "A big bird sat on a tree. It",
};
#define N_STORIES (int)(sizeof STORIES / sizeof STORIES[0])

/* Mixed prompt lengths (1 to ~120 tokens), a small step budget so the long prompt is absorbed over
 * several steps while the others decode, everything submitted at once. */
static void test_mixed_lengths(void **state) {
    (void)state;
    int32_t prompts[N_STORIES + 1][512];
    job jobs[N_STORIES + 1];
    for (int i = 0; i < N_STORIES; i++) {
        int n = tokenize(STORIES[i], prompts[i], 512);
        jobs[i] = gj(prompts[i], n, 24 + 7 * i, 0);
    }
    prompts[N_STORIES][0] = llamac_tokenizer_bos(TOK); /* BOS alone */
    jobs[N_STORIES] = gj(prompts[N_STORIES], 1, 40, 0);
    llamac_engine_params ep = {.n_threads = 2, .step_tokens = 48, .n_ctx = 256};
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    outcome out[N_STORIES + 1];
    run_jobs(e, jobs, N_STORIES + 1, out);
    check_against_session(jobs, N_STORIES + 1, out, 256);
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    assert_true(st.steps > 0);
    assert_true(st.kv_waste_max < st.block_size);
    assert_true(st.kv_waste_blocks < 1.0);
    free_outcomes(out, N_STORIES + 1);
    llamac_engine_free(e);
}

/* Requests join every few steps and finish at different ones; max_tokens 0 runs to the context end
 * or an end-of-generation token. A context of 96 positions makes some end by length. */
static void test_join_and_finish_at_different_steps(void **state) {
    (void)state;
    int32_t prompts[N_STORIES][512];
    job jobs[N_STORIES];
    for (int i = 0; i < N_STORIES; i++) {
        int n = tokenize(STORIES[(i + 2) % N_STORIES], prompts[i], 512);
        jobs[i] = gj(prompts[i], n, i % 3 == 0 ? 0 : 10 + 13 * i, 5 * i);
    }
    llamac_engine_params ep = {.n_threads = 2, .step_tokens = 64, .n_ctx = 160, .max_seqs = 3};
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    outcome out[N_STORIES];
    run_jobs(e, jobs, N_STORIES, out);
    check_against_session(jobs, N_STORIES, out, 160);
    free_outcomes(out, N_STORIES);
    llamac_engine_free(e);
}

/* A KV budget far below what the requests need together: sequences are preempted and recomputed,
 * and every output is still the session's. */
static void test_preemption(void **state) {
    (void)state;
    int32_t prompts[N_STORIES][512];
    job jobs[N_STORIES];
    int nj = 0;
    for (int i = 0; i < N_STORIES; i++) {
        if (i == 3) continue; /* the 120-token one would not fit the tiny pool's context */
        int n = tokenize(STORIES[i], prompts[nj], 512);
        jobs[nj] = gj(prompts[nj], n, 60, 0);
        nj++;
    }
    llamac_engine_params ep = {.n_threads = 2, .kv_tokens = 128, .block_size = 8, .step_tokens = 32, .no_prefix_cache = false};
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    outcome out[N_STORIES];
    run_jobs(e, jobs, nj, out);
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    assert_int_equal(st.n_ctx, 128);
    assert_true(st.preemptions > 0);
    assert_true(st.kv_blocks_peak <= st.kv_blocks);
    check_against_session(jobs, nj, out, 128);
    free_outcomes(out, nj);
    llamac_engine_free(e);
    /* and without the prefix cache (recomputation from scratch) */
    ep.no_prefix_cache = true;
    assert_non_null(e = llamac_engine_create(M, &ep, &err));
    run_jobs(e, jobs, nj, out);
    llamac_engine_get_stats(e, &st);
    assert_true(st.preemptions > 0);
    assert_int_equal(st.prompt_tokens_cached, 0);
    check_against_session(jobs, nj, out, 128);
    free_outcomes(out, nj);
    llamac_engine_free(e);
}

/* A shared prefix of several blocks: later requests take it from the cache (counted in
 * prompt_tokens_cached), earlier and unrelated ones miss; all outputs equal the session's. The same
 * prompt twice, the second after the first finished, reuses every full block but the last. */
static void test_prefix_cache(void **state) {
    (void)state;
    int32_t base[512], prompts[8][512];
    int nb = tokenize(STORIES[3], base, 512); /* ~120 tokens: 7 blocks of 16 */
    const char *tails[4] = {" the kite fell", " Sue", " they were happy and", " a big dog"};
    job jobs[8];
    int nj = 0;
    for (int i = 0; i < 4; i++) {
        int32_t tail[64];
        llamac_error err = {{0}};
        int nt = llamac_tokenize(TOK, tails[i], strlen(tails[i]), false, false, tail, 64, &err);
        assert_true(nt > 0);
        memcpy(prompts[nj], base, (size_t)nb * sizeof *base);
        memcpy(prompts[nj] + nb, tail, (size_t)nt * sizeof *tail);
        jobs[nj] = gj(prompts[nj], nb + nt, 30, i == 0 ? 0 : 3 + i);
        nj++;
    }
    /* misses: an unrelated prompt; the same prompt again after everything else */
    int n = tokenize(STORIES[1], prompts[nj], 512);
    jobs[nj] = gj(prompts[nj], n, 30, 1);
    nj++;
    jobs[nj] = gj(prompts[0], jobs[0].n_prompt, 30, 200);
    nj++;
    llamac_engine_params ep = {.n_threads = 2, .step_tokens = 64, .n_ctx = 256};
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    outcome out[8];
    run_jobs(e, jobs, nj, out);
    check_against_session(jobs, nj, out, 256);
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    /* requests 1-3 share nb / 16 full blocks with request 0; the repeat shares all of its full blocks
     * but the one holding its last token */
    uint64_t shared = (uint64_t)(nb / 16 * 16);
    assert_true(st.prompt_tokens_cached >= 3 * shared + shared);
    uint64_t total = 0;
    for (int j = 0; j < nj; j++) total += (uint64_t)jobs[j].n_prompt;
    assert_int_equal(st.prompt_tokens, total);
    free_outcomes(out, nj);
    llamac_engine_free(e);
}

/* The target: sixteen requests with one long shared system prompt submitted together cost
 * one prefill of it: the engine holds back the fifteen others until the first has computed (and
 * cached) the shared blocks. */
static void test_shared_system_prompt_once(void **state) {
    (void)state;
    enum { N = 16 };
    int32_t sys[512], prompts[N][600];
    int ns = 0;
    while (ns < 300) ns += tokenize(STORIES[3], sys + ns, 512 - ns) ; /* ~360 tokens of system prompt */
    job jobs[N];
    for (int i = 0; i < N; i++) {
        memcpy(prompts[i], sys, (size_t)ns * sizeof *sys);
        char q[64];
        snprintf(q, sizeof q, " Question %d: who", i);
        llamac_error err = {{0}};
        int nt = llamac_tokenize(TOK, q, strlen(q), false, false, prompts[i] + ns, 64, &err);
        jobs[i] = gj(prompts[i], ns + nt, 8, 0);
    }
    llamac_engine_params ep = {.n_threads = 2, .n_ctx = 512};
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    outcome out[N];
    run_jobs(e, jobs, N, out);
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    uint64_t shared = (uint64_t)(ns / 16 * 16);
    assert_true(st.prompt_tokens_cached >= (N - 1) * shared);
    /* computed: the system prompt once, each request's own part, the decodes */
    uint64_t prompt_total = 0;
    for (int i = 0; i < N; i++) prompt_total += (uint64_t)jobs[i].n_prompt;
    assert_int_equal(st.prompt_tokens, prompt_total);
    assert_true(st.computed_tokens <= prompt_total - (N - 1) * shared + st.generated_tokens);
    fprintf(stderr, "test_engine: %d requests sharing a %d-token system prompt: %llu prompt tokens, %llu from the cache, "
                    "%llu computed in all (decodes included)\n",
            N, ns, (unsigned long long)st.prompt_tokens, (unsigned long long)st.prompt_tokens_cached,
            (unsigned long long)st.computed_tokens);
    check_against_session(jobs, N, out, 512);
    free_outcomes(out, N);
    llamac_engine_free(e);
}

/* Cancelling: a waiting request, a running one mid-prompt, a running one mid-decode. Each gets one
 * CANCELLED event, its blocks come back at once, and the others are unaffected. */
static void test_cancel(void **state) {
    (void)state;
    int32_t prompts[N_STORIES][512];
    job jobs[N_STORIES];
    for (int i = 0; i < N_STORIES; i++) {
        int n = tokenize(STORIES[i], prompts[i], 512);
        jobs[i] = gj(prompts[i], n, 40, i == 5 ? 2 : 0);
    }
    jobs[1].cancel_step = 5;  /* decoding by then */
    jobs[3].cancel_step = 1;  /* the long prompt, before it got any of the step budget of 16 */
    jobs[4].cancel_step = 9;  /* the long prompt's neighbour, whatever it is doing by then */
    jobs[5].cancel_step = 2;  /* cancelled right as it is submitted: never runs */
    llamac_engine_params ep = {.n_threads = 2, .step_tokens = 16, .n_ctx = 256, .max_seqs = 4};
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    outcome out[N_STORIES];
    run_jobs(e, jobs, N_STORIES, out);
    assert_int_equal(out[1].finish, LLAMAC_FINISH_CANCELLED);
    assert_int_equal(out[3].finish, LLAMAC_FINISH_CANCELLED);
    assert_int_equal(out[3].n, 0);
    assert_int_equal(out[5].finish, LLAMAC_FINISH_CANCELLED);
    assert_int_equal(out[5].n, 0);
    check_against_session(jobs, N_STORIES, out, 256);
    /* cancelling unknown and finished ids is harmless */
    llamac_engine_cancel(e, 12345);
    llamac_engine_cancel(e, out[0].id);
    assert_int_equal(llamac_engine_pending(e), 0);
    free_outcomes(out, N_STORIES);
    llamac_engine_free(e);
}

/* Stop strings: the text ends before the first one, which may span tokens; text that could begin one
 * is held back, so no event ever shows part of it. */
static void test_stop_strings(void **state) {
    (void)state;
    int32_t prompt[512];
    int n = tokenize(STORIES[0], prompt, 512);
    reference ref;
    session_greedy(prompt, n, 60, 256, &ref);
    char full[16384];
    detok(prompt[n - 1], ref.ids, ref.n, full, sizeof full);
    assert_true(strlen(full) > 60);
    /* a stop string from the middle of the text, starting inside a word */
    char stop[16];
    memcpy(stop, full + 41, 7);
    stop[7] = 0;
    const char *at = strstr(full, stop);
    assert_non_null(at);
    job jobs[2] = {gj(prompt, n, 60, 0), gj(prompt, n, 60, 0)};
    jobs[0].stop = stop;
    jobs[1].stop = "no such text!";
    llamac_engine_params ep = {.n_threads = 2, .n_ctx = 256};
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    outcome out[2];
    run_jobs(e, jobs, 2, out);
    assert_int_equal(out[0].finish, LLAMAC_FINISH_STOP);
    assert_int_equal(out[0].len, (size_t)(at - full));
    assert_memory_equal(out[0].text, full, out[0].len);
    assert_true(out[0].n < ref.n);
    assert_string_equal(out[1].text, full);
    assert_int_equal(out[1].finish, LLAMAC_FINISH_LENGTH);
    free(ref.logits);
    free_outcomes(out, 2);
    llamac_engine_free(e);
}

static void test_text_completion(void **state) {
    (void)state;
    const char *prompts[3] = {STORIES[0], STORIES[2], STORIES[4]};
    char *out[3];
    llamac_error err = {{0}};
    assert_int_equal(llamac_text_completion(M, prompts, 3, 0.0f, 0.9f, 32, out, &err), 0);
    for (int i = 0; i < 3; i++) {
        int32_t ids[512];
        int n = tokenize(prompts[i], ids, 512);
        reference ref;
        session_greedy(ids, n, 32, 512, &ref);
        char want[16384];
        detok(ids[n - 1], ref.ids, ref.n, want, sizeof want);
        assert_string_equal(out[i], want);
        free(ref.logits);
        free(out[i]);
    }
    /* sampled: texts of some length, different for different prompts' seeds */
    assert_int_equal(llamac_text_completion(M, prompts, 3, 0.8f, 0.95f, 16, out, &err), 0);
    for (int i = 0; i < 3; i++) {
        assert_non_null(out[i]);
        free(out[i]);
    }
    assert_int_equal(llamac_text_completion(M, prompts, 0, 0.8f, 0.95f, 16, out, &err), 0);
}

static void test_errors(void **state) {
    (void)state;
    llamac_error err = {{0}};
    llamac_engine_params ep = {.n_threads = 1, .kv_mem = 100};
    assert_null(llamac_engine_create(M, &ep, &err));
    assert_non_null(strstr(err.message, "block"));
    ep = (llamac_engine_params){.n_threads = 1, .block_size = -1};
    assert_null(llamac_engine_create(M, &ep, &err));
    ep = (llamac_engine_params){.n_threads = 1, .kv_tokens = 40, .block_size = 16};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    assert_int_equal(st.kv_blocks, 3);
    assert_int_equal(st.n_ctx, 48); /* a sequence never holds more than the pool */
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = 1 + i;
    llamac_request r = {.prompt = ids, .n_prompt = 49, .sampling = llamac_sampler_defaults()};
    assert_int_equal(llamac_engine_submit(e, &r, &err), -1); /* longer than the pool holds */
    assert_non_null(strstr(err.message, "KV cache budget"));
    r.n_prompt = 0;
    assert_int_equal(llamac_engine_submit(e, &r, &err), -1);
    r.n_prompt = 4;
    ids[2] = NV;
    assert_int_equal(llamac_engine_submit(e, &r, &err), -1);
    assert_non_null(strstr(err.message, "vocabulary"));
    ids[2] = 3;
    r.sampling.top_p = 0;
    assert_int_equal(llamac_engine_submit(e, &r, &err), -1);
    r.sampling.top_p = 1;
    r.max_tokens = -1;
    assert_int_equal(llamac_engine_submit(e, &r, &err), -1);
    r.max_tokens = 0;
    const char *empty[1] = {""};
    r.stop = empty;
    r.n_stop = 1;
    assert_int_equal(llamac_engine_submit(e, &r, &err), -1);
    r.n_stop = 0;
    assert_int_equal(llamac_engine_submit(e, &r, &err), 0);
    /* a step with nothing but that request, then freeing with work pending */
    int ne;
    assert_non_null(llamac_engine_step(e, &ne, &err));
    assert_int_equal(llamac_engine_pending(e), 1);
    llamac_engine_free(e);
    /* an engine with nothing to do steps to no events */
    assert_non_null(e = llamac_engine_create(M, NULL, &err));
    assert_non_null(llamac_engine_step(e, &ne, &err));
    assert_int_equal(ne, 0);
    llamac_engine_free(e);
}

/* ---- the fake forward pass ---- */

static uint32_t mix32(uint32_t h, uint32_t x) {
    h ^= x + 0x9e3779b9u + (h << 6) + (h >> 2);
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static uint32_t fake_step(uint32_t prev, int32_t token, int pos) { return mix32(prev, (uint32_t)token * 2654435761u + (uint32_t)pos); }

static void fake_logits(uint32_t h, float *l) {
    for (int v = 0; v < NV; v++) l[v] = (float)(mix32(h, (uint32_t)v) >> 8) / 16777216.0f * 8.0f;
}

typedef struct fake {
    int bs;
    uint64_t tokens;
} fake;

static bool fake_forward(void *ctx, llc_kv_pool *kv, const llc_batch *b, llamac_error *err) {
    (void)err;
    fake *f = ctx;
    int bs = f->bs, o = 0, nblk = llc_kv_n_blocks(kv);
    float *K = llc_kv_k_base(kv, 0);
    for (int i = 0; i < b->n_tok; i++) {
        int s = b->seq[i], p = b->pos[i];
        assert_true(s >= 0 && s < b->n_seqs && p >= 0);
        if (i > 0 && b->seq[i - 1] == s) assert_int_equal(b->pos[i - 1], p - 1);
        const int32_t *t = b->block_tables[s];
        uint32_t prev = 0x1234567u;
        if (p > 0) {
            int blk = t[(p - 1) / bs];
            assert_true(blk >= 0 && blk < nblk);
            memcpy(&prev, K + ((size_t)blk * bs + (size_t)((p - 1) % bs)) * KV_DIM, sizeof prev);
        }
        uint32_t h = fake_step(prev, b->tokens[i], p);
        int blk = t[p / bs];
        assert_true(blk >= 0 && blk < nblk);
        assert_int_equal(llc_kv_block_ref(kv, blk), 1); /* never write a shared block */
        memcpy(K + ((size_t)blk * bs + (size_t)(p % bs)) * KV_DIM, &h, sizeof h);
        if (o < b->n_out && b->out_idx[o] == i) fake_logits(h, b->logits + (size_t)o++ * NV);
    }
    assert_int_equal(o, b->n_out);
    f->tokens += (uint64_t)b->n_tok;
    return true;
}

/* What a request alone gives with the fake forward pass: its sampler over the fake logits. */
static int fake_reference(const job *j, int n_ctx, int32_t *out, bool *eog) {
    llamac_error err = {{0}};
    llamac_sampler_params sp = j->sp;
    if (!j->sampled) {
        sp = llamac_sampler_defaults();
        sp.temperature = 0;
    }
    llamac_sampler *smp = llamac_sampler_create(&sp, NV, &err);
    assert_non_null(smp);
    uint32_t h = 0x1234567u;
    for (int i = 0; i < j->n_prompt; i++) {
        h = fake_step(h, j->prompt[i], i);
        llamac_sampler_accept(smp, j->prompt[i]);
    }
    float *l = malloc((size_t)NV * sizeof *l);
    int n = 0, max_new = j->max_new ? j->max_new : 1 << 30;
    *eog = false;
    for (;;) {
        fake_logits(h, l);
        int32_t t = llamac_sampler_sample(smp, l);
        if (!j->ignore_eog && llamac_tokenizer_is_eog(TOK, t)) {
            *eog = true;
            break;
        }
        out[n++] = t;
        llamac_sampler_accept(smp, t);
        if (n == max_new || j->n_prompt + n - 1 >= n_ctx) break;
        h = fake_step(h, t, j->n_prompt + n - 1);
    }
    free(l);
    llamac_sampler_free(smp);
    return n;
}

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* Random requests, tiny pools: exact equality with the sequential reference. */
static void fake_stress(uint64_t seed, int n_jobs, llamac_engine_params ep, bool cancels, uint64_t *preemptions, uint64_t *cached) {
    rng_state = seed;
    enum { MAXJ = 200, MAXP = 48 };
    static int32_t prompts[MAXJ][MAXP];
    static job jobs[MAXJ];
    static outcome out[MAXJ];
    assert_true(n_jobs <= MAXJ);
    int32_t prefixes[3][MAXP];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < MAXP; i++) prefixes[k][i] = (int32_t)(3 + rnd((uint32_t)NV - 3));
    for (int j = 0; j < n_jobs; j++) {
        int n = 1 + (int)rnd(MAXP - 1);
        int share = rnd(3) ? (int)rnd((uint32_t)n + 1) : 0; /* a shared prefix of a random length */
        int which = (int)rnd(3);
        for (int i = 0; i < n; i++) prompts[j][i] = i < share ? prefixes[which][i] : (int32_t)(3 + rnd((uint32_t)NV - 3));
        jobs[j] = gj(prompts[j], n, rnd(4) == 0 ? 0 : 1 + (int)rnd(40), 0);
        jobs[j].submit_step = (int)rnd((uint32_t)n_jobs / 2 + 1);
        jobs[j].ignore_eog = rnd(4) == 0;
        jobs[j].sampled = rnd(2) == 0;
        jobs[j].sp = llamac_sampler_defaults();
        jobs[j].sp.seed = seed * 1000 + (uint64_t)j;
        jobs[j].sp.temperature = 1.0f;
        jobs[j].sp.repeat_penalty = rnd(2) ? 1.0f : 1.3f;
        if (cancels && rnd(8) == 0) jobs[j].cancel_step = jobs[j].submit_step + (int)rnd(30);
    }
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    if (!e) fail_msg("%s", err.message);
    fake f = {ep.block_size ? ep.block_size : 16, 0};
    llc_engine_set_forward(e, fake_forward, &f);
    int n_ctx = llc_engine_n_ctx(e);
    run_jobs_opt(e, jobs, n_jobs, out, false);
    for (int j = 0; j < n_jobs; j++) {
        int32_t want[MAX_GEN * 4];
        bool eog;
        int n = fake_reference(&jobs[j], n_ctx, want, &eog);
        const outcome *o = &out[j];
        if (o->finish == LLAMAC_FINISH_CANCELLED) {
            assert_true(jobs[j].cancel_step >= 0);
            assert_true(o->n <= n);
        } else {
            if (o->n != n) fail_msg("seed %llu job %d: %d tokens, the reference %d", (unsigned long long)seed, j, o->n, n);
            assert_int_equal(o->finish, eog ? LLAMAC_FINISH_STOP : LLAMAC_FINISH_LENGTH);
        }
        for (int i = 0; i < o->n; i++)
            if (o->ids[i] != want[i])
                fail_msg("seed %llu job %d: token %d is %d, the reference %d", (unsigned long long)seed, j, i, o->ids[i], want[i]);
    }
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    assert_int_equal(st.computed_tokens, f.tokens);
    assert_true(st.kv_waste_max < st.block_size);
    *preemptions += st.preemptions;
    *cached += st.prompt_tokens_cached;
    free_outcomes(out, n_jobs);
    llamac_engine_free(e);
}

static void test_fake_forward_stress(void **state) {
    (void)state;
    uint64_t pre = 0, cached = 0;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        llamac_engine_params ep = {.n_threads = 1,
                                   .kv_tokens = 48 + (int)(seed % 4) * 40,
                                   .block_size = (int)(seed % 3 == 0 ? 4 : seed % 3 == 1 ? 8 : 16),
                                   .step_tokens = 8 + (int)(seed % 5) * 12,
                                   .max_seqs = 2 + (int)(seed % 6),
                                   .no_prefix_cache = seed % 4 == 3};
        fake_stress(seed, 120, ep, seed % 2 == 0, &pre, &cached);
    }
    /* the run must have exercised what it is about */
    assert_true(pre > 0);
    assert_true(cached > 0);
    fprintf(stderr, "test_engine: fake-forward stress: %llu preemptions, %llu prompt tokens from the cache\n",
            (unsigned long long)pre, (unsigned long long)cached);
}

/* A step whose forward pass fails: the step returns NULL, nothing is lost, and the next steps finish
 * the work with the same results. */
static int fail_countdown;
static bool failing_forward(void *ctx, llc_kv_pool *kv, const llc_batch *b, llamac_error *err) {
    if (fail_countdown-- == 0) {
        snprintf(err->message, sizeof err->message, "injected failure");
        return false;
    }
    return fake_forward(ctx, kv, b, err);
}

static void test_forward_failure(void **state) {
    (void)state;
    int32_t prompt[40];
    for (int i = 0; i < 40; i++) prompt[i] = 5 + i;
    llamac_engine_params ep = {.n_threads = 1, .block_size = 4, .step_tokens = 16};
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    fake f = {4, 0};
    llc_engine_set_forward(e, failing_forward, &f);
    llamac_request r = {.prompt = prompt, .n_prompt = 40, .max_tokens = 10, .sampling = llamac_sampler_defaults(), .ignore_eog = true};
    r.sampling.temperature = 0;
    assert_int_equal(llamac_engine_submit(e, &r, &err), 0);
    r.n_prompt = 17;
    assert_int_equal(llamac_engine_submit(e, &r, &err), 1);
    int32_t got[2][16];
    int n[2] = {0, 0}, failures = 0;
    fail_countdown = 3;
    while (llamac_engine_pending(e) > 0) {
        int ne;
        const llamac_event *ev = llamac_engine_step(e, &ne, &err);
        if (!ev) {
            failures++;
            assert_string_equal(err.message, "injected failure");
            check_engine(e);
            continue;
        }
        for (int k = 0; k < ne; k++)
            if (ev[k].token >= 0) got[ev[k].request][n[ev[k].request]++] = ev[k].token;
        check_engine(e);
    }
    assert_int_equal(failures, 1);
    for (int i = 0; i < 2; i++) {
        job j = gj(prompt, i == 0 ? 40 : 17, 10, 0);
        j.ignore_eog = true;
        int32_t want[16];
        bool eog;
        assert_int_equal(fake_reference(&j, 1 << 20, want, &eog), 10);
        assert_int_equal(n[i], 10);
        assert_memory_equal(got[i], want, sizeof(int32_t) * 10);
    }
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    llamac_engine_free(e);
}

/* Every KV type: mixed prompt lengths over a small step budget, and preemption under a tiny pool with
 * the prefix cache on: the engine's tokens and logits are the session's of the same type. A byte
 * budget buys as many blocks as fit at the type's size. */
static void test_kv_types(void **state) {
    (void)state;
    const llamac_kv_type types[] = {LLAMAC_KV_F16, LLAMAC_KV_BF16, LLAMAC_KV_Q8_0};
    const uint64_t block_bytes[] = {2 * 5 * 16 * 32 * 2, 2 * 5 * 16 * 32 * 2, 2 * 5 * 16 * 34}; /* 5 layers, rows of 32 */
    int32_t prompts[N_STORIES][512];
    job jobs[N_STORIES];
    for (int i = 0; i < N_STORIES; i++) jobs[i] = gj(prompts[i], tokenize(STORIES[i], prompts[i], 512), 20 + 9 * i, i % 3);
    for (int ti = 0; ti < 3; ti++) {
        KVT = types[ti];
        llamac_engine_params ep = {.n_threads = 2, .step_tokens = 48, .n_ctx = 256, .kv_type = KVT};
        llamac_error err = {{0}};
        llamac_engine *e = llamac_engine_create(M, &ep, &err);
        if (!e) fail_msg("%s: %s", llamac_kv_type_name(KVT), err.message);
        outcome out[N_STORIES];
        run_jobs(e, jobs, N_STORIES, out);
        check_against_session(jobs, N_STORIES, out, 256);
        free_outcomes(out, N_STORIES);
        llamac_engine_free(e);

        int nj = 0;
        job small[N_STORIES];
        for (int i = 0; i < N_STORIES; i++)
            if (i != 3) small[nj++] = gj(prompts[i], jobs[i].n_prompt, 50, 0);
        ep = (llamac_engine_params){.n_threads = 2, .kv_tokens = 128, .block_size = 8, .step_tokens = 32, .kv_type = KVT};
        assert_non_null(e = llamac_engine_create(M, &ep, &err));
        run_jobs(e, small, nj, out);
        llamac_engine_stats st;
        llamac_engine_get_stats(e, &st);
        assert_true(st.preemptions > 0);
        check_against_session(small, nj, out, 128);
        free_outcomes(out, nj);
        llamac_engine_free(e);

        /* the budget in bytes: 100 blocks' worth of f32 */
        uint64_t f32_block = 2 * 5 * 16 * 32 * 4;
        ep = (llamac_engine_params){.n_threads = 1, .kv_mem = 100 * f32_block, .kv_type = KVT};
        assert_non_null(e = llamac_engine_create(M, &ep, &err));
        llamac_engine_get_stats(e, &st);
        assert_int_equal(st.kv_blocks, (int)(100 * f32_block / block_bytes[ti]));
        llamac_engine_free(e);
    }
    KVT = LLAMAC_KV_F32;
    llamac_error err = {{0}};
    llamac_engine_params bad = {.kv_type = (llamac_kv_type)9};
    assert_null(llamac_engine_create(M, &bad, &err));
    assert_non_null(strstr(err.message, "KV cache type"));
    llamac_session_params sbad = {.kv_type = (llamac_kv_type)-1};
    assert_null(llamac_session_create(M, &sbad, &err));
    assert_non_null(strstr(err.message, "KV cache type"));
}

/* The batched forward refuses malformed batches (sequence index, position, logits indices) instead of
 * following them into its scratch arrays; a well-formed one runs. */
static void test_forward_rejects_bad_batch(void **state) {
    (void)state;
    llamac_model_info info;
    llamac_model_get_info(M, &info);
    llamac_error err = {{0}};
    llc_forward *f = llc_forward_create(M, 1, &err);
    assert_non_null(f);
    llc_kv_pool *kv = llc_kv_pool_create(info.n_layers, KV_DIM, 16, 4, LLC_F32, &err);
    assert_non_null(kv);
    int32_t tokens[3] = {1, 2, 3}, pos[3] = {0, 1, 2}, seq[3] = {0, 0, 0}, block = 0, out[2] = {1, 2};
    const int32_t *tables[1] = {&block};
    float *logits = malloc(2 * (size_t)NV * sizeof(float));
    llc_batch b = {3, tokens, pos, seq, tables, 1, 2, out, logits};
    assert_true(llc_forward_batch(f, kv, &b, &err));
    seq[1] = 1; /* no such sequence */
    assert_false(llc_forward_batch(f, kv, &b, &err));
    seq[1] = 0;
    pos[2] = -1;
    assert_false(llc_forward_batch(f, kv, &b, &err));
    pos[2] = 2;
    out[1] = 1; /* repeated */
    assert_false(llc_forward_batch(f, kv, &b, &err));
    out[1] = 3; /* past the batch */
    assert_false(llc_forward_batch(f, kv, &b, &err));
    free(logits);
    llc_kv_pool_free(kv);
    llc_forward_free(f);
}


/* Runs one request alone; its tokens and events' logprobs into tok/lp/top (top 5 ids per token). */
static int run_one(const llamac_request *r, int32_t *tok, float *lp, int32_t (*top)[5], float (*toplp)[5], int cap) {
    llamac_engine_params ep = {.n_threads = 1};
    llamac_error err = {{0}};
    llamac_engine *e = llamac_engine_create(M, &ep, &err);
    assert_non_null(e);
    assert_int_equal(llamac_engine_submit(e, r, &err), 0);
    int n = 0;
    while (llamac_engine_pending(e) > 0) {
        int ne;
        const llamac_event *ev = llamac_engine_step(e, &ne, &err);
        assert_non_null(ev);
        for (int k = 0; k < ne; k++) {
            if (ev[k].token < 0 || n >= cap) continue;
            tok[n] = ev[k].token;
            if (lp) {
                lp[n] = ev[k].logprob;
                assert_int_equal(ev[k].n_top, r->top_logprobs);
                for (int i = 0; i < ev[k].n_top && i < 5; i++) top[n][i] = ev[k].top_ids[i], toplp[n][i] = ev[k].top_logprobs[i];
            }
            n++;
        }
    }
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    llamac_engine_free(e);
    return n;
}

/* OpenAI's logit adjustments and logprobs against a session's logits with the formulas applied here:
 * logprobs are the log-softmax of the model's logits (top ones in order), logit_bias is added,
 * frequency/presence penalties subtract count x f + (count > 0) x p over the generated tokens only;
 * greedy picks the argmax of the result. */
static void test_logit_adjustments(void **state) {
    (void)state;
    int32_t prompt[64];
    int np = tokenize("Once upon a time, there was a little", prompt, 64);
    enum { N = 24 };
    struct {
        float freq, pres;
        int n_bias;
        int32_t bias_id[2];
        float bias[2];
    } cases[] = {{0, 0, 0, {0}, {0}}, {0.7f, 0.4f, 0, {0}, {0}}, {0, 1.5f, 0, {0}, {0}}, {0, 0, 2, {300, 17}, {6.0f, -3.0f}},
                 {0.3f, 0, 1, {298}, {-1e9f}}};
    float *l = malloc((size_t)NV * sizeof *l);
    assert_non_null(l);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        llamac_request r = {.prompt = prompt, .n_prompt = np, .max_tokens = N, .sampling = llamac_sampler_defaults(),
                            .ignore_eog = true, .presence_penalty = cases[c].pres, .frequency_penalty = cases[c].freq,
                            .logit_bias_ids = cases[c].bias_id, .logit_bias = cases[c].bias, .n_logit_bias = cases[c].n_bias,
                            .logprobs = true, .top_logprobs = 5};
        r.sampling.temperature = 0;
        int32_t tok[N], top[N][5];
        float lp[N], toplp[N][5];
        assert_int_equal(run_one(&r, tok, lp, top, toplp, N), N);
        /* the reference: a session, the adjustments applied here */
        llamac_session_params sp = {.n_ctx = 256, .n_threads = 1};
        llamac_error err = {{0}};
        llamac_session *s = llamac_session_create(M, &sp, &err);
        assert_non_null(s);
        const float *logits = llamac_session_eval(s, prompt, np, &err);
        int count[1024] = {0};
        assert_true(NV <= 1024);
        for (int i = 0; i < N; i++) {
            assert_non_null(logits);
            double max = -INFINITY, sum = 0;
            for (int v = 0; v < NV; v++) max = logits[v] > max ? logits[v] : max;
            for (int v = 0; v < NV; v++) sum += exp((double)logits[v] - max);
            double lse = max + log(sum);
            for (int v = 0; v < NV; v++) {
                l[v] = logits[v];
                for (int b = 0; b < cases[c].n_bias; b++)
                    if (cases[c].bias_id[b] == v) l[v] += cases[c].bias[b];
                l[v] -= (float)count[v] * cases[c].freq + (count[v] > 0 ? cases[c].pres : 0.0f);
            }
            int best = 0;
            for (int v = 1; v < NV; v++)
                if (l[v] > l[best]) best = v;
            assert_int_equal(tok[i], best);
            assert_true(fabs(lp[i] - ((double)logits[best] - lse)) < 1e-3);
            for (int k = 0; k < 5; k++) {
                int32_t id = top[i][k];
                assert_true(fabs(toplp[i][k] - ((double)logits[id] - lse)) < 1e-3);
                if (k) assert_true(logits[top[i][k - 1]] >= logits[id]);
                int above = 0; /* exactly k tokens are more likely than the k-th */
                for (int v = 0; v < NV; v++) above += logits[v] > logits[id];
                assert_true(above <= k);
            }
            count[best]++;
            logits = llamac_session_eval(s, &tok[i], 1, &err);
        }
        llamac_session_free(s);
    }
    free(l);
    /* bad requests are refused */
    llamac_engine *e = llamac_engine_create(M, &(llamac_engine_params){.n_threads = 1}, NULL);
    assert_non_null(e);
    llamac_error err = {{0}};
    int32_t bad_id = NV;
    float b = 1;
    llamac_request r = {.prompt = prompt, .n_prompt = np, .sampling = llamac_sampler_defaults(), .logit_bias_ids = &bad_id,
                        .logit_bias = &b, .n_logit_bias = 1};
    assert_int_equal(llamac_engine_submit(e, &r, &err), -1);
    r.n_logit_bias = 0;
    r.top_logprobs = 21;
    r.logprobs = true;
    assert_int_equal(llamac_engine_submit(e, &r, &err), -1);
    r.top_logprobs = 0;
    r.presence_penalty = NAN;
    assert_int_equal(llamac_engine_submit(e, &r, &err), -1);
    llamac_engine_free(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_lengths),
        cmocka_unit_test(test_join_and_finish_at_different_steps),
        cmocka_unit_test(test_preemption),
        cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_shared_system_prompt_once),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_text_completion),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_fake_forward_stress),
        cmocka_unit_test(test_forward_failure),
        cmocka_unit_test(test_kv_types),
        cmocka_unit_test(test_forward_rejects_bad_batch),
        cmocka_unit_test(test_logit_adjustments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
