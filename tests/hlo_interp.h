/*
 * hlo_interp.h: a reference interpreter of the StableHLO text that src/exec/xla/hlo.c
 * writes, for the ops the weight dequantization graphs use (constants, iota, elementwise
 * integer and f32 arithmetic, compare, select, convert, bitcast_convert,
 * broadcast_in_dim, reshape, transpose, slice, concatenate, row gather). No PJRT plugin
 * exists on the CI machines; this runs the emitted graph by the StableHLO spec's
 * definitions, so that a test can compare its values bit for bit with the CPU's.
 *
 * Every element is held in a uint32_t: the bits of f32/i32/ui32, the value of ui8/i1, the
 * 16 bits of f16/bf16. f32 arithmetic is one IEEE operation per element (round to
 * nearest even, subnormals kept), as XLA computes it. An op outside the subset fails the
 * run with its line.
 */
#ifndef CELLM_TESTS_HLO_INTERP_H
#define CELLM_TESTS_HLO_INTERP_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "exec/xla/hlo.h"

struct hi_t {
    char name[40];
    enum cellm_xh_ty ty;
    int rank;
    int64_t d[CELLM_XH_MAX_RANK];
    int64_t n;
    uint32_t *v;
};

struct hi {
    struct hi_t *t;
    int n, cap;
    char err[256];
    char *loop; /* the lines of a stablehlo.while being read (hi_loop_line) */
    size_t loop_len;
};

static inline int hi_fail(struct hi *h, const char *what, const char *line)
{
    if (!h->err[0]) snprintf(h->err, sizeof h->err, "%s: %.200s", what, line);
    return 0;
}

static inline struct hi_t *hi_find(struct hi *h, const char *name)
{
    for (int i = h->n - 1; i >= 0; i--)
        if (!strcmp(h->t[i].name, name)) return &h->t[i];
    return NULL;
}

static inline struct hi_t *hi_new(struct hi *h, const char *name)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 256;
        h->t = realloc(h->t, (size_t)h->cap * sizeof *h->t);
    }
    struct hi_t *t = &h->t[h->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%.39s", name);
    return t;
}

static inline void hi_free(struct hi *h)
{
    for (int i = 0; i < h->n; i++)
        free(h->t[i].v);
    free(h->t);
    free(h->loop);
    memset(h, 0, sizeof *h);
}

/* "tensor<2x3xf32>" at s: fills ty/rank/d/n; returns the end or NULL. */
static inline const char *hi_type(const char *s, struct hi_t *t)
{
    if (strncmp(s, "tensor<", 7)) return NULL;
    s += 7;
    t->rank = 0;
    t->n = 1;
    while (*s >= '0' && *s <= '9') {
        char *e;
        long long v = strtoll(s, &e, 10);
        if (*e != 'x') return NULL;
        t->d[t->rank++] = v;
        t->n *= v;
        s = e + 1;
    }
    static const struct {
        const char *s;
        enum cellm_xh_ty ty;
    } tys[] = {{"f32>", XH_F32},  {"f16>", XH_F16}, {"bf16>", XH_BF16}, {"i32>", XH_I32},
               {"ui32>", XH_U32}, {"i1>", XH_I1},   {"ui8>", XH_U8}};
    for (size_t i = 0; i < sizeof tys / sizeof *tys; i++)
        if (!strncmp(s, tys[i].s, strlen(tys[i].s))) {
            t->ty = tys[i].ty;
            return s + strlen(tys[i].s);
        }
    return NULL;
}

/* Binds parameter `name` (declared in the module's signature) to host data in its
 * element type (4, 2 or 1 bytes each). */
static inline int hi_param(struct hi *h, const char *text, const char *name, const void *data)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%%%s: ", name);
    const char *p = strstr(text, pat);
    if (!p) return hi_fail(h, "no such parameter", name);
    struct hi_t *t = hi_new(h, name);
    if (!hi_type(p + strlen(pat), t)) return hi_fail(h, "bad parameter type", p);
    t->v = malloc((size_t)(t->n ? t->n : 1) * 4);
    const uint8_t *b = data;
    for (int64_t i = 0; i < t->n; i++) {
        if (t->ty == XH_U8) {
            t->v[i] = b[i];
        } else if (t->ty == XH_F16 || t->ty == XH_BF16) {
            uint16_t x;
            memcpy(&x, b + 2 * i, 2);
            t->v[i] = x;
        } else {
            memcpy(&t->v[i], b + 4 * i, 4);
        }
    }
    return 1;
}

