// 3×3, stride-1, padding-1 convolutions (most of YOLOv8's multiply-adds) by Winograd's minimal filtering
// F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2×2 block of outputs
// (a tile) is Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A over its 4×4 input window d, 16 multiplications per tile and channel pair
// instead of 36. Summed over the input channels, the 16 elementwise products become 16 matrix products on our
// kernel, [O × C] transformed filters (made and packed once, at load) times [C × tiles] transformed windows. The
// windows are the patches of a 4×4, stride-2 convolution, gathered by the kernel's own patch packer. Tiles are
// done a block at a time so that the transformed windows and the products stay in L2; each tile's outputs depend
// only on that tile, and the products give the same bits however they are cut, so any split among threads gives
// the same bits. The transforms' additions round differently from the direct sums (fp32 error of the same order).
#include "kernels.h"
#include "vectors.h"
#include "packing.h"
#include "polynomials.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NR           CK_SGEMM_NR
#define KC           CK_SGEMM_KC
#define POINTS       16  // the 4 × 4 transformed values per tile and channel: 16 products
#define CHANNELS     8   // input channels gathered at a time: 8 × 16 taps × the block's tiles (≤ 64 KB)
#define FILTER_BLOCK 48  // output channels whose 16 products are summed before their tiles are written
#define MAX_BLOCK    128 // tiles per block at most

static long min_long(long a, long b) { return a < b ? a : b; }
static long round_up(long x, long unit) { return (x + unit - 1) / unit * unit; }

long ck_winograd_filters_count(long o, long c) { return POINTS * ck_sgemm_packed_a_count(o, c); }

// U = G g Gᵀ for every filter pair, in double and rounded once, then each of the 16 [O × C] matrices packed as the
// kernel's left operand.
int ck_winograd_pack_filters(const float *weight, long o, long c, float *packed) {
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    float *u = malloc(sizeof(float) * POINTS * o * c);
    if (!u) return -2;
    for (long i = 0; i < o * c; i++) {
        const float *g = weight + i * 9;
        double t[4][3];
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 3; b++) t[a][b] = G[a][0] * g[b] + G[a][1] * g[3 + b] + G[a][2] * g[6 + b];
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                u[(a * 4 + b) * o * c + i] = (float)(t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2]);
    }
    const long count = ck_sgemm_packed_a_count(o, c);
    for (int x = 0; x < POINTS; x++) {
        const ck_operand a = {.data = u + x * o * c, .row = c, .col = 1};
        ck_sgemm_pack_a(&a, o, c, packed + x * count);
    }
    free(u);
    return 0;
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define AVX512   __attribute__((target("avx512f,avx2,fma")))
#define PORTABLE __attribute__((target("avx2,fma")))

int ck_winograd_supported(void) { return ck_sgemm_supported(); }

// Where a panel of 16 tiles lies in the output: runs of tiles along one tile row — lanes [from, to), whose first
// tile's top-left output is at `offset` in a plane, `cols` output columns (the last tile of an odd width has one),
// and whether the tile row has a second output row (not past an odd height).
typedef struct {
    int count;
    struct {
        int from, to, cols, two_rows;
        long offset;
    } runs[NR];
} tile_runs;

static tile_runs runs_of_panel(long t0, long lanes, long h, long w) {
    const long tw = (w + 1) / 2;
    tile_runs r = {.count = 0};
    for (long l = 0; l < lanes; r.count++) {
        const long ty = (t0 + l) / tw, tx = (t0 + l) % tw, length = min_long(lanes - l, tw - tx);
        r.runs[r.count].from = (int)l, r.runs[r.count].to = (int)(l + length);
        r.runs[r.count].cols = (int)min_long(2 * length, w - 2 * tx);
        r.runs[r.count].two_rows = 2 * ty + 1 < h;
        r.runs[r.count].offset = 2 * ty * w + 2 * tx;
        l += length;
    }
    return r;
}

