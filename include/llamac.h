/*
 * llamac — Llama inference in C.
 *
 * The whole public surface: load a model, tokenize, run a session over a KV cache, sample.
 * Every fallible call takes an llamac_error* (may be NULL) and reports a one-line message through it;
 * the library never prints and never exits.
 */
#ifndef LLAMAC_H
#define LLAMAC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llamac_error {
    char message[512];
} llamac_error;

typedef struct llamac_model llamac_model;
typedef struct llamac_tokenizer llamac_tokenizer;
typedef struct llamac_session llamac_session;
typedef struct llamac_sampler llamac_sampler;

/* ---- models ------------------------------------------------------------------------------------ */

typedef struct llamac_model_params {
    /* Tokenizer file to use instead of the one inside the model (required for llama2.c .bin files,
     * which carry none: tok512.bin and friends). NULL: the model's own, or tokenizer.bin beside it. */
    const char *tokenizer_path;
} llamac_model_params;

typedef struct llamac_model_info {
    int n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, n_vocab, n_ctx_train;
    int rope_dim;
    float rms_eps, rope_theta;
    bool has_rope_freqs;   /* Llama 3.1/3.2 rope scaling factors present */
    bool tied_output;      /* output projection shares the token embedding */
    const char *format;    /* "gguf", "llama2c", "hf" or "meta" */
    const char *name;      /* general.name or the file name */
    const char *weight_type; /* dominant tensor type of the matrices, e.g. "q8_0" */
    uint64_t weight_bytes; /* bytes of all tensors */
    uint64_t n_params;
    /* Per token: the weight bytes a decode step reads (every matrix once, the output projection
     * included, one embedding row aside) and the multiply-adds of its matmuls. */
    uint64_t decode_bytes, matmul_macs;
    /* Sampling defaults the checkpoint ships (Hugging Face generation_config.json); 0: none given. */
    float default_temperature, default_top_p;
} llamac_model_info;

llamac_model *llamac_model_load(const char *path, const llamac_model_params *params, llamac_error *err);
void llamac_model_free(llamac_model *model);
void llamac_model_get_info(const llamac_model *model, llamac_model_info *info);
const llamac_tokenizer *llamac_model_tokenizer(const llamac_model *model);
/* Element type of a KV cache: the keys and values of every position kept. Keys are stored after RoPE;
 * attention reads them back as f32 (f32 in place, the others converted tile by tile). */
typedef enum llamac_kv_type {
    LLAMAC_KV_F32 = 0,  /* 4 bytes a value, exact (the default) */
    LLAMAC_KV_F16 = 1,  /* IEEE half, 2 bytes */
    LLAMAC_KV_BF16 = 2, /* bfloat16, 2 bytes */
    LLAMAC_KV_Q8_0 = 3, /* ggml's Q8_0 along each position's row: 34 bytes per 32 values; n_kv_heads x
                         * head_dim must be a multiple of 32 */
} llamac_kv_type;
/* "f32", "f16", "bf16", "q8_0" (any case) to a type; -1 for anything else. */
int llamac_kv_type_from_name(const char *name);
const char *llamac_kv_type_name(llamac_kv_type type);
/* Bytes of KV cache a session of n_ctx positions needs with elements of the given type (0 when the
 * type does not apply to the model: q8_0 with rows not a multiple of 32). */
uint64_t llamac_model_kv_bytes(const llamac_model *model, int n_ctx, llamac_kv_type type);
/* The weight matrices, for listing: i in [0, llamac_model_n_tensors). */
typedef struct llamac_tensor_info {
    char name[64];
    const char *type;   /* "f32", "q4_0", … */
    int64_t cols, rows;
    uint64_t bytes;
    bool tied;          /* the output projection reusing token_embd (no storage of its own) */
} llamac_tensor_info;
int llamac_model_n_tensors(const llamac_model *model);
bool llamac_model_tensor(const llamac_model *model, int i, llamac_tensor_info *out);

/* What the file holds, grouped by element type (what `llamac info` shows): a GGUF's own tensor list,
 * norms included; for other formats the matrices as loaded plus the norms (and rope_freqs), which
 * llamac keeps in f32. */
