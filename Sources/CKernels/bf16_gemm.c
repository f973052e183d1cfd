// bfloat16 matrix products: operands rounded to bf16 (round to nearest even, as PyTorch's autocast rounds), products
// summed in fp32. Debian's OpenBLAS is built without `sbgemm`, so this is the project's own, in two kernels chosen at
// run time: AMX tiles (TDPBF16PS: a 16 × 16 fp32 tile += 16 × 32 by 32 × 16 bf16, Sapphire Rapids and later) and
// AVX512-BF16 (VDPBF16PS: 16 lanes, each adding two bf16 products; Cooper Lake, Zen 4). B is packed once into
// 32-column panels of k-pairs (the "VNNI" layout both instructions read); A is rounded to rows of k-pairs per call.
#include "kernels.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NR 32  // columns per B panel: two zmm of 16 fp32 lanes, or two 16-column AMX tiles
#define KB 256 // k-pairs per cache block: a 32-row strip's slice of A is 32 KB, a B panel's slice 32 KB
#define NB 8   // B panels per column group (a KB × 256 slice of B, 256 KB, stays in L2 while A's strips pass)

// Pairs per packed row or panel row: k/2 rounded up to whole AMX tiles (16 pairs), zero-filled.
static long padded_pairs(long k) { return ((k + 1) / 2 + 15) / 16 * 16; }

static inline uint16_t bf16_round(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40); // NaN stays NaN
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1)) >> 16);
}

static inline uint32_t bf16_pair(float lo, float hi) {
    return (uint32_t)bf16_round(lo) | ((uint32_t)bf16_round(hi) << 16);
}

long ck_bf16_packed_count(long k, long n) { return ((n + NR - 1) / NR) * padded_pairs(k) * NR; }

// Scalar packing of columns [c0, n) (and the zero fill of the whole buffer when c0 = 0).
static void pack_b_scalar(const float *b, long ldb, int transposed, long k, long n, long c0, uint32_t *packed) {
    const long k2 = (k + 1) / 2, kp = padded_pairs(k);
    if (c0 == 0) memset(packed, 0, (size_t)ck_bf16_packed_count(k, n) * sizeof *packed);
    for (long col = c0; col < n; col++) {
        uint32_t *panel = packed + (col / NR) * kp * NR + col % NR;
        for (long j = 0; j < k2; j++) {
            const long k0 = 2 * j;
            float lo, hi;
            if (transposed) { // B[kk][col] = b[col · ldb + kk]: a weight row, as PyTorch's Linear stores it
                lo = b[col * ldb + k0];
                hi = k0 + 1 < k ? b[col * ldb + k0 + 1] : 0;
            } else {
                lo = b[k0 * ldb + col];
                hi = k0 + 1 < k ? b[(k0 + 1) * ldb + col] : 0;
            }
            panel[j * NR] = bf16_pair(lo, hi);
        }
    }
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}

static int detect_avx512_bf16(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;          // OSXSAVE
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16))) return 0; // AVX512F
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return 0;  // AVX512_BF16
    return (xcr0() & 0xe6) == 0xe6; // the OS saves SSE, AVX and all AVX-512 state
}

// AMX: the CPU's AMX-TILE and AMX-BF16, and Linux's permission to use the tile data (asked once per process).
static int detect_amx(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) return 0;
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0) return 0;
    return (xcr0() & (3u << 17)) == (3u << 17);
}

// cpuid and arch_prctl trap to the hypervisor in a VM: asked once (a benign race: every thread gets the same answer).
static int avx512_bf16_detected(void) {
    static int detected = -1;
    if (detected < 0) detected = detect_avx512_bf16();
    return detected;
}

// AVX512-BF16 and AMX are AVX-512 paths: forbidding AVX-512 (ck_allow_avx512) forbids them too.
static int avx512_bf16_supported(void) { return avx512_bf16_detected() && ck_cpu_has_avx512(); }

// AUTOANNOTATE_NO_AMX=1 keeps the AVX512-BF16 kernel on an AMX CPU (to compare or test the two).
static int amx_supported(void) {
    static int detected = -1;
    if (detected < 0) detected = avx512_bf16_detected() && !getenv("AUTOANNOTATE_NO_AMX") && detect_amx();
    return detected && ck_cpu_has_avx512();
}

