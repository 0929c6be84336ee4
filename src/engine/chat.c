/*
 * Chat formats: a conversation to token ids, as the reference implementations build them.
 *
 * Llama 3 follows Meta's ChatFormat (llama3/llama/tokenizer.py): <|begin_of_text|>, then per message
 * the header <|start_header_id|> encode(role) <|end_header_id|> encode("\n\n"), then
 * encode(content.strip()) and <|eot_id|>; the generation prompt is the assistant header. The Hugging Face
 * chat_template shipped with the vocabulary renders the same text ('<|start_header_id|>' + role +
 * '<|end_header_id|>\n\n' + content|trim + '<|eot_id|>', bos_token before the first message, the
 * assistant header at the end, no default system message), and because the stripped content never
 * starts with whitespace the pre-tokenizer cuts that text exactly where Meta's piecewise encoding does.
 *
 * Llama 2 follows Meta's chat_completion (llama/generation.py): a leading system message is folded
 * into the first user message as B_SYS + system + E_SYS + user; each exchange is
 * encode(f"[INST] {user.strip()} [/INST] {answer.strip()} ", bos=True, eos=True) and the last user
 * message encode(f"[INST] {user.strip()} [/INST]", bos=True). BOS and EOS are tokens, never text.
 *
 * Message text is tokenized without special-token parsing, so a user typing "<|eot_id|>" gets text,
 * not a control token. Special tokens are looked up by their text.
 *
 * The format is told by the chat template the model carries ("<|start_header_id|>": Llama 3,
 * "[INST]": Llama 2), else by the vocabulary. The template itself is not run: the Llama 3.1+ templates'
 * default system message (knowledge cutoff, date) and tool calling are not reproduced.
 */
#include "engine/chat.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* ---- Python's str.strip ------------------------------------------------------------------------- */

/* Code point of the UTF-8 character at s[0..n), its length in *len; -1 when malformed. */
static long utf8_decode(const unsigned char *s, size_t n, size_t *len) {
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (k == 0 || k > n) return -1;
    long cp = k == 1 ? (long)c : k == 2 ? (long)(c & 0x1F) : k == 3 ? (long)(c & 0x0F) : (long)(c & 0x07);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *len = k;
    return cp;
}

static bool py_isspace(long cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

size_t llc_chat_strip(const char *text, size_t len, size_t *start) {
    const unsigned char *s = (const unsigned char *)text;
    size_t b = 0, e = len, k;
    while (b < e) {
        long cp = utf8_decode(s + b, e - b, &k);
        if (cp < 0 || !py_isspace(cp)) break;
        b += k;
    }
    while (e > b) {
        size_t j = e - 1;
        while (j > b && e - j < 4 && (s[j] & 0xC0) == 0x80) j--;
        long cp = utf8_decode(s + j, e - j, &k);
        if (cp < 0 || k != e - j || !py_isspace(cp)) break;
        e = j;
    }
    *start = b;
    return e - b;
}

/* ---- output ------------------------------------------------------------------------------------- */

/* Where ids go: the first cap are written, all are counted. */
typedef struct sink {
    int32_t *out;
    int cap, n;
} sink;

static bool push(sink *o, int32_t id, llamac_error *err) {
    if (o->n == INT_MAX) return llc_fail(err, "conversation too long");
    if (o->n < o->cap) o->out[o->n] = id;
    o->n++;
    return true;
}

static bool push_ids(const llamac_tokenizer *tok, sink *o, const int32_t *ids, int n, llamac_error *err) {
    if (n < 0 || (n > 0 && !ids)) return llc_fail(err, "chat message: bad token id list (%d ids)", n);
    int n_vocab = llamac_tokenizer_n_vocab(tok);
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n_vocab)
            return llc_fail(err, "chat message: token id %d is outside the vocabulary (0..%d)", ids[i], n_vocab - 1);
        if (!push(o, ids[i], err)) return false;
    }
    return true;
}

/* Plain text, never special tokens, no BOS (the SentencePiece dummy prefix applies, as in Meta's encode). */
static bool push_text(const llamac_tokenizer *tok, sink *o, const char *s, size_t len, llamac_error *err) {
    if (len == 0) return true;
    int room = o->n < o->cap ? o->cap - o->n : 0;
    int k = llamac_tokenize(tok, s, len, false, false, room ? o->out + o->n : NULL, room, err);
    if (k < 0) return false;
    if (k > INT_MAX - o->n) return llc_fail(err, "conversation too long");
    o->n += k;
    return true;
}

