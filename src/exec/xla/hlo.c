/*
 * hlo.c: the StableHLO text writer (see hlo.h).
 *
 * Three growable buffers (signature, body, results) are joined at the end, because the
 * parameters of @main are only all known once the body is written. Every op prints its
 * operand and result types in the pretty form accepted by StableHLO 1.x parsers; f32
 * constants are printed as exact hexadecimal bit patterns, so no decimal rounding ever
 * changes a value between the C code and the graph. Shape errors are recorded once and
 * make every later op a no-op returning an empty value.
 */
#include "hlo.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"

const char *cellm_xh_ty_name(enum cellm_xh_ty ty)
{
    switch (ty) {
    case XH_F32:
        return "f32";
    case XH_F16:
        return "f16";
    case XH_BF16:
        return "bf16";
    case XH_I32:
        return "i32";
    case XH_U32:
        return "ui32";
    case XH_I1:
        return "i1";
    case XH_U8:
        return "ui8";
    }
    return "?";
}

static void put(struct cellm_xh *b, struct cellm_xh_buf *o, const char *fmt, ...)
    CELLM_PRINTF(3, 4);
static void put(struct cellm_xh *b, struct cellm_xh_buf *o, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = o->cap - o->len;
        int n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            snprintf(b->msg, sizeof b->msg, "xla emitter: formatting failed");
            return;
        }
        if (o->p && (size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + (size_t)n + 1)
            cap *= 2;
        char *q = cellm_realloc(o->p, cap);
        if (!q) {
            b->failed = 1;
            snprintf(b->msg, sizeof b->msg, "xla emitter: out of memory");
            return;
        }
        o->p = q;
        o->cap = cap;
    }
}

static struct cellm_xh_val fail(struct cellm_xh *b, const char *what)
{
    struct cellm_xh_val v;
    memset(&v, 0, sizeof v);
    if (!b->failed) {
        b->failed = 1;
        snprintf(b->msg, sizeof b->msg, "xla emitter: %s (a bug in cellm's graph builder)", what);
    }
    return v;
}

struct cellm_xh_val cellm_xh_shape(enum cellm_xh_ty ty, int rank, const int64_t *d)
{
    struct cellm_xh_val v;
    memset(&v, 0, sizeof v);
    v.ty = ty;
    v.rank = rank;
    for (int i = 0; i < rank; i++)
        v.d[i] = d[i];
    return v;
}

int64_t cellm_xh_numel(const struct cellm_xh_val *v)
{
    int64_t n = 1;
    for (int i = 0; i < v->rank; i++)
        n *= v->d[i];
    return n;
}

/* "tensor<2x3xf32>" into s. */
static const char *tys(const struct cellm_xh_val *v, char *s, size_t n)
{
    size_t k = (size_t)snprintf(s, n, "tensor<");
    for (int i = 0; i < v->rank && k < n; i++)
        k += (size_t)snprintf(s + k, n - k, "%lldx", (long long)v->d[i]);
    if (k < n) snprintf(s + k, n - k, "%s>", cellm_xh_ty_name(v->ty));
    return s;
}

static void ilist(char *s, size_t n, int k, const int64_t *x)
{
    size_t o = 0;
    s[0] = 0;
    for (int i = 0; i < k && o < n; i++)
        o += (size_t)snprintf(s + o, n - o, "%s%lld", i ? ", " : "", (long long)x[i]);
}

static int same_shape(const struct cellm_xh_val *a, const struct cellm_xh_val *b)
{
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i]) return 0;
    return 1;
}

/* A fresh SSA value of the given type. */
static struct cellm_xh_val fresh(struct cellm_xh *b, enum cellm_xh_ty ty, int rank,
                                 const int64_t *d)
{
    struct cellm_xh_val v = cellm_xh_shape(ty, rank, d);
    snprintf(v.nm, sizeof v.nm, "%d", b->next++);
    return v;
}

