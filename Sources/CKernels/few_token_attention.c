// The mask decoder's few-token attention kernels: a head's scores of a prompt's few token rows against an image's
// rows read through a map's parts (ck_head_scores), and those rows' attention output from the image's map read in
// place (ck_head_weighted), both giving the bits of the separate products on our kernel (sgemm.c). Each comes in an
// AVX-512 build, written for its registers, and a portable build of the same algorithm in the compiler's 16-lane
// vectors (two AVX2 registers each), one token row at a time: every element is summed in the same order in both, so
// the two give the same bits, and tests run both where the CPU has AVX-512 (ck_allow_avx512).
#include "kernels.h"
#include "vectors.h"
#include <stdlib.h>
#include <string.h>

#define NR CK_SGEMM_NR
#define KC CK_SGEMM_KC

static long min_long(long a, long b) { return a < b ? a : b; }

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define AVX512   __attribute__((target("avx512f,avx2,fma")))
#define PORTABLE __attribute__((target("avx2,fma")))

// A head's scores of `rows` (≤ 7) token rows against 16 · panels image rows, from the map's parts (ck_head_scores):
// the image part summed, times the column scale, then the base part and each KC-deep slice of the prompt's product,
// each summed from zero and added in that order — what the three products and the scale give one by one, the same
// bits, with C written once. Every accumulator set is 7 × 2 vectors: two sets and the loads fit in 32 registers.
AVX512 static inline __attribute__((always_inline)) void head_scores_tile(int rows, int panels, __mmask16 tail, long dh,
                                                                          const float *z, long ldz, const float *x,
                                                                          const float *base, long kl, const float *g,
                                                                          const float *l, long ldl, const float *scale,
                                                                          float *out, long ldo) {
    __m512 acc[2][7], part[2][7];
    const __mmask16 masks[2] = {panels == 1 ? tail : 0xffff, tail};
#define ZERO(v)                                                                                                        \
    _Pragma("clang loop unroll(full)") for (int q = 0; q < panels; q++)                                                \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) v[q][r] = _mm512_setzero_ps();
#define SUM(v, depth, load, coefficient)                                                                               \
    for (long k = 0; k < (depth); k++) {                                                                               \
        __m512 y[2];                                                                                                   \
        _Pragma("clang loop unroll(full)") for (int q = 0; q < panels; q++) y[q] = load;                               \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) {                                            \
            const __m512 w = _mm512_set1_ps(coefficient);                                                              \
            _Pragma("clang loop unroll(full)") for (int q = 0; q < panels; q++) v[q][r] =                              \
                _mm512_fmadd_ps(w, y[q], v[q][r]);                                                                     \
        }                                                                                                              \
    }
#define ADD_PART                                                                                                       \
    _Pragma("clang loop unroll(full)") for (int q = 0; q < panels; q++)                                                \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) acc[q][r] =                                  \
            _mm512_add_ps(acc[q][r], part[q][r]);
    ZERO(acc)
    SUM(acc, dh, _mm512_loadu_ps(x + k * NR + q * NR * dh), z[r * ldz + k])
    if (scale) {
        _Pragma("clang loop unroll(full)") for (int q = 0; q < panels; q++) {
            const __m512 s = _mm512_maskz_loadu_ps(masks[q], scale + q * NR);
            _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) acc[q][r] = _mm512_mul_ps(acc[q][r], s);
        }
    }
    if (base) {
        ZERO(part)
        SUM(part, dh, _mm512_loadu_ps(base + k * NR + q * NR * dh), z[r * ldz + k])
        ADD_PART
    }
    for (long p0 = 0; p0 < kl; p0 += KC) {
        ZERO(part)
        SUM(part, min_long(KC, kl - p0), _mm512_maskz_loadu_ps(masks[q], l + (p0 + k) * ldl + q * NR),
            g[r * kl + p0 + k])
        ADD_PART
    }
    _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++)
        _Pragma("clang loop unroll(full)") for (int q = 0; q < panels; q++)
            _mm512_mask_storeu_ps(out + r * ldo + q * NR, masks[q], acc[q][r]);
#undef ZERO
#undef SUM
#undef ADD_PART
}

// The row count as a constant, so that each tile's loops unroll fully.
// clang-format off
#define SCORES_CASE(R, panels)                                                                                         \
    case R: head_scores_tile(R, panels, tail, dh, z, ldz, x, base, kl, g, l, ldl, scale, out, ldo); break;