// Channels [c0, c0 + cc) of the block's 4 × 4 input windows, gathered by the kernel's patch packer: window (channel,
// tile) at (tile / 16) · 16 · cc · 16 + (channel − c0) · 16 · 16 + tap · 16 + tile % 16.
static void gather_windows(const float *x, long c, long h, long w, long t0, long n, long c0, long cc, float *gathered) {
    const long th = (h + 1) / 2, tw = (w + 1) / 2;
    const ck_patches windows = {.x = x,
                                .channels = c,
                                .height = h,
                                .width = w,
                                .kernel_h = 4,
                                .kernel_w = 4,
                                .stride_y = 2,
                                .stride_x = 2,
                                .pad_y = 1,
                                .pad_x = 1,
                                .dilation_y = 1,
                                .dilation_x = 1,
                                .out_h = th,
                                .out_w = tw};
    const ck_operand b = {.patches = &windows};
    ck_sgemm_pack_b_block(&b, c0 * POINTS, cc * POINTS, t0, n, gathered);
}

// Bᵀ d B for 16 tiles: d[r · 4 + j] is the window's row r, column j, one tile per lane; v[i · 4 + j] the result.
static inline __attribute__((always_inline)) void transform_window(const v16 d[16], v16 v[16]) {
    v16 t[16];
    for (int j = 0; j < 4; j++) {
        t[j] = d[j] - d[8 + j];
        t[4 + j] = d[4 + j] + d[8 + j];
        t[8 + j] = d[8 + j] - d[4 + j];
        t[12 + j] = d[4 + j] - d[12 + j];
    }
    for (int i = 0; i < 16; i += 4) {
        v[i] = t[i] - t[i + 2];
        v[i + 1] = t[i + 1] + t[i + 2];
        v[i + 2] = t[i + 2] - t[i + 1];
        v[i + 3] = t[i + 1] - t[i + 3];
    }
}

// The block's transformed windows, each of the 16 as the kernel's packed right operand [C × tiles]: point x's
// (channel, tile) at x · c · n16 + s · n16 + (tile / 16) · 16 · kc + (channel − s) · 16 + tile % 16, where s is the
// channel's 256-deep slice and kc that slice's depth. Built for AVX-512 and for AVX2 (the same bits).
#define TRANSFORM_INPUT(name, target)                                                                                  \
    target static void name(const float *x, long c, long h, long w, long t0, long n, float *gathered, float *v) {      \
        const long n16 = round_up(n, NR);                                                                              \
        for (long c0 = 0; c0 < c; c0 += CHANNELS) {                                                                    \
            const long cc = min_long(CHANNELS, c - c0);                                                                \
            gather_windows(x, c, h, w, t0, n, c0, cc, gathered);                                                       \
            for (long q = 0; q < n16 / NR; q++)                                                                        \
                for (long ch = c0; ch < c0 + cc; ch++) {                                                               \
                    const float *window = gathered + q * NR * cc * POINTS + (ch - c0) * POINTS * NR;                   \
                    v16 d[16], t[16];                                                                                  \
                    for (int i = 0; i < 16; i++) d[i] = LOAD16(window + i * NR);                                       \
                    transform_window(d, t);                                                                            \
                    const long s = ch / KC * KC, kc = min_long(KC, c - s);                                             \
                    float *dst = v + s * n16 + q * NR * kc + (ch - s) * NR;                                            \
                    for (int i = 0; i < 16; i++) memcpy(dst + i * c * n16, &t[i], sizeof t[i]);                        \
                }                                                                                                      \
        }                                                                                                              \
    }
TRANSFORM_INPUT(transform_input, AVX512)
TRANSFORM_INPUT(transform_input_portable, PORTABLE)
#undef TRANSFORM_INPUT

