/*
 * Repacking a model's matrices for the machine's kernels (kernels/packed.h), once per model.
 *
 * It happens when the first session starts rather than at load, so tools that only read a model
 * (info, convert, quantize) never pay for it, and the session's threads do the work. The packed copy
 * replaces the file's bytes as the matrix's storage for the forward pass; the file's pages it was made
 * from are dropped from this process's memory (they stay in the page cache, and an embedding row
 * looked up later is simply read back), so the process holds one copy of the weights, not two.
 * A single-file model's packed copy goes to a cache file that later processes map (pack_cache.h).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/error.h"
#include "kernels/packed.h"
#include "model/model.h"
#include "model/pack_cache.h"
#include "model/tensors.h"

/* Groups [0, n_groups) of a matrix's rows starting at src, packed to dst. */
typedef struct pack_job {
    uint32_t type;
    const uint8_t *src;
    size_t src_rb;
    int64_t n_cols;
    long n_groups;
    uint8_t *dst;
} pack_job;

static void pack_task(void *ctx, int ith, int nth) {
    const pack_job *j = ctx;
    long lo, hi;
    llc_split(j->n_groups, ith, nth, &lo, &hi);
    llc_pack_groups(j->type, j->src, j->src_rb, j->n_cols, lo, hi, j->dst);
}

/* Whether [p, p + n) lies in a file this model mapped itself (not in memory it allocated: dropping
 * anonymous pages would zero them). */
static bool in_own_mapping(const llamac_model *m, const void *p, size_t n) {
    const llc_mapped_file *maps[64];
    int k = 0;
    if (m->gguf) maps[k++] = &m->gguf->map;
    maps[k++] = &m->map;
    for (int i = 0; i < m->n_maps && k < 64; i++) maps[k++] = &m->maps[i];
    const uint8_t *b = p;
    for (int i = 0; i < k; i++)
        if (maps[i]->owns_map && maps[i]->data && b >= maps[i]->data && b + n <= maps[i]->data + maps[i]->size) return true;
    return false;
}

/* Drops the whole pages inside rows [r0, r1) of W's file bytes from this process; packed says they
 * were packed (read row by row from now on), else they are about to be read whole. */
static void drop_file_pages(const llamac_model *m, const llc_tensor *W, int64_t r0, int64_t r1, bool packed) {
    const uint8_t *p = (const uint8_t *)W->data + (size_t)r0 * W->row_bytes;
    size_t n = (size_t)(r1 - r0) * W->row_bytes, page = (size_t)sysconf(_SC_PAGESIZE);
    if (!in_own_mapping(m, p, n)) return;
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1), hi = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
    if (hi <= lo) return;
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
    if (!packed) return;
    /* What is read from here later is single rows (embedding lookups of a tied output matrix): without
     * this, each lookup would fault in its neighbours too (fault-around, readahead). */
    madvise((void *)lo, hi - lo, MADV_RANDOM);
}

/* Packs groups [g0, g1) of W to dst with the pool's threads, then drops their file pages. */
static void pack_slice(const llamac_model *m, llc_pool *pool, const llc_tensor *W, long g0, long g1, uint8_t *dst) {
    pack_job j = {W->type, (const uint8_t *)W->data + (size_t)g0 * LLC_PACK_ROWS * W->row_bytes, W->row_bytes, W->n_cols,
                  g1 - g0, dst};
    llc_pool_run(pool, pack_task, &j);
    drop_file_pages(m, W, (int64_t)g0 * LLC_PACK_ROWS, (int64_t)g1 * LLC_PACK_ROWS, true);
}

/* Groups per slice: about 16 MiB of file bytes, so the process never holds more than one slice of a
 * matrix twice (the output matrix of a Llama 3 model alone is 150-500 MB). */
static long slice_groups(const llc_tensor *W) {
    long step = (long)((16u << 20) / ((size_t)LLC_PACK_ROWS * W->row_bytes));
    return step < 1 ? 1 : step;
}

static void pack_tensor(const llamac_model *m, llc_pool *pool, const llc_tensor *W, uint8_t *dst) {
    long n_groups = (long)(W->n_rows / LLC_PACK_ROWS), step = slice_groups(W);
    size_t gb = llc_packed_group_bytes(W->type, W->n_cols);
    for (long g = 0; g < n_groups; g += step) pack_slice(m, pool, W, g, g + step < n_groups ? g + step : n_groups, dst + (size_t)g * gb);
}

size_t llc_pack_buffer_bytes(llc_tensor *const *W, int n) {
    size_t max_slice = 0;
    for (int i = 0; i < n; i++) {
        size_t s = (size_t)slice_groups(W[i]) * llc_packed_group_bytes(W[i]->type, W[i]->n_cols);
        if (s > max_slice) max_slice = s;
    }
    return max_slice + (2u << 20); /* what a write leaves over is under 2 MiB */
}

