#include "kernels.h"
#include "vectors.h"
#include "polynomials.h"
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void ck_keep_large_allocations(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

// One softmax row's numerators e^(x − max), in place, with 64 partial maxima and sums so that the reductions
// vectorise without reassociation flags — four 16-lane (eight 8-lane) accumulators, not one chain waiting on each
// addition; declares `inverse_sum` = 1 / Σ. (The exp and the sum are separate loops so that clang vectorises the
// exp in both kernels that use this.)
#define PARTIALS 64
#define SOFTMAX_NUMERATORS_OF_ROW(row, n, inverse_sum)                                                                 \
    float inverse_sum;                                                                                                 \
    {                                                                                                                  \
        float m[PARTIALS];                                                                                             \
        for (int j = 0; j < PARTIALS; j++) m[j] = -INFINITY;                                                           \
        long i = 0;                                                                                                    \
        for (; i + PARTIALS <= n; i += PARTIALS)                                                                       \
            for (int j = 0; j < PARTIALS; j++) m[j] = row[i + j] > m[j] ? row[i + j] : m[j];                           \
        for (; i < n; i++) m[0] = row[i] > m[0] ? row[i] : m[0];                                                       \
        float maximum = m[0];                                                                                          \
        for (int j = 1; j < PARTIALS; j++) maximum = m[j] > maximum ? m[j] : maximum;                                  \
        for (i = 0; i < n; i++) row[i] = exp_poly(row[i] - maximum);                                                   \
        float s[PARTIALS];                                                                                             \
        for (int j = 0; j < PARTIALS; j++) s[j] = 0;                                                                   \
        for (i = 0; i + PARTIALS <= n; i += PARTIALS)                                                                  \
            for (int j = 0; j < PARTIALS; j++) s[j] += row[i + j];                                                     \
        for (; i < n; i++) s[0] += row[i];                                                                             \
        for (int width = PARTIALS / 2; width > 0; width /= 2)                                                          \
            for (int j = 0; j < width; j++) s[j] += s[j + width];                                                      \
        inverse_sum = 1.0f / s[0];                                                                                     \
    }
#define SOFTMAX_BODY                                                                                                   \
    for (long r = 0; r < rows; r++) {                                                                                  \
        float *row = p + r * stride;                                                                                   \
        SOFTMAX_NUMERATORS_OF_ROW(row, n, inverse_sum)                                                                 \
        for (long i = 0; i < n; i++) row[i] *= inverse_sum;                                                            \
    }
// Softmax numerators only, 1 / Σ per row into `inverse`: the caller scales the rows of softmax · V instead
// (dv values per row rather than n).
#define SOFTMAX_NUMERATORS_BODY                                                                                        \
    for (long r = 0; r < rows; r++) {                                                                                  \
        float *row = p + r * stride;                                                                                   \
        SOFTMAX_NUMERATORS_OF_ROW(row, n, inverse_sum)                                                                 \
        inverse[r] = inverse_sum;                                                                                      \
    }
// Softmax down each of n columns of a t-row block (rows `stride` apart), 256 columns at a time so that every step
// runs along rows, vectorised across columns.
#define SOFTMAX_COLUMNS_BODY                                                                                           \
    for (long j0 = 0; j0 < n; j0 += 256) {                                                                             \
        const long w = n - j0 < 256 ? n - j0 : 256;                                                                    \
        float m[256], s[256];                                                                                          \
        for (long j = 0; j < w; j++) {                                                                                 \
            m[j] = p[j0 + j];                                                                                          \
            s[j] = 0;                                                                                                  \
        }                                                                                                              \
        for (long r = 1; r < t; r++) {                                                                                 \
            const float *row = p + r * stride + j0;                                                                    \
            for (long j = 0; j < w; j++) m[j] = row[j] > m[j] ? row[j] : m[j];                                         \
        }                                                                                                              \
        for (long r = 0; r < t; r++) {                                                                                 \
            float *row = p + r * stride + j0;                                                                          \
            for (long j = 0; j < w; j++) {                                                                             \
                row[j] = exp_poly(row[j] - m[j]);                                                                      \
                s[j] += row[j];                                                                                        \
            }                                                                                                          \
        }                                                                                                              \
        for (long j = 0; j < w; j++) s[j] = 1.0f / s[j];                                                               \
        for (long r = 0; r < t; r++) {                                                                                 \
            float *row = p + r * stride + j0;                                                                          \
            for (long j = 0; j < w; j++) row[j] *= s[j];                                                               \
        }                                                                                                              \
    }
// SAM's decomposed relative positions: row r of keys laid out as an s × s grid is set to h[r·s + ky] + w[r·s + kx].
#define DECOMPOSED_BIAS_BODY                                                                                           \
    for (long r = 0; r < rows; r++) {                                                                                  \
        float *row = p + r * stride;                                                                                   \
        const float *hr = h + r * s, *wr = w + r * s;                                                                  \
        for (long ky = 0; ky < s; ky++) {                                                                              \
            float bias = hr[ky];                                                                                       \
            float *line = row + ky * s;                                                                                \
            for (long kx = 0; kx < s; kx++) line[kx] = bias + wr[kx];                                                  \
        }                                                                                                              \
    }
#define LAYER_NORM_BODY                                                                                                \
    for (long r = 0; r < rows; r++) {                                                                                  \
        const float *v = x + r * n;                                                                                    \
        float *out = y + r * n;                                                                                        \
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                                         \
        long i = 0;                                                                                                    \
        for (; i + 8 <= n; i += 8)                                                                                     \
            for (int j = 0; j < 8; j++) s[j] += v[i + j];                                                              \
        for (; i < n; i++) s[0] += v[i];                                                                               \
        float mean = (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))) / (float)n;                   \
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                                         \
        for (i = 0; i + 8 <= n; i += 8)                                                                                \
            for (int j = 0; j < 8; j++) {                                                                              \
                float d = v[i + j] - mean;                                                                             \
                t[j] += d * d;                                                                                         \
            }                                                                                                          \
        for (; i < n; i++) {                                                                                           \
            float d = v[i] - mean;                                                                                     \
            t[0] += d * d;                                                                                             \
        }                                                                                                              \
        float variance = (((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))) / (float)n;               \
        float inverse = 1.0f / sqrtf(variance + eps);                                                                  \
        /* in place (out == v) is safe element by element: vectorise without the overlap check's scalar loop */        \
        _Pragma("clang loop vectorize(assume_safety)") for (i = 0; i < n; i++) out[i] =                                \
            (v[i] - mean) * inverse * g[i] + b[i];                                                                     \
    }
