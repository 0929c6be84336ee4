/* The hub client's network and cache side (the parsing is in hub_parse.c). What it does mirrors
 * huggingface_hub's snapshot_download: the model API gives the commit and the file list, a HEAD of each
 * file's resolve URL gives its etag, size and CDN location, the body lands in blobs/ETAG.incomplete and is
 * renamed into place once checked, and the snapshot links to it. */
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "base/sha256.h"
#include "hub/hub.h"

#define MAX_ATTEMPTS 6         /* per request: network errors, 429 and 5xx */
#define MAX_RETRY_AFTER_S 60   /* a longer Retry-After ends the pull with a message instead */
#define MAX_REDIRECTS 10
#define MAX_LISTING_BYTES (64u << 20)
#define MAX_SNAPSHOT_FILES 100000
#define URL_MAX 4096

/* ---- environment -------------------------------------------------------------------------------- */

static bool env_true(const char *name) {
    const char *v = getenv(name);
    return v && (!strcasecmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "yes") || !strcasecmp(v, "true"));
}

static bool set_str(char *dst, size_t cap, const char *src, const char *what, llamac_error *err) {
    if (strlen(src) >= cap) return llc_fail(err, "%s is longer than %zu bytes", what, cap - 1);
    memcpy(dst, src, strlen(src) + 1);
    return true;
}

/* A bearer token goes into a header line: printable ASCII only. */
static bool valid_token(const char *t) {
    for (; *t; t++)
        if (*t <= 0x20 || *t >= 0x7f) return false;
    return true;
}

bool llc_hub_opts_from_env(llc_hub_opts *o, llamac_error *err) {
    memset(o, 0, sizeof *o);
    const char *ep = getenv("HF_ENDPOINT");
    if (!set_str(o->endpoint, sizeof o->endpoint, ep && *ep ? ep : "https://huggingface.co", "HF_ENDPOINT", err)) return false;
    for (size_t n = strlen(o->endpoint); n && o->endpoint[n - 1] == '/';) o->endpoint[--n] = 0;
    if (strncmp(o->endpoint, "http://", 7) && strncmp(o->endpoint, "https://", 8))
        return llc_fail(err, "HF_ENDPOINT must start with http:// or https://");
    char home[1024];
    const char *hf_home = getenv("HF_HOME"), *xdg = getenv("XDG_CACHE_HOME"), *user = getenv("HOME");
    if (hf_home && *hf_home) snprintf(home, sizeof home, "%s", hf_home);
    else if (xdg && *xdg) snprintf(home, sizeof home, "%s/huggingface", xdg);
    else if (user && *user) snprintf(home, sizeof home, "%s/.cache/huggingface", user);
    else return llc_fail(err, "no cache folder: set HF_HUB_CACHE, HF_HOME or HOME");
    const char *hub = getenv("HF_HUB_CACHE");
    if (!hub || !*hub) hub = getenv("HUGGINGFACE_HUB_CACHE");
    if (hub && *hub) {
        if (!set_str(o->cache, sizeof o->cache, hub, "HF_HUB_CACHE", err)) return false;
    } else if ((size_t)snprintf(o->cache, sizeof o->cache, "%s/hub", home) >= sizeof o->cache) {
        return llc_fail(err, "the cache folder's path is too long");
    }
    o->offline = env_true("HF_HUB_OFFLINE");
    const char *tok = getenv("HF_TOKEN");
    if (tok && *tok) {
        if (!set_str(o->token, sizeof o->token, tok, "HF_TOKEN", err)) return false;
    } else {
        char path[1100];
        const char *tp = getenv("HF_TOKEN_PATH");
        snprintf(path, sizeof path, "%s", tp && *tp ? tp : "");
        if (!path[0]) snprintf(path, sizeof path, "%s/token", home);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(o->token, sizeof o->token, f)) o->token[0] = 0;
            fclose(f);
            for (size_t n = strlen(o->token); n && isspace((unsigned char)o->token[n - 1]);) o->token[--n] = 0;
        }
    }
    if (!valid_token(o->token)) return llc_fail(err, "the hub token (HF_TOKEN or its file) holds spaces or control characters");
    return true;
}

/* ---- small file helpers ------------------------------------------------------------------------- */

static bool mkdirs(const char *path, llamac_error *err) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) return llc_fail(err, "path too long: %.200s", path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) return llc_fail(err, "cannot create %s: %s", p, strerror(errno));
            *s = c;
            if (!c) return true;
        }
    }
}

static bool parent_dirs(const char *file, llamac_error *err) {
    char d[4096];
    snprintf(d, sizeof d, "%s", file);
    char *s = strrchr(d, '/');
    if (!s || s == d) return true;
    *s = 0;
    return mkdirs(d, err);
}

