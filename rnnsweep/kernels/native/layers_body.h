/*
 * The kernels, once, against REAL / SUF / EXP / TANH (included twice by layers.c).
 *
 * Notation as in rnnsweep/kernels/_zoo.py: a = pre-activation, hp = h_{t-1},
 * dh = dL/dh_t, f = dL/d(pre) written into F. Row-major products go through gemm.h or
 * through the column-major BLAS as C^T = B^T A^T; backwards they read W^h^T, transposed
 * once per call by the caller (a transposed operand measured ~20% slower with the BLAS).
 */

typedef void (*SUF(gemm_t))(const char *, const char *, const int *, const int *, const int *,
                            const REAL *, const REAL *, const int *, const REAL *, const int *,
                            const REAL *, REAL *, const int *);

/* c (M x N, ldc) = beta c + op(a) (M x K) @ b (K x N, row stride ldb), op(a)(i, k) =
 * a[i a_rs + k a_cs] with a_cs = 1 (a as stored) or a_rs = 1 (a transposed): through
 * gemm.h's kernel where it is compiled and chosen, else the column-major BLAS as
 * C^T = B^T op(a)^T. */
static inline void SUF(product)(const Layer *L, int64_t M, int64_t K, int64_t N, const REAL *a,
                             int64_t a_rs, int64_t a_cs, const REAL *b, int64_t ldb, REAL beta,
                             REAL *c, int64_t ldc) {
#if OWN_GEMM
    if (L->own_gemm) {
        gemm_f32(M, K, N, a, a_rs, a_cs, b, ldb, beta, c, ldc);
        return;
    }
#endif
    const int m_ = (int)N, n_ = (int)M, k_ = (int)K, ldb_ = (int)ldb, ldc_ = (int)ldc;
    const int lda = (int)(a_cs == 1 ? a_rs : a_cs);
    const REAL one = 1;
    ((SUF(gemm_t))L->gemm)("N", a_cs == 1 ? "N" : "T", &m_, &n_, &k_, &one, b, &ldb_, a, &lda,
                           &beta, c, &ldc_);
}

/* c (rows x n, row stride ldc) = beta c + h (rows x k, ldh) @ w (k x n, ldw) */
static inline void SUF(mm)(const Layer *L, int64_t rows, int64_t k, int64_t n, const REAL *h,
                           int64_t ldh, const REAL *w, int64_t ldw, REAL beta, REAL *c,
                           int64_t ldc) {
    SUF(product)(L, rows, k, n, h, ldh, 1, w, ldw, beta, c, ldc);
}

/* c (m x n, ldc) += a^T b for a (rows x m, lda), b (rows x n, ldb): a sum over rows. */
static inline void SUF(mm_t)(const Layer *L, int64_t rows, int64_t m, int64_t n, const REAL *a,
                             int64_t lda, const REAL *b, int64_t ldb, REAL *c, int64_t ldc) {
    SUF(product)(L, m, rows, n, a, 1, lda, b, ldb, 1, c, ldc);
}

/* Whether member k's backward, having just finished step t, passes the rows of steps
 * [t, hi) to grad_rows: every GRAD_ROWS rows and at the last step. */
static inline int SUF(grad_due)(const Layer *L, int64_t t, int64_t hi) {
    return t == 0 || (hi - t) * L->B >= GRAD_ROWS;
}

/* Member k's share of the weight gradients from the rows of steps [t0, t1), read while
 * the backward has just written them (one pass over all T*B rows afterwards would read F,
 * h and x back from memory): dW^h[:, :wh_cols] += h_{t-1}^T F[:, :wh_cols] (the GRUs add
 * their candidate block themselves), dW^x += x^T F, dx = F W^x^T and db += the column
 * sums of F, each where asked. */
