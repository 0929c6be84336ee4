#ifndef LLC_PICKLE_H
#define LLC_PICKLE_H
/*
 * PyTorch checkpoints (torch.save's zip format) without Python: a restricted unpickler for the
 * archive's data.pkl and the lookup of each tensor's bytes in the archive; and a writer of such
 * archives for a state dict of plain tensors.
 *
 * A pickle is a program for a stack machine whose GLOBAL/REDUCE opcodes import and call arbitrary
 * Python callables; torch.load runs it (hence arbitrary code execution from a model file). This reader
 * interprets the opcodes that torch.save emits (protocols 2 to 5) over plain data -- ints, floats,
 * strings, tuples, lists, dicts -- and knows exactly these names: collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, the typed storage classes
 * (torch.FloatStorage, torch.HalfStorage, torch.BFloat16Storage, ... ), torch.UntypedStorage and the
 * dtype objects. Anything else (os.system, builtins.eval, ...) is refused by name. Nothing is
 * executed: "calling" _rebuild_tensor_v2 records a tensor description. Memory is bounded by the
 * pickle's length (every object, stack slot and memo slot costs at least one opcode byte), and nothing
 * recurses.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "formats/zip.h"
#include "llamac.h"

#define LLC_TORCH_MAX_DIMS 8
/* Element type of a tensor whose dtype llamac does not compute with (int64, float64, ...). */
#define LLC_TORCH_OTHER 0xFFFFFFFFu

typedef struct llc_pickle_tensor {
    const char *name;          /* the state dict key (points into the pickle bytes), name_len bytes */
    size_t name_len;
    uint32_t type;             /* LLC_F32, LLC_F16, LLC_BF16, or LLC_TORCH_OTHER */
    const char *dtype;         /* torch's name of the storage class, e.g. "BFloat16Storage" */
    uint32_t elem_size;        /* bytes per element */
    int n_dims;
    int64_t shape[LLC_TORCH_MAX_DIMS];
    const char *key;           /* storage key: the archive entry <top>/data/<key> */
    size_t key_len;
    uint64_t storage_numel;    /* elements the storage holds (from the persistent id) */
    uint64_t offset;           /* first element of the tensor in its storage */
    uint64_t n_elements;       /* product of shape */
} llc_pickle_tensor;

/* The tensors of a state dict (the pickle's top-level dict or OrderedDict; entries that are not
 * tensors are skipped). Each is checked: known storage class, contiguous row-major strides, within
 * its storage's element count. Sorted by name, names unique. */
typedef struct llc_pickle_tensors {
    llc_pickle_tensor *v;
    size_t n;
} llc_pickle_tensors;

/* Runs the restricted unpickler over data[0..size). path names the file in messages ("refusing to
 * load PATH: pickle asks for os.system (...)"). */
bool llc_pickle_read_tensors(const uint8_t *data, size_t size, const char *path, llc_pickle_tensors *out,
                             llamac_error *err);
void llc_pickle_tensors_free(llc_pickle_tensors *t);

/* A tensor of a checkpoint, located in the mapped archive. */
typedef struct llc_torch_tensor {
    const char *name;          /* into the pickle bytes, name_len bytes */
    size_t name_len;
    uint32_t type;             /* LLC_F32, LLC_F16, LLC_BF16, or LLC_TORCH_OTHER */
    const char *dtype;
    int n_dims;
    int64_t shape[LLC_TORCH_MAX_DIMS];
    uint64_t n_elements;
    const uint8_t *data;       /* first byte of the tensor, inside the archive */
    uint64_t nbytes;
    const uint8_t *storage;    /* first byte of its storage: tensors sharing storage share weights */
} llc_torch_tensor;

typedef struct llc_torch_file {
    llc_torch_tensor *tensors; /* sorted by name */
    size_t n_tensors;
} llc_torch_file;

/* Opens a torch.save archive held in data[0..size) (a mapped .pth file): the zip directory, the
 * pickle <top>/data.pkl (whichever top-level folder holds it), and every tensor's bytes in the
 * entry <top>/data/<key>, which must hold the whole storage. Little-endian archives only. */
bool llc_torch_open(llc_torch_file *f, const uint8_t *data, size_t size, const char *path, llamac_error *err);
void llc_torch_close(llc_torch_file *f);
/* The tensor named name (NUL-terminated), or NULL. */
const llc_torch_tensor *llc_torch_find(const llc_torch_file *f, const char *name);

/* ---- writer ---------------------------------------------------------------------------------------- */

/* A tensor of a state dict to write: row-major, its whole storage. */
typedef struct llc_torch_out {
    const char *name;  /* the state dict key */
    uint32_t type;     /* LLC_F32, LLC_F16 or LLC_BF16 */
    int n_dims;        /* 1 or 2 */
    int64_t shape[2];
    int storage;       /* its storage: 0, 1, ... in order of first use; a later tensor may reuse one (a view) */
} llc_torch_out;
/* The bytes of tensor i's storage (asked once, for the first tensor that uses it); *data stays valid
 * until the next call. */
typedef bool (*llc_torch_bytes_fn)(void *ctx, int i, const void **data, uint64_t *n, llamac_error *err);
/* Writes to f (path names it in messages) the torch.save archive of the state dict t[0..n) (an
 * OrderedDict in this order), as torch writes it (llc_zip_add's layout) under the folder top:
 *   top/data.pkl     pickle protocol 2 of the state dict
 *   top/byteorder    "little"
 *   top/data/<k>     storage k's raw little-endian bytes
 *   top/version      "3\n" */
bool llc_torch_write(FILE *f, const char *path, const char *top, const llc_torch_out *t, int n, llc_torch_bytes_fn bytes,
                     void *ctx, llamac_error *err);

#endif
