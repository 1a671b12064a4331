/*
 * api_store.c: the output items of past /v1/responses answers, kept in memory so that a
 * later request can point at them with an `item_reference` input item.
 *
 * Clients that let the server keep state (OpenAI's default `store: true`, which the
 * Vercel AI SDK's default provider relies on) send an agent's earlier turns as references
 * to item ids instead of the items. Storing whole conversations (previous_response_id)
 * would need much more; keeping the output items of answers is enough for references, and
 * cheap: a list in arrival order, bounded in bytes, the oldest evicted first, nothing on
 * disk (a restart forgets everything, and a reference to an evicted item is a 400 that
 * says so). Lookups scan the list: they happen once per reference of a request, on the
 * prep threads, and the list holds a few thousand items at most. The store has its own
 * mutex, taken after the server mutex (results are stored while it is held), never
 * before it.
 */
#include <stdlib.h>
#include <string.h>

#include "adapt.h"

struct srv_item {
    char *id, *json;
    size_t bytes;
    struct srv_item *next;
};

struct srv_item_store {
    pthread_mutex_t mu;
    struct srv_item *head, *tail; /* oldest first */
    size_t bytes, max_bytes;
};

struct srv_item_store *cellm_srv_store_new(size_t max_bytes)
{
    struct srv_item_store *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    pthread_mutex_init(&st->mu, NULL);
    st->max_bytes = max_bytes;
    return st;
}

static void item_free(struct srv_item *it)
{
    free(it->id);
    free(it->json);
    free(it);
}

void cellm_srv_store_free(struct srv_item_store *st)
{
    if (!st) return;
    for (struct srv_item *it = st->head, *nx; it; it = nx) {
        nx = it->next;
        item_free(it);
    }
    pthread_mutex_destroy(&st->mu);
    free(st);
}

void cellm_srv_store_put(struct srv_item_store *st, const char *id, const char *json)
{
    size_t bytes = strlen(id) + strlen(json) + sizeof(struct srv_item);
    if (!st || bytes > st->max_bytes) return;
    struct srv_item *it = calloc(1, sizeof *it);
    if (!it) return;
    it->id = strdup(id);
    it->json = strdup(json);
    it->bytes = bytes;
    if (!it->id || !it->json) { /* out of memory: the item is not kept, as if evicted */
        item_free(it);
        return;
    }
    pthread_mutex_lock(&st->mu);
    if (st->tail)
        st->tail->next = it;
    else
        st->head = it;
    st->tail = it;
    st->bytes += bytes;
    while (st->bytes > st->max_bytes && st->head) {
        struct srv_item *old = st->head;
        st->head = old->next;
        if (!st->head) st->tail = NULL;
        st->bytes -= old->bytes;
        item_free(old);
    }
    pthread_mutex_unlock(&st->mu);
}

char *cellm_srv_store_get(void *store, const char *id)
{
    struct srv_item_store *st = store;
    char *out = NULL;
    if (!st) return NULL;
    pthread_mutex_lock(&st->mu);
    for (struct srv_item *it = st->head; it && !out; it = it->next)
        if (!strcmp(it->id, id)) out = strdup(it->json);
    pthread_mutex_unlock(&st->mu);
    return out;
}

void cellm_srv_store_response(struct srv_item_store *st, const cJSON *resp)
{
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(resp, "output"), *it;
    cJSON_ArrayForEach(it, out)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        char *json = cJSON_IsString(id) ? cJSON_PrintUnformatted(it) : NULL;
        if (json) cellm_srv_store_put(st, id->valuestring, json);
        cJSON_free(json);
    }
}