static inline void SUF(grad_rows)(const Layer *L, int64_t k, int64_t t0, int64_t t1, int64_t W,
                                  int64_t wh_cols, const REAL *f) {
    const int64_t T = L->T, B = L->B, H = L->H, I = L->I, rows = (t1 - t0) * B;
    if (L->dWh) {
        const REAL *hp = (const REAL *)L->Hs + (k * (T + 1) + t0) * B * H;
        SUF(mm_t)(L, rows, H, wh_cols, hp, H, f, W, (REAL *)L->dWh + k * H * W, W);
    }
    if (L->dWx) {
        const REAL *x = (const REAL *)L->Xin + k * L->xin_kstride + t0 * B * I;
        SUF(mm_t)(L, rows, I, W, x, I, f, W, (REAL *)L->dWx + k * I * W, W);
    }
    if (L->dX)
        SUF(mm)(L, rows, W, I, f, W, (const REAL *)L->WxT + k * W * I, I, 0,
                (REAL *)L->dX + (k * T + t0) * B * I, I);
    if (L->db) {
        REAL *db = (REAL *)L->db + k * W;
        for (int64_t i = 0; i < rows; i++)
            #pragma GCC ivdep
            for (int64_t j = 0; j < W; j++) db[j] += f[i * W + j];
    }
}

/* In a backward loop over t, after step t: hand the finished rows [t, hi) to grad_rows,
 * then (GRADS_THEN) to the cell's own part of the pass: the GRUs' dW^{ch}. */
#define GRADS_THEN(W, wh_cols, then)                              \
    if (SUF(grad_due)(L, t, hi)) {                                \
        SUF(grad_rows)(L, k, t, hi, W, wh_cols, F_AT(t, W));      \
        then;                                                     \
        hi = t;                                                   \
    }
#define GRADS(W, wh_cols) GRADS_THEN(W, wh_cols, (void)0)

/* Step t's input side a (B x W) = A_AT(t): at the first step of each projection pass
 * (pass_steps(B) steps), when the loop forms A itself (Wx given), the pass's rows
 * x W^x (one product: they are still in cache when the steps read them; one product over
 * all T*B rows before the loop wrote 1.2 MB per gru layer at B = 32, beyond L2); then the
 * member's input bias b + b^{fg}, added per step while the rows are hot (a broadcast copy
 * over all steps would be a pass through memory). A pass's rows are contiguous in A, as
 * a whole sequence or as a ring of a_steps = pass_steps(B) steps. */
static inline void SUF(step_input)(const Layer *L, int64_t k, int64_t t, REAL *a, int64_t W) {
    const int64_t B = L->B;
    if (L->Wx) {
        const int64_t steps = pass_steps(B);
        if (t % steps == 0) {
            const int64_t t1 = t + steps < L->T ? t + steps : L->T, I = L->I;
            const REAL *x = (const REAL *)L->Xin + k * L->xin_kstride + t * B * I;
            SUF(mm)(L, (t1 - t) * B, I, W, x, I, (const REAL *)L->Wx + k * I * W, W, 0, a, W);
        }
    }
    if (!L->bias) return;
    const REAL *b = (const REAL *)L->bias + k * W;
    for (int64_t i = 0; i < B; i++)
#pragma GCC ivdep
        for (int64_t j = 0; j < W; j++) a[i * W + j] += b[j];
}

static inline REAL SUF(sigm)(REAL x) { return 1 / (1 + EXP(-x)); }

/* s(a): relu keeps NaN (like clamp_min), tanh as TANH */
static inline REAL SUF(act)(REAL a, int64_t relu) {
    return relu ? (a < 0 ? 0 : a) : TANH(a);
}

/* s'(a) read off y = s(a): [y > 0] or 1 - y^2 */
static inline REAL SUF(dact)(REAL y, int64_t relu) {
    return relu ? (REAL)(y > 0) : 1 - y * y;
}

