/*
 * libFuzzer target: bytes -> the restricted unpickler (formats/pickle.h) as it reads a checkpoint's
 * data.pkl. Every input must be refused with a one-line error or give tensors whose descriptions hold
 * together (inside their storage, contiguous, names unique and sorted); no sanitizer report, no hang,
 * memory bounded by the input's length.
 *
 *   scripts/fuzz.sh pickle
 *   build-fuzz/fuzz_pickle fuzz/corpus/pickle -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/pickle.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    llamac_error err = {{0}};
    llc_pickle_tensors t;
    if (!llc_pickle_read_tensors(data, size, "fuzz.pkl", &t, &err)) {
        check_message(&err);
        return 0;
    }
    for (size_t i = 0; i < t.n; i++) {
        const llc_pickle_tensor *p = &t.v[i];
        /* names and keys point into the input */
        if (p->name < (const char *)data || p->name + p->name_len > (const char *)data + size) abort();
        if (p->key < (const char *)data || p->key + p->key_len > (const char *)data + size) abort();
        touch(p->name, p->name_len);
        touch(p->key, p->key_len);
        if (p->offset > p->storage_numel || p->n_elements > p->storage_numel - p->offset) abort();
        if (p->n_dims < 0 || p->n_dims > LLC_TORCH_MAX_DIMS || p->elem_size == 0 || !p->dtype) abort();
        uint64_t n = 1;
        for (int d = 0; d < p->n_dims; d++) n *= (uint64_t)p->shape[d];
        if (n != p->n_elements) abort();
        if (i > 0) {
            size_t a = t.v[i - 1].name_len, b = p->name_len, m = a < b ? a : b;
            int c = memcmp(t.v[i - 1].name, p->name, m);
            if (c > 0 || (c == 0 && a >= b)) abort(); /* sorted, unique */
        }
    }
    llc_pickle_tensors_free(&t);
    return 0;
}
