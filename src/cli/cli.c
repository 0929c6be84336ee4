#include "cli/cli.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mapped_file.h"

static int vreport(int code, const char *fmt, va_list ap) {
    char raw[1024], msg[1024];
    vsnprintf(raw, sizeof raw, fmt, ap);
    llc_printable(msg, sizeof msg, raw);
    fprintf(stderr, "llamac: error: %s\n", msg);
    return code;
}

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vreport(1, fmt, ap);
    va_end(ap);
    return r;
}

int cli_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vreport(2, fmt, ap);
    va_end(ap);
    return r;
}

const char *cli_value(cli_args *a, const char *opt) {
    if (a->i + 1 >= a->argc) {
        cli_usage("option %s needs a value", opt);
        a->failed = true;
        return NULL;
    }
    return a->argv[++a->i];
}

/* --pull: -m names a hub id to download before loading (read by cli_load_model). */
static bool pull_model;

int cli_common_option(cli_args *a, const cli_common *c, const char *usage) {
    const char *o = a->argv[a->i], *v;
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
        fputs(usage, stdout);
        return CLI_HELP;
    }
    if (c->model && (!strcmp(o, "-m") || !strcmp(o, "--model"))) return (*c->model = cli_value(a, o)) ? 1 : -1;
    if (c->model && !strcmp(o, "--pull")) return pull_model = true, 1;
    if (c->tokenizer && !strcmp(o, "--tokenizer")) return (*c->tokenizer = cli_value(a, o)) ? 1 : -1;
    if (c->threads && (!strcmp(o, "-t") || !strcmp(o, "--threads")))
        return (v = cli_value(a, o)) && cli_int(o, v, 1, 1024, c->threads) ? 1 : -1;
    if (c->ctx && (!strcmp(o, "-c") || !strcmp(o, "--ctx"))) return (v = cli_value(a, o)) && cli_int(o, v, 1, 1 << 24, c->ctx) ? 1 : -1;
    if (c->kv_type && !strcmp(o, "--kv-type")) {
        if (!(v = cli_value(a, o))) return -1;
        int t = llamac_kv_type_from_name(v);
        if (t < 0) {
            cli_usage("option %s expects f32, f16, bf16 or q8_0, got '%s'", o, v);
            return -1;
        }
        *c->kv_type = (llamac_kv_type)t;
        return 1;
    }
    return 0;
}

/* "2G", "512M", "64K", "1000000": bytes. */
bool cli_size(const char *opt, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*v)) return cli_usage("option %s expects a size such as 2G, 512M or 1000000, got '%s'", opt, v), false;
    double x = strtod(v, &end);
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm') mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g') mul = 1ull << 30, end++;
    else if (*end == 'T' || *end == 't') mul = 1ull << 40, end++;
    if (*end == 'i' && mul > 1) end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || errno || !isfinite(x) || x * (double)mul < 1 || x * (double)mul > 1e18)
        return cli_usage("option %s expects a size such as 2G, 512M or 1000000, got '%s'", opt, v), false;
    *out = (uint64_t)(x * (double)mul);
    return true;
}

bool cli_int(const char *opt, const char *v, long min, long max, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno) {
        cli_usage("option %s expects an integer, got '%s'", opt, v);
        return false;
    }
    if (x < min || x > max) {
        cli_usage("option %s must be between %ld and %ld, got %ld", opt, min, max, x);
        return false;
    }
    *out = (int)x;
    return true;
}

bool cli_u64(const char *opt, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    if (!*v || *v == '-') {
        cli_usage("option %s expects a non-negative integer, got '%s'", opt, v);
        return false;
    }
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno) {
        cli_usage("option %s expects a non-negative integer, got '%s'", opt, v);
        return false;
    }
    *out = x;
    return true;
}

bool cli_float(const char *opt, const char *v, double min, double max, float *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x)) {
        cli_usage("option %s expects a number, got '%s'", opt, v);
        return false;
    }
    if (x < min || x > max) {
        cli_usage("option %s must be between %g and %g, got %g", opt, min, max, x);
        return false;
    }
    *out = (float)x;
    return true;
}

int cli_int_list(const char *opt, const char *v, int min, int max, int *out) {
    int n = 0;
    char buf[256];
    if (strlen(v) >= sizeof buf) return cli_usage("option %s: list longer than %zu characters", opt, sizeof buf - 1), -1;
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == CLI_MAX_LIST) return cli_usage("option %s: at most %d values", opt, CLI_MAX_LIST), -1;
        if (!cli_int(opt, tok, min, max, &out[n])) return -1;
        n++;
    }
    if (n == 0) return cli_usage("option %s needs at least one value", opt), -1;
    return n;
}

void cli_sampling_init(cli_sampling *s) {
    s->sp = llamac_sampler_defaults();
    s->temp_given = s->top_p_given = s->seed_given = false;
}

