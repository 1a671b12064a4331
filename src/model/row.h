/*
 * row.h: one row of a forward step, a token of a sequence at a position: what the executors
 * evaluate (exec/exec.h) and what the sequence-state check reads (hybrid.h). It lives below
 * exec/ so that model/ can name a row without including the executor interface.
 */
#ifndef CELLM_MODEL_ROW_H
#define CELLM_MODEL_ROW_H

#include <stdint.h>

struct cellm_exec_row {
    int32_t token;
    int32_t seq; /* sequence index in [0, max_seqs) */
    int32_t pos; /* absolute position; rows of one sequence arrive in order */
    int32_t want_logits;
    /* the length the row's sequence reaches in this call (its last row's pos + 1): longrope
     * picks its factors from it once per call, as transformers does per forward
     * (cellm_layer_inv_freq) */
    int32_t seq_len;
};

#endif
