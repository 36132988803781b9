/* Batch normalization followed by an ELU (or a ReLU: alpha = 0), fused:
 * one pass for the statistics and one for the output in training, two
 * passes backward, instead of the dozen that the two layers take as
 * separate PyTorch ops (layerlab/layers/fused.py documents the formulas).
 *
 * Tensors are float32, contiguous, viewed as (N, C, S): S = H*W for images,
 * 1 for features. Work is split over channels (each channel's statistics
 * are its own), so the results do not depend on the number of threads.
 * Built by layerlab/kernels/build.py with the system C compiler and loaded
 * with ctypes; the OpenMP runtime is the one PyTorch already loaded.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* below this many values a call runs on one thread: waking the others costs
 * more than the work (a 100 x 100 feature batch) */
#define PARALLEL_MIN 65536

/* e^x for x <= 0 (x < -87 gives e^-87, whose ELU value is -alpha to float
 * precision), vectorizable: x = (r + f) / log2(e) with r an integer and
 * |f| <= 1/2, e^x = 2^r e^(f ln 2), the last by its Taylor series to the
 * 7th power (relative error below 6e-9 on |f ln 2| <= 0.347). A NaN stays
 * NaN (through the polynomial). */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    float t = x * 1.44269504088896341f;
    float r = (t + 12582912.0f) - 12582912.0f;     /* round to nearest: 1.5 * 2^23 */
    float u = (t - r) * 0.693147180559945309f;
    float p = 1.0f / 5040.0f;
    p = p * u + 1.0f / 720.0f;
    p = p * u + 1.0f / 120.0f;
    p = p * u + 1.0f / 24.0f;
    p = p * u + 1.0f / 6.0f;
    p = p * u + 0.5f;
    p = p * u + 1.0f;
    p = p * u + 1.0f;
    int32_t bits = ((int32_t)r + 127) << 23;         /* 2^r, r in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Per-channel mean and 1 / sqrt(var + eps) of X (N, C, S), and the running
 * statistics moved towards them: shifted sums (by the channel's first value)
 * in double, so that a large mean does not cancel the variance. */
static void channel_statistics(const float *X, int64_t N, int64_t C, int64_t S, int64_t c,
                               double *mean, double *var) {
    const float shift = X[c * S];
    double sum = 0.0, sumsq = 0.0;
    for (int64_t n = 0; n < N; n++) {
        const float *x = X + (n * C + c) * S;
        float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t s = 0; s < S; s++) {
            float d = x[s] - shift;
            s1 += d;
            s2 += d * d;
        }
        sum += s1;
        sumsq += s2;
    }
    const double m = (double)(N * S);
    const double dm = sum / m;
    *mean = shift + dm;
    double v = sumsq / m - dm * dm;
    *var = v > 0.0 ? v : 0.0;
}

/* Channel c's batch statistics kept (mean, 1 / sqrt(var + eps)) and the
 * running ones moved towards them as torch.batch_norm moves them (weighted
 * by momentum, the variance unbiased over m values); returns 1 / sqrt(var + eps). */
static double keep_statistics(int64_t c, double mu, double var, double m, double eps,
                              double momentum, float *mean, float *invstd, float *running_mean,
                              float *running_var) {
    const double istd = 1.0 / sqrt(var + eps);
    mean[c] = (float)mu;
    invstd[c] = (float)istd;
    if (running_mean) {
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mu);
        running_var[c] = (float)((1.0 - momentum) * running_var[c]
                                 + momentum * var * m / (m - 1.0));
    }
    return istd;
}

/* Z = ELU(a X + b) per channel, a = gamma / sqrt(var + eps), b = beta - a mean. */
static void normalize_activate(const float *X, float *Z, int64_t N, int64_t C, int64_t S,
                               int64_t c, float a, float b, float alpha) {
    for (int64_t n = 0; n < N; n++) {
        const float *x = X + (n * C + c) * S;
        float *z = Z + (n * C + c) * S;
#pragma omp simd
        for (int64_t s = 0; s < S; s++) {
            float y = a * x[s] + b;
            float e = exp_nonpositive(y > 0.0f ? 0.0f : y);
            z[s] = y > 0.0f ? y : alpha * (e - 1.0f);
        }
    }
}


/* Features (S = 1): each row holds one value of every channel, so the
 * loops run over rows with the channels inner (vectorized), on one thread
 * (feature batches are small), with per-channel sums in arrays. The
 * forward is three steps (sums over the rows, per-channel coefficients from
 * the sums, the rows' outputs from the coefficients), so that the chain
 * kernel can split the rows between threads and add their sums up between
 * the first and the second step. */

/* Forward, step 1: s1, s2 (C each) = the sums over N rows of (x - shift)
 * and its square, shift = the first row (so that a large mean does not
 * cancel the variance). */
