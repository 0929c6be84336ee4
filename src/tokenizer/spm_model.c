/*
 * SentencePiece model files (.model: a serialized sentencepiece.ModelProto), read with a small
 * hand-written protobuf reader. What is used:
 *
 *   ModelProto      1: repeated SentencePiece pieces   2: TrainerSpec   3: NormalizerSpec
 *   SentencePiece   1: piece (string)   2: score (float)   3: type (NORMAL 1, UNKNOWN 2, CONTROL 3,
 *                   USER_DEFINED 4, UNUSED 5, BYTE 6; default NORMAL)
 *   TrainerSpec     3: model_type (UNIGRAM 1 (default), BPE 2, WORD 3, CHAR 4)   24: treat_whitespace_as_suffix
 *                   35: byte_fallback   40..43: unk/bos/eos/pad id   45..48: unk/bos/eos/pad piece
 *   NormalizerSpec  1: name   2: precompiled_charsmap   3: add_dummy_prefix (default true)
 *                   4: remove_extra_whitespaces (default true)   5: escape_whitespaces (default true)
 *
 * Only BPE models with the identity normalizer (an empty precompiled_charsmap) are accepted; anything
 * else is refused with a message that says why. Every length is checked against the bytes that
 * enclose it before it is used, and varints are at most 10 bytes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct pb {
    const uint8_t *base; /* start of the file, for offsets in messages */
    const uint8_t *p, *end;
} pb;

/* One field: its number and wire type, and its value (varint/fixed as v, length-delimited as sub). */
typedef struct pb_field {
    uint32_t num, wire;
    uint64_t v;
    pb sub;
    size_t at; /* offset of the field in the file */
} pb_field;

static bool pb_varint(pb *r, uint64_t *v, const char *name, llamac_error *err) {
    uint64_t x = 0;
    size_t at = (size_t)(r->p - r->base);
    for (int i = 0;; i++) {
        if (r->p >= r->end) return llc_fail(err, "%s: truncated protobuf (varint at byte %zu)", name, at);
        uint8_t c = *r->p++;
        /* The 10th byte holds bit 63 only; more, or an 11th byte, is not a 64-bit varint. */
        if (i == 9 && c > 1) return llc_fail(err, "%s: corrupt protobuf (varint at byte %zu overflows 64 bits)", name, at);
        x |= (uint64_t)(c & 0x7F) << (7 * i);
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
}

/* Reads the next field of r; false with err set on malformed input. */
static bool pb_next(pb *r, pb_field *f, const char *name, llamac_error *err) {
    uint64_t key;
    f->at = (size_t)(r->p - r->base);
    if (!pb_varint(r, &key, name, err)) return false;
    f->num = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 536870911u)
        return llc_fail(err, "%s: corrupt protobuf (field number %llu at byte %zu)", name, (unsigned long long)(key >> 3), f->at);
    size_t left = (size_t)(r->end - r->p);
    switch (f->wire) {
    case WT_VARINT: return pb_varint(r, &f->v, name, err);
    case WT_I64:
    case WT_I32: {
        size_t k = f->wire == WT_I64 ? 8 : 4;
        if (left < k) return llc_fail(err, "%s: truncated protobuf (field %u at byte %zu)", name, f->num, f->at);
        f->v = 0;
        for (size_t i = 0; i < k; i++) f->v |= (uint64_t)r->p[i] << (8 * i);
        r->p += k;
        return true;
    }
    case WT_LEN: {
        uint64_t n;
        if (!pb_varint(r, &n, name, err)) return false;
        left = (size_t)(r->end - r->p);
        if (n > left)
            return llc_fail(err, "%s: truncated protobuf (field %u at byte %zu claims %llu bytes, %zu remain)", name, f->num,
                            f->at, (unsigned long long)n, left);
        f->sub = (pb){r->base, r->p, r->p + n};
        r->p += n;
        return true;
    }
    default:
        return llc_fail(err, "%s: corrupt protobuf (wire type %u at byte %zu)", name, f->wire, f->at);
    }
}

/* The fields this loader wants, with SentencePiece's defaults. */
typedef struct spm_spec {
    uint64_t model_type;
    bool byte_fallback, ws_suffix;
    int64_t unk_id, bos_id, eos_id, pad_id;
    pb unk_piece, bos_piece, eos_piece, pad_piece; /* p == NULL: not given */
    pb norm_name, charsmap;
    bool add_dummy_prefix, remove_extra_ws, escape_ws;
} spm_spec;

