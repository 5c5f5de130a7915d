/* Convolution vectorised along the output's spatial axis ("NV"): the
 * output of a convolution is [Cout][OH*OW], contiguous along the pixels,
 * so a tile of 8 output channels x 48 pixels is 24 zmm accumulators fed
 * by 3 vector loads of im2col rows and 8 weight broadcasts per tap, and
 * is stored straight into the output rows with bias and activation, with
 * no transpose. Layers with few output channels and many pixels (the
 * early layers of a detector) reuse each weight across 48 pixels instead
 * of re-reading it per 8. Internal to the CPU backend.
 */
#ifndef PV_CPU_CONV_NV_H
#define PV_CPU_CONV_NV_H

#include "cpu-impl.h"

#define PV_NV_MR 8  /* output channels per tile */
#define PV_NV_NR 48 /* output pixels per tile (3 zmm) */

/* Tile flags: FIRST starts the sums at zero (else at the values in y),
 * LAST adds bias and activation (else stores the raw sums). */
#define PV_NV_FIRST 1
#define PV_NV_LAST 2
/* B holds readable floats up to the tile's next multiple of 16 past w
 * (zero-padded panels, padded input with slack): no masked loads. */
#define PV_NV_BPAD 4

/* y[i][col0 + j] (op)= sum_p a[p*16 + i] * b[off[p] + j] for i < nrows
 * (<= 8), j < w (<= 48), p < k; a is 8 rows of a packed [k][16] panel;
 * b + off[p] is an im2col row or the input row under tap p itself (only
 * its first w floats are read).
 * bias: [nrows]. */
typedef void (*pv_nv_ukr_fn)(const float *a, const float *b, const int64_t *off,
                             int64_t k, float *const *y, int64_t col0,
                             const float *bias, int nrows, int w, int flags,
                             pv_act act, float alpha, float beta);

/* The AVX-512 kernel, or NULL where it is not compiled in. */
extern const pv_nv_ukr_fn pv_cpu_nv_ukr_avx512;

/* Whether pv_cpu_conv_nv should run this product of n output pixels:
 * the AVX-512 kernel set, B a convolution (b->conv) or a pointwise one's
 * planes (ld_n == 1), and n filling at least 90% of the tiles' lanes. */
bool pv_cpu_conv_nv_ok(const pv_cpu_isa *isa, const pv_cpu_mat *a,
                       const pv_cpu_bsrc *b, int64_t n);
/* C = A B for n output pixels into out (ld_n must be 1: output planes),
 * all segments in one parallel pass. 0, PV_ENOMEM or PV_ERANGE. */
int pv_cpu_conv_nv(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                   const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                   const pv_cpu_out *out);

/* The same followed by a 2x2, stride-2 max pool without pads: the pooled
 * output of row m goes to ypool + m*pld ([OH/2][OW/2], floor) and out->y
 * is not written. Returns 1, having done nothing, where the layer does
 * not take this path (narrow rows, more than 384 taps): the caller then
 * runs the two ops apart. */
int pv_cpu_conv_nv_pool(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                        const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                        const pv_cpu_out *out, float *ypool, int64_t pld);


/* One im2col row: dst[i] = B(p, n0 + i) for i < cn. */
typedef void (*pv_nv_im2col_fn)(const pv_cpu_seg *s, const pv_cpu_bsrc *b,
                                int64_t p, int64_t n0, int64_t cn, float *dst);
/* The same for b->sw == 1 with vector copies (AVX-512), or NULL. */
extern const pv_nv_im2col_fn pv_cpu_nv_im2col_s1_avx512;
/* And for b->sw == 2 (stride-2 loads split by a permute), or NULL. */
extern const pv_nv_im2col_fn pv_cpu_nv_im2col_s2_avx512;
/* The general one (gemm.c). */
void pv_cpu_im2col_row(const pv_cpu_seg *s, const pv_cpu_bsrc *b, int64_t p,
                       int64_t n0, int64_t cn, float *restrict dst);

#endif
