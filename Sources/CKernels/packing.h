// What sgemm.c lends the other kernels in this target (not part of the public header).
#ifndef AUTOANNOTATE_PACKING_H
#define AUTOANNOTATE_PACKING_H

#include "kernels.h"

// k [p0, p0 + kc) and columns [j0, j0 + nc) of B into CK_SGEMM_NR-column panels: panel q holds b[k][c] at
// q · NR · kc + (k − p0) · NR + c, columns past the end zero (a convolution's patches gathered as the kernel does).
void ck_sgemm_pack_b_block(const ck_operand *b, long p0, long kc, long j0, long nc, float *dst);

#endif
