/*
 * The packed-weights cache file (pack_cache.h). Layout, all in the machine's byte order (the file is
 * only ever read back by the machine and ISA that wrote it):
 *
 *   cache_header, then one cache_tensor per packed matrix, then one 64-bit hash per 1 MiB chunk of
 *   packed bytes; the packed bytes themselves from payload_off (a multiple of 2 MiB) to the end.
 *
 * Everything up to the chunk hashes is what the reading process computes for itself from the model,
 * so a cache is accepted only when it is byte for byte what this process expects; the chunk hashes
 * then catch a file damaged after it was written (it is written without fsync: a crash can leave
 * zeros behind a complete-looking header).
 */
#include "model/pack_cache.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "kernels/packed.h"

/* Bump with any change to kernels/packed.h's layouts or to how a matrix is packed. */
#define LAYOUT_VERSION 1u
#define PAYLOAD_ALIGN ((uint64_t)2 << 20)

typedef struct cache_header {
    char magic[8]; /* "LLCPACK" */
    uint32_t version, header_bytes;
    char isa[16];
    uint64_t model_size, model_dev, model_ino;
    int64_t model_mtime_ns;
    uint64_t model_sample; /* hash of the model file's first MiB and 64 pages spread over it */
    uint64_t n_tensors, n_chunks, payload_off, payload_bytes;
    uint64_t sums_hash;   /* of the chunk hashes */
    uint64_t header_hash; /* of the header up to here and the tensor table */
} cache_header;

typedef struct cache_tensor {
    uint32_t type, unused;
    int64_t rows, cols;
    uint64_t src_off; /* in the model file */
    uint64_t dst_off; /* in the packed bytes */
} cache_tensor;

struct llc_pack_cache {
    int dfd, fd;
    char name[192], tmp[240];
    cache_header h;
    cache_tensor *tab;
    uint64_t *sums;
    uint64_t done; /* packed bytes written */
};

/* ---- hashing: four independent multiply-xorshift lanes (each step a bijection of its lane, so one
 * changed word always changes the result), about memory speed */

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed) {
    const uint64_t K = 0x9e3779b97f4a7c15ull;
    const uint8_t *b = p;
    uint64_t h[4] = {seed, seed + K, seed + 2 * K, seed + 3 * K};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, b + i + 8 * l, 8);
            h[l] = (h[l] ^ w) * K;
            h[l] ^= h[l] >> 29;
        }
    for (; i < n; i++) {
        h[0] = (h[0] ^ b[i]) * K;
        h[0] ^= h[0] >> 29;
    }
    uint64_t r = mix(h[0] ^ n);
    for (int l = 1; l < 4; l++) r = mix(r ^ h[l]);
    return r;
}

static uint64_t model_sample(const llc_mapped_file *f) {
    size_t head = f->size < LLC_PACK_CACHE_CHUNK ? f->size : LLC_PACK_CACHE_CHUNK;
    uint64_t h = hash_bytes(f->data, head, f->size);
    if (f->size > 4096)
        for (int i = 0; i < 64; i++) h = hash_bytes(f->data + (f->size - 4096) / 63 * (size_t)i, 4096, h);
    return h;
}

/* The chunk's index seeds its hash: chunks swapped around do not match. */
typedef struct sum_job {
    const uint8_t *p;
    size_t len;
    uint64_t first; /* index of the chunk at p */
    uint64_t *sums; /* write: the hashes; check: the expected ones */
    bool check;
    int bad;
} sum_job;

static void sum_task(void *ctx, int ith, int nth) {
    sum_job *j = ctx;
    long n = (long)((j->len + LLC_PACK_CACHE_CHUNK - 1) / LLC_PACK_CACHE_CHUNK), lo, hi;
    llc_split(n, ith, nth, &lo, &hi);
    for (long c = lo; c < hi; c++) {
        size_t off = (size_t)c * LLC_PACK_CACHE_CHUNK, len = j->len - off < LLC_PACK_CACHE_CHUNK ? j->len - off : LLC_PACK_CACHE_CHUNK;
        uint64_t s = hash_bytes(j->p + off, len, j->first + (uint64_t)c);
        if (!j->check) j->sums[c] = s;
        else if (s != j->sums[c]) __atomic_store_n(&j->bad, 1, __ATOMIC_RELAXED);
    }
}

