/*
 * cuda_prof.c: per-phase timing of the steps (cellm_ctx_params.profile): events recorded
 * between the phases (graphs off), summed per phase for decode and prefill steps, and
 * returned by cellm_ctx_profile.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cuda_exec.h"

static const char *const ph_names[PH_N] = {"start",  "embed",   "norm", "qkv", "attention",
                                           "o-proj", "gate/up", "down", "moe", "head"};

/* Ends the phase ph of the current step (profiling only). */
void cellm_cuda_prof_mark(struct cu_ctx *c, int ph)
{
    struct cu_prof *p = c->prof;
    if (!p || p->n >= PROF_EVENTS) return;
    if (p->n == p->created) {
        if (cudaEventCreate(&p->ev[p->n]) != cudaSuccess) return;
        p->created++;
    }
    if (cudaEventRecord(p->ev[p->n], c->st) == cudaSuccess) p->ph[p->n++] = ph;
}

/* After the step's sync: adds each phase's time to the totals of its kind of step. */
void cellm_cuda_prof_collect(struct cu_ctx *c, int prefill)
{
    struct cu_prof *p = c->prof;
    if (!p) return;
    /* the first step of each kind warms up (cuBLAS heuristics, first launches): not counted */
    if (!p->warm[prefill]) {
        p->warm[prefill] = 1;
        p->n = 0;
        return;
    }
    for (int i = 1; i < p->n; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, p->ev[i - 1], p->ev[i]) == cudaSuccess)
            p->ms[prefill][p->ph[i]] += ms;
    }
    p->steps[prefill]++;
    p->n = 0;
}

void cellm_cuda_profile(void *p, struct cellm_profile *out)
{
    const struct cu_prof *pr = ((struct cu_ctx *)p)->prof;
    if (!pr) return;
    _Static_assert(PH_N - 1 <= CELLM_PROFILE_PHASES, "profile phases");
    out->n_phases = PH_N - 1; /* "start" only marks the step's beginning */
    for (int i = 1; i < PH_N; i++) {
        out->phase[i - 1] = ph_names[i];
        for (int k = 0; k < 2; k++)
            out->ms[k][i - 1] = pr->ms[k][i];
    }
    out->steps[0] = pr->steps[0];
    out->steps[1] = pr->steps[1];
}