/* Member k's views of the common buffers at step t. */
#define DIMS                                                                              \
    const int64_t K = L->K, T = L->T, B = L->B, H = L->H;                                \
    (void)K;                                                                              \
    (void)relu;                                                                           \
    REAL *const A_ = (REAL *)L->A, *const Hs_ = (REAL *)L->Hs;                            \
    const REAL *const Wh_ = (const REAL *)L->Wh;                                          \
    (void)A_;                                                                             \
    (void)Hs_;                                                                            \
    (void)Wh_
/* Step t's (B, W) block of A (all T steps, or a ring of a_steps: see Layer) */
#define A_AT(t, W) (A_ + ((k * L->a_steps + (t) % L->a_steps) * B) * (W))
/* Step t's (B, W) block of F. F holds all T steps, or (f_steps < T) one weight-gradient
 * pass, the steps [hi - f_steps, hi) that end at the pass's top hi (in the backward loops),
 * so that a pass's rows are contiguous and the next pass reuses the memory. */
#define F_AT(t, W) \
    ((REAL *)L->F + ((k * L->f_steps + (t) - (L->f_steps < T ? hi - L->f_steps : 0)) * B) * (W))
#define H_AT(t) (Hs_ + ((k * (T + 1) + (t)) * B) * H)       /* h_{t-1}; h_t is H_AT(t + 1) */
#define KT_AT(buf, t) ((REAL *)(buf) + ((k * T + (t)) * B) * H) /* (K, T, B, H) buffers */
#define TK_AT(buf, t) ((REAL *)(buf) + (((t) * K + k) * B) * H) /* time-major buffers */
/* The work of member k; relu is a constant after inlining. */
#define MEMBER(name)                                                                      \
    static inline __attribute__((always_inline)) void SUF(name)(const Layer *L,           \
                                                                const int64_t k,          \
                                                                const int64_t relu)
/* Run member function fn for every member, the nonlinearity a constant inside it (so
 * that GCC vectorises both variants): one member per OpenMP iteration. The nonlinearity
 * is the pack's (relu), or each member's own (relu_of): a member runs the very same code
 * either way, so a pack may mix them without changing any member's numbers. With more than
 * one thread the region is entered even for a single member: inside it the BLAS runs
 * each small product on one thread, where outside it a pack of one at 2 threads
 * measured 10x slower (115 vs 12 ms per step: the BLAS's threads woken per product). */
#define RUN(fn)                                                                           \
    _Pragma("omp parallel for schedule(static) num_threads((int)L->nthreads) if (L->nthreads > 1)") \
    for (int64_t k = 0; k < L->K; k++) {                                                  \
        if (L->relu_of ? L->relu_of[k] : L->relu)                                         \
            fn(L, k, 1);                                                                  \
        else                                                                              \
            fn(L, k, 0);                                                                  \
    }

/* ---- vanilla RNN / IRNN: h = s(a) ------------------------------------------------------ */

MEMBER(rnn_fwd_k) {
    DIMS;
    const REAL *W = Wh_ + k * H * H;
    for (int64_t t = 0; t < T; t++) {
        REAL *a = A_AT(t, H), *hp = H_AT(t), *h = H_AT(t + 1);
        SUF(step_input)(L, k, t, a, H);
        SUF(mm)(L, B, H, H, hp, H, W, H, 1, a, H);
        #pragma GCC ivdep
        for (int64_t i = 0; i < B * H; i++) h[i] = SUF(act)(a[i], relu);
    }
}

void SUF(rnn_fwd)(const Layer *L) { RUN(SUF(rnn_fwd_k)); }

MEMBER(rnn_bwd_k) {
    DIMS;
    const REAL *WT = (const REAL *)L->WhT + k * H * H; /* (W, H): W^h transposed */
    int64_t hi = T; /* steps [t, hi) await grad_rows */
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *h = H_AT(t + 1), *dh = TK_AT(L->dH, t + 1);
        REAL *f = F_AT(t, H), *dhp = TK_AT(L->dH, t);
        #pragma GCC ivdep
        for (int64_t i = 0; i < B * H; i++) f[i] = dh[i] * SUF(dact)(h[i], relu);
        SUF(mm)(L, B, H, H, f, H, WT, H, 1, dhp, H);
        GRADS(H, H)
    }
}