int cli_sampling_option(cli_args *a, cli_sampling *s) {
    const char *o = a->argv[a->i], *v;
    llamac_sampler_params *sp = &s->sp;
    if (!strcmp(o, "--temp")) {
        s->temp_given = true;
        return (v = cli_value(a, o)) && cli_float(o, v, 0, 1e6, &sp->temperature) ? 1 : -1;
    }
    if (!strcmp(o, "--top-k")) return (v = cli_value(a, o)) && cli_int(o, v, 0, 1 << 24, &sp->top_k) ? 1 : -1;
    if (!strcmp(o, "--top-p")) {
        s->top_p_given = true;
        return (v = cli_value(a, o)) && cli_float(o, v, 1e-9, 1, &sp->top_p) ? 1 : -1;
    }
    if (!strcmp(o, "--min-p")) return (v = cli_value(a, o)) && cli_float(o, v, 0, 1, &sp->min_p) ? 1 : -1;
    if (!strcmp(o, "--repeat-penalty")) return (v = cli_value(a, o)) && cli_float(o, v, 1e-6, 1e6, &sp->repeat_penalty) ? 1 : -1;
    if (!strcmp(o, "--repeat-last-n")) return (v = cli_value(a, o)) && cli_int(o, v, 0, 1 << 20, &sp->repeat_last_n) ? 1 : -1;
    if (!strcmp(o, "-s") || !strcmp(o, "--seed")) {
        s->seed_given = true;
        return (v = cli_value(a, o)) && cli_u64(o, v, &sp->seed) ? 1 : -1;
    }
    return 0;
}

void cli_sampling_finish(cli_sampling *s, const llamac_model *m) {
    llamac_model_info info;
    llamac_model_get_info(m, &info);
    if (!s->temp_given && info.default_temperature > 0) s->sp.temperature = info.default_temperature;
    if (!s->top_p_given && info.default_top_p > 0) s->sp.top_p = info.default_top_p;
    if (!s->seed_given) s->sp.seed = (uint64_t)time(NULL);
}

double cli_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void cli_progress(const char *what, uint64_t done, uint64_t total, double t0_ms) {
    static double last;
    if (!isatty(2) || total == 0) return;
    double now = cli_now_ms();
    if (done < total && now - last < 100) return;
    last = now;
    double frac = (double)done / (double)total, secs = (now - t0_ms) / 1000.0;
    int width = 30, filled = (int)(frac * width);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    double eta = frac > 0 ? secs / frac - secs : 0;
    double mib = (double)done / 1048576.0;
    fprintf(stderr, "\r%s [%s] %5.1f%% %8.1f MiB %7.1f MiB/s  %5.1f s  eta %5.1f s", what, bar, 100 * frac, mib,
            secs > 0 ? mib / secs : 0.0, secs, eta);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

/* A "Vm...:  N kB" line of /proc/self/status in MiB, -1 when there is none. */
static double proc_status_mb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double mb = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            mb = strtod(line + n + 1, NULL) / 1024.0;
            break;
        }
    fclose(f);
    return mb;
}

double cli_peak_rss_mb(void) {
    /* VmHWM is this process's own peak. getrusage's ru_maxrss also keeps the peak of the process image
     * exec replaced (a Python parent's pages, for a child it spawned), which can hide ours. */
    double mb = proc_status_mb("VmHWM");
    if (mb >= 0) return mb;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

void cli_json_string(FILE *f, const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *t = j ? cJSON_PrintUnformatted(j) : NULL;
    fputs(t ? t : "null", f);
    free(t);
    cJSON_Delete(j);
}

double cli_rss_mb(void) { return proc_status_mb("VmRSS"); }

bool cli_peak_rss_reset(void) {
    /* Linux >= 4.0: writing 5 to clear_refs sets VmHWM back to the current RSS. */
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    ok = fclose(f) == 0 && ok;
    return ok && proc_status_mb("VmHWM") >= 0;
}

int cli_default_ctx(const llamac_model *m) {
    llamac_model_info in;
    llamac_model_get_info(m, &in);
    return in.n_ctx_train < 4096 ? in.n_ctx_train : 4096;
}

llamac_model *cli_load_model(const char *path, const char *tokenizer_path) {
    llamac_error err = {{0}};
    llamac_model_params mp = {.tokenizer_path = tokenizer_path};
    char buf[4096];
    if (!(path = cli_model_path(path, pull_model, buf, sizeof buf))) return NULL;
    llamac_model *m = llamac_model_load(path, &mp, &err);
    if (!m) cli_error("%s", err.message);
    return m;
}

int cli_tokenize(const llamac_tokenizer *tok, const char *text, size_t len, bool add_bos, bool special, int32_t **ids) {
    llamac_error err = {{0}};
    int cap = 256;
    for (;;) {
        int32_t *buf = realloc(*ids, (size_t)cap * sizeof *buf);
        if (!buf) {
            cli_error("out of memory tokenizing %zu bytes", len);
            return -1;
        }
        *ids = buf;
        int n = llamac_tokenize(tok, text, len, add_bos, special, buf, cap, &err);
        if (n < 0) {
            cli_error("%s", err.message);
            return -1;
        }
        if (n <= cap) return n;
        cap = n;
    }
}

char *cli_read_text(const char *path, size_t *len) {
    llamac_error err = {{0}};
    char *t = llc_read_file(path, (size_t)1 << 30, len, &err);
    if (!t) cli_error("%s", err.message);
    return t;
}
