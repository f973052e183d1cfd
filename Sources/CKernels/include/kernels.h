#ifndef AUTOANNOTATE_KERNELS_H
#define AUTOANNOTATE_KERNELS_H

#include <stdint.h>

// Elementwise kernels that libm cannot vectorise: exp and erf as polynomials (Cephes' expf, Eigen's float erf;
// about 1 ulp and a few ulp) in loops the compiler vectorises, with an AVX2+FMA build chosen at run time
// where the CPU has it. Everything works in place on contiguous floats. And the bf16 matrix product (bf16_gemm.c).

// Softmax of `rows` rows of `n` values, `stride` floats apart, max-subtracted.
void ck_softmax_rows(float *p, long rows, long n, long stride);
// The same without the division: e^(x − max) in place and 1 / Σ of each row into `inverse[row]`.
void ck_softmax_numerators(float *p, long rows, long n, long stride, float *inverse);
// Softmax down each of n columns of a t-row block whose rows are `stride` floats apart, in place.
void ck_softmax_columns(float *p, long t, long n, long stride);
// Decomposed relative-position bias: for each of `rows` rows (`stride` apart) of s × s key scores,
// row[ky · s + kx] = h[row · s + ky] + w[row · s + kx].
void ck_decomposed_bias(float *p, long rows, long s, long stride, const float *h, const float *w);
// GELU, exact erf form: x · ½ · (1 + erf(x / √2)).
void ck_gelu(float *p, long n);
// out[m · ldo + j] = Σ_i GELU(x[i · ldx + j]) · h[m · n + i] for `cols` columns of n rows of x and `count` vectors h.
void ck_gelu_dot_columns(const float *x, long n, long cols, long ldx, const float *h, long count, float *out, long ldo);
// SiLU: x · σ(x).
void ck_silu(float *p, long n);
// σ(x) = 1 / (1 + e^−x).
void ck_sigmoid(float *p, long n);
// e^x, for tests of the polynomial against the C library.
void ck_exp(float *p, long n);
// erf(x), for tests of the polynomial against the C library.
void ck_erf(float *p, long n);

// Layer norm of `rows` rows of `n` values from `x` into `y` (which may be `x`): (x − mean) / √(var + eps) · g + b,
// biased variance, with 8 partial sums so that the reductions vectorise.
void ck_layer_norm_rows(const float *x, float *y, long rows, long n, const float *g, const float *b, float eps);
// y[r · n + i] = s[r] · x[r · n + i] + b[r · b_stride + i] for `rows` rows of n (b_stride 0: one row b for all).
void ck_scale_add_rows(const float *x, const float *s, const float *b, long b_stride, float *y, long rows, long n);
// y = a + b elementwise for n values, b repeating every `period` values (period divides n).
void ck_add_repeating(const float *a, const float *b, float *y, long n, long period);

// bfloat16 products (bf16_gemm.c). 1 where the CPU has AVX512-BF16 (and the OS saves AVX-512 state) and AVX-512
// is allowed (ck_allow_avx512), else 0.
int ck_bf16_supported(void);
// 1 where the CPU has AVX512-BF16, allowed or not.
int ck_bf16_detected(void);
// 1 where the products run on AMX tiles (AMX-BF16, and Linux granted the tile state), else 0.
int ck_bf16_uses_amx(void);
// One core's multiply-adds per second with 512-bit fp32 FMAs and with AVX512-BF16 dot products (VDPBF16PS), each
// from milliseconds of independent chains, the best of a few alternating tries: whether bf16 can pay without AMX.
// 0 with both rates set; -1 where the CPU has no AVX512-BF16 (allowed or not: it measures the hardware).
int ck_bf16_dot_rates(double *fp32_macs_per_second, double *bf16_macs_per_second);
// Number of uint32 (bf16 pairs) that `ck_bf16_pack_b` writes for a k × n matrix.
long ck_bf16_packed_count(long k, long n);
// Rounds B (k × n; `transposed`: stored n × k, as a Linear weight) to bf16 and packs it for `ck_bf16_gemm`.
void ck_bf16_pack_b(const float *b, long ldb, int transposed, long k, long n, uint32_t *packed);
// C = alpha · A·B (+ C when `accumulate`) with A (m × k, fp32, rounded here) and B packed; fp32 sums.
// Returns -1 where the CPU lacks AVX512-BF16 (C untouched), -2 when out of memory, else 0.
int ck_bf16_gemm(long m, long n, long k, float alpha, const float *a, long lda, const uint32_t *packed, float *c,
                 long ldc, int accumulate);

