#include "base/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"

static const char *kind_of(mode_t m) {
    return S_ISDIR(m) ? "a folder" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : S_ISLNK(m) ? "a symbolic link"
         : S_ISREG(m) ? "a regular file" : "not a regular file";
}

/* ---- temporary files a signal handler must remove ------------------------------------------------ */

/* A few slots are plenty (the CLI writes one file at a time); an outfile that finds none is still
 * removed on errors, just not on signals. */
enum { N_SLOTS = 8, SLOT_FREE = 0, SLOT_FILLING, SLOT_LIVE };
static char slot_path[N_SLOTS][PATH_MAX];
static atomic_int slot_state[N_SLOTS];

static int slot_add(const char *tmp) {
    if (strlen(tmp) >= PATH_MAX) return -1;
    for (int i = 0; i < N_SLOTS; i++) {
        int expect = SLOT_FREE;
        if (atomic_compare_exchange_strong(&slot_state[i], &expect, SLOT_FILLING)) {
            strcpy(slot_path[i], tmp);
            atomic_store(&slot_state[i], SLOT_LIVE);
            return i;
        }
    }
    return -1;
}

void llc_outfile_remove_pending(void) {
    for (int i = 0; i < N_SLOTS; i++)
        if (atomic_load(&slot_state[i]) == SLOT_LIVE) unlink(slot_path[i]);
}

/* Creating or removing a temporary file and (un)registering it happen with signals blocked, so a
 * handler never sees a live file unregistered nor unlinks a name that is no longer ours. */
static void block_signals(sigset_t *old) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, old);
}

static void restore_signals(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }

/* ---- checks ------------------------------------------------------------------------------------------ */

/* The folder a new entry named path goes in: exists, is a folder, and may be written. */
static bool parent_writable(const char *shown, const char *path, llamac_error *err) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    while (n > 0 && path[n - 1] != '/') n--;
    while (n > 1 && path[n - 1] == '/') n--;
    char *dir = n ? strndup(path, n) : strdup(".");
    if (!dir) return llc_fail(err, "out of memory");
    struct stat st;
    bool ok = true;
    if (stat(dir, &st) != 0) ok = llc_fail(err, "%s: cannot create it: %s: %s", shown, dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode)) ok = llc_fail(err, "%s: cannot create it: %s is not a folder", shown, dir);
    else if (access(dir, W_OK | X_OK) != 0) ok = llc_fail(err, "%s: cannot create it in %s: %s", shown, dir, strerror(errno));
    free(dir);
    return ok;
}

/* Where the output file lands: path itself, or the regular file a symbolic link leads to. */
static bool resolve(const char *path, char **target, llamac_error *err) {
    *target = NULL;
    size_t n = strlen(path);
    if (n == 0) return llc_fail(err, "the output path is empty");
    if (path[n - 1] == '/') return llc_fail(err, "%s: names a folder, not a file", path);
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT) return llc_fail(err, "%s: %s", path, strerror(errno));
        if (!parent_writable(path, path, err)) return false;
        *target = strdup(path);
    } else if (S_ISLNK(st.st_mode)) {
        if (stat(path, &st) != 0)
            return llc_fail(err, "%s: a symbolic link that leads nowhere (%s); not writing through it", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
            return llc_fail(err, "%s: a symbolic link to %s, not a regular file; refusing to replace it", path, kind_of(st.st_mode));
        if (!(*target = realpath(path, NULL))) return llc_fail(err, "%s: %s", path, strerror(errno));
        if (!parent_writable(path, *target, err)) {
            free(*target);
            *target = NULL;
            return false;
        }
        return true;
    } else if (!S_ISREG(st.st_mode)) {
        return llc_fail(err, "%s: exists and is %s, not a regular file; refusing to replace it", path, kind_of(st.st_mode));
    } else {
        if (!parent_writable(path, path, err)) return false;
        *target = strdup(path);
    }
    return *target ? true : llc_fail(err, "out of memory");
}

bool llc_outfile_check(const char *path, llamac_error *err) {
    char *target;
    if (!resolve(path, &target, err)) return false;
    free(target);
    return true;
}

bool llc_outdir_prepare(const char *dir, bool create, llamac_error *err) {
    if (!*dir) return llc_fail(err, "the output folder path is empty");
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return llc_fail(err, "%s: exists and is %s, not a folder; refusing to replace it", dir, kind_of(st.st_mode));
        if (access(dir, W_OK | X_OK) != 0) return llc_fail(err, "%s: cannot write in it: %s", dir, strerror(errno));
        return true;
    }
    if (errno != ENOENT) return llc_fail(err, "%s: %s", dir, strerror(errno));
    if (lstat(dir, &st) == 0) return llc_fail(err, "%s: a symbolic link that leads nowhere; not writing through it", dir);
    if (!parent_writable(dir, dir, err)) return false;
    if (create && mkdir(dir, 0777) != 0) return llc_fail(err, "%s: cannot create the folder: %s", dir, strerror(errno));
    return true;
}