static int bad(struct cellm_xh *b, int n, ...)
{
    if (b->failed) return 1;
    va_list ap;
    va_start(ap, n);
    int r = 0;
    for (int i = 0; i < n; i++)
        r |= !cellm_xh_ok(va_arg(ap, const struct cellm_xh_val *));
    va_end(ap);
    if (r) fail(b, "an operand is missing");
    return r;
}

void cellm_xh_init(struct cellm_xh *b)
{
    memset(b, 0, sizeof *b);
}

void cellm_xh_free(struct cellm_xh *b)
{
    cellm_free(b->sig.p);
    cellm_free(b->body.p);
    cellm_free(b->res.p);
    cellm_free(b->rty.p);
    memset(b, 0, sizeof *b);
}

struct cellm_xh_val cellm_xh_param(struct cellm_xh *b, const char *name, enum cellm_xh_ty ty,
                                   int rank, const int64_t *d, int alias_result)
{
    struct cellm_xh_val v = cellm_xh_shape(ty, rank, d);
    snprintf(v.nm, sizeof v.nm, "%s", name);
    char t[160];
    put(b, &b->sig, "%s\n      %%%s: %s", b->n_params ? "," : "", name, tys(&v, t, sizeof t));
    if (alias_result >= 0) put(b, &b->sig, " {tf.aliasing_output = %d : i32}", alias_result);
    b->n_params++;
    return v;
}

void cellm_xh_result(struct cellm_xh *b, const struct cellm_xh_val *v)
{
    if (bad(b, 1, v)) return;
    char t[160];
    put(b, &b->res, "%s%%%s", b->n_results ? ", " : "", v->nm);
    put(b, &b->rty, "%s%s", b->n_results ? ", " : "", tys(v, t, sizeof t));
    b->n_results++;
}

enum cellm_status cellm_xh_finish(struct cellm_xh *b, const char *module_name, char **text,
                                  size_t *len, struct cellm_error *err)
{
    *text = NULL;
    if (b->failed) return cellm_errf(err, CELLM_ERR_NOMEM, "%s", b->msg);
    struct cellm_xh_buf out = {0};
    put(b, &out,
        "module @%s attributes {mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32} {\n"
        "  func.func public @main(%s) -> (%s) {\n%s    return %s : %s\n  }\n}\n",
        module_name, b->sig.p ? b->sig.p : "", b->rty.p ? b->rty.p : "", b->body.p ? b->body.p : "",
        b->res.p ? b->res.p : "", b->rty.p ? b->rty.p : "");
    if (b->failed) {
        cellm_free(out.p);
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s", b->msg);
    }
    *text = out.p;
    *len = out.len;
    return CELLM_OK;
}

/* ---- ops ------------------------------------------------------------------------------- */

struct cellm_xh_val cellm_xh_const_f32(struct cellm_xh *b, float v, int rank, const int64_t *d)
{
    struct cellm_xh_val r = fresh(b, XH_F32, rank, d);
    uint32_t bits;
    memcpy(&bits, &v, 4);
    char t[160];
    put(b, &b->body, "    %%%s = stablehlo.constant dense<0x%08X> : %s\n", r.nm, (unsigned)bits,
        tys(&r, t, sizeof t));
    return r;
}

struct cellm_xh_val cellm_xh_const_int(struct cellm_xh *b, enum cellm_xh_ty ty, int64_t v, int rank,
                                       const int64_t *d)
{
    struct cellm_xh_val r = fresh(b, ty, rank, d);
    char t[160];
    if (ty == XH_I1)
        put(b, &b->body, "    %%%s = stablehlo.constant dense<%s> : %s\n", r.nm,
            v ? "true" : "false", tys(&r, t, sizeof t));
    else
        put(b, &b->body, "    %%%s = stablehlo.constant dense<%lld> : %s\n", r.nm, (long long)v,
            tys(&r, t, sizeof t));
    return r;
}