/* Row-major index of multi-index ix in shape d. */
static inline int64_t hi_lin(const int64_t *ix, const int64_t *d, int r)
{
    int64_t k = 0;
    for (int i = 0; i < r; i++)
        k = k * d[i] + ix[i];
    return k;
}

static inline void hi_unlin(int64_t k, const int64_t *d, int r, int64_t *ix)
{
    for (int i = r - 1; i >= 0; i--) {
        ix[i] = d[i] ? k % d[i] : 0;
        k = d[i] ? k / d[i] : 0;
    }
}

/* The integers of a "[0, 2]" list after `key`. */
static inline int hi_list(const char *line, const char *key, int64_t *out)
{
    const char *p = strstr(line, key);
    if (!p) return -1;
    p = strchr(p, '[');
    int n = 0;
    for (p++; *p && *p != ']';) {
        char *e;
        out[n++] = strtoll(p, &e, 10);
        p = e;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return n;
}

static inline uint32_t hi_bin(const char *op, enum cellm_xh_ty ty, uint32_t a, uint32_t b, int *ok)
{
    if (ty == XH_F32) {
        float x = cellm_bits_f32(a), y = cellm_bits_f32(b), r;
        if (!strcmp(op, "add"))
            r = x + y;
        else if (!strcmp(op, "subtract"))
            r = x - y;
        else if (!strcmp(op, "multiply"))
            r = x * y;
        else if (!strcmp(op, "divide"))
            r = x / y;
        else if (!strcmp(op, "maximum"))
            r = x != x || y != y ? NAN : x > y ? x : y;
        else if (!strcmp(op, "minimum"))
            r = x != x || y != y ? NAN : x < y ? x : y;
        else {
            *ok = 0;
            return 0;
        }
        return cellm_f32_bits(r);
    }
    int s = ty == XH_I32;
    if (!strcmp(op, "add")) return a + b;
    if (!strcmp(op, "subtract")) return a - b;
    if (!strcmp(op, "multiply")) return a * b;
    if (!strcmp(op, "divide")) return s ? (uint32_t)((int32_t)a / (int32_t)b) : a / b;
    if (!strcmp(op, "maximum")) return s ? ((int32_t)a > (int32_t)b ? a : b) : (a > b ? a : b);
    if (!strcmp(op, "minimum")) return s ? ((int32_t)a < (int32_t)b ? a : b) : (a < b ? a : b);
    if (!strcmp(op, "and")) return a & b;
    if (!strcmp(op, "or")) return a | b;
    /* StableHLO: shifts by >= the bit width give 0 */
    if (!strcmp(op, "shift_left")) return b >= 32 ? 0 : a << b;
    if (!strcmp(op, "shift_right_logical")) return b >= 32 ? 0 : a >> b;
    *ok = 0;
    return 0;
}

static inline uint32_t hi_mask(enum cellm_xh_ty ty, uint32_t v)
{
    return ty == XH_U8 ? (v & 0xff) : ty == XH_I1 ? (v & 1) : v;
}

/* f32 value of an element of a float or integer type. */
static inline float hi_tof(enum cellm_xh_ty ty, uint32_t v)
{
    switch (ty) {
    case XH_F32:
        return cellm_bits_f32(v);
    case XH_F16:
        return cellm_f16_to_f32((uint16_t)v);
    case XH_BF16:
        return cellm_bf16_to_f32((uint16_t)v);
    case XH_I32:
        return (float)(int32_t)v;
    default:
        return (float)v;
    }
}

static inline int hi_cmp(const char *dir, enum cellm_xh_ty ty, uint32_t a, uint32_t b)
{
    int lt, eq;
    if (ty == XH_F32) {
        float x = cellm_bits_f32(a), y = cellm_bits_f32(b);
        if (!strcmp(dir, "NE")) return x != y;
        lt = x < y, eq = x == y;
        if (!strcmp(dir, "GT")) return y < x;
        if (!strcmp(dir, "GE")) return y <= x;
    } else if (ty == XH_I32) {
        lt = (int32_t)a < (int32_t)b, eq = a == b;
    } else {
        lt = a < b, eq = a == b;
    }
    if (!strcmp(dir, "EQ")) return eq;
    if (!strcmp(dir, "NE")) return !eq;
    if (!strcmp(dir, "LT")) return lt;
    if (!strcmp(dir, "LE")) return lt || eq;
    if (!strcmp(dir, "GT")) return !lt && !eq;
    return !lt; /* GE */
}

/* ---- stablehlo.while, as cellm_xh_while writes it (no nesting) ---- */

static inline int hi_line(struct hi *h, const char *line);

/* A copy of tensor ti under another name. */
static inline struct hi_t *hi_copy(struct hi *h, const char *name, int64_t ti)
{
    struct hi_t *r = hi_new(h, name);
    struct hi_t *t = &h->t[ti];
    char keep[40];
    memcpy(keep, r->name, sizeof keep);
    *r = *t;
    memcpy(r->name, keep, sizeof keep);
    r->v = malloc((size_t)(t->n ? t->n : 1) * 4);
    memcpy(r->v, t->v, (size_t)t->n * 4);
    return r;
}

/* The operands of a "stablehlo.return %a, %b : ..." line as tensor indices. */
static inline int hi_returns(struct hi *h, const char *line, int64_t *idx, int max)
{
    const char *q = strchr(line, '%');
    int k = 0;
    while (q && *q == '%' && k < max) {
        char o[40];
        sscanf(q + 1, "%39[^ ,]", o);
        struct hi_t *t = hi_find(h, o);
        if (!t) return hi_fail(h, "unknown returned value", line), -1;
        idx[k++] = t - h->t;
        q += 1 + strlen(o);
        while (*q == ',' || *q == ' ')
            q++;
    }
    return k;
}

/* Runs the lines of one region, [s, end), up to its stablehlo.return; fills idx. */
static inline int hi_region(struct hi *h, const char *s, const char *end, int64_t *idx, int max)
{
    char line[4096];
    while (s < end) {
        const char *e = strchr(s, '\n');
        size_t n = (size_t)(e - s);
        if (n >= sizeof line) return hi_fail(h, "line too long", s), -1;
        memcpy(line, s, n);
        line[n] = 0;
        const char *t = line;
        while (*t == ' ')
            t++;
        if (!strncmp(t, "stablehlo.return ", 17)) return hi_returns(h, t, idx, max);
        if (strstr(line, "stablehlo.while(")) return hi_fail(h, "nested while", line), -1;
        if (!hi_line(h, line)) return -1;
        s = e + 1;
    }
    return hi_fail(h, "region without return", ""), -1;
}

/* Runs the loop whose text (header to closing brace) is s and binds its results "N#i". */
static inline int hi_while(struct hi *h, const char *s)
{
    int id, n;
    if (sscanf(s, " %%%d:%d", &id, &n) != 2 || n > 64) return hi_fail(h, "while", s);
    char args[64][40];
    int64_t cur[64];
    const char *q = strstr(s, "stablehlo.while(") + 16;
    for (int i = 0; i < n; i++) {
        char init[40];
        if (sscanf(q, "%%%39[^ ] = %%%39[^ ,)]", args[i], init) != 2)
            return hi_fail(h, "while operands", s);
        struct hi_t *t = hi_find(h, init);
        if (!t) return hi_fail(h, "unknown while operand", s);
        cur[i] = t - h->t;
        q = strstr(q, init) + strlen(init);
        while (*q == ',' || *q == ' ')
            q++;
    }
    const char *cond = strstr(s, " cond {\n"), *dob = cond ? strstr(cond, "} do {\n") : NULL;
    const char *end = dob ? strstr(dob, "\n    }\n") : NULL;
    if (!end) return hi_fail(h, "while regions", s);
    cond += 8;
    dob += 7;
    for (;;) {
        for (int i = 0; i < n; i++)
            cur[i] = hi_copy(h, args[i], cur[i]) - h->t;
        int64_t p[1], nx[64];
        if (hi_region(h, cond, dob, p, 1) != 1) return 0;
        if (!h->t[p[0]].v[0]) break;
        if (hi_region(h, dob, end + 1, nx, 64) != n) return hi_fail(h, "while body results", s);
        for (int i = 0; i < n; i++)
            cur[i] = nx[i];
    }
    for (int i = 0; i < n; i++) {
        char nm[40];
        snprintf(nm, sizeof nm, "%d#%d", id, i);
        hi_copy(h, nm, cur[i]);
    }
    return 1;
}

/* Collects the lines of a while loop; runs it at its closing brace. */
static inline int hi_loop_line(struct hi *h, const char *line)
{
    size_t n = strlen(line);
    char *p = realloc(h->loop, h->loop_len + n + 2);
    if (!p) return hi_fail(h, "out of memory", line);
    h->loop = p;
    memcpy(p + h->loop_len, line, n);
    h->loop_len += n;
    p[h->loop_len++] = '\n';
    p[h->loop_len] = 0;
    if (strcmp(line, "    }") || !strstr(p, "} do {")) return 1;
    h->loop = NULL;
    h->loop_len = 0;
    int ok = hi_while(h, p);
    free(p);
    return ok;
}

/* One line of the body. */
static inline int hi_line(struct hi *h, const char *line)
{
    if (h->loop || strstr(line, "= stablehlo.while(")) return hi_loop_line(h, line);
    const char *p = line;
    while (*p == ' ')
        p++;
    if (*p != '%') return 1; /* not an op (return is handled by the caller) */
    char res[40], op[40];
    if (sscanf(p, "%%%39[^ ] = %39[^ (]", res, op) != 2) return hi_fail(h, "unparsed", line);
    const char *name = op;
    if (!strncmp(name, "\"stablehlo.", 11))
        name += 11;
    else if (!strncmp(name, "stablehlo.", 10))
        name += 10;
    char nm[40];
    snprintf(nm, sizeof nm, "%s", name);
    char *q = strchr(nm, '"');
    if (q) *q = 0;
    /* operands: every %name after the '=' (indices: h->t may move when r is added) */
    int64_t oi[64];
    int nin = 0;
    for (const char *s = strchr(p, '=') + 1; (s = strchr(s, '%')) != NULL; s++) {
        char o[40];
        sscanf(s + 1, "%39[^ ,)]", o);
        struct hi_t *t = hi_find(h, o);
        if (!t) return hi_fail(h, "unknown operand", line);
        if (nin == 64) return hi_fail(h, "too many operands", line);
        oi[nin++] = t - h->t;
    }
    /* the result type: the last tensor<...> of the line */
    const char *lt = NULL;
    for (const char *s = strstr(line, "tensor<"); s; s = strstr(s + 1, "tensor<"))
        lt = s;
    if (!lt) return hi_fail(h, "no type", line);
    struct hi_t *r = hi_new(h, res);
    if (!hi_type(lt, r)) return hi_fail(h, "bad type", line);
    struct hi_t *in[64];
    for (int i = 0; i < nin; i++)
        in[i] = &h->t[oi[i]];
    r->v = calloc((size_t)(r->n ? r->n : 1), 4);
    int64_t ix[CELLM_XH_MAX_RANK], jx[CELLM_XH_MAX_RANK], dims[CELLM_XH_MAX_RANK];
    int ok = 1;
    if (!strcmp(nm, "constant")) {
        const char *s = strstr(line, "dense<");
        if (!s) return hi_fail(h, "constant", line);
        s += 6;
        uint32_t v;
        if (!strncmp(s, "0x", 2))
            v = (uint32_t)strtoul(s, NULL, 16);
        else if (!strncmp(s, "true", 4))
            v = 1;
        else if (!strncmp(s, "false", 5))
            v = 0;
        else
            v = (uint32_t)strtoll(s, NULL, 10);
        for (int64_t i = 0; i < r->n; i++)
            r->v[i] = hi_mask(r->ty, v);
    } else if (!strcmp(nm, "iota")) {
        int dim = atoi(strstr(line, "dim = ") + 6);
        for (int64_t i = 0; i < r->n; i++) {
            hi_unlin(i, r->d, r->rank, ix);
            r->v[i] = r->ty == XH_F32 ? cellm_f32_bits((float)ix[dim]) : (uint32_t)ix[dim];
        }
    } else if (!strcmp(nm, "add") || !strcmp(nm, "subtract") || !strcmp(nm, "multiply") ||
               !strcmp(nm, "divide") || !strcmp(nm, "and") || !strcmp(nm, "or") ||
               !strcmp(nm, "shift_left") || !strcmp(nm, "shift_right_logical") ||
               !strcmp(nm, "maximum") || !strcmp(nm, "minimum")) {
        if (nin != 2 || in[0]->n != r->n || in[1]->n != r->n) return hi_fail(h, "operands", line);
        for (int64_t i = 0; i < r->n && ok; i++)
            r->v[i] = hi_mask(r->ty, hi_bin(nm, r->ty, in[0]->v[i], in[1]->v[i], &ok));
        if (!ok) return hi_fail(h, "op on this type", line);
    } else if (!strcmp(nm, "compare")) {
        char dir[8];
        sscanf(strstr(line, "compare ") + 8, "%7[A-Z]", dir);
        for (int64_t i = 0; i < r->n; i++)
            r->v[i] = (uint32_t)hi_cmp(dir, in[0]->ty, in[0]->v[i], in[1]->v[i]);
    } else if (!strcmp(nm, "select")) {
        for (int64_t i = 0; i < r->n; i++)
            r->v[i] = in[0]->v[i] ? in[1]->v[i] : in[2]->v[i];
    } else if (!strcmp(nm, "convert")) {
        enum cellm_xh_ty a = in[0]->ty;
        for (int64_t i = 0; i < r->n; i++) {
            uint32_t v = in[0]->v[i];
            if (r->ty == XH_F32)
                r->v[i] = cellm_f32_bits(hi_tof(a, v));
            else if (a == XH_F32)
                return hi_fail(h, "float to integer convert", line);
            else
                r->v[i] = hi_mask(r->ty, v); /* integer widening/reinterpretation */
        }
    } else if (!strcmp(nm, "bitcast_convert")) {
        memcpy(r->v, in[0]->v, (size_t)r->n * 4);
    } else if (!strcmp(nm, "reshape") || !strcmp(nm, "optimization_barrier")) {
        memcpy(r->v, in[0]->v, (size_t)r->n * 4);
    } else if (!strcmp(nm, "broadcast_in_dim")) {
        int nd = hi_list(line, "dims = ", dims);
        for (int64_t i = 0; i < r->n; i++) {
            hi_unlin(i, r->d, r->rank, ix);
            for (int k = 0; k < nd; k++)
                jx[k] = in[0]->d[k] == 1 ? 0 : ix[dims[k]];
            r->v[i] = in[0]->v[hi_lin(jx, in[0]->d, in[0]->rank)];
        }
    } else if (!strcmp(nm, "transpose")) {
        hi_list(line, "dims = ", dims);
        for (int64_t i = 0; i < r->n; i++) {
            hi_unlin(i, r->d, r->rank, ix);
            for (int k = 0; k < r->rank; k++)
                jx[dims[k]] = ix[k];
            r->v[i] = in[0]->v[hi_lin(jx, in[0]->d, in[0]->rank)];
        }
    } else if (!strcmp(nm, "slice")) {
        const char *s = strchr(strstr(line, "slice %") + 7, '[') + 1;
        int64_t lo[CELLM_XH_MAX_RANK];
        for (int k = 0; k < r->rank; k++) {
            char *e;
            lo[k] = strtoll(s, &e, 10);
            strtoll(e + 1, &e, 10);
            s = e + 2;
        }
        for (int64_t i = 0; i < r->n; i++) {
            hi_unlin(i, r->d, r->rank, ix);
            for (int k = 0; k < r->rank; k++)
                jx[k] = ix[k] + lo[k];
            r->v[i] = in[0]->v[hi_lin(jx, in[0]->d, in[0]->rank)];
        }
    } else if (!strcmp(nm, "concatenate")) {
        int dim = atoi(strstr(line, "dim = ") + 6);
        for (int64_t i = 0; i < r->n; i++) {
            hi_unlin(i, r->d, r->rank, ix);
            int k = 0;
            while (ix[dim] >= in[k]->d[dim])
                ix[dim] -= in[k++]->d[dim];
            r->v[i] = in[k]->v[hi_lin(ix, in[k]->d, in[k]->rank)];
        }
    } else if (!strcmp(nm, "gather")) {
        /* rows of a [V, C] table by [T, 1] i32 ids, as cellm_xh_gather_rows writes it;
         * out-of-range ids clamp, as StableHLO's gather does */
        struct hi_t *tb = in[0], *id = in[1];
        for (int64_t t = 0; t < r->d[0]; t++) {
            int64_t row = (int32_t)id->v[t];
            row = row < 0 ? 0 : row >= tb->d[0] ? tb->d[0] - 1 : row;
            memcpy(r->v + t * r->d[1], tb->v + row * tb->d[1], (size_t)r->d[1] * 4);
        }
    } else if (!strcmp(nm, "exponential") || !strcmp(nm, "tanh") || !strcmp(nm, "sqrt") ||
               !strcmp(nm, "rsqrt") || !strcmp(nm, "negate") || !strcmp(nm, "floor") ||
               !strcmp(nm, "log") || !strcmp(nm, "log_plus_one")) {
        for (int64_t i = 0; i < r->n; i++) {
            float x = cellm_bits_f32(in[0]->v[i]);
            float y = nm[0] == 'e'                  ? expf(x)
                      : nm[0] == 't'                ? tanhf(x)
                      : nm[0] == 's'                ? sqrtf(x)
                      : nm[0] == 'r'                ? 1.0f / sqrtf(x)
                      : nm[0] == 'f'                ? floorf(x)
                      : !strcmp(nm, "log")          ? logf(x)
                      : !strcmp(nm, "log_plus_one") ? log1pf(x)
                                                    : -x;
            r->v[i] = r->ty == XH_F32 ? cellm_f32_bits(y) : (uint32_t)(-(int32_t)in[0]->v[i]);
        }
    } else if (!strcmp(nm, "reduce")) {
        /* "reduce(%x init: %z) applies stablehlo.OP across dimensions = [..]" */
        int64_t rd[CELLM_XH_MAX_RANK];
        int nrd = hi_list(line, "dimensions = ", rd);
        char rop[32];
        sscanf(strstr(line, "applies stablehlo.") + 18, "%31[a-z_]", rop);
        struct hi_t *x = in[0];
        for (int64_t i = 0; i < r->n; i++)
            r->v[i] = in[1]->v[0];
        for (int64_t i = 0; i < x->n && ok; i++) { /* in order: a sequential sum */
            hi_unlin(i, x->d, x->rank, ix);
            int k = 0;
            for (int a = 0; a < x->rank; a++) {
                int gone = 0;
                for (int j = 0; j < nrd; j++)
                    gone |= rd[j] == a;
                if (!gone) jx[k++] = ix[a];
            }
            int64_t o = hi_lin(jx, r->d, r->rank);
            r->v[o] = hi_bin(rop, x->ty, r->v[o], x->v[i], &ok);
        }
        if (!ok) return hi_fail(h, "reduction op", line);
    } else if (!strcmp(nm, "dot_general")) {
        int64_t bx[CELLM_XH_MAX_RANK], by[CELLM_XH_MAX_RANK], cx[2], cy[2];
        int nb = 0;
        const char *bd = strstr(line, "batching_dims = ");
        if (bd) {
            nb = hi_list(bd, "batching_dims = ", bx);
            hi_list(strstr(bd, "] x [") + 2, "[", by);
        }
        const char *cd = strstr(line, "contracting_dims = ");
        hi_list(cd, "contracting_dims = ", cx);
        hi_list(strstr(cd, "] x [") + 2, "[", cy);
        struct hi_t *x = in[0], *y = in[1];
        int64_t K = x->d[cx[0]];
        /* result dims: batch, x's free, y's free */
        int fx[CELLM_XH_MAX_RANK], fy[CELLM_XH_MAX_RANK], nfx = 0, nfy = 0;
        for (int a = 0; a < x->rank; a++) {
            int skip = a == cx[0];
            for (int j = 0; j < nb; j++)
                skip |= bx[j] == a;
            if (!skip) fx[nfx++] = a;
        }
        for (int a = 0; a < y->rank; a++) {
            int skip = a == cy[0];
            for (int j = 0; j < nb; j++)
                skip |= by[j] == a;
            if (!skip) fy[nfy++] = a;
        }
        int64_t xi[CELLM_XH_MAX_RANK], yi[CELLM_XH_MAX_RANK];
        for (int64_t i = 0; i < r->n; i++) {
            hi_unlin(i, r->d, r->rank, ix);
            int k = 0;
            for (int j = 0; j < nb; j++, k++)
                xi[bx[j]] = yi[by[j]] = ix[k];
            for (int j = 0; j < nfx; j++, k++)
                xi[fx[j]] = ix[k];
            for (int j = 0; j < nfy; j++, k++)
                yi[fy[j]] = ix[k];
            float acc = 0;
            for (int64_t c = 0; c < K; c++) {
                xi[cx[0]] = yi[cy[0]] = c;
                acc += cellm_bits_f32(x->v[hi_lin(xi, x->d, x->rank)]) *
                       cellm_bits_f32(y->v[hi_lin(yi, y->d, y->rank)]);
            }
            r->v[i] = cellm_f32_bits(acc);
        }
    } else if (!strcmp(nm, "dynamic_slice") || !strcmp(nm, "dynamic_update_slice")) {
        int upd = nm[8] == 'u';
        struct hi_t *x = in[0], *u = upd ? in[1] : r;
        int64_t st[CELLM_XH_MAX_RANK];
        for (int k = 0; k < x->rank; k++) { /* starts clamp so the window fits */
            int64_t v = (int32_t)in[1 + upd + k]->v[0], hi = x->d[k] - u->d[k];
            st[k] = v < 0 ? 0 : v > hi ? hi : v;
        }
        if (upd) {
            memcpy(r->v, x->v, (size_t)r->n * 4);
            for (int64_t i = 0; i < u->n; i++) {
                hi_unlin(i, u->d, u->rank, ix);
                for (int k = 0; k < u->rank; k++)
                    jx[k] = ix[k] + st[k];
                r->v[hi_lin(jx, r->d, r->rank)] = u->v[i];
            }
        } else {
            for (int64_t i = 0; i < r->n; i++) {
                hi_unlin(i, r->d, r->rank, ix);
                for (int k = 0; k < r->rank; k++)
                    jx[k] = ix[k] + st[k];
                r->v[i] = x->v[hi_lin(jx, x->d, x->rank)];
            }
        }
    } else {
        return hi_fail(h, "op not interpreted", line);
    }
    return 1;
}

/* Runs the module's body (parameters bound first) and points out[0..max) at its first
 * results ("return %a, %b, ... : types"). Returns how many it found, or 0 with h->err set. */
static inline int hi_run_all(struct hi *h, const char *text, struct hi_t **out, int max)
{
    const char *body = strstr(text, ") {\n");
    if (!body) return hi_fail(h, "no body", "");
    char line[4096];
    for (const char *s = body + 4; *s;) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n >= sizeof line) return hi_fail(h, "line too long", s);
        memcpy(line, s, n);
        line[n] = 0;
        const char *t = line;
        while (*t == ' ')
            t++;
        if (!strncmp(t, "return %", 8)) {
            int k = 0;
            for (const char *q = t + 7; *q == '%' && k < max;) {
                char o[40];
                if (sscanf(q + 1, "%39[^ ,:]", o) != 1) break;
                if (!(out[k++] = hi_find(h, o))) return hi_fail(h, "no such result", o);
                q += 1 + strlen(o);
                while (*q == ',' || *q == ' ')
                    q++;
            }
            return k;
        }
        if (!hi_line(h, line)) return 0;
        s = e ? e + 1 : s + n;
    }
    return hi_fail(h, "no return", "");
}

/* Runs the module's body (parameters bound first) and returns its first result, or NULL
 * with h->err set. */
static inline struct hi_t *hi_run(struct hi *h, const char *text)
{
    struct hi_t *r = NULL;
    return hi_run_all(h, text, &r, 1) ? r : NULL;
}

#endif
