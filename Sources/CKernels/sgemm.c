// fp32 matrix products on our own AVX2+FMA kernel, in BLIS's scheme: A is packed into 6-row panels and B into
// 16-column panels of a 256-deep slice of k, and a 6 × 16 register tile sums one panel pair. OpenBLAS's sgemm packs
// both operands on every call and has no way to keep a packed operand: here attention packs a head's keys and values
// once, a convolution's patches are gathered straight into B's panels (no im2col matrix), a row-major B used by one
// block of rows is read in place, and a product can be cut into blocks of any shape with the same bits — every
// element is summed over k in the same order (256-deep slices, in turn; fused multiply-adds within a slice) whatever
// block computes it. Where the CPU has AVX-512, two A panels share one pass over one or two B panels (12 × 16 and
// 12 × 32 tiles of 16-lane vectors): the same sums in the same order, the same bits.
#include "kernels.h"
#include "packing.h"
#include "polynomials.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#else
#define AVX2
#endif

#define MR CK_SGEMM_MR
#define NR CK_SGEMM_NR
// k per slice: a B panel's slice is 16 KB (L1), an A panel's 6 KB.
#define KC CK_SGEMM_KC
// Rows of A per block: 144 KB of packed A, kept in L2 while the B panels pass (up to 288 rows, one block that
// streams B panel by panel).
#define MC CK_SGEMM_MC
// Columns of B per block (3 MB of packed B at most): SAM's widest linear in one pass.
#define NC 3072

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
// r[i] ← column i of the 8 × 8 block whose rows are r[0…7].
AVX2 static inline void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}
#define FAST_PACKING 1
#endif

static long min_long(long a, long b) { return a < b ? a : b; }

// Copies and zero fills of a few floats, as loops the compiler vectorises in place: a libc call per panel row would
// cost more than the copy.
AVX2 static inline void copy_floats(float *restrict d, const float *restrict s, long n) {
    for (long i = 0; i < n; i++) d[i] = s[i];
}
AVX2 static inline void zero_floats(float *d, long n) {
    for (long i = 0; i < n; i++) d[i] = 0;
}
static long round_up(long x, long unit) { return (x + unit - 1) / unit * unit; }

long ck_sgemm_packed_b_count(long k, long n) { return round_up(n, NR) * k; }
long ck_sgemm_packed_a_count(long m, long k) { return round_up(m, MR) * k + 16; } // + 16: as abuf in ck_sgemm

// Rows [i0, i0 + mc) and k [p0, p0 + kc) of A into 6-row panels: panel p holds a[k][r] at p · 6 · kc + k · 6 + r,
// rows past the end zero.
AVX2 static void pack_a_block(const ck_operand *a, long i0, long mc, long p0, long kc, float *dst) {
    for (long i = 0; i < mc; i += MR, dst += MR * kc) {
        const long rows = min_long(MR, mc - i);
        const float *s = a->data + (i0 + i) * a->row + p0 * a->col;
        if (rows < MR) memset(dst, 0, sizeof(float) * MR * kc);
        if (a->col == 1) {
            long k0 = 0;
#ifdef FAST_PACKING
            // Rows along k (activations, attention weights): 6 rows × 8 k transposed in registers, each k's 6
            // values stored as 8 in increasing order (the extra 2 are overwritten by the next k, or land in slack).
            if (rows == MR) {
                for (; k0 + 8 <= kc; k0 += 8) {
                    __m256 v[8];
                    for (int r = 0; r < MR; r++) v[r] = _mm256_loadu_ps(s + r * a->row + k0);
                    v[6] = v[7] = _mm256_setzero_ps();
                    transpose8(v);
                    for (int k = 0; k < 8; k++) _mm256_storeu_ps(dst + (k0 + k) * MR, v[k]);
                }
            }
#endif
            for (long r = 0; r < rows; r++)
                for (long k = k0; k < kc; k++) dst[k * MR + r] = s[r * a->row + k];
        } else {
#ifdef FAST_PACKING
            if (a->row == 1 && rows == MR) { // Aᵀ stored (attention probabilities [H·T, rows]): 6 floats in a row per k
                const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
                for (long k = 0; k < kc; k++) _mm256_storeu_ps(dst + k * MR, _mm256_maskload_ps(s + k * a->col, six));
                continue;
            }
#endif
            for (long k = 0; k < kc; k++)
                for (long r = 0; r < rows; r++) dst[k * MR + r] = s[r * a->row + k * a->col];
        }
    }
}

// d[i] = line[2i] for a panel's 16 columns (a stride-2 convolution), reading line[0…31].
AVX2 static inline void gather_even(float *d, const float *line) {
#ifdef FAST_PACKING
    for (int half = 0; half < 2; half++) {
        const __m256 x0 = _mm256_loadu_ps(line + 16 * half), x1 = _mm256_loadu_ps(line + 16 * half + 8);
        const __m256 even = _mm256_shuffle_ps(x0, x1, _MM_SHUFFLE(2, 0, 2, 0)); // 0 2 8 10 | 4 6 12 14
        _mm256_storeu_ps(d + 8 * half,
                         _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0))));
    }
#else
    for (int i = 0; i < NR; i++) d[i] = line[2 * i];
#endif
}

// A 16-column panel of a convolution's patches: B[p][j] = x[ch, oy·sy − py + ky·dy, ox·sx − px + kx·dx] with
// p = (ch · kh + ky) · kw + kx and j = oy · wo + ox, zero outside the input (the padding). The panel's columns are
// cut into runs along one output row; each run reads one input row at a fixed step, with the padding at its ends.
typedef struct {
    int count;                          // runs
    long start[NR + 1], oy[NR], ox[NR]; // run r: panel columns [start[r], start[r + 1]), from output (oy, ox)
    long ch, ky, kx;                    // the tap of the panel's first k
    const float *interior;              // one run of 16 whose every tap lies inside the input (most panels of
                                        // a 3×3 convolution): where its first column's window starts in
                                        // channel 0, else NULL
} patch_runs;

