/*
 * llamac estimate-memory: what running a model will take (weights, KV cache, scratch, tokenizer), from
 * its header alone or from the name of a shape `llamac synth` knows, before anything is loaded. The
 * arithmetic is the library's (llamac_estimate_memory); this adds the process's own footprint,
 * measured, which any run of llamac also has.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac estimate-memory MODEL|PRESET [--ctx N] [--type T] [--batch B] [--kv-type T] [--json]\n"
    "  MODEL      a GGUF, a llama2.c .bin, a Hugging Face folder or its config.json: only the header is read\n"
    "  PRESET     a shape `llamac synth` knows (llama-3.2-1b, llama-3.1-8b, …), as synth writes it (f32 unless --type)\n"
    "  -c, --ctx N    positions per sequence (default: the model's context, at most 4096)\n"
    "  --type T       as if quantized to T: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m, q4_k_s (`llamac quantize`'s rule\n"
    "                 per tensor: norms stay f32, rows a block does not divide fall back)\n"
    "  --batch B      sequences run together (the batching engine, B full contexts of KV cache; default 1: a session)\n" CLI_KV_TYPE_HELP
    "  --json         one JSON object (bytes) instead of the table\n"
    "  Resident memory once the context is full: weights as the kernels read them (repacked on this machine where it\n"
    "  repacks), KV cache, scratch (activations, logits, batch buffers, the packing buffer of a first run), tokenizer,\n"
    "  and this program's own code and libraries (measured). An untied token embedding is read a row at a time from the\n"
    "  mapped file and is shown apart, not counted.\n";

static double mib(uint64_t b) { return (double)b / 1048576.0; }

int cmd_estimate(int argc, char **argv) {
    /* the process as it is before any model: what every llamac run carries besides the model */
    double process_mb = cli_rss_mb();
    const char *model = NULL, *type = NULL, *v;
    int ctx = 0, batch = 1;
    bool json = false;
    llamac_kv_type kv_type = LLAMAC_KV_F32;
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {&model, NULL, NULL, &ctx, &kv_type};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "--type")) {
            if (!(type = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--batch") || !strcmp(o, "-b")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 65536, &batch)) return 2;
        } else if (!strcmp(o, "--json")) {
            json = true;
        } else if (o[0] != '-' && !model) {
            model = o;
        } else {
            return cli_usage("estimate-memory: unknown option '%s'", o);
        }
    }
    if (!model) return cli_usage("estimate-memory: MODEL or PRESET is required");
    if (type && !llamac_save_type_known(type)) return cli_usage("estimate-memory: unknown --type '%s' (%s)", type, llamac_save_type_names());

    llamac_memory_params p = {.n_ctx = ctx, .n_seqs = batch, .type = type, .kv_type = kv_type};
    llamac_memory_estimate e;
    llamac_error err = {{0}};
    struct stat st;
    llamac_model_shape shape;
    bool ok;
    const char *source;
    if (stat(model, &st) == 0) {
        ok = llamac_estimate_memory(model, &p, &e, &err);
        source = "file";
    } else if (cli_synth_preset(model, &shape)) {
        ok = llamac_estimate_memory_shape(&shape, &p, &e, &err);
        source = "preset";
    } else {
        return cli_error("%s: no such file, and not a preset (%s)", model, cli_synth_preset_names());
    }
    if (!ok) return cli_error("%s", err.message);
    uint64_t process = process_mb > 0 ? (uint64_t)(process_mb * 1048576.0) : 0, total = e.total + process;
    const llamac_model_shape *s = &e.shape;

    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, model);
        printf(", \"source\": \"%s\", \"n_layers\": %d, \"dim\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, \"ffn_dim\": %d, "
               "\"n_vocab\": %d, \"n_ctx_train\": %d, \"tied\": %s, \"type\": \"%s\", \"n_params\": %llu, \"n_ctx\": %d, "
               "\"n_seqs\": %d, \"kv_type\": \"%s\", \"weights_bytes\": %llu, \"embedding_by_row_bytes\": %llu, "
               "\"kv_cache_bytes\": %llu, \"scratch_bytes\": %llu, \"tokenizer_bytes\": %llu, \"model_total_bytes\": %llu, "
               "\"process_bytes\": %llu, \"total_bytes\": %llu, \"types\": [",
               source, s->n_layers, s->dim, s->n_heads, s->n_kv_heads, s->ffn_dim, s->n_vocab, s->n_ctx_train, s->tied ? "true" : "false",
               s->type, (unsigned long long)e.n_params, e.n_ctx, e.n_seqs, e.kv_type, (unsigned long long)e.weights,
               (unsigned long long)e.embedding_by_row, (unsigned long long)e.kv_cache, (unsigned long long)e.scratch,
               (unsigned long long)e.tokenizer, (unsigned long long)e.total, (unsigned long long)process, (unsigned long long)total);
        for (int i = 0; i < e.n_types; i++)
            printf("%s{\"type\": \"%s\", \"n_tensors\": %d, \"bytes\": %llu, \"n_elements\": %llu}", i ? ", " : "", e.types[i].type,
                   e.types[i].n_tensors, (unsigned long long)e.types[i].bytes, (unsigned long long)e.types[i].n_elements);
        printf("]}\n");
        return 0;
    }
    bool billions = e.n_params >= 1000000000ull;
    printf("%s: %d layers, dim %d, %d heads (%d KV), ffn %d, vocab %d, %.2f%c parameters, mostly %s%s\n", model, s->n_layers, s->dim,
           s->n_heads, s->n_kv_heads, s->ffn_dim, s->n_vocab, (double)e.n_params / (billions ? 1e9 : 1e6), billions ? 'B' : 'M', s->type,
           type ? " (as quantized)" : "");
    printf("at %d positions x %d sequence%s, KV cache %s\n\n", e.n_ctx, e.n_seqs, e.n_seqs > 1 ? "s" : "", e.kv_type);
    printf("tensors as stored:\n");
    for (int i = 0; i < e.n_types; i++)
        printf("  %-6s %5d tensor%s %12.1f MiB\n", e.types[i].type, e.types[i].n_tensors, e.types[i].n_tensors == 1 ? " " : "s",
               mib(e.types[i].bytes));
    printf("\nresident memory:\n");
    printf("  weights    %12.1f MiB\n", mib(e.weights));
    printf("  KV cache   %12.1f MiB\n", mib(e.kv_cache));
    printf("  scratch    %12.1f MiB\n", mib(e.scratch));
    printf("  tokenizer  %12.1f MiB\n", mib(e.tokenizer));
    printf("  process    %12.1f MiB  (llamac's own code and libraries, measured)\n", mib(process));
    printf("  total      %12.1f MiB\n", mib(total));
    if (e.embedding_by_row)
        printf("  (not counted: the untied token embedding, %.1f MiB, stays in the mapped file and is read a row at a time)\n",
               mib(e.embedding_by_row));
    return 0;
}