// fp32 matrix products on our own kernel (sgemm.c), where the CPU has AVX2 and FMA (with 16-lane AVX-512 tiles where
// it has AVX-512); elsewhere OpenBLAS runs them.
#define CK_SGEMM_MR 6   // rows of the register tile (and of a packed A panel)
#define CK_SGEMM_NR 16  // columns of a packed B panel
#define CK_SGEMM_KC 256 // k per slice: a packed operand is stored slice after slice
#define CK_SGEMM_MC 144 // rows of A per block
// A convolution's input read as the [C·kh·kw, Ho·Wo] patch matrix of im2col, without writing that matrix.
typedef struct {
    const float *x;
    long channels, height, width, kernel_h, kernel_w, stride_y, stride_x, pad_y, pad_x, dilation_y, dilation_x, out_h,
        out_w;
} ck_patches;
// An operand: element (i, j) at data[i · row + j · col]; or `packed` (the whole matrix, as ck_sgemm_pack_a or
// ck_sgemm_pack_b wrote it); or, for B only, `patches`.
typedef struct {
    const float *data;
    long row, col;
    const float *packed;
    const ck_patches *patches;
} ck_operand;
// What a product does to C's values besides the sums (a bias, SiLU and residual, fused so that C is written once and
// never re-read): C starts from `row_bias[i]` for row i (a convolution's), or from `col_bias[j]` for column j (a
// linear layer's), or from grid_h[i · s + j / s] + grid_w[i · s + j % s] with s = `grid_side` (SAM's decomposed
// relative positions: n = s² keys on an s × s grid; ck_sgemm only), instead of beta · C (beta is not used); once
// summed, `silu` applies x · σ(x) (the same polynomial as ck_silu, the same bits) or `gelu` GELU (as ck_gelu), then
// `residual[i · ldr + j]` is added. NULL pointers and 0 leave that step out; at most one of the three starting points.
typedef struct {
    const float *row_bias;
    int silu, gelu;
    const float *residual;
    long ldr;
    const float *col_bias;
    const float *grid_h, *grid_w;
    long grid_side;
} ck_epilogue;
// 1 where the CPU has AVX2 and FMA, else 0 (and ck_sgemm returns -1).
int ck_sgemm_supported(void);
// 1 where the CPU has AVX-512 (F, DQ, BW, VL: every AVX-512 server CPU), whose 12-row tiles our kernel and whose
// 16-lane builds the elementwise kernels then use, else 0. 0 also while AVX-512 is not allowed (below).
int ck_cpu_has_avx512(void);
// 1 where the CPU has AVX-512, allowed or not.
int ck_cpu_detects_avx512(void);
// Allows (1, the default) or forbids (0) the AVX-512 paths, so that every kernel takes its AVX2 path on an AVX-512
// CPU: tests run both, benchmarks compare them. AUTOANNOTATE_NO_AVX512=1 forbids them from the start. Set it only
// while no kernel runs.
void ck_allow_avx512(int allowed);
// Floats that ck_sgemm_pack_b writes for a k × n B (packed once to serve several products).
long ck_sgemm_packed_b_count(long k, long n);
void ck_sgemm_pack_b(const ck_operand *b, long k, long n, float *packed);
// Floats that ck_sgemm_pack_a writes for an m × k A (a convolution's filters, packed once at load): for each slice
// of CK_SGEMM_KC k in turn, panels of CK_SGEMM_MR rows, each k's rows together — a[i][k] at
// s · round_up(m, MR) + (i / MR) · MR · kc + (k − s) · MR + i % MR for the slice from k = s, kc deep (rows past m
// zero).
long ck_sgemm_packed_a_count(long m, long k);
void ck_sgemm_pack_a(const ck_operand *a, long m, long k, float *packed);
// The block [m0, m1) × [n0, n1) of C = alpha · A·B + beta · C (A m × k, B k × n); n0 must be a multiple of CK_SGEMM_NR
// when B is packed, m0 one of CK_SGEMM_MR when A is. Any split of C gives the same bits. Returns -1 where
// ck_sgemm_supported() is 0, -2 when out of memory, else 0. `epilogue` may be NULL.
int ck_sgemm(long m, long n, long k, float alpha, const ck_operand *a, const ck_operand *b, float beta, float *c,
             long ldc, long m0, long m1, long n0, long n1, const ck_epilogue *epilogue);