struct cellm_xh_val cellm_xh_iota(struct cellm_xh *b, enum cellm_xh_ty ty, int rank,
                                  const int64_t *d, int dim)
{
    struct cellm_xh_val r = fresh(b, ty, rank, d);
    char t[160];
    put(b, &b->body, "    %%%s = stablehlo.iota dim = %d : %s\n", r.nm, dim, tys(&r, t, sizeof t));
    return r;
}

struct cellm_xh_val cellm_xh_bin(struct cellm_xh *b, const char *op, struct cellm_xh_val x,
                                 struct cellm_xh_val y)
{
    if (bad(b, 2, &x, &y)) return fail(b, op);
    if (!same_shape(&x, &y) || x.ty != y.ty) {
        char m[128];
        snprintf(m, sizeof m, "%s of mismatched operands %%%s and %%%s", op, x.nm, y.nm);
        return fail(b, m);
    }
    struct cellm_xh_val r = fresh(b, x.ty, x.rank, x.d);
    char t[160];
    put(b, &b->body, "    %%%s = stablehlo.%s %%%s, %%%s : %s\n", r.nm, op, x.nm, y.nm,
        tys(&r, t, sizeof t));
    return r;
}

struct cellm_xh_val cellm_xh_un(struct cellm_xh *b, const char *op, struct cellm_xh_val x)
{
    if (bad(b, 1, &x)) return fail(b, op);
    struct cellm_xh_val r = fresh(b, x.ty, x.rank, x.d);
    char t[160];
    put(b, &b->body, "    %%%s = stablehlo.%s %%%s : %s\n", r.nm, op, x.nm, tys(&r, t, sizeof t));
    return r;
}

struct cellm_xh_val cellm_xh_convert(struct cellm_xh *b, struct cellm_xh_val x, enum cellm_xh_ty ty)
{
    if (bad(b, 1, &x)) return fail(b, "convert");
    if (x.ty == ty) return x;
    struct cellm_xh_val r = fresh(b, ty, x.rank, x.d);
    char t1[160], t2[160];
    put(b, &b->body, "    %%%s = stablehlo.convert %%%s : (%s) -> %s\n", r.nm, x.nm,
        tys(&x, t1, sizeof t1), tys(&r, t2, sizeof t2));
    return r;
}

static int bits32(enum cellm_xh_ty t)
{
    return t == XH_F32 || t == XH_I32 || t == XH_U32;
}

struct cellm_xh_val cellm_xh_bitcast(struct cellm_xh *b, struct cellm_xh_val x, enum cellm_xh_ty ty)
{
    if (bad(b, 1, &x)) return fail(b, "bitcast_convert");
    if (!bits32(x.ty) || !bits32(ty)) return fail(b, "bitcast_convert between widths");
    if (x.ty == ty) return x;
    struct cellm_xh_val r = fresh(b, ty, x.rank, x.d);
    char t1[160], t2[160];
    put(b, &b->body, "    %%%s = stablehlo.bitcast_convert %%%s : (%s) -> %s\n", r.nm, x.nm,
        tys(&x, t1, sizeof t1), tys(&r, t2, sizeof t2));
    return r;
}

struct cellm_xh_val cellm_xh_bcast(struct cellm_xh *b, struct cellm_xh_val x, int rank,
                                   const int64_t *d, const int64_t *dims)
{
    if (bad(b, 1, &x)) return fail(b, "broadcast_in_dim");
    for (int i = 0; i < x.rank; i++)
        if (dims[i] < 0 || dims[i] >= rank || (x.d[i] != 1 && x.d[i] != d[dims[i]]))
            return fail(b, "broadcast_in_dim with incompatible dims");
    struct cellm_xh_val r = fresh(b, x.ty, rank, d);
    char t1[160], t2[160], l[96];
    ilist(l, sizeof l, x.rank, dims);
    put(b, &b->body, "    %%%s = stablehlo.broadcast_in_dim %%%s, dims = [%s] : (%s) -> %s\n", r.nm,
        x.nm, l, tys(&x, t1, sizeof t1), tys(&r, t2, sizeof t2));
    return r;
}

