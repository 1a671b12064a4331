/*
 * xla.c: the OpenXLA executor's entry point. Until the StableHLO emitter and the PJRT
 * runner land, selecting it fails with a message that says what is missing.
 */
#include "base/error.h"
#include "exec/exec.h"

static enum cellm_status xla_model_new(const struct cellm_desc *d,
                                       const struct cellm_model_params *mp, void **dm,
                                       struct cellm_error *err)
{
    (void)d;
    (void)mp;
    *dm = NULL;
    return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                      "--device xla is not available in this build of cellm");
}

const struct cellm_exec_vt cellm_exec_xla = {
    .name = "xla",
    .model_new = xla_model_new,
};