/* ---- formats ------------------------------------------------------------------------------------ */

llamac_chat_format llamac_chat_format_detect(const llamac_tokenizer *tok) {
    const char *tpl = tok ? llamac_tokenizer_chat_template(tok) : NULL;
    if (tpl) {
        if (strstr(tpl, "<|start_header_id|>")) return LLAMAC_CHAT_LLAMA3;
        if (strstr(tpl, "[INST]")) return LLAMAC_CHAT_LLAMA2;
    }
    return tok && llamac_tokenizer_token_id(tok, "<|start_header_id|>") >= 0 ? LLAMAC_CHAT_LLAMA3 : LLAMAC_CHAT_LLAMA2;
}

int llamac_chat_format_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "llama3")) return LLAMAC_CHAT_LLAMA3;
    if (!strcmp(name, "llama2")) return LLAMAC_CHAT_LLAMA2;
    if (!strcmp(name, "auto")) return LLAMAC_CHAT_AUTO;
    return -1;
}

const char *llamac_chat_format_name(llamac_chat_format format) {
    switch (format) {
    case LLAMAC_CHAT_LLAMA3: return "llama3";
    case LLAMAC_CHAT_LLAMA2: return "llama2";
    case LLAMAC_CHAT_AUTO: return "auto";
    }
    return "unknown";
}

static bool check_message(const llamac_chat_message *m, int i, llamac_error *err) {
    if (!m->role) return llc_fail(err, "chat message %d has no role", i);
    if (!m->ids && !m->content) return llc_fail(err, "chat message %d (%s) has no content", i, m->role);
    return true;
}

static bool push_stripped(const llamac_tokenizer *tok, sink *o, const char *s, llamac_error *err) {
    size_t b, n = llc_chat_strip(s, strlen(s), &b);
    return push_text(tok, o, s + b, n, err);
}

static bool llama3_header(const llamac_tokenizer *tok, sink *o, const int32_t sp[3], const char *role, llamac_error *err) {
    return push(o, sp[0], err) && push_text(tok, o, role, strlen(role), err) && push(o, sp[1], err) &&
           push_text(tok, o, "\n\n", 2, err);
}

static bool format_llama3(const llamac_tokenizer *tok, const llamac_chat_message *msgs, int n, bool gen, sink *o,
                          llamac_error *err) {
    static const char *names[] = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    int32_t sp[3];
    for (int i = 0; i < 3; i++)
        if ((sp[i] = llamac_tokenizer_token_id(tok, names[i])) < 0)
            return llc_fail(err, "the llama3 chat format needs a %s token, which this vocabulary lacks", names[i]);
    int32_t bot = llamac_tokenizer_token_id(tok, "<|begin_of_text|>");
    if (bot < 0) bot = llamac_tokenizer_bos(tok);
    if (bot < 0) return llc_fail(err, "the llama3 chat format needs <|begin_of_text|> (BOS), which this vocabulary lacks");
    if (!push(o, bot, err)) return false;
    for (int i = 0; i < n; i++) {
        const llamac_chat_message *m = &msgs[i];
        if (!check_message(m, i, err) || !llama3_header(tok, o, sp, m->role, err)) return false;
        if (m->ids ? !push_ids(tok, o, m->ids, m->n_ids, err) : !push_stripped(tok, o, m->content, err)) return false;
        if (!push(o, sp[2], err)) return false;
    }
    return !gen || llama3_header(tok, o, sp, "assistant", err);
}

