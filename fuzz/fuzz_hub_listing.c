/*
 * Fast libFuzzer target for the hub's model listing ({endpoint}/api/models/{repo}/revision/{rev}),
 * untrusted JSON: llc_hub_parse_listing and then the file choice made from it (llc_hub_select) with a
 * quant, include and exclude globs picked by the first byte. Every listed name must pass
 * llc_hub_safe_path (no path leaves the snapshot), the commit must be 40 hex digits, and the file -m
 * would open must be one of the picked ones.
 *
 *   FUZZ: speed=fast dict=json seeds=hub_listing
 *
 *   scripts/fuzz.sh hub_listing
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "hub/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t n = size - 1;
    char *text = malloc(n ? n : 1);
    if (!text) return 0;
    memcpy(text, data + 1, n);
    llamac_error err = {{0}};
    llc_hub_listing l;
    if (!llc_hub_parse_listing(text, n, &l, &err)) {
        check_message(&err);
        free(text);
        return 0;
    }
    for (int i = 0; i < 40; i++)
        if (!isxdigit((unsigned char)l.sha[i])) abort();
    for (int i = 0; i < l.n; i++)
        if (!llc_hub_safe_path(l.files[i])) abort();
    static const char *const quants[] = {"", "Q4_K_M", "q8_0", "Q4_K"};
    static const char *const inc[] = {"original/*", "*.gguf"}, *const exc[] = {"*.bin", "sub/"};
    llc_hub_filter f = {.quant = quants[data[0] & 3]};
    if (data[0] & 4) f.include = inc, f.n_include = 2;
    if (data[0] & 8) f.exclude = exc, f.n_exclude = 2;
    bool *pick = calloc((size_t)l.n + 1, sizeof *pick);
    int main_file = -2;
    if (pick) {
        if (llc_hub_select(l.n, l.files, &f, pick, &main_file, &err)) {
            if (main_file < -1 || main_file >= l.n || (main_file >= 0 && !pick[main_file])) abort();
        } else {
            check_message(&err);
        }
    }
    free(pick);
    llc_hub_listing_free(&l);
    free(text);
    return 0;
}
