/* A chain of L blocks "fully connected -> batch normalization -> ELU" (the
 * experiments' deep MLP), forward and backward each in one call: the
 * products by the BLAS that PyTorch itself uses (its sgemm_, handed over
 * once by chain_set_sgemm), batch norm + ELU by batchnorm_elu.c. Called
 * once per step instead of three or four PyTorch ops and a Python layer per
 * block (layerlab/layers/fused_chain.py documents the formulas).
 *
 * Row-major (C) matrices are handed to the column-major (Fortran) sgemm as
 * their transposes: a row-major M (r x c) is a column-major M^T (c x r)
 * with leading dimension c.
 *
 * The chain may end in a plain fully connected layer, the head (H outputs,
 * weights H x K_L, bias H): Z = Z_L W_head^T + b_head.
 *
 * With two threads (or more) the forward runs on two, which split the
 * observations (rows) between them, as data parallelism does: each thread
 * computes its rows of every product and of batch norm + ELU, and the two
 * wait for each other once per block, where batch normalization needs sums
 * over all rows (the two threads' sums are added up in a fixed order, so
 * the results do not depend on timing). MKL runs single-threaded inside the
 * parallel region; the split gains 9-12% over MKL's own two threads on each
 * product. The backward splits its work differently (see chain_backward):
 * there the same data-parallel split measured no faster.
 *
 * Memory of one training step (ws, float32): for each block i with K_i
 * outputs, A_i (N x K_i, the product with the bias), then, but for a last
 * block without a head (whose output is the chain's Z), Z_i (N x K_i), then
 * mean_i and invstd_i (K_i each).
 */
#include <omp.h>

#include "batchnorm_elu.c"

typedef void (*sgemm_t)(const char *transa, const char *transb, const int *m, const int *n,
                        const int *k, const float *alpha, const float *a, const int *lda,
                        const float *b, const int *ldb, const float *beta, float *c,
                        const int *ldc);

static sgemm_t sgemm_fn = 0;

void chain_set_sgemm(void *fn) { sgemm_fn = (sgemm_t)fn; }

/* row-major C (m x n, row stride ldc) = beta C + A B with A (m x k) and
 * B (k x n), each possibly stored transposed (ta: A is stored k x m; tb: B
 * is stored n x k), lda and ldb the stored rows' strides */
static void gemm_ld(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                    int64_t ldc) {
    /* column-major: C^T (n x m) = B^T A^T */
    const char opb = tb ? 'T' : 'N', opa = ta ? 'T' : 'N';
    const int M = (int)n, Nn = (int)m, K = (int)k;
    const int la = (int)lda, lb = (int)ldb, lc = (int)ldc;
    const float one = 1.0f;
    sgemm_fn(&opb, &opa, &M, &Nn, &K, &one, B, &lb, A, &la, &beta, C, &lc);
}

/* the same for contiguous matrices */
static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *A,
                 const float *B, float beta, float *C) {
    gemm_ld(ta, tb, m, n, k, A, ta ? m : k, B, tb ? k : n, beta, C, n);
}

static inline void spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Two threads wait for each other: *arrived counts arrivals over the whole
 * call, *mine this thread's barriers so far; the k-th barrier is passed
 * when 2k arrivals are counted. */
static inline void meet(int64_t *arrived, int64_t *mine) {
    const int64_t target = 2 * ++*mine;
    __atomic_add_fetch(arrived, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(arrived, __ATOMIC_ACQUIRE) < target)
        spin_pause();
}

/* Thread t's share [lo, hi) of n rows (or columns) */
static inline void share(int64_t n, int t, int threads, int64_t *lo, int64_t *hi) {
    *lo = t * n / threads;
    *hi = (t + 1) * n / threads;
}

/* Self-test of the handed-over sgemm (a wrong calling convention would
 * compute garbage or nothing): 0 when (2x3)(3x2) gives the right product. */
int chain_check_sgemm(void) {
    if (!sgemm_fn)
        return 1;
    const float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {7, 8, 9, 10, 11, 12};
    float C[4] = {0, 0, 0, 0};
    gemm(0, 0, 2, 2, 3, A, B, 0.0f, C);
    const float want[4] = {58, 64, 139, 154};
    for (int i = 0; i < 4; i++)
        if (C[i] != want[i])
            return 2;
    return 0;
}

/* Where block i's A, Z, mean and invstd lie in ws (see the top). */
static void block_memory(const float *ws, int64_t L, int64_t N, const int64_t *dims, int head,
                         const float *Z, const float **A, const float **z, const float **mean,
                         const float **invstd) {
    for (int64_t i = 0; i < L; i++) {
        const int64_t K = dims[i + 1];
        const int own_z = head || i < L - 1;
        A[i] = ws;
        z[i] = own_z ? A[i] + N * K : Z;
        mean[i] = own_z ? z[i] + N * K : A[i] + N * K;
        invstd[i] = mean[i] + K;
        ws = invstd[i] + K;
    }
}

