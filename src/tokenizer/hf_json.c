/*
 * Loader for tokenizer.json: the reader into plain arrays (see hf_json.h), then the vocabulary built
 * from them. The file is untrusted: every id, count and type is checked before use, and the first
 * problem found is reported with the file's name.
 */
#include "tokenizer/hf_json.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mapped_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

#define MAX_JSON_BYTES ((size_t)256 << 20)
#define MAX_CONFIG_BYTES ((size_t)16 << 20)
/* cJSON spends about 64 bytes a value: the bounds keep a hostile file's tree under about 512 MB and
 * 64 MB. Llama 3's tokenizer.json holds about a million values (128k tokens, 280k merges of 2). */
#define MAX_JSON_VALUES ((uint64_t)8 << 20)
#define MAX_CONFIG_VALUES ((uint64_t)1 << 20)

static const char LLAMA3_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const cJSON *get(const cJSON *obj, const char *key) { return cJSON_GetObjectItemCaseSensitive(obj, key); }

static bool is_str(const cJSON *j, const char *s) { return cJSON_IsString(j) && strcmp(j->valuestring, s) == 0; }

/* Absent, null or false. */
static bool is_off(const cJSON *j) { return !j || cJSON_IsNull(j) || cJSON_IsFalse(j); }

static bool get_id(const cJSON *j, int32_t *id) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d < INT32_MAX) || d != (double)(int32_t)d) return false;
    *id = (int32_t)d;
    return true;
}

static char *dup_str(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = 0;
    }
    return r;
}

/* Why the pre-tokenizer isn't Llama 3's, or NULL if it is. */
static const char *check_pre_tokenizer(const cJSON *pt) {
    if (!pt || cJSON_IsNull(pt)) return "no pre_tokenizer (expected the Llama 3 Split + ByteLevel)";
    if (!is_str(get(pt, "type"), "Sequence")) return "pre_tokenizer is not a Sequence (expected the Llama 3 Split + ByteLevel)";
    const cJSON *list = get(pt, "pretokenizers");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != 2) return "pre_tokenizer is not the Llama 3 one (Split + ByteLevel)";
    const cJSON *split = list->child, *bl = split->next;
    if (!is_str(get(split, "type"), "Split")) return "pre_tokenizer does not start with a Split";
    if (!is_str(get(get(split, "pattern"), "Regex"), LLAMA3_REGEX)) return "pre_tokenizer Split regex is not the Llama 3 one";
    if (!is_str(get(split, "behavior"), "Isolated") || !is_off(get(split, "invert")))
        return "pre_tokenizer Split is not behavior=Isolated, invert=false";
    if (!is_str(get(bl, "type"), "ByteLevel")) return "pre_tokenizer does not end with ByteLevel";
    if (!is_off(get(bl, "add_prefix_space")) || !is_off(get(bl, "use_regex")))
        return "pre_tokenizer ByteLevel has add_prefix_space or use_regex set";
    return NULL;
}

/* Id of the token spelled s, -1 if none. Only used for a couple of lookups, so a scan is fine. */
static int32_t find_token(const llc_hf_vocab *v, const char *s) {
    size_t n = strlen(s);
    for (int i = 0; i < v->n_tokens; i++)
        if (v->token_lens[i] == n && memcmp(v->tokens[i], s, n) == 0) return i;
    return -1;
}

/* bos_token / eos_token: a string, or (older files) an object whose "content" is one. */
static int32_t config_token(const llc_hf_vocab *v, const cJSON *cfg, const char *key) {
    const cJSON *j = get(cfg, key);
    if (cJSON_IsObject(j)) j = get(j, "content");
    return cJSON_IsString(j) ? find_token(v, j->valuestring) : -1;
}

/* The tokenizer_config.json beside json_path, parsed; *cfg = NULL (and true) if there is none. */
static bool read_config(const char *json_path, cJSON **cfg, llamac_error *err) {
    *cfg = NULL;
    size_t plen = strlen(json_path);
    const char *slash = strrchr(json_path, '/');
    size_t dlen = slash ? (size_t)(slash - json_path) + 1 : 0;
    static const char name[] = "tokenizer_config.json";
    char *path = malloc(plen + sizeof name);
    if (!path) return llc_fail(err, "out of memory");
    memcpy(path, json_path, dlen);
    memcpy(path + dlen, name, sizeof name);
    struct stat st;
    if (stat(path, &st) != 0) { /* no config: bos/eos/template unknown */
        free(path);
        return true;
    }
    size_t size;
    char *buf = llc_read_file(path, MAX_CONFIG_BYTES, &size, err);
    if (!buf) {
        free(path);
        return false;
    }
    *cfg = llc_json_parse_opts(buf, size, path, 0, MAX_CONFIG_VALUES, err);
    free(buf);
    if (!*cfg) {
        free(path);
        return false;
    }
    if (!cJSON_IsObject(*cfg)) {
        cJSON_Delete(*cfg);
        *cfg = NULL;
        llc_fail(err, "%s: not a JSON object", path);
        free(path);
        return false;
    }
    free(path);
    return true;
}

