#ifndef LLC_MODEL_EXPORT_H
#define LLC_MODEL_EXPORT_H
#include "formats/model_writer.h"
#include "model/model.h"

/* Describes model m as a writer source. type >= 0 re-encodes every matrix to that type; type < 0
 * keeps each matrix's own type. The source borrows m (keep it loaded while writing). */
bool llc_model_export(const llamac_model *m, int type, llc_model_src *out, llamac_error *err);
void llc_model_export_free(llc_model_src *src);

#endif