// Aᵀ m A for 16 tiles of filter `f`, then bias, SiLU and residual, into the output planes (`w` wide, `plane`
// apart). m holds the block's products: point x's row for this filter at m + x · mstride.
AVX512 static void transform_output(const float *m, long mstride, const tile_runs *runs, long f, long w, long plane,
                                    float *y, const ck_epilogue *e) {
    __m512 p[16], s[8];
    for (int i = 0; i < 16; i++) p[i] = _mm512_loadu_ps(m + i * mstride);
    for (int j = 0; j < 4; j++) {
        s[j] = _mm512_add_ps(_mm512_add_ps(p[j], p[4 + j]), p[8 + j]);
        s[4 + j] = _mm512_sub_ps(_mm512_sub_ps(p[4 + j], p[8 + j]), p[12 + j]);
    }
    float out[4][NR]; // out[i · 2 + j]: output row i, column j of each lane's tile
    const __m512 bias = _mm512_set1_ps(e && e->row_bias ? e->row_bias[f] : 0);
    for (int i = 0; i < 2; i++) {
        const __m512 *r = s + 4 * i;
        _mm512_storeu_ps(out[2 * i], _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r[0], r[1]), r[2]), bias));
        _mm512_storeu_ps(out[2 * i + 1], _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(r[1], r[2]), r[3]), bias));
    }
    if (e && e->silu)
        for (int i = 0; i < 4; i++)
            for (int l = 0; l < NR; l++) out[i][l] = silu_poly(out[i][l]);
    // Each lane's two columns side by side: the panel's output columns 0–15 and 16–31.
    const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int i = 0; i < 2; i++) {
        const __m512 left = _mm512_loadu_ps(out[2 * i]), right = _mm512_loadu_ps(out[2 * i + 1]);
        const __m512 lo = _mm512_permutex2var_ps(left, low, right), hi = _mm512_permutex2var_ps(left, high, right);
        for (int k = 0; k < runs->count; k++) {
            if (i == 1 && !runs->runs[k].two_rows) continue;
            const int from = 2 * runs->runs[k].from;
            const uint64_t bits = ((1ull << (from + runs->runs[k].cols)) - 1) & ~((1ull << from) - 1);
            const __mmask16 mlo = (__mmask16)bits, mhi = (__mmask16)(bits >> 16);
            // The panel's column `from` is the run's first output: panel column l lands at at + l.
            const long at = f * plane + runs->runs[k].offset + i * w - from;
            __m512 a = lo, b = hi;
            if (e && e->residual) {
                const float *r = e->residual + f * e->ldr + runs->runs[k].offset + i * w - from;
                a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(mlo, r));
                b = _mm512_add_ps(b, _mm512_maskz_loadu_ps(mhi, r + NR));
            }
            _mm512_mask_storeu_ps(y + at, mlo, a);
            _mm512_mask_storeu_ps(y + at + NR, mhi, b);
        }
    }
}

// transform_output's portable build, its outputs stored element by element (the same bits).
PORTABLE static void transform_output_portable(const float *m, long mstride, const tile_runs *runs, long f, long w,
                                               long plane, float *y, const ck_epilogue *e) {
    v16 p[16], s[8], out[4]; // out[i · 2 + j]: output row i, column j of each lane's tile
    for (int i = 0; i < 16; i++) p[i] = LOAD16(m + i * mstride);
    for (int j = 0; j < 4; j++) {
        s[j] = (p[j] + p[4 + j]) + p[8 + j];
        s[4 + j] = (p[4 + j] - p[8 + j]) - p[12 + j];
    }
    const float bias = e && e->row_bias ? e->row_bias[f] : 0;
    for (int i = 0; i < 2; i++) {
        const v16 *r = s + 4 * i;
        out[2 * i] = ((r[0] + r[1]) + r[2]) + bias;
        out[2 * i + 1] = ((r[1] - r[2]) - r[3]) + bias;
    }
    if (e && e->silu)
        for (int i = 0; i < 4; i++)
            for (int l = 0; l < NR; l++) out[i][l] = silu_poly(out[i][l]);
    for (int k = 0; k < runs->count; k++)
        for (int i = 0; i < 2; i++) {
            if (i == 1 && !runs->runs[k].two_rows) continue;
            const long at = runs->runs[k].offset + i * w;
            const float *residual = e && e->residual ? e->residual + f * e->ldr + at : NULL;
            for (int col = 0; col < runs->runs[k].cols; col++) {
                const float value = out[2 * i + col % 2][runs->runs[k].from + col / 2];
                y[f * plane + at + col] = residual ? value + residual[col] : value;
            }
        }
}

