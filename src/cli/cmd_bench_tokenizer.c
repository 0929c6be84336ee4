/* llamac bench-tokenizer: encode throughput on one thread, optionally against npm tiktoken in the same run. */
#include <errno.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/mapped_file.h"
#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac bench-tokenizer [--tokenizer FILE] [--file TEXT] [--mb N] [--rounds R] [--tiktoken]\n"
    "  encodes English prose and source code on one thread and prints MB/s and tokens/s (best of R rounds)\n"
    "  --tokenizer FILE  any tokenizer llamac reads (default: Llama 3's tokenizer.model in $LLAMAC_SHARED or ../shared)\n"
    "  --file TEXT       encode this file instead of the built-in corpus\n"
    "  --mb N            size of the built-in corpus in MB, half prose (/usr/share/common-licenses), half code\n"
    "                    (/usr/include/*.h, then this repository's src/) (default 4)\n"
    "  --rounds R        timed rounds per text (default 3)\n"
    "  --tiktoken        also run npm tiktoken (tests/node, $LLAMAC_NODE_DIR) on the same text in this run, with\n"
    "                    the tokenizer's byte-level ranks and the Llama 3 pattern, and check the ids are identical\n";

static double clock_s(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }

typedef struct text_buf {
    char *p;
    size_t n, cap;
} text_buf;

static bool tb_append(text_buf *b, const char *s, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 20;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return true;
}


/* Appends the files matching the patterns, in order, until want bytes; repeats them if they are fewer. */
static size_t add_files(text_buf *b, const char *const *patterns, size_t n_patterns, size_t want) {
    size_t start = b->n, added_once;
    do {
        added_once = 0;
        for (size_t p = 0; p < n_patterns && b->n - start < want; p++) {
            glob_t g;
            if (glob(patterns[p], 0, NULL, &g) != 0) continue;
            for (size_t i = 0; i < g.gl_pathc && b->n - start < want; i++) {
                struct stat st;
                if (stat(g.gl_pathv[i], &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (64 << 20)) continue;
                size_t n;
                char *d = llc_read_file(g.gl_pathv[i], (size_t)64 << 20, &n, NULL);
                if (!d) continue;
                if (llamac_utf8_valid(d, n)) {
                    size_t take = n < want - (b->n - start) ? n : want - (b->n - start);
                    while (take < n && take > 0 && ((unsigned char)d[take] & 0xC0) == 0x80) take--; /* whole chars */
                    if (!tb_append(b, d, take)) {
                        free(d);
                        globfree(&g);
                        return b->n - start;
                    }
                    added_once += take;
                }
                free(d);
            }
            globfree(&g);
        }
    } while (added_once > 0 && b->n - start < want);
    return b->n - start;
}

typedef struct part {
    const char *name;
    const char *text;
    size_t len;
    int32_t *ids;
    int n_ids;
    double best_s, best_cpu_s; /* fastest round by the clock, and by this thread's CPU time */
} part;

static bool run_llamac(const llamac_tokenizer *tok, part *p, int rounds) {
    llamac_error err = {{0}};
    int cap = (int)p->len + 2;
    p->ids = malloc((size_t)cap * sizeof *p->ids);
    if (!p->ids) return cli_error("out of memory"), false;
    p->best_s = p->best_cpu_s = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_s(), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        int n = llamac_tokenize(tok, p->text, p->len, false, false, p->ids, cap, &err);
        double dt = now_s() - t0, dc = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
        if (n < 0) return cli_error("%s", err.message), false;
        p->n_ids = n;
        if (dt < p->best_s) p->best_s = dt;
        if (dc < p->best_cpu_s) p->best_cpu_s = dc;
    }
    return true;
}

static bool write_file(const char *path, const void *d, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return false;
    bool ok = fwrite(d, 1, n, fp) == n;
    return fclose(fp) == 0 && ok;
}

/* The tokenizer's byte-level ranks as a tiktoken file: ids from 0 while they decode to bytes (the special
 * tokens after them decode to nothing). Every single byte must be among them. */