typedef struct llamac_type_share {
    const char *type;      /* "q4_k", "f32", … */
    int n_tensors;
    uint64_t bytes, n_elements;
} llamac_type_share;
/* Writes at most cap shares to out, the biggest share of bytes first, and returns how many there are
 * (64 always suffice). */
int llamac_model_type_mix(const llamac_model *model, llamac_type_share *out, int cap);
/* llama.cpp's general.file_type the file records (GGUF only; e.g. 15 for Q4_K_M), -1 when none; *name
 * (may be NULL) gets llama.cpp's name for it ("Q4_K - Medium"), NULL when llamac does not know it. */
int llamac_model_file_type(const llamac_model *model, const char **name);

/* Writing a model as a GGUF (loadable by llama.cpp too): `llamac convert` and `llamac quantize` are
 * this call. The output is written beside path and renamed over it when complete, so it may replace
 * the (memory-mapped) file the model was loaded from; on failure nothing is left behind. */
typedef struct llamac_save_params {
    /* NULL: keep each tensor's type. Else every matrix re-encoded (any case): "f32", "f16", "bf16",
     * "q8_0", "q4_0", "q4_k", "q6_k", or llama.cpp's mixes "q4_k_m", "q4_k_s" (as llama-quantize
     * picks per tensor). Rows a type's block does not divide fall back (q4_k -> q4_0, q6_k -> q8_0, not a
     * multiple of 32 -> f16); norms stay f32; a tensor already of its type is copied as is. */
    const char *type;
    int n_threads;        /* threads re-encoding rows; 0: all cores */
    const char *format;   /* NULL or "gguf" (the only one so far; anything else is refused) */
    /* Optional, called after each tensor is written: the tensor as stored (GGUF name such as
     * "blk.0.attn_q.weight", its type and bytes) and the bytes done of the total. Returning false
     * cancels the save (error "cancelled"). The library never prints: progress bars are the caller's. */
    bool (*progress)(void *user, const llamac_tensor_info *tensor, uint64_t done_bytes, uint64_t total_bytes);
    void *user;
} llamac_save_params;
/* What a save wrote (for the caller's summary). */
typedef struct llamac_save_stats {
    int n_tensors;
    uint64_t bytes, n_elements; /* tensor data written, and the values it holds */
    int n_threads;              /* threads actually used */
    const char *file_type;      /* llama.cpp's name of the general.file_type recorded for a mix, else NULL */
} llamac_save_stats;
/* params and stats may be NULL (params NULL: a GGUF keeping every type, on all cores). */
bool llamac_model_save(const llamac_model *model, const char *path, const llamac_save_params *params,
                       llamac_save_stats *stats, llamac_error *err);
/* Whether llamac_model_save takes this type name, so a caller can refuse it before any work; and the
 * names it takes, as a human-readable list. */
bool llamac_save_type_known(const char *type);
const char *llamac_save_type_names(void);

/* A model of random weights with the shapes asked for (`llamac synth`): tests and benchmarks of a
 * model's cost where its weights cannot be had. The vocabulary is copied from a tokenizer file, so the
 * model tokenizes and runs like the real thing; the same seed gives the same weights in every format. */
typedef struct llamac_synth_params {
    const char *name;       /* general.name; NULL: "synthetic Llama" */
    int n_layers, dim, n_heads, n_kv_heads, ffn_dim, n_ctx_train;
    bool tied;              /* no output matrix: logits from the token embedding */
    float rope_theta;
    float rope_factor;      /* Llama 3.1 rope scaling factor (rope_freqs written); 0: none */
    bool instruct;          /* record the tokenizer's chat template (an instruction-tuned model) */
    const char *tokenizer_path; /* any tokenizer llamac_tokenizer_load reads (required) */
    const char *type;       /* as llamac_save_params.type; NULL: f32 */
    const char *format;     /* NULL or "gguf": a GGUF file; "hf": a Hugging Face folder (config.json,
                             * model.safetensors, tokenizer files); "meta": a Meta original folder */
    uint64_t seed;
} llamac_synth_params;
/* Writes the model to path (a file for gguf, a folder that is missing or a folder for hf/meta), checked
 * before any work; shapes that do not make a Llama are refused. */
