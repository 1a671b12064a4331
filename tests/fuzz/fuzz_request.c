/*
 * fuzz_request.c: libFuzzer target for the server's request parsers (src/server/api.c and
 * the /v1/responses and /v1/messages adapters, api_adapt.c). The first byte picks the route
 * (its value mod 5: completions, chat, responses, messages, messages/count_tokens); the
 * rest is the HTTP body. A body that parses is turned into a request and freed (an
 * adapter's request first gets a canned answer rendered in its API's shape); one that does
 * not gets its error body rendered. The tokenizer is the shipped model's, so text prompts,
 * chat templates and stop strings are exercised too.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/adapt.h"
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
    const char *body = (const char *)data + 1;
    int route = data[0] % 5;
    if (route < 2) {
        if (cellm_srv_parse(&server, route, body, size - 1, &r, &e) == 0) {
            if (r) cellm_srv_req_free(r);
        } else {
            free(cellm_srv_error_json(&e));
        }
        return 0;
    }
    if (route == 4) {
        char *out = NULL;
        if (cellm_srv_messages_count(&server, body, size - 1, NULL, &out, &e) == 0)
            free(out);
        else
            free(cellm_srv_adapt_error_json(SRV_API_MESSAGES, &e));
        return 0;
    }
    enum srv_api api = route == 2 ? SRV_API_RESPONSES : SRV_API_MESSAGES;
    if (cellm_srv_adapt_parse(&server, api, body, size - 1, NULL, NULL, &r, &e) == 0) {
        /* a canned answer through the adapter's result path */
        snprintf(r->id, sizeof r->id, "chatcmpl-fuzz");
        if ((r->ch[0].text = strdup("ok"))) r->ch[0].text_len = 2;
        r->ch[0].done = 1;
        r->ch[0].finish = "stop";
        r->done = 1;
        free(cellm_srv_response_json(&server, r));
        cellm_srv_req_free(r);
    } else {
        free(cellm_srv_adapt_error_json(api, &e));
    }
    return 0;
}
