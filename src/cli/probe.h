#ifndef LLC_CLI_PROBE_H
#define LLC_CLI_PROBE_H
/*
 * What this machine can do at most, measured rather than assumed, so benchmarks can say how close to
 * the limit a result is: the streaming read bandwidth (the decode roofline) and the register-only
 * peak of the instructions the kernels use (the prefill roofline). Only `bench` measures these, so
 * they live with the CLI, not in the library; the kernels' ISA comes from llamac_isa().
 */
#include <stddef.h>

#include "base/threadpool.h"

enum cli_peak_kind { CLI_PEAK_FP32_FMA, CLI_PEAK_BF16_DOT, CLI_PEAK_INT8_DOT };

/* GB/s reading a buffer of `bytes` (best of a few passes) with all of the pool's threads. */
double cli_probe_read_gbs(llc_pool *pool, size_t bytes);
/* Operations per second (a multiply-add counts two) of one instruction kind on all threads;
 * 0 if the CPU lacks it. */
double cli_probe_peak_ops(llc_pool *pool, enum cli_peak_kind kind);
const char *cli_peak_name(enum cli_peak_kind kind);
/* The CPU as /proc/cpuinfo names it, with its family and model numbers where given (x86), e.g.
 * "AMD EPYC (family 25 model 17)"; "unknown CPU" if unreadable. */
void cli_cpu_name(char *out, size_t cap);

#endif