struct cellm_xh_val cellm_xh_reshape(struct cellm_xh *b, struct cellm_xh_val x, int rank,
                                     const int64_t *d)
{
    if (bad(b, 1, &x)) return fail(b, "reshape");
    struct cellm_xh_val r = cellm_xh_shape(x.ty, rank, d);
    if (cellm_xh_numel(&r) != cellm_xh_numel(&x))
        return fail(b, "reshape that changes the element count");
    r = fresh(b, x.ty, rank, d);
    char t1[160], t2[160];
    put(b, &b->body, "    %%%s = stablehlo.reshape %%%s : (%s) -> %s\n", r.nm, x.nm,
        tys(&x, t1, sizeof t1), tys(&r, t2, sizeof t2));
    return r;
}

struct cellm_xh_val cellm_xh_transpose(struct cellm_xh *b, struct cellm_xh_val x,
                                       const int64_t *perm)
{
    if (bad(b, 1, &x)) return fail(b, "transpose");
    int64_t d[CELLM_XH_MAX_RANK];
    for (int i = 0; i < x.rank; i++)
        d[i] = x.d[perm[i]];
    struct cellm_xh_val r = fresh(b, x.ty, x.rank, d);
    char t1[160], t2[160], l[96];
    ilist(l, sizeof l, x.rank, perm);
    put(b, &b->body, "    %%%s = stablehlo.transpose %%%s, dims = [%s] : (%s) -> %s\n", r.nm, x.nm,
        l, tys(&x, t1, sizeof t1), tys(&r, t2, sizeof t2));
    return r;
}

struct cellm_xh_val cellm_xh_slice(struct cellm_xh *b, struct cellm_xh_val x, const int64_t *lo,
                                   const int64_t *hi)
{
    if (bad(b, 1, &x)) return fail(b, "slice");
    int64_t d[CELLM_XH_MAX_RANK];
    char l[256];
    size_t o = 0;
    for (int i = 0; i < x.rank; i++) {
        if (lo[i] < 0 || hi[i] > x.d[i] || lo[i] > hi[i]) return fail(b, "slice out of range");
        d[i] = hi[i] - lo[i];
        o += (size_t)snprintf(l + o, sizeof l - o, "%s%lld:%lld", i ? ", " : "", (long long)lo[i],
                              (long long)hi[i]);
    }
    struct cellm_xh_val r = fresh(b, x.ty, x.rank, d);
    char t1[160], t2[160];
    put(b, &b->body, "    %%%s = stablehlo.slice %%%s [%s] : (%s) -> %s\n", r.nm, x.nm, l,
        tys(&x, t1, sizeof t1), tys(&r, t2, sizeof t2));
    return r;
}

struct cellm_xh_val cellm_xh_concat(struct cellm_xh *b, const struct cellm_xh_val *xs, int n,
                                    int dim)
{
    if (n < 1 || bad(b, 1, &xs[0])) return fail(b, "concatenate");
    if (n == 1) return xs[0];
    int64_t d[CELLM_XH_MAX_RANK];
    for (int i = 0; i < xs[0].rank; i++)
        d[i] = xs[0].d[i];
    d[dim] = 0;
    for (int k = 0; k < n; k++)
        d[dim] += xs[k].d[dim];
    struct cellm_xh_val r = fresh(b, xs[0].ty, xs[0].rank, d);
    char t[160];
    put(b, &b->body, "    %%%s = stablehlo.concatenate ", r.nm);
    for (int k = 0; k < n; k++)
        put(b, &b->body, "%s%%%s", k ? ", " : "", xs[k].nm);
    put(b, &b->body, ", dim = %d : (", dim);
    for (int k = 0; k < n; k++)
        put(b, &b->body, "%s%s", k ? ", " : "", tys(&xs[k], t, sizeof t));
    put(b, &b->body, ") -> %s\n", tys(&r, t, sizeof t));
    return r;
}