static bool read_trainer(pb r, spm_spec *sp, const char *name, llamac_error *err) {
    pb_field f;
    while (r.p < r.end) {
        if (!pb_next(&r, &f, name, err)) return false;
        bool varint = f.wire == WT_VARINT, len = f.wire == WT_LEN;
        switch (f.num) {
        case 3: if (varint) sp->model_type = f.v; break;
        case 24: if (varint) sp->ws_suffix = f.v != 0; break;
        case 35: if (varint) sp->byte_fallback = f.v != 0; break;
        case 40: if (varint) sp->unk_id = (int32_t)(uint32_t)f.v; break;
        case 41: if (varint) sp->bos_id = (int32_t)(uint32_t)f.v; break;
        case 42: if (varint) sp->eos_id = (int32_t)(uint32_t)f.v; break;
        case 43: if (varint) sp->pad_id = (int32_t)(uint32_t)f.v; break;
        case 45: if (len) sp->unk_piece = f.sub; break;
        case 46: if (len) sp->bos_piece = f.sub; break;
        case 47: if (len) sp->eos_piece = f.sub; break;
        case 48: if (len) sp->pad_piece = f.sub; break;
        default: break;
        }
    }
    return true;
}

static bool read_normalizer(pb r, spm_spec *sp, const char *name, llamac_error *err) {
    pb_field f;
    while (r.p < r.end) {
        if (!pb_next(&r, &f, name, err)) return false;
        bool varint = f.wire == WT_VARINT, len = f.wire == WT_LEN;
        switch (f.num) {
        case 1: if (len) sp->norm_name = f.sub; break;
        case 2: if (len) sp->charsmap = f.sub; break;
        case 3: if (varint) sp->add_dummy_prefix = f.v != 0; break;
        case 4: if (varint) sp->remove_extra_ws = f.v != 0; break;
        case 5: if (varint) sp->escape_ws = f.v != 0; break;
        default: break;
        }
    }
    return true;
}

typedef struct piece {
    pb text;
    float score;
    uint32_t type;
} piece;

static bool read_piece(pb r, piece *out, size_t index, const char *name, llamac_error *err) {
    pb_field f;
    out->text = (pb){0};
    out->score = 0;
    out->type = LLC_TT_NORMAL;
    bool has_text = false;
    while (r.p < r.end) {
        if (!pb_next(&r, &f, name, err)) return false;
        if (f.num == 1 && f.wire == WT_LEN) {
            out->text = f.sub;
            has_text = true;
        } else if (f.num == 2 && f.wire == WT_I32) {
            uint32_t u = (uint32_t)f.v;
            memcpy(&out->score, &u, 4);
            if (isnan(out->score)) out->score = -INFINITY; /* keeps the merge order total */
        } else if (f.num == 3 && f.wire == WT_VARINT) {
            if (f.v < LLC_TT_NORMAL || f.v > LLC_TT_BYTE)
                return llc_fail(err, "%s: piece %zu has type %llu (SentencePiece knows 1..6)", name, index,
                                (unsigned long long)f.v);
            out->type = (uint32_t)f.v;
        }
    }
    if (!has_text || out->text.p == out->text.end) return llc_fail(err, "%s: piece %zu has no text", name, index);
    return true;
}

/* Untrusted text in a message: bounded, printable. */
static void show(char *dst, size_t cap, pb s) {
    size_t o = 0;
    for (const uint8_t *q = s.p; q && q < s.end && o + 2 < cap; q++) dst[o++] = *q >= 0x20 && *q < 0x7F ? (char)*q : '?';
    dst[o] = 0;
}

/* The id of a special piece: none if the spec's id is negative (disabled); else the piece with the spec's
 * piece text (or SentencePiece's default text), else the spec's id if it is in range. */
static int32_t special_id(const llamac_tokenizer *tok, pb piece_text, const char *default_text, int64_t id) {
    if (id < 0) return -1;
    int32_t by_text = piece_text.p ? llc_tok_find(tok, (const char *)piece_text.p, (size_t)(piece_text.end - piece_text.p))
                                   : llc_tok_find(tok, default_text, strlen(default_text));
    if (by_text >= 0) return by_text;
    return id >= 0 && id < tok->n_vocab ? (int32_t)id : -1;
}

