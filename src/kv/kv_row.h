#ifndef LLC_KV_ROW_H
#define LLC_KV_ROW_H
/*
 * The KV cache's row format, in one place: which element types a cache can hold, how one position's
 * K (or V) row is laid out in the pool, how a row is written (rounded from f32 once, on its way in)
 * and how a layer's blocks are handed to attention (an llc_kv_view: block pointers, strides and the
 * element type, which attention's to_f32 kernel turns back into f32 tile by tile).
 *
 * A row is one position's kv_dim = n_kv_heads x head_dim values, head after head, in the pool's
 * element type: f32, f16, bf16, or q8_0 (ggml's blocks of 32 values with an fp16 scale, laid along
 * the row, so kv_dim must be a multiple of 32; a head need not start a block). Each layer's K (and V)
 * storage is [block][position in block][row]: position i of block b is (b * block_size + i) rows in.
 *
 * The forward pass (model/forward.c) only calls llc_kv_store and llc_kv_layer_view; the attention
 * kernels (kernels/attention.h) only read views. Nothing here allocates.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/attention.h"
#include "kernels/types.h"
#include "llamac.h"

typedef struct llc_kv_pool llc_kv_pool;

/* The pool's element type for a public KV type (LLC_F32, LLC_F16, LLC_BF16, LLC_Q8_0); -1 if t is not one. */
int llc_kv_elem_type(llamac_kv_type t);
/* Bytes of one position's K (or V) row of kv_dim values of the element type; 0 when the type is not
 * a KV type or kv_dim is not a multiple of its block. */
size_t llc_kv_row_bytes_of(enum llc_type type, int kv_dim);
/* true if a pool of rows of kv_dim values can have this element type; false with the reason in err. */
bool llc_kv_check_type(enum llc_type type, int kv_dim, llamac_error *err);
/* The element type of a public KV type that rows of kv_dim values can have: -1 with the reason in err
 * (an unknown type, or q8_0 with kv_dim not a multiple of 32). Sessions and the engine check with this. */
int llc_kv_elem_type_for(llamac_kv_type t, int kv_dim, llamac_error *err);

/* Stores position pos's K and V rows (kv_dim f32 each) of one layer of the sequence whose block table
 * is `blocks` (a block covering pos must be in it), converted to the pool's element type. */
void llc_kv_store(llc_kv_pool *p, int layer, const int32_t *blocks, int pos, const float *k, const float *v);

/* One layer's view of a sequence: the first n_blocks blocks of its block table `blocks`, KV heads of
 * head_dim values. kp and vp (n_blocks entries each) receive the K and V block pointers the view
 * points at: they must outlive it. */
llc_kv_view llc_kv_layer_view(const llc_kv_pool *p, int layer, const int32_t *blocks, int n_blocks, int head_dim,
                              const void **kp, const void **vp);

#endif
