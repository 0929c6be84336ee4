#ifndef LLC_SAFETENSORS_H
#define LLC_SAFETENSORS_H
/*
 * safetensors (Hugging Face's weight files), read and written:
 *
 *   u64 little-endian N | N bytes of JSON (may end in spaces) | data section
 *
 * The JSON maps each tensor name to {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]}
 * with offsets relative to the data section; "__metadata__" holds free-form strings and is ignored.
 * Parsing works on bytes in memory (a mapped file, or a fuzzer's input) and validates everything a
 * caller later relies on: after llc_safetensors_parse succeeds, every tensor's bytes lie inside the
 * data section, no two tensors share a byte, and each holds exactly product(shape) elements.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "llamac.h"

/* Like the reference implementation: a longer header is an attack, not a model. */
#define LLC_ST_MAX_HEADER (100u * 1000u * 1000u)
#define LLC_ST_MAX_DIMS 8

typedef struct llc_st_tensor {
    const char *name;    /* NUL-terminated (owned by the table) */
    const char *dtype;   /* the file's dtype name: "F32", "BF16", "I64", … (static string) */
    int type;            /* LLC_F32, LLC_F16 or LLC_BF16; -1 for a dtype llamac does not compute with */
    int n_dims;
    int64_t shape[LLC_ST_MAX_DIMS]; /* outermost first, as torch: a matrix is [rows, cols] */
    uint64_t n_elements;
    const uint8_t *data; /* inside the parsed bytes */
    uint64_t nbytes;
} llc_st_tensor;

typedef struct llc_safetensors {
    llc_st_tensor *tensors; /* sorted by name (names are unique) */
    int n_tensors;
    char *names;            /* pool of the names */
    uint64_t data_offset;   /* 8 + N */
} llc_safetensors;

/* Parses and validates the header of the size bytes at data (which must outlive *out). On failure
 * *out holds nothing to free and err says what is wrong, without a file name (callers prefix it). */
bool llc_safetensors_parse(const uint8_t *data, size_t size, llc_safetensors *out, llamac_error *err);
void llc_safetensors_free(llc_safetensors *st);
/* The tensor called name, or NULL. */
const llc_st_tensor *llc_safetensors_find(const llc_safetensors *st, const char *name);

/* A tensor to write. */
typedef struct llc_st_out {
    const char *name;
    uint32_t type;       /* LLC_F32, LLC_F16 or LLC_BF16 */
    int64_t rows, cols;  /* rows <= 1: a vector, shape [cols] */
    uint64_t nbytes;
} llc_st_out;
/* Puts tensor i's nbytes into dst. */
typedef bool (*llc_st_bytes_fn)(void *ctx, int i, void *dst, uint64_t nbytes, llamac_error *err);
/* Writes t[0..n) to f (path names it in messages) as the safetensors library lays a file out: the
 * header ("__metadata__": {"format": "pt"}) padded with spaces to a multiple of 8, the 4-byte tensors
 * before the 2-byte ones and by name within each, so every tensor starts aligned for its element type
 * and a reader can use it in place. Tensors are produced one at a time. */
bool llc_safetensors_write(FILE *f, const char *path, const llc_st_out *t, int n, llc_st_bytes_fn bytes, void *ctx,
                           llamac_error *err);

#endif