#define SCALE_ADD_ROWS_BODY                                                                                            \
    for (long r = 0; r < rows; r++) {                                                                                  \
        const float *v = x + r * n, *add = b + r * b_stride;                                                           \
        float *out = y + r * n;                                                                                        \
        for (long i = 0; i < n; i++) out[i] = s[r] * v[i] + add[i];                                                    \
    }
#define ADD_REPEATING_BODY                                                                                             \
    for (long start = 0; start < n; start += period)                                                                   \
        for (long i = 0; i < period; i++) y[start + i] = a[start + i] + b[i];
#define GELU_BODY                                                                                                      \
    for (long i = 0; i < n; i++) p[i] = gelu_poly(p[i]);

// out[m · ldo + j] = Σ_i GELU(x[i · ldx + j]) · h[m · n + i] for `cols` columns j of an n-row block of x and `count`
// vectors h: SAM's masks, each a hypernetwork vector times the last upscaled map's GELU, read with the map's channels
// as rows. 16 columns at a time: their GELUs into a block in L1, then each mask's 8 partial sums (channel i into sum
// i mod 8) added down the block as whole vectors, one column a lane — no sums across lanes.
#define GELU_DOT_COLUMNS_BODY                                                                                          \
    float g[n * 16];                                                                                                   \
    for (long j0 = 0; j0 < cols; j0 += 16) {                                                                           \
        const long w = cols - j0 < 16 ? cols - j0 : 16;                                                                \
        for (long i = 0; i < n; i++) {                                                                                 \
            const float *v = x + i * ldx + j0;                                                                         \
            float *gi = g + i * 16;                                                                                    \
            if (w == 16) {                                                                                             \
                for (int l = 0; l < 16; l++) gi[l] = gelu_poly(v[l]);                                                  \
            } else {                                                                                                   \
                for (int l = 0; l < 16; l++) gi[l] = l < w ? v[l] : 0.0f;                                              \
                for (int l = 0; l < 16; l++) gi[l] = gelu_poly(gi[l]);                                                 \
            }                                                                                                          \
        }                                                                                                              \
        for (long m = 0; m < count; m++) {                                                                             \
            const float *hm = h + m * n;                                                                               \
            v16 s[8] = {0};                                                                                            \
            long i = 0;                                                                                                \
            for (; i + 8 <= n; i += 8)                                                                                 \
                for (int j = 0; j < 8; j++) s[j] += LOAD16(g + (i + j) * 16) * hm[i + j];                              \
            for (; i < n; i++) s[0] += LOAD16(g + i * 16) * hm[i];                                                     \
            const v16 sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));                         \
            for (long l = 0; l < w; l++) out[m * ldo + j0 + l] = sum[l];                                               \
        }                                                                                                              \
    }
