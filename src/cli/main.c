/* llamac: the command-line front end. Each subcommand lives in its own file and is a thin client of
 * the library (include/llamac.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/outfile.h"
#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *help;
} commands[] = {
    {"generate", cmd_generate, "generate text from a prompt"},
    {"batch", cmd_batch, "complete many requests from a JSONL file together (continuous batching)"},
    {"serve", cmd_serve, "serve the model over HTTP, OpenAI-compatible (continuous batching)"},
    {"chat", cmd_chat, "chat with a model in the terminal (Llama 3 and Llama 2 formats)"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"info", cmd_info, "show a model's hyperparameters, tensors and memory needs"},
    {"estimate-memory", cmd_estimate, "estimate the memory a run will take, from a model's header or a preset"},
    {"logits", cmd_logits, "print the next-token logits after a prompt (JSON)"},
    {"perplexity", cmd_perplexity, "measure perplexity on a text file (llama.cpp's convention)"},
    {"synth", cmd_synth, "write a random-weight model with the shapes of a real one"},
    {"bench", cmd_bench, "measure prefill and decode speed against the machine's limits"},
    {"bench-tokenizer", cmd_bench_tokenizer, "measure tokenizer speed on one thread (against tiktoken with --tiktoken)"},
    {"bench-serve", cmd_bench_serve, "benchmark an OpenAI-compatible server: throughput, TTFT, TPOT, ITL (vLLM's shape)"},
    {"pull", cmd_pull, "download a model from the Hugging Face hub into its shared cache"},
    {"convert", cmd_convert, "write any model llamac loads as a GGUF (optionally re-encoded)"},
    {"quantize", cmd_quantize, "write a model as a GGUF of one type or a llama.cpp mix (q4_k_m, q4_k_s)"},
};

static void usage(FILE *fp) {
    fprintf(fp, "usage: llamac COMMAND [options]   (llamac COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-11s %s\n", commands[i].name, commands[i].help);
}

/* A signal that ends llamac first removes the temporary file of an output being written (Ctrl-C in the
 * middle of a quantize leaves no OUT.XXXXXXXX.tmp); SA_RESETHAND then lets the signal end the process
 * as it would have. */
static void on_fatal_signal(int sig) {
    llc_outfile_remove_pending();
    raise(sig);
}

static void remove_outputs_on_signals(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGXFSZ};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old, sa = {.sa_handler = on_fatal_signal, .sa_flags = SA_RESETHAND};
        sigemptyset(&sa.sa_mask);
        /* a signal the caller ignores (nohup, a background job) stays ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) sigaction(sigs[i], &sa, NULL);
    }
}

int main(int argc, char **argv) {
    remove_outputs_on_signals();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    return cli_usage("unknown command '%s' (try llamac --help)", argv[1]);
}