/* Writes text to path through a temporary file and a rename, so readers see the old or the new. */
static bool write_atomic(const char *path, const char *text, llamac_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    if (!parent_dirs(path, err)) return false;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return llc_fail(err, "cannot write %s: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    bool ok = write(fd, text, n) == (ssize_t)n;
    ok = (close(fd) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return llc_fail(err, "cannot write %s: %s", path, strerror(e));
    }
    return true;
}

static bool symlink_atomic(const char *target, const char *path, llamac_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    if (!parent_dirs(path, err)) return false;
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return llc_fail(err, "cannot link %s: %s", path, strerror(e));
    }
    return true;
}

static bool is_hex_n(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

/* A path into a buffer sized for the longest cache path; false if it does not fit after all. */
__attribute__((format(printf, 3, 4))) static bool pathf(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap;
}

/* ---- HTTP --------------------------------------------------------------------------------------- */

typedef struct resp {
    long status;
    char location[URL_MAX], etag[160], linked_etag[160], commit[64], content_range[128], error_code[64], error_msg[256];
    int64_t linked_size, content_length;
    long retry_after;
} resp;

typedef struct sink {
    CURL *h;
    bool started, to_file;
    /* a file download */
    int fd;
    uint64_t done, size, from;
    llc_sha256 sha;
    int write_errno;
    bool bad_range, overflow;
    const llc_hub_opts *o;
    const char *file;
    /* an answer kept in memory (the listing, error bodies) */
    char *mem;
    size_t mem_n, mem_max;
} sink;

typedef struct ctx {
    const llc_hub_opts *o;
    const llc_hub_id *id;
    CURL *h;
    char repo_dir[1400], locks_dir[1400];
    const char *revision;
} ctx;

static void copy_header_value(char *dst, size_t cap, const char *v, size_t n) {
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
    while (n && *v == ' ') v++, n--;
    if (n >= cap) n = cap - 1; /* an over-long value is then refused by whoever checks it */
    memcpy(dst, v, n);
    dst[n] = 0;
}

static int64_t parse_size(const char *s) {
    if (!*s || strlen(s) > 18) return -1;
    int64_t v = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s)) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static size_t on_header(char *buf, size_t size, size_t n, void *user) {
    resp *r = user;
    size_t len = size * n;
    if (len >= 5 && !memcmp(buf, "HTTP/", 5)) {
        /* a new response (after a 100 Continue): start over */
        long keep = r->status;
        memset(r, 0, sizeof *r);
        r->status = keep;
        r->linked_size = r->content_length = r->retry_after = -1;
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (!colon) return len;
    size_t kn = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vn = len - kn - 1;
    char tmp[64];
#define IS(name) (kn == strlen(name) && !strncasecmp(buf, name, kn))
    if (IS("location")) copy_header_value(r->location, sizeof r->location, v, vn);
    else if (IS("etag")) copy_header_value(r->etag, sizeof r->etag, v, vn);
    else if (IS("x-linked-etag")) copy_header_value(r->linked_etag, sizeof r->linked_etag, v, vn);
    else if (IS("x-repo-commit")) copy_header_value(r->commit, sizeof r->commit, v, vn);
    else if (IS("content-range")) copy_header_value(r->content_range, sizeof r->content_range, v, vn);
    else if (IS("x-error-code")) copy_header_value(r->error_code, sizeof r->error_code, v, vn);
    else if (IS("x-error-message")) copy_header_value(r->error_msg, sizeof r->error_msg, v, vn);
    else if (IS("x-linked-size")) copy_header_value(tmp, sizeof tmp, v, vn), r->linked_size = parse_size(tmp);
    else if (IS("content-length")) copy_header_value(tmp, sizeof tmp, v, vn), r->content_length = parse_size(tmp);
    else if (IS("retry-after")) copy_header_value(tmp, sizeof tmp, v, vn), r->retry_after = (long)parse_size(tmp);
#undef IS
    return len;
}

static size_t keep_mem(sink *s, const char *buf, size_t len) {
    if (s->mem_n + len > s->mem_max) {
        s->overflow = true;
        return 0;
    }
    char *m = realloc(s->mem, s->mem_n + len + 1);
    if (!m) return 0;
    memcpy(m + s->mem_n, buf, len);
    s->mem = m, s->mem_n += len, m[s->mem_n] = 0;
    return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *user) {
    sink *s = user;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
    if (!s->to_file || (status != 200 && status != 206)) {
        if (s->to_file) return len; /* an error page or a redirect's body: not the file */
        return keep_mem(s, buf, len);
    }
    if (!s->started) {
        s->started = true;
        if (status == 200 && s->from) {
            /* the server ignored Range: start the file over */
            if (ftruncate(s->fd, 0) != 0) {
                s->write_errno = errno;
                return 0;
            }
            s->done = 0;
            llc_sha256_init(&s->sha);
        }
    }
    if (s->done + len > s->size) {
        s->overflow = true;
        return 0;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = pwrite(s->fd, buf + off, len - off, (off_t)(s->done + off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            s->write_errno = w < 0 ? errno : ENOSPC;
            return 0;
        }
        off += (size_t)w;
    }
    llc_sha256_update(&s->sha, buf, len);
    s->done += len;
    if (s->o && s->o->progress) s->o->progress(s->o->user, LLC_HUB_FILE_BYTES, s->file, s->done, s->size, NULL);
    return len;
}

/* scheme://host:port of a URL, the port made explicit, for comparing origins. */
static bool url_origin(const char *url, char *out, size_t cap) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
    if (ok) {
        for (char *c = host; *c; c++) *c = (char)tolower((unsigned char)*c);
        ok = (size_t)snprintf(out, cap, "%s://%s:%s", scheme, host, port) < cap;
    }
    curl_free(scheme), curl_free(host), curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

static bool same_origin(const char *a, const char *b) {
    char oa[600], ob[600];
    return url_origin(a, oa, sizeof oa) && url_origin(b, ob, sizeof ob) && !strcmp(oa, ob);
}

/* A Location resolved against the URL that answered it. */
static bool resolve_location(const char *base, const char *loc, char *out, size_t cap) {
    CURLU *u = curl_url();
    char *s = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
              curl_url_set(u, CURLUPART_URL, loc, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK &&
              strlen(s) < cap && (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8));
    if (ok) memcpy(out, s, strlen(s) + 1);
    curl_free(s);
    curl_url_cleanup(u);
    return ok;
}

/* One request, no redirect followed; the Authorization header only when url is on the endpoint's origin
 * (a token must not reach the CDN). */
static CURLcode perform(ctx *c, bool head, const char *url, uint64_t range_from, sink *s, resp *r) {
    CURL *h = c->h;
    curl_easy_reset(h);
    memset(r, 0, sizeof *r);
    r->linked_size = r->content_length = r->retry_after = -1;
    struct curl_slist *hdr = curl_slist_append(NULL, "Accept-Encoding: identity");
    char line[700];
    if (c->o->token[0] && same_origin(url, c->o->endpoint)) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", c->o->token);
        hdr = curl_slist_append(hdr, line);
    }
    if (range_from) {
        snprintf(line, sizeof line, "Range: bytes=%" PRIu64 "-", range_from);
        hdr = curl_slist_append(hdr, line);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "llamac/1 (huggingface_hub-compatible)");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a stalled transfer (no byte for a minute) is a network error: retried, resumed */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    if (head) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    s->h = h;
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdr);
    return rc;
}

