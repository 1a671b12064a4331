/*
 * ops.c: the reference-rounding elementwise operations (see ops.h and the numeric
 * contract in docs/design.md). Reductions (sums for norms and softmax) may use any order.
 */
#include "ops.h"

#include <math.h>

void cellm_op_norm(enum cellm_norm_kind kind, float eps, const struct cellm_vec *w,
                   const struct cellm_vec *b, const float *x, float *out, int64_t n)
{
    if (kind == CELLM_NORM_LAYER) {
        double s = 0;
        for (int64_t i = 0; i < n; i++)
            s += x[i];
        float mean = (float)(s / (double)n);
        double v = 0;
        for (int64_t i = 0; i < n; i++) {
            float d = x[i] - mean;
            v += (double)d * d;
        }
        float var = (float)(v / (double)n);
        float rstd = 1.0f / sqrtf(var + eps);
        for (int64_t i = 0; i < n; i++) {
            float y = (x[i] - mean) * rstd;
            if (w->fmt != CELLM_W_NONE) y = y * cellm_vec_at(w, i);
            if (b && b->fmt != CELLM_W_NONE) y = y + cellm_vec_at(b, i);
            out[i] = y;
        }
        return;
    }
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float var = (float)(ss / (double)n);
    if (kind == CELLM_NORM_RMS_DIV) { /* Gemma 3n: x / sqrt(mean + eps), then * w */
        float root = sqrtf(var + eps);
        for (int64_t i = 0; i < n; i++) {
            float y = x[i] / root;
            out[i] = w->fmt == CELLM_W_NONE ? y : y * cellm_vec_at(w, i);
        }
        return;
    }
    float r = 1.0f / sqrtf(var + eps);
    for (int64_t i = 0; i < n; i++) {
        float y = x[i] * r;
        float wi = cellm_vec_at(w, i);
        out[i] = kind == CELLM_NORM_RMS_PLUS_ONE ? y * (1.0f + wi) : wi * y;
    }
}

void cellm_op_rope(float *x, int rot, const float *inv_freq, int32_t pos)
{
    cellm_op_rope_scaled(x, rot, inv_freq, 1.0f, pos);
}

void cellm_op_rope_scaled(float *x, int rot, const float *inv_freq, float attn, int32_t pos)
{
    int half = rot / 2;
    float p = (float)pos;
    for (int i = 0; i < half; i++) {
        float angle = inv_freq[i] * p;
        /* transformers: cos = emb.cos() * attention_scaling, in f32 (exact when it is 1) */
        float c = cosf(angle) * attn, s = sinf(angle) * attn;
        float a = x[i], b = x[i + half];
        float ac = a * c, bs = b * s, bc = b * c, as = a * s;
        x[i] = ac - bs;
        x[i + half] = bc + as;
    }
}

void cellm_op_glu(enum cellm_act act, float *gate, const float *up, int64_t n)
{
    switch (act) {
    case CELLM_ACT_SILU:
        for (int64_t i = 0; i < n; i++) {
            float g = gate[i];
            float s = g / (1.0f + expf(-g));
            gate[i] = s * up[i];
        }
        break;
    case CELLM_ACT_GELU_TANH: {
        const float beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
        for (int64_t i = 0; i < n; i++) {
            float g = gate[i];
            float cube = (g * g) * g;
            float inner = beta * (g + kappa * cube);
            float y = (0.5f * g) * (1.0f + tanhf(inner));
            gate[i] = y * up[i];
        }
        break;
    }
    case CELLM_ACT_GELU:
        for (int64_t i = 0; i < n; i++) {
            float g = gate[i];
            float y = g * 0.5f * (1.0f + erff(g * (float)M_SQRT1_2));
            gate[i] = y * up[i];
        }
        break;
    }
}

void cellm_op_softcap(float *x, int64_t n, float c)
{
    for (int64_t i = 0; i < n; i++) {
        float t = x[i] / c;
        x[i] = c * tanhf(t);
    }
}

void cellm_op_softmax(float *x, int64_t n)
{
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = 1.0f / (float)s;
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] * inv;
}

void cellm_op_softmax_sink(float *x, int64_t n, float sink)
{
    float m = sink;
    for (int64_t i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    double s = expf(sink - m);
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = 1.0f / (float)s;
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] * inv;
}

void cellm_op_swiglu_clamp(const float *gate, const float *up, int64_t stride, float *out,
                           int64_t n, float alpha, float limit)
{
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i * stride], u = up[i * stride];
        /* torch.clamp: min(gate, limit) only above; up on both sides */
        g = g > limit ? limit : g;
        u = u > limit ? limit : u < -limit ? -limit : u;
        float t = g * alpha;
        float sig = 1.0f / (1.0f + expf(-t));
        float glu = g * sig;
        out[i] = (u + 1.0f) * glu;
    }
}

void cellm_op_add_vec(float *y, const struct cellm_vec *b, int64_t n)
{
    if (b->fmt == CELLM_W_NONE) return;
    for (int64_t i = 0; i < n; i++)
        y[i] = y[i] + cellm_vec_at(b, i);
}
