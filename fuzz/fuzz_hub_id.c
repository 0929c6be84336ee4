/*
 * Fast libFuzzer target for the hub id parser (llc_hub_parse_id: what -m ORG/NAME[:QUANT] and
 * `llamac pull` accept) and the path and revision checks the hub client applies to names from the hub
 * and the command line (llc_hub_safe_path, llc_hub_safe_revision). An accepted id must be made of
 * parts that rebuild the input exactly and hold no '/' or '..'; an accepted path must have no absolute
 * start, no '..' or '.' component and no backslash.
 *
 *   FUZZ: speed=fast seeds=hub_id
 *
 *   scripts/fuzz.sh hub_id
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "hub/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0; /* an embedded NUL ends the string, as it would in argv or a header */
    llamac_error err = {{0}};
    llc_hub_id id;
    if (llc_hub_parse_id(s, &id, &err)) {
        char again[sizeof id.repo + sizeof id.quant + 2];
        snprintf(again, sizeof again, "%s%s%s", id.repo, id.quant[0] ? ":" : "", id.quant);
        if (strcmp(again, s) || strstr(id.org, "..") || strstr(id.name, "..") || strchr(id.name, '/') || !id.org[0] ||
            !id.name[0])
            abort();
    } else {
        check_message(&err);
    }
    if (llc_hub_safe_path(s) || llc_hub_safe_revision(s)) {
        if (s[0] == '/' || strstr(s, "//") || strchr(s, '\\') || !strcmp(s, "..") || !strncmp(s, "../", 3) ||
            strstr(s, "/../") || (strlen(s) >= 3 && !strcmp(s + strlen(s) - 3, "/..")))
            abort();
    }
    free(s);
    return 0;
}
