/*
 * llamac bench: prefill and decode speed like llama-bench, with the numbers that say how good they
 * are: decode as GB/s of weights against the machine's measured read bandwidth, prefill as operations
 * per second against the measured peak of the instruction the kernels use. A hash of a greedy run
 * proves every configuration computes the same thing.
 */
#include <math.h>
#include <signal.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/outfile.h"
#include "base/threadpool.h"
#include "cli/cli.h"
#include "cli/probe.h"

static const char usage_text[] =
    "usage: llamac bench -m MODEL [-p 128,512] [-n 64] [-b 1] [-t N] [--decode-after 0,2048] [--kv-type T] [--reps R] [--json|--csv|--md] [--peer 'COMMAND']\n"
    "  -p LIST     prompt lengths for the prefill test (default 512)\n"
    "  -n LIST     tokens for the decode test (default 64); with -b 1 decode starts from BOS, one token per step\n"
    "  -b LIST     sequences run together (default 1). With B > 1 the B sequences go through the batching\n"
    "              engine (llamac batch): B prompts of n_prompt random ids are submitted at once and each\n"
    "              generates n_gen tokens greedily (end of text ignored); prefill time runs from the submission\n"
    "              until every sequence has its first token, decode time is the rest; prefill tok/s =\n"
    "              B x n_prompt / prefill time, decode tok/s = B x (n_gen - 1) / decode time, decode GB/s =\n"
    "              the weights read once per B decoded tokens; the hash covers every sequence's tokens in\n"
    "              order; --json adds the KV cache figures (kv_blocks, kv_blocks_peak, kv_waste: unfilled\n"
    "              positions per sequence in blocks, preemptions). -b 1 is the single-session test below\n"
    "  -t LIST     thread counts (default: all cores)\n"
    "  --decode-after LIST\n"
    "              decode with N tokens already in the KV cache (default 0), like llama-bench's -d: the cache\n"
    "              is filled once per configuration by a prefill of N random ids (not timed) and each\n"
    "              repetition decodes -n tokens greedily after it, reported as decode tok/s @ d N; the\n"
    "              context is sized to fit (N + n must not exceed the model's trained context). Prefill is\n"
    "              still timed from an empty cache. -b 1 only. Peers at the same depth: llama-bench -d N\n"
    "              (recent builds; b4748 has none), or llama-batched-bench -c N+n -npp N -ntg n -npl 1\n"
    "              (its S_TG t/s column)\n"
    "  --kv-type T element type of the KV cache: f32 (default), f16, bf16, q8_0\n"
    "  --reps R    repetitions, reported as mean ± sd (default 3)\n"
    "  --peer CMD  a peer's benchmark command run between repetitions, its output printed after ours\n"
    "  --json      one JSON object per line and configuration; --csv, --md (default) tables\n"
    "  --sweep     every combination of -b x -p x -n through the batching engine (B prompts of -p random ids, each\n"
    "              generating -n tokens greedily), as a table of batch, input tokens, output tokens, throughput\n"
    "              (B x n / the whole run's time, prefill included), peak memory (the process's VmHWM over the\n"
    "              configuration, set back between configurations where the kernel allows: else the running peak,\n"
    "              said on stderr and in --json's peak_reset) and the hash of every sequence's tokens. One -t only\n"
    "  --plot FILE with --sweep: a PNG of tok/s against batch size (a line per prompt length) and against prompt\n"
    "              length (a line per batch size), drawn by gnuplot (Debian: gnuplot-nox)\n";

#define MAX_LIST CLI_MAX_LIST
#define parse_list cli_int_list

typedef struct stats {
    double mean, sd;
} stats;