static void features_sums(const float *X, int64_t N, int64_t C, double *s1, double *s2) {
    memset(s1, 0, (size_t)C * sizeof(double));
    memset(s2, 0, (size_t)C * sizeof(double));
    for (int64_t n = 0; n < N; n++) {
        const float *x = X + n * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
            const double d = (double)x[c] - (double)X[c];
            s1[c] += d;
            s2[c] += d * d;
        }
    }
}

/* Forward, step 2: from the sums over m rows shifted by shift, the
 * statistics (kept, and the running ones moved, when keep) and the
 * coefficients of y = a x + b and the ELU's alpha (al). */
static void features_coefficients(const float *shift, const double *s1, const double *s2,
                                  double m, int64_t C, const float *gamma, const float *beta,
                                  const float *alpha, int64_t alpha_stride, double eps,
                                  double momentum, int keep, float *mean, float *invstd,
                                  float *running_mean, float *running_var, float *a, float *b,
                                  float *al) {
    for (int64_t c = 0; c < C; c++) {
        const double dm = s1[c] / m, v0 = s2[c] / m - dm * dm, var = v0 > 0.0 ? v0 : 0.0;
        const double mu = shift[c] + dm;
        const double istd = keep ? keep_statistics(c, mu, var, m, eps, momentum, mean, invstd,
                                                   running_mean, running_var)
                                 : 1.0 / sqrt(var + eps);
        a[c] = (float)(gamma[c] * istd);
        b[c] = (float)(beta[c] - gamma[c] * istd * mu);
        al[c] = alpha[c * alpha_stride];
    }
}

/* Forward, step 3: Z = ELU(a X + b) for N rows. */
static void features_normalize(const float *X, float *Z, int64_t N, int64_t C, const float *a,
                               const float *b, const float *al) {
    for (int64_t n = 0; n < N; n++) {
        const float *x = X + n * C;
        float *z = Z + n * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
            float y = a[c] * x[c] + b[c];
            float e = exp_nonpositive(y > 0.0f ? 0.0f : y);
            z[c] = y > 0.0f ? y : al[c] * (e - 1.0f);
        }
    }
}

static int features_forward_train(const float *X, float *Z, int64_t N, int64_t C,
                                  const float *gamma, const float *beta, const float *alpha,
                                  int64_t alpha_stride, double eps, double momentum,
                                  float *mean, float *invstd, float *running_mean,
                                  float *running_var) {
    double *sums = malloc((size_t)(2 * C) * sizeof(double));
    float *ab = malloc((size_t)(3 * C) * sizeof(float));
    if (!sums || !ab) { free(sums); free(ab); return -1; }
    features_sums(X, N, C, sums, sums + C);
    features_coefficients(X, sums, sums + C, (double)N, C, gamma, beta, alpha, alpha_stride,
                          eps, momentum, 1, mean, invstd, running_mean, running_var, ab,
                          ab + C, ab + 2 * C);
    features_normalize(X, Z, N, C, ab, ab + C, ab + 2 * C);
    free(sums);
    free(ab);
    return 0;
}

static int features_backward(const float *X, const float *dZ, float *dX, int64_t N, int64_t C,
                             const float *gamma, const float *beta, const float *alpha,
                             int64_t alpha_stride, const float *mean, const float *invstd,
                             float *dgamma, float *dbeta, float *dalpha) {
    float *buf = calloc((size_t)(9 * C), sizeof(float));
    if (!buf) return -1;
    float *a = buf, *b = buf + C, *s1 = buf + 2 * C, *s2 = buf + 3 * C, *s3 = buf + 4 * C;
    float *k1 = buf + 5 * C, *k2 = buf + 6 * C, *k3 = buf + 7 * C, *al = buf + 8 * C;
    for (int64_t c = 0; c < C; c++) {
        a[c] = gamma[c] * invstd[c];
        b[c] = beta[c] - a[c] * mean[c];
        al[c] = alpha[c * alpha_stride];
    }
    for (int64_t n = 0; n < N; n++) {
        const float *x = X + n * C, *dz = dZ + n * C;
        float *dy_out = dX ? dX + n * C : NULL;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
            float y = a[c] * x[c] + b[c];
            float e = exp_nonpositive(y > 0.0f ? 0.0f : y);
            float dy = y > 0.0f ? dz[c] : dz[c] * al[c] * e;
            if (dy_out) dy_out[c] = dy;
            s1[c] += dy;
            s2[c] += dy * (x[c] - mean[c]);
            s3[c] += y > 0.0f ? 0.0f : dz[c] * (e - 1.0f);
        }
    }
    const double m = (double)N;
    for (int64_t c = 0; c < C; c++) {
        const double sdx = (double)s2[c] * invstd[c];
        dbeta[c] = s1[c];
        dgamma[c] = (float)sdx;
        dalpha[c] = s3[c];
        const double k = (double)gamma[c] * invstd[c], kk2 = -k * invstd[c] * sdx / m;
        k1[c] = (float)k;
        k2[c] = (float)kk2;
        k3[c] = (float)(-k * s1[c] / m - kk2 * mean[c]);
    }
    if (dX)
        for (int64_t n = 0; n < N; n++) {
            const float *x = X + n * C;
            float *dx = dX + n * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) dx[c] = k1[c] * dx[c] + k2[c] * x[c] + k3[c];
        }
    free(buf);
    return 0;
}

