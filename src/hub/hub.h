#ifndef LLC_HUB_H
#define LLC_HUB_H
/*
 * A Hugging Face hub client (libcurl) sharing huggingface_hub's cache:
 *   CACHE/models--ORG--NAME/blobs/ETAG                 file contents, named by their etag
 *   CACHE/models--ORG--NAME/blobs/ETAG.incomplete      a download in progress (resumed with Range)
 *   CACHE/models--ORG--NAME/snapshots/COMMIT/PATH      relative symlinks to ../../blobs/ETAG
 *   CACHE/models--ORG--NAME/refs/REVISION              the commit a branch or tag last resolved to
 *   CACHE/.locks/models--ORG--NAME/ETAG.lock           flock(2) held while a blob is downloaded
 * Like the library it never prints: errors come back in an llamac_error, progress through a callback.
 * Everything the hub sends (the model listing, headers, file names, bodies) is untrusted.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llamac.h"

/* The hub's limits on a repository id part (huggingface_hub's validate_repo_id). */
#define LLC_HUB_PART_MAX 96
#define LLC_HUB_QUANT_MAX 64
#define LLC_HUB_PATH_MAX 1024

typedef struct llc_hub_id {
    char org[LLC_HUB_PART_MAX + 1], name[LLC_HUB_PART_MAX + 1];
    char repo[2 * LLC_HUB_PART_MAX + 2];  /* "ORG/NAME" */
    char quant[LLC_HUB_QUANT_MAX + 1];    /* after ':' (may be empty) */
} llc_hub_id;

/* "ORG/NAME[:QUANT]": each part 1..96 of [A-Za-z0-9_.-], not starting or ending with '-' or '.', no
 * "--" or ".."; QUANT 1..64 of [A-Za-z0-9_.-]. */
bool llc_hub_parse_id(const char *s, llc_hub_id *id, llamac_error *err);
/* What -m treats as a hub id instead of a path: not an existing path and a valid id. */
bool llc_hub_is_id(const char *s);
/* A file name from the hub fit to become a path under a snapshot: relative, '/'-separated, no empty,
 * "." or ".." component, no backslash, no control byte, at most LLC_HUB_PATH_MAX bytes. */
bool llc_hub_safe_path(const char *p);
/* A revision (branch, tag, commit, "refs/pr/1"): [A-Za-z0-9_.-/], no "..", no empty component. */
bool llc_hub_safe_revision(const char *r);

/* The model API's answer ({endpoint}/api/models/{repo}/revision/{revision}): the commit and the files. */
typedef struct llc_hub_listing {
    char sha[41];
    int n;
    char **files;
} llc_hub_listing;
/* Parses len bytes of the API's JSON; refuses unsafe file names, a missing or malformed sha, too many files. */
bool llc_hub_parse_listing(const char *json, size_t len, llc_hub_listing *out, llamac_error *err);
void llc_hub_listing_free(llc_hub_listing *l);

/* Which files of a listing to fetch. */
typedef struct llc_hub_filter {
    const char *quant;                 /* "" or NULL: none */
    const char *const *include, *const *exclude;  /* fnmatch globs ('*' crosses '/', as Python's fnmatch) */
    int n_include, n_exclude;
} llc_hub_filter;
/* Marks pick[i] for the files to fetch. A repository with .gguf files is a GGUF repository: QUANT picks
 * the one model (all its -0000k-of-0000N parts) whose path contains it case-insensitively; without QUANT
 * one model is taken as is, several mean Q4_K_M or an error listing them. Otherwise the default is what
 * llamac loads from a Hugging Face folder. --include replaces the default, --exclude removes. *main gets
 * the index of the file -m should open (a GGUF's first part) or -1 (the folder). */
bool llc_hub_select(int n, char *const *files, const llc_hub_filter *f, bool *pick, int *main, llamac_error *err);

typedef enum llc_hub_event {
    LLC_HUB_FILE_START,    /* total: the file's size */
    LLC_HUB_FILE_BYTES,    /* done bytes of total so far (resumed bytes included) */
    LLC_HUB_FILE_DONE,     /* downloaded and checked */
    LLC_HUB_FILE_CACHED,   /* already in the snapshot or in the blobs: nothing fetched */
    LLC_HUB_RETRY,         /* msg says why and when */
} llc_hub_event;
typedef void (*llc_hub_progress_fn)(void *user, llc_hub_event ev, const char *file, uint64_t done, uint64_t total,
                                    const char *msg);

typedef struct llc_hub_opts {
    char endpoint[512];    /* HF_ENDPOINT or https://huggingface.co, no trailing '/' */
    char token[512];       /* HF_TOKEN or the token file, "" for none */
    char cache[1024];      /* HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub */
    bool offline;          /* HF_HUB_OFFLINE=1: the cache only */
    const char *revision;  /* NULL: "main" */
    llc_hub_filter filter; /* quant is taken from the id */
    llc_hub_progress_fn progress;
    void *user;
} llc_hub_opts;
/* Fills endpoint, token, cache and offline from the environment (the rest zeroed). */
bool llc_hub_opts_from_env(llc_hub_opts *o, llamac_error *err);

/* Downloads what the filter picks into the cache (or, offline, checks it is there) and writes the path
 * -m opens into out: the GGUF's first file, or the snapshot folder (its original/ for a Meta-only pull). */
bool llc_hub_pull(const llc_hub_id *id, const llc_hub_opts *o, char *out, size_t cap, llamac_error *err);
/* The same path from the cache only (no network), or an error saying what is missing. */
bool llc_hub_resolve(const llc_hub_id *id, const llc_hub_opts *o, char *out, size_t cap, llamac_error *err);

#endif
