/*
 * Writing a model as a Hugging Face checkpoint folder, laid out as transformers' save_pretrained
 * leaves a LlamaForCausalLM:
 *
 *   config.json             hyperparameters (rope_scaling {"rope_type": "llama3", …} for Llama 3.1 scaling)
 *   generation_config.json  bos/eos and Meta's sampling defaults
 *   model.safetensors       the weights under transformers' names; or, with LLAMAC_SHARD_BYTES=N in
 *                           the environment, shards of about N bytes each (model-00001-of-0000M.safetensors)
 *                           and model.safetensors.index.json mapping every tensor to its shard
 *   tokenizer.json + tokenizer_config.json (Llama 3), or tokenizer.model (Llama 2), copied
 *
 * Every tensor keeps its source type (F32, F16 or BF16; the norms stay F32 as synth makes them, so the
 * folder holds exactly the weights a GGUF written from the same source holds). The q/k projection rows
 * are permuted from Meta/GGUF's adjacent RoPE pairs to transformers' half-split order: the inverse of
 * the permute() in llama.cpp's convert_hf_to_gguf.py.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/outfile.h"
#include "formats/model_writer.h"
#include "kernels/types.h"

typedef struct out_tensor {
    char name[96];     /* transformers' name */
    int src;           /* index in src->tensors */
    uint32_t type;
    int64_t rows, cols;
    uint64_t nbytes;
    int permute_heads; /* q: n_heads, k: n_kv_heads; 0: stored as is */
    int shard;
} out_tensor;

static const char *st_dtype(uint32_t type) {
    switch (type) {
    case LLC_F32: return "F32";
    case LLC_F16: return "F16";
    case LLC_BF16: return "BF16";
    default: return NULL;
    }
}

static const char *torch_dtype(uint32_t type) {
    return type == LLC_F16 ? "float16" : type == LLC_BF16 ? "bfloat16" : "float32";
}

/* GGUF name -> transformers name; false for a tensor transformers' Llama does not have. */
static bool hf_name(const char *gguf, char *out, size_t cap, int *layer_kind) {
    static const char *const global[][2] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
    };
    static const char *const per_layer[][2] = {
        {"attn_norm", "input_layernorm"},        {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},          {"attn_output", "self_attn.o_proj"},
        {"ffn_norm", "post_attention_layernorm"}, {"ffn_gate", "mlp.gate_proj"},  {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"},
    };
    *layer_kind = -1;
    for (size_t i = 0; i < sizeof global / sizeof global[0]; i++)
        if (!strcmp(gguf, global[i][0])) {
            snprintf(out, cap, "%s", global[i][1]);
            return true;
        }
    int layer, used = 0;
    char part[32];
    if (sscanf(gguf, "blk.%d.%31[a-z_].weight%n", &layer, part, &used) == 2 && gguf[used] == 0 && layer >= 0) {
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++)
            if (!strcmp(part, per_layer[i][0])) {
                snprintf(out, cap, "model.layers.%d.%s.weight", layer, per_layer[i][1]);
                *layer_kind = (int)i;
                return true;
            }
    }
    return false;
}

/* Rows of one projection from adjacent pairs to half-split: in each head of D rows, HF row
 * s * D/2 + i is GGUF row 2i + s (convert_hf_to_gguf.py's permute maps the other way). */
static bool permute_rows(uint8_t *data, int64_t rows, size_t row_bytes, int n_heads, llamac_error *err) {
    int64_t d = rows / n_heads, half = d / 2;
    uint8_t *tmp = malloc((size_t)d * row_bytes);
    if (!tmp) return llc_fail(err, "out of memory");
    for (int h = 0; h < n_heads; h++) {
        uint8_t *head = data + (size_t)h * (size_t)d * row_bytes;
        for (int64_t s = 0; s < 2; s++)
            for (int64_t i = 0; i < half; i++)
                memcpy(tmp + (size_t)(s * half + i) * row_bytes, head + (size_t)(2 * i + s) * row_bytes, row_bytes);
        memcpy(head, tmp, (size_t)d * row_bytes);
    }
    free(tmp);
    return true;
}