static bool transient(CURLcode rc) {
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_GOT_NOTHING || rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM ||
           rc == CURLE_SSL_CONNECT_ERROR;
}

/* Sleeps before attempt+1 (1, 2, 4, 8, 16 s, or the server's Retry-After); false when the attempts are
 * spent or the server asks for longer than we wait, with the reason in err. */
static bool backoff(ctx *c, int attempt, const char *file, const resp *r, const char *why, llamac_error *err) {
    if (attempt + 1 >= MAX_ATTEMPTS) return llc_fail(err, "%s: %s (gave up after %d attempts)", file, why, MAX_ATTEMPTS);
    long secs = 1L << attempt;
    if (r->status == 429 && r->retry_after >= 0) {
        if (r->retry_after > MAX_RETRY_AFTER_S)
            return llc_fail(err, "%s: rate limited by the hub (HTTP 429), which asks to wait %ld s; try again later", file,
                            r->retry_after);
        secs = r->retry_after;
    }
    char msg[400];
    snprintf(msg, sizeof msg, "%s; retrying in %ld s (attempt %d of %d)", why, secs, attempt + 2, MAX_ATTEMPTS);
    if (c->o->progress) c->o->progress(c->o->user, LLC_HUB_RETRY, file, 0, 0, msg);
    struct timespec ts = {secs, 0};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    return true;
}

