/* The hub client's parsing and choices, apart from the network (so the fuzz targets reach them). */
#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/json.h"
#include "hub/hub.h"

#define MAX_LISTING_FILES 200000

static bool id_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.'; }

static bool valid_part(const char *s, size_t n) {
    if (n == 0 || n > LLC_HUB_PART_MAX) return false;
    if (s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        if (!id_char(s[i])) return false;
        if (i && (s[i] == '-' || s[i] == '.') && s[i - 1] == s[i]) return false;
    }
    return true;
}

bool llc_hub_parse_id(const char *s, llc_hub_id *id, llamac_error *err) {
    char shown[128];
    llc_clip(s, strlen(s), 100, shown, sizeof shown);
    const char *slash = strchr(s, '/');
    if (!slash || strchr(slash + 1, '/'))
        return llc_fail(err, "'%s' is not a hub id: it needs the form ORG/NAME[:QUANT]", shown);
    const char *colon = strchr(slash + 1, ':');
    size_t org_n = (size_t)(slash - s), name_n = colon ? (size_t)(colon - slash - 1) : strlen(slash + 1);
    if (!valid_part(s, org_n) || !valid_part(slash + 1, name_n))
        return llc_fail(err, "'%s' is not a hub id: ORG and NAME are 1 to %d letters, digits, '_', '-', '.' "
                             "(not at either end, not doubled)", shown, LLC_HUB_PART_MAX);
    memset(id, 0, sizeof *id);
    if (colon) {
        const char *q = colon + 1;
        size_t qn = strlen(q);
        bool ok = qn > 0 && qn <= LLC_HUB_QUANT_MAX;
        for (size_t i = 0; ok && i < qn; i++) ok = id_char(q[i]);
        if (!ok) return llc_fail(err, "'%s': the quantization after ':' is 1 to %d letters, digits, '_', '-', '.'", shown,
                                 LLC_HUB_QUANT_MAX);
        memcpy(id->quant, q, qn);
    }
    memcpy(id->org, s, org_n);
    memcpy(id->name, slash + 1, name_n);
    snprintf(id->repo, sizeof id->repo, "%s/%s", id->org, id->name);
    return true;
}

bool llc_hub_is_id(const char *s) {
    struct stat st;
    llc_hub_id id;
    return lstat(s, &st) != 0 && llc_hub_parse_id(s, &id, NULL);
}

/* Components separated by '/', none empty, "." or "..". */
static bool safe_components(const char *p, size_t max) {
    size_t n = strlen(p);
    if (n == 0 || n > max || p[0] == '/') return false;
    for (const char *c = p;;) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.')) return false;
        if (!e) return true;
        c = e + 1;
    }
}

bool llc_hub_safe_path(const char *p) {
    for (const unsigned char *c = (const unsigned char *)p; *c; c++)
        if (*c < 0x20 || *c == 0x7f || *c == '\\') return false;
    return safe_components(p, LLC_HUB_PATH_MAX);
}

bool llc_hub_safe_revision(const char *r) {
    for (const char *c = r; *c; c++)
        if (!id_char(*c) && *c != '/') return false;
    return safe_components(r, 255);
}

static bool is_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return s[n] == 0;
}

void llc_hub_listing_free(llc_hub_listing *l) {
    for (int i = 0; i < l->n; i++) free(l->files[i]);
    free(l->files);
    memset(l, 0, sizeof *l);
}