// Tiles per block: their transformed windows and one filter block's products (16 · (C + 48) · tiles floats) in
// about 1.5 MB of L2, in pairs of panels (the 12 × 32 tile), 32 to MAX_BLOCK.
static long block_tiles(long c) {
    const long pairs = 24576 / (c + FILTER_BLOCK) / (2 * NR);
    return pairs < 1 ? 2 * NR : min_long(MAX_BLOCK, 2 * NR * pairs);
}

// The convolution's items: blocks of bt tiles (from tile 0) × blocks of FILTER_BLOCK output channels, tile block by
// tile block; a thread that takes a tile block's items in turn transforms its input once.
static long tile_blocks(long c, long h, long w) {
    return ((h + 1) / 2 * ((w + 1) / 2) + block_tiles(c) - 1) / block_tiles(c);
}
static long filter_blocks(long o) { return (o + FILTER_BLOCK - 1) / FILTER_BLOCK; }

long ck_winograd_items(long o, long c, long h, long w) { return tile_blocks(c, h, w) * filter_blocks(o); }

int ck_winograd_conv3x3(const float *filters, long o, long c, long h, long w, const float *x, float *y,
                        const ck_epilogue *e, ck_items *work, long thread) {
    if (!ck_winograd_supported()) return -1;
    const int wide = ck_cpu_has_avx512();
    const long tiles = (h + 1) / 2 * ((w + 1) / 2), plane = h * w, bt = block_tiles(c),
               acount = ck_sgemm_packed_a_count(o, c);
    const long fb = min_long(FILTER_BLOCK, o), items = ck_winograd_items(o, c, h, w);
    float *gathered = aligned_alloc(64, sizeof(float) * CHANNELS * POINTS * bt);
    float *v = aligned_alloc(64, sizeof(float) * POINTS * c * bt);
    float *m = aligned_alloc(64, sizeof(float) * POINTS * fb * bt);
    int status = gathered && v && m ? 0 : -2;
    tile_runs runs[MAX_BLOCK / NR];
    long transformed = -1; // the tile block whose input v holds
    for (long item = 0; status == 0;) {
        const long next = work ? ck_items_next(work, thread) : item++;
        if (next < 0 || next >= items) break;
        const long tb = next / filter_blocks(o) * bt, n = min_long(bt, tiles - tb), n16 = round_up(n, NR);
        const long f0 = next % filter_blocks(o) * FILTER_BLOCK, f1 = min_long(o, f0 + FILTER_BLOCK);
        if (transformed != tb) {
            if (wide)
                transform_input(x, c, h, w, tb, n, gathered, v);
            else
                transform_input_portable(x, c, h, w, tb, n, gathered, v);
            for (long q = 0; q < n16 / NR; q++) runs[q] = runs_of_panel(tb + q * NR, min_long(NR, n - q * NR), h, w);
            transformed = tb;
        }
        for (int p = 0; p < POINTS; p++) {
            const ck_operand a = {.packed = filters + p * acount}, b = {.packed = v + p * c * n16};
            // The product writes rows [f0, f1) of C: C's row f0 is the block's first row of point p.
            float *rows = m + p * fb * bt - f0 * bt;
            if (ck_sgemm(o, n, c, 1, &a, &b, 0, rows, bt, f0, f1, 0, n, NULL) != 0) status = -2;
        }
        for (long f = f0; status == 0 && f < f1; f++)
            for (long q = 0; q < n16 / NR; q++)
                if (wide)
                    transform_output(m + (f - f0) * bt + q * NR, fb * bt, &runs[q], f, w, plane, y, e);
                else
                    transform_output_portable(m + (f - f0) * bt + q * NR, fb * bt, &runs[q], f, w, plane, y, e);
    }
    free(gathered);
    free(v);
    free(m);
    return status;
}

#else
int ck_winograd_supported(void) { return 0; }
long ck_winograd_items(long o, long c, long h, long w) { return 0; }
int ck_winograd_conv3x3(const float *filters, long o, long c, long h, long w, const float *x, float *y,
                        const ck_epilogue *e, ck_items *work, long thread) {
    return -1;
}
#endif
