#ifndef LLC_GGUF_H
#define LLC_GGUF_H
/*
 * GGUF (v2, v3) reader and writer. The reader validates every count, length and offset against the
 * mapped bytes before use; after gguf_open succeeds, every pointer it hands out lies inside the file.
 */
#include <stdint.h>
#include <stdio.h>

#include "base/mapped_file.h"
#include "llamac.h"

enum gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6,
    GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10, GGUF_I64 = 11, GGUF_F64 = 12,
    GGUF_NTYPES
};

/* A string inside the file: not NUL-terminated. */
typedef struct llc_str {
    const char *ptr;
    uint64_t len;
} llc_str;

typedef struct gguf_kv {
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
} gguf_kv;

typedef struct gguf_tensor {
    llc_str name;
    uint32_t n_dims;
    int64_t ne[4];       /* ne[0]: innermost (row length); missing dims are 1 */
    uint32_t type;       /* ggml type id (see kernels/types.h) */
    uint64_t offset;     /* relative to the data section */
    uint64_t nbytes;
    const void *data;    /* in the mapped file */
} gguf_tensor;

typedef struct gguf_file {
    llc_mapped_file map;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;
} gguf_file;

/* Opens and fully validates a file. */
gguf_file *gguf_open(const char *path, llamac_error *err);
/* Same on bytes the caller keeps alive (fuzzing, tests). */
gguf_file *gguf_open_memory(const void *data, size_t size, llamac_error *err);
void gguf_close(gguf_file *g);

const gguf_kv *gguf_find(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
bool llc_str_eq(llc_str s, const char *c);
const char *gguf_type_name(uint32_t vtype);

/* Typed getters: true and *out set when the key exists with a compatible type (any integer type for
 * the integer getters, if the value fits; F32/F64 for float). False if missing; a present key of the
 * wrong type also sets err and returns false, so callers can tell with err->message[0]. */
bool gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, llamac_error *err);
bool gguf_get_f32(const gguf_file *g, const char *key, float *out, llamac_error *err);
bool gguf_get_str(const gguf_file *g, const char *key, llc_str *out, llamac_error *err);
bool gguf_get_bool(const gguf_file *g, const char *key, bool *out, llamac_error *err);
/* Array access: kv must be an array of the named element type. */
const gguf_kv *gguf_get_arr(const gguf_file *g, const char *key, uint32_t elem_type, llamac_error *err);
/* Fills out[0..n) with the strings of a string array (n = kv->v.arr.n). Validated at open. */
void gguf_arr_strings(const gguf_kv *kv, llc_str *out);
/* Element i of a numeric array, converted. */
double gguf_arr_num(const gguf_kv *kv, uint64_t i);
/* Prints a value compactly (arrays: first few elements) for `llamac info`. */
void gguf_print_value(FILE *fp, const gguf_kv *kv);

/* ---- writer ---------------------------------------------------------------------------------- */

typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_create(void);
void gguf_writer_free(gguf_writer *w);
void gguf_write_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_write_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_write_f32(gguf_writer *w, const char *key, float v);
void gguf_write_bool(gguf_writer *w, const char *key, bool v);
void gguf_write_str(gguf_writer *w, const char *key, const char *v);
/* Arrays: strs may contain any bytes (lens given); numbers as raw little-endian elements. */
void gguf_write_str_arr(gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n);
void gguf_write_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, uint64_t n);
/* Declares a tensor (ne[0] is the row length). Its bytes come from data at save time (kept alive by the
 * caller until then) or, when data is NULL, from the fill callback, one tensor at a time, so models
 * larger than memory can be written. */
void gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                            const void *data, uint64_t nbytes);
typedef bool (*gguf_fill_fn)(void *ctx, uint64_t index, void *dst, uint64_t nbytes, llamac_error *err);
/* Written through a temporary file renamed over path when complete (base/outfile.h). */
bool gguf_writer_save(gguf_writer *w, const char *path, gguf_fill_fn fill, void *ctx, llamac_error *err);

#endif
