/*
 * Native CPU time loops of every fused cell: forward and backward through time.
 *
 * Built and loaded by rnnsweep/kernels/_native.py (which documents the design):
 * each function runs one layer over a whole sequence for all K members of a pack,
 * one member per OpenMP iteration. Per member and step: one small GEMM (float32:
 * gemm.h's AVX-512 kernel where compiled and chosen; else the BLAS that torch itself
 * links, its Fortran ?gemm_, passed in as a pointer), then one pass of fused pointwise
 * math over the step's rows while they are still in cache. Backwards, every GRAD_ROWS
 * rows, the weight, bias and input gradients of those rows (grad_rows). Members never
 * share memory, so a NaN in one stays there, and a member's result does not depend on
 * which pack it is in.
 *
 * layers_body.h holds the kernels once, written against REAL; it is included
 * twice below, for float (suffix _f32) and double (suffix _f64).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gemm.h"

/* The layer's buffers, shared by every cell (unused fields are NULL). Layouts, with
 * W = the cell's gate width G*H: A (K, T, B, W); F (K, f_steps, B, W); Hs, Cs (K, T+1, B, H);
 * X, Ys, dY, Z, dN (K, T, B, H); dH and N time-major, (T+1, K, B, H) and
 * (T, K, B, H); Xin (K, T, B, I), rows dense within a member, and Wx (K, I, W): when
 * given, the forward forms A = Xin Wx itself, per member; Wh (K, H, W) and, backwards, its
 * transpose WhT (K, W, H); bias (K, 1, W), added to A's rows per step when given (else A
 * already holds it); bhn (K, 1, H); carry and scratch (K, B, H); gscratch (K, f_steps, B, H).
 * Backwards, when given, the loop also forms the weight gradients while each chunk of
 * steps' rows of F is in cache: dWh (K, H, W) and dWx (K, I, W), added to (the caller
 * zeroes them), db (K, 1, W), the column sums of F, added to, and dX (K, T, B, I) =
 * F Wx^T, written, with WxT (K, W, I) and the layer input read from Xin as in the
 * forward. All dense. A forward that forms A itself (Wx given) may hold A as a ring of
 * a_steps = proj_steps(B) steps per member, (K, a_steps, B, W), when nothing reads A after
 * it (an evaluation's forward). */
typedef struct {
    int64_t K, T, B, H;
    int64_t I, xin_kstride; /* input width; X_in's stride between members (elements) */
    int64_t nthreads; /* OpenMP threads over members; 1 runs serially */
    int64_t relu;     /* the cell's nonlinearity: 0 tanh, 1 relu (when relu_of is NULL) */
    int64_t own_gemm; /* float32 products through gemm.h's kernel (if compiled), not gemm */
    int64_t f_steps;  /* steps of F held per member: T, or one weight-gradient pass (a ring) */
    void *gemm;       /* sgemm_ (f32) or dgemm_ (f64), Fortran calling convention */
    void *A, *Hs, *Wh, *WhT, *Xin, *Wx, *bias, *F, *dH, *X, *Ys, *dY, *Cs, *N, *dN, *Z, *bhn, *carry, *scratch;
    void *dWh, *dWx, *dX, *WxT, *gscratch, *db;
    int64_t *relu_of; /* per-member nonlinearity codes (K,), 0 tanh 1 relu; NULL: relu */
    int64_t a_steps;  /* steps of A held per member: T, or (a forward that saves nothing for
                       * a backward) one projection pass, a ring the loop refills */
} Layer;

/* Rows of F per pass of the weight gradients: a pass's rows of F, h and x stay in L2;
 * rows of A per pass of the forward's input projection, for the same reason. */
#define GRAD_ROWS 256
static inline int64_t pass_steps(int64_t B) { return B >= GRAD_ROWS ? 1 : (GRAD_ROWS + B - 1) / B; }

/* exp for float that GCC vectorises (Cephes' expf polynomial, about 1 ulp): the
 * argument is clamped to the finite range; NaN passes through the arithmetic. */
static inline float exp_f32(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.3f ? -87.3f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh as 2 sigmoid(2a) - 1, the identity the torch kernels use on the CPU. */
static inline float tanh_f32(float x) { return 2.0f / (1.0f + exp_f32(-2.0f * x)) - 1.0f; }

#define REAL float
#define OWN_GEMM HAVE_GEMM_F32
#define SUF(name) name##_f32
#define EXP exp_f32
#define TANH tanh_f32
#include "layers_body.h"
#undef REAL
#undef OWN_GEMM
#undef SUF
#undef EXP
#undef TANH

#define REAL double
#define OWN_GEMM 0
#define SUF(name) name##_f64
#define EXP exp
#define TANH tanh
#include "layers_body.h"
#undef REAL
#undef OWN_GEMM
#undef SUF
#undef EXP
#undef TANH

/* Steps per weight-gradient pass at batch B: with the weight gradients formed in the loop,
 * F need only hold that many steps per member (f_steps), reused pass after pass. The
 * forward's input projection goes in passes of as many steps (a ring of A holds one). */
int64_t grad_pass_steps(int64_t B) { return pass_steps(B); }

/* 1 when gemm.h's float32 kernel was compiled in (an AVX-512 build), else 0. */
int64_t has_own_gemm(void) { return HAVE_GEMM_F32; }

/* Batched float32 product for the products left outside the loops (the readout, and the
 * +RNN's and minimalRNN's gradients that read all of F after the loop):
 * c_m (M x N, dense) = op(a_m) @ b_m for m < nb, with a_m(i, k) = a[m a_ks + i a_rs + k a_cs]
 * (any strides: a transposed view is read in place) and b_m rows of stride ldb. Members
 * and blocks of 64 rows are spread over nthreads OpenMP threads. Needs HAVE_GEMM_F32. */
void bmm_f32(int64_t nb, int64_t M, int64_t K, int64_t N, const float *a, int64_t a_ks,
             int64_t a_rs, int64_t a_cs, const float *b, int64_t b_ks, int64_t ldb, float *c,
             int64_t nthreads) {
#if HAVE_GEMM_F32
    const int64_t rows = 64, blocks = (M + rows - 1) / rows;
#pragma omp parallel for collapse(2) schedule(static) num_threads((int)nthreads) if (nthreads > 1)
    for (int64_t m = 0; m < nb; m++)
        for (int64_t q = 0; q < blocks; q++) {
            const int64_t i0 = q * rows, mr = M - i0 < rows ? M - i0 : rows;
            gemm_f32(mr, K, N, a + m * a_ks + i0 * a_rs, a_rs, a_cs, b + m * b_ks, ldb, 0,
                     c + (m * M + i0) * N, N);
        }
#else
    (void)nb, (void)M, (void)K, (void)N, (void)a, (void)a_ks, (void)a_rs, (void)a_cs, (void)b;
    (void)b_ks, (void)ldb, (void)c, (void)nthreads;
#endif
}
