/* 2-d convolution for images with few channels (the first layer of a
 * network: 1-4 input channels), stride 1, no padding (the caller pads):
 * the forward and the weight (and bias) gradient, the two a first layer
 * needs. For so few input channels a product over all of them is only
 * K*K*C long, which general convolution code (oneDNN, im2col + GEMM) uses
 * poorly; here each output row of up to 24 values stays in registers for
 * 4 filters at once and every loaded input vector serves all 4.
 *
 * X (N, C, H, W), weights (F, C, KH, KW), Z and G (N, F, OH, OW), all
 * float32 and contiguous; OH = H - KH + 1, OW = W - KW + 1. Images are
 * split over the threads; the weight gradient sums each thread's images in
 * double and adds the threads' sums in a fixed order.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));  /* unaligned access */
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
#define LOAD(p) (*(const v8u *)(p))
#define STORE(p, v) (*(v8u *)(p) = (v))

static inline __attribute__((always_inline)) void forward_tile(
    const float *x, const float *w, const float *bias, float *z, int64_t C, int64_t H,
    int64_t W, int64_t KH, int64_t KW, int64_t OH, int64_t OW, int64_t f0, int64_t oh,
    int64_t ow, const int NF, const int NV) {
    const int64_t wf = C * KH * KW;                     /* one filter's weights */
    if (NV == 3) {
        /* 24 outputs as one 16-wide and one 8-wide vector: fewer
         * instructions than three 8-wide ones (1.5x faster here, where the
         * CPU has 512-bit vectors; the compiler splits them elsewhere) */
        v16 a16[4]; v8 a8[4];
        for (int a = 0; a < NF; a++) {
            a16[a] = (v16){0} + (bias ? bias[f0 + a] : 0.0f);
            a8[a] = (v8){0} + (bias ? bias[f0 + a] : 0.0f);
        }
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < KH; i++) {
                const float *xr = x + (c * H + oh + i) * W + ow;
                const float *wr = w + (f0 * C + c) * KH * KW + i * KW;
                for (int64_t j = 0; j < KW; j++) {
                    const v16 x16 = *(const v16u *)(xr + j);
                    const v8 x8 = LOAD(xr + j + 16);
                    for (int a = 0; a < NF; a++) {
                        const float ws = wr[a * wf + j];
                        a16[a] += ws * x16;
                        a8[a] += ws * x8;
                    }
                }
            }
        for (int a = 0; a < NF; a++) {
            float *zr = z + ((f0 + a) * OH + oh) * OW + ow;
            *(v16u *)zr = a16[a];
            STORE(zr + 16, a8[a]);
        }
        return;
    }
    v8 acc[4][3];
    for (int a = 0; a < NF; a++)
        for (int v = 0; v < NV; v++) acc[a][v] = (v8){0} + (bias ? bias[f0 + a] : 0.0f);
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < KH; i++) {
            const float *xr = x + (c * H + oh + i) * W + ow;
            const float *wr = w + (f0 * C + c) * KH * KW + i * KW;
            for (int64_t j = 0; j < KW; j++) {
                v8 xv[3];
                for (int v = 0; v < NV; v++) xv[v] = LOAD(xr + j + 8 * v);
                for (int a = 0; a < NF; a++) {
                    const float ws = wr[a * wf + j];
                    for (int v = 0; v < NV; v++) acc[a][v] += ws * xv[v];
                }
            }
        }
    for (int a = 0; a < NF; a++)
        for (int v = 0; v < NV; v++) STORE(z + ((f0 + a) * OH + oh) * OW + ow + 8 * v, acc[a][v]);
}

static void forward_scalar(const float *x, const float *w, const float *bias, float *z,
                           int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t OH,
                           int64_t OW, int64_t f, int64_t oh, int64_t ow) {
    float s = bias ? bias[f] : 0.0f;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < KH; i++)
            for (int64_t j = 0; j < KW; j++)
                s += w[((f * C + c) * KH + i) * KW + j] * x[(c * H + oh + i) * W + ow + j];
    z[(f * OH + oh) * OW + ow] = s;
}

/* One image: x (C, H, W) -> z (F, OH, OW). */
static void forward_image(const float *x, const float *Wt, const float *bias, float *z,
                          int64_t C, int64_t H, int64_t W, int64_t F, int64_t KH, int64_t KW) {
    const int64_t OH = H - KH + 1, OW = W - KW + 1;
    for (int64_t f0 = 0; f0 < F; f0 += 4) {
        const int four = F - f0 >= 4;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t ow = 0;
            for (; ow + 24 <= OW; ow += 24) {
                if (four) forward_tile(x, Wt, bias, z, C, H, W, KH, KW, OH, OW, f0, oh, ow, 4, 3);
                else for (int64_t f = f0; f < F; f++)
                    forward_tile(x, Wt, bias, z, C, H, W, KH, KW, OH, OW, f, oh, ow, 1, 3);
            }
            for (; ow + 8 <= OW; ow += 8) {
                if (four) forward_tile(x, Wt, bias, z, C, H, W, KH, KW, OH, OW, f0, oh, ow, 4, 1);
                else for (int64_t f = f0; f < F; f++)
                    forward_tile(x, Wt, bias, z, C, H, W, KH, KW, OH, OW, f, oh, ow, 1, 1);
            }
            for (; ow < OW; ow++)
                for (int64_t f = f0; f < F && f < f0 + 4; f++)
                    forward_scalar(x, Wt, bias, z, C, H, W, KH, KW, OH, OW, f, oh, ow);
        }
    }
}

