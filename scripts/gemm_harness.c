// Times one ck_sgemm product the way a model calls it, single-threaded, best (and mean) of repeated runs: the
// measure behind the README's per-change numbers for the kernel (run it on two builds of sgemm.c, or two modes).
//
//   clang -O3 -I Sources/CKernels/include -I Sources/CKernels scripts/gemm_harness.c Sources/CKernels/sgemm.c \
//         Sources/CKernels/kernels.c -lm -o /tmp/gemm_harness
//   taskset -c 1 /tmp/gemm_harness plain M N K LDA      A row-major (lda floats apart) times a packed B [K, N]
//   taskset -c 1 /tmp/gemm_harness grid S               64 × S² × 64 scores: relative positions as the epilogue's
//   taskset -c 1 /tmp/gemm_harness fill S                 start, or written first with ck_decomposed_bias (beta 1)
//   taskset -c 1 /tmp/gemm_harness layer M N K          a linear layer with its bias (B = Wᵀ packed per call),
//   taskset -c 1 /tmp/gemm_harness residual M N K         adding a residual as it stores,
//   taskset -c 1 /tmp/gemm_harness adding M N K           followed by a pass adding it,
//   taskset -c 1 /tmp/gemm_harness prepacked M N K        or on a weight packed beforehand
//
// The layers flush the caches (a 256 MB write) before each run, as a model's layer finds them.
#include "kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *filled(long count, int period) {
    float *p = aligned_alloc(64, sizeof(float) * (size_t)(count + 16));
    for (long i = 0; i < count; i++) p[i] = (float)(i % period) / (float)period;
    return p;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: see the comment at the top of gemm_harness.c\n");
        return 2;
    }
    const char *mode = argv[1];
    const int layer =
        !strcmp(mode, "layer") || !strcmp(mode, "residual") || !strcmp(mode, "adding") || !strcmp(mode, "prepacked");
    const int scores = !strcmp(mode, "grid") || !strcmp(mode, "fill");
    const long s = scores ? atol(argv[2]) : 0;
    const long m = scores ? 64 : atol(argv[2]), n = scores ? s * s : atol(argv[3]), k = scores ? 64 : atol(argv[4]);
    const long lda = !strcmp(mode, "plain") && argc > 5 ? atol(argv[5]) : k, ldc = scores ? n + 16 : n;
    float *a = filled(m * lda, 17), *w = filled(n * k, 13), *c = filled(m * ldc, 7), *bias = filled(n, 5),
          *residual = filled(m * n, 11);
    float *h = filled(m * s, 7), *gw = filled(m * s, 5), *flush = layer ? malloc(256 << 20) : NULL;
    float *packed = aligned_alloc(64, sizeof(float) * (size_t)ck_sgemm_packed_b_count(k, n));
    ck_operand weight = {.data = w, .row = 1, .col = k}, rows = {.data = w, .row = n, .col = 1};
    ck_sgemm_pack_b(layer ? &weight : &rows, k, n, packed);
    ck_operand left = {.data = a, .row = lda, .col = 1}, right = {.packed = packed};
    ck_epilogue e = {0};
    if (layer) e.col_bias = bias;
    if (!strcmp(mode, "residual")) e.residual = residual, e.ldr = n;
    if (!strcmp(mode, "grid")) e.grid_h = h, e.grid_w = gw, e.grid_side = s;
    const int runs = layer ? 8 : 7, repeats = layer ? 1 : (int)(2e8 / (2.0 * m * n * k) + 1);
    double best = 1e30, total = 0;
    for (int r = 0; r < runs; r++) {
        if (flush) memset(flush, r, 256 << 20);
        const double t0 = now();
        for (int i = 0; i < repeats; i++) {
            if (!strcmp(mode, "fill")) ck_decomposed_bias(c, m, s, ldc, h, gw);
            const ck_operand *b = layer && strcmp(mode, "prepacked") ? &weight : &right;
            ck_sgemm(m, n, k, scores ? 0.125f : 1, &left, b, !strcmp(mode, "fill") ? 1 : 0, c, ldc, 0, m, 0, n,
                     layer || !strcmp(mode, "grid") ? &e : NULL);
            if (!strcmp(mode, "adding")) ck_add_repeating(c, residual, c, m * n, m * n);
        }
        const double t = (now() - t0) / repeats;
        if (layer && r == 0) continue; // the first run pages everything in
        total += t, best = t < best ? t : best;
    }
    printf("%s m %ld n %ld k %ld lda %ld: best %.1f us, mean %.1f us, %.1f GFLOP/s at best\n", mode, m, n, k, lda,
           best * 1e6, total / (layer ? runs - 1 : runs) * 1e6, 2.0 * m * n * k / best * 1e-9);
    return 0;
}