int ck_bf16_supported(void) { return avx512_bf16_supported(); }
int ck_bf16_detected(void) { return avx512_bf16_detected(); }
int ck_bf16_uses_amx(void) { return amx_supported(); }

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define AMX_TARGET  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// 12 independent accumulators cover either instruction's latency times its ports; the operands come through a
// volatile, so the chains cannot be folded, and the sums leave through one. x · 1 + 0 and acc + 0 · 0 keep every
// value normal (no denormal or infinity slow path).
#define DOT_CHAINS(step)                                                                                               \
    step(0) step(1) step(2) step(3) step(4) step(5) step(6) step(7) step(8) step(9) step(10) step(11)
#define FMA_STEP(i)  acc##i = _mm512_fmadd_ps(acc##i, one, zero);
#define BF16_STEP(i) acc##i = _mm512_dpbf16_ps(acc##i, zeros, zeros);
#define DECLARE(i)   __m512 acc##i = _mm512_set1_ps(o);
#define SUM(i)       total = _mm512_add_ps(total, acc##i);

// Seconds for `iterations` rounds of 12 fp32 FMAs, or of 12 bf16 dot products.
BF16_TARGET static double dot_seconds(long iterations, int bf16) {
    static volatile float source = 1.0f;
    const float o = source;
    const __m512 one = _mm512_set1_ps(o), zero = _mm512_set1_ps(o - 1.0f);
    const __m512bh zeros = (__m512bh)_mm512_castps_si512(zero);
    DOT_CHAINS(DECLARE)
    const double start = seconds_now();
    if (bf16) {
        for (long i = 0; i < iterations; i++) {
            DOT_CHAINS(BF16_STEP)
        }
    } else {
        for (long i = 0; i < iterations; i++) {
            DOT_CHAINS(FMA_STEP)
        }
    }
    const double elapsed = seconds_now() - start;
    __m512 total = _mm512_setzero_ps();
    DOT_CHAINS(SUM)
    source = _mm512_reduce_add_ps(total) > 0 ? 1.0f : o;
    return elapsed;
}

int ck_bf16_dot_rates(double *fp32_macs_per_second, double *bf16_macs_per_second) {
    if (!avx512_bf16_detected()) return -1;
    enum { ITERATIONS = 100000 }; // 1.2 M instructions a try: far above the clock's resolution, yet cheap to run
    double fma = 1e30, bf16 = 1e30;
    for (int attempt = 0; attempt < 5; attempt++) { // alternating, so both see the same moments of a noisy machine
        const double f = dot_seconds(ITERATIONS, 0), b = dot_seconds(ITERATIONS, 1);
        fma = f < fma ? f : fma;
        bf16 = b < bf16 ? b : bf16;
    }
    *fp32_macs_per_second = 12.0 * ITERATIONS * 16 / fma;  // 16 lanes, one multiply-add each
    *bf16_macs_per_second = 12.0 * ITERATIONS * 32 / bf16; // 16 lanes, two bf16 products each
    return 0;
}

// Packs B with 16 columns (non-transposed: two k rows at once, interleaved) or 32 k values (transposed: one
// weight row) rounded per instruction; the remainder goes through the scalar path.
BF16_TARGET static void pack_b_avx512(const float *b, long ldb, int transposed, long k, long n, uint32_t *packed) {
    const long k2 = (k + 1) / 2, kp = padded_pairs(k);
    memset(packed, 0, (size_t)ck_bf16_packed_count(k, n) * sizeof *packed);
    if (transposed) {
        uint32_t line[16];
        for (long col = 0; col < n; col++) {
            uint32_t *panel = packed + (col / NR) * kp * NR + col % NR;
            const float *x = b + col * ldb;
            long j = 0;
            for (; 2 * j + 32 <= k; j += 16) { // cvtne2ps puts its second operand low: pairs come out in k order
                _mm512_storeu_si512(
                    line, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 2 * j + 16), _mm512_loadu_ps(x + 2 * j)));
                for (int i = 0; i < 16; i++) panel[(j + i) * NR] = line[i];
            }
            for (; j < k2; j++) panel[j * NR] = bf16_pair(x[2 * j], 2 * j + 1 < k ? x[2 * j + 1] : 0);
        }
        return;
    }
    // Lane i of the result takes bf16 i of row 2j (low half) then bf16 i of row 2j + 1 (high half).
    static const short order[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i interleave = _mm512_loadu_si512(order);
    const long full = n / 16 * 16;
    for (long j = 0; j < k / 2; j++) {
        const float *r0 = b + 2 * j * ldb, *r1 = r0 + ldb;
        for (long col = 0; col < full; col += 16) {
            const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(r1 + col), _mm512_loadu_ps(r0 + col));
            _mm512_storeu_si512(packed + (col / NR) * kp * NR + j * NR + col % NR,
                                _mm512_permutexvar_epi16(interleave, (__m512i)v));
        }
    }
    for (long col = 0; col < full && k % 2; col++) { // the last, unpaired k row
        packed[(col / NR) * kp * NR + (k2 - 1) * NR + col % NR] = bf16_pair(b[(k - 1) * ldb + col], 0);
    }
    if (full < n) pack_b_scalar(b, ldb, 0, k, n, full, packed);
}