/* Shortest decimal that reads back as the same float, as Python's repr writes it ("1e-05", "500000.0"). */
static cJSON *json_float(float f) {
    char buf[64];
    int p = 1;
    for (; p < 9; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    /* Python switches to an exponent below 1e-4 and from 1e16 on; %g would already at 1e5. */
    int exp = f != 0 ? atoi(strchr(buf, 'e') + 1) : 0;
    if (exp >= -4 && exp < 16) snprintf(buf, sizeof buf - 2, "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, (double)f);
    else snprintf(buf, sizeof buf - 2, "%.*g", p, (double)f);
    if (!strpbrk(buf, ".eE")) strcat(buf, ".0");
    return cJSON_CreateRaw(buf);
}

static bool write_text(const char *path, const char *text, llamac_error *err) {
    llc_outfile o;
    if (!llc_outfile_open(&o, path, err)) return false;
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, o.f) == n && fputc('\n', o.f) != EOF;
    if (!ok) llc_fail(err, "%s: write failed: %s", path, strerror(errno));
    return llc_outfile_finish(&o, ok, err);
}

static bool write_json(const char *dir, const char *name, cJSON *root, llamac_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return llc_fail(err, "out of memory");
    bool ok = write_text(path, text, err);
    cJSON_free(text);
    return ok;
}

static bool copy_file(const char *from, const char *to, llamac_error *err) {
    FILE *in = fopen(from, "rb");
    if (!in) return llc_fail(err, "%s: %s", from, strerror(errno));
    llc_outfile o;
    if (!llc_outfile_open(&o, to, err)) {
        fclose(in);
        return false;
    }
    char buf[1 << 16];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, o.f) == n;
    if (ferror(in)) ok = false;
    fclose(in);
    if (!ok) llc_fail(err, "%s: copying %s failed", to, from);
    return llc_outfile_finish(&o, ok, err);
}

/* eos_token_id: an instruct model stops at every end-of-generation token, and transformers lists them
 * all (Llama 3.2 Instruct: [128001, 128008, 128009]); a base model names its one EOS. */
static cJSON *eos_json(const llc_model_src *src) {
    int32_t eos = src->tok ? llamac_tokenizer_eos(src->tok) : -1;
    if (!src->instruct || !src->tok) return eos >= 0 ? cJSON_CreateNumber(eos) : cJSON_CreateNull();
    cJSON *a = cJSON_CreateArray();
    int n = llamac_tokenizer_n_vocab(src->tok);
    for (int32_t id = 0; a && id < n; id++)
        if (llamac_tokenizer_is_eog(src->tok, id)) cJSON_AddItemToArray(a, cJSON_CreateNumber(id));
    return a;
}

static cJSON *id_json(int32_t id) { return id >= 0 ? cJSON_CreateNumber(id) : cJSON_CreateNull(); }

/* Keys in the order transformers writes them (sorted). */
static bool write_config(const llc_model_src *src, const char *dir, uint32_t main_type, llamac_error *err) {
    cJSON *c = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddFalseToObject(c, "attention_bias");
    cJSON_AddItemToObject(c, "attention_dropout", json_float(0));
    cJSON_AddItemToObject(c, "bos_token_id", id_json(src->tok ? llamac_tokenizer_bos(src->tok) : -1));
    cJSON_AddItemToObject(c, "eos_token_id", eos_json(src));
    cJSON_AddNumberToObject(c, "head_dim", src->dim / src->n_heads);
    cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddNumberToObject(c, "hidden_size", src->dim);
    cJSON_AddItemToObject(c, "initializer_range", json_float(0.02f));
    cJSON_AddNumberToObject(c, "intermediate_size", src->ffn_dim);
    cJSON_AddNumberToObject(c, "max_position_embeddings", src->n_ctx_train);
    cJSON_AddFalseToObject(c, "mlp_bias");
    cJSON_AddStringToObject(c, "model_type", "llama");
    cJSON_AddNumberToObject(c, "num_attention_heads", src->n_heads);
    cJSON_AddNumberToObject(c, "num_hidden_layers", src->n_layers);
    cJSON_AddNumberToObject(c, "num_key_value_heads", src->n_kv_heads);
    cJSON_AddNumberToObject(c, "pretraining_tp", 1);
    cJSON_AddItemToObject(c, "rms_norm_eps", json_float(src->rms_eps));
    if (src->rope_factor > 0) {
        cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddItemToObject(rs, "factor", json_float(src->rope_factor));
        cJSON_AddItemToObject(rs, "high_freq_factor", json_float(src->rope_high_freq_factor));
        cJSON_AddItemToObject(rs, "low_freq_factor", json_float(src->rope_low_freq_factor));
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", src->rope_original_ctx);
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
    } else {
        cJSON_AddNullToObject(c, "rope_scaling");
    }
    cJSON_AddItemToObject(c, "rope_theta", json_float(src->rope_theta));
    cJSON_AddBoolToObject(c, "tie_word_embeddings", src->tied);
    cJSON_AddStringToObject(c, "torch_dtype", torch_dtype(main_type));
    cJSON_AddStringToObject(c, "transformers_version", "4.45.0");
    cJSON_AddTrueToObject(c, "use_cache");
    cJSON_AddNumberToObject(c, "vocab_size", src->n_vocab);
    return write_json(dir, "config.json", c, err);
}