static uint64_t header_hash(const cache_header *h, const cache_tensor *tab) {
    return hash_bytes(tab, (size_t)h->n_tensors * sizeof *tab, hash_bytes(h, offsetof(cache_header, header_hash), 0));
}

/* ---- where the file is and what it must hold */

static bool cache_on(void) {
    const char *env = getenv("LLAMAC_PACK_CACHE");
    return !env || strcmp(env, "0") != 0;
}

/* The cache folder, opened; created (with a missing ~/.cache) when create. -1 when there is none. */
static int open_cache_dir(bool create) {
    char path[4096], parent[4096] = "";
    const char *env = getenv("LLAMAC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (env && *env) {
        n = snprintf(path, sizeof path, "%s", env);
    } else if (xdg && xdg[0] == '/') { /* the XDG spec: a relative value is ignored */
        snprintf(parent, sizeof parent, "%s", xdg);
        n = snprintf(path, sizeof path, "%s/llamac", xdg);
    } else if (home && home[0] == '/') {
        snprintf(parent, sizeof parent, "%s/.cache", home);
        n = snprintf(path, sizeof path, "%s/.cache/llamac", home);
    } else {
        return -1;
    }
    if (n < 0 || (size_t)n >= sizeof path) return -1; /* parent is shorter than path */
    if (create) {
        if (parent[0]) mkdir(parent, 0700);
        mkdir(path, 0700);
    }
    return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* <model file name>-<hash of its canonical path>-<isa>.llcpack: one file per model and ISA, which a
 * changed model's new cache replaces. */
static void cache_name(const llamac_model *m, char *out, size_t cap) {
    const char *base = strrchr(m->path, '/');
    base = base ? base + 1 : m->path;
    char clean[81];
    size_t k = 0;
    for (; base[k] && k < sizeof clean - 1; k++) {
        char c = base[k];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || (c == '.' && k > 0);
        clean[k] = ok ? c : '_';
    }
    clean[k] = 0;
    snprintf(out, cap, "%s-%016llx-%s.llcpack", clean, (unsigned long long)hash_bytes(m->path, strlen(m->path), 0),
             llc_kernels_get()->name);
}

/* The header and tensor table this process would write for W[0..n) (without the hashes); false when
 * the cache is off or the model is not one file all of whose packed matrices lie in its mapping. */
static bool expect(const llamac_model *m, llc_tensor *const *W, int n, cache_header *h, cache_tensor **tab_out) {
    if (!cache_on() || !m->path || m->n_maps || n <= 0) return false;
    const llc_mapped_file *f = m->gguf ? &m->gguf->map : &m->map;
    if (!f->owns_map || !f->data) return false;
    cache_tensor *tab = calloc((size_t)n, sizeof *tab);
    if (!tab) return false;
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *d = W[i]->data;
        size_t bytes = W[i]->row_bytes * (size_t)W[i]->n_rows;
        if (d < f->data || bytes > f->size || (size_t)(d - f->data) > f->size - bytes) {
            free(tab);
            return false;
        }
        tab[i] = (cache_tensor){W[i]->type, 0, W[i]->n_rows, W[i]->n_cols, (uint64_t)(d - f->data), off};
        off += llc_tensor_packed_bytes(W[i]);
    }
    memset(h, 0, sizeof *h);
    memcpy(h->magic, "LLCPACK", 8);
    h->version = LAYOUT_VERSION;
    h->header_bytes = sizeof *h;
    snprintf(h->isa, sizeof h->isa, "%s", llc_kernels_get()->name);
    h->model_size = f->size;
    h->model_dev = f->dev;
    h->model_ino = f->ino;
    h->model_mtime_ns = f->mtime_ns;
    h->model_sample = model_sample(f);
    h->n_tensors = (uint64_t)n;
    h->n_chunks = (off + LLC_PACK_CACHE_CHUNK - 1) / LLC_PACK_CACHE_CHUNK;
    h->payload_bytes = off;
    uint64_t tables = sizeof *h + (uint64_t)n * sizeof *tab + h->n_chunks * 8;
    h->payload_off = (tables + PAYLOAD_ALIGN - 1) & ~(PAYLOAD_ALIGN - 1);
    *tab_out = tab;
    return true;
}