llamac_tokenizer *llc_tokenizer_from_spm_model(const void *data, size_t size, const char *name, llamac_error *err) {
    if (!name) name = "(memory)";
    if (!data && size) return llc_fail(err, "%s: no data", name), NULL;
    const uint8_t *d = data;
    spm_spec sp = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1,
                   .add_dummy_prefix = true, .remove_extra_ws = true, .escape_ws = true};

    /* Pass 1: count the pieces (each takes at least 2 bytes, so the count is bounded by the size) and
     * read the specs. */
    pb r = {d, d, d + size};
    pb_field f;
    size_t n_pieces = 0;
    bool has_trainer = false;
    while (r.p < r.end) {
        if (!pb_next(&r, &f, name, err)) return NULL;
        if (f.num == 1 && f.wire == WT_LEN) {
            n_pieces++;
        } else if (f.num == 2 && f.wire == WT_LEN) {
            if (!read_trainer(f.sub, &sp, name, err)) return NULL;
            has_trainer = true;
        } else if (f.num == 3 && f.wire == WT_LEN) {
            if (!read_normalizer(f.sub, &sp, name, err)) return NULL;
        } else if (f.num <= 3) {
            return llc_fail(err, "%s: corrupt protobuf (field %u at byte %zu has wire type %u)", name, f.num, f.at, f.wire),
                   NULL;
        }
    }
    if (n_pieces == 0) return llc_fail(err, "%s: a SentencePiece model without pieces", name), NULL;

    static const char *const types[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
    if (sp.model_type != 2) {
        const char *t = sp.model_type < 5 ? types[sp.model_type] : "unknown";
        return llc_fail(err, "%s: SentencePiece model type %s%s is not supported (only BPE, as Llama 1/2 use)", name, t,
                        has_trainer ? "" : " (no trainer_spec: the default)"),
               NULL;
    }
    char shown[48];
    if (sp.charsmap.p && sp.charsmap.end > sp.charsmap.p) {
        show(shown, sizeof shown, sp.norm_name);
        return llc_fail(err, "%s: SentencePiece normalization rule \"%s\" is not supported (it needs NFKC-style "
                             "rewriting; only the identity normalizer of Llama 1/2 is)", name, shown[0] ? shown : "?"),
               NULL;
    }
    if (!sp.escape_ws)
        return llc_fail(err, "%s: SentencePiece models with escape_whitespaces off are not supported", name), NULL;
    if (sp.ws_suffix)
        return llc_fail(err, "%s: SentencePiece models with treat_whitespace_as_suffix are not supported", name), NULL;

    piece *pieces = malloc(n_pieces * sizeof *pieces);
    llc_str *strs = malloc(n_pieces * sizeof *strs);
    llamac_tokenizer *tok = NULL;
    if (!pieces || !strs) {
        llc_fail(err, "%s: out of memory for %zu pieces", name, n_pieces);
        goto fail;
    }
    r = (pb){d, d, d + size};
    for (size_t i = 0; r.p < r.end;) {
        if (!pb_next(&r, &f, name, err)) goto fail;
        if (f.num != 1 || f.wire != WT_LEN) continue;
        if (!read_piece(f.sub, &pieces[i], i, name, err)) goto fail;
        strs[i] = (llc_str){(const char *)pieces[i].text.p, (uint64_t)(pieces[i].text.end - pieces[i].text.p)};
        i++;
    }

    tok = llc_tok_new(n_pieces, err);
    if (!tok) goto fail_prefix;
    tok->kind = LLC_TOK_SPM;
    snprintf(tok->model, sizeof tok->model, "llama");
    if (!llc_tok_set_texts(tok, strs, false, err)) goto fail_prefix;
    tok->has_scores = true;
    for (size_t i = 0; i < n_pieces; i++) {
        tok->tokens[i].score = pieces[i].score;
        tok->tokens[i].type = (uint8_t)pieces[i].type;
    }
    /* SentencePiece refuses a model that defines a piece twice. */
    size_t slots = 16;
    while (slots < 2 * n_pieces) slots *= 2;
    int32_t *seen = malloc(slots * sizeof *seen);
    if (!seen) {
        llc_fail(err, "%s: out of memory", name);
        goto fail;
    }
    memset(seen, 0xFF, slots * sizeof *seen);
    for (size_t i = 0; i < n_pieces; i++) {
        const llc_token *t = &tok->tokens[i];
        size_t j = llc_tok_hash(t->text, t->len) & (slots - 1);
        for (; seen[j] >= 0; j = (j + 1) & (slots - 1)) {
            const llc_token *o = &tok->tokens[seen[j]];
            if (o->len == t->len && !memcmp(o->text, t->text, t->len)) {
                show(shown, sizeof shown, pieces[i].text);
                llc_fail(err, "%s: piece %zu \"%s\" is already defined (piece %d)", name, i, shown, seen[j]);
                free(seen);
                goto fail;
            }
        }
        seen[j] = (int32_t)i;
    }
    free(seen);

    /* The map is needed to look the special pieces up by text; llc_tok_finish keeps it. */
    tok->add_space_prefix = sp.add_dummy_prefix;
    tok->remove_extra_ws = sp.remove_extra_ws;
    tok->add_bos = true;
    if (!llc_tok_finish(tok, err)) goto fail_prefix;
    tok->unk = special_id(tok, sp.unk_piece, "<unk>", sp.unk_id);
    tok->bos = special_id(tok, sp.bos_piece, "<s>", sp.bos_id);
    tok->eos = special_id(tok, sp.eos_piece, "</s>", sp.eos_id);
    tok->pad = special_id(tok, sp.pad_piece, "<pad>", sp.pad_id);
    if (tok->unk >= 0 && tok->tokens[tok->unk].type != LLC_TT_UNKNOWN) tok->unk = -1;
    if (tok->unk < 0)
        for (size_t i = 0; i < n_pieces && tok->unk < 0; i++)
            if (tok->tokens[i].type == LLC_TT_UNKNOWN) tok->unk = (int32_t)i;
    if (tok->bos < 0) tok->add_bos = false;
    llc_tokenizer_add_eog(tok, tok->eos);
    free(pieces);
    free(strs);
    return tok;

fail_prefix:
    llc_error_prefix(err, "%s", name);
fail:
    free(pieces);
    free(strs);
    llamac_tokenizer_free(tok);
    return NULL;
}