#define HEAD_SCORES_ROWS(panels)                                                                                       \
    switch (rows) {                                                                                                    \
        SCORES_CASE(7, panels) SCORES_CASE(6, panels) SCORES_CASE(5, panels) SCORES_CASE(4, panels)                    \
        SCORES_CASE(3, panels) SCORES_CASE(2, panels) default: SCORES_CASE(1, panels)                                  \
    }
// clang-format on
AVX512 static void head_scores_pair(int rows, long dh, const float *z, long ldz, const float *x, const float *base,
                                    long kl, const float *g, const float *l, long ldl, const float *scale, float *out,
                                    long ldo) {
    const __mmask16 tail = 0xffff;
    HEAD_SCORES_ROWS(2)
}
AVX512 static void head_scores_panel(int rows, __mmask16 tail, long dh, const float *z, long ldz, const float *x,
                                     const float *base, long kl, const float *g, const float *l, long ldl,
                                     const float *scale, float *out, long ldo) {
    HEAD_SCORES_ROWS(1)
}
#undef HEAD_SCORES_ROWS
#undef SCORES_CASE

static void head_scores_avx512(long t, long heads, long dh, const float *z, long ldz, const float *const *x,
                               const float *const *base, const float *scale, const float *g, long kl, const float *l,
                               long ldl, float *out, long ldo, long j0, long j1) {
    // Column by column of the image rows: the prompt's slice of L (kl × 32 floats) is read from memory once and
    // stays in L1 for every head and row group.
    for (long j = j0; j < j1; j += 2 * NR) {
        const long cols = min_long(2 * NR, j1 - j);
        for (long h = 0; h < heads; h++) {
            // The next chunk's panels and the prompt's slice of L, from memory while this chunk sums (few of the
            // many streams here would be caught by the hardware's prefetchers).
            if (j + 2 * NR < j1) {
                for (long line = 0; line < 2 * dh; line++) {
                    _mm_prefetch((const char *)(x[h] + (j + 2 * NR) * dh + line * NR), _MM_HINT_T0);
                    if (base) _mm_prefetch((const char *)(base[h] + (j + 2 * NR) * dh + line * NR), _MM_HINT_T0);
                }
                for (long k = h; k < kl; k += heads) {
                    _mm_prefetch((const char *)(l + k * ldl + j + 2 * NR), _MM_HINT_T0);
                    _mm_prefetch((const char *)(l + k * ldl + j + 3 * NR), _MM_HINT_T0);
                }
            }
            for (long i = 0; i < t; i += 7) {
                const int rows = (int)min_long(7, t - i);
                const float *zi = z + i * ldz + h * dh, *gi = kl ? g + (h * t + i) * kl : NULL, *lj = kl ? l + j : NULL;
                const float *xh = x[h] + j * dh, *bh = base ? base[h] + j * dh : NULL, *sj = scale ? scale + j : NULL;
                float *o = out + (h * t + i) * ldo + j;
                if (cols == 2 * NR) {
                    head_scores_pair(rows, dh, zi, ldz, xh, bh, kl, gi, lj, ldl, sj, o, ldo);
                } else {
                    for (long jj = 0; jj < cols; jj += NR) {
                        const long c = min_long(NR, cols - jj);
                        head_scores_panel(rows, (__mmask16)((1u << (unsigned)c) - 1), dh, zi, ldz, xh + jj * dh,
                                          bh ? bh + jj * dh : NULL, kl, gi, lj ? lj + jj : NULL, ldl,
                                          sj ? sj + jj : NULL, o + jj, ldo);
                    }
                }
            }
        }
    }
}

