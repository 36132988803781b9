/* Convolution (few input channels), batch normalization and an ELU fused:
 * the first three layers of the seed network as one. Over the separate
 * kernels it saves two of the passes over the convolution's output A that
 * go to main memory: the batch statistics are summed from each image's A
 * while it is still in cache, and backward computes each image's dL/dA
 * into a small buffer and takes the convolution's weight gradient from it
 * at once, instead of writing dL/dA out and reading it back.
 *
 * One translation unit with the two kernels it joins (their functions are
 * static or have their own names), built as its own library.
 */
#include "conv2d_few_channels.c"
#include "batchnorm_elu.c"

/* Training forward: A = conv(X) (N, F, OH, OW), kept for backward; the
 * per-channel mean and 1 / sqrt(var + eps) of A (running statistics moved
 * towards them); Z = ELU(BN(A)). Returns 0, or -1 without memory for the
 * threads' sums (nothing written). */
int conv_batchnorm_elu_forward_train(
    const float *X, const float *Wt, const float *bias, float *A, float *Z, int64_t N,
    int64_t C, int64_t H, int64_t W, int64_t F, int64_t KH, int64_t KW, const float *gamma,
    const float *beta, const float *alpha, int64_t alpha_stride, double eps, double momentum,
    float *mean, float *invstd, float *running_mean, float *running_var, int nthreads) {
    const int64_t OH = H - KH + 1, OW = W - KW + 1, S = OH * OW;
    if (nthreads < 1) nthreads = 1;
    double *sums = calloc((size_t)nthreads * (size_t)(2 * F), sizeof(double));
    if (!sums) return -1;
#pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        double *s1 = sums + (int64_t)t * 2 * F, *s2 = s1 + F;
        for (int64_t n = N * t / nt; n < N * (t + 1) / nt; n++) {
            float *a = A + n * F * S;
            forward_image(X + n * C * H * W, Wt, bias, a, C, H, W, F, KH, KW);
            for (int64_t f = 0; f < F; f++) {       /* shifted by the bias: A's likely mean */
                const float shift = bias ? bias[f] : 0.0f, *af = a + f * S;
                float r1 = 0.0f, r2 = 0.0f;
#pragma omp simd reduction(+ : r1, r2)
                for (int64_t s = 0; s < S; s++) {
                    const float d = af[s] - shift;
                    r1 += d;
                    r2 += d * d;
                }
                s1[f] += r1;
                s2[f] += r2;
            }
        }
    }
    const double m = (double)(N * S);
    for (int64_t f = 0; f < F; f++) {
        double t1 = 0.0, t2 = 0.0;
        for (int t = 0; t < nthreads; t++) {
            t1 += sums[(int64_t)t * 2 * F + f];
            t2 += sums[(int64_t)t * 2 * F + F + f];
        }
        const double dm = t1 / m, v0 = t2 / m - dm * dm, var = v0 > 0.0 ? v0 : 0.0;
        const double mu = (bias ? bias[f] : 0.0) + dm;
        keep_statistics(f, mu, var, m, eps, momentum, mean, invstd, running_mean, running_var);
    }
    free(sums);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t f = 0; f < F; f++) {
        const double a = gamma[f] * (double)invstd[f];
        normalize_activate(A, Z, N, F, S, f, (float)a, (float)(beta[f] - a * mean[f]),
                           alpha[f * alpha_stride]);
    }
    return 0;
}

/* Backward to the learnables (the convolution's input needs no derivative:
 * the first layer): batch normalization's and the ELU's from the
 * per-channel sums (pass 1, as batchnorm_elu_backward), then per image
 * dL/dA into a buffer and the convolution's dL/dW, dL/db from it. Z may be
 * NULL (e^y recomputed). Returns 0, or -1 without memory (nothing written). */
int conv_batchnorm_elu_backward(
    const float *X, const float *A, const float *Z, const float *dZ, float *dW, float *db,
    int64_t N, int64_t C, int64_t H, int64_t W, int64_t F, int64_t KH, int64_t KW,
    const float *gamma, const float *beta, const float *alpha, int64_t alpha_stride,
    const float *mean, const float *invstd, float *dgamma, float *dbeta, float *dalpha,
    int nthreads) {
    const int64_t OH = H - KH + 1, OW = W - KW + 1, S = OH * OW, nw = F * C * KH * KW;
    if (nthreads < 1) nthreads = 1;
    float *k = malloc((size_t)(3 * F) * sizeof(float));
    double *sums = calloc((size_t)nthreads * (size_t)(nw + F), sizeof(double));
    float *buffers = malloc((size_t)nthreads * (size_t)(F * S) * sizeof(float));
    if (!k || !sums || !buffers) {
        free(k); free(sums); free(buffers);
        return -1;
    }
    backward_channels(A, Z, dZ, NULL, N, F, S, gamma, beta, alpha, alpha_stride, mean, invstd,
                      dgamma, dbeta, dalpha, k, k + F, k + 2 * F, nthreads);
#pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        double *dw = sums + (int64_t)t * (nw + F), *dbt = dw + nw;
        float *dA = buffers + (int64_t)t * F * S;
        for (int64_t n = N * t / nt; n < N * (t + 1) / nt; n++) {
            for (int64_t f = 0; f < F; f++) {
                const int64_t o = (n * F + f) * S;
                const float a = gamma[f] * invstd[f], b = beta[f] - a * mean[f];
                row_input_grad(A + o, Z ? Z + o : NULL, dZ + o, dA + f * S, S, a, b,
                               alpha[f * alpha_stride], k[f], k[F + f], k[2 * F + f]);
            }
            weight_grad_image(X + n * C * H * W, dA, dw, dbt, C, H, W, F, KH, KW);
        }
    }
    for (int64_t i = 0; i < nw + F; i++) {
        double s = 0.0;
        for (int t = 0; t < nthreads; t++) s += sums[(int64_t)t * (nw + F) + i];
        if (i < nw) dW[i] = (float)s;
        else db[i - nw] = (float)s;
    }
    free(k); free(sums); free(buffers);
    return 0;
}