/* The one-line error for an HTTP status the hub refused with. */
static bool http_error(ctx *c, const resp *r, const char *what, llamac_error *err) {
    char detail[300] = "";
    if (r->error_msg[0]) {
        char clean[260];
        llc_printable(clean, sizeof clean, r->error_msg);
        snprintf(detail, sizeof detail, " (%s)", clean);
    }
    const char *repo = c->id->repo;
    if (r->status == 401 || r->status == 403 || !strcmp(r->error_code, "GatedRepo"))
        return llc_fail(err, "%s: access refused (HTTP %ld)%s: %s is gated or private, or does not exist; accept its "
                             "terms on the hub and set HF_TOKEN (or %s)", what, r->status, detail, repo,
                        c->o->token[0] ? "check that the token has access" : "run huggingface-cli login");
    if (r->status == 404) {
        if (!strcmp(r->error_code, "RevisionNotFound"))
            return llc_fail(err, "%s: revision '%s' not found in %s (HTTP 404)%s", what, c->revision, repo, detail);
        if (!strcmp(r->error_code, "EntryNotFound"))
            return llc_fail(err, "%s: no such file in %s at '%s' (HTTP 404)%s", what, repo, c->revision, detail);
        return llc_fail(err, "%s: not found (HTTP 404)%s: no repository %s on %s, or no revision '%s'", what, detail, repo,
                        c->o->endpoint, c->revision);
    }
    return llc_fail(err, "%s: HTTP %ld from the hub%s", what, r->status, detail);
}

static void url_escape(char *out, size_t cap, const char *s, bool keep_slash) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~' || (keep_slash && ch == '/')) out[o++] = (char)ch;
        else out[o++] = '%', out[o++] = hex[ch >> 4], out[o++] = hex[ch & 15];
    }
    out[o] = 0;
}

/* The model listing, with retries. */
static bool get_listing(ctx *c, llc_hub_listing *l, llamac_error *err) {
    char rev[800], url[URL_MAX], what[400];
    url_escape(rev, sizeof rev, c->revision, false);
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s", c->o->endpoint, c->id->repo, rev);
    snprintf(what, sizeof what, "%s (revision %s)", c->id->repo, c->revision);
    for (int attempt = 0, hops = 0;;) {
        sink s = {.mem_max = MAX_LISTING_BYTES};
        resp r;
        CURLcode rc = perform(c, false, url, 0, &s, &r);
        if (s.overflow) {
            free(s.mem);
            return llc_fail(err, "%s: the hub's model listing is larger than %u MiB", what, MAX_LISTING_BYTES >> 20);
        }
        if (rc == CURLE_OK && r.status >= 300 && r.status < 400 && r.location[0] && hops++ < MAX_REDIRECTS) {
            free(s.mem);
            char next[URL_MAX];
            if (!resolve_location(url, r.location, next, sizeof next)) return llc_fail(err, "%s: a bad redirect", what);
            memcpy(url, next, sizeof url);
            continue;
        }
        if (rc == CURLE_OK && r.status == 200) {
            bool ok = llc_hub_parse_listing(s.mem ? s.mem : "", s.mem_n, l, err);
            free(s.mem);
            if (!ok) llc_error_prefix(err, "%s", what);
            return ok;
        }
        free(s.mem);
        char why[300];
        if (rc != CURLE_OK) snprintf(why, sizeof why, "%s", curl_easy_strerror(rc));
        else snprintf(why, sizeof why, "HTTP %ld", r.status);
        if (rc == CURLE_OK && r.status != 429 && r.status < 500) return http_error(c, &r, what, err);
        if (rc != CURLE_OK && !transient(rc)) return llc_fail(err, "%s: cannot reach %s: %s", what, c->o->endpoint, why);
        if (!backoff(c, attempt++, what, &r, why, err)) return false;
    }
}

/* What HEAD on the resolve URL says about one file. */
typedef struct file_meta {
    char etag[130], commit[41], url[URL_MAX];
    uint64_t size;
    bool lfs;
} file_meta;