static patch_runs panel_runs(const ck_patches *g, long p0, long j0, long cols) {
    patch_runs p = {.count = 0, .interior = NULL};
    for (long c = 0; c < cols; p.count++) {
        p.start[p.count] = c;
        p.oy[p.count] = (j0 + c) / g->out_w;
        p.ox[p.count] = (j0 + c) % g->out_w;
        c += min_long(cols - c, g->out_w - p.ox[p.count]);
    }
    p.start[p.count] = cols;
    p.ch = p0 / (g->kernel_h * g->kernel_w), p.ky = p0 / g->kernel_w % g->kernel_h, p.kx = p0 % g->kernel_w;
    const long sx = g->stride_x;
    if (p.count == 1 && cols == NR && (sx == 1 || sx == 2)) {
        const long iy0 = p.oy[0] * g->stride_y - g->pad_y, ix0 = p.ox[0] * sx - g->pad_x;
        // The last input read: the last tap of the last column (the stride-2 gathers read one float past it).
        const long iy1 = iy0 + (g->kernel_h - 1) * g->dilation_y,
                   ix1 = ix0 + (g->kernel_w - 1) * g->dilation_x + (NR - 1) * sx + (sx == 2);
        if (iy0 >= 0 && iy1 < g->height && ix0 >= 0 && ix1 < g->width) p.interior = g->x + iy0 * g->width + ix0;
    }
    return p;
}

// The tap of the next k, in p's order.
static inline void next_tap(const ck_patches *g, patch_runs *p) {
    if (++p->kx == g->kernel_w) {
        p->kx = 0;
        if (++p->ky == g->kernel_h) {
            p->ky = 0;
            p->ch++;
        }
    }
}

// An interior panel's input row for its current tap.
static inline const float *interior_line(const ck_patches *g, const patch_runs *p) {
    return p->interior + p->ch * g->height * g->width + p->ky * g->dilation_y * g->width + p->kx * g->dilation_x;
}

// Columns [lo, hi) of a run of `length` whose first column reads input column ix, at step sx, lie inside the row.
static inline void inside(const ck_patches *g, long ix, long sx, long length, long *lo, long *hi) {
    if (sx == 1) { // no division for the common stride 1
        *lo = ix >= 0 ? 0 : -ix;
        *hi = g->width - ix;
    } else {
        *lo = ix >= 0 ? 0 : (-ix + sx - 1) / sx;
        *hi = ix > g->width - 1 ? 0 : (g->width - 1 - ix) / sx + 1;
    }
    *lo = min_long(length, *lo);
    *hi = min_long(length, *hi < *lo ? *lo : *hi);
}

// A tap's reads in a panel that is not interior, the same in every channel (so worked out once per tap, not per k):
// the channels [first, end) whose k for this tap (k = channel · taps + tap) lie in the slice [p0, p0 + kc), and each
// run's panel columns [from, to) that lie inside the input — the others are padding, zero — with where the input of
// column `from` lies in channel 0 (column l reads line[(l − from) · sx]).
typedef struct {
    long first, end;
    int count;
    struct {
        int from, to;
        const float *line;
    } runs[NR];
} tap_reads;

static tap_reads reads_of_tap(const ck_patches *g, const patch_runs *p, long p0, long kc, long tap) {
    const long taps = g->kernel_h * g->kernel_w, sx = g->stride_x;
    const long dy = tap / g->kernel_w * g->dilation_y - g->pad_y, dx = tap % g->kernel_w * g->dilation_x - g->pad_x;
    tap_reads t = {.first = p0 <= tap ? 0 : (p0 - tap + taps - 1) / taps,
                   .end = p0 + kc <= tap ? 0 : (p0 + kc - tap + taps - 1) / taps};
    for (int r = 0; r < p->count; r++) {
        const long iy = p->oy[r] * g->stride_y + dy, ix = p->ox[r] * sx + dx;
        long lo, hi;
        inside(g, ix, sx, p->start[r + 1] - p->start[r], &lo, &hi);
        if (iy < 0 || iy >= g->height || lo == hi) continue;
        t.runs[t.count].from = (int)(p->start[r] + lo), t.runs[t.count].to = (int)(p->start[r] + hi);
        t.runs[t.count++].line = g->x + iy * g->width + ix + lo * sx;
    }
    return t;
}

AVX2 static void pack_patches_panel(const ck_patches *g, long p0, long kc, long j0, long cols, float *dst) {
    patch_runs p = panel_runs(g, p0, j0, cols);
    const long sx = g->stride_x;
    if (p.interior) { // one source pointer per k and a straight copy, no per-k bounds
        for (long k = 0; k < kc; k++, dst += NR) {
            const float *line = interior_line(g, &p);
            // The panel two along reads this row 2 · 16 · sx floats on: dozens of input rows are read at once
            // (one per channel and tap row), more streams than the hardware prefetcher follows.
            __builtin_prefetch(line + 2 * NR * sx);
            if (sx == 1) {
                copy_floats(dst, line, NR);
            } else {
                gather_even(dst, line);
            }
            next_tap(g, &p);
        }
        return;
    }
    // Other panels tap by tap (see reads_of_tap): that tap's k in each channel of the slice.
    const long taps = g->kernel_h * g->kernel_w, plane = g->height * g->width;
    for (long tap = 0; tap < taps; tap++) {
        const tap_reads t = reads_of_tap(g, &p, p0, kc, tap);
        float *d = dst + (t.first * taps + tap - p0) * NR;
        for (long ch = t.first; ch < t.end; ch++, d += taps * NR) {
            zero_floats(d, NR);
            for (int r = 0; r < t.count; r++) {
                const float *in = t.runs[r].line + ch * plane;
                const int from = t.runs[r].from, to = t.runs[r].to;
                if (sx == 1)
                    copy_floats(d + from, in, to - from);
                else
                    for (int i = from; i < to; i++) d[i] = in[(i - from) * sx];
            }
        }
    }
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
// The same panel where the CPU has AVX-512: each k's 16 columns are one register, filled run by run with masked
// loads — lanes in the padding stay zero and are never read — and stored once: no partial copies and zero fills for
// the panels at an output row's ends and those across two rows.
__attribute__((target("avx512f,avx2,fma,bmi2"))) static void
pack_patches_panel_avx512(const ck_patches *g, long p0, long kc, long j0, long cols, float *dst) {
    patch_runs p = panel_runs(g, p0, j0, cols);
    const long sx = g->stride_x;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i steps = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)sx));
    if (p.interior) {
        for (long k = 0; k < kc; k++, dst += NR) {
            const float *line = interior_line(g, &p);
            __builtin_prefetch(line + 2 * NR * sx); // as in pack_patches_panel
            _mm512_storeu_ps(dst,
                             sx == 1 ? _mm512_loadu_ps(line)
                                     : _mm512_permutex2var_ps(_mm512_loadu_ps(line), even, _mm512_loadu_ps(line + NR)));
            next_tap(g, &p);
        }
        return;
    }
    // Other panels tap by tap (see reads_of_tap): that tap's k in each channel of the slice, run by run into one
    // register.
    const long taps = g->kernel_h * g->kernel_w, plane = g->height * g->width;
    for (long tap = 0; tap < taps; tap++) {
        const tap_reads t = reads_of_tap(g, &p, p0, kc, tap);
        const float *line[NR];
        __mmask16 mask[NR], low[NR], high[NR];
        for (int r = 0; r < t.count; r++) {
            mask[r] = (__mmask16)(((1u << t.runs[r].to) - 1) & ~((1u << t.runs[r].from) - 1));
            line[r] = t.runs[r].line - t.runs[r].from * sx;          // lane l reads line[l · sx]
            const unsigned inputs = _pdep_u32(mask[r], 0x55555555u); // stride 2: lane l's input is float 2l of 32
            low[r] = (__mmask16)inputs, high[r] = (__mmask16)(inputs >> 16);
        }
        float *d = dst + (t.first * taps + tap - p0) * NR;
        for (long ch = t.first; ch < t.end; ch++, d += taps * NR) {
            __m512 v = _mm512_setzero_ps();
            for (int r = 0; r < t.count; r++) {
                const float *in = line[r] + ch * plane;
                if (sx == 1) {
                    v = _mm512_mask_loadu_ps(v, mask[r], in);
                } else if (sx == 2) { // load the even lanes' inputs, then take the even ones
                    const __m512 lower = _mm512_maskz_loadu_ps(low[r], in),
                                 upper = _mm512_maskz_loadu_ps(high[r], in + NR);
                    v = _mm512_mask_mov_ps(v, mask[r], _mm512_permutex2var_ps(lower, even, upper));
                } else {
                    v = _mm512_mask_i32gather_ps(v, mask[r], steps, in, 4);
                }
            }
            _mm512_storeu_ps(d, v);
        }
    }
}
#endif