/* Meta's published sampling defaults for Llama 2 and 3 (temperature 0.6, top_p 0.9). */
static bool write_generation_config(const llc_model_src *src, const char *dir, llamac_error *err) {
    cJSON *g = cJSON_CreateObject();
    cJSON_AddTrueToObject(g, "_from_model_config");
    cJSON_AddItemToObject(g, "bos_token_id", id_json(src->tok ? llamac_tokenizer_bos(src->tok) : -1));
    cJSON_AddTrueToObject(g, "do_sample");
    cJSON_AddItemToObject(g, "eos_token_id", eos_json(src));
    cJSON_AddItemToObject(g, "temperature", json_float(0.6f));
    cJSON_AddItemToObject(g, "top_p", json_float(0.9f));
    cJSON_AddStringToObject(g, "transformers_version", "4.45.0");
    return write_json(dir, "generation_config.json", g, err);
}

static int cmp_out_name(const void *a, const void *b) {
    return strcmp((*(const out_tensor *const *)a)->name, (*(const out_tensor *const *)b)->name);
}

/* Wider elements first, then by name, as the safetensors library orders a file. */
static int cmp_out_layout(const void *a, const void *b) {
    const out_tensor *x = *(const out_tensor *const *)a, *y = *(const out_tensor *const *)b;
    size_t wx = llc_row_size(x->type, 1), wy = llc_row_size(y->type, 1);
    if (wx != wy) return wx > wy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* One .safetensors file holding the tensors of shard k. The header is padded with spaces to a multiple
 * of 8 and the 4-byte tensors come before the 2-byte ones, so every tensor starts aligned for its
 * element type and the loader uses it in place. */
static bool write_shard(const llc_model_src *src, out_tensor *ts, int n, int k, const char *path, llamac_error *err) {
    out_tensor **sel = malloc((size_t)(n ? n : 1) * sizeof *sel);
    if (!sel) return llc_fail(err, "out of memory");
    int m = 0;
    for (int i = 0; i < n; i++)
        if (ts[i].shard == k) sel[m++] = &ts[i];
    qsort(sel, (size_t)m, sizeof *sel, cmp_out_layout);

    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = 0; i < m; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, sel[i]->name);
        cJSON_AddStringToObject(e, "dtype", st_dtype(sel[i]->type));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        if (sel[i]->rows > 1) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)sel[i]->rows));
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)sel[i]->cols));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + sel[i]->nbytes)));
        off += sel[i]->nbytes;
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!text) {
        free(sel);
        return llc_fail(err, "out of memory");
    }
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    llc_outfile o;
    bool ok = llc_outfile_open(&o, path, err);
    FILE *f = o.f;
    uint8_t hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    if (ok && (fwrite(hl, 1, 8, f) != 8 || fwrite(text, 1, len, f) != len)) ok = llc_fail(err, "%s: write failed: %s", path, strerror(errno));
    for (size_t i = len; ok && i < padded; i++)
        if (fputc(' ', f) == EOF) ok = llc_fail(err, "%s: write failed: %s", path, strerror(errno));
    cJSON_free(text);
    for (int i = 0; ok && i < m; i++) {
        const out_tensor *t = sel[i];
        uint8_t *buf = malloc(t->nbytes ? (size_t)t->nbytes : 1);
        if (!buf) {
            ok = llc_fail(err, "out of memory for tensor %s (%" PRIu64 " bytes)", t->name, t->nbytes);
            break;
        }
        ok = src->fill(src->ctx, t->src, buf, t->nbytes, err) &&
             (!t->permute_heads || permute_rows(buf, t->rows, llc_row_size(t->type, t->cols), t->permute_heads, err));
        if (ok && fwrite(buf, 1, (size_t)t->nbytes, f) != t->nbytes) ok = llc_fail(err, "%s: write failed: %s", path, strerror(errno));
        free(buf);
    }
    free(sel);
    return llc_outfile_finish(&o, ok, err);
}

