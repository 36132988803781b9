/* Fully connected layers with few outputs and a long input (the seed
 * network's 11520 -> 10): Z = X W^T + b and its derivatives, three products
 * whose short side (K <= 16 outputs) general matrix code (MKL, oneDNN) uses
 * poorly. Each keeps the short side's K rows in registers against a
 * 16-wide slice of the long side, so every product reads its big operand
 * (X, or writes dL/dX) once.
 *
 * X (N, D), W (K, D), G = dL/dZ (N, K), all float32 and contiguous; 1 <= K <= 16.
 */
#include <stdint.h>
#include <omp.h>

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
#define LOAD(p) (*(const v8u *)(p))
#define STORE(p, v) (*(v8u *)(p) = (v))

static inline float hsum(v8 v) {
    float s = 0.0f;
    for (int k = 0; k < 8; k++) s += v[k];
    return s;
}

/* Z[n, :] for one row n (K a compile-time constant: K accumulators). */
static inline __attribute__((always_inline)) void forward_row(
    const float *x, const float *W, const float *b, float *z, int64_t D, const int K) {
    v8 acc[16];
    for (int k = 0; k < K; k++) acc[k] = (v8){0};
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) {
        const v8 xv = LOAD(x + d);
        for (int k = 0; k < K; k++) acc[k] += xv * LOAD(W + k * D + d);
    }
    for (int k = 0; k < K; k++) {
        float s = hsum(acc[k]);
        for (int64_t e = d; e < D; e++) s += x[e] * W[k * D + e];
        z[k] = s + (b ? b[k] : 0.0f);
    }
}

/* dL/dX[:, d..d+16) (or a scalar tail) for all rows. */
static inline __attribute__((always_inline)) void input_grad_block(
    const float *G, const float *W, float *dX, int64_t N, int64_t D, int64_t d, const int K) {
    v8 w0[16], w1[16];
    for (int k = 0; k < K; k++) { w0[k] = LOAD(W + k * D + d); w1[k] = LOAD(W + k * D + d + 8); }
    for (int64_t n = 0; n < N; n++) {
        v8 a0 = (v8){0}, a1 = (v8){0};
        for (int k = 0; k < K; k++) {
            const float g = G[n * K + k];
            a0 += g * w0[k];
            a1 += g * w1[k];
        }
        STORE(dX + n * D + d, a0);
        STORE(dX + n * D + d + 8, a1);
    }
}

/* dL/dW[:, d..d+16) = G^T X[:, d..d+16). */
static inline __attribute__((always_inline)) void weight_grad_block(
    const float *G, const float *X, float *dW, int64_t N, int64_t D, int64_t d, const int K) {
    v8 a0[16], a1[16];
    for (int k = 0; k < K; k++) { a0[k] = (v8){0}; a1[k] = (v8){0}; }
    for (int64_t n = 0; n < N; n++) {
        const v8 x0 = LOAD(X + n * D + d), x1 = LOAD(X + n * D + d + 8);
        for (int k = 0; k < K; k++) {
            const float g = G[n * K + k];
            a0[k] += g * x0;
            a1[k] += g * x1;
        }
    }
    for (int k = 0; k < K; k++) { STORE(dW + k * D + d, a0[k]); STORE(dW + k * D + d + 8, a1[k]); }
}

#define SWITCH_K(CALL)                                                                    \
    switch (K) {                                                                          \
    case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break;               \
    case 4: CALL(4); break; case 5: CALL(5); break; case 6: CALL(6); break;               \
    case 7: CALL(7); break; case 8: CALL(8); break; case 9: CALL(9); break;               \
    case 10: CALL(10); break; case 11: CALL(11); break; case 12: CALL(12); break;         \
    case 13: CALL(13); break; case 14: CALL(14); break; case 15: CALL(15); break;         \
    default: CALL(16); break;                                                             \
    }

void dense_forward(const float *X, const float *W, const float *b, float *Z, int64_t N,
                   int64_t D, int64_t K, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
#define CALL(KK) forward_row(X + n * D, W, b, Z + n * K, D, KK)
        SWITCH_K(CALL)
#undef CALL
    }
}

void dense_input_grad(const float *G, const float *W, float *dX, int64_t N, int64_t D,
                      int64_t K, int nthreads) {
    const int64_t blocks = D / 16;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
#define CALL(KK) input_grad_block(G, W, dX, N, D, blk * 16, KK)
        SWITCH_K(CALL)
#undef CALL
    }
    for (int64_t n = 0; n < N; n++)            /* the last D % 16 columns */
        for (int64_t d = blocks * 16; d < D; d++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += G[n * K + k] * W[k * D + d];
            dX[n * D + d] = s;
        }
}

void dense_weight_grad(const float *G, const float *X, float *dW, int64_t N, int64_t D,
                       int64_t K, int nthreads) {
    const int64_t blocks = D / 16;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
#define CALL(KK) weight_grad_block(G, X, dW, N, D, blk * 16, KK)
        SWITCH_K(CALL)
#undef CALL
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t d = blocks * 16; d < D; d++) {
            float s = 0.0f;
            for (int64_t n = 0; n < N; n++) s += G[n * K + k] * X[n * D + d];
            dW[k * D + d] = s;
        }
}