bool llc_hub_parse_listing(const char *json, size_t len, llc_hub_listing *out, llamac_error *err) {
    memset(out, 0, sizeof *out);
    cJSON *root = llc_json_parse_opts(json, len, "the hub's model listing", 0, 4u << 20, err);
    if (!root) return false;
    bool ok = false;
    char shown[160];
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(root, "sha");
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(root, "siblings");
    if (!cJSON_IsObject(root) || !cJSON_IsString(sha) || strlen(sha->valuestring) != 40 || !is_hex(sha->valuestring, 40)) {
        llc_fail(err, "the hub's model listing has no commit (\"sha\" of 40 hex digits)");
        goto done;
    }
    if (!cJSON_IsArray(sib)) {
        llc_fail(err, "the hub's model listing has no \"siblings\" array");
        goto done;
    }
    int n = cJSON_GetArraySize(sib);
    if (n > MAX_LISTING_FILES) {
        llc_fail(err, "the hub's model listing names %d files (at most %d)", n, MAX_LISTING_FILES);
        goto done;
    }
    snprintf(out->sha, sizeof out->sha, "%s", sha->valuestring);
    if (n && !(out->files = calloc((size_t)n, sizeof *out->files))) {
        llc_fail(err, "out of memory");
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, sib) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "rfilename");
        if (!cJSON_IsString(f)) {
            llc_fail(err, "the hub's model listing has a sibling without \"rfilename\"");
            goto done;
        }
        if (!llc_hub_safe_path(f->valuestring)) {
            llc_fail(err, "the hub's model listing names an unsafe file '%s' (absolute, '..', backslash or control byte)",
                     llc_clip(f->valuestring, strlen(f->valuestring), 120, shown, sizeof shown));
            goto done;
        }
        for (int k = 0; k < out->n; k++)
            if (!strcmp(out->files[k], f->valuestring)) {
                llc_fail(err, "the hub's model listing names '%s' twice", llc_clip(f->valuestring, strlen(f->valuestring), 120, shown, sizeof shown));
                goto done;
            }
        if (!(out->files[out->n] = strdup(f->valuestring))) {
            llc_fail(err, "out of memory");
            goto done;
        }
        out->n++;
    }
    ok = true;
done:
    cJSON_Delete(root);
    if (!ok) llc_hub_listing_free(out);
    return ok;
}

/* ---- choosing files ------------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcasecmp(s + n - m, suf);
}

static const char *basename_of(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* A model file llama.cpp's -hf would take: a .gguf that is not a vision projector. */
static bool is_model_gguf(const char *p) { return ends_with(p, ".gguf") && !strcasestr(basename_of(p), "mmproj"); }

/* Length of p without a split suffix "-00001-of-00003" before ".gguf"; *part gets the part number (1 if
 * not split). Parts of one model share the stem. */
static size_t gguf_stem(const char *p, int *part) {
    size_t n = strlen(p) - 5; /* ".gguf" */
    *part = 1;
    const char *suf = "-00000-of-00000";
    size_t m = strlen(suf);
    if (n < m) return n;
    const char *s = p + n - m;
    for (size_t i = 0; i < m; i++)
        if (suf[i] == '0' ? !isdigit((unsigned char)s[i]) : s[i] != suf[i]) return n;
    *part = atoi(s + 1);
    return n - m;
}

static bool same_stem(const char *a, const char *b) {
    int pa, pb;
    size_t na = gguf_stem(a, &pa), nb = gguf_stem(b, &pb);
    return na == nb && !memcmp(a, b, na);
}

/* Whether q occurs in s (case-insensitively) with no letter or digit right after it: "Q4_K" names
 * "…-Q4_K.gguf" but not by itself "…-Q4_K_M.gguf" when a Q4_K file exists too. */
static bool contains_bounded(const char *s, const char *q) {
    size_t qn = strlen(q);
    for (const char *p = s; (p = strcasestr(p, q)); p++) {
        char after = p[qn], before = p > s ? p[-1] : '-';
        if (!isalnum((unsigned char)after) && after != '_' && !isalnum((unsigned char)before)) return true;
    }
    return false;
}

static bool match_any(const char *path, const char *const *globs, int n) {
    for (int i = 0; i < n; i++) {
        char g[LLC_HUB_PATH_MAX + 2];
        size_t len = strlen(globs[i]);
        /* huggingface_hub: a pattern ending in '/' means everything under that folder */
        snprintf(g, sizeof g, "%s%s", globs[i], len && globs[i][len - 1] == '/' ? "*" : "");
        if (fnmatch(g, path, 0) == 0) return true;
    }
    return false;
}

/* What llamac reads from a Hugging Face folder (src/model/format_hf.c), top level only. */
static bool hf_default(const char *p) {
    static const char *const names[] = {"config.json", "generation_config.json", "model.safetensors.index.json",
                                        "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                                        "special_tokens_map.json"};
    if (strchr(p, '/')) return false;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(p, names[i])) return true;
    return ends_with(p, ".safetensors");
}