void SUF(rnn_bwd)(const Layer *L) { RUN(SUF(rnn_bwd_k)); }

/* ---- UGRNN, blocks [c, g]: h = c + g (hp - c) ------------------------------------------ */

MEMBER(ugrnn_fwd_k) {
    DIMS;
    const int64_t G = 2 * H;
    const REAL *W = Wh_ + k * H * G;
    for (int64_t t = 0; t < T; t++) {
        REAL *a = A_AT(t, G), *hp = H_AT(t), *h = H_AT(t + 1);
        SUF(step_input)(L, k, t, a, G);
        SUF(mm)(L, B, H, G, hp, H, W, G, 1, a, G);
        for (int64_t i = 0; i < B; i++) {
            REAL *ar = a + i * G, *hr = h + i * H;
            const REAL *hpr = hp + i * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                REAL c = SUF(act)(ar[j], relu), g = SUF(sigm)(ar[H + j]);
                ar[j] = c;
                ar[H + j] = g;
                hr[j] = c + g * (hpr[j] - c);
            }
        }
    }
}

void SUF(ugrnn_fwd)(const Layer *L) { RUN(SUF(ugrnn_fwd_k)); }

MEMBER(ugrnn_bwd_k) {
    DIMS;
    const int64_t G = 2 * H;
    const REAL *WT = (const REAL *)L->WhT + k * H * G; /* (W, H): W^h transposed */
    int64_t hi = T; /* steps [t, hi) await grad_rows */
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *a = A_AT(t, G), *hp = H_AT(t), *dh = TK_AT(L->dH, t + 1);
        REAL *f = F_AT(t, G), *dhp = TK_AT(L->dH, t);
        for (int64_t i = 0; i < B; i++) {
            const REAL *ar = a + i * G, *hpr = hp + i * H, *dhr = dh + i * H;
            REAL *fr = f + i * G, *dhpr = dhp + i * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                REAL c = ar[j], g = ar[H + j], d = dhr[j];
                fr[j] = d * (1 - g) * SUF(dact)(c, relu);
                fr[H + j] = d * (hpr[j] - c) * (g - g * g);
                dhpr[j] += d * g;
            }
        }
        SUF(mm)(L, B, G, H, f, G, WT, H, 1, dhp, H);
        GRADS(G, G)
    }
}

void SUF(ugrnn_bwd)(const Layer *L) { RUN(SUF(ugrnn_bwd_k)); }

/* ---- GRU, blocks [r, u, c]: h = c + u (hp - c) ------------------------------------------
 * pre (Collins): c = s(a_c + (r hp) W^{ch});  post (torch.nn): c = s(a_c + r n),
 * n = hp W^{ch} + b^{hn}, kept in N. The Collins GRU uses one (B, H) scratch block
 * per member for r hp (forward) and d(r hp) (backward). */

MEMBER(grupre_fwd_k) {
    DIMS;
    const int64_t G = 3 * H;
    const REAL *W = Wh_ + k * H * G;
    REAL *rh = (REAL *)L->scratch + k * B * H; /* r hp, one step */
    for (int64_t t = 0; t < T; t++) {
        REAL *a = A_AT(t, G), *hp = H_AT(t), *h = H_AT(t + 1);
        SUF(step_input)(L, k, t, a, G);
        SUF(mm)(L, B, H, 2 * H, hp, H, W, G, 1, a, G); /* [a_r, a_u] += hp W^{ru} */
        for (int64_t i = 0; i < B; i++) {
            REAL *ar = a + i * G;
            const REAL *hpr = hp + i * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < 2 * H; j++) ar[j] = SUF(sigm)(ar[j]);
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) rh[i * H + j] = ar[j] * hpr[j];
        }
        SUF(mm)(L, B, H, H, rh, H, W + 2 * H, G, 1, a + 2 * H, G); /* a_c += (r hp) W^{ch} */
        for (int64_t i = 0; i < B; i++) {
            REAL *ar = a + i * G, *hr = h + i * H;
            const REAL *hpr = hp + i * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                REAL c = SUF(act)(ar[2 * H + j], relu), u = ar[H + j];
                ar[2 * H + j] = c;
                hr[j] = c + u * (hpr[j] - c);
            }
        }
    }
}

