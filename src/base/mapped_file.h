#ifndef LLC_MAPPED_FILE_H
#define LLC_MAPPED_FILE_H
#include <stddef.h>
#include <stdint.h>
#include "llamac.h"

/* A whole file mapped read-only. Model weights are used in place from here, never copied. */
typedef struct llc_mapped_file {
    const uint8_t *data;
    size_t size;
    int owns_map; /* 1: munmap on close; 0: borrowed memory (tests, fuzzing) */
    /* The mapped file's identity when it was opened (owns_map only): what a cache made from it is
     * checked against (model/pack_cache.c). */
    uint64_t dev, ino;
    int64_t mtime_ns;
} llc_mapped_file;

/* Opens a regular file for reading. FIFOs, devices and directories are refused up front: opening a
 * FIFO would block forever waiting for a writer. Returns the descriptor or -1. */
int llc_open_regular(const char *path, llamac_error *err);
/* Reads up to n leading bytes of a regular file (format sniffing); *got receives the count. */
bool llc_read_head(const char *path, void *buf, size_t n, size_t *got, llamac_error *err);
bool llc_map_file(llc_mapped_file *f, const char *path, llamac_error *err);
void llc_unmap_file(llc_mapped_file *f);
/* Reads a whole (small) file into a malloc'ed, NUL-terminated buffer; refuses files over max_size. */
char *llc_read_file(const char *path, size_t max_size, size_t *size_out, llamac_error *err);

#endif
