#ifndef LLC_CLI_H
#define LLC_CLI_H
/* Shared plumbing of the subcommands: strict option parsing and one-line errors. */
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include "llamac.h"

/* Prints "llamac: error: …" on stderr; returns the exit code 1 so commands can `return cli_error(…)`. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Usage problems exit with 2, like most Unix tools. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Iterates argv; the value of an option that takes one is fetched with cli_value. */
typedef struct cli_args {
    int argc, i;
    char **argv;
    bool failed;
} cli_args;

/* Options most commands share: -h/--help, -m/--model (and --pull with it), --tokenizer, -t/--threads, -c/--ctx, --kv-type. A
 * command points the fields it accepts at its variables and leaves the others NULL (then those options
 * are unknown to it, not silently ignored). Returns 1 if argument a->i was one of them, 0 if not,
 * CLI_HELP after printing usage, -1 after a usage error. */
typedef struct cli_common {
    const char **model, **tokenizer;
    int *threads, *ctx;
    llamac_kv_type *kv_type;
} cli_common;
#define CLI_KV_TYPE_HELP \
    "  --kv-type T             element type of the KV cache: f32 (default), f16, bf16, q8_0 (see README, Batch)\n"
#define CLI_HELP 2
int cli_common_option(cli_args *a, const cli_common *c, const char *usage);
/* The first lines of every option loop. */
#define CLI_COMMON_OPTIONS(a, common, usage)                       \
    {                                                              \
        int common_ = cli_common_option(&(a), &(common), (usage)); \
        if (common_ == CLI_HELP) return 0;                         \
        if (common_ < 0) return 2;                                 \
        if (common_) continue;                                     \
    }

/* The next argument as the value of opt, or NULL after reporting that it is missing. */
const char *cli_value(cli_args *a, const char *opt);
/* Strict parsers: the whole string must be a number in [min, max]; report and return false otherwise. */
bool cli_int(const char *opt, const char *v, long min, long max, int *out);
bool cli_u64(const char *opt, const char *v, uint64_t *out);
bool cli_float(const char *opt, const char *v, double min, double max, float *out);
/* A byte size: "2G", "512M", "64K", "1000000" (K/M/G/T, optionally followed by i and B). */
bool cli_size(const char *opt, const char *v, uint64_t *out);
/* A comma-separated list of at most CLI_MAX_LIST integers in [min, max] into out; returns the count, or -1
 * after reporting a usage error. */
#define CLI_MAX_LIST 16
int cli_int_list(const char *opt, const char *v, int min, int max, int *out);

/* Sampling options shared by generate and chat: --temp --top-k --top-p --min-p --repeat-penalty
 * --repeat-last-n --seed. Returns 1 if argument a->i was one (its value consumed), 0 if not, -1 after
 * a usage error. sp starts from llamac_sampler_defaults(); given records what the user set. */
typedef struct cli_sampling {
    llamac_sampler_params sp;
    bool temp_given, top_p_given, seed_given;
} cli_sampling;
void cli_sampling_init(cli_sampling *s);
int cli_sampling_option(cli_args *a, cli_sampling *s);
/* Fills what the user left unset: the checkpoint's own defaults (generation_config.json), and a seed
 * from the clock. */
void cli_sampling_finish(cli_sampling *s, const llamac_model *m);
#define CLI_SAMPLING_HELP                                                                              \
    "  --temp T                temperature, 0 = greedy (default 0.8, or the model's generation_config)\n" \
    "  --top-k K               keep the K most likely tokens, 0 = off (default 40)\n"                   \
    "  --top-p P               nucleus sampling, 1 = off (default 0.95, or the model's)\n"              \
    "  --min-p P               drop tokens below P x the best one's probability (default 0.05)\n"       \
    "  --repeat-penalty R      penalty for tokens of the last --repeat-last-n (default 1 = off)\n"      \
    "  --repeat-last-n N       (default 64)\n"                                                         \
    "  -s, --seed S            random seed (default: from the clock; printed on stderr)\n"

double cli_now_ms(void);
/* A one-line progress bar (bytes, rate, ETA) on stderr when it is a terminal ("\r"-updated, at most ~10 times a second);
 * a final newline when done == total. Silent when stderr is not a terminal. */
void cli_progress(const char *what, uint64_t done, uint64_t total, double t0_ms);
/* s as a JSON string (quoted, escaped); null when out of memory. */
void cli_json_string(FILE *f, const char *s);
/* This process's peak resident memory (VmHWM), its current one (VmRSS; -1 when /proc has none), and
 * the peak set back to the current RSS (false when the kernel cannot: the peak keeps running). */
double cli_peak_rss_mb(void);
double cli_rss_mb(void);
bool cli_peak_rss_reset(void);
/* A -m value as a path to load: itself, or for a hub id ORG/NAME[:QUANT] (not an existing path) the
 * cached GGUF file or snapshot folder, pulled first when pull is set (cmd_pull.c). NULL after printing
 * the error. */
const char *cli_model_path(const char *path, bool pull, char *buf, size_t cap);
/* Loads a model (a path or a hub id, pulled first after --pull), honouring an optional tokenizer file;
 * prints the error itself. */
llamac_model *cli_load_model(const char *path, const char *tokenizer_path);
/* The context a session gets for --ctx 0: the model's training context, at most 4096 (as
 * llamac_session_params.n_ctx = 0 does). */
int cli_default_ctx(const llamac_model *m);
/* Tokenizes text (growing the buffer as needed); returns the count or -1 after printing the error. */
int cli_tokenize(const llamac_tokenizer *tok, const char *text, size_t len, bool add_bos, bool special, int32_t **ids);
/* Reads a whole file as text (limit 1 GiB); prints the error itself. */
char *cli_read_text(const char *path, size_t *len);

/* convert and quantize: loads IN and writes it as the GGUF OUT with llamac_model_save (OUT checked
 * first, base/outfile.h), each matrix of the type or mix named (NULL keeps the types), rows encoded on
 * n_threads (0: all cores), a progress bar labelled verb, and a summary on stderr. Returns the exit code. */
int cli_write_gguf(const char *in, const char *out, const char *tok_path, const char *type, int n_threads, const char *verb);

/* The shape of synth's preset `name` (cmd_synth.c; its default vocabulary's size), false if none; and
 * the presets' names for messages. */
bool cli_synth_preset(const char *name, llamac_model_shape *out);
const char *cli_synth_preset_names(void);

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench_tokenizer(int argc, char **argv);
int cmd_bench_serve(int argc, char **argv);
int cmd_estimate(int argc, char **argv);
int cmd_pull(int argc, char **argv);

#endif
