/* llamac pull: fetch a model from the Hugging Face hub into the cache huggingface_hub shares
 * (src/hub/hub.c), and the -m ORG/NAME[:QUANT] resolution every model-taking command goes through. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "cli/cli.h"
#include "hub/hub.h"

static const char usage_text[] =
    "usage: llamac pull ORG/NAME[:QUANT] [--revision R] [--include GLOB...] [--exclude GLOB...]\n"
    "  Downloads a model from the Hugging Face hub into its cache (shared with huggingface_hub) and prints\n"
    "  the path -m opens. A GGUF repository gives one model: the file whose name holds QUANT (all parts of a\n"
    "  split model), or Q4_K_M when there are several and none is named. Otherwise: what llamac loads from a\n"
    "  Hugging Face folder (config.json, *.safetensors and their index, tokenizer files, generation_config.json).\n"
    "  --revision R         branch, tag or commit (default main)\n"
    "  --include GLOB...    only files matching a glob (fnmatch; '*' crosses '/'), e.g. \"original/*\" for Meta's\n"
    "                       checkpoint; replaces the default choice; repeatable\n"
    "  --exclude GLOB...    leave out files matching a glob; repeatable\n"
    "  Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (or the file $HF_HOME/token),\n"
    "  HF_HUB_CACHE / HF_HOME (default ~/.cache/huggingface/hub), HF_HUB_OFFLINE=1 (the cache only).\n"
    "  Every command that takes -m MODEL also takes ORG/NAME[:QUANT] from the cache, pulled first with --pull.\n";

#define MAX_GLOBS 64

typedef struct progress {
    double t0;
    uint64_t from;
    bool tty;
} progress;

static void on_progress(void *user, llc_hub_event ev, const char *file, uint64_t done, uint64_t total, const char *msg) {
    progress *p = user;
    switch (ev) {
    case LLC_HUB_FILE_START:
        p->t0 = cli_now_ms();
        p->from = done;
        if (!p->tty) break;
        if (done) fprintf(stderr, "pull: %s: resuming at %.1f MiB\n", file, (double)done / 1048576.0);
        if (done == total) fprintf(stderr, "pull: %s: all bytes here, checking\n", file);
        break;
    case LLC_HUB_FILE_BYTES:
        if (p->tty) cli_progress(file, done - p->from, total - p->from, p->t0);
        break;
    case LLC_HUB_FILE_DONE: {
        double secs = (cli_now_ms() - p->t0) / 1000.0;
        double mib = (double)(total - p->from) / 1048576.0;
        if (!p->tty || total == p->from)
            fprintf(stderr, "pull: %s: %.1f MiB in %.1f s (%.1f MiB/s)%s\n", file, (double)total / 1048576.0, secs,
                    secs > 0 ? mib / secs : 0.0, p->from ? ", resumed" : "");
        break;
    }
    case LLC_HUB_FILE_CACHED:
        fprintf(stderr, "pull: %s: in the cache (%.1f MiB)\n", file, (double)total / 1048576.0);
        break;
    case LLC_HUB_RETRY:
        fprintf(stderr, "pull: %s: %s\n", file, msg);
        break;
    }
}

/* Pulls (or, pull false, finds in the cache) a hub id; out gets the path to load. Returns the exit
 * code: 0, 2 for a malformed id, 1 for the rest. */
static int hub_path(const char *spec, bool pull, llc_hub_opts *o, char *out, size_t cap) {
    llamac_error err = {{0}};
    llc_hub_id id;
    progress p = {.tty = isatty(2)};
    o->progress = on_progress;
    o->user = &p;
    if (!llc_hub_parse_id(spec, &id, &err)) return cli_usage("%s", err.message);
    if (pull ? llc_hub_pull(&id, o, out, cap, &err) : llc_hub_resolve(&id, o, out, cap, &err)) return 0;
    /* -m ORG/NAME may also be a mistyped path: say both */
    if (!pull) llc_error_prefix(&err, "no file or folder '%s', and as a hub id", spec);
    return cli_error("%s", err.message);
}

const char *cli_model_path(const char *path, bool pull, char *buf, size_t cap) {
    if (!llc_hub_is_id(path)) {
        if (pull) return cli_usage("--pull takes a hub id ORG/NAME[:QUANT]; '%s' is a path", path), NULL;
        return path;
    }
    llamac_error err = {{0}};
    llc_hub_opts o;
    if (!llc_hub_opts_from_env(&o, &err)) return cli_error("%s", err.message), NULL;
    return hub_path(path, pull, &o, buf, cap) ? NULL : buf;
}

int cmd_pull(int argc, char **argv) {
    const char *spec = NULL, *include[MAX_GLOBS], *exclude[MAX_GLOBS];
    llamac_error err = {{0}};
    llc_hub_opts o;
    int n_inc = 0, n_exc = 0;
    const char *revision = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--revision")) {
            if (i + 1 >= argc) return cli_usage("option --revision needs a value");
            revision = argv[++i];
        } else if (!strcmp(a, "--include") || !strcmp(a, "--exclude")) {
            bool inc = a[2] == 'i';
            int before = inc ? n_inc : n_exc;
            /* like huggingface-cli download: every argument up to the next option is a glob */
            while (i + 1 < argc && (argv[i + 1][0] != '-' || !argv[i + 1][1])) {
                if ((inc ? n_inc : n_exc) == MAX_GLOBS) return cli_usage("pull: at most %d globs for %s", MAX_GLOBS, a);
                if (!argv[i + 1][0]) return cli_usage("pull: an empty glob for %s", a);
                if (inc) include[n_inc++] = argv[++i];
                else exclude[n_exc++] = argv[++i];
            }
            if ((inc ? n_inc : n_exc) == before) return cli_usage("option %s needs at least one glob", a);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("pull: unknown option '%s'", a);
        } else if (!spec) {
            spec = a;
        } else {
            return cli_usage("pull: one model at a time");
        }
    }
    if (!spec) return cli_usage("pull: ORG/NAME[:QUANT] is required");
    if (!llc_hub_opts_from_env(&o, &err)) return cli_error("%s", err.message);
    o.revision = revision;
    o.filter.include = include, o.filter.n_include = n_inc;
    o.filter.exclude = exclude, o.filter.n_exclude = n_exc;
    char out[4096];
    int rc = hub_path(spec, true, &o, out, sizeof out);
    if (rc) return rc;
    printf("%s\n", out);
    return 0;
}