static bool head_file(ctx *c, const char *commit, const char *path, file_meta *m, llamac_error *err) {
    char epath[3 * LLC_HUB_PATH_MAX + 1], url[URL_MAX];
    url_escape(epath, sizeof epath, path, true);
    snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", c->o->endpoint, c->id->repo, commit, epath);
    for (int attempt = 0, hops = 0;;) {
        sink s = {.mem_max = 1 << 16};
        resp r;
        CURLcode rc = perform(c, true, url, 0, &s, &r);
        free(s.mem);
        bool redirect = rc == CURLE_OK && r.status >= 300 && r.status < 400 && r.location[0];
        char next[URL_MAX] = "";
        if (redirect && !resolve_location(url, r.location, next, sizeof next)) return llc_fail(err, "%s: a bad redirect", path);
        /* a relative redirect (a renamed repository) is followed, as huggingface_hub does; an absolute
         * one is where the file is served from (the CDN) */
        if (redirect && !strstr(r.location, "://")) {
            if (hops++ >= MAX_REDIRECTS) return llc_fail(err, "%s: too many redirects", path);
            memcpy(url, next, sizeof url);
            continue;
        }
        if (rc == CURLE_OK && (r.status == 200 || redirect)) {
            const char *e = r.linked_etag[0] ? r.linked_etag : r.etag;
            if (!strncmp(e, "W/", 2)) e += 2;
            size_t n = strlen(e);
            if (n >= 2 && e[0] == '"' && e[n - 1] == '"') e++, n -= 2;
            bool ok = n > 0 && n < sizeof m->etag;
            for (size_t i = 0; ok && i < n; i++) ok = isalnum((unsigned char)e[i]) || e[i] == '-' || e[i] == '_';
            if (!ok) return llc_fail(err, "%s: the hub sent no usable ETag (needed to name the cached file)", path);
            memcpy(m->etag, e, n);
            m->etag[n] = 0;
            if (!is_hex_n(r.commit, 40))
                return llc_fail(err, "%s: no X-Repo-Commit in the answer: %s does not look like a Hugging Face hub", path,
                                c->o->endpoint);
            memcpy(m->commit, r.commit, 41);
            int64_t size = r.linked_size >= 0 ? r.linked_size : redirect ? -1 : r.content_length;
            if (size < 0 || size > ((int64_t)1 << 50)) return llc_fail(err, "%s: the hub sent no usable file size", path);
            m->size = (uint64_t)size;
            m->lfs = is_hex_n(m->etag, 64);
            snprintf(m->url, sizeof m->url, "%s", redirect ? next : url);
            return true;
        }
        char why[300];
        if (rc != CURLE_OK) snprintf(why, sizeof why, "%s", curl_easy_strerror(rc));
        else snprintf(why, sizeof why, "HTTP %ld", r.status);
        if (rc == CURLE_OK && r.status != 429 && r.status < 500) return http_error(c, &r, path, err);
        if (rc != CURLE_OK && !transient(rc)) return llc_fail(err, "%s: cannot reach %s: %s", path, c->o->endpoint, why);
        if (!backoff(c, attempt++, path, &r, why, err)) return false;
    }
}

/* Re-reads what an earlier attempt left in fd into the digest. */
static bool hash_prefix(int fd, uint64_t n, llc_sha256 *sha) {
    char buf[1 << 16];
    for (uint64_t off = 0; off < n;) {
        size_t want = n - off < sizeof buf ? (size_t)(n - off) : sizeof buf;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got <= 0) return false;
        llc_sha256_update(sha, buf, (size_t)got);
        off += (uint64_t)got;
    }
    return true;
}

/* Downloads m into the incomplete file (resuming), checks it and renames it to blob. Called with the
 * blob's lock held. */