static bool write_index(out_tensor *ts, int n, int n_shards, uint64_t total, const char *dir, llamac_error *err) {
    out_tensor **sel = malloc((size_t)(n ? n : 1) * sizeof *sel);
    if (!sel) return llc_fail(err, "out of memory");
    for (int i = 0; i < n; i++) sel[i] = &ts[i];
    qsort(sel, (size_t)n, sizeof *sel, cmp_out_name);
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    for (int i = 0; i < n; i++) {
        char file[64];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", sel[i]->shard + 1, n_shards);
        cJSON_AddStringToObject(map, sel[i]->name, file);
    }
    free(sel);
    return write_json(dir, "model.safetensors.index.json", root, err);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* tokenizer.json with the tokenizer_config.json beside it (BOS/EOS, chat template), or a SentencePiece
 * tokenizer.model: the files transformers' tokenizers read. */
static bool copy_tokenizer(const char *from, const char *dir, llamac_error *err) {
    char to[4096];
    if (ends_with(from, ".json")) {
        snprintf(to, sizeof to, "%s/tokenizer.json", dir);
        if (!copy_file(from, to, err)) return false;
        char cfg[4096];
        const char *slash = strrchr(from, '/');
        int dl = slash ? (int)(slash - from + 1) : 0;
        snprintf(cfg, sizeof cfg, "%.*stokenizer_config.json", dl, from);
        struct stat st;
        if (stat(cfg, &st) != 0) return true;
        snprintf(to, sizeof to, "%s/tokenizer_config.json", dir);
        return copy_file(cfg, to, err);
    }
    if (ends_with(from, ".model")) {
        snprintf(to, sizeof to, "%s/tokenizer.model", dir);
        return copy_file(from, to, err);
    }
    return llc_fail(err, "%s: a Hugging Face folder needs the vocabulary as tokenizer.json or tokenizer.model", from);
}

bool llc_write_hf_folder(const llc_model_src *src, const char *dir, llamac_error *err) {
    if (err) err->message[0] = 0;
    if (strlen(dir) > 3000) return llc_fail(err, "%.200s…: path too long", dir);
    if (src->n_heads < 1 || src->dim % src->n_heads || src->n_kv_heads < 1 || (src->dim / src->n_heads) % 2)
        return llc_fail(err, "%s: invalid head layout for a Hugging Face checkpoint", dir);
    /* An optional shard size, so the sharded layout (model.safetensors.index.json) can be produced. */
    uint64_t shard_bytes = 0;
    const char *env = getenv("LLAMAC_SHARD_BYTES");
    if (env && *env) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(env, &end, 10);
        if (errno || *end || v == 0) return llc_fail(err, "LLAMAC_SHARD_BYTES='%.40s' is not a positive byte count", env);
        shard_bytes = v;
    }

    out_tensor *ts = calloc((size_t)(src->n_tensors ? src->n_tensors : 1), sizeof *ts);
    if (!ts) return llc_fail(err, "out of memory");
    int n = 0, n_shards = 1;
    uint32_t main_type = LLC_F32;
    uint64_t total = 0, in_shard = 0;
    bool ok = true;
    for (int i = 0; ok && i < src->n_tensors; i++) {
        const llc_src_tensor *s = &src->tensors[i];
        /* transformers computes the Llama 3.1 factors from config.json's rope_scaling. */
        if (!strcmp(s->name, "rope_freqs.weight")) continue;
        out_tensor *t = &ts[n];
        int kind;
        if (!hf_name(s->name, t->name, sizeof t->name, &kind)) {
            ok = llc_fail(err, "%s: tensor %s has no Hugging Face name", dir, s->name);
            break;
        }
        if (!st_dtype(s->type)) {
            ok = llc_fail(err, "%s: tensor %s is %s; Hugging Face folders hold f32, f16 or bf16 (use --type f32|f16|bf16)", dir,
                          s->name, llc_type_name(s->type));
            break;
        }
        t->src = i;
        t->type = s->type;
        t->rows = s->rows;
        t->cols = s->cols;
        t->nbytes = llc_row_size(s->type, s->cols) * (uint64_t)s->rows;
        t->permute_heads = kind == 1 ? src->n_heads : kind == 2 ? src->n_kv_heads : 0;
        if (t->permute_heads && t->rows != (int64_t)t->permute_heads * (src->dim / src->n_heads)) {
            ok = llc_fail(err, "%s: tensor %s has %" PRId64 " rows, not heads x head size", dir, s->name, t->rows);
            break;
        }
        if (s->rows > 1) main_type = s->type;
        if (shard_bytes && in_shard > 0 && in_shard + t->nbytes > shard_bytes) {
            n_shards++;
            in_shard = 0;
        }
        t->shard = n_shards - 1;
        in_shard += t->nbytes;
        total += t->nbytes;
        n++;
    }
    if (ok) ok = llc_outdir_prepare(dir, true, err);

    char path[4096];
    /* A stale single file or index from an earlier write would shadow or contradict the new weights. */
    if (ok) {
        snprintf(path, sizeof path, "%s/%s", dir, n_shards > 1 ? "model.safetensors" : "model.safetensors.index.json");
        unlink(path);
    }
    for (int k = 0; ok && k < n_shards; k++) {
        if (n_shards == 1) snprintf(path, sizeof path, "%s/model.safetensors", dir);
        else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, k + 1, n_shards);
        ok = write_shard(src, ts, n, k, path, err);
    }
    if (ok && n_shards > 1) ok = write_index(ts, n, n_shards, total, dir, err);
    free(ts);
    ok = ok && write_config(src, dir, main_type, err) && write_generation_config(src, dir, err);
    if (ok && src->tokenizer_file) ok = copy_tokenizer(src->tokenizer_file, dir, err);
    return ok;
}