/* Packs W[0..n) slice by slice into a small buffer written out to a new cache file, then maps that:
 * the packed weights never take anonymous memory (which the kernel zeroes before it is written) and
 * the next process finds them in the page cache. false: no cache file (the caller packs in memory). */
static bool pack_to_cache(llamac_model *m, llc_pool *pool, llc_tensor *const *W, int n) {
    llc_pack_cache *c = llc_pack_cache_create(m, W, n);
    if (!c) return false;
    size_t fill = 0;
    uint8_t *buf = malloc(llc_pack_buffer_bytes(W, n));
    if (!buf) {
        llc_pack_cache_abort(c);
        return false;
    }
    for (int i = 0; i < n; i++) {
        long n_groups = (long)(W[i]->n_rows / LLC_PACK_ROWS), step = slice_groups(W[i]);
        size_t gb = llc_packed_group_bytes(W[i]->type, W[i]->n_cols);
        for (long g = 0; g < n_groups; g += step) {
            long g1 = g + step < n_groups ? g + step : n_groups;
            pack_slice(m, pool, W[i], g, g1, buf + fill);
            fill += (size_t)(g1 - g) * gb;
            size_t put = llc_pack_cache_write(c, pool, buf, fill, false);
            if (put == (size_t)-1) goto fail;
            memmove(buf, buf + put, fill - put);
            fill -= put;
        }
    }
    if (llc_pack_cache_write(c, pool, buf, fill, true) != fill) goto fail;
    free(buf);
    return llc_pack_cache_finish(c, m, W, n);
fail:
    free(buf);
    llc_pack_cache_abort(c);
    return false;
}

bool llc_model_pack(const llamac_model *cm, llc_pool *pool, llamac_error *err) {
    /* The model is shared by its sessions; packing is the one change a session makes to it, under the
     * lock and before any forward pass can read the tensors. */
    llamac_model *m = (llamac_model *)cm;
    pthread_mutex_lock(&m->pack_lock);
    bool ok = true;
    if (m->pack_done) goto out;
    const char *env = getenv("LLAMAC_PACK");
    int n = llc_tensor_refs_max(m->hp.n_layers);
    llc_tensor **list = malloc((size_t)n * sizeof *list);
    if (!list) {
        ok = llc_fail(err, "out of memory");
        goto out;
    }
    int k = 0;
    for (int l = 0; l < m->hp.n_layers; l++)
        for (int i = 0; i < llc_n_tensors; i++)
            if (llc_tensors[i].per_layer && !llc_tensors[i].vector) list[k++] = llc_model_matrix(m, &llc_tensors[i], l);
    list[k++] = &m->output;
    /* from here on only the packable ones, in the order their packed bytes follow each other */
    int n_pk = 0;
    size_t total = 0;
    for (int i = 0; i < k; i++)
        if (llc_tensor_packable(list[i])) {
            total += llc_tensor_packed_bytes(list[i]);
            list[n_pk++] = list[i];
        }
    if (total == 0 || (env && !strcmp(env, "0"))) {
        free(list);
        m->pack_done = true;
        goto out;
    }
    /* What loading touched of the matrices goes first: with the cache it is never needed again, and
     * without, packing reads it back from the page cache. */
    for (int i = 0; i < n_pk; i++) drop_file_pages(m, list[i], 0, list[i]->n_rows, false);
    if (llc_pack_cache_load(m, pool, list, n_pk)) {
        /* as if packed here (the sampled bytes the check read): the file's rows are only read one at
         * a time from now on (embeddings) */
        for (int i = 0; i < n_pk; i++) drop_file_pages(m, list[i], 0, list[i]->n_rows, true);
        free(list);
        m->pack_done = true;
        goto out;
    }
    if (pack_to_cache(m, pool, list, n_pk)) {
        free(list);
        m->pack_done = true;
        goto out;
    }
    /* No cache: anonymous memory of its own, asked for in huge pages: 512x fewer page faults while
     * packing and fewer TLB misses while decode streams through it. */
    size_t bytes = (total + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
    uint8_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) mem = NULL;
    if (mem) madvise(mem, bytes, MADV_HUGEPAGE);
    if (!mem) {
        free(list);
        ok = llc_fail(err, "out of memory repacking the weights (%.1f MiB)", (double)total / 1048576.0);
        goto out;
    }
    size_t off = 0;
    for (int i = 0; i < n_pk; i++) {
        pack_tensor(m, pool, list[i], mem + off);
        list[i]->packed = mem + off;
        off += llc_tensor_packed_bytes(list[i]);
    }
    free(list);
    m->packed_mem = mem;
    m->packed_bytes = bytes;
    m->pack_done = true;
out:
    pthread_mutex_unlock(&m->pack_lock);
    return ok;
}