#define SILU_BODY                                                                                                      \
    for (long i = 0; i < n; i++) p[i] = silu_poly(p[i]);
#define SIGMOID_BODY                                                                                                   \
    for (long i = 0; i < n; i++) p[i] = 1.0f / (1.0f + exp_poly(-p[i]));
#define EXP_BODY                                                                                                       \
    for (long i = 0; i < n; i++) p[i] = exp_poly(p[i]);
#define ERF_BODY                                                                                                       \
    for (long i = 0; i < n; i++) p[i] = erf_poly(p[i]);

#if defined(__x86_64__)
#define AVX2   __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
static int has_avx2(void) {
    static int known = -1;
    if (known < 0) known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return known;
}
// Each kernel compiled three times, the widest the CPU runs chosen: 16 lanes, 8, or whatever the baseline has. The
// bits are the same in all three: every operation is per element, and the reductions' partial sums are spelt out.
// (DISPATCH_OWN_AVX512: the 16-lane build written by hand, as name##_avx512 before it. The body is the variadic
// argument: expanded in DISPATCH, its commas would split it.)
#define DISPATCH_OWN_AVX512(name, signature, arguments, ...)                                                           \
    AVX2 static void name##_avx2 signature { __VA_ARGS__ }                                                             \
    static void name##_generic signature { __VA_ARGS__ }                                                               \
    void ck_##name signature {                                                                                         \
        if (ck_cpu_has_avx512())                                                                                       \
            name##_avx512 arguments;                                                                                   \
        else if (has_avx2())                                                                                           \
            name##_avx2 arguments;                                                                                     \
        else                                                                                                           \
            name##_generic arguments;                                                                                  \
    }
#define DISPATCH(name, signature, arguments, body)                                                                     \
    AVX512 static void name##_avx512 signature{body} DISPATCH_OWN_AVX512(name, signature, arguments, body)

// exp_poly on 16 lanes where x ≤ 88.37 (a softmax's x − max ≤ 0, so the upper clamp is left out): the operations
// clang makes of exp_poly in the same order, so the same bits, except that 2^n is applied by vscalefps — exact, as
// is the multiplication by 2^n it replaces (n ≥ −126 after the clamp, a normal float) — one instruction instead of
// three to build 2^n's bits and a fourth to multiply.
AVX512 static inline __m512 exp_poly_nonpositive16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3365447505f));
    const __m512 fx =
        _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                             _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    const __m512 z = _mm512_mul_ps(x, x);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_add_ps(_mm512_fmadd_ps(y, z, x), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, fx);
}

