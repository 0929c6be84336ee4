/*
 * Fast libFuzzer target: bytes -> the zip directory reader (end records, zip64, central and local
 * headers) and llc_torch_open (the directory, data.pkl through the restricted unpickler, each tensor
 * located in its storage entry). No model load (fuzz_zip.c does that).
 *
 *   FUZZ: speed=fast dict=zip,pickle seeds=zip_parse,zip
 *
 *   scripts/fuzz.sh zip_parse
 */
#include <stdint.h>

#include "formats/pickle.h"
#include "formats/zip.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse_zip_and_torch(data, size);
    return 0;
}
