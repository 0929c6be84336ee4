#ifndef LLC_OUTFILE_H
#define LLC_OUTFILE_H
/*
 * Every file llamac writes for the user (convert, quantize, synth, batch --output, and each file of a
 * Hugging Face or Meta folder) goes through here, so one rule holds everywhere:
 *   - OUT must be missing or a regular file; a device, FIFO, socket or folder is refused and left as is;
 *   - a symbolic link to a regular file is followed: its target is replaced, the link stays; a link to
 *     nothing or to anything else is refused;
 *   - the bytes go to a new file beside OUT (O_EXCL, a random name: OUT.XXXXXXXX.tmp), created with the
 *     permissions of any new file (0666 less the umask), synced and renamed over OUT when complete;
 *   - any error, or a signal the CLI handles (llc_outfile_remove_pending), removes the temporary file.
 */
#include <stdbool.h>
#include <stdio.h>

#include "llamac.h"

typedef struct llc_outfile {
    FILE *f;          /* write the contents here */
    const char *name; /* OUT as given, for messages (not copied) */
    char *target;     /* where the file lands (a symlink's target) */
    char *tmp;
    int slot;         /* in the signal-cleanup registry, or -1 */
} llc_outfile;

/* Whether path may be written as an output file (the rule above, and a folder to create it in that
 * exists and is writable). Cheap: commands call it before expensive work. */
bool llc_outfile_check(const char *path, llamac_error *err);
/* Creates the temporary file. On failure nothing is left and o needs no abort. */
bool llc_outfile_open(llc_outfile *o, const char *path, llamac_error *err);
/* Flushes, syncs and closes the temporary file and renames it over the target; on any failure the
 * temporary file is removed. Releases o either way. */
bool llc_outfile_commit(llc_outfile *o, llamac_error *err);
/* Commits when ok (writing succeeded), aborts otherwise; returns whether the file was committed. */
bool llc_outfile_finish(llc_outfile *o, bool ok, llamac_error *err);
/* Closes and removes the temporary file (NULL-safe, and safe on a released o). */
void llc_outfile_abort(llc_outfile *o);
/* Unlinks the temporary files of outfiles still open. Async-signal-safe: for signal handlers, which
 * then let the signal take its course. */
void llc_outfile_remove_pending(void);

/* Copies the file at from to the output file to (tokenizer files beside a written model). */
bool llc_copy_file(const char *from, const char *to, llamac_error *err);

/* An output folder (synth --format hf|meta): missing, or a folder (a symbolic link to one is
 * followed); with create, a missing one is made (0777 less the umask). Its files are then written
 * with llc_outfile each. */
bool llc_outdir_prepare(const char *dir, bool create, llamac_error *err);

#endif
