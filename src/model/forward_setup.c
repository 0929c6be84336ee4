/*
 * From a session's or an engine's parameters to a forward pass and a KV pool: the defaults and checks
 * both share (model/forward.h).
 */
#include "base/error.h"
#include "kv/kv_cache.h"
#include "model/forward.h"
#include "model/model.h"

int llc_default_n_ctx(int n_ctx_train) { return n_ctx_train < 4096 ? n_ctx_train : 4096; }

bool llc_forward_config_resolve(const llamac_model *m, int n_ctx, int n_threads, llamac_kv_type kv_type,
                                llc_forward_config *c, llamac_error *err) {
    const llc_hparams *hp = &m->hp;
    if (n_threads < 0 || n_threads > 1024) return llc_fail(err, "invalid thread count %d", n_threads);
    c->kv_dim = hp->n_kv_heads * hp->head_dim;
    int elem = llc_kv_elem_type_for(kv_type, c->kv_dim, err);
    if (elem < 0) return false;
    c->type = (enum llc_type)elem;
    c->n_threads = n_threads;
    c->n_ctx = n_ctx ? n_ctx : llc_default_n_ctx(hp->n_ctx_train);
    return true;
}

bool llc_forward_open(const llamac_model *m, const llc_forward_config *c, int block_size, int n_blocks, llc_forward **fwd,
                      llc_kv_pool **kv, llamac_error *err) {
    *kv = NULL;
    if (!(*fwd = llc_forward_create(m, c->n_threads, err))) return false;
    if (!(*kv = llc_kv_pool_create(m->hp.n_layers, c->kv_dim, block_size, n_blocks, c->type, err))) {
        llc_forward_free(*fwd);
        *fwd = NULL;
        return false;
    }
    return true;
}