struct cellm_xh_val cellm_xh_dot(struct cellm_xh *b, struct cellm_xh_val x, struct cellm_xh_val y,
                                 int nb, const int64_t *bx, const int64_t *by, int64_t cx,
                                 int64_t cy)
{
    if (bad(b, 2, &x, &y)) return fail(b, "dot_general");
    if (x.d[cx] != y.d[cy] || x.ty != y.ty)
        return fail(b, "dot_general with mismatched contracting dims");
    /* result: batch dims, then x's free dims, then y's */
    int64_t d[CELLM_XH_MAX_RANK];
    int r = 0;
    for (int i = 0; i < nb; i++) {
        if (x.d[bx[i]] != y.d[by[i]]) return fail(b, "dot_general with mismatched batch dims");
        d[r++] = x.d[bx[i]];
    }
    for (int pass = 0; pass < 2; pass++) {
        const struct cellm_xh_val *v = pass ? &y : &x;
        const int64_t *bd = pass ? by : bx;
        int64_t c = pass ? cy : cx;
        for (int i = 0; i < v->rank; i++) {
            int skip = i == c;
            for (int j = 0; j < nb; j++)
                skip |= bd[j] == i;
            if (!skip) {
                if (r == CELLM_XH_MAX_RANK) return fail(b, "dot_general result rank too large");
                d[r++] = v->d[i];
            }
        }
    }
    struct cellm_xh_val res = fresh(b, x.ty, r, d);
    char t1[160], t2[160], t3[160], l1[64], l2[64];
    put(b, &b->body, "    %%%s = stablehlo.dot_general %%%s, %%%s, ", res.nm, x.nm, y.nm);
    if (nb) {
        ilist(l1, sizeof l1, nb, bx);
        ilist(l2, sizeof l2, nb, by);
        put(b, &b->body, "batching_dims = [%s] x [%s], ", l1, l2);
    }
    put(b, &b->body,
        "contracting_dims = [%lld] x [%lld], precision = [HIGHEST, HIGHEST] : (%s, %s) -> %s\n",
        (long long)cx, (long long)cy, tys(&x, t1, sizeof t1), tys(&y, t2, sizeof t2),
        tys(&res, t3, sizeof t3));
    return res;
}

struct cellm_xh_val cellm_xh_reduce(struct cellm_xh *b, struct cellm_xh_val x, const char *op,
                                    int nd, const int64_t *dims, double init)
{
    if (bad(b, 1, &x)) return fail(b, "reduce");
    int64_t d[CELLM_XH_MAX_RANK];
    int r = 0;
    for (int i = 0; i < x.rank; i++) {
        int gone = 0;
        for (int j = 0; j < nd; j++)
            gone |= dims[j] == i;
        if (!gone) d[r++] = x.d[i];
    }
    struct cellm_xh_val z = x.ty == XH_F32 ? cellm_xh_const_f32(b, (float)init, 0, NULL)
                                           : cellm_xh_const_int(b, x.ty, (int64_t)init, 0, NULL);
    struct cellm_xh_val res = fresh(b, x.ty, r, d);
    char t1[160], t2[160], t3[160], l[64];
    ilist(l, sizeof l, nd, dims);
    put(b, &b->body,
        "    %%%s = stablehlo.reduce(%%%s init: %%%s) applies stablehlo.%s across dimensions = "
        "[%s] : (%s, %s) -> %s\n",
        res.nm, x.nm, z.nm, op, l, tys(&x, t1, sizeof t1), tys(&z, t2, sizeof t2),
        tys(&res, t3, sizeof t3));
    return res;
}

