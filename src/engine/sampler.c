/*
 * Sampling, in llama.cpp's order: repetition penalty, top-k, top-p, min-p, temperature, then a draw
 * from the remaining distribution. Temperature 0 is greedy (argmax after the penalty).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "llamac.h"

typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct llamac_sampler {
    llamac_sampler_params p;
    int n_vocab;
    cand *c;
    float *work;          /* penalized logits */
    int32_t *history;     /* ring of the last repeat_last_n tokens */
    int n_history, history_head;
    uint64_t rng;
};

llamac_sampler_params llamac_sampler_defaults(void) {
    llamac_sampler_params p = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                               .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0x5eed};
    return p;
}

llamac_sampler *llamac_sampler_create(const llamac_sampler_params *params, int n_vocab, llamac_error *err) {
    llamac_sampler_params p = params ? *params : llamac_sampler_defaults();
    if (!(p.temperature >= 0) || !isfinite(p.temperature)) {
        llc_fail(err, "temperature must be >= 0 (got %g)", p.temperature);
        return NULL;
    }
    if (p.top_k < 0) {
        llc_fail(err, "top-k must be >= 0 (got %d)", p.top_k);
        return NULL;
    }
    if (!(p.top_p > 0 && p.top_p <= 1)) {
        llc_fail(err, "top-p must be in (0, 1] (got %g)", p.top_p);
        return NULL;
    }
    if (!(p.min_p >= 0 && p.min_p <= 1)) {
        llc_fail(err, "min-p must be in [0, 1] (got %g)", p.min_p);
        return NULL;
    }
    if (!(p.repeat_penalty > 0) || !isfinite(p.repeat_penalty)) {
        llc_fail(err, "repeat penalty must be > 0 (got %g)", p.repeat_penalty);
        return NULL;
    }
    if (p.repeat_last_n < 0 || p.repeat_last_n > (1 << 20)) {
        llc_fail(err, "repeat-last-n must be in [0, 2^20] (got %d)", p.repeat_last_n);
        return NULL;
    }
    if (n_vocab < 1) {
        llc_fail(err, "empty vocabulary");
        return NULL;
    }
    llamac_sampler *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->p = p;
    s->n_vocab = n_vocab;
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->history = malloc((size_t)(p.repeat_last_n ? p.repeat_last_n : 1) * sizeof *s->history);
    if (!s->c || !s->work || !s->history) goto oom;
    /* splitmix64 of the seed, so nearby seeds give unrelated streams and 0 is a fine seed */
    uint64_t z = p.seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->rng = (z ^ (z >> 31)) | 1;
    return s;
oom:
    llamac_sampler_free(s);
    llc_fail(err, "out of memory");
    return NULL;
}

void llamac_sampler_free(llamac_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->work);
    free(s->history);
    free(s);
}

void llamac_sampler_accept(llamac_sampler *s, int32_t token) {
    if (s->p.repeat_last_n == 0) return;
    s->history[s->history_head] = token;
    s->history_head = (s->history_head + 1) % s->p.repeat_last_n;
    if (s->n_history < s->p.repeat_last_n) s->n_history++;
}

/* xorshift64*: uniform in [0, 1) with 24 random bits, plenty for a draw over probabilities. */
static float next_uniform(llamac_sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545f4914f6cdd1dull) >> 40) / 16777216.0f;
}

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

/* Moves the k largest candidates to the front, sorted: a bounded min-heap would be faster for tiny
 * k, but quickselect-then-sort keeps this short and is linear in n_vocab. */
static void select_top(cand *c, int n, int k) {
    if (k < n) {
        int lo = 0, hi = n - 1;
        while (lo < hi) {
            cand pivot = c[(lo + hi) / 2];
            int i = lo, j = hi;
            while (i <= j) {
                while (cand_desc(&c[i], &pivot) < 0) i++;
                while (cand_desc(&c[j], &pivot) > 0) j--;
                if (i <= j) {
                    cand t = c[i];
                    c[i] = c[j];
                    c[j] = t;
                    i++;
                    j--;
                }
            }
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
    }
    qsort(c, (size_t)(k < n ? k : n), sizeof *c, cand_desc);
}

int32_t llamac_sampler_sample(llamac_sampler *s, const float *logits) {
    int n = s->n_vocab;
    const float *l = logits;
    if (s->p.repeat_penalty != 1.0f && s->n_history > 0) {
        /* llama.cpp's rule: divide positive logits, multiply negative ones, once per distinct token */
        memcpy(s->work, logits, (size_t)n * sizeof *s->work);
        for (int i = 0; i < s->n_history; i++) {
            int32_t t = s->history[i];
            if (t < 0 || t >= n) continue;
            bool seen = false;
            for (int j = 0; j < i && !seen; j++) seen = s->history[j] == t;
            if (seen) continue;
            s->work[t] = s->work[t] > 0 ? s->work[t] / s->p.repeat_penalty : s->work[t] * s->p.repeat_penalty;
        }
        l = s->work;
    }
    if (s->p.temperature == 0) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (l[i] > l[best] || isnan(l[best])) best = i;
        return best;
    }
    /* NaN (a broken model) would make the ordering inconsistent: rank it below everything. */
    for (int i = 0; i < n; i++) s->c[i] = (cand){isnan(l[i]) ? -INFINITY : l[i], i};
    int k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    select_top(s->c, n, k);
    n = k;
    /* probabilities of what is left (at temperature 1, as llama.cpp's top-p and min-p see them) */
    float max = s->c[0].logit;
    if (!isfinite(max)) return s->c[0].id; /* +inf wins outright; all -inf: nothing to weigh */
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)s->c[i].logit - max);
    if (s->p.top_p < 1.0f) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += exp((double)s->c[i].logit - max) / sum;
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (s->p.min_p > 0) {
        /* p_i >= min_p * p_max  ⇔  logit_i >= max + log(min_p) */
        float cut = max + logf(s->p.min_p);
        int keep = 1;
        while (keep < n && s->c[keep].logit >= cut) keep++;
        n = keep;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += exp(((double)s->c[i].logit - max) / s->p.temperature);
    double r = next_uniform(s) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += exp(((double)s->c[i].logit - max) / s->p.temperature);
        if (r < acc) return s->c[i].id;
    }
    return s->c[n - 1].id;
}