bool llamac_model_synth(const char *path, const llamac_synth_params *params, llamac_error *err);

/* ---- memory estimates: what running a model will take, from its header alone ------------------- */

/* A model described by its sizes alone (`llamac synth`'s presets). */
typedef struct llamac_model_shape {
    int n_layers, dim, n_heads, n_kv_heads, ffn_dim, n_vocab, n_ctx_train;
    bool tied;            /* no output matrix: logits from the token embedding */
    bool rope_freqs;      /* Llama 3.1 rope scaling factors stored */
    const char *type;     /* every matrix's type or mix as llamac_save_params.type; NULL: f32 */
    int n_merges;         /* BPE merges of the vocabulary (Llama 3: 280147; SentencePiece: 0); -1: guessed
                           * from n_vocab */
} llamac_model_shape;

typedef struct llamac_memory_params {
    int n_ctx;            /* positions per sequence; 0: min(training context, 4096), as a session */
    int n_seqs;           /* sequences run together (1: a session; more: the batching engine with
                           * max_seqs = n_seqs and a KV cache of n_seqs full contexts); 0: 1 */
    const char *type;     /* as if re-encoded to this type or mix (llamac_save_params.type, the rule
                           * `llamac quantize` applies per tensor); NULL: as stored */
    llamac_kv_type kv_type;
} llamac_memory_params;

#define LLAMAC_MEMORY_MAX_TYPES 64 /* every element type llamac knows fits */
typedef struct llamac_memory_estimate {
    /* Resident bytes, once the context is full. weights: every matrix as the kernels read it (repacked
     * where this machine repacks, llamac_model_info.weight_type), the norms; an untied token embedding
     * is left out: it stays in the mapped file and only the rows of tokens seen are read, so it is
     * given on its own in embedding_by_row. */
    uint64_t weights, embedding_by_row;
    uint64_t kv_cache;    /* keys and values of n_seqs x n_ctx positions, and the pool's bookkeeping */
    /* The forward pass's scratch (activations of a 256-token chunk), the logits, the session's or
     * engine's batch buffers, and the buffer a first run packs the weights through. */
    uint64_t scratch;
    /* The vocabulary and BPE tables (from the per-token and per-merge costs measured on Llama 2's and
     * Llama 3's vocabularies) and the GGUF metadata pages they are read from. */
    uint64_t tokenizer;
    uint64_t total;       /* weights + kv_cache + scratch + tokenizer; the process's own code is not counted */
    /* The tensors as stored (after type, the file's bytes of each), by element type, biggest first. */
    llamac_type_share types[LLAMAC_MEMORY_MAX_TYPES];
    int n_types;
    uint64_t n_params;
    llamac_model_shape shape; /* what the source gave (type: the dominant matrix type after params->type) */
    int n_ctx, n_seqs;    /* as resolved */
    const char *kv_type;  /* "f32", … */
} llamac_memory_estimate;

/* From a file without loading it: a GGUF (its header), a llama2.c checkpoint (its header), a Hugging
 * Face folder or its config.json (the dtype from the header of model.safetensors, or of the shard
 * model.safetensors.index.json names for the first layer, when there; else the config's torch_dtype). params may be NULL. */
bool llamac_estimate_memory(const char *path, const llamac_memory_params *params, llamac_memory_estimate *out,
                            llamac_error *err);
/* From bytes a caller fetched (the first bytes of a remote GGUF, with at least its whole header; or a
 * config.json's text and the weights' dtype, "bf16", "f16" or "f32", NULL: the config's torch_dtype). */
bool llamac_estimate_memory_gguf(const void *header, size_t len, const llamac_memory_params *params,
                                 llamac_memory_estimate *out, llamac_error *err);
bool llamac_estimate_memory_hf_config(const char *config_json, size_t len, const char *dtype,
                                      const llamac_memory_params *params, llamac_memory_estimate *out, llamac_error *err);
bool llamac_estimate_memory_shape(const llamac_model_shape *shape, const llamac_memory_params *params,
                                  llamac_memory_estimate *out, llamac_error *err);

/* Instruction set the kernels run with on this CPU ("scalar", "avx2", "avx512"); LLAMAC_ISA forces one. */
const char *llamac_isa(void);

