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
    llamac_error err = {{0}};
    llc_zip z;
    if (llc_zip_open(&z, data, size, "fuzz.pth", &err)) {
        check_zip(&z, data, size);
        llc_zip_close(&z);
    } else {
        check_message(&err);
    }
    llc_torch_file f;
    err.message[0] = 0;
    if (llc_torch_open(&f, data, size, "fuzz.pth", &err)) {
        check_torch(&f, data, size);
        llc_torch_close(&f);
    } else {
        check_message(&err);
    }
    return 0;
}
