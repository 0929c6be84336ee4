/*
 * libFuzzer target: bytes -> the restricted unpickler (formats/pickle.h) as it reads a checkpoint's
 * data.pkl. Every input must be refused with a one-line error or give tensors whose descriptions hold
 * together (inside their storage, contiguous, names unique and sorted); no sanitizer report, no hang,
 * memory bounded by the input's length.
 *
 *   FUZZ: speed=fast dict=pickle seeds=pickle
 *
 *   scripts/fuzz.sh pickle
 *   build-fuzz/fuzz_pickle fuzz/corpus/pickle -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>

#include "formats/pickle.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    llamac_error err = {{0}};
    llc_pickle_tensors t;
    if (!llc_pickle_read_tensors(data, size, "fuzz.pkl", &t, &err)) {
        check_message(&err);
        return 0;
    }
    check_pickle(&t, data, size);
    llc_pickle_tensors_free(&t);
    return 0;
}