/* Appends the distinct stems of the model GGUFs marked in cand to buf, for an error message. */
static const char *list_stems(int n, char *const *files, const bool *cand, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n; i++) {
        if (!cand[i]) continue;
        bool seen = false;
        for (int k = 0; k < i && !seen; k++) seen = cand[k] && same_stem(files[k], files[i]);
        if (seen) continue;
        int part;
        size_t sn = gguf_stem(files[i], &part);
        int w = snprintf(buf + used, cap - used, "%s%.*s", used ? ", " : "", (int)sn, files[i]);
        if (w < 0 || (size_t)w >= cap - used) {
            if (cap > 4) snprintf(buf + cap - 4, 4, "...");
            break;
        }
        used += (size_t)w;
    }
    return buf;
}

/* Among the model GGUFs marked in cand, keeps one model's parts; false if there are several. */
static bool one_model(int n, char *const *files, bool *cand) {
    int first = -1;
    for (int i = 0; i < n; i++)
        if (cand[i]) {
            if (first < 0) first = i;
            else if (!same_stem(files[first], files[i])) return false;
        }
    return first >= 0;
}

bool llc_hub_select(int n, char *const *files, const llc_hub_filter *f, bool *pick, int *main, llamac_error *err) {
    const char *quant = f->quant && f->quant[0] ? f->quant : NULL;
    bool gguf_repo = false;
    *main = -1;
    for (int i = 0; i < n; i++) gguf_repo |= is_model_gguf(files[i]);
    if (quant && !gguf_repo) return llc_fail(err, "':%s' picks a GGUF file, but the repository has none", quant);

    bool *cand = calloc((size_t)n + 1, sizeof *cand);
    if (!cand) return llc_fail(err, "out of memory");
    bool ok = false;
    char list[1024];
    if (gguf_repo) {
        int count = 0;
        for (int i = 0; i < n; i++) count += cand[i] = is_model_gguf(files[i]) && (!quant || strcasestr(files[i], quant));
        if (quant && count == 0) {
            for (int i = 0; i < n; i++) cand[i] = is_model_gguf(files[i]);
            llc_fail(err, "no GGUF file matches ':%s'; the repository has: %s", quant, list_stems(n, files, cand, list, sizeof list));
            goto done;
        }
        if (!one_model(n, files, cand)) {
            /* several models: the one the quant names exactly, or Q4_K_M when none was asked for */
            bool *narrow = calloc((size_t)n + 1, sizeof *narrow);
            if (!narrow) {
                llc_fail(err, "out of memory");
                goto done;
            }
            for (int i = 0; i < n; i++) narrow[i] = cand[i] && contains_bounded(files[i], quant ? quant : "Q4_K_M");
            bool single = one_model(n, files, narrow);
            if (single) memcpy(cand, narrow, (size_t)n * sizeof *cand);
            free(narrow);
            if (!single) {
                if (quant) llc_fail(err, "':%s' matches several GGUF models: %s", quant, list_stems(n, files, cand, list, sizeof list));
                else llc_fail(err, "the repository has several GGUF models and no Q4_K_M; name one with ORG/NAME:QUANT: %s",
                              list_stems(n, files, cand, list, sizeof list));
                goto done;
            }
        }
        for (int i = 0; i < n; i++) {
            int part;
            if (cand[i] && (gguf_stem(files[i], &part), part == 1)) *main = i;
        }
        if (*main < 0) {
            llc_fail(err, "the GGUF model %s has no first part (-00001-of-…)", list_stems(n, files, cand, list, sizeof list));
            goto done;
        }
    }
    for (int i = 0; i < n; i++) {
        bool take = f->n_include ? match_any(files[i], f->include, f->n_include) : gguf_repo ? cand[i] : hf_default(files[i]);
        /* a chosen quant also holds for the GGUFs --include brings in */
        if (take && quant && is_model_gguf(files[i]) && !cand[i]) take = false;
        if (take && f->n_exclude && match_any(files[i], f->exclude, f->n_exclude)) take = false;
        pick[i] = take;
    }
    if (*main >= 0 && !pick[*main]) *main = -1;
    int picked = 0;
    for (int i = 0; i < n; i++) picked += pick[i];
    if (!picked) {
        llc_fail(err, "no file of the repository matches the selection%s", f->n_include ? " (--include/--exclude)" : "");
        goto done;
    }
    ok = true;
done:
    free(cand);
    return ok;
}
