#ifndef LLC_GGUF_H
#define LLC_GGUF_H
/*
 * GGUF (v2, v3) reader and writer. The reader validates every count, length and offset against the
 * mapped bytes before use; after llc_gguf_open succeeds, every pointer it hands out lies inside the file.
 */
#include <stdint.h>
#include <stdio.h>

#include "base/mapped_file.h"
#include "llamac.h"

enum llc_gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6,
    GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10, GGUF_I64 = 11, GGUF_F64 = 12,
    GGUF_NTYPES
};

/* A string inside the file: not NUL-terminated. */
typedef struct llc_str {
    const char *ptr;
    uint64_t len;
} llc_str;

typedef struct llc_gguf_kv {
    llc_str key;
    uint32_t type;
    union {
        uint64_t u;   /* U8..U64, BOOL (zero-extended) */
        int64_t i;    /* I8..I64 (sign-extended) */
        double f;     /* F32, F64 */
        llc_str str;  /* STRING */
        struct {
            uint32_t type;        /* element type (may itself be GGUF_ARRAY) */
            uint64_t n;           /* element count */
            const uint8_t *data;  /* serialized elements */
            uint64_t nbytes;
        } arr;
    } v;
} llc_gguf_kv;

typedef struct llc_gguf_tensor {
    llc_str name;
    uint32_t n_dims;
    int64_t ne[4];       /* ne[0]: innermost (row length); missing dims are 1 */
    uint32_t type;       /* ggml type id (see kernels/types.h) */
    uint64_t offset;     /* relative to the data section */
    uint64_t nbytes;
    const void *data;    /* in the mapped file */
} llc_gguf_tensor;

typedef struct llc_gguf_file {
    llc_mapped_file map;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    llc_gguf_kv *kv;
    llc_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;
} llc_gguf_file;

/* Opens and fully validates a file. */
llc_gguf_file *llc_gguf_open(const char *path, llamac_error *err);
/* Same on bytes the caller keeps alive (fuzzing, tests). */
llc_gguf_file *llc_gguf_open_memory(const void *data, size_t size, llamac_error *err);
/* The header alone: size bytes from the file's start that hold at least the metadata and the tensor
 * list (the data section may be cut off or absent). Tensor data pointers are NULL. */
llc_gguf_file *llc_gguf_open_header(const void *data, size_t size, llamac_error *err);
void llc_gguf_close(llc_gguf_file *g);

const llc_gguf_kv *llc_gguf_find(const llc_gguf_file *g, const char *key);
const llc_gguf_tensor *llc_gguf_find_tensor(const llc_gguf_file *g, const char *name);
bool llc_str_eq(llc_str s, const char *c);
const char *llc_gguf_type_name(uint32_t vtype);

/* Typed getters: true and *out set when the key exists with a compatible type (any integer type for
 * the integer getters, if the value fits; F32/F64 for float). False if missing; a present key of the
 * wrong type also sets err and returns false, so callers can tell with err->message[0]. */
bool llc_gguf_get_u32(const llc_gguf_file *g, const char *key, uint32_t *out, llamac_error *err);
bool llc_gguf_get_f32(const llc_gguf_file *g, const char *key, float *out, llamac_error *err);
bool llc_gguf_get_str(const llc_gguf_file *g, const char *key, llc_str *out, llamac_error *err);
bool llc_gguf_get_bool(const llc_gguf_file *g, const char *key, bool *out, llamac_error *err);
/* Array access: kv must be an array of the named element type. */
const llc_gguf_kv *llc_gguf_get_arr(const llc_gguf_file *g, const char *key, uint32_t elem_type, llamac_error *err);
/* Fills out[0..n) with the strings of a string array (n = kv->v.arr.n). Validated at open. */
void llc_gguf_arr_strings(const llc_gguf_kv *kv, llc_str *out);
/* Element i of a numeric array, converted. */
double llc_gguf_arr_num(const llc_gguf_kv *kv, uint64_t i);
/* Prints a value compactly (arrays: first few elements) for `llamac info`. */
void llc_gguf_print_value(FILE *fp, const llc_gguf_kv *kv);

/* ---- writer ---------------------------------------------------------------------------------- */

typedef struct llc_gguf_writer llc_gguf_writer;
llc_gguf_writer *llc_gguf_writer_create(void);
void llc_gguf_writer_free(llc_gguf_writer *w);
void llc_gguf_write_u32(llc_gguf_writer *w, const char *key, uint32_t v);
void llc_gguf_write_i32(llc_gguf_writer *w, const char *key, int32_t v);
void llc_gguf_write_f32(llc_gguf_writer *w, const char *key, float v);
void llc_gguf_write_bool(llc_gguf_writer *w, const char *key, bool v);
void llc_gguf_write_str(llc_gguf_writer *w, const char *key, const char *v);
/* Arrays: strs may contain any bytes (lens given); numbers as raw little-endian elements. */
void llc_gguf_write_str_arr(llc_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n);
void llc_gguf_write_arr(llc_gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, uint64_t n);
/* Declares a tensor (ne[0] is the row length). Its bytes come from data at save time (kept alive by the
 * caller until then) or, when data is NULL, from the fill callback, one tensor at a time, so models
 * larger than memory can be written. */
void llc_gguf_writer_add_tensor(llc_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                            const void *data, uint64_t nbytes);
typedef bool (*llc_gguf_fill_fn)(void *ctx, uint64_t index, void *dst, uint64_t nbytes, llamac_error *err);
/* Written through a temporary file renamed over path when complete (base/outfile.h). */
bool llc_gguf_writer_save(llc_gguf_writer *w, const char *path, llc_gguf_fill_fn fill, void *ctx, llamac_error *err);

#endif