static stats summarize(const double *x, int n) {
    stats s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += x[i];
    s.mean /= n;
    for (int i = 0; i < n; i++) s.sd += (x[i] - s.mean) * (x[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
    return s;
}

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

static void run_peer(const char *cmd, FILE *log) {
    FILE *p = popen(cmd, "r");
    if (!p) return;
    char line[1024];
    while (fgets(line, sizeof line, p)) fputs(line, log);
    pclose(p);
}

/* The probes run in a child process: their 1 GiB read buffer must not count in our peak RSS. */
static void probe_machine(int threads, enum cli_peak_kind kind, double *bw, double *peak) {
    int fd[2];
    if (pipe(fd) != 0) return;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        llc_pool *pool = llc_pool_create(threads);
        double r[2] = {cli_probe_read_gbs(pool, (size_t)1 << 30), cli_probe_peak_ops(pool, kind)};
        llc_pool_free(pool);
        ssize_t w = write(fd[1], r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fd[1]);
    double r[2] = {0, 0};
    if (pid > 0 && read(fd[0], r, sizeof r) == (ssize_t)sizeof r) {
        *bw = r[0];
        *peak = r[1];
    }
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
}

/* KV cache figures of a batched run. */
typedef struct batch_kv {
    int blocks, peak, block_size, preemptions;
    double waste;
} batch_kv;

/* One repetition of the batched test: nb prompts of np random ids through the engine, each generating
 * ng tokens greedily past end of text. Prefill time (ms): from the submission until every sequence has
 * its first token; decode time: the rest. h hashes every sequence's tokens, sequence by sequence. */
static bool bench_batch(const llamac_model *m, int nb, int np, int ng, int nt, llamac_kv_type kv_type, uint64_t *rng, double *t_pre,
                        double *t_dec, uint64_t *h, batch_kv *kv, llamac_error *err) {
    llamac_model_info info;
    llamac_model_get_info(m, &info);
    const int bs = 16;
    int per_seq = (np + ng + bs - 1) / bs * bs;
    llamac_engine_params ep = {.n_threads = nt, .max_seqs = nb, .n_ctx = np + ng, .kv_tokens = nb * per_seq, .block_size = bs,
                               .step_tokens = nb > 512 ? nb : 512, .kv_type = kv_type};
    llamac_engine *e = llamac_engine_create(m, &ep, err);
    if (!e) return false;
    bool ok = false;
    int32_t *ids = malloc((size_t)np * sizeof *ids), *out = malloc((size_t)nb * (size_t)ng * sizeof *out);
    int *n_out = calloc((size_t)nb, sizeof *n_out);
    if (!ids || !out || !n_out) {
        snprintf(err->message, sizeof err->message, "out of memory");
        goto done;
    }
    double t0 = cli_now_ms(), t1 = 0;
    for (int b = 0; b < nb; b++) {
        for (int i = 0; i < np; i++) {
            *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
            ids[i] = (int32_t)(*rng % (uint64_t)info.n_vocab);
        }
        llamac_request rq = {.prompt = ids, .n_prompt = np, .max_tokens = ng, .sampling = llamac_sampler_defaults(), .ignore_eog = true};
        rq.sampling.temperature = 0;
        if (llamac_engine_submit(e, &rq, err) != b) goto done;
    }
    int started = 0;
    while (llamac_engine_pending(e) > 0) {
        int ne;
        const llamac_event *ev = llamac_engine_step(e, &ne, err);
        if (!ev) goto done;
        for (int k = 0; k < ne; k++) {
            int r = ev[k].request;
            if (ev[k].token < 0 || r < 0 || r >= nb || n_out[r] >= ng) continue;
            if (n_out[r]++ == 0 && ++started == nb) t1 = cli_now_ms();
            out[(size_t)r * (size_t)ng + (size_t)n_out[r] - 1] = ev[k].token;
        }
    }
    double t2 = cli_now_ms();
    if (started < nb) t1 = t2;
    *t_pre = t1 - t0;
    *t_dec = t2 - t1;
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < n_out[b]; i++) *h = (*h ^ (uint64_t)out[(size_t)b * (size_t)ng + (size_t)i]) * 1099511628211ull;
    llamac_engine_stats st;
    llamac_engine_get_stats(e, &st);
    *kv = (batch_kv){st.kv_blocks, st.kv_blocks_peak, st.block_size, (int)st.preemptions, st.kv_waste_blocks};
    ok = true;
done:
    free(ids);
    free(out);
    free(n_out);
    llamac_engine_free(e);
    return ok;
}

/* A session of depth + n_gen positions whose first `depth` positions hold a prefill of random ids (the
 * same for every configuration of this depth), and in *first the greedy token after them: the start of
 * the decode test at that depth. */
static llamac_session *fill_depth(const llamac_model *m, int n_vocab, int depth, int ng, int nt, llamac_kv_type kv_type,
                                  int32_t *first, llamac_error *err) {
    llamac_session_params sp = {.n_ctx = depth + ng, .n_threads = nt, .kv_type = kv_type};
    llamac_session *s = llamac_session_create(m, &sp, err);
    int32_t *ids = s ? malloc((size_t)depth * sizeof *ids) : NULL;
    if (s && !ids) snprintf(err->message, sizeof err->message, "out of memory for %d ids", depth);
    const float *l = NULL;
    if (ids) {
        uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)depth;
        for (int i = 0; i < depth; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            ids[i] = (int32_t)(rng % (uint64_t)n_vocab);
        }
        l = llamac_session_eval(s, ids, depth, err);
        free(ids);
    }
    if (!l) {
        llamac_session_free(s);
        return NULL;
    }
    *first = argmax(l, n_vocab);
    return s;
}