void SUF(grupre_fwd)(const Layer *L) { RUN(SUF(grupre_fwd_k)); }

/* dW^{ch} += (r hp)^T dp_c over the rows of steps [t0, t1), r hp rebuilt into gscratch
 * from those rows of A (a), Hs (hp) and F (f). */
static inline void SUF(grupre_dwc)(const Layer *L, int64_t k, int64_t t0, int64_t t1,
                                   const REAL *a, const REAL *hp, const REAL *f) {
    if (!L->dWh) return;
    const int64_t B = L->B, H = L->H, G = 3 * H, rows = (t1 - t0) * B;
    REAL *rh = (REAL *)L->gscratch + k * L->f_steps * B * H;
    for (int64_t i = 0; i < rows; i++)
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; j++) rh[i * H + j] = a[i * G + j] * hp[i * H + j];
    SUF(mm_t)(L, rows, H, H, rh, H, f + 2 * H, G, (REAL *)L->dWh + k * H * G + 2 * H, G);
}

MEMBER(grupre_bwd_k) {
    DIMS;
    const int64_t G = 3 * H;
    const REAL *WT = (const REAL *)L->WhT + k * H * G; /* (W, H): W^h transposed */
    REAL *drh = (REAL *)L->scratch + k * B * H; /* d(r hp), one step */
    int64_t hi = T; /* steps [t, hi) await grad_rows */
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *a = A_AT(t, G), *hp = H_AT(t), *dh = TK_AT(L->dH, t + 1);
        REAL *f = F_AT(t, G), *dhp = TK_AT(L->dH, t);
        for (int64_t i = 0; i < B; i++) {
            const REAL *ar = a + i * G, *hpr = hp + i * H, *dhr = dh + i * H;
            REAL *fr = f + i * G, *dhpr = dhp + i * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                REAL u = ar[H + j], c = ar[2 * H + j], d = dhr[j];
                fr[H + j] = d * (hpr[j] - c) * (u - u * u);
                fr[2 * H + j] = d * (1 - u) * SUF(dact)(c, relu);
                dhpr[j] += d * u;
            }
        }
        /* d(r hp) = dp_c W^{ch}^T, then dp_r = d(r hp) hp r (1 - r) */
        SUF(mm)(L, B, H, H, f + 2 * H, G, WT + (2 * H) * H, H, 0, drh, H);
        for (int64_t i = 0; i < B; i++) {
            const REAL *ar = a + i * G, *hpr = hp + i * H, *drhr = drh + i * H;
            REAL *fr = f + i * G, *dhpr = dhp + i * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                REAL r = ar[j];
                fr[j] = drhr[j] * hpr[j] * (r - r * r);
                dhpr[j] += drhr[j] * r;
            }
        }
        SUF(mm)(L, B, 2 * H, H, f, G, WT, H, 1, dhp, H); /* += [dp_r, dp_u] W^{ru}^T */
        GRADS_THEN(G, 2 * H, SUF(grupre_dwc)(L, k, t, hi, A_AT(t, G), H_AT(t), F_AT(t, G)))
    }
}

void SUF(grupre_bwd)(const Layer *L) { RUN(SUF(grupre_bwd_k)); }

