/*
 * dequant.h: the quantized formats of docs/formats.md (mxfp4, mxfp8, nvfp4, FP8 blocks,
 * GPTQ, AWQ) in the XLA executor: uploaded in their stored form and dequantized inside
 * the StableHLO graph, bit for bit as cellm_weight_row (src/model/weight.c) computes them.
 *
 * Parameters of a weight `base` (X = the stored bytes, unchanged; E = experts, absent for
 * a plain matrix):
 *     mxfp4, nvfp4  base_q ui8 [E, rows, cols/2]   base_s ui8 [E, rows, cols/group]
 *     mxfp8         base_q ui8 [E, rows, cols]     base_s ui8 [E, rows, cols/32]
 *     FP8 blocks    base_q ui8 [E, rows, cols]     base_s f32|bf16|f16 [E, SR, ceil(cols/bk)]
 *                   (SR: the scale rows that cover the view's stored rows)
 *     GPTQ          base_q ui32 [E, cols*bits/32, rows]  base_z ui32 [E, ngroups, ZW]
 *                   base_s f16|bf16|f32 [E, ngroups, rows]  base_g i32 [E, cols] (g_idx)
 *     AWQ           base_q ui32 [E, cols, ZW]  base_z ui32 [E, ngroups, ZW]
 *                   base_s [E, ngroups, rows]
 * GPTQ/AWQ store their codes column-packed; a view of rows [r_off, r_off + rows) of the
 * stored matrix (fused q/k/v, gate/up) uploads only the words that hold those rows (ZW
 * words per stored row of zeros or AWQ codes, copied out of the checkpoint unchanged) and
 * the graph drops the codes of neighbouring rows after unpacking them.
 */
#ifndef CELLM_EXEC_XLA_DEQUANT_H
#define CELLM_EXEC_XLA_DEQUANT_H

#include "exec/xla/emit.h"

/* Whether the executor uploads this format packed and dequantizes it in the graph
 * (every quantized format; the float formats are uploaded as they are). */
static inline int cellm_xla_fmt_packed(enum cellm_wfmt f)
{
    return f >= CELLM_W_MXFP4 && f <= CELLM_W_AWQ;
}

/* Registers the parameters of ws[0..ne) (ne 0: one plain matrix ws[0]) in a format with
 * cellm_xla_fmt_packed, under the names above. The experts must share format, shape,
 * group, scale type and row offset within their blocks (UNSUPPORTED otherwise). */
enum cellm_status cellm_xla_plan_packed(struct cellm_xla_plan *p, const char *base,
                                        const struct cellm_weight *ws, int ne,
                                        struct cellm_error *err);

/* The f32 value [E?, rows, cols] of the packed weight `base` (w: its first expert), from
 * the declared parameters pv[] of plan p. Invalid value (and the builder's error) if a
 * parameter is missing. */
struct cellm_xh_val cellm_xla_dequant_packed(struct cellm_xh *b, const struct cellm_xla_plan *p,
                                             const struct cellm_xh_val *pv, const char *base,
                                             const struct cellm_weight *w);

/* Rows ids[T] (i32) of the packed plain matrix `base` as f32 [T, cols]: only those rows
 * are decoded where the format's rows are independent (mx formats, FP8 blocks). */
struct cellm_xh_val cellm_xla_dequant_rows(struct cellm_xh *b, const struct cellm_xla_plan *p,
                                           const struct cellm_xh_val *pv, const char *base,
                                           const struct cellm_weight *w, struct cellm_xh_val ids);

#endif