void conv2d_forward(const float *X, const float *Wt, const float *bias, float *Z, int64_t N,
                    int64_t C, int64_t H, int64_t W, int64_t F, int64_t KH, int64_t KW,
                    int nthreads) {
    const int64_t OH = H - KH + 1, OW = W - KW + 1;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t n = 0; n < N; n++)
        forward_image(X + n * C * H * W, Wt, bias, Z + n * F * OH * OW, C, H, W, F, KH, KW);
}

static inline float hsum(v8 v) {
    float s = 0.0f;
    for (int k = 0; k < 8; k++) s += v[k];
    return s;
}

/* dW[f0..f0+NF, c, i, :] and (i == 0, c == 0) db[f0..] of one image, added
 * to the thread's double sums. KW is a compile-time constant here (the
 * accumulators acc[a][j] live in registers). */
static inline __attribute__((always_inline)) void weight_grad_rows(
    const float *x, const float *g, double *dw, double *db, int64_t C, int64_t H, int64_t W,
    int64_t KH, int64_t OH, int64_t OW, int64_t f0, int64_t c, int64_t i, const int NF,
    const int KW) {
    v8 acc[4][7], gs[4];
    float tail[4][7], gtail[4];
    for (int a = 0; a < NF; a++) {
        gs[a] = (v8){0};
        gtail[a] = 0.0f;
        for (int j = 0; j < KW; j++) { acc[a][j] = (v8){0}; tail[a][j] = 0.0f; }
    }
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *xr = x + (c * H + oh + i) * W;
        const float *gr = g + (f0 * OH + oh) * OW;
        int64_t ow = 0;
        for (; ow + 8 <= OW; ow += 8) {
            v8 gv[4];
            for (int a = 0; a < NF; a++) gv[a] = LOAD(gr + a * OH * OW + ow);
            for (int j = 0; j < KW; j++) {
                const v8 xv = LOAD(xr + ow + j);
                for (int a = 0; a < NF; a++) acc[a][j] += gv[a] * xv;
            }
            for (int a = 0; a < NF; a++) gs[a] += gv[a];
        }
        for (; ow < OW; ow++)
            for (int a = 0; a < NF; a++) {
                const float gv = gr[a * OH * OW + ow];
                gtail[a] += gv;
                for (int j = 0; j < KW; j++) tail[a][j] += gv * xr[ow + j];
            }
    }
    for (int a = 0; a < NF; a++) {
        for (int j = 0; j < KW; j++)
            dw[(((f0 + a) * C + c) * KH + i) * KW + j] += (double)hsum(acc[a][j]) + tail[a][j];
        if (c == 0 && i == 0) db[f0 + a] += (double)hsum(gs[a]) + gtail[a];
    }
}

static void weight_grad_image(const float *x, const float *g, double *dw, double *db, int64_t C,
                              int64_t H, int64_t W, int64_t F, int64_t KH, int64_t KW) {
    const int64_t OH = H - KH + 1, OW = W - KW + 1;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < KH; i++)
            for (int64_t f0 = 0; f0 < F; f0 += 4) {
                const int four = F - f0 >= 4;
#define ROWS(KWC)                                                                         \
    if (four) weight_grad_rows(x, g, dw, db, C, H, W, KH, OH, OW, f0, c, i, 4, KWC);      \
    else for (int64_t f = f0; f < F; f++)                                                 \
        weight_grad_rows(x, g, dw, db, C, H, W, KH, OH, OW, f, c, i, 1, KWC);
                switch (KW) {
                case 1: ROWS(1) break;
                case 2: ROWS(2) break;
                case 3: ROWS(3) break;
                case 4: ROWS(4) break;
                case 5: ROWS(5) break;
                case 6: ROWS(6) break;
                default: ROWS(7) break;
                }
#undef ROWS
            }
}

/* dW (F, C, KH, KW) and db (F,) (db may be NULL); KW <= 7. Returns 0, or
 * -1 when memory for the threads' sums could not be had (nothing written). */
int conv2d_weight_grad(const float *X, const float *G, float *dW, float *db, int64_t N,
                       int64_t C, int64_t H, int64_t W, int64_t F, int64_t KH, int64_t KW,
                       int nthreads) {
    const int64_t OH = H - KH + 1, OW = W - KW + 1, nw = F * C * KH * KW;
    if (nthreads < 1) nthreads = 1;
    double *sums = calloc((size_t)nthreads * (size_t)(nw + F), sizeof(double));
    if (!sums) return -1;
#pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        double *dw = sums + (int64_t)t * (nw + F), *dbt = dw + nw;
        const int64_t lo = N * t / nt, hi = N * (t + 1) / nt;   /* this thread's images */
        for (int64_t n = lo; n < hi; n++)
            weight_grad_image(X + n * C * H * W, G + n * F * OH * OW, dw, dbt, C, H, W, F, KH, KW);
    }
    for (int64_t k = 0; k < nw + F; k++) {
        double s = 0.0;
        for (int t = 0; t < nthreads; t++) s += sums[(int64_t)t * (nw + F) + k];
        if (k < nw) dW[k] = (float)s;
        else if (db) db[k - nw] = (float)s;
    }
    free(sums);
    return 0;
}