// k [p0, p0 + kc) and columns [j0, j0 + nc) of B into 16-column panels: panel q holds b[k][c] at q · 16 · kc + k · 16
// + c, columns past the end zero.
AVX2 static void pack_b_block(const ck_operand *b, long p0, long kc, long j0, long nc, float *dst) {
    for (long j = 0; j < nc; j += NR, dst += NR * kc) {
        const long cols = min_long(NR, nc - j);
        if (b->patches) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
            if (ck_cpu_has_avx512()) {
                pack_patches_panel_avx512(b->patches, p0, kc, j0 + j, cols, dst);
                continue;
            }
#endif
            pack_patches_panel(b->patches, p0, kc, j0 + j, cols, dst);
            continue;
        }
        const float *s = b->data + p0 * b->row + (j0 + j) * b->col;
        if (cols < NR) memset(dst, 0, sizeof(float) * NR * kc);
        if (b->col == 1 && cols == NR) {
            for (long k = 0; k < kc; k++) copy_floats(dst + k * NR, s + k * b->row, NR);
        } else if (b->col == 1) {
            for (long k = 0; k < kc; k++) copy_floats(dst + k * NR, s + k * b->row, cols);
        } else { // Bᵀ stored (a Linear weight [out, in], attention's keys): read each column along k
            long k0 = 0;
#ifdef FAST_PACKING
            if (cols == NR && b->row == 1) { // two 8 × 8 transposes per 8 k
                for (; k0 + 8 <= kc; k0 += 8) {
                    __m256 lo[8], hi[8];
                    for (int c = 0; c < 8; c++) {
                        lo[c] = _mm256_loadu_ps(s + c * b->col + k0);
                        hi[c] = _mm256_loadu_ps(s + (c + 8) * b->col + k0);
                    }
                    transpose8(lo);
                    transpose8(hi);
                    for (int k = 0; k < 8; k++) {
                        _mm256_storeu_ps(dst + (k0 + k) * NR, lo[k]);
                        _mm256_storeu_ps(dst + (k0 + k) * NR + 8, hi[k]);
                    }
                }
            }
#endif
            for (long c = 0; c < cols; c++)
                for (long k = k0; k < kc; k++) dst[k * NR + c] = s[c * b->col + k * b->row];
        }
    }
}

void ck_sgemm_pack_b_block(const ck_operand *b, long p0, long kc, long j0, long nc, float *dst) {
    pack_b_block(b, p0, kc, j0, nc, dst);
}

AVX2 void ck_sgemm_pack_a(const ck_operand *a, long m, long k, float *packed) {
    for (long p0 = 0; p0 < k; p0 += KC) pack_a_block(a, 0, m, p0, min_long(KC, k - p0), packed + p0 * round_up(m, MR));
}

AVX2 void ck_sgemm_pack_b(const ck_operand *b, long k, long n, float *packed) {
    for (long p0 = 0; p0 < k; p0 += KC) pack_b_block(b, p0, min_long(KC, k - p0), 0, n, packed + p0 * round_up(n, NR));
}