/* One configuration of a sweep: its figures over the repetitions. */
typedef struct sweep_row {
    int nb, np, ng;
    stats tok_s, pre_s, dec_s;
    double peak_mb;
    uint64_t hash;
    bool same_hash;
} sweep_row;

/* s as a gnuplot single-quoted string: '' stands for ', control bytes are dropped. */
static void gp_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('\'', f);
}

/* Whether an executable called name is on the PATH. */
static bool on_path(const char *name) {
    const char *path = getenv("PATH");
    if (!path) return false;
    char buf[4096];
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, n ? p : ".", name);
        if (access(buf, X_OK) == 0) return true;
        p += n + (e ? 1 : 0);
        if (!e) break;
    }
    return false;
}

/* The sweep's two plots: tok/s against batch size, a line per prompt length (and output length when
 * several), and against prompt length, a line per batch size. */
static void plot_script(FILE *f, const sweep_row *r, int n, const int *prompts, int n_p, const int *gens, int n_n, const int *batches, int n_b,
                        const char *title) {
    fprintf(f, "set terminal pngcairo size 1200,480 noenhanced\nset multiplot layout 1,2 title ");
    gp_quote(f, title);
    fprintf(f, "\nset grid\nset yrange [0:*]\nset key top left\nset ylabel 'tok/s (B x output / total time)'\nset logscale x 2\nset xlabel 'batch size'\n");
    for (int pass = 0; pass < 2; pass++) {
        int n_series = pass == 0 ? n_p * n_n : n_b * n_n, k = 0;
        for (int a = 0; a < (pass == 0 ? n_p : n_b); a++)
            for (int ni = 0; ni < n_n; ni++, k++) {
                fprintf(f, "$s%d_%d << EOD\n", pass, k);
                for (int i = 0; i < n; i++)
                    if (r[i].ng == gens[ni] && (pass == 0 ? r[i].np == prompts[a] : r[i].nb == batches[a]))
                        fprintf(f, "%d %.4f\n", pass == 0 ? r[i].nb : r[i].np, r[i].tok_s.mean);
                fprintf(f, "EOD\n");
            }
        if (pass == 1) fprintf(f, "set xlabel 'prompt tokens'\n");
        fprintf(f, "plot ");
        k = 0;
        for (int a = 0; a < (pass == 0 ? n_p : n_b); a++)
            for (int ni = 0; ni < n_n; ni++, k++) {
                char t[96];
                if (n_n > 1) snprintf(t, sizeof t, "%s %d, output %d", pass == 0 ? "prompt" : "batch", pass == 0 ? prompts[a] : batches[a], gens[ni]);
                else snprintf(t, sizeof t, "%s %d", pass == 0 ? "prompt" : "batch", pass == 0 ? prompts[a] : batches[a]);
                fprintf(f, "$s%d_%d with linespoints lw 2 title '%s'%s", pass, k, t, k + 1 < n_series ? ", " : "\n");
            }
    }
    fprintf(f, "unset multiplot\n");
}