struct cellm_xh_val cellm_xh_compare(struct cellm_xh *b, const char *dir, struct cellm_xh_val x,
                                     struct cellm_xh_val y)
{
    if (bad(b, 2, &x, &y)) return fail(b, "compare");
    if (!same_shape(&x, &y) || x.ty != y.ty) return fail(b, "compare of mismatched operands");
    struct cellm_xh_val r = fresh(b, XH_I1, x.rank, x.d);
    const char *kind = x.ty == XH_F32 || x.ty == XH_F16 || x.ty == XH_BF16 ? "FLOAT"
                       : x.ty == XH_U32 || x.ty == XH_U8                   ? "UNSIGNED"
                                                                           : "SIGNED";
    char t1[160], t2[160];
    put(b, &b->body, "    %%%s = stablehlo.compare %s, %%%s, %%%s, %s : (%s, %s) -> %s\n", r.nm,
        dir, x.nm, y.nm, kind, tys(&x, t1, sizeof t1), tys(&y, t1, sizeof t1),
        tys(&r, t2, sizeof t2));
    return r;
}

struct cellm_xh_val cellm_xh_select(struct cellm_xh *b, struct cellm_xh_val p,
                                    struct cellm_xh_val x, struct cellm_xh_val y)
{
    if (bad(b, 3, &p, &x, &y)) return fail(b, "select");
    if (!same_shape(&p, &x) || !same_shape(&x, &y) || p.ty != XH_I1 || x.ty != y.ty)
        return fail(b, "select of mismatched operands");
    struct cellm_xh_val r = fresh(b, x.ty, x.rank, x.d);
    char t1[160], t2[160];
    put(b, &b->body, "    %%%s = stablehlo.select %%%s, %%%s, %%%s : %s, %s\n", r.nm, p.nm, x.nm,
        y.nm, tys(&p, t1, sizeof t1), tys(&r, t2, sizeof t2));
    return r;
}

struct cellm_xh_val cellm_xh_gather_rows(struct cellm_xh *b, struct cellm_xh_val table,
                                         struct cellm_xh_val ids)
{
    if (bad(b, 2, &table, &ids)) return fail(b, "gather");
    if (table.rank != 2 || ids.rank != 1 || ids.ty != XH_I32)
        return fail(b, "gather of rows needs a [V, C] table and [T] i32 ids");
    int64_t id2[2] = {ids.d[0], 1};
    struct cellm_xh_val ix = cellm_xh_reshape(b, ids, 2, id2);
    int64_t d[2] = {ids.d[0], table.d[1]};
    struct cellm_xh_val r = fresh(b, table.ty, 2, d);
    char t1[160], t2[160], t3[160];
    put(b, &b->body,
        "    %%%s = \"stablehlo.gather\"(%%%s, %%%s) <{dimension_numbers = "
        "#stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], "
        "index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, %lld>}> : "
        "(%s, %s) -> %s\n",
        r.nm, table.nm, ix.nm, (long long)table.d[1], tys(&table, t1, sizeof t1),
        tys(&ix, t2, sizeof t2), tys(&r, t3, sizeof t3));
    return r;
}

struct cellm_xh_val cellm_xh_dyn_slice(struct cellm_xh *b, struct cellm_xh_val x,
                                       const struct cellm_xh_val *starts, const int64_t *sizes)
{
    if (bad(b, 1, &x)) return fail(b, "dynamic_slice");
    struct cellm_xh_val r = fresh(b, x.ty, x.rank, sizes);
    char t[160], l[96];
    ilist(l, sizeof l, x.rank, sizes);
    put(b, &b->body, "    %%%s = stablehlo.dynamic_slice %%%s", r.nm, x.nm);
    for (int i = 0; i < x.rank; i++)
        put(b, &b->body, ", %%%s", starts[i].nm);
    put(b, &b->body, ", sizes = [%s] : (%s", l, tys(&x, t, sizeof t));
    for (int i = 0; i < x.rank; i++)
        put(b, &b->body, ", %s", tys(&starts[i], t, sizeof t));
    put(b, &b->body, ") -> %s\n", tys(&r, t, sizeof t));
    return r;
}

