/* Writing Hugging Face folders (work in progress). */
#include "base/error.h"
#include "formats/model_writer.h"

bool llc_write_hf_folder(const llc_model_src *src, const char *dir, llamac_error *err) {
    (void)src;
    return llc_fail(err, "%s: writing Hugging Face folders is not supported yet", dir);
}