// `rows` (≤ 15) rows of probabilities against one head's ≤ 16 columns of the image's map over `count` image rows,
// onto the partial sums at `sums` (16 floats a row, in L1 between calls; ck_head_weighted).
AVX512 static inline __attribute__((always_inline)) void head_weighted_rows(int rows, __mmask16 mask, long count,
                                                                            const float *p, long ldp, const float *x,
                                                                            long ldx, float *sums) {
    __m512 acc[15];
    _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) acc[r] = _mm512_loadu_ps(sums + r * NR);
    for (long k = 0; k < count; k++) {
        const __m512 y = _mm512_maskz_loadu_ps(mask, x + k * ldx);
        _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) acc[r] =
            _mm512_fmadd_ps(_mm512_set1_ps(p[r * ldp + k]), y, acc[r]);
    }
    _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) _mm512_storeu_ps(sums + r * NR, acc[r]);
}
// clang-format off
#define WEIGHTED_CASE(R) case R: head_weighted_rows(R, mask, count, p, ldp, x, ldx, sums); break;
AVX512 static void head_weighted_block(int rows, __mmask16 mask, long count, const float *p, long ldp, const float *x,
                                       long ldx, float *sums) {
    switch (rows) {
        WEIGHTED_CASE(15) WEIGHTED_CASE(14) WEIGHTED_CASE(13) WEIGHTED_CASE(12) WEIGHTED_CASE(11) WEIGHTED_CASE(10)
        WEIGHTED_CASE(9) WEIGHTED_CASE(8) WEIGHTED_CASE(7) WEIGHTED_CASE(6) WEIGHTED_CASE(5) WEIGHTED_CASE(4)
        WEIGHTED_CASE(3) WEIGHTED_CASE(2) default: WEIGHTED_CASE(1)
    }
}
// clang-format on
#undef WEIGHTED_CASE

AVX512 static int head_weighted_avx512(long t, long h0, long h1, long dh, long n, const float *p, long ldp,
                                       const float *x, long ldx, float *out, long ldo) {
    const long chunk = 64, rows = (h1 - h0) * t;
    const __mmask16 mask = (__mmask16)((1u << (unsigned)dh) - 1);
    float *sums = aligned_alloc(64, sizeof(float) * NR * (size_t)(rows > 0 ? rows : 1));
    if (!sums) return -2;
    for (long s0 = 0; s0 < n; s0 += KC) {
        const long s1 = min_long(n, s0 + KC);
        memset(sums, 0, sizeof(float) * NR * (size_t)rows);
        // A chunk of the map's rows at a time (32 KB for SAM's 128 channels), every head reading it while it is in L1;
        // the next chunk's rows from memory meanwhile.
        for (long c0 = s0; c0 < s1; c0 += chunk) {
            const long count = min_long(chunk, s1 - c0);
            for (long r = c0 + chunk; r < min_long(n, c0 + 2 * chunk); r++)
                for (long c = h0 * dh; c < h1 * dh; c += NR) _mm_prefetch((const char *)(x + r * ldx + c), _MM_HINT_T0);
            for (long h = h0; h < h1; h++)
                for (long i = 0; i < t; i += 15)
                    head_weighted_block((int)min_long(15, t - i), mask, count, p + (h * t + i) * ldp + c0, ldp,
                                        x + c0 * ldx + h * dh, ldx, sums + ((h - h0) * t + i) * NR);
        }
        // Each slice's sums onto out, in turn (as ck_sgemm adds a slice's sums onto C).
        for (long h = h0; h < h1; h++)
            for (long i = 0; i < t; i++) {
                float *o = out + i * ldo + h * dh;
                _mm512_mask_storeu_ps(
                    o, mask,
                    _mm512_add_ps(_mm512_loadu_ps(sums + ((h - h0) * t + i) * NR), _mm512_maskz_loadu_ps(mask, o)));
            }
    }
    free(sums);
    return 0;
}

// The portable build: 16 lanes of the compiler's vectors (vectors.h), loads and stores of fewer lanes element by
// element.
#define SPLAT(s)     ((v16){s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s})
#define FMA(a, b, c) __builtin_elementwise_fma(a, b, c)

// LOAD_LANES: the first `lanes` floats at p, the rest zero; STORE_LANES: the first `lanes` of v.
#define LOAD_LANES(v, p, lanes)                                                                                        \
    do {                                                                                                               \
        const float *from_ = (p);                                                                                      \
        const long count_ = (lanes);                                                                                   \
        if (count_ >= NR) {                                                                                            \
            (v) = LOAD16(from_);                                                                                       \
        } else {                                                                                                       \
            (v) = (v16){0};                                                                                            \
            for (long i_ = 0; i_ < count_; i_++) (v)[i_] = from_[i_];                                                  \
        }                                                                                                              \
    } while (0)
#define STORE_LANES(p, v, lanes)                                                                                       \
    do {                                                                                                               \
        float *to_ = (p);                                                                                              \
        const long count_ = (lanes);                                                                                   \
        for (long i_ = 0; i_ < count_; i_++) to_[i_] = (v)[i_];                                                        \
    } while (0)