static bool download_blob(ctx *c, const char *path, const file_meta *m, const char *blob, llamac_error *err) {
    char inc[1700];
    if (!pathf(inc, sizeof inc, "%s.incomplete", blob)) return llc_fail(err, "path too long: %.200s", blob);
    int fd = open(inc, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return llc_fail(err, "cannot write %s: %s", inc, strerror(errno));
    struct stat st;
    uint64_t have = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (have > m->size && ftruncate(fd, 0) == 0) have = 0;
    if (have > m->size) {
        close(fd);
        return llc_fail(err, "cannot truncate %s: %s", inc, strerror(errno));
    }
    char dir[1600];
    snprintf(dir, sizeof dir, "%s", blob);
    *strrchr(dir, '/') = 0;
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize, need = m->size - have;
        if (need > avail) {
            close(fd);
            return llc_fail(err, "%s: not enough disk space: %" PRIu64 " MiB to download, %" PRIu64 " MiB free in %s", path,
                            need >> 20, avail >> 20, dir);
        }
    }
    if (c->o->progress) c->o->progress(c->o->user, LLC_HUB_FILE_START, path, have, m->size, NULL);
    char url[URL_MAX];
    snprintf(url, sizeof url, "%s", m->url);
    bool ok = false;
    sink s = {.to_file = true, .fd = fd, .size = m->size, .o = c->o, .file = path};
    for (int attempt = 0, hops = 0;;) {
        s.started = s.bad_range = s.overflow = false;
        s.write_errno = 0;
        s.done = s.from = have;
        llc_sha256_init(&s.sha);
        if (m->lfs && !hash_prefix(fd, have, &s.sha)) {
            llc_fail(err, "cannot read %s: %s", inc, strerror(errno));
            break;
        }
        resp r = {.status = 0};
        CURLcode rc = have == m->size ? CURLE_OK : perform(c, false, url, have, &s, &r);
        if (have == m->size) r.status = 200; /* an earlier run got every byte: only the check is left */
        have = s.done;
        if (s.write_errno) {
            llc_fail(err, "%s: cannot write %s: %s", path, inc, strerror(s.write_errno));
            break;
        }
        if (s.overflow) {
            llc_fail(err, "%s: the server sent more than the %" PRIu64 " bytes the hub announced", path, m->size);
            break;
        }
        if (rc == CURLE_OK && r.status >= 300 && r.status < 400 && r.location[0]) {
            char next[URL_MAX];
            if (hops++ >= MAX_REDIRECTS || !resolve_location(url, r.location, next, sizeof next)) {
                llc_fail(err, "%s: a bad redirect or too many", path);
                break;
            }
            memcpy(url, next, sizeof url);
            continue;
        }
        if (rc == CURLE_OK && r.status == 206 && s.started) {
            /* the part must start where the file ends: "bytes FROM-TO/SIZE" */
            unsigned long long from = 0, to = 0, total = 0;
            if (sscanf(r.content_range, "bytes %llu-%llu/%llu", &from, &to, &total) != 3 || from != s.from || total != m->size) {
                llc_fail(err, "%s: the server answered a range request with the wrong part (%s)", path, r.content_range);
                break;
            }
        }
        if (rc == CURLE_OK && (r.status == 200 || r.status == 206) && have == m->size) {
            ok = true;
            break;
        }
        char why[300];
        if (rc != CURLE_OK) snprintf(why, sizeof why, "%s", curl_easy_strerror(rc));
        else if (r.status == 200 || r.status == 206) snprintf(why, sizeof why, "the connection ended after %" PRIu64 " of %" PRIu64 " bytes", have, m->size);
        else snprintf(why, sizeof why, "HTTP %ld", r.status);
        if (rc == CURLE_OK && r.status == 416) {
            /* the incomplete file does not fit the blob any more: start it over */
            if (ftruncate(fd, 0) != 0) break;
            have = 0;
        } else if (rc == CURLE_OK && r.status >= 400 && r.status != 429 && r.status < 500) {
            http_error(c, &r, path, err);
            break;
        } else if (rc != CURLE_OK && !transient(rc)) {
            llc_fail(err, "%s: %s", path, why);
            break;
        }
        if (!backoff(c, attempt++, path, &r, why, err)) break;
    }
    if (ok && m->lfs) {
        uint8_t d[32];
        char hex[65];
        llc_sha256_final(&s.sha, d);
        llc_sha256_hex(d, hex);
        if (strcasecmp(hex, m->etag)) {
            close(fd);
            unlink(inc);
            return llc_fail(err, "%s: the download's sha256 is %s, the hub says %s; the corrupt file was deleted", path, hex,
                            m->etag);
        }
    }
    if (ok && (fstat(fd, &st) != 0 || (uint64_t)st.st_size != m->size)) {
        close(fd);
        unlink(inc);
        return llc_fail(err, "%s: the download has the wrong size; the file was deleted", path);
    }
    if (ok && fsync(fd) != 0) ok = llc_fail(err, "%s: cannot write %s: %s", path, inc, strerror(errno));
    close(fd);
    if (ok && rename(inc, blob) != 0) ok = llc_fail(err, "%s: cannot rename %s: %s", path, inc, strerror(errno));
    return ok;
}

/* One file of the snapshot: already there, or its blob already there, or downloaded under the blob's lock. */
static bool fetch_file(ctx *c, const char *commit, const char *path, llamac_error *err) {
    char pointer[2600], blob[1600], lock[1600], target[2 * LLC_HUB_PATH_MAX + 200];
    snprintf(pointer, sizeof pointer, "%s/snapshots/%s/%s", c->repo_dir, commit, path);
    struct stat st;
    if (stat(pointer, &st) == 0 && S_ISREG(st.st_mode)) {
        if (c->o->progress) c->o->progress(c->o->user, LLC_HUB_FILE_CACHED, path, (uint64_t)st.st_size, (uint64_t)st.st_size, NULL);
        return true;
    }
    file_meta m;
    if (!head_file(c, commit, path, &m, err)) return false;
    if (strcmp(m.commit, commit))
        return llc_fail(err, "%s: the hub answered for commit %s, not %s", path, m.commit, commit);
    snprintf(blob, sizeof blob, "%s/blobs/%s", c->repo_dir, m.etag);
    snprintf(lock, sizeof lock, "%s/%s.lock", c->locks_dir, m.etag);
    if (!mkdirs(c->locks_dir, err)) return false;
    char blobs[1500];
    snprintf(blobs, sizeof blobs, "%s/blobs", c->repo_dir);
    if (!mkdirs(blobs, err)) return false;
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) return llc_fail(err, "cannot open the lock %s: %s", lock, strerror(errno));
    /* another llamac or huggingface_hub downloading the same blob holds it; we wait, then find the blob */
    while (flock(lfd, LOCK_EX) != 0)
        if (errno != EINTR) {
            close(lfd);
            return llc_fail(err, "cannot lock %s: %s", lock, strerror(errno));
        }
    bool ok = true;
    if (stat(blob, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == m.size) {
        if (c->o->progress) c->o->progress(c->o->user, LLC_HUB_FILE_CACHED, path, m.size, m.size, NULL);
    } else {
        ok = download_blob(c, path, &m, blob, err);
        if (ok && c->o->progress) c->o->progress(c->o->user, LLC_HUB_FILE_DONE, path, m.size, m.size, NULL);
    }
    close(lfd);
    if (!ok) return false;
    /* snapshots/COMMIT/a/b/file -> ../../../blobs/ETAG: two levels plus one per folder */
    size_t t = 0;
    for (const char *p = path; (p = strchr(p, '/')); p++) t += (size_t)snprintf(target + t, sizeof target - t, "../");
    snprintf(target + t, sizeof target - t, "../../blobs/%s", m.etag);
    return symlink_atomic(target, pointer, err);
}