/* The largest K_i. */
static int64_t widest(int64_t L, const int64_t *dims) {
    int64_t k = 0;
    for (int64_t i = 1; i <= L; i++)
        k = dims[i] > k ? dims[i] : k;
    return k;
}

/* Two threads' forward sums of one block, shifted each by its first row
 * (shift0, shift1), as one: shifted by shift0, over both threads' rows (n1
 * of them the second's). Exact algebra: sum (x - s0) = S1 + n1 (s1 - s0),
 * sum (x - s0)^2 = S2 + 2 (s1 - s0) S1 + n1 (s1 - s0)^2 for thread 1's part. */
static void add_shifted_sums(int64_t K, const float *shift0, const double *s1_0,
                             const double *s2_0, const float *shift1, const double *s1_1,
                             const double *s2_1, double n1, double *s1, double *s2) {
    for (int64_t c = 0; c < K; c++) {
        const double d = (double)shift1[c] - (double)shift0[c];
        s1[c] = s1_0[c] + (s1_1[c] + n1 * d);
        s2[c] = s2_0[c] + (s2_1[c] + 2.0 * d * s1_1[c] + n1 * d * d);
    }
}

/* Training forward. dims: L + 1 sizes (D_0 = the input's features, then
 * K_1 .. K_L); per block: W (K x D), b, gamma, beta (K), alpha (K or 1:
 * alpha_stride 1 or 0), eps, momentum, running mean and variance (K,
 * updated in place); the head's W and b (NULL: none) and H. X: (N x D_0);
 * ws: see the top; Z: (N x K_L), or (N x H) with a head. Returns 0, 1
 * without an sgemm, 3 when out of memory. */
int chain_forward(int64_t L, int64_t N, const int64_t *dims, const float *X,
                  float *const *W, float *const *b, float *const *gamma, float *const *beta,
                  float *const *alpha, const int64_t *alpha_stride, const double *eps,
                  const double *momentum, float *const *running_mean,
                  float *const *running_var, const float *head_W, const float *head_b,
                  int64_t H, float *ws, float *Z, int nthreads) {
    if (!sgemm_fn)
        return 1;
    const float *A[L], *z[L], *mean[L], *invstd[L];
    block_memory(ws, L, N, dims, head_W != NULL, Z, A, z, mean, invstd);
    const int threads = nthreads < 2 || N < 2 ? 1 : 2;
    const int64_t Kmax = widest(L, dims);
    /* per thread: its sums (2 Kmax doubles) for even and for odd blocks (the
     * other thread may read block i's while this one computes block i +
     * 1's), the sums of both (2 Kmax), the block's coefficients (3 Kmax floats) */
    const size_t per_thread = (size_t)Kmax * (6 * sizeof(double) + 3 * sizeof(float));
    char *work = malloc(threads * per_thread);
    if (!work)
        return 3;
    int64_t arrived = 0;
#pragma omp parallel num_threads(threads)
    {
        /* the team OpenMP gave (fewer than asked inside another parallel
         * region or under OMP_THREAD_LIMIT): one thread computes alone */
        const int team = omp_get_num_threads() == 2 ? 2 : 1;
        const int t = team == 1 ? 0 : omp_get_thread_num();
        int64_t mine = 0, r0, r1;
        share(N, t, team, &r0, &r1);
        const int64_t Nt = r1 - r0;
        double *own = (double *)(work + t * per_thread), *both = own + 4 * Kmax;
        float *coef = (float *)(both + 2 * Kmax);
        const double *others = (const double *)(work + (1 - t) * per_thread);
        const float *x = X + r0 * dims[0];
        for (int64_t i = 0; i < L; i++) {
            const int64_t D = dims[i], K = dims[i + 1];
            float *a = (float *)A[i] + r0 * K, *zi = (float *)z[i] + r0 * K;
            double *sums = own + (i % 2) * 2 * Kmax;
            const double *other = others + (i % 2) * 2 * Kmax;
            for (int64_t n = 0; n < Nt; n++)
                memcpy(a + n * K, b[i], (size_t)K * sizeof(float));
            gemm(0, 1, Nt, K, D, x, W[i], 1.0f, a);             /* A = b + X W^T */
            features_sums(a, Nt, K, sums, sums + Kmax);
            const float *shift = a;                             /* this thread's first row */
            const double *s1 = sums, *s2 = sums + Kmax;
            if (team == 2) {
                meet(&arrived, &mine);      /* both threads' sums are there */
                int64_t lo1, hi1;                /* thread 1's rows */
                share(N, 1, 2, &lo1, &hi1);
                const float *shift0 = A[i], *shift1 = A[i] + lo1 * K;
                const double *p0 = t ? other : sums, *p1 = t ? sums : other;
                add_shifted_sums(K, shift0, p0, p0 + Kmax, shift1, p1, p1 + Kmax,
                                 (double)(hi1 - lo1), both, both + Kmax);
                shift = shift0, s1 = both, s2 = both + Kmax;
            }
            /* thread 0 keeps the statistics and moves the running ones */
            features_coefficients(shift, s1, s2, (double)N, K, gamma[i], beta[i], alpha[i],
                                  alpha_stride[i], eps[i], momentum[i], t == 0,
                                  (float *)mean[i], (float *)invstd[i], running_mean[i],
                                  running_var[i], coef, coef + K, coef + 2 * K);
            features_normalize(a, zi, Nt, K, coef, coef + K, coef + 2 * K);
            x = zi;
        }
        if (head_W) {                                   /* Z = b_head + Z_L W_head^T */
            for (int64_t n = r0; n < r1; n++)
                memcpy(Z + n * H, head_b, (size_t)H * sizeof(float));
            gemm(0, 1, Nt, H, dims[L], x, head_W, 1.0f, Z + r0 * H);
        }
    }
    free(work);
    return 0;
}

