#ifndef LLC_SERVER_H
#define LLC_SERVER_H
/*
 * The OpenAI-compatible HTTP server (llamac serve): a client of include/llamac.h only.
 *
 * One engine thread steps the continuous-batching engine; libmicrohttpd runs a thread per connection.
 * Request threads parse and validate, then hand requests to the engine thread through a queue under
 * one mutex that is never held during a forward pass; the engine thread appends each step's text to
 * the requests' bounded buffers and wakes their threads, which stream it out.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llamac.h"

typedef struct llc_server_params {
    const char *host;         /* address to bind (numeric or a name); NULL: 127.0.0.1 */
    int port;                 /* 0: any free port (reported through on_ready) */
    const char *api_key;      /* NULL: no key required */
    const char *model_name;   /* the id clients use; required */
    int max_queue;            /* requests (choices) waiting beyond the running ones before 429 */
    const char *cors_origins; /* comma-separated origins, "*" for any; NULL: no CORS headers */
    double drain_timeout;     /* seconds running requests get to finish after SIGTERM/SIGINT */
    double keepalive;         /* seconds between SSE keep-alive comments on an idle stream */
    size_t max_body;          /* largest request body in bytes (413 above) */
    int max_connections;      /* concurrent connections (threads) */
    llamac_engine_params engine;
    /* Called once listening, with the port bound (from the serving thread). */
    void (*on_ready)(void *ctx, const char *host, int port);
    /* Called with one line of log text (no newline), e.g. a failed step; may be NULL. */
    void (*log)(void *ctx, const char *line);
    void *ctx;
} llc_server_params;

/* Serves until SIGTERM or SIGINT, then drains (no new connections, running requests get
 * drain_timeout seconds, the rest are cancelled) and returns 0. -1 with err set when it cannot start
 * (bad parameters, the engine, the address). The model must outlive the call. */
int llc_serve(const llamac_model *model, const llc_server_params *params, llamac_error *err);

/* The server's reading of a POST body, without a socket or an engine (for fuzz/fuzz_server_request.c):
 * the same routing and request parsing llc_serve uses, for the model served as model_name with n_ctx
 * positions. Returns the HTTP status the server would answer with before any generation, and in
 * *answer (malloc'ed, the caller frees; NULL for an accepted generation) the body it would send: the
 * error in OpenAI's shape, or /tokenize's or /detokenize's result. An accepted generation's engine
 * requests, one per choice, go to on_request (valid during the call only) before the parsed request is
 * freed. -1 when out of memory. */
int llc_server_interpret(const llamac_model *model, const char *model_name, int n_ctx, const char *path, const char *body,
                         size_t len, char **answer, void (*on_request)(void *ctx, const llamac_request *q, bool stream),
                         void *ctx);

#endif
