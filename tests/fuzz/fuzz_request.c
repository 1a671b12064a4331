/*
 * fuzz_request.c: libFuzzer target for the server's request parser (src/server/api.c).
 * The first byte picks the route (completions or chat); the rest is the HTTP body. A
 * body that parses is turned into a request and freed; one that does not gets its
 * OpenAI-style error body rendered. The tokenizer is the shipped model's, so text
 * prompts, chat templates and stop strings are exercised too.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/srv.h"

static struct cellm_server server;
static int ready;

static void setup(void)
{
    struct cellm_error err;
    memset(&server, 0, sizeof server);
    if (cellm_tokenizer_load(CELLM_FUZZ_MODEL, &server.tok, &err) != CELLM_OK)
        abort(); /* test harness only: the committed model must load */
    server.vocab = cellm_tokenizer_vocab(server.tok);
    server.ctx_size = 512;
    server.sp_default = cellm_sampler_params_default();
    server.o.model_name = "fuzz";
    pthread_mutex_init(&server.mu, NULL);
    ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) setup();
    if (size < 1) return 0;
    struct srv_req *r = NULL;
    struct srv_error e;
    if (cellm_srv_parse(&server, data[0] & 1, (const char *)data + 1, size - 1, &r, &e) == 0) {
        if (r) cellm_srv_req_free(r);
    } else {
        free(cellm_srv_error_json(&e));
    }
    return 0;
}