// One token row's scores against one panel of `lanes` image rows: head_scores_tile's sums for one row and panel.
PORTABLE static void head_scores_row(long lanes, long dh, const float *z, const float *x, const float *base, long kl,
                                     const float *g, const float *l, long ldl, const float *scale, float *out) {
    v16 acc = {0};
    for (long k = 0; k < dh; k++) acc = FMA(SPLAT(z[k]), LOAD16(x + k * NR), acc);
    if (scale) {
        v16 s;
        LOAD_LANES(s, scale, lanes);
        acc = acc * s;
    }
    if (base) {
        v16 part = {0};
        for (long k = 0; k < dh; k++) part = FMA(SPLAT(z[k]), LOAD16(base + k * NR), part);
        acc = acc + part;
    }
    for (long p0 = 0; p0 < kl; p0 += KC) {
        v16 part = {0};
        for (long k = p0; k < min_long(kl, p0 + KC); k++) {
            v16 y;
            LOAD_LANES(y, l + k * ldl, lanes);
            part = FMA(SPLAT(g[k]), y, part);
        }
        acc = acc + part;
    }
    STORE_LANES(out, acc, lanes);
}

PORTABLE static void head_scores_portable(long t, long heads, long dh, const float *z, long ldz, const float *const *x,
                                          const float *const *base, const float *scale, const float *g, long kl,
                                          const float *l, long ldl, float *out, long ldo, long j0, long j1) {
    for (long j = j0; j < j1; j += NR)
        for (long h = 0; h < heads; h++)
            for (long i = 0; i < t; i++)
                head_scores_row(min_long(NR, j1 - j), dh, z + i * ldz + h * dh, x[h] + j * dh,
                                base ? base[h] + j * dh : NULL, kl, kl ? g + (h * t + i) * kl : NULL, kl ? l + j : NULL,
                                ldl, scale ? scale + j : NULL, out + (h * t + i) * ldo + j);
}

// Each token row's sums over a KC-deep slice of the image rows, then onto out, slice by slice (head_weighted_avx512's
// order, without its partial sums in memory).
PORTABLE static void head_weighted_portable(long t, long h0, long h1, long dh, long n, const float *p, long ldp,
                                            const float *x, long ldx, float *out, long ldo) {
    for (long s0 = 0; s0 < n; s0 += KC)
        for (long h = h0; h < h1; h++)
            for (long i = 0; i < t; i++) {
                const float *pi = p + (h * t + i) * ldp;
                v16 acc = {0};
                for (long k = s0; k < min_long(n, s0 + KC); k++) {
                    v16 y;
                    LOAD_LANES(y, x + k * ldx + h * dh, dh);
                    acc = FMA(SPLAT(pi[k]), y, acc);
                }
                float *o = out + i * ldo + h * dh;
                v16 old;
                LOAD_LANES(old, o, dh);
                STORE_LANES(o, acc + old, dh);
            }
}

int ck_head_scores(long t, long heads, long dh, const float *z, long ldz, const float *const *x,
                   const float *const *base, const float *scale, const float *g, long kl, const float *l, long ldl,
                   float *out, long ldo, long j0, long j1) {
    if (!ck_sgemm_supported() || dh > KC || j0 % NR) return -1;
    if (ck_cpu_has_avx512())
        head_scores_avx512(t, heads, dh, z, ldz, x, base, scale, g, kl, l, ldl, out, ldo, j0, j1);
    else
        head_scores_portable(t, heads, dh, z, ldz, x, base, scale, g, kl, l, ldl, out, ldo, j0, j1);
    return 0;
}

int ck_head_weighted(long t, long h0, long h1, long dh, long n, const float *p, long ldp, const float *x, long ldx,
                     float *out, long ldo) {
    if (!ck_sgemm_supported() || dh > NR) return -1;
    if (ck_cpu_has_avx512()) return head_weighted_avx512(t, h0, h1, dh, n, p, ldp, x, ldx, out, ldo);
    head_weighted_portable(t, h0, h1, dh, n, p, ldp, x, ldx, out, ldo);
    return 0;
}

#else
int ck_head_scores(long t, long heads, long dh, const float *z, long ldz, const float *const *x,
                   const float *const *base, const float *scale, const float *g, long kl, const float *l, long ldl,
                   float *out, long ldo, long j0, long j1) {
    return -1;
}
int ck_head_weighted(long t, long h0, long h1, long dh, long n, const float *p, long ldp, const float *x, long ldx,
                     float *out, long ldo) {
    return -1;
}
#endif