// How a slice's sums reach C: the first slice writes alpha · sum (+ beta · C), later ones add alpha · sum.
static inline float finish(float sum, float old, float alpha, float beta, int first) {
    if (first && beta == 0) return alpha * sum;
    return fmaf(alpha, sum, first && beta != 1 ? beta * old : old);
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
int ck_sgemm_supported(void) {
    static int known = -1;
    if (known < 0) known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return known;
}

// -1 until AUTOANNOTATE_NO_AVX512 is read (every thread that reads it first reads the same answer).
static _Atomic int avx512_allowed = -1;

void ck_allow_avx512(int allowed) { atomic_store_explicit(&avx512_allowed, allowed != 0, memory_order_relaxed); }

int ck_cpu_detects_avx512(void) {
    static int known = -1;
    if (known < 0)
        known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    return known;
}

int ck_cpu_has_avx512(void) {
    int allowed = atomic_load_explicit(&avx512_allowed, memory_order_relaxed);
    if (allowed < 0) {
        const char *forbid = getenv("AUTOANNOTATE_NO_AVX512");
        allowed = !(forbid && *forbid && strcmp(forbid, "0") != 0);
        int unread = -1; // a ck_allow_avx512 call since the load above wins
        if (!atomic_compare_exchange_strong_explicit(&avx512_allowed, &unread, allowed, memory_order_relaxed,
                                                     memory_order_relaxed))
            allowed = unread;
    }
    return allowed && ck_cpu_detects_avx512();
}

// C[6 × 16] ← finish(Σ_k a[k][r] · b[k][c]): twelve accumulators, two B vectors and a broadcast of A per row. B's
// rows are `ldb` apart: 16 in a packed panel, or a row-major B read in place. With `bias` (the first slice of a
// product with a bias), row r starts from bias[r] (`per_row`) or column j from bias[j] instead of beta · C.
AVX2 static void kernel_6x16(long kc, const float *restrict a, const float *restrict b, long ldb, float *restrict c,
                             long ldc, float alpha, float beta, int first, const float *bias, int per_row) {
    // C's rows are far apart and usually out of cache: ask for them now, they are needed after the loop (as
    // OpenBLAS's kernel does).
    for (int r = 0; r < MR; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
    }
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma clang loop unroll_count(4)
    for (long k = 0; k < kc; k++, a += MR, b += ldb) {
        _mm_prefetch((const char *)(a + 8 * MR), _MM_HINT_T0);
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 x = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(x, b0, c40);
        c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(x, b0, c50);
        c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const int overwrite = first && beta == 0, scale = first && beta != 1;
#define STORE_ROW(r, lo, hi)                                                                                           \
    {                                                                                                                  \
        float *p = c + (r)*ldc;                                                                                        \
        if (bias) {                                                                                                    \
            const __m256 s0 = per_row ? _mm256_broadcast_ss(bias + (r)) : _mm256_loadu_ps(bias);                       \
            const __m256 s1 = per_row ? s0 : _mm256_loadu_ps(bias + 8);                                                \
            _mm256_storeu_ps(p, _mm256_fmadd_ps(va, lo, s0));                                                          \
            _mm256_storeu_ps(p + 8, _mm256_fmadd_ps(va, hi, s1));                                                      \
        } else if (overwrite) {                                                                                        \
            _mm256_storeu_ps(p, _mm256_mul_ps(va, lo));                                                                \
            _mm256_storeu_ps(p + 8, _mm256_mul_ps(va, hi));                                                            \
        } else {                                                                                                       \
            __m256 o0 = _mm256_loadu_ps(p), o1 = _mm256_loadu_ps(p + 8);                                               \
            if (scale) {                                                                                               \
                o0 = _mm256_mul_ps(vb, o0);                                                                            \
                o1 = _mm256_mul_ps(vb, o1);                                                                            \
            }                                                                                                          \
            _mm256_storeu_ps(p, _mm256_fmadd_ps(va, lo, o0));                                                          \
            _mm256_storeu_ps(p + 8, _mm256_fmadd_ps(va, hi, o1));                                                      \
        }                                                                                                              \
    }
    STORE_ROW(0, c00, c01)
    STORE_ROW(1, c10, c11) STORE_ROW(2, c20, c21) STORE_ROW(3, c30, c31) STORE_ROW(4, c40, c41) STORE_ROW(5, c50, c51)
#undef STORE_ROW
}

// Where the CPU has AVX-512: two 6-row A panels (`a`, then the next at a + 6 · kc) against one or two B panels (`b`,
// `b2`: C's columns 0–15 and 16–31) in one pass — 12 × 16 with twelve 16-lane accumulators (one B vector and twelve
// broadcasts per k), or 12 × 32 with 24 (two B vectors: 14 loads for 24 multiply-adds); `rows` < 12 at C's edge
// (YOLO's 16, 80, 160 … filters leave 4 or 8), reading the second panel only past 6 rows. Each element gets the same
// fused multiply-adds in the same order as in kernel_6x16, so the same bits, and B is read once for twelve rows.
#define AVX512 __attribute__((target("avx512f,avx2,fma")))
AVX512 static inline __attribute__((always_inline)) void
tile_12(int panels, int rows, long kc, const float *restrict a, long lda, const float *restrict b,
        const float *restrict b2, long ldb, float *restrict c, long ldc, float alpha, float beta, int first,
        const float *bias, int per_row, const float *gh, const float *gw, long gs, const float *res, long ldr) {
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < panels; q++) _mm_prefetch((const char *)(c + r * ldc + q * NR), _MM_HINT_T0);
    // A packed (lda 0): rows 0–5 in the panel at a, 6–11 in the next; A in place: row r at a + r · lda, k along it.
    const float *restrict a2 = lda ? a + MR * lda : rows > MR ? a + MR * kc : a;
    const long step = lda ? 1 : MR, ld = lda ? lda : 1;
    __m512 acc[2][2 * MR];
#pragma clang loop unroll(full)
    for (int q = 0; q < panels; q++)
#pragma clang loop unroll(full)
        for (int r = 0; r < rows; r++) acc[q][r] = _mm512_setzero_ps();
    for (long k = 0; k < kc; k++, a += step, a2 += step, b += ldb, b2 += ldb) {
        const __m512 x[2] = {_mm512_loadu_ps(b), panels == 2 ? _mm512_loadu_ps(b2) : _mm512_setzero_ps()};
#pragma clang loop unroll(full)
        for (int r = 0; r < rows; r++) {
            const __m512 v = _mm512_set1_ps(r < MR ? a[r * ld] : a2[(r - MR) * ld]);
            for (int q = 0; q < panels; q++) acc[q][r] = _mm512_fmadd_ps(v, x[q], acc[q][r]);
        }
    }
    // The finish of every accumulator, one loop per case and each loop unrolled, so that the accumulators are
    // stored from their registers: testing the case per element would keep them in a stack array, costly where k is
    // short (the mask decoder's 16-deep heads).
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#define EACH_ACCUMULATOR(store)                                                                                        \
    _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++)                                                  \
        _Pragma("clang loop unroll(full)") for (int q = 0; q < panels; q++) {                                          \
        float *p = c + r * ldc + q * NR;                                                                               \
        const __m512 sum = store;                                                                                      \
        _mm512_storeu_ps(p, res ? _mm512_add_ps(sum, _mm512_loadu_ps(res + r * ldr + q * NR)) : sum);                  \
    }
    if (gh) { // a grid's parts, the tile within one grid row: h's value in a row, w's 32 (see ck_epilogue)
        EACH_ACCUMULATOR(_mm512_fmadd_ps(
            va, acc[q][r], _mm512_add_ps(_mm512_set1_ps(gh[r * gs]), _mm512_loadu_ps(gw + r * gs + q * NR))))
    } else if (bias && per_row) {
        EACH_ACCUMULATOR(_mm512_fmadd_ps(va, acc[q][r], _mm512_set1_ps(bias[r])))
    } else if (bias) {
        EACH_ACCUMULATOR(_mm512_fmadd_ps(va, acc[q][r], _mm512_loadu_ps(bias + q * NR)))
    } else if (first && beta == 0) {
        EACH_ACCUMULATOR(_mm512_mul_ps(va, acc[q][r]))
    } else if (first && beta != 1) {
        EACH_ACCUMULATOR(_mm512_fmadd_ps(va, acc[q][r], _mm512_mul_ps(vb, _mm512_loadu_ps(p))))
    } else {
        EACH_ACCUMULATOR(_mm512_fmadd_ps(va, acc[q][r], _mm512_loadu_ps(p)))
    }
#undef EACH_ACCUMULATOR
}
// tile_12 for one or two B panels and 1 … 12 rows, each count with its own unrolled body.
#define TILE_ROWS(panels)                                                                                              \
    switch (rows) {                                                                                                    \
    case 12:                                                                                                           \
        tile_12(panels, 12, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);  \
        break;                                                                                                         \
    case 11:                                                                                                           \
        tile_12(panels, 11, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);  \
        break;                                                                                                         \
    case 10:                                                                                                           \
        tile_12(panels, 10, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);  \
        break;                                                                                                         \
    case 9:                                                                                                            \
        tile_12(panels, 9, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);   \
        break;                                                                                                         \
    case 8:                                                                                                            \
        tile_12(panels, 8, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);   \
        break;                                                                                                         \
    case 7:                                                                                                            \
        tile_12(panels, 7, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);   \
        break;                                                                                                         \
    case 6:                                                                                                            \
        tile_12(panels, 6, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);   \
        break;                                                                                                         \
    case 5:                                                                                                            \
        tile_12(panels, 5, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);   \
        break;                                                                                                         \
    case 4:                                                                                                            \
        tile_12(panels, 4, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);   \
        break;                                                                                                         \
    case 3:                                                                                                            \
        tile_12(panels, 3, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);   \
        break;                                                                                                         \
    case 2:                                                                                                            \
        tile_12(panels, 2, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);   \
        break;                                                                                                         \
    default:                                                                                                           \
        tile_12(panels, 1, kc, a, lda, b, b2, ldb, c, ldc, alpha, beta, first, bias, per_row, gh, gw, gs, res, ldr);   \
    }
