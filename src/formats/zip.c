/*
 * Zip directory reader (see zip.h). Layout from PKWARE's APPNOTE.TXT: local headers and their data,
 * then the central directory (one record per entry), then, for zip64 archives, the zip64 end record
 * and its locator, then the classic end record, optionally followed by a comment of up to 64 KiB.
 */
#include "formats/zip.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

enum {
    SIG_LOCAL = 0x04034b50,
    SIG_CENTRAL = 0x02014b50,
    SIG_END = 0x06054b50,
    SIG_END64 = 0x06064b50,
    SIG_LOCATOR64 = 0x07064b50,
    LOCAL_SIZE = 30,
    CENTRAL_SIZE = 46,
    END_SIZE = 22,
    END64_SIZE = 56,
    LOCATOR64_SIZE = 20,
    /* A checkpoint has one entry per storage (a few thousand for the largest models). */
    MAX_ENTRIES = 1 << 20,
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

uint32_t llc_crc32(uint32_t crc, const void *data, size_t n) {
    /* The 256-entry table is rebuilt per call: 2 K operations, nothing next to hashing a tensor, and
     * no shared state to initialise. */
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static int cmp_name(const void *a, const void *b) {
    const llc_zip_entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

static int cmp_offset(const void *a, const void *b) {
    const llc_zip_entry *x = a, *y = b;
    return x->header_offset < y->header_offset ? -1 : x->header_offset > y->header_offset;
}

/* The end of central directory record: the last 22 + up to 65535 (comment) bytes are searched, and
 * the record must end the file exactly (its comment length accounts for every byte after it). */
static bool find_end(const uint8_t *d, size_t size, size_t *pos) {
    if (size < END_SIZE) return false;
    size_t lo = size - END_SIZE > 65535 ? size - END_SIZE - 65535 : 0;
    for (size_t p = size - END_SIZE + 1; p-- > lo;) {
        if (rd32(d + p) == SIG_END && p + END_SIZE + rd16(d + p + 20) == size) {
            *pos = p;
            return true;
        }
    }
    return false;
}

typedef struct dir_info {
    uint64_t n_entries, cd_offset, cd_size;
    uint64_t limit; /* the central directory must end here: the zip64 end record, or the end record */
} dir_info;

static bool read_end_records(const uint8_t *d, size_t size, const char *path, dir_info *di, llamac_error *err) {
    size_t end;
    if (!find_end(d, size, &end)) return llc_fail(err, "%s: not a zip archive (no end of central directory record)", path);
    const uint8_t *e = d + end;
    uint16_t disk = rd16(e + 4), cd_disk = rd16(e + 6), n_disk = rd16(e + 8), n_total = rd16(e + 10);
    uint32_t cd_size = rd32(e + 12), cd_off = rd32(e + 16);
    di->n_entries = n_total;
    di->cd_size = cd_size;
    di->cd_offset = cd_off;
    di->limit = end;
    bool has_locator = end >= LOCATOR64_SIZE && rd32(d + end - LOCATOR64_SIZE) == SIG_LOCATOR64;
    bool wants_zip64 = n_total == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu;
    if (!has_locator) {
        if (wants_zip64) return llc_fail(err, "%s: zip end record needs zip64 values but there is no zip64 end record", path);
        if (disk != 0 || cd_disk != 0 || n_disk != n_total) return llc_fail(err, "%s: multi-part zip archives are not supported", path);
        return true;
    }
    const uint8_t *loc = d + end - LOCATOR64_SIZE;
    uint64_t off64 = rd64(loc + 8);
    uint32_t loc_disk = rd32(loc + 4), n_disks = rd32(loc + 16);
    uint64_t loc_pos = end - LOCATOR64_SIZE;
    if (loc_disk != 0 || n_disks > 1) return llc_fail(err, "%s: multi-part zip archives are not supported", path);
    if (off64 > loc_pos || loc_pos - off64 < END64_SIZE)
        return llc_fail(err, "%s: zip64 end record offset %" PRIu64 " lies outside the file", path, off64);
    const uint8_t *z = d + off64;
    if (rd32(z) != SIG_END64) return llc_fail(err, "%s: no zip64 end record where the zip64 locator points", path);
    uint64_t rec_size = rd64(z + 4);
    if (rec_size < END64_SIZE - 12 || rec_size > loc_pos - off64 - 12)
        return llc_fail(err, "%s: zip64 end record claims %" PRIu64 " bytes, past the zip64 locator", path, rec_size);
    uint32_t disk64 = rd32(z + 16), cd_disk64 = rd32(z + 20);
    uint64_t n_disk64 = rd64(z + 24), n_total64 = rd64(z + 32), cd_size64 = rd64(z + 40), cd_off64 = rd64(z + 48);
    if (disk64 != 0 || cd_disk64 != 0 || n_disk64 != n_total64) return llc_fail(err, "%s: multi-part zip archives are not supported", path);
    /* Where the classic record holds a real value (not the 0xFF.. "see zip64" marker), both must agree. */
    if ((n_total != 0xFFFF && n_total != n_total64) || (cd_size != 0xFFFFFFFFu && cd_size != cd_size64) ||
        (cd_off != 0xFFFFFFFFu && cd_off != cd_off64))
        return llc_fail(err, "%s: zip64 end record contradicts the end of central directory record", path);
    di->n_entries = n_total64;
    di->cd_size = cd_size64;
    di->cd_offset = cd_off64;
    di->limit = off64;
    return true;
}

/* The zip64 extra field (id 1) of a central directory entry holds, in this order and only for the
 * 32-bit fields that are 0xFFFFFFFF, the 64-bit uncompressed size, compressed size and local header
 * offset. */
static bool apply_zip64_extra(const uint8_t *x, uint32_t xlen, uint64_t *usize, uint64_t *csize, uint64_t *off,
                              const char *path, const char *name, llamac_error *err) {
    bool need_u = *usize == 0xFFFFFFFFu, need_c = *csize == 0xFFFFFFFFu, need_o = *off == 0xFFFFFFFFu;
    bool found = false;
    uint32_t i = 0;
    while (xlen - i >= 4) {
        uint16_t id = rd16(x + i), len = rd16(x + i + 2);
        if (len > xlen - i - 4) return llc_fail(err, "%s: zip entry %s has an extra field running past its end", path, name);
        if (id == 1 && !found) {
            found = true;
            const uint8_t *f = x + i + 4;
            uint32_t need = 8u * ((uint32_t)need_u + (uint32_t)need_c + (uint32_t)need_o);
            if (len < need) return llc_fail(err, "%s: zip64 extra field of entry %s is too short (%u bytes)", path, name, (unsigned)len);
            if (need_u) *usize = rd64(f), f += 8;
            if (need_c) *csize = rd64(f), f += 8;
            if (need_o) *off = rd64(f);
        }
        i += 4u + len;
    }
    if ((need_u || need_c || need_o) && !found)
        return llc_fail(err, "%s: zip entry %s has a 0xFFFFFFFF size or offset but no zip64 extra field", path, name);
    return true;
}

bool llc_zip_open(llc_zip *z, const uint8_t *d, size_t size, const char *path, llamac_error *err) {
    memset(z, 0, sizeof *z);
    dir_info di = {0};
    if (!read_end_records(d, size, path, &di, err)) return false;
    if (di.cd_offset > di.limit || di.cd_size > di.limit - di.cd_offset)
        return llc_fail(err, "%s: zip central directory (offset %" PRIu64 ", %" PRIu64 " bytes) lies outside the file", path,
                        di.cd_offset, di.cd_size);
    if (di.n_entries > MAX_ENTRIES) return llc_fail(err, "%s: zip archive claims %" PRIu64 " entries", path, di.n_entries);
    if (di.n_entries * CENTRAL_SIZE > di.cd_size)
        return llc_fail(err, "%s: zip central directory of %" PRIu64 " bytes cannot hold %" PRIu64 " entries", path, di.cd_size,
                        di.n_entries);
    if (di.n_entries == 0) return llc_fail(err, "%s: zip archive is empty", path);
    llc_zip_entry *ents = calloc((size_t)di.n_entries, sizeof *ents);
    if (!ents) return llc_fail(err, "%s: out of memory", path);
    const uint8_t *p = d + di.cd_offset, *cd_end = p + di.cd_size;
    char nb[96];
    for (uint64_t i = 0; i < di.n_entries; i++) {
        if ((size_t)(cd_end - p) < CENTRAL_SIZE || rd32(p) != SIG_CENTRAL) {
            free(ents);
            return llc_fail(err, "%s: zip central directory entry %" PRIu64 " is missing or damaged", path, i);
        }
        uint16_t flags = rd16(p + 8), method = rd16(p + 10);
        uint32_t crc = rd32(p + 16);
        uint64_t csize = rd32(p + 20), usize = rd32(p + 24), off = rd32(p + 42);
        uint32_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
        if ((size_t)(cd_end - p) - CENTRAL_SIZE < (size_t)nlen + xlen + clen) {
            free(ents);
            return llc_fail(err, "%s: zip central directory entry %" PRIu64 " runs past the directory", path, i);
        }
        const char *name = (const char *)p + CENTRAL_SIZE;
        llc_clip(name, nlen, 80, nb, sizeof nb);
        if (!apply_zip64_extra(p + CENTRAL_SIZE + nlen, xlen, &usize, &csize, &off, path, nb, err)) {
            free(ents);
            return false;
        }
        const char *why = NULL;
        if (flags & 1) why = "is encrypted";
        else if (method != 0) why = method == 8 ? "is compressed (deflate); torch.save stores entries uncompressed"
                                               : "is compressed; torch.save stores entries uncompressed";
        else if (csize != usize) why = "is stored but its compressed and uncompressed sizes differ";
        if (why) {
            free(ents);
            return llc_fail(err, "%s: zip entry %s %s", path, nb, why);
        }
        /* The local header repeats the name and has its own extra field (torch's 64-byte padding):
         * the data starts after both, so its position is only known from the local header. */
        if (off > di.cd_offset || di.cd_offset - off < LOCAL_SIZE) {
            free(ents);
            return llc_fail(err, "%s: zip entry %s has its local header at %" PRIu64 ", outside the entry area", path, nb, off);
        }
        const uint8_t *lh = d + off;
        uint32_t lnlen = rd16(lh + 26), lxlen = rd16(lh + 28);
        uint64_t data_off = off + LOCAL_SIZE + lnlen + lxlen;
        if (rd32(lh) != SIG_LOCAL) why = "has no local header where the central directory points";
        else if (lnlen != nlen || data_off > di.cd_offset || memcmp(lh + LOCAL_SIZE, name, nlen) != 0)
            why = "has a local header that does not match the central directory";
        else if (rd16(lh + 8) != 0) why = "is compressed in its local header";
        else if (!(rd16(lh + 6) & 8) && ((rd32(lh + 18) != 0xFFFFFFFFu && rd32(lh + 18) != csize) ||
                                         (rd32(lh + 22) != 0xFFFFFFFFu && rd32(lh + 22) != usize) || rd32(lh + 14) != crc))
            why = "has a local header whose sizes or checksum contradict the central directory";
        else if (usize > di.cd_offset - data_off) why = "runs past the start of the central directory (past the end of the data)";
        if (why) {
            free(ents);
            return llc_fail(err, "%s: zip entry %s %s", path, nb, why);
        }
        ents[i].name = name;
        ents[i].name_len = nlen;
        ents[i].crc32 = crc;
        ents[i].data = d + data_off;
        ents[i].size = usize;
        ents[i].header_offset = off;
        p += CENTRAL_SIZE + nlen + xlen + clen;
    }
    size_t n = (size_t)di.n_entries;
    /* No two entries may share bytes: a header or data claimed twice is a crafted archive. */
    qsort(ents, n, sizeof *ents, cmp_offset);
    for (size_t i = 1; i < n; i++) {
        uint64_t prev_end = (uint64_t)(ents[i - 1].data - d) + ents[i - 1].size;
        if (ents[i].header_offset < prev_end) {
            llc_clip(ents[i].name, ents[i].name_len, 80, nb, sizeof nb);
            free(ents);
            return llc_fail(err, "%s: zip entry %s overlaps the entry before it", path, nb);
        }
    }
    qsort(ents, n, sizeof *ents, cmp_name);
    for (size_t i = 1; i < n; i++) {
        if (cmp_name(&ents[i - 1], &ents[i]) == 0) {
            llc_clip(ents[i].name, ents[i].name_len, 80, nb, sizeof nb);
            free(ents);
            return llc_fail(err, "%s: zip archive has two entries named %s", path, nb);
        }
    }
    z->entries = ents;
    z->n_entries = n;
    return true;
}

void llc_zip_close(llc_zip *z) {
    free(z->entries);
    memset(z, 0, sizeof *z);
}

const llc_zip_entry *llc_zip_find(const llc_zip *z, const char *name, size_t len) {
    llc_zip_entry key = {.name = name, .name_len = (uint32_t)len};
    if (len > UINT32_MAX) return NULL;
    size_t lo = 0, hi = z->n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_name(&z->entries[mid], &key);
        if (c == 0) return &z->entries[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- writer ---------------------------------------------------------------------------------------- */

struct llc_zip_rec {
    char name[96];
    uint32_t crc;
    uint64_t size, offset;
};

/* DOS date of 1980-01-01, 00:00. */
#define DOS_DATE 0x0021

static uint8_t *wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}
static uint8_t *wr32(uint8_t *p, uint32_t v) { return wr16(wr16(p, (uint16_t)v), (uint16_t)(v >> 16)); }
static uint8_t *wr64(uint8_t *p, uint64_t v) { return wr32(wr32(p, (uint32_t)v), (uint32_t)(v >> 32)); }
static uint8_t *wr(uint8_t *p, const void *d, size_t n) { return (uint8_t *)memcpy(p, d, n) + n; }

static bool zw_write(llc_zip_writer *w, const void *d, size_t n, llamac_error *err) {
    if (n && fwrite(d, 1, n, w->f) != n) return llc_fail(err, "%s: write failed: %s", w->path, strerror(errno));
    w->pos += n;
    return true;
}

bool llc_zip_add(llc_zip_writer *w, const char *name, const void *data, uint64_t size, llamac_error *err) {
    size_t nlen = strlen(name);
    if (nlen >= sizeof w->recs->name) return llc_fail(err, "%s: zip entry name %.40s... is too long", w->path, name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        struct llc_zip_rec *r = realloc(w->recs, cap * sizeof *r);
        if (!r) return llc_fail(err, "out of memory");
        w->recs = r;
        w->cap = cap;
    }
    struct llc_zip_rec *r = &w->recs[w->n++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->crc = llc_crc32(0, data, (size_t)size);
    r->size = size;
    r->offset = w->pos;
    bool big = size >= 0xFFFFFFFFu;
    /* torch's padding: the data starts at the next multiple of 64 after the header, the name, the
     * zip64 field (if any) and the 4-byte header of the padding field itself. */
    uint64_t start = w->pos + 30 + nlen + (big ? 20 : 0) + 4;
    uint16_t pad = (uint16_t)((64 - start % 64) % 64);
    uint8_t h[30 + 96 + 20 + 4 + 64], *p = h;
    p = wr32(p, 0x04034b50);
    p = wr16(p, big ? 45 : 20);
    p = wr16(wr16(wr16(p, 0), 0), 0);
    p = wr16(p, DOS_DATE);
    p = wr32(p, r->crc);
    p = wr32(p, big ? 0xFFFFFFFFu : (uint32_t)size);
    p = wr32(p, big ? 0xFFFFFFFFu : (uint32_t)size);
    p = wr16(p, (uint16_t)nlen);
    p = wr16(p, (uint16_t)((big ? 20 : 0) + 4 + pad));
    p = wr(p, name, nlen);
    if (big) p = wr64(wr64(wr16(wr16(p, 1), 16), size), size);
    p = wr16(p, 0x4246); /* "FB" */
    p = wr16(p, pad);
    memset(p, 'Z', pad);
    p += pad;
    return zw_write(w, h, (size_t)(p - h), err) && zw_write(w, data, (size_t)size, err);
}

bool llc_zip_finish(llc_zip_writer *w, llamac_error *err) {
    uint64_t cd_off = w->pos;
    for (size_t i = 0; i < w->n; i++) {
        const struct llc_zip_rec *r = &w->recs[i];
        bool big = r->size >= 0xFFFFFFFFu, far = r->offset >= 0xFFFFFFFFu;
        size_t nlen = strlen(r->name);
        uint16_t xlen = (uint16_t)(big || far ? 4 + (big ? 16 : 0) + (far ? 8 : 0) : 0);
        uint8_t c[46 + 96 + 28], *p = c;
        p = wr32(p, 0x02014b50);
        p = wr16(p, 0x031e); /* made by: Unix, spec 3.0, as miniz writes */
        p = wr16(p, big || far ? 45 : 20);
        p = wr16(wr16(wr16(p, 0), 0), 0);
        p = wr16(p, DOS_DATE);
        p = wr32(p, r->crc);
        p = wr32(p, big ? 0xFFFFFFFFu : (uint32_t)r->size);
        p = wr32(p, big ? 0xFFFFFFFFu : (uint32_t)r->size);
        p = wr16(p, (uint16_t)nlen);
        p = wr16(p, xlen);
        p = wr16(wr16(wr16(p, 0), 0), 0);
        p = wr32(p, 0100644u << 16); /* external attributes: a regular file, rw-r--r-- */
        p = wr32(p, far ? 0xFFFFFFFFu : (uint32_t)r->offset);
        p = wr(p, r->name, nlen);
        if (xlen) {
            p = wr16(wr16(p, 1), (uint16_t)(xlen - 4));
            if (big) p = wr64(wr64(p, r->size), r->size);
            if (far) p = wr64(p, r->offset);
        }
        if (!zw_write(w, c, (size_t)(p - c), err)) return false;
    }
    uint64_t cd_size = w->pos - cd_off, end64 = w->pos;
    uint8_t e[56 + 20 + 22], *p = e;
    p = wr32(p, 0x06064b50); /* zip64 end of central directory record */
    p = wr64(p, 44);
    p = wr16(p, 0x031e);
    p = wr16(p, 45);
    p = wr32(wr32(p, 0), 0);
    p = wr64(wr64(p, w->n), w->n);
    p = wr64(wr64(p, cd_size), cd_off);
    p = wr32(p, 0x07064b50); /* zip64 locator */
    p = wr32(p, 0);
    p = wr64(p, end64);
    p = wr32(p, 1);
    p = wr32(p, 0x06054b50); /* end of central directory */
    p = wr16(wr16(p, 0), 0);
    p = wr16(p, (uint16_t)(w->n < 0xFFFF ? w->n : 0xFFFF));
    p = wr16(p, (uint16_t)(w->n < 0xFFFF ? w->n : 0xFFFF));
    p = wr32(p, cd_size < 0xFFFFFFFFu ? (uint32_t)cd_size : 0xFFFFFFFFu);
    p = wr32(p, cd_off < 0xFFFFFFFFu ? (uint32_t)cd_off : 0xFFFFFFFFu);
    p = wr16(p, 0);
    return zw_write(w, e, (size_t)(p - e), err);
}

void llc_zip_writer_free(llc_zip_writer *w) {
    free(w->recs);
    w->recs = NULL;
    w->n = w->cap = 0;
}
