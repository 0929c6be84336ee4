#include "base/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

int llc_open_regular(const char *path, llamac_error *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        llc_fail(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int stat_failed = fstat(fd, &st) != 0;
    if (stat_failed || !S_ISREG(st.st_mode)) {
        int e = stat_failed ? errno : 0; /* errno is stale when fstat succeeded */
        bool is_dir = e == 0 && S_ISDIR(st.st_mode);
        close(fd);
        if (e) llc_fail(err, "%s: %s", path, strerror(e));
        else llc_fail(err, "%s: %s", path, is_dir ? "is a directory" : "not a regular file");
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

bool llc_read_head(const char *path, void *buf, size_t n, size_t *got, llamac_error *err) {
    int fd = llc_open_regular(path, err);
    if (fd < 0) return false;
    ssize_t r = read(fd, buf, n);
    int e = errno;
    close(fd);
    if (r < 0) return llc_fail(err, "%s: %s", path, strerror(e));
    *got = (size_t)r;
    return true;
}

bool llc_map_file(llc_mapped_file *f, const char *path, llamac_error *err) {
    memset(f, 0, sizeof *f);
    int fd = llc_open_regular(path, err);
    if (fd < 0) return false;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return llc_fail(err, "%s: %s", path, strerror(e));
    }
    if (st.st_size == 0) {
        close(fd);
        return llc_fail(err, "%s: file is empty", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return llc_fail(err, "%s: mmap failed: %s", path, strerror(e));
    f->data = p;
    f->size = (size_t)st.st_size;
    f->owns_map = 1;
    f->dev = (uint64_t)st.st_dev;
    f->ino = (uint64_t)st.st_ino;
    f->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return true;
}

void llc_unmap_file(llc_mapped_file *f) {
    if (f->owns_map && f->data) munmap((void *)f->data, f->size);
    memset(f, 0, sizeof *f);
}

char *llc_read_file(const char *path, size_t max_size, size_t *size_out, llamac_error *err) {
    int fd = llc_open_regular(path, err);
    if (fd < 0) return NULL;
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        close(fd);
        llc_fail(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        llc_fail(err, "%s: cannot seek", path);
        return NULL;
    }
    long n = ftell(fp);
    if (n < 0 || (unsigned long)n > max_size) {
        fclose(fp);
        llc_fail(err, "%s: file too large (%ld bytes, limit %zu)", path, n, max_size);
        return NULL;
    }
    rewind(fp);
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(fp);
        llc_fail(err, "%s: out of memory", path);
        return NULL;
    }
    size_t got = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    if (got != (size_t)n) {
        free(buf);
        llc_fail(err, "%s: short read", path);
        return NULL;
    }
    buf[n] = 0;
    if (size_out) *size_out = (size_t)n;
    return buf;
}