AVX512 static void kernel_12x16(long rows, long kc, const float *a, const float *b, long ldb, float *c, long ldc,
                                float alpha, float beta, int first, const float *bias, int per_row) {
    const float *b2 = b, *gh = NULL, *gw = NULL, *res = NULL;
    const long lda = 0, gs = 0, ldr = 0;
    TILE_ROWS(1)
}
// With `gh`: the tile starts from a grid's parts (gh[r · gs] + gw[r · gs + c], see ck_epilogue).
AVX512 static void kernel_12x32(long rows, long kc, const float *a, const float *b, const float *b2, long ldb, float *c,
                                long ldc, float alpha, float beta, int first, const float *bias, int per_row,
                                const float *gh, const float *gw, long gs, const float *res, long ldr) {
    const long lda = 0;
    TILE_ROWS(2)
}
// kernel_12x32 reading a row-major A in place, its rows lda apart (the same sums, the same bits).
AVX512 static void kernel_12x32_in_place(long rows, long kc, const float *a, long lda, const float *b, const float *b2,
                                         long ldb, float *c, long ldc, float alpha, float beta, int first,
                                         const float *bias, int per_row, const float *gh, const float *gw, long gs,
                                         const float *res, long ldr) {
    TILE_ROWS(2)
}
#undef TILE_ROWS

// kernel_6x16's sums for the first R (< 6) rows of a panel only, into `sums` (rows NR apart): a tile of a few rows
// at C's edge costs its own multiply-adds, not six rows' (the mask decoder's 7-token products: 6 + 1 rows).
#define KERNEL_ROWS(R)                                                                                                 \
    AVX2 static void kernel_##R##x16(long kc, const float *restrict a, const float *restrict b, long ldb,              \
                                     float *restrict sums) {                                                           \
        __m256 lo[R], hi[R];                                                                                           \
        for (int r = 0; r < R; r++) lo[r] = hi[r] = _mm256_setzero_ps();                                               \
        for (long k = 0; k < kc; k++, a += MR, b += ldb) {                                                             \
            const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);                                         \
            for (int r = 0; r < R; r++) {                                                                              \
                const __m256 x = _mm256_broadcast_ss(a + r);                                                           \
                lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);                                                                 \
                hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);                                                                 \
            }                                                                                                          \
        }                                                                                                              \
        for (int r = 0; r < R; r++) {                                                                                  \
            _mm256_storeu_ps(sums + r * NR, lo[r]);                                                                    \
            _mm256_storeu_ps(sums + r * NR + 8, hi[r]);                                                                \
        }                                                                                                              \
    }
// clang-format off
KERNEL_ROWS(1) KERNEL_ROWS(2) KERNEL_ROWS(3) KERNEL_ROWS(4) KERNEL_ROWS(5)
// clang-format on
#undef KERNEL_ROWS

    // A tile at C's edge: the same sums into a scratch tile, then `finish` on the part inside C (same bits). With
    // AVX-512, up to 12 rows in 16 lanes (the 12 × 16 tile's sums), not the 6-row AVX2 kernel in two halves per row:
    // panels of fewer than 16 columns are common (the windows' 14- and 196-key products, YOLO's blocks' last columns).
    AVX2 static void edge_tile(long kc, const float *a, const float *b, long ldb, float *c, long ldc, long rows,
                               long cols, float alpha, float beta, int first, const float *bias, int per_row) {
    float sums[2 * MR * NR];
    if (ck_cpu_has_avx512())
        kernel_12x16(rows, kc, a, b, ldb, sums, NR, 1, 0, 1, NULL, 0);
    else
        switch (rows) {
        case 1:
            kernel_1x16(kc, a, b, ldb, sums);
            break;
        case 2:
            kernel_2x16(kc, a, b, ldb, sums);
            break;
        case 3:
            kernel_3x16(kc, a, b, ldb, sums);
            break;
        case 4:
            kernel_4x16(kc, a, b, ldb, sums);
            break;
        case 5:
            kernel_5x16(kc, a, b, ldb, sums);
            break;
        default:
            kernel_6x16(kc, a, b, ldb, sums, NR, 1, 0, 1, NULL, 0);
        }
    for (long r = 0; r < rows; r++)
        for (long col = 0; col < cols; col++)
            c[r * ldc + col] = bias ? finish(sums[r * NR + col], per_row ? bias[r] : bias[col], alpha, 1, first)
                                    : finish(sums[r * NR + col], c[r * ldc + col], alpha, beta, first);
}

