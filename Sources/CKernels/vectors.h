// 16 floats as one value of the compiler's vector type — one register with AVX-512, two with AVX2, scalars in a
// generic build — for loops whose partial sums must stay in registers. Such values cross no function boundary
// (their calling convention depends on the target), so loads are macros.
#ifndef AUTOANNOTATE_VECTORS_H
#define AUTOANNOTATE_VECTORS_H

typedef float v16 __attribute__((vector_size(64), aligned(4)));

// 16 floats from any float's address.
#define LOAD16(p) (*(const v16 *)(p))

#endif
