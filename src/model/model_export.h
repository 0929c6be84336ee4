#ifndef LLC_MODEL_EXPORT_H
#define LLC_MODEL_EXPORT_H
#include "base/threadpool.h"
#include "model/model_writer.h"
#include "model/model.h"
#include "model/quant_mix.h"

/* Describes model m as a writer source. With a mix, every matrix gets the type the mix gives it
 * (model/quant_mix.h; re-encoded from its dequantized values, or its bytes copied when the type is the
 * same) and the file records the mix's general.file_type; mix NULL keeps each matrix's own type. Rows
 * are re-encoded on the threads of pool (NULL: the caller's thread). The source borrows m, mix and pool
 * (keep them while writing). */
bool llc_model_export(const llamac_model *m, const llc_quant_mix *mix, llc_pool *pool, llc_model_src *out,
                      llamac_error *err);
void llc_model_export_free(llc_model_src *src);

#endif