// The epilogue's steps after the last slice, on a tile just written (still in L1): SiLU or GELU, then the residual;
// in 16 lanes where the CPU has AVX-512 (per element, so the same bits).
#define FINISH_TILE_BODY                                                                                               \
    for (long r = 0; r < rows; r++) {                                                                                  \
        float *p = c + r * ldc;                                                                                        \
        if (e->silu)                                                                                                   \
            for (long x = 0; x < cols; x++) p[x] = silu_poly(p[x]);                                                    \
        if (e->gelu)                                                                                                   \
            for (long x = 0; x < cols; x++) p[x] = gelu_poly(p[x]);                                                    \
        if (e->residual) {                                                                                             \
            const float *q = e->residual + (i + r) * e->ldr + j;                                                       \
            for (long x = 0; x < cols; x++) p[x] += q[x];                                                              \
        }                                                                                                              \
    }
AVX2 static void finish_tile_avx2(float *c, long ldc, long rows, long cols, const ck_epilogue *e, long i,
                                  long j){FINISH_TILE_BODY} AVX512
    static void finish_tile_avx512(float *c, long ldc, long rows, long cols, const ck_epilogue *e, long i, long j) {
    FINISH_TILE_BODY
}
static void finish_tile(float *c, long ldc, long rows, long cols, const ck_epilogue *e, long i, long j) {
    if (ck_cpu_has_avx512())
        finish_tile_avx512(c, ldc, rows, cols, e, i, j);
    else
        finish_tile_avx2(c, ldc, rows, cols, e, i, j);
}

// The bias a tile at C's element (i, j) starts from in the first slice: its rows' (from row_bias[i]) or its
// columns' (from col_bias[j]); NULL without either.
static const float *starting_bias(const ck_epilogue *e, long i, long j) {
    if (!e) return NULL;
    return e->row_bias ? e->row_bias + i : e->col_bias ? e->col_bias + j : NULL;
}

// One B panel (rows `ldb` apart) against `rows` rows of packed A (6-row panels), into C's `cols` ≤ 16 columns at `c`,
// which is C's element (i, j); `last`: the product's last slice of k.
AVX2 static void row_of_tiles(long kc, const float *a, const float *b, long ldb, float *c, long ldc, long rows,
                              long cols, float alpha, float beta, int first, int last, const ck_epilogue *e, long i,
                              long j) {
    const float *bias = first ? starting_bias(e, i, j) : NULL;
    const int per_row = bias && e->row_bias, finishing = last && e && (e->silu || e->gelu || e->residual),
              wide = ck_cpu_has_avx512();
    for (long ir = 0; ir < rows;) {
        const long tile_rows = min_long(wide ? 2 * MR : MR, rows - ir);
        const float *tile_bias = bias && per_row ? bias + ir : bias;
        if (wide && cols == NR) {
            kernel_12x16(tile_rows, kc, a, b, ldb, c, ldc, alpha, beta, first, tile_bias, per_row);
        } else if (tile_rows == MR && cols == NR) {
            kernel_6x16(kc, a, b, ldb, c, ldc, alpha, beta, first, tile_bias, per_row);
        } else {
            edge_tile(kc, a, b, ldb, c, ldc, tile_rows, cols, alpha, beta, first, tile_bias, per_row);
        }
        if (finishing) finish_tile(c, ldc, tile_rows, cols, e, i + ir, j);
        ir += tile_rows, a += tile_rows * kc, c += tile_rows * ldc;
    }
}

// Two full B panels, the second `panel_stride` floats after the first, against `rows` rows of packed A, into C's 32
// columns at `c` (element (i, j)): tiles of 12 rows (fewer at C's edge) over both panels at once.
AVX2 static void row_of_tile_pairs(long kc, const float *a, long lda, const float *b, long panel_stride, long ldb,
                                   float *c, long ldc, long rows, float alpha, float beta, int first, int last,
                                   const ck_epilogue *e, long i, long j) {
    const float *bias = first ? starting_bias(e, i, j) : NULL;
    const int per_row = bias && e->row_bias, finishing = last && e && (e->silu || e->gelu || e->residual);
    // Without an activation, the tiles add the residual to their sums as they store them (not in a pass over C after).
    const int adding = finishing && !e->silu && !e->gelu && e->residual;
    // A grid's parts for the tiles' rows from i, their 32 columns from j within one grid row (ck_sgemm saw to it).
    const long gs = first && e && e->grid_h ? e->grid_side : 0;
    const float *gh = gs ? e->grid_h + i * gs + j / gs : NULL, *gw = gs ? e->grid_w + i * gs + j % gs : NULL;
    for (long ir = 0; ir < rows; ir += 2 * MR, a += 2 * MR * (lda ? lda : kc), c += 2 * MR * ldc) {
        const long tile_rows = min_long(2 * MR, rows - ir);
        const float *tile_bias = bias && per_row ? bias + ir : bias, *th = gh ? gh + ir * gs : NULL,
                    *tw = gw ? gw + ir * gs : NULL;
        const float *res = adding ? e->residual + (i + ir) * e->ldr + j : NULL;
        const long ldr = res ? e->ldr : 0;
        if (lda)
            kernel_12x32_in_place(tile_rows, kc, a, lda, b, b + panel_stride, ldb, c, ldc, alpha, beta, first,
                                  tile_bias, per_row, th, tw, gs, res, ldr);
        else
            kernel_12x32(tile_rows, kc, a, b, b + panel_stride, ldb, c, ldc, alpha, beta, first, tile_bias, per_row, th,
                         tw, gs, res, ldr);
        if (finishing && !adding) finish_tile(c, ldc, tile_rows, 2 * NR, e, i + ir, j);
    }
}

// Rows [i0, i0 + mc) of A's slice from k = p0 as packed panels: A's own where it is packed, else packed into abuf.
AVX2 static const float *a_panels(const ck_operand *a, long m, long i0, long mc, long p0, long kc, float *abuf) {
    if (a->packed) return a->packed + p0 * round_up(m, MR) + i0 * kc;
    pack_a_block(a, i0, mc, p0, kc, abuf);
    return abuf;
}

