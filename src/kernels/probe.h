#ifndef LLC_PROBE_H
#define LLC_PROBE_H
/*
 * What this machine can do at most, measured rather than assumed, so benchmarks can say how close to
 * the limit a result is: the streaming read bandwidth (the decode roofline) and the register-only
 * peak of the instructions the kernels use (the prefill roofline).
 */
#include <stddef.h>

#include "base/threadpool.h"

enum llc_peak_kind { LLC_PEAK_FP32_FMA, LLC_PEAK_BF16_DOT, LLC_PEAK_INT8_DOT };

/* GB/s reading a buffer of `bytes` (best of a few passes) with all of the pool's threads. */
double llc_probe_read_gbs(llc_pool *pool, size_t bytes);
/* Operations per second (a multiply-add counts two) of one instruction kind on all threads;
 * 0 if the CPU lacks it. */
double llc_probe_peak_ops(llc_pool *pool, enum llc_peak_kind kind);
const char *llc_peak_name(enum llc_peak_kind kind);

#endif
