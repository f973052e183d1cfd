// The polynomial exp and erf that the elementwise kernels (kernels.c) and the matrix product's fused SiLU (sgemm.c)
// share, inlined into each caller's loop so that it vectorises there, with the same bits everywhere.
#ifndef AUTOANNOTATE_POLYNOMIALS_H
#define AUTOANNOTATE_POLYNOMIALS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

// e^x by Cephes' expf: x = n·ln2 + r, e^r by a degree-6 polynomial, 2^n put in the exponent bits. The input is
// clamped to the range where 2^n is a normal float (e^x underflows to ~1e-38 below, overflows above).
static inline __attribute__((always_inline)) float exp_poly(float x) {
    x = fminf(fmaxf(x, -87.3365447505f), 88.3762626647f);
    float fx = floorf(x * 1.44269504088896341f + 0.5f);
    x -= fx * 0.693359375f;
    x -= fx * -2.12194440e-4f;
    float z = x * x;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    int32_t bits = ((int32_t)fx + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

// erf(x) by Eigen's rational approximation on [-4, 4] (|erf| is 1 to float precision beyond).
static inline __attribute__((always_inline)) float erf_poly(float x) {
    x = fminf(fmaxf(x, -4.0f), 4.0f);
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 - 2.10102402082508e-06f;
    p = p * x2 - 5.69250639462346e-05f;
    p = p * x2 - 7.34990630326855e-04f;
    p = p * x2 - 2.95459980854025e-03f;
    p = p * x2 - 1.60960333262415e-02f;
    p = p * x;
    float q = -1.45660718464996e-05f;
    q = q * x2 - 2.13374055278905e-04f;
    q = q * x2 - 1.68282697438203e-03f;
    q = q * x2 - 7.37332916720468e-03f;
    q = q * x2 - 1.42647390514189e-02f;
    return p / q;
}

// GELU, erf form: ½ · x · (1 + erf(x / √2)).
static inline __attribute__((always_inline)) float gelu_poly(float x) {
    return 0.5f * x * (1.0f + erf_poly(x * 0.70710678118654752f));
}

// SiLU: x · σ(x), written as x / (1 + e^−x).
static inline __attribute__((always_inline)) float silu_poly(float x) { return x / (1.0f + exp_poly(-x)); }

#endif