/* ---- tokenizer --------------------------------------------------------------------------------- */

/* A tokenizer on its own, told apart by content: a GGUF (also vocabulary-only files), a Hugging Face
 * tokenizer.json (Llama 3), a tiktoken tokenizer.model (Llama 3), a SentencePiece tokenizer.model
 * (Llama 1/2) or a llama2.c tokenizer.bin. */
llamac_tokenizer *llamac_tokenizer_load(const char *path, llamac_error *err);
void llamac_tokenizer_free(llamac_tokenizer *tok);

/* Tokenize len bytes of text. Writes at most cap ids to out and returns the total count, which may be
 * larger than cap (call again with a bigger buffer); -1 on error. parse_special: text like "<s>" or
 * "<|eot_id|>" becomes the special token instead of plain text. */
int llamac_tokenize(const llamac_tokenizer *tok, const char *text, size_t len, bool add_bos, bool parse_special,
                    int32_t *out, int cap, llamac_error *err);
int llamac_tokenizer_n_vocab(const llamac_tokenizer *tok);
int32_t llamac_tokenizer_bos(const llamac_tokenizer *tok);
int32_t llamac_tokenizer_eos(const llamac_tokenizer *tok);
/* True for every token that ends a generation (EOS, <|eot_id|>, <|eom_id|>, …). */
bool llamac_tokenizer_is_eog(const llamac_tokenizer *tok, int32_t id);
/* The bytes token id stands for in decoded text (may be part of a UTF-8 character). Control tokens
 * decode to nothing. Returns the length; *bytes points into the tokenizer. */
size_t llamac_token_bytes(const llamac_tokenizer *tok, int32_t id, const char **bytes);
/* The chat template (Jinja) the tokenizer came with: GGUF tokenizer.chat_template, or the
 * tokenizer_config.json beside a tokenizer.json / tokenizer.model. NULL if none. Owned by tok. */
const char *llamac_tokenizer_chat_template(const llamac_tokenizer *tok);
/* Id of the token spelled exactly text as the vocabulary has it (e.g. "<|eot_id|>"), -1 if none. */
int32_t llamac_tokenizer_token_id(const llamac_tokenizer *tok, const char *text);

/* Well-formed UTF-8 by the rule the tokenizers and the detokenizer apply (no overlongs, surrogates,
 * code points past U+10FFFF or truncated characters), for callers choosing text a strict reference
 * tokenizer (tiktoken) also accepts. */
bool llamac_utf8_valid(const char *s, size_t n);

/* Streaming detokenizer: feeds ids, returns text that is safe to print (never a broken UTF-8
 * character; a partial one is held until it completes). */
typedef struct llamac_detokenizer {
    const llamac_tokenizer *tok;
    int32_t prev;          /* previous id, -1 at start */
    unsigned char pending[8];
    int n_pending;
} llamac_detokenizer;
void llamac_detokenizer_init(llamac_detokenizer *d, const llamac_tokenizer *tok);
/* Writes the printable text for id to buf (NUL-terminated) and returns its length. A buffer of
 * llamac_detokenizer_max_bytes(tok) always suffices (256 does for Llama 2 and 3); with a smaller one
 * the text is cut at a character boundary. */
size_t llamac_detokenize(llamac_detokenizer *d, int32_t id, char *buf, size_t cap);
size_t llamac_detokenizer_max_bytes(const llamac_tokenizer *tok);
/* Flushes a held incomplete character as U+FFFD. */
size_t llamac_detokenizer_flush(llamac_detokenizer *d, char *buf, size_t cap);

/* ---- sessions: a KV cache and the forward pass -------------------------------------------------- */

typedef struct llamac_session_params {
    int n_ctx;      /* positions in the KV cache; 0: min(model's training context, 4096) */
    int n_threads;  /* 0: all cores */
    llamac_kv_type kv_type; /* element type of the KV cache (0: f32) */
} llamac_session_params;

llamac_session *llamac_session_create(const llamac_model *model, const llamac_session_params *params,
                                      llamac_error *err);