struct cellm_xh_val cellm_xh_dyn_update(struct cellm_xh *b, struct cellm_xh_val x,
                                        struct cellm_xh_val upd, const struct cellm_xh_val *starts)
{
    if (bad(b, 2, &x, &upd)) return fail(b, "dynamic_update_slice");
    if (x.rank != upd.rank || x.ty != upd.ty)
        return fail(b, "dynamic_update_slice of mismatched operands");
    struct cellm_xh_val r = fresh(b, x.ty, x.rank, x.d);
    char t[160];
    put(b, &b->body, "    %%%s = stablehlo.dynamic_update_slice %%%s, %%%s", r.nm, x.nm, upd.nm);
    for (int i = 0; i < x.rank; i++)
        put(b, &b->body, ", %%%s", starts[i].nm);
    put(b, &b->body, " : (%s, ", tys(&x, t, sizeof t));
    put(b, &b->body, "%s", tys(&upd, t, sizeof t));
    for (int i = 0; i < x.rank; i++)
        put(b, &b->body, ", %s", tys(&starts[i], t, sizeof t));
    put(b, &b->body, ") -> %s\n", tys(&r, t, sizeof t));
    return r;
}

struct cellm_xh_val cellm_xh_barrier(struct cellm_xh *b, struct cellm_xh_val x)
{
    if (bad(b, 1, &x)) return fail(b, "optimization_barrier");
    struct cellm_xh_val r = fresh(b, x.ty, x.rank, x.d);
    char t[160];
    tys(&x, t, sizeof t);
    put(b, &b->body, "    %%%s = \"stablehlo.optimization_barrier\"(%%%s) : (%s) -> %s\n", r.nm,
        x.nm, t, t);
    return r;
}

/* ---- while ----------------------------------------------------------------------------- */

void cellm_xh_while(struct cellm_xh *b, int n, const struct cellm_xh_val *init,
                    struct cellm_xh_val *args)
{
    for (int i = 0; i < n; i++)
        if (bad(b, 1, &init[i])) return;
    int id = b->next++;
    char t[160];
    put(b, &b->body, "    %%%d:%d = stablehlo.while(", id, n);
    for (int i = 0; i < n; i++) {
        args[i] = init[i];
        snprintf(args[i].nm, sizeof args[i].nm, "iterArg_%d_%d", id, i);
        put(b, &b->body, "%s%%%s = %%%s", i ? ", " : "", args[i].nm, init[i].nm);
    }
    put(b, &b->body, ") : ");
    for (int i = 0; i < n; i++)
        put(b, &b->body, "%s%s", i ? ", " : "", tys(&init[i], t, sizeof t));
    put(b, &b->body, "\n     cond {\n");
    b->loop_id = id;
    b->loop_n = n;
}

void cellm_xh_while_do(struct cellm_xh *b, struct cellm_xh_val pred)
{
    if (bad(b, 1, &pred)) return;
    if (pred.ty != XH_I1 || pred.rank != 0) {
        fail(b, "while condition is not an i1 scalar");
        return;
    }
    put(b, &b->body, "      stablehlo.return %%%s : tensor<i1>\n    } do {\n", pred.nm);
}

void cellm_xh_while_end(struct cellm_xh *b, const struct cellm_xh_val *next,
                        struct cellm_xh_val *results)
{
    int n = b->loop_n;
    for (int i = 0; i < n; i++)
        if (bad(b, 1, &next[i])) return;
    char t[160];
    put(b, &b->body, "      stablehlo.return");
    for (int i = 0; i < n; i++)
        put(b, &b->body, "%s %%%s", i ? "," : "", next[i].nm);
    put(b, &b->body, " : ");
    for (int i = 0; i < n; i++)
        put(b, &b->body, "%s%s", i ? ", " : "", tys(&next[i], t, sizeof t));
    put(b, &b->body, "\n    }\n");
    for (int i = 0; i < n; i++) {
        results[i] = next[i];
        snprintf(results[i].nm, sizeof results[i].nm, "%d#%d", b->loop_id, i);
    }
}