static bool pread_all(int fd, void *buf, size_t n, uint64_t off) {
    for (size_t got = 0; got < n;) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

static bool pwrite_all(int fd, const void *buf, size_t n, uint64_t off) {
    for (size_t put = 0; put < n;) {
        ssize_t r = pwrite(fd, (const char *)buf + put, n - put, (off_t)(off + put));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        put += (size_t)r;
    }
    return true;
}

static void bind(llamac_model *m, llc_tensor *const *W, int n, const cache_tensor *tab, uint8_t *base, size_t size,
                 uint64_t payload_off) {
    for (int i = 0; i < n; i++) W[i]->packed = base + payload_off + tab[i].dst_off;
    m->packed_mem = base;
    m->packed_bytes = size;
}

/* Maps the whole file read-only. The packed bytes are read by every decode step: mapped at once
 * (from the page cache) rather than faulted in page by page. */
static uint8_t *map_cache(int fd, size_t size) {
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

bool llc_pack_cache_load(llamac_model *m, llc_pool *pool, llc_tensor *const *W, int n) {
    cache_header want, got;
    cache_tensor *tab = NULL, *tab_got = NULL;
    uint64_t *sums = NULL;
    uint8_t *base = NULL;
    bool ok = false;
    if (!expect(m, W, n, &want, &tab)) return false;
    int dfd = open_cache_dir(false), fd = -1;
    char name[192];
    cache_name(m, name, sizeof name);
    /* O_NONBLOCK: a FIFO planted at the name must not block the open; O_NOFOLLOW: nor a symlink lead
     * elsewhere. */
    if (dfd >= 0) fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (dfd >= 0) close(dfd);
    if (fd < 0) goto out;
    struct stat st;
    uint64_t size = want.payload_off + want.payload_bytes;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) goto out;
    tab_got = malloc((size_t)want.n_tensors * sizeof *tab_got);
    sums = malloc((size_t)want.n_chunks * sizeof *sums);
    if (!tab_got || !sums || !pread_all(fd, &got, sizeof got, 0) ||
        !pread_all(fd, tab_got, (size_t)want.n_tensors * sizeof *tab_got, sizeof got) ||
        !pread_all(fd, sums, (size_t)want.n_chunks * sizeof *sums, sizeof got + want.n_tensors * sizeof *tab_got))
        goto out;
    if (memcmp(&got, &want, offsetof(cache_header, sums_hash)) != 0 ||
        memcmp(tab_got, tab, (size_t)want.n_tensors * sizeof *tab) != 0 ||
        got.sums_hash != hash_bytes(sums, (size_t)want.n_chunks * sizeof *sums, 0) || got.header_hash != header_hash(&got, tab))
        goto out;
    base = map_cache(fd, (size_t)size);
    if (!base) goto out;
    sum_job j = {base + want.payload_off, (size_t)want.payload_bytes, 0, sums, true, 0};
    llc_pool_run(pool, sum_task, &j);
    if (j.bad) goto out;
    bind(m, W, n, tab, base, (size_t)size, want.payload_off);
    ok = true;
out:
    if (!ok && base) munmap(base, (size_t)size);
    if (fd >= 0) close(fd);
    free(tab);
    free(tab_got);
    free(sums);
    return ok;
}

/* Whether the name is free or holds a regular file (a stale cache): anything else there (a symlink,
 * a folder, a FIFO) is not ours to replace. */
static bool name_replaceable(int dfd, const char *name) {
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT;
    return S_ISREG(st.st_mode);
}

/* Removes the temporary files of name left by writers that died (killed while writing): the pid in
 * ".<name>.<pid>.<n>.tmp" no longer exists. Removing a live writer's file by mistake (a pid of another
 * namespace) costs nothing but that writer's rename: it keeps its mapping of the file. */
static void remove_dead_temps(int dfd, const char *name) {
    int fd = dup(dfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return;
    }
    size_t nl = strlen(name);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *f = e->d_name;
        size_t fl = strlen(f);
        if (f[0] != '.' || fl < nl + 6 || strncmp(f + 1, name, nl) != 0 || f[1 + nl] != '.' || strcmp(f + fl - 4, ".tmp") != 0)
            continue;
        char *end;
        long pid = strtol(f + nl + 2, &end, 10);
        if (pid > 0 && *end == '.' && kill((pid_t)pid, 0) != 0 && errno == ESRCH) unlinkat(dfd, f, 0);
    }
    closedir(d);
}