void llamac_session_free(llamac_session *s);
/* Run n tokens at the next positions (as one batch) and keep their keys/values in the cache.
 * Returns the logits of the last token (n_vocab floats, valid until the next call), NULL on error. */
const float *llamac_session_eval(llamac_session *s, const int32_t *tokens, int n, llamac_error *err);
/* Like eval, but writes the logits of every token of the batch to logits_out (n * n_vocab floats). */
int llamac_session_eval_all(llamac_session *s, const int32_t *tokens, int n, float *logits_out, llamac_error *err);
int llamac_session_pos(const llamac_session *s);
int llamac_session_n_ctx(const llamac_session *s);
/* Forget everything after position pos (0: start over). */
void llamac_session_truncate(llamac_session *s, int pos);

/* ---- sampling ---------------------------------------------------------------------------------- */

typedef struct llamac_sampler_params {
    float temperature;     /* 0: greedy */
    int top_k;             /* 0: off */
    float top_p;           /* 1: off */
    float min_p;           /* 0: off */
    float repeat_penalty;  /* 1: off */
    int repeat_last_n;     /* tokens the penalty looks back over */
    uint64_t seed;
} llamac_sampler_params;

llamac_sampler_params llamac_sampler_defaults(void);
llamac_sampler *llamac_sampler_create(const llamac_sampler_params *params, int n_vocab, llamac_error *err);
void llamac_sampler_free(llamac_sampler *s);
/* Picks the next token from logits (not modified). */
int32_t llamac_sampler_sample(llamac_sampler *s, const float *logits);
/* Records a token in the history the repetition penalty looks at (prompt tokens and sampled ones). */
void llamac_sampler_accept(llamac_sampler *s, int32_t token);

/* ---- chat -------------------------------------------------------------------------------------- */

typedef enum llamac_chat_format {
    LLAMAC_CHAT_AUTO = 0,   /* from the model's chat template, else its vocabulary (llamac_chat_format_detect) */
    /* Meta's ChatFormat (Llama 3): <|begin_of_text|> once, then per message
     * <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>, and the generation prompt
     * <|start_header_id|>assistant<|end_header_id|>\n\n. */
    LLAMAC_CHAT_LLAMA3 = 1,
    /* Meta's chat_completion (Llama 2): per exchange <s>[INST] USER [/INST] ANSWER </s>, the last user
     * message as <s>[INST] USER [/INST]; a system message goes into the first user message as
     * "<<SYS>>\nSYSTEM\n<</SYS>>\n\n". <s> and </s> are the BOS and EOS tokens. */
    LLAMAC_CHAT_LLAMA2 = 2,
} llamac_chat_format;

typedef struct llamac_chat_message {
    const char *role;      /* "system", "user", "assistant" (Llama 3 takes any role name) */
    /* NUL-terminated UTF-8. Stripped of surrounding whitespace (as Python's str.strip) and tokenized
     * without special-token parsing: text such as "<|eot_id|>" stays text. */
    const char *content;
    /* Instead of content when non-NULL: the content as token ids, used verbatim (an answer as it was
     * sampled, so a conversation kept in a KV cache matches its re-formatting token for token).
     * Llama 2 takes ids for assistant messages only. */
    const int32_t *ids;
    int n_ids;
} llamac_chat_message;

/* LLAMAC_CHAT_LLAMA3 or _LLAMA2: from the chat template the model carries when it has one, else from
 * the vocabulary (a <|start_header_id|> token: Llama 3; otherwise Llama 2). */
llamac_chat_format llamac_chat_format_detect(const llamac_tokenizer *tok);
/* "llama3", "llama2" (and "auto") to a format; -1 for anything else. */
int llamac_chat_format_from_name(const char *name);
const char *llamac_chat_format_name(llamac_chat_format format);

/* The token ids of a conversation in a chat format, BOS included. add_generation_prompt appends what
 * starts the assistant's answer (Llama 3: the assistant header; Llama 2: nothing, the final
 * "[INST] … [/INST]" is the prompt, and the flag only requires the user's message last). A Llama 2
 * answer given as ids is closed as Meta's f"{answer} " is: its ids, the ids of a space after a word,
 * EOS. Writes at most cap ids to out and returns the total count (call again with a bigger buffer if
 * larger than cap); -1 on error (a vocabulary without the format's special tokens, Llama 2 roles out
 * of order, …). The ids of a conversation with the generation prompt begin the ids of the same
 * conversation continued by an answer given as ids and further messages: a KV cache holding a prompt
 * and its sampled answer needs only the next turn evaluated. */
