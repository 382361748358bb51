/*
 * A small float32 GEMM for AVX-512, for the products of the time loops and of the weight
 * gradients: c (M x N, ldc) = beta c + op(a) (M x K) @ b (K x N, row stride ldb), row-major,
 * where op(a)(i, k) = a[i * a_rs + k * a_cs], so one kernel reads a as stored (a_rs = lda,
 * a_cs = 1) or transposed (a_rs = 1, a_cs = lda), as the weight gradients h^T dP need.
 *
 * Why not the BLAS torch links: on AMD CPUs MKL runs its AVX2 code, at most half of what
 * the AVX-512 units do (docs/PERFORMANCE.md has the figures). At these sizes (b fits in the
 * L1/L2 cache) no packing or cache blocking is needed: an 8 x 32 register tile (16 zmm
 * accumulators, one broadcast of a and two vector loads of b per k) keeps both FMA pipes
 * busy. Column tails are masked; row tails take the same tile with fewer rows.
 *
 * The result of a member's product depends only on its own operands and shapes, never on
 * the pack or the thread that computes it.
 */
#if defined(__AVX512F__)
#include <immintrin.h>

#define GEMM_MR 8 /* rows of the register tile; columns: two vectors of 16 */

static inline __attribute__((always_inline)) void gemm_tile_f32(
    const int mr, const int nv, const int64_t K, const float *a, const int64_t a_rs,
    const int64_t a_cs, const float *b, const int64_t ldb, const float beta, float *c,
    const int64_t ldc, const __mmask16 m0, const __mmask16 m1) {
    /* nv: column vectors in the tile, 2 (32 columns) or 1 (a panel of at most 16: the
     * readout's dozen outputs, where a second, empty vector would double the work) */
    __m512 acc0[GEMM_MR], acc1[GEMM_MR];
    const __m512 vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr; i++) {
        acc1[i] = _mm512_setzero_ps();
        if (beta == 0) { /* c is not read: it may hold anything, NaN included */
            acc0[i] = _mm512_setzero_ps();
        } else {
            acc0[i] = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, c + i * ldc));
            if (nv == 2) acc1[i] = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, c + i * ldc + 16));
        }
    }
    for (int64_t k = 0; k < K; k++) {
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b + k * ldb);
        const __m512 b1 = nv == 2 ? _mm512_maskz_loadu_ps(m1, b + k * ldb + 16) : b0;
        const float *ak = a + k * a_cs;
        for (int i = 0; i < mr; i++) {
            const __m512 x = _mm512_set1_ps(ak[i * a_rs]);
            acc0[i] = _mm512_fmadd_ps(x, b0, acc0[i]);
            if (nv == 2) acc1[i] = _mm512_fmadd_ps(x, b1, acc1[i]);
        }
    }
    for (int i = 0; i < mr; i++) {
        _mm512_mask_storeu_ps(c + i * ldc, m0, acc0[i]);
        if (nv == 2) _mm512_mask_storeu_ps(c + i * ldc + 16, m1, acc1[i]);
    }
}

#define GEMM_KC 256 /* rows of b (and columns of op(a)) per pass: a pass's operands stay in L2 */

static void gemm_f32(const int64_t M, const int64_t K, const int64_t N, const float *a,
                     const int64_t a_rs, const int64_t a_cs, const float *b, const int64_t ldb,
                     const float beta, float *c, const int64_t ldc) {
    /* Long sums (the weight gradients sum over all T*B rows) go in passes of GEMM_KC, each
     * adding to c: a pass reads its rows of a and b from memory once, in order. Within a
     * pass, the tile rows are outermost, so a tile's rows of op(a) stay in L1 across the
     * column panels. */
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += GEMM_KC) {
        const int64_t kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
        const float bt = k0 == 0 ? beta : 1;
        const float *ak = a + k0 * a_cs, *bk = b + k0 * ldb;
        for (int64_t i = 0; i < M; i += GEMM_MR) {
            const int64_t mr = M - i < GEMM_MR ? M - i : GEMM_MR;
            for (int64_t j = 0; j < N; j += 32) {
                const int64_t n = N - j;
                const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
                const __mmask16 m1 =
                    n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
                const float *at = ak + i * a_rs, *bj = bk + j;
                float *ct = c + i * ldc + j;
                /* the tile's row count and vector count constants in each case */
#define GEMM_CASE(r, nv)                                                              \
    case r:                                                                           \
        gemm_tile_f32(r, nv, kc, at, a_rs, a_cs, bj, ldb, bt, ct, ldc, m0, m1); \
        break;
#define GEMM_CASES(nv)                                                                \
    switch (mr) {                                                                     \
        GEMM_CASE(1, nv) GEMM_CASE(2, nv) GEMM_CASE(3, nv) GEMM_CASE(4, nv)           \
        GEMM_CASE(5, nv) GEMM_CASE(6, nv) GEMM_CASE(7, nv) GEMM_CASE(8, nv)           \
    default:                                                                          \
        break;                                                                        \
    }
                if (n > 16) {
                    GEMM_CASES(2)
                } else {
                    GEMM_CASES(1)
                }
#undef GEMM_CASES
#undef GEMM_CASE
            }
        }
    }
}
#define HAVE_GEMM_F32 1
#else
#define HAVE_GEMM_F32 0
#endif