// A row-major A read in place by the 12 × 32 tiles (its row stride; 0: packed) where C's columns are one or two
// tile pairs: packing pays where many B panels reuse the panels, not where two do (attention's probabilities times
// a head's 64 values).
static long a_in_place(const ck_operand *a, long n0, long n1) {
    const long cols = n1 - n0;
    return ck_cpu_has_avx512() && a->data && !a->packed && a->col == 1 && cols % (2 * NR) == 0 && cols <= 4 * NR
               ? a->row
               : 0;
}

// C's rows [ic, ic + mc) × columns [jc, jc + nc) from the slice [pc, pc + kc) of k, B's block of that slice packed at
// bblock: A's rows packed (or read in place, lda) and run past every B panel.
AVX2 static void rows_of_block(long m, long k, float alpha, const ck_operand *a, long lda, const float *bblock,
                               float beta, float *c, long ldc, long ic, long mc, long jc, long nc, long pc, long kc,
                               const ck_epilogue *e, float *abuf) {
    const int wide = ck_cpu_has_avx512(), first = pc == 0, last = pc + kc == k;
    const float *panels = lda ? a->data + ic * lda + pc : a_panels(a, m, ic, mc, pc, kc, abuf);
    for (long jr = 0; jr < nc; jr += NR) {
        if (wide && nc - jr >= 2 * NR) {
            row_of_tile_pairs(kc, panels, lda, bblock + jr * kc, NR * kc, NR, c + ic * ldc + jc + jr, ldc, mc, alpha,
                              beta, first, last, e, ic, jc + jr);
            jr += NR;
            continue;
        }
        row_of_tiles(kc, panels, bblock + jr * kc, NR, c + ic * ldc + jc + jr, ldc, mc, min_long(NR, nc - jr), alpha,
                     beta, first, last, e, ic, jc + jr);
    }
}

AVX2 static void blocks(long m, long n, long k, float alpha, const ck_operand *a, const ck_operand *b, float beta,
                        float *c, long ldc, long m0, long m1, long n0, long n1, const ck_epilogue *e, float *abuf,
                        float *bbuf) {
    const int wide = ck_cpu_has_avx512();
    const long lda = a_in_place(a, n0, n1);
    for (long jc = n0; jc < n1; jc += NC) {
        const long nc = min_long(NC, n1 - jc);
        for (long pc = 0; pc < k; pc += KC) {
            const long kc = min_long(KC, k - pc);
            const int first = pc == 0, last = pc + kc == k;
            const float *bblock = bbuf;
            if (b->packed) {
                bblock = b->packed + pc * round_up(n, NR) + jc * kc;
            } else if (m1 - m0 <= 2 * MC) {
                // One block of rows (up to 2 · MC): each B panel is packed just before its tiles use it, while it is in
                // L1, instead of the whole block first (megabytes through L3 when few rows use each panel: YOLO).
                const float *panels = lda ? a->data + m0 * lda + pc : a_panels(a, m, m0, m1 - m0, pc, kc, abuf);
                for (long jr = 0; jr < nc; jr += NR) {
                    const long cols = min_long(NR, nc - jr);
                    const int pair = wide && nc - jr >= 2 * NR;
                    float *tiles = c + m0 * ldc + jc + jr;
                    if (cols == NR && b->data && b->col == 1) {
                        // A row-major B is read in place: its 16 columns of the slice are as good as a panel once
                        // in L1, and packing would cost more than few row tiles do (1×1 convolutions, the mask
                        // decoder's 56 attention rows times the image keys).
                        const float *panel = b->data + pc * b->row + jc + jr;
                        if (pair)
                            row_of_tile_pairs(kc, panels, lda, panel, NR, b->row, tiles, ldc, m1 - m0, alpha, beta,
                                              first, last, e, m0, jc + jr);
                        else
                            row_of_tiles(kc, panels, panel, b->row, tiles, ldc, m1 - m0, cols, alpha, beta, first, last,
                                         e, m0, jc + jr);
                    } else if (pair) {
                        pack_b_block(b, pc, kc, jc + jr, 2 * NR, bbuf);
                        row_of_tile_pairs(kc, panels, lda, bbuf, NR * kc, NR, tiles, ldc, m1 - m0, alpha, beta, first,
                                          last, e, m0, jc + jr);
                    } else {
                        pack_b_block(b, pc, kc, jc + jr, cols, bbuf);
                        row_of_tiles(kc, panels, bbuf, NR, tiles, ldc, m1 - m0, cols, alpha, beta, first, last, e, m0,
                                     jc + jr);
                    }
                    jr += pair ? NR : 0;
                }
                continue;
            } else {
                pack_b_block(b, pc, kc, jc, nc, bbuf);
            }
            for (long ic = m0; ic < m1; ic += MC)
                rows_of_block(m, k, alpha, a, lda, bblock, beta, c, ldc, ic, min_long(MC, m1 - ic), jc, nc, pc, kc, e,
                              abuf);
        }
    }
}

// C's block [m0, m1) × [n0, n1) ← a grid's parts h[i · s + j / s] + w[i · s + j % s], grid row by grid row (16
// lanes at a time, masked, where the CPU has AVX-512: the windows' grids are 14 wide).
#define WRITE_GRID(store)                                                                                              \
    for (long i = m0; i < m1; i++)                                                                                     \
        for (long ky = n0 / s; ky * s < n1; ky++) {                                                                    \
            const float part = h[i * s + ky];                                                                          \
            const long from = ky * s < n0 ? n0 - ky * s : 0, to = min_long(s, n1 - ky * s);                            \
            float *line = c + i * ldc + ky * s;                                                                        \
            const float *wi = w + i * s;                                                                               \
            store                                                                                                      \
        }
AVX2 static void write_grid_avx2(const float *h, const float *w, long s, float *c, long ldc, long m0, long m1, long n0,
                                 long n1) {
    WRITE_GRID(for (long kx = from; kx < to; kx++) line[kx] = part + wi[kx];)
}
AVX512 static void write_grid_avx512(const float *h, const float *w, long s, float *c, long ldc, long m0, long m1,
                                     long n0, long n1) {
    WRITE_GRID(for (long kx = from; kx < to; kx += NR) {
        const __mmask16 lanes = to - kx >= NR ? 0xffff : (__mmask16)((1u << (to - kx)) - 1);
        _mm512_mask_storeu_ps(line + kx, lanes,
                              _mm512_add_ps(_mm512_set1_ps(part), _mm512_maskz_loadu_ps(lanes, wi + kx)));
    })
}
#undef WRITE_GRID

