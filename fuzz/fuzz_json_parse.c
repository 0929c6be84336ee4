/*
 * Fast libFuzzer target for the strict JSON reader every JSON input goes through (llc_json_parse:
 * config files, tokenizer files, safetensors headers, batch lines, HTTP request bodies). The first
 * byte picks the flags and a value bound, the rest is the text, given by length (not NUL-terminated).
 * An accepted text must print back to JSON that the reader accepts again with the same verdict on
 * duplicates (cJSON_PrintUnformatted of the tree): a round trip through the two parsers.
 *
 *   FUZZ: speed=fast dict=json seeds=json_parse
 *
 *   scripts/fuzz.sh json_parse
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned flags = (data[0] & 1) ? LLC_JSON_NO_NUL_ESCAPE : 0;
    uint64_t max_values = (data[0] & 2) ? 64 : 0;
    /* a copy of exactly the text, so reading one byte past it is caught by ASan */
    size_t n = size - 1;
    char *text = malloc(n ? n : 1);
    if (!text) return 0;
    memcpy(text, data + 1, n);
    llamac_error err = {{0}};
    cJSON *v = llc_json_parse_opts(text, n, "fuzz", flags, max_values, &err);
    if (!v) {
        check_message(&err);
    } else {
        char *printed = cJSON_PrintUnformatted(v);
        if (printed) {
            llamac_error err2 = {{0}};
            /* cJSON prints what it read; the strict reader must take it back (no bound on values: the
             * printed text may spell numbers differently but holds the same count) */
            cJSON *again = llc_json_parse_opts(printed, strlen(printed), "fuzz", 0, 0, &err2);
            if (!again) abort();
            cJSON_Delete(again);
            free(printed);
        }
        cJSON_Delete(v);
    }
    free(text);
    return 0;
}