/* ---- the cache alone ---------------------------------------------------------------------------- */

static bool init_ctx(ctx *c, const llc_hub_id *id, const llc_hub_opts *o, llamac_error *err) {
    memset(c, 0, sizeof *c);
    c->o = o, c->id = id;
    c->revision = o->revision && o->revision[0] ? o->revision : "main";
    if (!llc_hub_safe_revision(c->revision)) return llc_fail(err, "--revision '%.100s' is not a branch, tag or commit name", c->revision);
    snprintf(c->repo_dir, sizeof c->repo_dir, "%s/models--%s--%s", o->cache, id->org, id->name);
    snprintf(c->locks_dir, sizeof c->locks_dir, "%s/.locks/models--%s--%s", o->cache, id->org, id->name);
    return true;
}

/* The commit a revision names in the cache (refs/REVISION, or the revision if it is a cached commit). */
static bool cached_commit(ctx *c, char commit[41], llamac_error *err) {
    char path[1800];
    struct stat st;
    if (is_hex_n(c->revision, 40)) {
        snprintf(path, sizeof path, "%s/snapshots/%s", c->repo_dir, c->revision);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return snprintf(commit, 41, "%s", c->revision), true;
    }
    snprintf(path, sizeof path, "%s/refs/%s", c->repo_dir, c->revision);
    FILE *f = fopen(path, "r");
    char buf[64] = "";
    if (f) {
        if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
        fclose(f);
    }
    for (size_t n = strlen(buf); n && isspace((unsigned char)buf[n - 1]);) buf[--n] = 0;
    if (!f || !is_hex_n(buf, 40))
        return llc_fail(err, "%s%s%s is not in the Hugging Face cache (%s); `llamac pull %s%s%s` fetches it", c->id->repo,
                        strcmp(c->revision, "main") ? " at " : "", strcmp(c->revision, "main") ? c->revision : "", c->o->cache,
                        c->id->repo, c->id->quant[0] ? ":" : "", c->id->quant);
    snprintf(path, sizeof path, "%s/snapshots/%s", c->repo_dir, buf);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return llc_fail(err, "%s: refs/%s names commit %s, which has no snapshot in %s; `llamac pull %s` fetches it",
                        c->id->repo, c->revision, buf, c->o->cache, c->id->repo);
    memcpy(commit, buf, 41);
    return true;
}

typedef struct file_list {
    int n, cap;
    char **files;
} file_list;

static void list_free(file_list *l) {
    for (int i = 0; i < l->n; i++) free(l->files[i]);
    free(l->files);
}

/* The files under a snapshot (links whose blob exists), as relative paths. */
static bool walk(const char *root, const char *rel, int depth, file_list *l, llamac_error *err) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d) return llc_fail(err, "cannot read %s: %s", dir, strerror(errno));
    bool ok = true;
    for (struct dirent *e; ok && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[LLC_HUB_PATH_MAX + 300], full[4500];
        if ((size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name) > LLC_HUB_PATH_MAX) continue;
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (stat(full, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 16) ok = walk(root, sub, depth + 1, l, err);
        } else if (S_ISREG(st.st_mode) && llc_hub_safe_path(sub)) {
            if (l->n == MAX_SNAPSHOT_FILES) ok = llc_fail(err, "%s: more than %d files", root, MAX_SNAPSHOT_FILES);
            else if (l->n == l->cap) {
                int cap = l->cap ? 2 * l->cap : 64;
                char **f = realloc(l->files, (size_t)cap * sizeof *f);
                if (!f) ok = llc_fail(err, "out of memory");
                else l->files = f, l->cap = cap;
            }
            if (ok && !(l->files[l->n++] = strdup(sub))) ok = llc_fail(err, "out of memory");
        }
    }
    closedir(d);
    return ok;
}

