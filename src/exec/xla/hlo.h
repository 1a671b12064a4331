/*
 * hlo.h: a small writer of StableHLO text (the MLIR "pretty" form that PJRT plugins
 * compile with program format "mlir").
 *
 * A builder collects the parameters of @main (each a named tensor, optionally donated
 * to a result through tf.aliasing_output) and the body, one SSA value per op. Values
 * carry their element type and static shape, so every op can print its full type
 * signature and check its operands; a mismatch is a bug in the emitter and is recorded
 * as the builder's error (the first one wins) instead of producing text the plugin
 * would reject with a less helpful message. Pure C, no PJRT needed: the structural
 * tests read this text in CI.
 */
#ifndef CELLM_EXEC_XLA_HLO_H
#define CELLM_EXEC_XLA_HLO_H

#include <stddef.h>
#include <stdint.h>

#include "cellm.h"

#define CELLM_XH_MAX_RANK 5

enum cellm_xh_ty { XH_F32, XH_F16, XH_BF16, XH_I32, XH_U32, XH_I1, XH_U8 };

struct cellm_xh_val {
    char nm[40]; /* SSA name without '%'; "" = no value */
    enum cellm_xh_ty ty;
    int rank;
    int64_t d[CELLM_XH_MAX_RANK];
};

struct cellm_xh_buf {
    char *p;
    size_t len, cap;
};

struct cellm_xh {
    struct cellm_xh_buf sig;  /* parameter list of @main */
    struct cellm_xh_buf body; /* ops */
    struct cellm_xh_buf res;  /* result values */
    struct cellm_xh_buf rty;  /* result types */
    int n_params, n_results, next;
    int failed; /* 1 after the first error (see msg) */
    int loop_id, loop_n; /* the while loop being written (cellm_xh_while) */
    char msg[200];
};

/* Shape helper: cellm_xh_shape(rank, d0, d1, ...) into a value template. */
struct cellm_xh_val cellm_xh_shape(enum cellm_xh_ty ty, int rank, const int64_t *d);
static inline int cellm_xh_ok(const struct cellm_xh_val *v)
{
    return v->nm[0] != 0;
}
int64_t cellm_xh_numel(const struct cellm_xh_val *v);

void cellm_xh_init(struct cellm_xh *b);
void cellm_xh_free(struct cellm_xh *b);
/* Declares a parameter of @main; alias_result >= 0 donates it to that result index. */
struct cellm_xh_val cellm_xh_param(struct cellm_xh *b, const char *name, enum cellm_xh_ty ty,
                                   int rank, const int64_t *d, int alias_result);
/* Appends a result of @main (in call order). */
void cellm_xh_result(struct cellm_xh *b, const struct cellm_xh_val *v);
/* Assembles the module text (malloc'd through cellm_malloc) or fails with b->msg. */
enum cellm_status cellm_xh_finish(struct cellm_xh *b, const char *module_name, char **text,
                                  size_t *len, struct cellm_error *err);

/* ---- ops (operands must have the shapes StableHLO requires; no implicit broadcast) ---- */

struct cellm_xh_val cellm_xh_const_f32(struct cellm_xh *b, float v, int rank, const int64_t *d);
struct cellm_xh_val cellm_xh_const_int(struct cellm_xh *b, enum cellm_xh_ty ty, int64_t v, int rank,
                                       const int64_t *d);
struct cellm_xh_val cellm_xh_iota(struct cellm_xh *b, enum cellm_xh_ty ty, int rank,
                                  const int64_t *d, int dim);
/* op: add subtract multiply divide maximum minimum and or shift_left shift_right_logical */
struct cellm_xh_val cellm_xh_bin(struct cellm_xh *b, const char *op, struct cellm_xh_val x,
                                 struct cellm_xh_val y);
/* op: exponential tanh sqrt rsqrt negate floor log log_plus_one */
struct cellm_xh_val cellm_xh_un(struct cellm_xh *b, const char *op, struct cellm_xh_val x);
struct cellm_xh_val cellm_xh_convert(struct cellm_xh *b, struct cellm_xh_val x,
                                     enum cellm_xh_ty ty);