/* Training forward. mean, invstd: (C,) outputs kept for backward;
 * running_mean, running_var: (C,) updated in place as torch.batch_norm does
 * (momentum-weighted, the variance unbiased). alpha_stride 0: one alpha. */
void batchnorm_elu_forward_train(const float *X, float *Z, int64_t N, int64_t C, int64_t S,
                                 const float *gamma, const float *beta, const float *alpha,
                                 int64_t alpha_stride, double eps, double momentum,
                                 float *mean, float *invstd, float *running_mean,
                                 float *running_var, int nthreads) {
    if (S == 1 && features_forward_train(X, Z, N, C, gamma, beta, alpha, alpha_stride, eps,
                                         momentum, mean, invstd, running_mean,
                                         running_var) == 0)
        return;
    const double m = (double)(N * S);
#pragma omp parallel for num_threads(nthreads) schedule(static) if (N * C * S >= PARALLEL_MIN)
    for (int64_t c = 0; c < C; c++) {
        double mu, var;
        channel_statistics(X, N, C, S, c, &mu, &var);
        const double istd = keep_statistics(c, mu, var, m, eps, momentum, mean, invstd,
                                            running_mean, running_var);
        const double a = gamma[c] * istd;
        normalize_activate(X, Z, N, C, S, c, (float)a, (float)(beta[c] - a * mu),
                           alpha[c * alpha_stride]);
    }
}

/* Inference: the running statistics instead of the batch's. */
void batchnorm_elu_forward_eval(const float *X, float *Z, int64_t N, int64_t C, int64_t S,
                                const float *gamma, const float *beta, const float *alpha,
                                int64_t alpha_stride, double eps, const float *running_mean,
                                const float *running_var, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (N * C * S >= PARALLEL_MIN)
    for (int64_t c = 0; c < C; c++) {
        const double a = gamma[c] / sqrt((double)running_var[c] + eps);
        normalize_activate(X, Z, N, C, S, c, (float)a, (float)(beta[c] - a * running_mean[c]),
                           alpha[c * alpha_stride]);
    }
}

/* Backward, pass 1 for channel c: the sums of dL/dy, dL/dy (x - mean) and
 * the ELU's dL/dalpha, with a = gamma invstd and b = beta - a mean.
 * Given the forward's output Z and alpha > 0, the ELU's derivative comes
 * from it: Z > 0 exactly where y > 0 (the forward's own branch), alpha e^y =
 * Z + alpha where y <= 0 (as PyTorch's elu_backward computes it from the
 * result) and e^y - 1 = Z / alpha, so no exponential is computed again;
 * otherwise y and e^y are recomputed from X. */
static void channel_backward_sums(const float *X, const float *Z, const float *dZ, int64_t N,
                                  int64_t C, int64_t S, int64_t c, float a, float b, float mu,
                                  float al, double *sum_dy, double *sum_dy_xc,
                                  double *sum_dalpha) {
    const int from_z = Z && al > 0.0f;
    double t1 = 0.0, t2 = 0.0, t3 = 0.0;
    for (int64_t n = 0; n < N; n++) {
        const int64_t o = (n * C + c) * S;
        const float *x = X + o, *dz = dZ + o, *z = from_z ? Z + o : NULL;
        float s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        if (from_z) {
#pragma omp simd reduction(+ : s1, s2, s3)
            for (int64_t s = 0; s < S; s++) {
                const int pos = z[s] > 0.0f;
                float dy = pos ? dz[s] : dz[s] * (z[s] + al);
                s1 += dy;
                s2 += dy * (x[s] - mu);
                s3 += pos ? 0.0f : dz[s] * z[s];
            }
        } else {
#pragma omp simd reduction(+ : s1, s2, s3)
            for (int64_t s = 0; s < S; s++) {
                float y = a * x[s] + b;
                float e = exp_nonpositive(y > 0.0f ? 0.0f : y);
                float dy = y > 0.0f ? dz[s] : dz[s] * al * e;
                s1 += dy;
                s2 += dy * (x[s] - mu);
                s3 += y > 0.0f ? 0.0f : dz[s] * (e - 1.0f);
            }
        }
        t1 += s1;
        t2 += s2;
        t3 += s3;
    }
    *sum_dy = t1;
    *sum_dy_xc = t2;
    *sum_dalpha = from_z ? t3 / al : t3;
}