llc_pack_cache *llc_pack_cache_create(const llamac_model *m, llc_tensor *const *W, int n) {
    llc_pack_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->dfd = c->fd = -1;
    if (!expect(m, W, n, &c->h, &c->tab)) goto fail;
    c->sums = calloc((size_t)c->h.n_chunks, sizeof *c->sums);
    c->dfd = open_cache_dir(true);
    if (!c->sums || c->dfd < 0) goto fail;
    cache_name(m, c->name, sizeof c->name);
    if (!name_replaceable(c->dfd, c->name)) goto fail;
    remove_dead_temps(c->dfd, c->name);
    /* The cache doubles the disk a model takes: not on a file system it would leave with under 5% free. */
    struct statvfs vfs;
    uint64_t need = c->h.payload_off + c->h.payload_bytes;
    if (fstatvfs(c->dfd, &vfs) != 0 || (uint64_t)vfs.f_bavail * vfs.f_frsize < need + (uint64_t)vfs.f_blocks * vfs.f_frsize / 20)
        goto fail;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (int attempt = 0; attempt < 8 && c->fd < 0; attempt++) {
        snprintf(c->tmp, sizeof c->tmp, ".%s.%ld.%ld.tmp", c->name, (long)getpid(), (long)ts.tv_nsec + attempt);
        c->fd = openat(c->dfd, c->tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (c->fd < 0 && errno != EEXIST) break;
    }
    if (c->fd < 0) goto fail;
    return c;
fail:
    llc_pack_cache_abort(c);
    return NULL;
}

size_t llc_pack_cache_write(llc_pack_cache *c, llc_pool *pool, const void *buf, size_t len, bool last) {
    /* In whole 2 MiB from a 2 MiB boundary: the page cache then takes the file in 2 MiB folios, which
     * the mapping uses as huge pages (fewer TLB misses in decode, as with anonymous huge pages). */
    size_t bytes = last ? len : len / PAYLOAD_ALIGN * PAYLOAD_ALIGN;
    uint64_t first = c->done / LLC_PACK_CACHE_CHUNK;
    if (c->done % LLC_PACK_CACHE_CHUNK || bytes > c->h.payload_bytes - c->done) return (size_t)-1;
    if (bytes == 0) return 0;
    sum_job j = {buf, bytes, first, c->sums + first, false, 0};
    llc_pool_run(pool, sum_task, &j);
    if (!pwrite_all(c->fd, buf, bytes, c->h.payload_off + c->done)) return (size_t)-1;
    c->done += bytes;
    return bytes;
}

bool llc_pack_cache_finish(llc_pack_cache *c, llamac_model *m, llc_tensor *const *W, int n) {
    cache_header *h = &c->h;
    size_t size = (size_t)(h->payload_off + h->payload_bytes);
    size_t tab_bytes = (size_t)h->n_tensors * sizeof *c->tab;
    if (c->done != h->payload_bytes || (uint64_t)n != h->n_tensors) goto fail;
    h->sums_hash = hash_bytes(c->sums, (size_t)h->n_chunks * sizeof *c->sums, 0);
    h->header_hash = header_hash(h, c->tab);
    if (!pwrite_all(c->fd, h, sizeof *h, 0) || !pwrite_all(c->fd, c->tab, tab_bytes, sizeof *h) ||
        !pwrite_all(c->fd, c->sums, (size_t)h->n_chunks * sizeof *c->sums, sizeof *h + tab_bytes))
        goto fail;
    uint8_t *base = map_cache(c->fd, size);
    if (!base) goto fail;
    bind(m, W, n, c->tab, base, size, h->payload_off);
    /* The mapping holds the file whether or not it gets its name (a folder that lost its write
     * permission, or a symlink planted meanwhile: then the next load simply misses). */
    if (!name_replaceable(c->dfd, c->name) || renameat(c->dfd, c->tmp, c->dfd, c->name) != 0) unlinkat(c->dfd, c->tmp, 0);
    c->tmp[0] = 0;
    llc_pack_cache_abort(c);
    return true;
fail:
    llc_pack_cache_abort(c);
    return false;
}

void llc_pack_cache_abort(llc_pack_cache *c) {
    if (!c) return;
    if (c->fd >= 0) {
        close(c->fd);
        if (c->tmp[0]) unlinkat(c->dfd, c->tmp, 0);
    }
    if (c->dfd >= 0) close(c->dfd);
    free(c->tab);
    free(c->sums);
    free(c);
}