/* Feeds the script to gnuplot, whose PNG (on its stdout) becomes the output file path. */
static bool run_gnuplot(const char *script, size_t len, const char *path, llamac_error *err) {
    llc_outfile o;
    if (!llc_outfile_open(&o, path, err)) return false;
    fflush(o.f);
    FILE *log = tmpfile();
    int in[2];
    if (!log || pipe(in) != 0) {
        if (log) fclose(log);
        llc_outfile_abort(&o);
        snprintf(err->message, sizeof err->message, "--plot: cannot start gnuplot (pipe)");
        return false;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(fileno(o.f), 1);
        dup2(fileno(log), 2);
        close(in[0]);
        close(in[1]);
        execlp("gnuplot", "gnuplot", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    bool ok = pid > 0;
    /* a gnuplot that quits early must fail the write, not kill us */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe);
    for (size_t off = 0; ok && off < len;) {
        ssize_t w = write(in[1], script + off, len - off);
        if (w <= 0) ok = false;
        else off += (size_t)w;
    }
    close(in[1]);
    sigaction(SIGPIPE, &old_pipe, NULL);
    int status = 0;
    if (pid > 0) waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        char line[256] = "";
        rewind(log);
        if (!fgets(line, sizeof line, log)) snprintf(line, sizeof line, "exit status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        line[strcspn(line, "\n")] = 0;
        snprintf(err->message, sizeof err->message, "--plot: gnuplot failed: %s", line);
    }
    fclose(log);
    /* gnuplot wrote through the descriptor it shares with o.f (nothing went through stdio) */
    if (ok && lseek(fileno(o.f), 0, SEEK_END) <= 0) {
        ok = false;
        snprintf(err->message, sizeof err->message, "--plot: gnuplot wrote nothing");
    }
    return llc_outfile_finish(&o, ok, err) && ok;
}

typedef struct sweep_args {
    const llamac_model *m;
    const llamac_model_info *info;
    const int *prompts, *gens, *batches;
    int n_p, n_n, n_b, nt, reps;
    llamac_kv_type kv_type;
    const char *fmt, *plot, *cpu;
    FILE *peer_out;
    const char *peer;
} sweep_args;

static int run_sweep(const sweep_args *a) {
    int n_rows = a->n_p * a->n_n * a->n_b, n = 0;
    sweep_row *rows = calloc((size_t)n_rows, sizeof *rows);
    if (!rows) return cli_error("out of memory");
    bool reset = cli_peak_rss_reset();
    if (!reset) fprintf(stderr, "llamac bench: the peak RSS cannot be reset here (/proc/self/clear_refs): each row shows the running peak\n");
    const char *kvn = llamac_kv_type_name(a->kv_type);
    if (!strcmp(a->fmt, "md")) {
        printf("| batch | input tokens | output tokens | throughput tok/s | peak memory MB%s | hash |\n", reset ? "" : " (running)");
        printf("|---:|---:|---:|---:|---:|---|\n");
    } else if (!strcmp(a->fmt, "csv")) {
        printf("batch,input_tokens,output_tokens,tok_s,tok_s_sd,prefill_tok_s,decode_tok_s,peak_rss_mb,hash\n");
    }
    int rc = 0;
    for (int pi = 0; pi < a->n_p && !rc; pi++)
        for (int ni = 0; ni < a->n_n && !rc; ni++)
            for (int bi = 0; bi < a->n_b && !rc; bi++) {
                sweep_row *r = &rows[n];
                *r = (sweep_row){.nb = a->batches[bi], .np = a->prompts[pi], .ng = a->gens[ni], .same_hash = true};
                double tok[1000], pre[1000], dec[1000];
                if (reset) {
#ifdef __GLIBC__
                    /* what the previous configuration freed to the heap goes back to the kernel, so the peak
                     * starts from what is live */
                    malloc_trim(0);
#endif
                    cli_peak_rss_reset();
                }
                /* rep -1 warms the page cache and the allocator and is not counted */
                for (int rep = -1; rep < a->reps && !rc; rep++) {
                    llamac_error err = {{0}};
                    uint64_t h = 1469598103934665603ull, brng = 0x9e3779b97f4a7c15ull ^ (uint64_t)r->np;
                    double t_pre = 0, t_dec = 0;
                    batch_kv kv;
                    if (!bench_batch(a->m, r->nb, r->np, r->ng, a->nt, a->kv_type, &brng, &t_pre, &t_dec, &h, &kv, &err)) {
                        rc = cli_error("%s", err.message);
                        break;
                    }
                    if (rep < 0) continue;
                    double t = t_pre + t_dec;
                    tok[rep] = t > 0 ? (double)r->nb * r->ng * 1000.0 / t : 0;
                    pre[rep] = t_pre > 0 ? (double)r->nb * r->np * 1000.0 / t_pre : 0;
                    dec[rep] = t_dec > 0 ? (double)r->nb * (r->ng - 1) * 1000.0 / t_dec : 0;
                    if (rep == 0) r->hash = h;
                    else if (h != r->hash) r->same_hash = false;
                    if (a->peer_out) run_peer(a->peer, a->peer_out);
                }
                if (rc) break;
                r->tok_s = summarize(tok, a->reps);
                r->pre_s = summarize(pre, a->reps);
                r->dec_s = summarize(dec, a->reps);
                r->peak_mb = cli_peak_rss_mb();
                n++;
                char hs[24];
                snprintf(hs, sizeof hs, "%016llx%s", (unsigned long long)r->hash, r->same_hash ? "" : "!");
                if (!strcmp(a->fmt, "json")) {
                    printf("{\"model\": ");
                    cli_json_string(stdout, a->info->name);
                    printf(", \"type\": \"%s\", \"kv_type\": \"%s\", \"threads\": %d, \"reps\": %d, \"batch\": %d, "
                           "\"input_tokens\": %d, \"output_tokens\": %d, \"tok_s\": %.2f, \"tok_s_sd\": %.2f, \"prefill_tok_s\": %.2f, "
                           "\"decode_tok_s\": %.2f, \"peak_rss_mb\": %.1f, \"peak_reset\": %s, \"cpu\": ",
                           a->info->weight_type, kvn, a->nt, a->reps, r->nb, r->np, r->ng, r->tok_s.mean, r->tok_s.sd, r->pre_s.mean,
                           r->dec_s.mean, r->peak_mb, reset ? "true" : "false");
                    cli_json_string(stdout, a->cpu);
                    printf(", \"hash\": \"%s\"}\n", hs);
                } else if (!strcmp(a->fmt, "csv"))
                    printf("%d,%d,%d,%.2f,%.2f,%.2f,%.2f,%.1f,%s\n", r->nb, r->np, r->ng, r->tok_s.mean, r->tok_s.sd, r->pre_s.mean,
                           r->dec_s.mean, r->peak_mb, hs);
                else
                    printf("| %d | %d | %d | %.1f ± %.1f | %.1f | %s |\n", r->nb, r->np, r->ng, r->tok_s.mean, r->tok_s.sd, r->peak_mb, hs);
                fflush(stdout);
            }
    if (!rc && a->plot) {
        char *script = NULL, title[512];
        size_t len = 0;
        FILE *f = open_memstream(&script, &len);
        if (!f) {
            free(rows);
            return cli_error("out of memory");
        }
        snprintf(title, sizeof title, "llamac bench --sweep: %s (%s), %s, %d threads", a->info->name, a->info->weight_type, a->cpu, a->nt);
        plot_script(f, rows, n, a->prompts, a->n_p, a->gens, a->n_n, a->batches, a->n_b, title);
        fclose(f);
        llamac_error err = {{0}};
        if (!run_gnuplot(script, len, a->plot, &err)) rc = cli_error("%s", err.message);
        else fprintf(stderr, "llamac bench: plot written to %s\n", a->plot);
        free(script);
    }
    free(rows);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *peer = NULL, *fmt = "md", *plot = NULL, *v;
    bool sweep = false;
    int prompts[MAX_LIST] = {512}, gens[MAX_LIST] = {64}, batches[MAX_LIST] = {1}, threads[MAX_LIST] = {0}, depths[MAX_LIST] = {0};
    int n_p = 1, n_n = 1, n_b = 1, n_t = 1, n_d = 1, reps = 3;
    cli_args a = {argc, 1, argv, false};
    llamac_kv_type kv_type = LLAMAC_KV_F32;
    const cli_common common = {&model_path, NULL, NULL, NULL, &kv_type};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "-p")) {
            if (!(v = cli_value(&a, o)) || (n_p = parse_list(o, v, 1, 1 << 16, prompts)) < 0) return 2;
        } else if (!strcmp(o, "-n")) {
            if (!(v = cli_value(&a, o)) || (n_n = parse_list(o, v, 1, 1 << 16, gens)) < 0) return 2;
        } else if (!strcmp(o, "-b")) {
            if (!(v = cli_value(&a, o)) || (n_b = parse_list(o, v, 1, 4096, batches)) < 0) return 2;
        } else if (!strcmp(o, "-t") || !strcmp(o, "--threads")) {
            if (!(v = cli_value(&a, o)) || (n_t = parse_list(o, v, 1, 1024, threads)) < 0) return 2;
        } else if (!strcmp(o, "--decode-after")) {
            if (!(v = cli_value(&a, o)) || (n_d = parse_list(o, v, 0, 1 << 24, depths)) < 0) return 2;
        } else if (!strcmp(o, "--reps")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 1000, &reps)) return 2;
        } else if (!strcmp(o, "--peer")) {
            if (!(peer = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--sweep")) {
            sweep = true;
        } else if (!strcmp(o, "--plot")) {
            if (!(plot = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--json") || !strcmp(o, "--csv") || !strcmp(o, "--md")) {
            fmt = o + 2;
        } else {
            return cli_usage("bench: unknown option '%s'", o);
        }
    }
    if (!model_path) return cli_usage("bench: -m MODEL is required");
    if (plot && !sweep) return cli_usage("bench: --plot draws a --sweep");
    if (sweep && n_t > 1) return cli_usage("bench: --sweep takes one thread count (-t N)");
    if (sweep && n_d > 1) return cli_usage("bench: --sweep does not take --decode-after");
    if (sweep && depths[0] > 0) return cli_usage("bench: --sweep does not take --decode-after");
    if (plot) {
        llamac_error perr = {{0}};
        if (!on_path("gnuplot")) return cli_error("--plot needs gnuplot, which is not on the PATH (Debian: apt-get install gnuplot-nox)");
        if (!llc_outfile_check(plot, &perr)) return cli_error("%s", perr.message);
    }
    if (threads[0] == 0) threads[0] = llc_n_cores();
    int max_d = 0, max_n = 0;
    for (int i = 0; i < n_d; i++) max_d = depths[i] > max_d ? depths[i] : max_d;
    for (int i = 0; i < n_n; i++) max_n = gens[i] > max_n ? gens[i] : max_n;
    if (max_d > 0)
        for (int i = 0; i < n_b; i++)
            if (batches[i] > 1) return cli_usage("bench: --decode-after applies to -b 1 only (got -b %d)", batches[i]);

    /* Load time as a user sees it: the model opened and its first session ready (which repacks the
     * weights for the machine's kernels). */
    double t_load = cli_now_ms();
    llamac_model *m = cli_load_model(model_path, NULL);
    if (!m) return 1;
    llamac_model_info info;
    llamac_model_get_info(m, &info);
    if (max_d > 0 && (int64_t)max_d + max_n > info.n_ctx_train) {
        llamac_model_free(m);
        return cli_usage("bench: --decode-after %d with -n %d needs %lld positions, more than the model's context of %d", max_d,
                         max_n, (long long)max_d + max_n, info.n_ctx_train);
    }
    const llamac_tokenizer *tok = llamac_model_tokenizer(m);
    {
        llamac_error err = {{0}};
        llamac_session_params sp = {.n_ctx = 16, .n_threads = threads[0], .kv_type = kv_type};
        llamac_session *s = llamac_session_create(m, &sp, &err);
        if (!s) {
            llamac_model_free(m);
            return cli_error("%s", err.message);
        }
        llamac_session_free(s);
    }
    t_load = (cli_now_ms() - t_load) / 1000.0;

    /* The machine's limits, measured once with the most threads asked for. */
    int max_t = 1;
    for (int i = 0; i < n_t; i++) max_t = threads[i] > max_t ? threads[i] : max_t;
    bool int8 = !strcmp(info.weight_type, "q8_0") || !strcmp(info.weight_type, "q4_0") || !strcmp(info.weight_type, "q4_k") ||
                !strcmp(info.weight_type, "q6_k");
    enum cli_peak_kind kind = !strcmp(info.weight_type, "bf16") ? CLI_PEAK_BF16_DOT : int8 ? CLI_PEAK_INT8_DOT : CLI_PEAK_FP32_FMA;
    double bw = 0, peak = 0;
    char cpu[192];
    cli_cpu_name(cpu, sizeof cpu);
    if (sweep) {
        fprintf(stderr, "llamac bench --sweep: %s (%s), %s, %s kernels, loaded in %.2f s, %d threads, KV %s, %d repetitions\n", info.name,
                info.weight_type, cpu, llamac_isa(), t_load, threads[0], llamac_kv_type_name(kv_type), reps);
        char *peer_log = NULL;
        size_t peer_len = 0;
        FILE *peer_out = peer ? open_memstream(&peer_log, &peer_len) : NULL;
        sweep_args sa = {m, &info, prompts, gens, batches, n_p, n_n, n_b, threads[0], reps, kv_type, fmt, plot, cpu, peer_out, peer};
        int src = run_sweep(&sa);
        if (peer_out) {
            fclose(peer_out);
            if (peer_len) printf("\npeer (%s), run between our repetitions:\n%s", peer, peer_log);
            free(peer_log);
        }
        llamac_model_free(m);
        return src;
    }
    probe_machine(max_t, kind, &bw, &peak);
    fprintf(stderr, "llamac bench: %s, %s, %s kernels, loaded in %.2f s, read bandwidth %.1f GB/s, %s peak %.0f G-op/s (%d threads)\n",
            info.name, cpu, llamac_isa(), t_load, bw, cli_peak_name(kind), peak / 1e9, max_t);

    if (!strcmp(fmt, "md")) {
        printf("| model | type | threads | n_prompt | n_gen | batch | prefill tok/s | decode tok/s | decode GB/s (%% of %.0f) | prefill G-op/s (%% of %s peak) | peak RSS MB | hash |\n",
               bw, cli_peak_name(kind));
        printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    } else if (!strcmp(fmt, "csv")) {
        printf("model,type,threads,n_prompt,n_gen,batch,prefill_tok_s,prefill_sd,decode_tok_s,decode_sd,decode_gb_s,bandwidth_gb_s,prefill_gops,peak_gops,peak_rss_mb,hash,n_depth\n");
    }
    int rc = 0;
    char *peer_log = NULL;
    size_t peer_len = 0;
    FILE *peer_out = peer ? open_memstream(&peer_log, &peer_len) : NULL;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int ti = 0; ti < n_t && !rc; ti++)
        for (int pi = 0; pi < n_p && !rc; pi++)
            for (int ni = 0; ni < n_n && !rc; ni++)
                for (int bi = 0; bi < n_b && !rc; bi++)
                for (int di = 0; di < n_d && !rc; di++) {
                    int np = prompts[pi], ng = gens[ni], nt = threads[ti], nb = batches[bi], nd = depths[di];
                    int ctx = (np > ng + 1 ? np : ng + 1);
                    double pre[1000], dec[1000];
                    uint64_t hash = 0;
                    bool same_hash = true;
                    batch_kv kv = {0};
                    int32_t *ids = malloc((size_t)(np > ng + 1 ? np : ng + 1) * sizeof *ids);
                    /* the cache at depth is filled once; each repetition truncates back to it */
                    llamac_session *deep = NULL;
                    int32_t deep_first = 0;
                    if (nd > 0) {
                        llamac_error err = {{0}};
                        if (!(deep = fill_depth(m, info.n_vocab, nd, ng, nt, kv_type, &deep_first, &err))) {
                            free(ids);
                            rc = cli_error("%s", err.message);
                            break;
                        }
                    }
                    /* Rep -1 warms the page cache and the allocator and is not counted. */
                    for (int r = -1; r < reps && !rc; r++) {
                        llamac_error err = {{0}};
                        uint64_t h = 1469598103934665603ull;
                        double t_pre = 0, t_dec = 0;
                        if (nb > 1) {
                            /* the same prompts on every repetition, so the hash must repeat too */
                            uint64_t brng = 0x9e3779b97f4a7c15ull ^ (uint64_t)np;
                            if (!bench_batch(m, nb, np, ng, nt, kv_type, &brng, &t_pre, &t_dec, &h, &kv, &err)) {
                                rc = cli_error("%s", err.message);
                                break;
                            }
                        } else {
                            llamac_session_params sp = {.n_ctx = ctx, .n_threads = nt, .kv_type = kv_type};
                            llamac_session *s = llamac_session_create(m, &sp, &err);
                            if (!s) {
                                rc = cli_error("%s", err.message);
                                break;
                            }
                            for (int i = 0; i < np; i++) {
                                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                                ids[i] = (int32_t)(rng % (uint64_t)info.n_vocab);
                            }
                            double t0 = cli_now_ms();
                            if (!llamac_session_eval(s, ids, np, &err)) rc = cli_error("%s", err.message);
                            t_pre = cli_now_ms() - t0;
                            /* decode: from BOS (or after the depth's prefill), greedy, one token per step, as
                             * llama-bench's tg */
                            llamac_session_truncate(s, 0);
                            int32_t cur = llamac_tokenizer_bos(tok) >= 0 ? llamac_tokenizer_bos(tok) : 0;
                            llamac_session *ds = s;
                            if (deep) {
                                llamac_session_truncate(deep, nd);
                                ds = deep;
                                cur = deep_first;
                            }
                            t0 = cli_now_ms();
                            for (int i = 0; i < ng && !rc; i++) {
                                const float *l = llamac_session_eval(ds, &cur, 1, &err);
                                if (!l) {
                                    rc = cli_error("%s", err.message);
                                    break;
                                }
                                cur = argmax(l, info.n_vocab);
                                h = (h ^ (uint64_t)cur) * 1099511628211ull;
                            }
                            t_dec = cli_now_ms() - t0;
                            llamac_session_free(s);
                        }
                        if (r < 0) continue;
                        pre[r] = (double)nb * np * 1000.0 / t_pre;
                        /* -b 1 times ng single-token evaluations; the engine's last token needs no evaluation */
                        dec[r] = nb == 1 ? ng * 1000.0 / t_dec : t_dec > 0 ? (double)nb * (ng - 1) * 1000.0 / t_dec : 0;
                        if (r == 0) hash = h;
                        else if (h != hash) same_hash = false;
                        if (peer_out) run_peer(peer, peer_out);
                    }
                    free(ids);
                    llamac_session_free(deep);
                    if (rc) break;
                    stats ps = summarize(pre, reps), ds = summarize(dec, reps);
                    /* a decode step reads the weights once for all nb sequences */
                    double gbs = ds.mean / nb * (double)info.decode_bytes / 1e9;
                    double ops = nb * (2.0 * (double)info.matmul_macs * np + 2.0 * info.n_layers * info.dim * (double)np * (np + 1)) /
                                 (nb * np / ps.mean);
                    char hs[24];
                    snprintf(hs, sizeof hs, "%016llx%s", (unsigned long long)hash, same_hash ? "" : "!");
                    double rss = cli_peak_rss_mb();
                    if (!strcmp(fmt, "json")) {
                        char kvs[256] = "\"kv_blocks\": null, \"kv_blocks_peak\": null, \"kv_waste\": null, \"preemptions\": null";
                        if (nb > 1)
                            snprintf(kvs, sizeof kvs, "\"kv_blocks\": %d, \"kv_blocks_peak\": %d, \"kv_block_size\": %d, \"kv_waste\": %.3f, \"preemptions\": %d",
                                     kv.blocks, kv.peak, kv.block_size, kv.waste, kv.preemptions);
                        printf("{\"model\": \"%s\", \"type\": \"%s\", \"isa\": \"%s\", \"threads\": %d, \"n_prompt\": %d, \"n_gen\": %d, "
                               "\"batch\": %d, \"reps\": %d, \"prefill_tok_s\": %.2f, \"prefill_sd\": %.2f, \"decode_tok_s\": %.2f, "
                               "\"decode_sd\": %.2f, \"decode_gb_s\": %.2f, \"bandwidth_gb_s\": %.2f, \"prefill_gops\": %.1f, "
                               "\"peak_gops\": %.1f, \"peak_kind\": \"%s\", \"peak_rss_mb\": %.1f, \"load_s\": %.3f, \"kv_type\": \"%s\", %s, "
                               "\"n_depth\": %d, \"cpu\": \"%s\", \"hash\": \"%s\"}\n",
                               info.name, info.weight_type, llamac_isa(), nt, np, ng, nb, reps, ps.mean, ps.sd, ds.mean, ds.sd, gbs, bw,
                               ops / 1e9, peak / 1e9, cli_peak_name(kind), rss, t_load, llamac_kv_type_name(kv_type), kvs, nd, cpu, hs);
                    } else if (!strcmp(fmt, "csv")) {
                        printf("\"%s\",%s,%d,%d,%d,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.1f,%.1f,%.1f,%s,%d\n", info.name, info.weight_type, nt, np,
                               ng, nb, ps.mean, ps.sd, ds.mean, ds.sd, gbs, bw, ops / 1e9, peak / 1e9, rss, hs, nd);
                    } else {
                        char at[32] = "";
                        if (nd > 0) snprintf(at, sizeof at, " @ d %d", nd);
                        printf("| %s | %s%s%s | %d | %d | %d | %d | %.1f ± %.1f | %.2f ± %.2f%s | %.1f (%.0f%%) | %.0f (%.0f%%) | %.0f | %s |\n",
                               info.name, info.weight_type, kv_type ? ", KV " : "", kv_type ? llamac_kv_type_name(kv_type) : "", nt,
                               np, ng, nb, ps.mean, ps.sd, ds.mean, ds.sd, at, gbs, bw > 0 ? 100 * gbs / bw : 0, ops / 1e9,
                               peak > 0 ? 100 * ops / peak : 0, rss, hs);
                    }
                    fflush(stdout);
                }
    if (peer_out) {
        fclose(peer_out);
        if (peer_len) printf("\npeer (%s), run between our repetitions:\n%s", peer, peer_log);
        free(peer_log);
    }
    llamac_model_free(m);
    return rc;
}
