/*
 * Repacking a model's matrices for the machine's kernels (kernels/packed.h), once per model.
 *
 * It happens when the first session starts rather than at load, so tools that only read a model
 * (info, convert, quantize) never pay for it, and the session's threads do the work. The packed copy
 * replaces the file's bytes as the matrix's storage for the forward pass; the file's pages it was made
 * from are dropped from this process's memory (they stay in the page cache, and an embedding row
 * looked up later is simply read back), so the process holds one copy of the weights, not two.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/error.h"
#include "kernels/packed.h"
#include "model/model.h"
#include "model/tensors.h"

typedef struct pack_job {
    const llc_tensor *W;
    void *dst;
    long g0, g1;
} pack_job;

static void pack_task(void *ctx, int ith, int nth) {
    const pack_job *j = ctx;
    long lo, hi;
    llc_split(j->g1 - j->g0, ith, nth, &lo, &hi);
    llc_tensor_pack(j->W, j->dst, j->g0 + lo, j->g0 + hi);
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

/* Drops the whole pages inside rows [r0, r1) of W's file bytes from this process. */
static void drop_file_pages(const llamac_model *m, const llc_tensor *W, int64_t r0, int64_t r1) {
    const uint8_t *p = (const uint8_t *)W->data + (size_t)r0 * W->row_bytes;
    size_t n = (size_t)(r1 - r0) * W->row_bytes, page = (size_t)sysconf(_SC_PAGESIZE);
    if (!in_own_mapping(m, p, n)) return;
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1), hi = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
    if (hi <= lo) return;
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
    /* What is read from here later is single rows (embedding lookups of a tied output matrix): without
     * this, each lookup would fault in its neighbours too (fault-around, readahead). */
    madvise((void *)lo, hi - lo, MADV_RANDOM);
}

/* Packs W in slices of about 16 MiB of file bytes, dropping each slice's pages once it is packed:
 * the process never holds more than one slice of the matrix twice (the output matrix of a Llama 3
 * model alone is 150-500 MB). */
static void pack_tensor(const llamac_model *m, llc_pool *pool, const llc_tensor *W, void *dst) {
    long n_groups = (long)(W->n_rows / LLC_PACK_ROWS);
    size_t group_src = (size_t)LLC_PACK_ROWS * W->row_bytes;
    long step = (long)((16u << 20) / group_src);
    if (step < 1) step = 1;
    for (long g = 0; g < n_groups; g += step) {
        pack_job j = {W, dst, g, g + step < n_groups ? g + step : n_groups};
        llc_pool_run(pool, pack_task, &j);
        drop_file_pages(m, W, (int64_t)j.g0 * LLC_PACK_ROWS, (int64_t)j.g1 * LLC_PACK_ROWS);
    }
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
    size_t total = 0;
    for (int i = 0; i < k; i++)
        if (llc_tensor_packable(list[i])) total += llc_tensor_packed_bytes(list[i]);
    if (total == 0 || (env && !strcmp(env, "0"))) {
        free(list);
        m->pack_done = true;
        goto out;
    }
    /* Anonymous memory of its own, asked for in huge pages: 512x fewer page faults while packing and
     * fewer TLB misses while decode streams through it. */
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
    for (int i = 0; i < k; i++) {
        llc_tensor *W = list[i];
        if (!llc_tensor_packable(W)) continue;
        pack_tensor(m, pool, W, mem + off);
        W->packed = mem + off;
        off += llc_tensor_packed_bytes(W);
    }
    free(list);
    m->packed_mem = mem;
    m->packed_bytes = bytes;
    m->pack_done = true;
out:
    pthread_mutex_unlock(&m->pack_lock);
    return ok;
}