// Rounds `rows` rows of A (k columns) to bf16 pairs, `kp` pairs per row (zero beyond k), 32 floats per instruction.
BF16_TARGET static void pack_a(const float *a, long lda, long k, long rows, long kp, uint32_t *out) {
    const long k2 = (k + 1) / 2;
    for (long r = 0; r < rows; r++) {
        const float *x = a + r * lda;
        uint32_t *y = out + r * kp;
        long j = 0;
        for (; 2 * j + 32 <= k; j += 16) {
            _mm512_storeu_si512(
                y + j, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 2 * j + 16), _mm512_loadu_ps(x + 2 * j)));
        }
        for (; j < k2; j++) y[j] = bf16_pair(x[2 * j], 2 * j + 1 < k ? x[2 * j + 1] : 0);
        memset(y + k2, 0, (size_t)(kp - k2) * sizeof *y);
    }
}

// C[rows × cols] (≤ 12 × 32) = alpha · A·B (+ C when `accumulate`), over k2 pairs of an A strip (12 rows of pairs,
// `stride` pairs apart) and a B panel slice ([k2][32] pairs).
BF16_TARGET static void avx512_tile(long k2, const uint32_t *ap, long stride, const uint32_t *bp, float *c, long ldc,
                                    int rows, int cols, float alpha, int accumulate) {
    enum { MR = 12 }; // 24 accumulators + 2 B vectors + a broadcast fit the 32 zmm registers
    __m512 acc[MR][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (long j = 0; j < k2; j++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + j * NR),
                       b1 = (__m512bh)_mm512_loadu_si512(bp + j * NR + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)ap[r * stride + j]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
        }
    }
    const __m512 scale = _mm512_set1_ps(alpha);
    const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    // Unrolled over all 12 rows, each stored if inside C, so that the accumulators are stored from their registers
    // (a loop to `rows` would keep them in a stack array, written and read back for every tile).
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r < rows) {
            float *row = c + r * ldc;
            __m512 v0 = _mm512_mul_ps(acc[r][0], scale), v1 = _mm512_mul_ps(acc[r][1], scale);
            if (accumulate) {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row + 16));
            }
            _mm512_mask_storeu_ps(row, m0, v0);
            _mm512_mask_storeu_ps(row + 16, m1, v1);
        }
    }
}

// C[rows × cols] (≤ 32 × 32) = alpha · A·B (+ C when `accumulate`) on AMX: tiles 0–3 the four 16 × 16 blocks of C,
// 4–5 two 16-row slices of A (32 k each), 6–7 the two 16-column halves of the B panel; kl pairs (a multiple of 16).
AMX_TARGET static void amx_tile(long kl, const uint32_t *ap, long stride, const uint32_t *bp, float *c, long ldc,
                                int rows, int cols, float alpha, int accumulate) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (long j = 0; j < kl; j += 16) {
        _tile_loadd(4, ap + j, stride * 4);
        _tile_loadd(5, ap + 16 * stride + j, stride * 4);
        _tile_loadd(6, bp + j * NR, NR * 4);
        _tile_loadd(7, bp + j * NR + 16, NR * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float block[32][32] __attribute__((aligned(64)));
    _tile_stored(0, &block[0][0], 32 * 4);
    _tile_stored(1, &block[0][16], 32 * 4);
    _tile_stored(2, &block[16][0], 32 * 4);
    _tile_stored(3, &block[16][16], 32 * 4);
    const __m512 scale = _mm512_set1_ps(alpha);
    const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    for (int r = 0; r < rows; r++) {
        float *row = c + r * ldc;
        __m512 v0 = _mm512_mul_ps(_mm512_load_ps(block[r]), scale),
               v1 = _mm512_mul_ps(_mm512_load_ps(block[r] + 16), scale);
        if (accumulate) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row + 16));
        }
        _mm512_mask_storeu_ps(row, m0, v0);
        _mm512_mask_storeu_ps(row + 16, m1, v1);
    }
}

