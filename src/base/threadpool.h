#ifndef LLC_THREADPOOL_H
#define LLC_THREADPOOL_H
/*
 * A fixed set of worker threads that run one function on all threads at once (fork-join). Workers
 * spin briefly between jobs, so back-to-back jobs of a forward pass cost no syscalls; only a worker
 * idle for long (between user requests) goes to sleep on a condition variable.
 */
typedef struct llc_pool llc_pool;
typedef void (*llc_task_fn)(void *ctx, int ith, int nth);

/* n_threads counts the caller: 1 means no extra threads. NULL on failure. */
llc_pool *llc_pool_create(int n_threads);
void llc_pool_free(llc_pool *p);
int llc_pool_size(const llc_pool *p);
/* Runs fn(ctx, i, n) for i in 0..n-1, i = 0 on the calling thread; returns when all have finished. */
void llc_pool_run(llc_pool *p, llc_task_fn fn, void *ctx);
/* Same, but the job is worth at most n_threads threads (small jobs run on the caller alone, since
 * waking workers costs more than the work). */
void llc_pool_run_n(llc_pool *p, llc_task_fn fn, void *ctx, int n_threads);
/* Splits [0, n) into nth nearly equal parts; part ith is [*lo, *hi). */
static inline void llc_split(long n, int ith, int nth, long *lo, long *hi) {
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}
int llc_n_cores(void);

#endif