int llamac_chat_tokenize(const llamac_tokenizer *tok, llamac_chat_format format, const llamac_chat_message *msgs,
                         int n, bool add_generation_prompt, int32_t *out, int cap, llamac_error *err);

/* ---- many requests at once: continuous batching over a paged KV cache ------------------------- */
/*
 * An engine runs many requests together, as vLLM does: each step concatenates a prefill chunk or a
 * single new token of every running sequence into one batch (one pass over the weights for all of
 * them). Requests join at step boundaries; a per-step token budget mixes prompt chunks with decodes
 * so running sequences keep streaming while a long prompt is absorbed. The KV cache is a pool of
 * blocks bounded by a memory budget; a finished or cancelled request frees its blocks at once, and
 * when blocks run out the most recently admitted sequence is preempted (its blocks freed, its tokens
 * recomputed later). Full blocks of prompts are cached by content (prefix caching), so a shared system
 * prompt or chat history is computed once. Greedy results are the same as running each request alone.
 */
typedef struct llamac_engine llamac_engine;

typedef struct llamac_engine_params {
    int n_threads;        /* 0: all cores */
    int max_seqs;         /* sequences running at once; 0: 64 */
    int n_ctx;            /* most positions one sequence may use; 0: min(training context, 4096); never more
                           * than the KV cache holds */
    uint64_t kv_mem;      /* KV cache budget in bytes; 0: kv_tokens decides */
    int kv_tokens;        /* KV cache budget in positions (all sequences together); 0 (and kv_mem 0): 1 GiB,
                           * or less when max_seqs sequences of n_ctx positions need less */
    int block_size;       /* positions per KV block; 0: 16 */
    int step_tokens;      /* most tokens one step computes (prompt chunks and decodes together); 0: 512 */
    bool no_prefix_cache; /* turn prefix caching off */
    llamac_kv_type kv_type; /* element type of the KV cache (0: f32); kv_mem buys blocks of its size */
} llamac_engine_params;

/* Every token's text is matched against every stop string, and text that could begin one is held
 * back: a request may give at most LLAMAC_MAX_STOP of them, each at most LLAMAC_MAX_STOP_LEN bytes. */
#define LLAMAC_MAX_STOP 64
#define LLAMAC_MAX_STOP_LEN 256

typedef struct llamac_request {
    const int32_t *prompt;          /* prompt ids, BOS included if wanted (copied) */
    int n_prompt;
    int max_tokens;                 /* most new tokens; 0: until end of generation or n_ctx */
    llamac_sampler_params sampling; /* per request; llamac_sampler_defaults() then adjust */
    const char *const *stop;        /* stop strings (copied): the text ends before the first one found */
    int n_stop;
    bool ignore_eog;                /* keep going past end-of-generation tokens (benchmarks) */
    /* The events' text continues the prompt's text (prompt text + event texts = the whole text, as
     * llamac generate prints it). separate_text: decode the new tokens as a text of their own, as a
     * chat answer is (SentencePiece then drops the leading space of the first piece). */
    bool separate_text;
    /* OpenAI's penalties over the tokens generated so far (not the prompt), applied to the logits before
     * sampling: logit[t] -= frequency_penalty x count(t) + presence_penalty x (count(t) > 0). 0: off. */
    float presence_penalty, frequency_penalty;
    /* Added to the logits of the given ids before sampling (copied); ids inside the vocabulary. */
    const int32_t *logit_bias_ids;
    const float *logit_bias;
    int n_logit_bias;
    /* Each token's event carries its log-probability under the model (log-softmax of the raw logits:
     * before bias, penalties and temperature) and the top_logprobs most likely tokens' (at most
     * LLAMAC_MAX_TOP_LOGPROBS). */
    bool logprobs;
    int top_logprobs;
} llamac_request;
#define LLAMAC_MAX_TOP_LOGPROBS 20