MEMBER(grupost_fwd_k) {
    DIMS;
    const int64_t G = 3 * H;
    const REAL *W = Wh_ + k * H * G, *bhn = (const REAL *)L->bhn + k * H;
    for (int64_t t = 0; t < T; t++) {
        REAL *a = A_AT(t, G), *hp = H_AT(t), *h = H_AT(t + 1), *n = TK_AT(L->N, t);
        SUF(step_input)(L, k, t, a, G);
        SUF(mm)(L, B, H, 2 * H, hp, H, W, G, 1, a, G); /* [a_r, a_u] += hp W^{ru} */
        for (int64_t i = 0; i < B; i++)
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) n[i * H + j] = bhn[j];
        SUF(mm)(L, B, H, H, hp, H, W + 2 * H, G, 1, n, H); /* n = b^{hn} + hp W^{ch} */
        for (int64_t i = 0; i < B; i++) {
            REAL *ar = a + i * G, *hr = h + i * H;
            const REAL *hpr = hp + i * H, *nr = n + i * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < 2 * H; j++) ar[j] = SUF(sigm)(ar[j]);
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                REAL c = SUF(act)(ar[2 * H + j] + ar[j] * nr[j], relu), u = ar[H + j];
                ar[2 * H + j] = c;
                hr[j] = c + u * (hpr[j] - c);
            }
        }
    }
}

void SUF(grupost_fwd)(const Layer *L) { RUN(SUF(grupost_fwd_k)); }

/* dW^{ch} += hp^T dn over the rows of steps [t0, t1) (hp, dn: those rows of Hs and dN). */
static inline void SUF(grupost_dwc)(const Layer *L, int64_t k, int64_t t0, int64_t t1,
                                    const REAL *hp, const REAL *dn) {
    if (!L->dWh) return;
    const int64_t H = L->H, G = 3 * H;
    SUF(mm_t)(L, (t1 - t0) * L->B, H, H, hp, H, dn, H, (REAL *)L->dWh + k * H * G + 2 * H, G);
}

MEMBER(grupost_bwd_k) {
    DIMS;
    const int64_t G = 3 * H;
    const REAL *WT = (const REAL *)L->WhT + k * H * G; /* (W, H): W^h transposed */
    int64_t hi = T; /* steps [t, hi) await grad_rows */
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *a = A_AT(t, G), *hp = H_AT(t), *dh = TK_AT(L->dH, t + 1),
                   *n = TK_AT(L->N, t);
        REAL *f = F_AT(t, G), *dhp = TK_AT(L->dH, t), *dn = KT_AT(L->dN, t);
        for (int64_t i = 0; i < B; i++) {
            const REAL *ar = a + i * G, *hpr = hp + i * H, *dhr = dh + i * H, *nr = n + i * H;
            REAL *fr = f + i * G, *dhpr = dhp + i * H, *dnr = dn + i * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                REAL r = ar[j], u = ar[H + j], c = ar[2 * H + j], d = dhr[j];
                REAL dpc = d * (1 - u) * SUF(dact)(c, relu);
                fr[j] = dpc * nr[j] * (r - r * r);
                fr[H + j] = d * (hpr[j] - c) * (u - u * u);
                fr[2 * H + j] = dpc;
                dnr[j] = dpc * r;
                dhpr[j] += d * u;
            }
        }
        SUF(mm)(L, B, 2 * H, H, f, G, WT, H, 1, dhp, H);         /* [dp_r, dp_u] W^{ru}^T */
        SUF(mm)(L, B, H, H, dn, H, WT + (2 * H) * H, H, 1, dhp, H); /* dn W^{ch}^T */
        GRADS_THEN(G, 2 * H, SUF(grupost_dwc)(L, k, t, hi, H_AT(t), KT_AT(L->dN, t)))
    }
}

void SUF(grupost_bwd)(const Layer *L) { RUN(SUF(grupost_bwd_k)); }

/* ---- LSTM, blocks [i, f, o, g], state (h, c): c_t = f c_{t-1} + i g, h = o tanh(c_t) ---- */