static bool write_ranks(const llamac_tokenizer *tok, const char *path, int *n_ranks) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    text_buf b = {0};
    bool byte_seen[256] = {false};
    int n = 0, n_vocab = llamac_tokenizer_n_vocab(tok);
    char line[4096];
    for (; n < n_vocab; n++) {
        const char *t;
        size_t k = llamac_token_bytes(tok, n, &t);
        if (k == 0 || k > 3000) break;
        if (k == 1) byte_seen[(unsigned char)t[0]] = true;
        size_t o = 0;
        for (size_t i = 0; i < k; i += 3) {
            const unsigned char *u = (const unsigned char *)t + i;
            uint32_t v = (uint32_t)u[0] << 16 | (i + 1 < k ? (uint32_t)u[1] << 8 : 0) | (i + 2 < k ? u[2] : 0);
            line[o++] = b64[v >> 18];
            line[o++] = b64[(v >> 12) & 63];
            line[o++] = i + 1 < k ? b64[(v >> 6) & 63] : '=';
            line[o++] = i + 2 < k ? b64[v & 63] : '=';
        }
        o += (size_t)snprintf(line + o, sizeof line - o, " %d\n", n);
        if (!tb_append(&b, line, o)) {
            free(b.p);
            return cli_error("out of memory"), false;
        }
    }
    for (int c = 0; c < 256; c++)
        if (!byte_seen[c]) {
            free(b.p);
            return cli_error("--tiktoken needs a byte-level BPE vocabulary (Llama 3): byte 0x%02X is not among the "
                             "first %d tokens", c, n), false;
        }
    bool ok = write_file(path, b.p, b.n);
    free(b.p);
    if (!ok) return cli_error("cannot write %s: %s", path, strerror(errno)), false;
    *n_ranks = n;
    return true;
}

/* The folder of the reference scripts: $LLAMAC_NODE_DIR, tests/node under the working directory, or
 * beside the executable's build folder. */
static bool find_node_dir(char *out, size_t cap) {
    const char *env = getenv("LLAMAC_NODE_DIR");
    char exe[4096];
    const char *cands[3] = {env, "tests/node", NULL};
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 32);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            strcpy(slash, "/../tests/node");
            cands[2] = exe;
        }
    }
    for (int i = 0; i < 3; i++) {
        if (!cands[i]) continue;
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/node_modules/tiktoken/package.json", cands[i]);
        if (access(probe, R_OK) == 0) {
            snprintf(out, cap, "%s", cands[i]);
            return true;
        }
    }
    return false;
}

/* Runs argv, returns its stdout (malloc'ed) or NULL. */
static char *run_capture(char *const *argv, int *status) {
    int fd[2];
    if (pipe(fd) != 0) return NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return NULL;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    text_buf b = {0};
    char chunk[4096];
    ssize_t got;
    while ((got = read(fd[0], chunk, sizeof chunk)) > 0) tb_append(&b, chunk, (size_t)got);
    close(fd[0]);
    waitpid(pid, status, 0);
    tb_append(&b, "", 1);
    return b.p;
}

