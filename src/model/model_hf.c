/* Hugging Face checkpoint folders (work in progress). */
#include "base/error.h"
#include "model/model.h"

bool llc_model_load_hf(llamac_model *m, const char *dir, llamac_error *err) {
    (void)m;
    return llc_fail(err, "%s: Hugging Face folders are not supported yet", dir);
}