int ck_sgemm(long m, long n, long k, float alpha, const ck_operand *a, const ck_operand *b, float beta, float *c,
             long ldc, long m0, long m1, long n0, long n1, const ck_epilogue *epilogue) {
    if (!ck_sgemm_supported()) return -1;
    if (m1 <= m0 || n1 <= n0 || k <= 0) return 0;
    ck_epilogue plain;
    const long s = epilogue && epilogue->grid_h ? epilogue->grid_side : 0;
    if (s && !(ck_cpu_has_avx512() && s % (2 * NR) == 0 && n0 % (2 * NR) == 0 && (n1 - n0) % (2 * NR) == 0)) {
        // Tiles that do not each lie in 32 columns of one grid row: the parts summed into C first, then added onto
        // as beta 1 does (the same bits: each element starts from h + w either way).
        if (ck_cpu_has_avx512())
            write_grid_avx512(epilogue->grid_h, epilogue->grid_w, s, c, ldc, m0, m1, n0, n1);
        else
            write_grid_avx2(epilogue->grid_h, epilogue->grid_w, s, c, ldc, m0, m1, n0, n1);
        plain = *epilogue;
        plain.grid_h = plain.grid_w = NULL;
        epilogue = &plain;
        beta = 1;
    }
    // (+ 16: the fast packing of A writes 8 floats for each k's 6, the last 2 landing past the end.)
    float *abuf = NULL, *bbuf = NULL;
    const int packs_a = !a->packed && !a_in_place(a, n0, n1);
    if (packs_a) abuf = aligned_alloc(64, sizeof(float) * (round_up(m1 - m0 <= 2 * MC ? m1 - m0 : MC, MR) * KC + 16));
    if (!b->packed) bbuf = aligned_alloc(64, sizeof(float) * round_up(min_long(NC, n1 - n0), NR) * KC);
    int status = 0;
    if ((packs_a && !abuf) || (!b->packed && !bbuf))
        status = -2;
    else
        blocks(m, n, k, alpha, a, b, beta, c, ldc, m0, m1, n0, n1, epilogue, abuf, bbuf);
    free(abuf);
    free(bbuf);
    return status;
}

// A product's row blocks shared among threads: the product runs in phases (B's blocks of NC columns × KC deep, in
// ck_sgemm's order), and in each phase a thread takes the next block of MC rows that is left — so a thread that
// runs slower (a core shared with another VM, an interrupt) leaves its rows to the others instead of keeping them
// waiting at the end. A block's slices stay in order: a thread waits (rarely: the block is one of the previous
// phase's last) until the previous phase is done with it.
struct ck_shared_rows {
    long blocks, phases;
    _Atomic long *next; // per phase: the next block to take
    _Atomic long *done; // per block: the phases done
};

ck_shared_rows *ck_shared_rows_create(long m, long n, long k) {
    ck_shared_rows *w = malloc(sizeof(ck_shared_rows));
    if (!w) return NULL;
    w->blocks = (m + MC - 1) / MC;
    w->phases = (n + NC - 1) / NC * ((k + KC - 1) / KC);
    w->next = calloc((size_t)(w->phases + w->blocks), sizeof(_Atomic long));
    if (!w->next) {
        free(w);
        return NULL;
    }
    w->done = w->next + w->phases;
    return w;
}

void ck_shared_rows_free(ck_shared_rows *w) {
    if (w) free(w->next);
    free(w);
}

int ck_sgemm_shared_rows(long m, long n, long k, float alpha, const ck_operand *a, const ck_operand *b, float beta,
                         float *c, long ldc, const ck_epilogue *epilogue, ck_shared_rows *w) {
    if (!ck_sgemm_supported()) return -1;
    if (epilogue && epilogue->grid_h) return -3;
    const long lda = a_in_place(a, 0, n);
    float *abuf = a->packed || lda ? NULL : aligned_alloc(64, sizeof(float) * (MC * KC + 16));
    float *bbuf = b->packed ? NULL : aligned_alloc(64, sizeof(float) * round_up(min_long(NC, n), NR) * KC);
    if ((!a->packed && !lda && !abuf) || (!b->packed && !bbuf)) { // the other threads take every block
        free(abuf);
        free(bbuf);
        return -2;
    }
    long phase = 0;
    for (long jc = 0; jc < n; jc += NC) {
        const long nc = min_long(NC, n - jc);
        for (long pc = 0; pc < k; pc += KC, phase++) {
            const long kc = min_long(KC, k - pc);
            const float *bblock = b->packed ? b->packed + pc * round_up(n, NR) + jc * kc : NULL;
            for (long i; (i = atomic_fetch_add_explicit(&w->next[phase], 1, memory_order_relaxed)) < w->blocks;) {
                if (!bblock) {
                    pack_b_block(b, pc, kc, jc, nc, bbuf);
                    bblock = bbuf;
                }
                while (atomic_load_explicit(&w->done[i], memory_order_acquire) < phase) _mm_pause();
                rows_of_block(m, k, alpha, a, lda, bblock, beta, c, ldc, i * MC, min_long(MC, m - i * MC), jc, nc, pc,
                              kc, epilogue, abuf);
                atomic_store_explicit(&w->done[i], phase + 1, memory_order_release);
            }
        }
    }
    free(abuf);
    free(bbuf);
    return 0;
}
#else
int ck_sgemm_supported(void) { return 0; }
int ck_cpu_has_avx512(void) { return 0; }
int ck_cpu_detects_avx512(void) { return 0; }
void ck_allow_avx512(int allowed) {}
int ck_sgemm(long m, long n, long k, float alpha, const ck_operand *a, const ck_operand *b, float beta, float *c,
             long ldc, long m0, long m1, long n0, long n1, const ck_epilogue *epilogue) {
    return -1;
}
ck_shared_rows *ck_shared_rows_create(long m, long n, long k) { return NULL; }
void ck_shared_rows_free(ck_shared_rows *w) {}
int ck_sgemm_shared_rows(long m, long n, long k, float alpha, const ck_operand *a, const ck_operand *b, float beta,
                         float *c, long ldc, const ck_epilogue *epilogue, ck_shared_rows *w) {
    return -1;
}
#endif