// SOFTMAX_NUMERATORS_BODY in 16 lanes with the same bits: each row's maximum (exact in any order), then e^(x − max)
// stored and summed into the same 64 partial sums in one pass (the generic body reads the row again), the tail and
// the partials' tree as there.
AVX512 static void softmax_numerators_avx512(float *restrict p, long rows, long n, long stride,
                                             float *restrict inverse) {
    const long whole = n / PARTIALS * PARTIALS;
    for (long r = 0; r < rows; r++) {
        float *row = p + r * stride;
        __m512 m = _mm512_set1_ps(-INFINITY);
        long i = 0;
        for (; i + 16 <= n; i += 16) m = _mm512_max_ps(_mm512_loadu_ps(row + i), m);
        const __mmask16 last = (__mmask16)((1u << (n - i)) - 1);
        m = _mm512_mask_max_ps(m, last, _mm512_maskz_loadu_ps(last, row + i), m);
        const __m512 maximum = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        __m512 sums[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (i = 0; i < whole; i += PARTIALS)
            for (int v = 0; v < 4; v++) {
                const __m512 e = exp_poly_nonpositive16(_mm512_sub_ps(_mm512_loadu_ps(row + i + 16 * v), maximum));
                _mm512_storeu_ps(row + i + 16 * v, e);
                sums[v] = _mm512_add_ps(sums[v], e);
            }
        for (; i < n; i += 16) {
            const __mmask16 lanes = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
            _mm512_mask_storeu_ps(
                row + i, lanes, exp_poly_nonpositive16(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, row + i), maximum)));
        }
        float s[PARTIALS];
        for (int v = 0; v < 4; v++) _mm512_storeu_ps(s + 16 * v, sums[v]);
        for (i = whole; i < n; i++) s[0] += row[i];
        for (int width = PARTIALS / 2; width > 0; width /= 2)
            for (int j = 0; j < width; j++) s[j] += s[j + width];
        inverse[r] = 1.0f / s[0];
    }
}
#else
#define DISPATCH(name, signature, arguments, body)                                                                     \
    void ck_##name signature { body }
#define DISPATCH_OWN_AVX512(name, signature, arguments, ...)                                                           \
    void ck_##name signature { __VA_ARGS__ }
#endif

DISPATCH(softmax_rows, (float *p, long rows, long n, long stride), (p, rows, n, stride), SOFTMAX_BODY)
DISPATCH(softmax_columns, (float *p, long t, long n, long stride), (p, t, n, stride), SOFTMAX_COLUMNS_BODY)
DISPATCH_OWN_AVX512(softmax_numerators, (float *restrict p, long rows, long n, long stride, float *restrict inverse),
                    (p, rows, n, stride, inverse), SOFTMAX_NUMERATORS_BODY)
DISPATCH(decomposed_bias, (float *p, long rows, long s, long stride, const float *h, const float *w),
         (p, rows, s, stride, h, w), DECOMPOSED_BIAS_BODY)
DISPATCH(layer_norm_rows, (const float *x, float *y, long rows, long n, const float *g, const float *b, float eps),
         (x, y, rows, n, g, b, eps), LAYER_NORM_BODY)
DISPATCH(scale_add_rows,
         (const float *restrict x, const float *restrict s, const float *restrict b, long b_stride, float *restrict y,
          long rows, long n),
         (x, s, b, b_stride, y, rows, n), SCALE_ADD_ROWS_BODY)
DISPATCH(add_repeating, (const float *a, const float *b, float *y, long n, long period), (a, b, y, n, period),
         ADD_REPEATING_BODY)
DISPATCH(gelu, (float *p, long n), (p, n), GELU_BODY)
DISPATCH(gelu_dot_columns,
         (const float *restrict x, long n, long cols, long ldx, const float *restrict h, long count,
          float *restrict out, long ldo),
         (x, n, cols, ldx, h, count, out, ldo), GELU_DOT_COLUMNS_BODY)
DISPATCH(silu, (float *p, long n), (p, n), SILU_BODY)
DISPATCH(sigmoid, (float *p, long n), (p, n), SIGMOID_BODY)
DISPATCH(exp, (float *p, long n), (p, n), EXP_BODY)
DISPATCH(erf, (float *p, long n), (p, n), ERF_BODY)

// IEEE half to float for n values (checkpoints stored in float16: Ultralytics' YOLO weights). With F16C, eight at a
// time in hardware; otherwise bit by bit (normals, subnormals, infinities and NaNs), exact either way.
static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0x1f)
        bits = sign | 0x7f800000 | (mantissa << 13);
    else if (exponent != 0)
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    else if (mantissa == 0)
        bits = sign;
    else {
        float value = (float)mantissa * 5.9604644775390625e-8f; // 2^-24
        memcpy(&bits, &value, sizeof bits);
        bits |= sign;
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}
#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) static void halves_f16c(const uint16_t *h, float *out, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) out[i] = half_to_float(h[i]);
}
#endif
void ck_halves_to_floats(const uint16_t *h, float *out, long n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("f16c")) {
        halves_f16c(h, out, n);
        return;
    }
#endif
    for (long i = 0; i < n; i++) out[i] = half_to_float(h[i]);
}