MEMBER(lstm_fwd_k) {
    DIMS;
    const int64_t G = 4 * H;
    const REAL *W = Wh_ + k * H * G;
    for (int64_t t = 0; t < T; t++) {
        REAL *a = A_AT(t, G), *hp = H_AT(t), *h = H_AT(t + 1);
        SUF(step_input)(L, k, t, a, G);
        REAL *cp = (REAL *)L->Cs + ((k * (T + 1) + t) * B) * H, *cn = cp + B * H;
        SUF(mm)(L, B, H, G, hp, H, W, G, 1, a, G);
        for (int64_t i = 0; i < B; i++) {
            REAL *ar = a + i * G;
            #pragma GCC ivdep
            for (int64_t j = 0; j < 3 * H; j++) ar[j] = SUF(sigm)(ar[j]);
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                REAL g = SUF(act)(ar[3 * H + j], relu);
                REAL c = ar[H + j] * cp[i * H + j] + ar[j] * g;
                REAL y = TANH(c);
                ar[3 * H + j] = g;
                cn[i * H + j] = c;
                h[i * H + j] = ar[2 * H + j] * y;
            }
        }
    }
}

void SUF(lstm_fwd)(const Layer *L) { RUN(SUF(lstm_fwd_k)); }

MEMBER(lstm_bwd_k) {
    DIMS;
    const int64_t G = 4 * H;
    const REAL *WT = (const REAL *)L->WhT + k * H * G; /* (W, H): W^h transposed */
    REAL *dc = (REAL *)L->carry + k * B * H; /* dL/dc, carried backwards (zero at T) */
    int64_t hi = T; /* steps [t, hi) await grad_rows */
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *a = A_AT(t, G), *dh = TK_AT(L->dH, t + 1);
        const REAL *cp = (const REAL *)L->Cs + ((k * (T + 1) + t) * B) * H;
        REAL *f = F_AT(t, G), *dhp = TK_AT(L->dH, t);
        for (int64_t i = 0; i < B; i++) {
            const REAL *ar = a + i * G;
            REAL *fr = f + i * G;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                const int64_t x = i * H + j;
                REAL gi = ar[j], gf = ar[H + j], go = ar[2 * H + j], gg = ar[3 * H + j];
                REAL d = dh[x], y = TANH(cp[B * H + x]); /* tanh(c_t), recomputed */
                REAL dcv = dc[x] + d * go * (1 - y * y);
                fr[j] = dcv * gg * (gi - gi * gi);
                fr[H + j] = dcv * cp[x] * (gf - gf * gf);
                fr[2 * H + j] = d * y * (go - go * go);
                fr[3 * H + j] = dcv * gi * SUF(dact)(gg, relu);
                dc[x] = dcv * gf;
            }
        }
        SUF(mm)(L, B, G, H, f, G, WT, H, 1, dhp, H);
        GRADS(G, G)
    }
}

void SUF(lstm_bwd)(const Layer *L) { RUN(SUF(lstm_bwd_k)); }

/* ---- +RNN, blocks [y_in, h_in, g_y, g_h]; input width H; outputs y, carries h ----------- */

MEMBER(plusrnn_fwd_k) {
    DIMS;
    const int64_t G = 4 * H;
    const REAL *W = Wh_ + k * H * G;
    for (int64_t t = 0; t < T; t++) {
        REAL *a = A_AT(t, G), *hp = H_AT(t), *h = H_AT(t + 1), *y = KT_AT(L->Ys, t);
        SUF(step_input)(L, k, t, a, G);
        const REAL *x = KT_AT(L->X, t);
        SUF(mm)(L, B, H, G, hp, H, W, G, 1, a, G);
        for (int64_t i = 0; i < B; i++) {
            REAL *ar = a + i * G;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                const int64_t e = i * H + j;
                REAL yin = SUF(act)(ar[j], 1), hin = TANH(ar[H + j]);
                REAL gy = SUF(sigm)(ar[2 * H + j]), gh = SUF(sigm)(ar[3 * H + j]);
                ar[j] = yin;
                ar[H + j] = hin;
                ar[2 * H + j] = gy;
                ar[3 * H + j] = gh;
                y[e] = yin + gy * (x[e] - yin);
                h[e] = hin + gh * (hp[e] - hin);
            }
        }
    }
}

