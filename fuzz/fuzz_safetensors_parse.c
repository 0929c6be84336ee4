/*
 * Fast libFuzzer target: safetensors bytes -> the header parser (its length prefix, the JSON and the
 * checks on every tensor entry) and the promises it makes: every tensor inside the data section, found
 * by name, no two sharing a byte. No model load (fuzz_safetensors.c does that).
 *
 *   FUZZ: speed=fast dict=json,safetensors seeds=safetensors_parse,safetensors
 *
 *   scripts/fuzz.sh safetensors_parse
 */
#include <stdint.h>

#include "formats/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    llc_safetensors st;
    llamac_error err = {{0}};
    if (!llc_safetensors_parse(data, size, &st, &err)) {
        check_message(&err);
        return 0;
    }
    if (st.data_offset > size) abort();
    check_safetensors(&st, data, size);
    llc_safetensors_free(&st);
    return 0;
}