typedef enum llamac_finish {
    LLAMAC_RUNNING = 0,
    LLAMAC_FINISH_STOP = 1,      /* an end-of-generation token or a stop string */
    LLAMAC_FINISH_LENGTH = 2,    /* max_tokens or the context size */
    LLAMAC_FINISH_CANCELLED = 3,
} llamac_finish;

typedef struct llamac_event {
    int request;          /* the id llamac_engine_submit returned */
    int32_t token;        /* the new token, or -1 for an event that only finishes the request */
    const char *text;     /* printable text released by this token (text that might begin a stop
                           * string is held back until it cannot); valid until the next step */
    size_t text_len;
    llamac_finish finish; /* not LLAMAC_RUNNING: the request's last event */
    int cached_tokens;    /* of the request's prompt, the tokens the prefix cache supplied when it was first
                           * admitted (not computed); 0 before that */
    /* With llamac_request.logprobs, for a token: its log-probability, and the n_top most likely tokens
     * with theirs, most likely first. */
    float logprob;
    int n_top;
    int32_t top_ids[LLAMAC_MAX_TOP_LOGPROBS];
    float top_logprobs[LLAMAC_MAX_TOP_LOGPROBS];
} llamac_event;

typedef struct llamac_engine_stats {
    uint64_t steps;
    /* prompt_tokens: the prompts of the requests admitted so far (each counted once); of those,
     * prompt_tokens_cached came from the prefix cache at their first admission (not computed). */
    uint64_t prompt_tokens, prompt_tokens_cached, generated_tokens, preemptions;
    /* Tokens that went through the forward pass: prompt chunks, decodes and the recomputation of
     * preempted sequences. */
    uint64_t computed_tokens;
    int kv_blocks, kv_blocks_used, block_size;
    int kv_blocks_peak;     /* most blocks in use at the end of a step */
    /* Fragmentation: positions allocated to running sequences but not filled, at the end of each step.
     * kv_waste_blocks is the mean per running sequence, in blocks (paging keeps it below 1);
     * kv_waste_max the most one sequence ever had, in positions (below block_size). */
    double kv_waste_blocks;
    int kv_waste_max;
    int running, waiting;
    int n_ctx;              /* most positions one sequence may use (n_ctx, capped by the KV budget) */
} llamac_engine_stats;

llamac_engine *llamac_engine_create(const llamac_model *model, const llamac_engine_params *params, llamac_error *err);
void llamac_engine_free(llamac_engine *e);
/* Queues a request; it joins the running batch at the next step. Returns its id (>= 0), or -1 with err
 * set (empty prompt, a prompt longer than n_ctx, ids outside the vocabulary, bad sampling parameters). */
int llamac_engine_submit(llamac_engine *e, const llamac_request *r, llamac_error *err);
/* Cancels a waiting or running request: its blocks are freed now, its finish event comes with the next
 * step. Unknown or finished ids are ignored. */
void llamac_engine_cancel(llamac_engine *e, int request);
/* Runs one step. Returns the step's events (tokens produced, requests finished; owned by the engine,
 * valid until the next call) and their count in *n_events; NULL with err set on failure (a failed
 * forward pass keeps nothing of the step: its requests stay pending and are recomputed by the next
 * steps; out of memory may lose the step's events). */
const llamac_event *llamac_engine_step(llamac_engine *e, int *n_events, llamac_error *err);
/* Requests submitted and not yet finished. */
int llamac_engine_pending(const llamac_engine *e);
void llamac_engine_get_stats(const llamac_engine *e, llamac_engine_stats *out);

/* The seed-style batch call on top of the engine: completes each prompt (tokenized with BOS) with
 * nucleus sampling (temperature 0: greedy; no top-k or min-p; prompt i seeded with the default seed + i)
 * for at most max_gen_len tokens (0: until end of generation or the context), and returns malloc'ed
 * texts in out[i] (the completions only, as they continue the prompts' text). 0, or -1 with err set
 * (then every out[i] is NULL). */
int llamac_text_completion(const llamac_model *model, const char *const *prompts, int n, float temperature, float top_p,
                           int max_gen_len, char **out, llamac_error *err);

#ifdef __cplusplus
}
#endif
#endif