static bool has_model_gguf(int n, char *const *files) {
    for (int i = 0; i < n; i++) {
        size_t len = strlen(files[i]);
        const char *b = strrchr(files[i], '/');
        if (len > 5 && !strcasecmp(files[i] + len - 5, ".gguf") && !strcasestr(b ? b + 1 : files[i], "mmproj")) return true;
    }
    return false;
}

/* The path -m opens: the main GGUF, or the snapshot folder (its original/ when only a Meta checkpoint is there). */
static bool output_path(const char *snap, int n, char *const *files, int main, char *out, size_t cap, llamac_error *err) {
    int w;
    if (main >= 0) {
        w = snprintf(out, cap, "%s/%s", snap, files[main]);
    } else {
        char a[4200], b[4200];
        struct stat st;
        snprintf(a, sizeof a, "%s/config.json", snap);
        snprintf(b, sizeof b, "%s/original/params.json", snap);
        bool meta = stat(a, &st) != 0 && stat(b, &st) == 0;
        w = snprintf(out, cap, "%s%s", snap, meta ? "/original" : "");
    }
    (void)n;
    if (w < 0 || (size_t)w >= cap) return llc_fail(err, "the cached model's path is too long");
    return true;
}

static bool resolve_ctx(ctx *c, char *out, size_t cap, llamac_error *err) {
    char commit[41], snap[1600];
    if (!cached_commit(c, commit, err)) return false;
    snprintf(snap, sizeof snap, "%s/snapshots/%s", c->repo_dir, commit);
    file_list l = {0};
    bool ok = walk(snap, "", 0, &l, err);
    int main = -1;
    if (ok && (c->id->quant[0] || has_model_gguf(l.n, l.files) || c->o->filter.n_include)) {
        bool *pick = calloc((size_t)l.n + 1, sizeof *pick);
        llc_hub_filter f = c->o->filter;
        f.quant = c->id->quant;
        ok = pick ? llc_hub_select(l.n, l.files, &f, pick, &main, err) : llc_fail(err, "out of memory");
        if (!ok) llc_error_prefix(err, "%s in the cache (%s)", c->id->repo, snap);
        free(pick);
    }
    if (ok) ok = output_path(snap, l.n, l.files, main, out, cap, err);
    list_free(&l);
    return ok;
}

bool llc_hub_resolve(const llc_hub_id *id, const llc_hub_opts *o, char *out, size_t cap, llamac_error *err) {
    ctx c;
    return init_ctx(&c, id, o, err) && resolve_ctx(&c, out, cap, err);
}

bool llc_hub_pull(const llc_hub_id *id, const llc_hub_opts *o, char *out, size_t cap, llamac_error *err) {
    ctx c;
    if (!init_ctx(&c, id, o, err)) return false;
    if (o->offline) {
        if (!resolve_ctx(&c, out, cap, err)) return llc_error_prefix(err, "HF_HUB_OFFLINE is set"), false;
        return true;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return llc_fail(err, "cannot initialize libcurl");
    if (!(c.h = curl_easy_init())) return llc_fail(err, "cannot initialize libcurl");
    llc_hub_listing l;
    bool ok = get_listing(&c, &l, err);
    if (!ok) {
        curl_easy_cleanup(c.h);
        return false;
    }
    bool *pick = calloc((size_t)l.n + 1, sizeof *pick);
    int main = -1;
    llc_hub_filter f = o->filter;
    f.quant = id->quant;
    ok = pick ? llc_hub_select(l.n, l.files, &f, pick, &main, err) : llc_fail(err, "out of memory");
    if (!ok) llc_error_prefix(err, "%s", id->repo);
    for (int i = 0; ok && i < l.n; i++)
        if (pick[i]) ok = fetch_file(&c, l.sha, l.files[i], err);
    /* the ref moves only once the snapshot is whole, so an offline run never finds half a model */
    char ref[1800], snap[1600];
    snprintf(ref, sizeof ref, "%s/refs/%s", c.repo_dir, c.revision);
    if (ok && strcmp(c.revision, l.sha)) ok = write_atomic(ref, l.sha, err);
    snprintf(snap, sizeof snap, "%s/snapshots/%s", c.repo_dir, l.sha);
    if (ok) ok = output_path(snap, l.n, l.files, main, out, cap, err);
    free(pick);
    llc_hub_listing_free(&l);
    curl_easy_cleanup(c.h);
    return ok;
}
