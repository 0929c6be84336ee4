#ifndef LLC_ZIP_H
#define LLC_ZIP_H
/*
 * Zip archives of PyTorch checkpoints: a reader over bytes already in memory (a mapped file), and a
 * writer of the same layout.
 *
 * torch.save writes a zip of uncompressed (STORED) entries whose data it pads, through an extra field
 * in the local header, to start at a multiple of 64 bytes. So a stored entry is used in place: the
 * reader hands out a pointer into the mapping and never copies or inflates anything. Compressed or
 * encrypted entries are refused.
 *
 * Every number in the archive is untrusted: the end records (classic and zip64), each central
 * directory entry, its zip64 extra field and its local header are checked against the file size, and
 * entries may overlap neither each other nor the central directory.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "llamac.h"

typedef struct llc_zip_entry {
    const char *name;      /* name_len bytes inside the central directory, not NUL-terminated */
    uint32_t name_len;
    uint32_t crc32;        /* as recorded in the central directory */
    const uint8_t *data;   /* the stored bytes, inside the buffer given to llc_zip_open */
    uint64_t size;
    uint64_t header_offset;/* of the local header, from the start of the archive */
} llc_zip_entry;

typedef struct llc_zip {
    llc_zip_entry *entries; /* sorted by name (bytewise); names are unique */
    size_t n_entries;
} llc_zip;

/* Reads the directory of the zip archive data[0..size). path only names the file in messages. On
 * failure err says what is wrong, prefixed with path; nothing needs freeing. */
bool llc_zip_open(llc_zip *z, const uint8_t *data, size_t size, const char *path, llamac_error *err);
void llc_zip_close(llc_zip *z);
/* The entry named exactly name[0..len), or NULL. */
const llc_zip_entry *llc_zip_find(const llc_zip *z, const char *name, size_t len);
/* CRC-32 (the zip/IEEE polynomial), continued from crc (0 to start). */
uint32_t llc_crc32(uint32_t crc, const void *data, size_t n);

/* ---- writer ---------------------------------------------------------------------------------------- */

/* Writes an archive as torch (miniz) does: STORED entries whose data starts on a 64-byte boundary
 * thanks to a padding extra field ("FB") in the local header, zip64 fields where a size or offset
 * needs them, zip64 end records followed by the classic one, and a fixed date, so the same entries
 * give the same bytes. Set f (positioned at the start) and path (for messages); zero the rest. */
typedef struct llc_zip_writer {
    FILE *f;
    const char *path;
    uint64_t pos;
    struct llc_zip_rec *recs;
    size_t n, cap;
} llc_zip_writer;
/* Adds an entry (name shorter than 96 bytes). */
bool llc_zip_add(llc_zip_writer *w, const char *name, const void *data, uint64_t size, llamac_error *err);
/* Writes the central directory and the end records. */
bool llc_zip_finish(llc_zip_writer *w, llamac_error *err);
/* Frees what the writer holds (after llc_zip_finish or on failure). */
void llc_zip_writer_free(llc_zip_writer *w);

#endif