/* Backward, pass 2 for one row of S values of one channel:
 * dX = k (dy - sum_dy / m - xhat sum_dy_xhat / m) = k dy + k2 x + k3, with
 * dy computed again (cheaper than writing it out and reading it back). */
static inline void row_input_grad(const float *x, const float *z, const float *dz, float *dx,
                                  int64_t S, float a, float b, float al, float k, float k2,
                                  float k3) {
    if (z && al > 0.0f) {
#pragma omp simd
        for (int64_t s = 0; s < S; s++) {
            float dy = z[s] > 0.0f ? dz[s] : dz[s] * (z[s] + al);
            dx[s] = k * dy + k2 * x[s] + k3;
        }
    } else {
#pragma omp simd
        for (int64_t s = 0; s < S; s++) {
            float y = a * x[s] + b;
            float e = exp_nonpositive(y > 0.0f ? 0.0f : y);
            float dy = y > 0.0f ? dz[s] : dz[s] * al * e;
            dx[s] = k * dy + k2 * x[s] + k3;
        }
    }
}

/* Pass 1 for every channel (channel-parallel), the parameter derivatives
 * from its sums, and pass 2's coefficients k, k2, k3 (arrays of C, or
 * NULL). With dX, pass 2 follows each channel's pass 1 at once, while the
 * channel's values are still in cache. */
static void backward_channels(const float *X, const float *Z, const float *dZ, float *dX,
                              int64_t N, int64_t C, int64_t S, const float *gamma,
                              const float *beta, const float *alpha, int64_t alpha_stride,
                              const float *mean, const float *invstd, float *dgamma,
                              float *dbeta, float *dalpha, float *k1, float *k2, float *k3,
                              int nthreads) {
    const double m = (double)(N * S);
#pragma omp parallel for num_threads(nthreads) schedule(static) if (N * C * S >= PARALLEL_MIN)
    for (int64_t c = 0; c < C; c++) {
        const float istd = invstd[c], mu = mean[c], g = gamma[c], al = alpha[c * alpha_stride];
        const float a = g * istd, b = beta[c] - a * mu;
        double sum_dy, sum_dy_xc, sum_dalpha;
        channel_backward_sums(X, Z, dZ, N, C, S, c, a, b, mu, al, &sum_dy, &sum_dy_xc,
                              &sum_dalpha);
        const double sum_dy_xhat = sum_dy_xc * istd;
        dbeta[c] = (float)sum_dy;
        dgamma[c] = (float)sum_dy_xhat;
        dalpha[c] = (float)sum_dalpha;
        const double k = (double)g * istd, kk2 = -k * istd * sum_dy_xhat / m;
        const float kf = (float)k, k2f = (float)kk2, k3f = (float)(-k * sum_dy / m - kk2 * mu);
        if (k1) {
            k1[c] = kf;
            k2[c] = k2f;
            k3[c] = k3f;
        }
        if (dX)
            for (int64_t n = 0; n < N; n++) {
                const int64_t o = (n * C + c) * S;
                row_input_grad(X + o, Z ? Z + o : NULL, dZ + o, dX + o, S, a, b, al, kf, k2f,
                               k3f);
            }
    }
}

/* Backward. With y = gamma xhat + beta, xhat = (x - mean) invstd:
 *   dL/dy     = dL/dZ (1 where y > 0, else alpha e^y)
 *   dL/dalpha = sum dL/dZ (e^min(y, 0) - 1)
 *   dL/dbeta  = sum dL/dy,   dL/dgamma = sum dL/dy xhat
 *   dL/dX     = gamma invstd (dL/dy - dL/dbeta / m - xhat dL/dgamma / m)
 * Z (the forward's output) may be NULL: y and e^y are then recomputed.
 * dX may be NULL (not needed); it may alias dZ. Sums are per channel. */
void batchnorm_elu_backward(const float *X, const float *Z, const float *dZ, float *dX,
                           int64_t N, int64_t C, int64_t S, const float *gamma,
                           const float *beta, const float *alpha, int64_t alpha_stride,
                           const float *mean, const float *invstd, float *dgamma, float *dbeta,
                           float *dalpha, int nthreads) {
    if (S == 1 && features_backward(X, dZ, dX, N, C, gamma, beta, alpha, alpha_stride, mean,
                                    invstd, dgamma, dbeta, dalpha) == 0)
        return;
    backward_channels(X, Z, dZ, dX, N, C, S, gamma, beta, alpha, alpha_stride, mean, invstd,
                      dgamma, dbeta, dalpha, NULL, NULL, NULL, nthreads);
}