// Every tile 16 rows of 64 bytes (palette 1); the configuration is per thread, so each call loads it.
AMX_TARGET static void amx_configure(void) {
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t bytes_per_row[16];
        uint8_t rows[16];
    } config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.bytes_per_row[t] = 64;
        config.rows[t] = 16;
    }
    _tile_loadconfig(&config);
}

AMX_TARGET static void amx_release(void) { _tile_release(); }

int ck_bf16_gemm(long m, long n, long k, float alpha, const float *a, long lda, const uint32_t *packed, float *c,
                 long ldc, int accumulate) {
    if (!avx512_bf16_supported()) return -1;
    if (m <= 0 || n <= 0) return 0;
    const int amx = amx_supported();
    const long mr = amx ? 32 : 12, k2 = (k + 1) / 2, kp = padded_pairs(k), panels = (n + NR - 1) / NR,
               strips = (m + mr - 1) / mr;
    if (k2 == 0) {
        for (long r = 0; r < m && !accumulate; r++) memset(c + r * ldc, 0, (size_t)n * sizeof *c);
        return 0;
    }
    // A as bf16 pairs, padded with zero rows to whole strips (the kernels always read whole strips).
    const size_t bytes = ((size_t)(strips * mr * kp) * sizeof(uint32_t) + 63) & ~(size_t)63;
    uint32_t *ap = aligned_alloc(64, bytes);
    if (!ap) return -2;
    pack_a(a, lda, k, m, kp, ap);
    memset(ap + m * kp, 0, (size_t)((strips * mr - m) * kp) * sizeof *ap);
    if (amx) amx_configure();
    // k in blocks of KB pairs, columns in groups of NB panels; each strip's slice of A stays in L1 across a group.
    const long kend = amx ? kp : k2; // AMX steps whole tiles of 16 pairs (zero-padded)
    for (long kb = 0; kb < kend; kb += KB) {
        const long kl = kend - kb < KB ? kend - kb : KB;
        for (long pb = 0; pb < panels; pb += NB) {
            const long pe = pb + NB < panels ? pb + NB : panels;
            for (long s = 0; s < strips; s++) {
                const int rows = (int)(m - s * mr < mr ? m - s * mr : mr);
                for (long p = pb; p < pe; p++) {
                    const int cols = (int)(n - p * NR < NR ? n - p * NR : NR);
                    const uint32_t *as = ap + s * mr * kp + kb, *bs = packed + p * kp * NR + kb * NR;
                    float *cs = c + s * mr * ldc + p * NR;
                    if (amx)
                        amx_tile(kl, as, kp, bs, cs, ldc, rows, cols, alpha, accumulate || kb > 0);
                    else
                        avx512_tile(kl, as, kp, bs, cs, ldc, rows, cols, alpha, accumulate || kb > 0);
                }
            }
        }
    }
    if (amx) amx_release();
    free(ap);
    return 0;
}

void ck_bf16_pack_b(const float *b, long ldb, int transposed, long k, long n, uint32_t *packed) {
    if (avx512_bf16_supported())
        pack_b_avx512(b, ldb, transposed, k, n, packed);
    else
        pack_b_scalar(b, ldb, transposed, k, n, 0, packed);
}

#else
int ck_bf16_supported(void) { return 0; }
int ck_bf16_detected(void) { return 0; }
int ck_bf16_uses_amx(void) { return 0; }
int ck_bf16_dot_rates(double *fp32_macs_per_second, double *bf16_macs_per_second) {
    (void)fp32_macs_per_second, (void)bf16_macs_per_second;
    return -1;
}
void ck_bf16_pack_b(const float *b, long ldb, int transposed, long k, long n, uint32_t *packed) {
    pack_b_scalar(b, ldb, transposed, k, n, 0, packed);
}
int ck_bf16_gemm(long m, long n, long k, float alpha, const float *a, long lda, const uint32_t *packed, float *c,
                 long ldc, int accumulate) {
    (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)packed, (void)c, (void)ldc, (void)accumulate;
    return -1;
}
#endif