/* ---- writing ----------------------------------------------------------------------------------------- */

/* Eight letters or digits nobody can predict, so no other user can occupy the name in advance (O_EXCL
 * would make that a failure, not a hijack). */
static void random_suffix(char out[9]) {
    static const char az[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static atomic_uint counter;
    uint8_t b[8];
    if (getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 16) ^ atomic_fetch_add(&counter, 1);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        memcpy(b, &z, sizeof b);
    }
    for (int i = 0; i < 8; i++) out[i] = az[b[i] % 62];
    out[8] = 0;
}

static void release(llc_outfile *o) {
    free(o->target);
    free(o->tmp);
    o->target = o->tmp = NULL;
    o->f = NULL;
    o->slot = -1;
}

bool llc_outfile_open(llc_outfile *o, const char *path, llamac_error *err) {
    *o = (llc_outfile){.name = path, .slot = -1};
    if (!resolve(path, &o->target, err)) return false;
    size_t cap = strlen(o->target) + sizeof ".12345678.tmp";
    if (!(o->tmp = malloc(cap))) {
        release(o);
        return llc_fail(err, "out of memory");
    }
    int fd = -1, e = 0;
    sigset_t old;
    block_signals(&old);
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        char sfx[9];
        random_suffix(sfx);
        snprintf(o->tmp, cap, "%s.%s.tmp", o->target, sfx);
        /* 0666: the kernel applies the umask (and a default ACL), as for any new file */
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        e = errno;
        if (fd < 0 && e != EEXIST) break;
    }
    if (fd >= 0) {
        o->slot = slot_add(o->tmp);
        if (!(o->f = fdopen(fd, "wb"))) {
            e = errno;
            if (o->slot >= 0) atomic_store(&slot_state[o->slot], SLOT_FREE);
            close(fd);
            unlink(o->tmp);
        }
    }
    restore_signals(&old);
    if (!o->f) {
        release(o);
        return llc_fail(err, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    return true;
}

void llc_outfile_abort(llc_outfile *o) {
    if (!o || !o->tmp) return;
    sigset_t old;
    block_signals(&old);
    if (o->f) fclose(o->f);
    unlink(o->tmp);
    if (o->slot >= 0) atomic_store(&slot_state[o->slot], SLOT_FREE);
    restore_signals(&old);
    release(o);
}

bool llc_outfile_commit(llc_outfile *o, llamac_error *err) {
    int e = 0;
    if (fflush(o->f) != 0 || ferror(o->f)) e = errno ? errno : EIO;
    /* synced before the rename, so a crash leaves the old file or the new one, never an empty one */
    else if (fsync(fileno(o->f)) != 0 && errno != EINVAL && errno != ENOTSUP) e = errno;
    if (fclose(o->f) != 0 && !e) e = errno;
    o->f = NULL;
    if (e) {
        llc_fail(err, "%s: write failed: %s", o->name, strerror(e));
        llc_outfile_abort(o);
        return false;
    }
    /* checked again: something else may have taken the name while the file was being written */
    struct stat st;
    if (lstat(o->target, &st) == 0 && !S_ISREG(st.st_mode)) {
        llc_fail(err, "%s: became %s while it was being written; refusing to replace it", o->name, kind_of(st.st_mode));
        llc_outfile_abort(o);
        return false;
    }
    sigset_t old;
    block_signals(&old);
    bool ok = rename(o->tmp, o->target) == 0;
    e = errno;
    if (!ok) unlink(o->tmp);
    if (o->slot >= 0) atomic_store(&slot_state[o->slot], SLOT_FREE);
    restore_signals(&old);
    if (!ok) llc_fail(err, "%s: cannot replace it: %s", o->name, strerror(e));
    release(o);
    return ok;
}

bool llc_outfile_finish(llc_outfile *o, bool ok, llamac_error *err) {
    if (ok) return llc_outfile_commit(o, err);
    llc_outfile_abort(o);
    return false;
}

bool llc_copy_file(const char *from, const char *to, llamac_error *err) {
    FILE *in = fopen(from, "rb");
    if (!in) return llc_fail(err, "%s: %s", from, strerror(errno));
    llc_outfile o;
    if (!llc_outfile_open(&o, to, err)) {
        fclose(in);
        return false;
    }
    char buf[1 << 16];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, o.f) == n;
    if (ferror(in)) ok = false;
    fclose(in);
    if (!ok) llc_fail(err, "%s: copying %s failed", to, from);
    return llc_outfile_finish(&o, ok, err);
}
