/*
 * fuzz_toolcall.c: libFuzzer target for the tool-call and reasoning parser
 * (src/template/toolcall.c), whose input is a model's output: untrusted text. The first
 * byte picks the format, whether the output starts inside <think> and a piece size; the
 * rest is the output. It is parsed whole and in pieces of that size, and the two parses
 * must agree (content, reasoning and calls): how text arrives never changes what it means.
 * A third parse, in pieces, takes the calls as they are generated (call_begin, call_args):
 * each completed call's arguments must be its pieces joined, and the completed calls, the
 * content and the reasoning must be the whole parse's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "template/toolcall.h"

struct buf {
    char *p;
    size_t n, cap;
};

/* What a client assembles: the content, the reasoning, the calls (name NUL args NUL);
 * streamed, the calls begun (name NUL pieces NUL each) and how many were completed. */
struct acc {
    struct buf c, r, k;
    int fail;
    struct buf live[64];
    int n_live, n_ended;
};

static int put(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static int on_content(void *ud, const char *s, size_t n)
{
    return put(&((struct acc *)ud)->c, s, n);
}
static int on_reasoning(void *ud, const char *s, size_t n)
{
    return put(&((struct acc *)ud)->r, s, n);
}
static int on_call(void *ud, const char *name, const char *args)
{
    struct buf *k = &((struct acc *)ud)->k;
    return put(k, name, strlen(name) + 1) || put(k, args, strlen(args) + 1);
}

static int on_begin(void *ud, const char *name)
{
    struct acc *a = ud;
    (void)name;
    a->n_live++; /* beyond 64 counted, not kept */
    return 0;
}
static int on_args(void *ud, const char *s, size_t n)
{
    struct acc *a = ud;
    if (!a->n_live) abort(); /* arguments before any call began */
    return a->n_live > 64 ? 0 : put(&a->live[a->n_live - 1], s, n);
}
static int on_live_call(void *ud, const char *name, const char *args)
{
    struct acc *a = ud;
    int j = a->n_ended++;
    if (j >= a->n_live) abort(); /* completed a call that never began */
    if (!args) return 0;
    if (j >= 64) return on_call(ud, name, args);
    struct buf *b = &a->live[j];
    if (b->n != strlen(args) || (b->n && memcmp(b->p, args, b->n)))
        abort(); /* the pieces do not add up to the call's arguments */
    return on_call(ud, name, args);
}

static int same(const struct buf *a, const struct buf *b)
{
    return a->n == b->n && (!a->n || !memcmp(a->p, b->p, a->n));
}

static void parse(const struct cellm_tc_style *st, int think, const char *s, size_t n, size_t step,
                  int live, struct acc *a)
{
    struct cellm_tc *p = NULL;
    struct cellm_error err;
    struct cellm_tc_sink k = {a,
                              on_content,
                              on_reasoning,
                              live ? on_live_call : on_call,
                              live ? on_begin : NULL,
                              live ? on_args : NULL};
    if (cellm_tc_new(st, think, NULL, &p, &err)) {
        a->fail = 1;
        return;
    }
    for (size_t i = 0; i < n && !a->fail; i += step)
        a->fail = cellm_tc_feed(p, s + i, n - i < step ? n - i : step, &k, &err) != CELLM_OK;
    if (!a->fail) a->fail = cellm_tc_finish(p, &k, &err) != CELLM_OK;
    cellm_tc_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct cellm_tc_style st = {(enum cellm_tc_format)(data[0] % 12), (data[0] >> 3) & 1, 0, 0};
    st.think_channel = st.format == CELLM_TC_GEMMA4; /* Gemma 4's reasoning channel */
    int think = (data[0] >> 4) & 1;
    size_t step = 1 + (data[0] >> 5);
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    static struct acc whole, pieces, live;
    memset(&whole, 0, sizeof whole);
    memset(&pieces, 0, sizeof pieces);
    memset(&live, 0, sizeof live);
    parse(&st, think, s, n, n ? n : 1, 0, &whole);
    parse(&st, think, s, n, step, 0, &pieces);
    parse(&st, think, s, n, step, 1, &live);
    if (!whole.fail && !pieces.fail &&
        !(same(&whole.c, &pieces.c) && same(&whole.r, &pieces.r) && same(&whole.k, &pieces.k)))
        abort(); /* the harness's finding: the parse depends on how the text was cut */
    if (!whole.fail && !live.fail && live.n_live <= 64 &&
        !(same(&whole.c, &live.c) && same(&whole.r, &live.r) && same(&whole.k, &live.k) &&
          live.n_ended == live.n_live))
        abort(); /* streaming the calls changed what the output means */
    free(whole.c.p), free(whole.r.p), free(whole.k.p);
    free(pieces.c.p), free(pieces.r.p), free(pieces.k.p);
    free(live.c.p), free(live.r.p), free(live.k.p);
    for (int i = 0; i < 64; i++)
        free(live.live[i].p);
    return 0;
}