void SUF(plusrnn_fwd)(const Layer *L) { RUN(SUF(plusrnn_fwd_k)); }

MEMBER(plusrnn_bwd_k) {
    DIMS;
    const int64_t G = 4 * H;
    const REAL *WT = (const REAL *)L->WhT + k * H * G; /* (W, H): W^h transposed */
    REAL *dhc = (REAL *)L->carry + k * B * H; /* dL/dh, carried backwards (zero at T) */
    int64_t hi = T; /* steps [t, hi) await grad_rows */
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *a = A_AT(t, G), *hp = H_AT(t), *x = KT_AT(L->X, t), *dy = KT_AT(L->dY, t);
        REAL *f = F_AT(t, G);
        for (int64_t i = 0; i < B; i++) {
            const REAL *ar = a + i * G;
            REAL *fr = f + i * G;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                const int64_t e = i * H + j;
                REAL yin = ar[j], hin = ar[H + j], gy = ar[2 * H + j], gh = ar[3 * H + j];
                REAL dyv = dy[e], d = dhc[e];
                fr[j] = dyv * (1 - gy) * (REAL)(yin > 0);
                fr[H + j] = d * (1 - gh) * (1 - hin * hin);
                fr[2 * H + j] = dyv * (x[e] - yin) * (gy - gy * gy);
                fr[3 * H + j] = d * (hp[e] - hin) * (gh - gh * gh);
                dhc[e] = d * gh;
            }
        }
        SUF(mm)(L, B, G, H, f, G, WT, H, 1, dhc, H);
        GRADS(G, G)
    }
}

void SUF(plusrnn_bwd)(const Layer *L) { RUN(SUF(plusrnn_bwd_k)); }

/* ---- minimalRNN: u = sigma(a), h = z + u (hp - z); z precomputed in Z ------------------- */

MEMBER(minimalrnn_fwd_k) {
    DIMS;
    const REAL *W = Wh_ + k * H * H;
    for (int64_t t = 0; t < T; t++) {
        REAL *a = A_AT(t, H), *hp = H_AT(t), *h = H_AT(t + 1);
        SUF(step_input)(L, k, t, a, H);
        const REAL *z = KT_AT(L->Z, t);
        SUF(mm)(L, B, H, H, hp, H, W, H, 1, a, H);
        #pragma GCC ivdep
        for (int64_t i = 0; i < B * H; i++) {
            REAL u = SUF(sigm)(a[i]);
            a[i] = u;
            h[i] = z[i] + u * (hp[i] - z[i]);
        }
    }
}

void SUF(minimalrnn_fwd)(const Layer *L) { RUN(SUF(minimalrnn_fwd_k)); }

MEMBER(minimalrnn_bwd_k) {
    DIMS;
    const REAL *WT = (const REAL *)L->WhT + k * H * H; /* (W, H): W^h transposed */
    int64_t hi = T; /* steps [t, hi) await grad_rows */
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *u = A_AT(t, H), *hp = H_AT(t), *z = KT_AT(L->Z, t),
                   *dh = TK_AT(L->dH, t + 1);
        REAL *f = F_AT(t, H), *dhp = TK_AT(L->dH, t);
        #pragma GCC ivdep
        for (int64_t i = 0; i < B * H; i++) {
            f[i] = dh[i] * (hp[i] - z[i]) * (u[i] - u[i] * u[i]);
            dhp[i] += dh[i] * u[i];
        }
        SUF(mm)(L, B, H, H, f, H, WT, H, 1, dhp, H);
        GRADS(H, H)
    }
}

void SUF(minimalrnn_bwd)(const Layer *L) { RUN(SUF(minimalrnn_bwd_k)); }