/* chat_template: a string, or (some files) a list of named templates: the "default" one, else the
 * first. *out = NULL if there is none. */
static bool config_template(const cJSON *cfg, char **out, llamac_error *err) {
    *out = NULL;
    const cJSON *t = get(cfg, "chat_template");
    if (cJSON_IsArray(t)) {
        const cJSON *e, *pick = NULL;
        cJSON_ArrayForEach(e, t) {
            if (!pick || is_str(get(e, "name"), "default")) pick = e;
            if (is_str(get(e, "name"), "default")) break;
        }
        t = pick ? get(pick, "template") : NULL;
    }
    if (cJSON_IsString(t)) {
        *out = dup_str(t->valuestring, strlen(t->valuestring));
        if (!*out) return llc_fail(err, "out of memory");
    }
    return true;
}

static bool load_config(const char *json_path, llc_hf_vocab *v, llamac_error *err) {
    cJSON *cfg;
    if (!read_config(json_path, &cfg, err)) return false;
    if (!cfg) return true;
    v->bos = config_token(v, cfg, "bos_token");
    v->eos = config_token(v, cfg, "eos_token");
    bool ok = config_template(cfg, &v->chat_template, err);
    cJSON_Delete(cfg);
    return ok;
}

bool llc_hf_chat_template_beside(const char *path, char **out, llamac_error *err) {
    *out = NULL;
    cJSON *cfg;
    if (!read_config(path, &cfg, err)) return false;
    if (!cfg) return true;
    bool ok = config_template(cfg, out, err);
    cJSON_Delete(cfg);
    return ok;
}

/* Sets tokens[id] = s unless taken; an added token may restate its vocab entry (same text). */
static const char *put_token(llc_hf_vocab *v, int32_t id, const char *s, uint8_t type, bool added) {
    size_t n = strlen(s);
    if (v->tokens[id]) {
        if (!added) return "two model.vocab entries have id";
        if (v->token_lens[id] != n || memcmp(v->tokens[id], s, n) != 0) return "added_tokens entry conflicts with model.vocab at id";
        v->token_type[id] = type;
        return NULL;
    }
    if (!(v->tokens[id] = dup_str(s, n))) return "out of memory at id";
    v->token_lens[id] = (uint32_t)n;
    v->token_type[id] = type;
    return NULL;
}

#define UNSUPPORTED(fmt, ...) llc_fail(err, "unsupported tokenizer.json: %s: " fmt, path, __VA_ARGS__)