/* The head's derivatives: dW (H x K_L) = dZ^T Z_L, db (H) = the sum of dZ
 * over the observations. */
static void head_backward(const float *dZ, const float *zL, int64_t N, int64_t K, int64_t H,
                          float *dW, float *db) {
    gemm(1, 0, H, K, N, dZ, zL, 0.0f, dW);
    for (int64_t h = 0; h < H; h++)
        db[h] = 0.0f;
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++)
            db[h] += dZ[n * H + h];
}

/* One block's batch norm + ELU backward: dA from the output's derivative;
 * with one shared alpha its derivative summed into dalpha[0]. */
static void block_bn_backward(const float *A, const float *z, const float *dz, float *dA,
                              int64_t N, int64_t K, const float *gamma, const float *beta,
                              const float *alpha, int64_t alpha_stride, const float *mean,
                              const float *invstd, float *dgamma, float *dbeta, float *dalpha,
                              int nthreads) {
    batchnorm_elu_backward(A, z, dz, dA, N, K, 1, gamma, beta, alpha, alpha_stride, mean,
                           invstd, dgamma, dbeta, dalpha, nthreads);
    if (alpha_stride == 0) {
        float s = 0.0f;
        for (int64_t c = 0; c < K; c++)
            s += dalpha[c];
        dalpha[0] = s;
    }
}

/* Each block's dalpha (K values in scratch, their sum first when one alpha
 * is shared) into its place in grads, where one is wanted. */
static void place_dalpha(int64_t L, const int64_t *dims, const int64_t *alpha_stride,
                         float *const *dalpha, float *grads, const int64_t *out) {
    for (int64_t i = 0; i < L; i++)
        if (out[5 * i + 4] >= 0)
            memcpy(grads + out[5 * i + 4], dalpha[i],
                   (size_t)(alpha_stride[i] ? dims[i + 1] : 1) * sizeof(float));
}

/* Backward from dZ (N x K_L). The derivatives go into one buffer, grads,
 * at the offsets (in floats) given per block in out: dW (K x D), db (K,
 * written as zeros: batch normalization removes the bias, whose derivative
 * is zero), dgamma, dbeta (K), dalpha (K values, or their sum when one
 * alpha is shared; an offset of -1: not wanted), then the head's dW (H x
 * K_L) and db (H) when there is a head; and dX (N x D_0) unless NULL.
 * scratch: (N + L) max K + N (K_1 + ... + K_L) floats.
 *
 * With two threads or more the work is split in two: one thread runs the
 * chain that each block waits for (batch norm + ELU backward, then dA W
 * for the block before), the other the weight derivatives dA^T X, which
 * nothing waits for, as each block's dA is ready; the first block's (the
 * largest: its input is the image) is shared by both at the end. The
 * products then run on one thread each (MKL runs single-threaded inside a
 * parallel region). The values do not depend on the split. */