static double json_num(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

/* MB/s and tokens/s by the clock, and MB/s by CPU time (the same on an idle machine; on a busy one the
 * clock also counts the time other processes had the core). */
static void print_row(const char *who, const part *p, double best_s, double best_cpu_s, long n_tokens) {
    double mb = (double)p->len / 1e6;
    printf("%-8s  %-5s  %6.2f MB  %8ld tokens  %7.1f MB/s  %6.2f M tokens/s  (CPU time: %7.1f MB/s)\n", who, p->name,
           mb, n_tokens, mb / best_s, (double)n_tokens / best_s / 1e6, mb / best_cpu_s);
}

int cmd_bench_tokenizer(int argc, char **argv) {
    const char *tok_path = NULL, *file = NULL;
    int mb = 4, rounds = 3;
    bool tiktoken = false;
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {NULL, &tok_path, NULL, NULL, NULL};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "--file") || !strcmp(o, "-f")) {
            if (!(file = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--mb")) {
            const char *v = cli_value(&a, o);
            if (!v || !cli_int(o, v, 1, 1024, &mb)) return 2;
        } else if (!strcmp(o, "--rounds")) {
            const char *v = cli_value(&a, o);
            if (!v || !cli_int(o, v, 1, 100, &rounds)) return 2;
        } else if (!strcmp(o, "--tiktoken")) {
            tiktoken = true;
        } else {
            return cli_usage("bench-tokenizer: unknown argument '%s'", o);
        }
    }
    char def[4096];
    if (!tok_path) {
        const char *sh = getenv("LLAMAC_SHARED");
        snprintf(def, sizeof def, "%s/models/llama3-tokenizer/tokenizer.model", sh ? sh : "../shared");
        tok_path = def;
    }

    llamac_error err = {{0}};
    double t0 = now_s();
    llamac_tokenizer *tok = llamac_tokenizer_load(tok_path, &err);
    if (!tok) return cli_error("%s", err.message);
    double load_s = now_s() - t0;

    text_buf corpus = {0};
    part parts[3];
    int n_parts = 0;
    int rc = 1;
    char tmpdir[4096] = "";
    if (file) {
        size_t n;
        char *d = cli_read_text(file, &n);
        if (!d) goto done;
        corpus.p = d;
        corpus.n = n;
        parts[n_parts++] = (part){"file", corpus.p, corpus.n, NULL, 0, 0, 0};
        if (tiktoken && !llamac_utf8_valid(d, n))
            fprintf(stderr, "llamac: warning: %s is not valid UTF-8: tiktoken reads it with U+FFFD replacements, so ids will "
                            "differ\n", file);
    } else {
        static const char *const prose[] = {"/usr/share/common-licenses/*"};
        static const char *const code[] = {"/usr/include/*.h", "/usr/include/*/*.h", "src/*/*.c", "src/*/*.h"};
        size_t half = (size_t)mb * 1000000 / 2;
        size_t np = add_files(&corpus, prose, 1, half);
        size_t nc = add_files(&corpus, code, 4, half);
        if (np == 0 || nc == 0) {
            cli_error("bench-tokenizer: found no %s on this machine; give --file TEXT", np ? "C headers" : "licence texts");
            goto done;
        }
        parts[n_parts++] = (part){"prose", corpus.p, np, NULL, 0, 0, 0};
        parts[n_parts++] = (part){"code", corpus.p + np, nc, NULL, 0, 0, 0};
        parts[n_parts++] = (part){"all", corpus.p, np + nc, NULL, 0, 0, 0};
    }

    printf("tokenizer: %s (%d tokens), loaded in %.0f ms\n", tok_path, llamac_tokenizer_n_vocab(tok), 1e3 * load_s);
    if (!file)
        printf("text: %.2f MB: prose %.2f MB (/usr/share/common-licenses), code %.2f MB (/usr/include, src/); "
               "one thread, best of %d rounds\n",
               (double)corpus.n / 1e6, (double)parts[0].len / 1e6, (double)parts[1].len / 1e6, rounds);
    else
        printf("text: %s, %.2f MB; one thread, best of %d rounds\n", file, (double)corpus.n / 1e6, rounds);
    for (int i = 0; i < n_parts; i++) {
        if (!run_llamac(tok, &parts[i], rounds)) goto done;
        print_row("llamac", &parts[i], parts[i].best_s, parts[i].best_cpu_s, parts[i].n_ids);
    }
    fflush(stdout);

    rc = 0;
    if (tiktoken) {
        rc = 1;
        char node_dir[4096];
        if (!find_node_dir(node_dir, sizeof node_dir)) {
            cli_error("--tiktoken: npm tiktoken not found (tests/node/node_modules; run scripts/install-deps.sh, or set "
                      "LLAMAC_NODE_DIR)");
            goto done;
        }
        const char *tmp = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/llamac-bench.XXXXXX", tmp ? tmp : "/tmp");
        if (!mkdtemp(tmpdir)) {
            cli_error("--tiktoken: cannot make a temporary folder: %s", strerror(errno));
            tmpdir[0] = 0;
            goto done;
        }
        char ranks[4200], script[4200], rounds_s[16], texts[3][4200], outs[3][4200];
        snprintf(ranks, sizeof ranks, "%s/ranks.tiktoken", tmpdir);
        snprintf(script, sizeof script, "%s/tiktoken_ref.cjs", node_dir);
        snprintf(rounds_s, sizeof rounds_s, "%d", rounds);
        int n_ranks;
        if (!write_ranks(tok, ranks, &n_ranks)) goto done;
        char *nargv[4 + 2 * 3 + 1] = {"node", script, "bench", ranks, rounds_s};
        int na = 5;
        for (int i = 0; i < n_parts; i++) {
            snprintf(texts[i], sizeof texts[i], "%s/%s.txt", tmpdir, parts[i].name);
            snprintf(outs[i], sizeof outs[i], "%s/%s.ids", tmpdir, parts[i].name);
            if (!write_file(texts[i], parts[i].text, parts[i].len)) {
                cli_error("cannot write %s: %s", texts[i], strerror(errno));
                goto done;
            }
            nargv[na++] = texts[i];
            nargv[na++] = outs[i];
        }
        nargv[na] = NULL;
        int status = 0;
        char *out = run_capture(nargv, &status);
        if (!out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            free(out);
            cli_error("--tiktoken: node %s failed (exit status %d)", script, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
            goto done;
        }
        char *line = out;
        double init_s = -1;
        bool all_same = true;
        for (int i = 0; i < n_parts && line && *line; i++) {
            double best = json_num(line, "best_s"), best_cpu = json_num(line, "best_cpu_s");
            long n_tok = (long)json_num(line, "tokens");
            if (i == 0) init_s = json_num(line, "init_s");
            print_row("tiktoken", &parts[i], best, best_cpu, n_tok);
            size_t nb;
            char *ids = llc_read_file(outs[i], (size_t)1 << 31, &nb, &err);
            bool same = ids && nb == (size_t)parts[i].n_ids * 4;
            long first_diff = -1;
            for (long k = 0; ids && k < parts[i].n_ids && k < (long)(nb / 4); k++) {
                uint32_t v;
                memcpy(&v, ids + 4 * k, 4);
                if ((int64_t)v != parts[i].ids[k]) {
                    same = false;
                    first_diff = k;
                    break;
                }
            }
            free(ids);
            if (same)
                printf("          %-5s  ids identical (%d tokens); llamac %.1fx tiktoken's speed (%.1fx by CPU time)\n",
                       parts[i].name, parts[i].n_ids, best / parts[i].best_s, best_cpu / parts[i].best_cpu_s);
            else
                printf("          %-5s  ids DIFFER (llamac %d tokens, tiktoken %ld; first difference at token %ld)\n",
                       parts[i].name, parts[i].n_ids, n_tok, first_diff);
            all_same = all_same && same;
            line = strchr(line, '\n');
            if (line) line++;
        }
        printf("tiktoken: npm tiktoken (%s), %d ranks + the Llama 3 pattern, set up in %.0f ms\n", node_dir, n_ranks,
               1e3 * init_s);
        free(out);
        rc = all_same ? 0 : 1;
    }
done:
    if (tmpdir[0]) {
        const char *names[] = {"ranks.tiktoken", "prose.txt", "prose.ids", "code.txt", "code.ids", "all.txt", "all.ids",
                               "file.txt", "file.ids"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char p[4300];
            snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
            unlink(p);
        }
        rmdir(tmpdir);
    }
    for (int i = 0; i < n_parts; i++) free(parts[i].ids);
    free(corpus.p);
    llamac_tokenizer_free(tok);
    return rc;
}