static bool load(const char *path, const cJSON *root, llc_hf_vocab *v, llamac_error *err) {
    const cJSON *model = get(root, "model");
    if (!cJSON_IsObject(model)) return llc_fail(err, "%s: no \"model\" object", path);
    const cJSON *type = get(model, "type");
    if (!is_str(type, "BPE"))
        return UNSUPPORTED("model.type is \"%.40s\" (only BPE is)", cJSON_IsString(type) ? type->valuestring : "(missing)");
    const cJSON *norm = get(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) return UNSUPPORTED("%s", "it has a normalizer (Llama 3 has none)");
    const char *why = check_pre_tokenizer(get(root, "pre_tokenizer"));
    if (why) return UNSUPPORTED("%s", why);
    if (!is_off(get(model, "byte_fallback"))) return UNSUPPORTED("%s", "model.byte_fallback is set");
    const cJSON *cp = get(model, "continuing_subword_prefix"), *sfx = get(model, "end_of_word_suffix");
    if ((cJSON_IsString(cp) && cp->valuestring[0]) || (cJSON_IsString(sfx) && sfx->valuestring[0]))
        return UNSUPPORTED("%s", "model has a subword prefix or suffix");

    const cJSON *vocab = get(model, "vocab"), *merges = get(model, "merges"), *added = get(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) return llc_fail(err, "%s: model.vocab is not an object", path);
    if (!cJSON_IsArray(merges)) return llc_fail(err, "%s: model.merges is not an array", path);
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) return llc_fail(err, "%s: added_tokens is not an array", path);

    /* Sizes first: the largest id decides the vocabulary size, bounded so a stray huge id cannot make
     * us allocate gigabytes. */
    int n_entries = 0;
    int32_t max_id = -1, id;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!get_id(e, &id)) return llc_fail(err, "%s: model.vocab[\"%.40s\"] is not a valid id", path, e->string);
        if (id > max_id) max_id = id;
        if (++n_entries == INT_MAX / 4) return llc_fail(err, "%s: model.vocab too large", path);
    }
    if (n_entries == 0) return llc_fail(err, "%s: model.vocab is empty", path);
    cJSON_ArrayForEach(e, added) {
        const cJSON *content = get(e, "content");
        if (!get_id(get(e, "id"), &id) || !cJSON_IsString(content))
            return llc_fail(err, "%s: an added_tokens entry lacks a valid id or content", path);
        if (id > max_id) max_id = id;
        if (++n_entries == INT_MAX / 4) return llc_fail(err, "%s: too many tokens", path);
    }
    if ((int64_t)max_id >= (int64_t)n_entries * 2 + 1024)
        return llc_fail(err, "%s: token id %d is far beyond the %d tokens listed", path, max_id, n_entries);
    /* a vocab naming a token twice was refused by the parser (duplicate key) */

    int n = max_id + 1;
    v->n_tokens = n;
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->token_lens = calloc((size_t)n, sizeof *v->token_lens);
    v->token_type = calloc((size_t)n, 1);
    if (!v->tokens || !v->token_lens || !v->token_type) return llc_fail(err, "out of memory");
    cJSON_ArrayForEach(e, vocab) {
        get_id(e, &id);
        if ((why = put_token(v, id, e->string, 1, false))) return llc_fail(err, "%s: %s %d", path, why, id);
    }
    cJSON_ArrayForEach(e, added) {
        get_id(get(e, "id"), &id);
        uint8_t tt = cJSON_IsTrue(get(e, "special")) ? 3 : 4;
        if ((why = put_token(v, id, get(e, "content")->valuestring, tt, true)))
            return llc_fail(err, "%s: %s %d", path, why, id);
    }
    for (int i = 0; i < n; i++) {
        if (v->tokens[i]) continue;
        char pad[32];
        int pn = snprintf(pad, sizeof pad, "[PAD%d]", i);
        if (!(v->tokens[i] = dup_str(pad, (size_t)pn))) return llc_fail(err, "out of memory");
        v->token_lens[i] = (uint32_t)pn;
        v->token_type[i] = 5;
    }

    int nm = cJSON_GetArraySize(merges);
    v->merges = calloc(nm ? (size_t)nm : 1, sizeof *v->merges);
    if (!v->merges) return llc_fail(err, "out of memory");
    int k = 0;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b = NULL;
        if (cJSON_IsString(e)) {
            a = e->valuestring;
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            b = e->child->next->valuestring;
        } else {
            return llc_fail(err, "%s: model.merges[%d] is neither \"A B\" nor [\"A\", \"B\"]", path, k);
        }
        size_t an = strlen(a), bn = b ? strlen(b) : 0;
        char *m = malloc(an + bn + 2);
        if (!m) return llc_fail(err, "out of memory");
        memcpy(m, a, an + 1);
        if (b) {
            m[an] = ' ';
            memcpy(m + an + 1, b, bn + 1);
        }
        v->merges[k++] = m;
        v->n_merges = k;
    }
    return true;
}

bool llc_hf_vocab_load_memory(const char *data, size_t size, const char *path, llc_hf_vocab *out, llamac_error *err) {
    memset(out, 0, sizeof *out);
    out->bos = out->eos = -1;
    if (size > MAX_JSON_BYTES) return llc_fail(err, "%s: file too large (%zu bytes)", path, size);
    cJSON *root = llc_json_parse_opts(data, size, path, 0, MAX_JSON_VALUES, err);
    if (!root) return false;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llc_fail(err, "%s: not a JSON object", path);
    }
    bool ok = load(path, root, out, err);
    cJSON_Delete(root);
    if (!ok) {
        llc_hf_vocab_free(out);
        out->bos = out->eos = -1;
    }
    return ok;
}