// The whole of a large product (C = alpha · A·B + beta · C, as ck_sgemm over [0, m) × [0, n)) run by every thread that
// calls ck_sgemm_shared_rows with the same `ck_shared_rows` (made for that m, n and k, used once): each thread takes
// blocks of rows as it goes, so the threads finish together whatever their speed. The same bits as ck_sgemm. Returns
// -1 where ck_sgemm_supported() is 0, -2 when out of memory (that thread takes no rows), -3 for a grid epilogue, else
// 0.
typedef struct ck_shared_rows ck_shared_rows;
ck_shared_rows *ck_shared_rows_create(long m, long n, long k);
void ck_shared_rows_free(ck_shared_rows *work);
int ck_sgemm_shared_rows(long m, long n, long k, float alpha, const ck_operand *a, const ck_operand *b, float beta,
                         float *c, long ldc, const ck_epilogue *epilogue, ck_shared_rows *work);

// The mask decoder's scores of a prompt's t token rows against an image's n rows read through a map's parts
// (RowsProjection.scores), for heads h < heads and image rows j in [j0, j1) (j0 a multiple of CK_SGEMM_NR):
//   out[h·t + i, j] = (z_h[i] · X_h[j]) · scale[j] + z_h[i] · B_h[j] + g[h·t + i] · L[:, j]
// where z_h[i] is z[i · ldz + h · dh …] (dh floats), X_h and B_h are [n, dh] packed by ck_sgemm_pack_b as dh × n right
// operands (pointers per head), g is [heads · t, kl] row-major and L is [kl, n] with rows ldl apart. Without `scale`
// (NULL), `base` (NULL) or the prompt's product (kl = 0), that term is left out. The same bits as the three products on
// ck_sgemm and the scale between them, with out written once (few_token_attention.c: an AVX-512 build, else a
// portable one). -1 where ck_sgemm_supported() is 0, dh > CK_SGEMM_KC or j0 is not a multiple of CK_SGEMM_NR, else 0.
int ck_head_scores(long t, long heads, long dh, const float *z, long ldz, const float *const *x,
                   const float *const *base, const float *scale, const float *g, long kl, const float *l, long ldl,
                   float *out, long ldo, long j0, long j1);

// The mask decoder's attention output from a map of the image's n rows (RowsProjection.weighted), heads [h0, h1):
//   out[i, h·dh + c] += Σ_j p[h·t + i, j] · x[j, h·dh + c]   (c < dh ≤ 16; p's rows ldp apart, x's ldx, out's ldo)
// summed in CK_SGEMM_KC-deep slices of j, each from zero and added onto out in turn: the same bits as a ck_sgemm
// product per head with beta 1. -1 where ck_sgemm_supported() is 0 or dh > 16, -2 when out of memory, else 0.
int ck_head_weighted(long t, long h0, long h1, long dh, long n, const float *p, long ldp, const float *x, long ldx,
                     float *out, long ldo);

// Items 0 ..< n (n < 2³²) shared by `threads` threads (work.c): thread t owns the t-th of equal contiguous shares and
// takes them in order; once they are gone it takes the last item left of the thread with the most. Any thread may call
// ck_items_next at any time; every item is returned once, then -1.
typedef struct ck_items ck_items;
ck_items *ck_items_create(long n, long threads);
void ck_items_free(ck_items *work);
long ck_items_next(ck_items *work, long thread);

// 3×3, stride-1, padding-1 convolutions by Winograd's F(2×2, 3×3) on our kernel (winograd.c: its transforms in an
// AVX-512 build and a portable one, the same bits): 1 where our kernel runs, else 0 (and ck_winograd_conv3x3 returns
// -1).
int ck_winograd_supported(void);
// Floats that ck_winograd_pack_filters writes for o filters [c, 3, 3].
long ck_winograd_filters_count(long o, long c);
// The filters [o, c, 3, 3] transformed (G g Gᵀ, 16 matrices [o × c]) and packed once. -2 when out of memory, else 0.
int ck_winograd_pack_filters(const float *weight, long o, long c, float *packed);
// The convolution of x [c, h, w] by the packed filters into y [o, h, w], in items (blocks of 2 × 2 output tiles ×
// blocks of output channels: ck_winograd_items of them): those that ck_items_next gives `thread` from `work` (made for
// that many items; shared by the threads that run the convolution together), or every item where `work` is NULL.
// `epilogue` as for ck_sgemm (its residual laid out as y, `ldr` floats per output channel), or NULL. Any split of the
// items gives the same bits. -1 where ck_winograd_supported() is 0, -2 when out of memory, else 0.
long ck_winograd_items(long o, long c, long h, long w);
int ck_winograd_conv3x3(const float *filters, long o, long c, long h, long w, const float *x, float *y,
                        const ck_epilogue *epilogue, ck_items *work, long thread);

// IEEE half-precision values to float, exactly (F16C where the CPU has it).
void ck_halves_to_floats(const uint16_t *h, float *out, long n);

// glibc: serve large blocks from the heap (reused after free) instead of fresh zero-filled mappings each time.
void ck_keep_large_allocations(void);

#endif