/* A growable string for the Llama 2 texts. */
typedef struct strbuf {
    char *p;
    size_t n, cap;
    bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_add_stripped(strbuf *b, const char *s, size_t len) {
    size_t start, n = llc_chat_strip(s, len, &start);
    sb_add(b, s + start, n);
}

/* The ids the trailing space of Meta's f"… {answer} " becomes after an answer kept as ids: what " "
 * adds after a word (SentencePiece: "▁"; byte-level BPE: "Ġ"). */
static int space_after_word(const llamac_tokenizer *tok, int32_t out[4], llamac_error *err) {
    int32_t a[8], b[8];
    int na = llamac_tokenize(tok, "a", 1, false, false, a, 8, err);
    int nb = llamac_tokenize(tok, "a ", 2, false, false, b, 8, err);
    if (na < 0 || nb < 0) return -1;
    if (na > 8 || nb > 8 || nb <= na || nb - na > 4 || memcmp(a, b, (size_t)na * sizeof *a) != 0) {
        llc_fail(err, "the llama2 chat format: this vocabulary does not encode a space after a word on its own");
        return -1;
    }
    memcpy(out, b + na, (size_t)(nb - na) * sizeof *out);
    return nb - na;
}

static bool format_llama2(const llamac_tokenizer *tok, const llamac_chat_message *msgs, int n, bool gen, sink *o,
                          llamac_error *err) {
    int32_t bos = llamac_tokenizer_bos(tok), eos = llamac_tokenizer_eos(tok);
    if (bos < 0 || eos < 0) return llc_fail(err, "the llama2 chat format needs BOS and EOS tokens, which this vocabulary lacks");
    for (int i = 0; i < n; i++)
        if (!check_message(&msgs[i], i, err)) return false;
    int first = 0;
    const char *sys = NULL;
    if (n > 0 && !strcmp(msgs[0].role, "system")) {
        if (!msgs[0].content) return llc_fail(err, "llama2 chat format: the system message must be text");
        sys = msgs[0].content;
        first = 1;
    }
    if (first >= n) return llc_fail(err, "llama2 chat format: the conversation needs a user message");
    for (int i = first; i < n; i++) {
        const char *want = (i - first) % 2 == 0 ? "user" : "assistant";
        if (strcmp(msgs[i].role, want) != 0)
            return llc_fail(err, "llama2 chat format: after an optional system message, messages alternate user and "
                                 "assistant; message %d is '%.40s' where '%s' belongs", i, msgs[i].role, want);
        if (msgs[i].ids && (i - first) % 2 == 0)
            return llc_fail(err, "llama2 chat format: only assistant messages can be given as token ids");
    }
    if (gen && strcmp(msgs[n - 1].role, "user") != 0)
        return llc_fail(err, "llama2 chat format: a generation prompt needs the user's message last");
    int32_t space[4];
    int n_space = 0;
    strbuf t = {0};
    bool ok = true;
    for (int i = first; ok && i < n; i += 2) {
        const llamac_chat_message *u = &msgs[i], *a = i + 1 < n ? &msgs[i + 1] : NULL;
        /* f"{B_INST} {(prompt['content']).strip()} {E_INST}", the first prompt holding the system text */
        t.n = 0;
        sb_add(&t, "[INST] ", 7);
        if (sys && i == first) {
            strbuf c = {0};
            sb_add(&c, "<<SYS>>\n", 8);
            sb_add(&c, sys, strlen(sys));
            sb_add(&c, "\n<</SYS>>\n\n", 11);
            sb_add(&c, u->content, strlen(u->content));
            if (c.oom) t.oom = true;
            else sb_add_stripped(&t, c.p, c.n);
            free(c.p);
        } else {
            sb_add_stripped(&t, u->content, strlen(u->content));
        }
        sb_add(&t, " [/INST]", 8);
        if (a && !a->ids) {
            sb_add(&t, " ", 1);
            sb_add_stripped(&t, a->content, strlen(a->content));
            sb_add(&t, " ", 1);
        }
        if (t.oom) {
            ok = llc_fail(err, "out of memory formatting a conversation");
            break;
        }
        ok = push(o, bos, err) && push_text(tok, o, t.p, t.n, err);
        if (ok && a && a->ids) {
            if (n_space == 0 && (n_space = space_after_word(tok, space, err)) < 0) ok = false;
            ok = ok && push_ids(tok, o, a->ids, a->n_ids, err) && push_ids(tok, o, space, n_space, err);
        }
        if (ok && a) ok = push(o, eos, err);
    }
    free(t.p);
    return ok;
}

int llamac_chat_tokenize(const llamac_tokenizer *tok, llamac_chat_format format, const llamac_chat_message *msgs,
                         int n, bool add_generation_prompt, int32_t *out, int cap, llamac_error *err) {
    if (!tok) {
        llc_fail(err, "no tokenizer");
        return -1;
    }
    if (n < 0 || (n > 0 && !msgs)) {
        llc_fail(err, "bad message list (%d messages)", n);
        return -1;
    }
    if (format == LLAMAC_CHAT_AUTO) format = llamac_chat_format_detect(tok);
    sink o = {out, out && cap > 0 ? cap : 0, 0};
    bool ok;
    if (format == LLAMAC_CHAT_LLAMA3) ok = format_llama3(tok, msgs, n, add_generation_prompt, &o, err);
    else if (format == LLAMAC_CHAT_LLAMA2) ok = format_llama2(tok, msgs, n, add_generation_prompt, &o, err);
    else ok = llc_fail(err, "unknown chat format %d", (int)format);
    return ok ? o.n : -1;
}