bool llc_hf_vocab_load(const char *path, llc_hf_vocab *out, llamac_error *err) {
    memset(out, 0, sizeof *out);
    out->bos = out->eos = -1;
    size_t size;
    char *buf = llc_read_file(path, MAX_JSON_BYTES, &size, err);
    if (!buf) return false;
    bool ok = llc_hf_vocab_load_memory(buf, size, path, out, err);
    free(buf);
    if (ok && !load_config(path, out, err)) {
        llc_hf_vocab_free(out);
        out->bos = out->eos = -1;
        ok = false;
    }
    return ok;
}

void llc_hf_vocab_free(llc_hf_vocab *v) {
    if (!v) return;
    for (int i = 0; v->tokens && i < v->n_tokens; i++) free(v->tokens[i]);
    for (int i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->token_lens);
    free(v->token_type);
    free(v->merges);
    free(v->chat_template);
    memset(v, 0, sizeof *v);
}

/* ---- the vocabulary built from it --------------------------------------------------------------- */

/* Takes the vocabulary's chat template; frees nothing else of v. */
static llamac_tokenizer *from_hf_vocab(llc_hf_vocab *pv, const char *path, llamac_error *err) {
    llc_hf_vocab v = *pv;
    llc_str *strs = NULL;
    llamac_tokenizer *tok = llc_tok_new(v.n_tokens > 0 ? (uint64_t)v.n_tokens : 0, err);
    if (!tok) goto fail_prefix;
    tok->kind = LLC_TOK_GPT2;
    snprintf(tok->model, sizeof tok->model, "gpt2");
    tok->pre = strdup("llama-bpe"); /* what llama.cpp's converter names the Llama 3 pre-tokenizer */
    size_t n_str = (size_t)(v.n_tokens > v.n_merges ? v.n_tokens : v.n_merges);
    strs = calloc(n_str ? n_str : 1, sizeof *strs);
    if (!strs || !tok->pre) {
        llc_fail(err, "%s: out of memory", path);
        goto fail;
    }
    for (int i = 0; i < v.n_tokens; i++) strs[i] = (llc_str){v.tokens[i], v.token_lens[i]};
    if (!llc_tok_set_texts(tok, strs, false, err)) goto fail_prefix;
    for (int i = 0; i < v.n_tokens; i++) tok->tokens[i].type = v.token_type[i] <= LLC_TT_BYTE ? v.token_type[i] : 0;
    for (int i = 0; i < v.n_merges; i++) strs[i] = (llc_str){v.merges[i], strlen(v.merges[i])};
    if (!llc_tok_set_merges(tok, strs, (uint64_t)v.n_merges, err) || !llc_tok_create_bpe(tok, err)) goto fail_prefix;
    tok->bos = v.bos >= 0 && v.bos < tok->n_vocab ? v.bos : -1;
    tok->eos = v.eos >= 0 && v.eos < tok->n_vocab ? v.eos : -1;
    tok->add_bos = tok->bos >= 0;
    if (!llc_tok_build_map(tok)) {
        llc_fail(err, "%s: out of memory", path);
        goto fail;
    }
    /* llama.cpp names these from the token texts too. */
    int32_t id = llc_tok_find(tok, "<|eot_id|>", 10);
    if (id >= 0 && tok->tokens[id].type == LLC_TT_CONTROL) tok->eot = id;
    id = llc_tok_find(tok, "<|eom_id|>", 10);
    if (id >= 0 && tok->tokens[id].type == LLC_TT_CONTROL) tok->eom = id;
    if (!llc_tok_finish(tok, err)) goto fail_prefix;
    tok->chat_template = v.chat_template;
    pv->chat_template = NULL;
    free(strs);
    return tok;
fail_prefix:
    llc_error_prefix(err, "%s", path);
fail:
    free(strs);
    llamac_tokenizer_free(tok);
    return NULL;
}

llamac_tokenizer *llc_tokenizer_from_hf_json_file(const char *path, llamac_error *err) {
    llc_hf_vocab v;
    if (!llc_hf_vocab_load(path, &v, err)) return NULL;
    llamac_tokenizer *tok = from_hf_vocab(&v, path, err);
    llc_hf_vocab_free(&v);
    return tok;
}

llamac_tokenizer *llc_tokenizer_from_hf_json(const void *data, size_t size, const char *name, llamac_error *err) {
    llc_hf_vocab v;
    if (!llc_hf_vocab_load_memory(data, size, name, &v, err)) return NULL;
    llamac_tokenizer *tok = from_hf_vocab(&v, name, err);
    llc_hf_vocab_free(&v);
    return tok;
}
