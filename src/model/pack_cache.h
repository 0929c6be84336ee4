#ifndef LLC_PACK_CACHE_H
#define LLC_PACK_CACHE_H
/*
 * The packed weights of a single-file model kept on disk (model_pack.c makes them): the next process
 * maps the file instead of repacking into fresh anonymous memory, which the kernel would first have to
 * zero (most of the load time) and which no two processes could share.
 *
 * The file lives in the cache folder ($LLAMAC_CACHE_DIR, else $XDG_CACHE_HOME/llamac, else
 * ~/.cache/llamac), named after the model's canonical path and the kernels' ISA. It is used only when
 * all of it matches what this process would make: the model file's device, inode, size, mtime and a
 * hash of sampled bytes, llamac's packed layout version, every packed matrix's type, shape and source
 * offset, and the hash of every 1 MiB of packed bytes (checked when mapped). Anything else (missing,
 * short, garbage, another model or layout) is a miss: the weights are repacked in memory as without
 * a cache, and a fresh file replaces the stale one. LLAMAC_PACK_CACHE=0 turns the cache off.
 */
#include <stdbool.h>
#include <stddef.h>

#include "base/threadpool.h"
#include "model/model.h"

/* Bytes of packed data hashed together; also the unit writes go out in. */
#define LLC_PACK_CACHE_CHUNK ((size_t)1 << 20)

typedef struct llc_pack_cache llc_pack_cache;

/* Binds W[0..n) (the packable matrices, packed one after another in this order) to the cache file's
 * copy when it matches; sets m->packed_mem/packed_bytes to the mapping. false: a miss, nothing changed. */
bool llc_pack_cache_load(llamac_model *m, llc_pool *pool, llc_tensor *const *W, int n);

/* A new cache file for W[0..n), written as a temporary file beside its final name; NULL when the
 * cache is off, the model cannot be cached, or the folder cannot take it (unwritable, nearly full). */
llc_pack_cache *llc_pack_cache_create(const llamac_model *m, llc_tensor *const *W, int n);
/* Writes the whole chunks at the start of buf[0..len) (all of it when last) as the next packed bytes;
 * returns the bytes written (the caller keeps the rest for the next call), or (size_t)-1 on failure. */
size_t llc_pack_cache_write(llc_pack_cache *c, llc_pool *pool, const void *buf, size_t len, bool last);
/* Completes the file after every packed byte was written, gives it its name, and binds W[0..n) (those
 * given to llc_pack_cache_create) to its mapping as llc_pack_cache_load does. Frees c; false: nothing bound (the caller packs in memory). */
bool llc_pack_cache_finish(llc_pack_cache *c, llamac_model *m, llc_tensor *const *W, int n);
/* Removes the temporary file and frees c. */
void llc_pack_cache_abort(llc_pack_cache *c);

#endif