int chain_backward(int64_t L, int64_t N, const int64_t *dims, const float *X,
                   const float *ws, const float *Z, const float *dZ, float *const *W,
                   float *const *gamma, float *const *beta, float *const *alpha,
                   const int64_t *alpha_stride, const float *head_W, int64_t H, float *dX,
                   float *grads, const int64_t *out, float *scratch, int nthreads) {
    if (!sgemm_fn)
        return 1;
    /* where each derivative goes; dalpha first into scratch (per channel,
     * then summed there when one alpha is shared), then into its place */
    float *dW[L], *dgamma[L], *dbeta[L], *dalpha[L];
    const int64_t Kmax = widest(L, dims);
    float *alpha_scratch = scratch + N * Kmax;   /* L x Kmax, after dz */
    for (int64_t i = 0; i < L; i++) {
        const int64_t *o = out + 5 * i;
        dW[i] = grads + o[0];
        memset(grads + o[1], 0, (size_t)dims[i + 1] * sizeof(float));
        dgamma[i] = grads + o[2];
        dbeta[i] = grads + o[3];
        dalpha[i] = alpha_scratch + i * Kmax;
    }
    float *head_dW = head_W ? grads + out[5 * L] : NULL;
    float *head_db = head_W ? grads + out[5 * L + 1] : NULL;
    /* each block's A, Z and statistics, from the layout of ws; its dA */
    const float *A[L], *z[L], *mean[L], *invstd[L];
    float *dA[L];
    block_memory(ws, L, N, dims, head_W != NULL, Z, A, z, mean, invstd);
    float *dz = scratch;          /* dL/dZ of the block being computed */
    scratch = alpha_scratch + L * Kmax;
    for (int64_t i = 0; i < L; i++) {
        dA[i] = scratch;
        scratch += N * dims[i + 1];
    }
    const int64_t KL = dims[L];
    if (nthreads < 2) {
        const float *dcur = dZ;
        if (head_W) {
            head_backward(dZ, z[L - 1], N, KL, H, head_dW, head_db);
            gemm(0, 0, N, KL, H, dZ, head_W, 0.0f, dz);                  /* dZ W_head */
            dcur = dz;
        }
        for (int64_t i = L - 1; i >= 0; i--) {
            const int64_t D = dims[i], K = dims[i + 1];
            block_bn_backward(A[i], z[i], dcur, dA[i], N, K, gamma[i], beta[i], alpha[i],
                              alpha_stride[i], mean[i], invstd[i], dgamma[i], dbeta[i],
                              dalpha[i], nthreads);
            gemm(1, 0, K, D, N, dA[i], i ? z[i - 1] : X, 0.0f, dW[i]);   /* dA^T X */
            if (i) {
                gemm(0, 0, N, D, K, dA[i], W[i], 0.0f, dz);              /* dA W */
                dcur = dz;
            } else if (dX) {
                gemm(0, 0, N, D, K, dA[i], W[i], 0.0f, dX);
            }
        }
        place_dalpha(L, dims, alpha_stride, dalpha, grads, out);
        return 0;
    }
    int64_t ready = L;            /* dA[i] is there for every i >= ready */
    const int64_t D0 = dims[0], K0 = dims[1], half = D0 / 2;
#pragma omp parallel num_threads(2)
    {
        /* a team of one (inside another parallel region, or under
         * OMP_THREAD_LIMIT) runs both parts itself, the chain's first */
        const int alone = omp_get_num_threads() < 2;
        if (omp_get_thread_num() == 0) {
            const float *dcur = dZ;
            if (head_W) {
                gemm(0, 0, N, KL, H, dZ, head_W, 0.0f, dz);
                dcur = dz;
            }
            for (int64_t i = L - 1; i >= 0; i--) {
                const int64_t D = dims[i], K = dims[i + 1];
                block_bn_backward(A[i], z[i], dcur, dA[i], N, K, gamma[i], beta[i], alpha[i],
                                  alpha_stride[i], mean[i], invstd[i], dgamma[i], dbeta[i],
                                  dalpha[i], 1);
                __atomic_store_n(&ready, i, __ATOMIC_RELEASE);
                if (i) {
                    gemm(0, 0, N, D, K, dA[i], W[i], 0.0f, dz);
                    dcur = dz;
                }
            }
            if (dX)
                gemm(0, 0, N, D0, K0, dA[0], W[0], 0.0f, dX);
            /* the first block's dW, columns [0, half) */
            gemm_ld(1, 0, K0, half, N, dA[0], K0, X, D0, 0.0f, dW[0], D0);
        }
        if (omp_get_thread_num() == 1 || alone) {
            if (head_W)    /* nothing waits for it: while the other thread starts */
                head_backward(dZ, z[L - 1], N, KL, H, head_dW, head_db);
            for (int64_t i = L - 1; i >= 0; i--) {
                while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) > i)
                    spin_pause();
                const int64_t D = dims[i], K = dims[i + 1];
                if (i)
                    gemm(1, 0, K, D, N, dA[i], z[i - 1], 0.0f, dW[i]);
                else   /* columns [half, D0) */
                    gemm_ld(1, 0, K0, D0 - half, N, dA[0], K0, X + half, D0, 0.0f,
                            dW[0] + half, D0);
            }
        }
    }
    place_dalpha(L, dims, alpha_stride, dalpha, grads, out);
    return 0;
}