/* The same bits read as another 32-bit type (f32 <-> ui32 <-> i32): no value changes. */
struct cellm_xh_val cellm_xh_bitcast(struct cellm_xh *b, struct cellm_xh_val x,
                                     enum cellm_xh_ty ty);
/* Result shape `d` (rank r); operand dim i goes to result dim dims[i]. */
struct cellm_xh_val cellm_xh_bcast(struct cellm_xh *b, struct cellm_xh_val x, int r,
                                   const int64_t *d, const int64_t *dims);
struct cellm_xh_val cellm_xh_reshape(struct cellm_xh *b, struct cellm_xh_val x, int r,
                                     const int64_t *d);
struct cellm_xh_val cellm_xh_transpose(struct cellm_xh *b, struct cellm_xh_val x,
                                       const int64_t *perm);
struct cellm_xh_val cellm_xh_slice(struct cellm_xh *b, struct cellm_xh_val x, const int64_t *lo,
                                   const int64_t *hi);
struct cellm_xh_val cellm_xh_concat(struct cellm_xh *b, const struct cellm_xh_val *xs, int n,
                                    int dim);
/* dot_general with precision HIGHEST; nb batching dims, one contracting dim. */
struct cellm_xh_val cellm_xh_dot(struct cellm_xh *b, struct cellm_xh_val x, struct cellm_xh_val y,
                                 int nb, const int64_t *bx, const int64_t *by, int64_t cx,
                                 int64_t cy);
/* Reduction over `dims` with op add/maximum/minimum and a scalar init of x's type. */
struct cellm_xh_val cellm_xh_reduce(struct cellm_xh *b, struct cellm_xh_val x, const char *op,
                                    int nd, const int64_t *dims, double init);
/* dir: EQ NE LT LE GT GE */
struct cellm_xh_val cellm_xh_compare(struct cellm_xh *b, const char *dir, struct cellm_xh_val x,
                                     struct cellm_xh_val y);
struct cellm_xh_val cellm_xh_select(struct cellm_xh *b, struct cellm_xh_val pred,
                                    struct cellm_xh_val x, struct cellm_xh_val y);
/* optimization_barrier: x is computed once and read as stored by every consumer (no
 * recomputation inside fusions, so values compared for equality stay bit-identical). */
struct cellm_xh_val cellm_xh_barrier(struct cellm_xh *b, struct cellm_xh_val x);
/* Rows of a rank-2 table [V, C] picked by ids [T] (i32): [T, C]. */
struct cellm_xh_val cellm_xh_gather_rows(struct cellm_xh *b, struct cellm_xh_val table,
                                         struct cellm_xh_val ids);
/* Slice of `sizes` at runtime scalar starts (i32, one per dim). */
struct cellm_xh_val cellm_xh_dyn_slice(struct cellm_xh *b, struct cellm_xh_val x,
                                       const struct cellm_xh_val *starts, const int64_t *sizes);
struct cellm_xh_val cellm_xh_dyn_update(struct cellm_xh *b, struct cellm_xh_val x,
                                        struct cellm_xh_val upd, const struct cellm_xh_val *starts);

/* A while loop over n carried values (no nesting): cellm_xh_while writes the header and
 * returns in args the names the regions see the values by; the caller writes the
 * condition's ops on args, then cellm_xh_while_do(pred) (an i1 scalar), then the body's
 * ops, then cellm_xh_while_end with the n next values, which returns the loop's results.
 * Every value a region reads should be carried (passed through unchanged if it is
 * loop-invariant), so the module never relies on implicit capture. */
void cellm_xh_while(struct cellm_xh *b, int n, const struct cellm_xh_val *init,
                    struct cellm_xh_val *args);
void cellm_xh_while_do(struct cellm_xh *b, struct cellm_xh_val pred);
void cellm_xh_while_end(struct cellm_xh *b, const struct cellm_xh_val *next,
                        struct cellm_xh_val *results);

const char *cellm_xh_ty_name(enum cellm_xh_ty ty);

#endif
