/* AVX2+FMA kernels: the micro-kernel, one 16-row panel (two ymm) x 6
 * columns, twelve accumulators out of sixteen registers, and a GEMV form
 * for one column; the column-offset forms that read a convolution in
 * place (16 x 6, and 8 x 12 for row groups of <= 8 rows); the tile stores
 * with bias and activation; 2x2 MaxPool rows. Without these a machine
 * without AVX-512 ran im2col copies and the baseline x86-64 build's
 * scalar loops for stores and pools. */
#include "cpu-impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T256 __attribute__((target("avx2,fma")))
#define NR256 6

static inline __attribute__((always_inline)) T256 void
k256(const float *a, const float *b, int64_t lk, int64_t ln, int64_t k,
     float *tile, const int NR) {
  __m256 c0[NR256], c1[NR256];
  const float *bc[NR256];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) bc[j] = b + j * ln;
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    c0[j] = _mm256_setzero_ps();
    c1[j] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < k; p++) {
    __m256 x0 = _mm256_load_ps(a + p * PV_CPU_MR);
    __m256 x1 = _mm256_load_ps(a + p * PV_CPU_MR + 8);
    _Pragma("GCC unroll 16")
    for (int j = 0; j < NR; j++) {
      __m256 bj = _mm256_broadcast_ss(bc[j] + p * lk);
      c0[j] = _mm256_fmadd_ps(x0, bj, c0[j]);
      c1[j] = _mm256_fmadd_ps(x1, bj, c1[j]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    _mm256_storeu_ps(tile + j * PV_CPU_TILE_M, c0[j]);
    _mm256_storeu_ps(tile + j * PV_CPU_TILE_M + 8, c1[j]);
  }
}

#define U256(NR)                                                          \
  static T256 void u256_##NR(const float *a, const float *b, int64_t lk,  \
                             int64_t ln, int64_t k, float *t) {           \
    k256(a, b, lk, ln, k, t, NR);                                         \
  }
U256(2) U256(3) U256(4) U256(5) U256(6)

/* One column (batch 1, a GEMV): the tile above keeps two FMA chains, each
 * waiting on its own latency; four partial sums per half-panel keep
 * eight in flight. */
static T256 void u256_1(const float *a, const float *b, int64_t lk, int64_t ln,
                        int64_t k, float *t) {
  (void)ln;
  __m256 s0[4], s1[4];
  _Pragma("GCC unroll 4")
  for (int u = 0; u < 4; u++) {
    s0[u] = _mm256_setzero_ps();
    s1[u] = _mm256_setzero_ps();
  }
  int64_t p = 0;
  for (; p + 4 <= k; p += 4) {
    _Pragma("GCC unroll 4")
    for (int u = 0; u < 4; u++) {
      __m256 bj = _mm256_broadcast_ss(b + (p + u) * lk);
      s0[u] = _mm256_fmadd_ps(_mm256_load_ps(a + (p + u) * PV_CPU_MR), bj, s0[u]);
      s1[u] = _mm256_fmadd_ps(_mm256_load_ps(a + (p + u) * PV_CPU_MR + 8), bj, s1[u]);
    }
  }
  for (; p < k; p++) {
    __m256 bj = _mm256_broadcast_ss(b + p * lk);
    s0[0] = _mm256_fmadd_ps(_mm256_load_ps(a + p * PV_CPU_MR), bj, s0[0]);
    s1[0] = _mm256_fmadd_ps(_mm256_load_ps(a + p * PV_CPU_MR + 8), bj, s1[0]);
  }
  _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0[0], s0[1]),
                                    _mm256_add_ps(s0[2], s0[3])));
  _mm256_storeu_ps(t + 8, _mm256_add_ps(_mm256_add_ps(s1[0], s1[1]),
                                        _mm256_add_ps(s1[2], s1[3])));
}

typedef void (*ukr_fixed)(const float *, const float *, int64_t, int64_t,
                          int64_t, float *);
static const ukr_fixed tab256[NR256] = {u256_1, u256_2, u256_3,
                                        u256_4, u256_5, u256_6};

static void ukr_avx2(const float *a, int64_t as, int np, const float *b,
                     int64_t lk, int64_t ln, int64_t k, int nr, float *tile) {
  (void)as;
  (void)np; /* np_max is 1 */
  tab256[nr - 1](a, b, lk, ln, k, tile);
}

/* The same with B(p, j) = b[off[p] + coff[j]]: a convolution read in
 * place from its (padded) input, tap p at offset off[p] from pixel j's
 * window corner coff[j]. No im2col copy. */
static inline __attribute__((always_inline)) T256 void
k256c(const float *a, const float *b, const int32_t *off, const int32_t *coff,
      int64_t k, float *tile, const int NR) {
  __m256 c0[NR256], c1[NR256];
  const float *bc[NR256];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    bc[j] = b + coff[j];
    c0[j] = _mm256_setzero_ps();
    c1[j] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < k; p++) {
    __m256 x0 = _mm256_load_ps(a + p * PV_CPU_MR);
    __m256 x1 = _mm256_load_ps(a + p * PV_CPU_MR + 8);
    const int64_t o = off[p];
    _Pragma("GCC unroll 16")
    for (int j = 0; j < NR; j++) {
      __m256 bj = _mm256_broadcast_ss(bc[j] + o);
      c0[j] = _mm256_fmadd_ps(x0, bj, c0[j]);
      c1[j] = _mm256_fmadd_ps(x1, bj, c1[j]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    _mm256_storeu_ps(tile + j * PV_CPU_TILE_M, c0[j]);
    _mm256_storeu_ps(tile + j * PV_CPU_TILE_M + 8, c1[j]);
  }
}

#define U256C(NR)                                                         \
  static T256 void u256c_##NR(const float *a, const float *b,             \
                              const int32_t *off, const int32_t *coff,    \
                              int64_t k, float *t) {                      \
    k256c(a, b, off, coff, k, t, NR);                                     \
  }
U256C(1) U256C(2) U256C(3) U256C(4) U256C(5) U256C(6)

typedef void (*ukrc_fixed)(const float *, const float *, const int32_t *,
                           const int32_t *, int64_t, float *);
static const ukrc_fixed tab256c[NR256] = {u256c_1, u256c_2, u256c_3,
                                          u256c_4, u256c_5, u256c_6};

static void ukr_cols_avx2(const float *a, int64_t as, int np, const float *b,
                          const int32_t *off, const int32_t *coff, int64_t k,
                          int nr, float *tile) {
  (void)as;
  (void)np;
  tab256c[nr - 1](a, b, off, coff, k, tile);
}

/* For row groups of <= 8 rows (a 2-of-n layer's at 8x: 4 or 8 of 64
 * and 128), whose 16-row tiles above would be half or more empty: the
 * first 8 rows of the panel x 12 columns, one A load and twelve
 * broadcasts per tap. Columns j of the tile as above. */
#define NR256H 12
static inline __attribute__((always_inline)) T256 void
k256c8(const float *a, const float *b, const int32_t *off, const int32_t *coff,
       int64_t k, float *tile, const int NR) {
  __m256 c[NR256H];
  const float *bc[NR256H];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    bc[j] = b + coff[j];
    c[j] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < k; p++) {
    __m256 x0 = _mm256_load_ps(a + p * PV_CPU_MR);
    const int64_t o = off[p];
    _Pragma("GCC unroll 16")
    for (int j = 0; j < NR; j++)
      c[j] = _mm256_fmadd_ps(x0, _mm256_broadcast_ss(bc[j] + o), c[j]);
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) _mm256_storeu_ps(tile + j * PV_CPU_TILE_M, c[j]);
}

#define U256C8(NR)                                                        \
  static T256 void u256c8_##NR(const float *a, const float *b,            \
                               const int32_t *off, const int32_t *coff,   \
                               int64_t k, float *t) {                     \
    k256c8(a, b, off, coff, k, t, NR);                                    \
  }
U256C8(1) U256C8(2) U256C8(3) U256C8(4) U256C8(5) U256C8(6)
U256C8(7) U256C8(8) U256C8(9) U256C8(10) U256C8(11) U256C8(12)

static const ukrc_fixed tab256c8[NR256H] = {
    u256c8_1, u256c8_2, u256c8_3, u256c8_4,  u256c8_5,  u256c8_6,
    u256c8_7, u256c8_8, u256c8_9, u256c8_10, u256c8_11, u256c8_12};

static void ukr_cols8_avx2(const float *a, const float *b, const int32_t *off,
                           const int32_t *coff, int64_t k, int nr,
                           float *tile) {
  tab256c8[nr - 1](a, b, off, coff, k, tile);
}

/* ReLU, LeakyRelu and Clip on 8 floats; other activations come back as
 * they went in (act_vec256 says which). */
static inline T256 bool act_vec256(pv_act act) {
  return act == PV_ACT_NONE || act == PV_ACT_RELU || act == PV_ACT_LEAKY ||
         act == PV_ACT_CLIP;
}

static inline __attribute__((always_inline)) T256 __m256
act256(__m256 v, pv_act act, __m256 va, __m256 vb) {
  const __m256 zero = _mm256_setzero_ps();
  switch (act) {
  case PV_ACT_RELU: return _mm256_max_ps(v, zero);
  case PV_ACT_LEAKY:
    return _mm256_blendv_ps(v, _mm256_mul_ps(v, va),
                            _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
  /* v second in the max keeps a NaN, as the reference's min(max()) does */
  case PV_ACT_CLIP: return _mm256_min_ps(vb, _mm256_max_ps(va, v));
  default: return v;
  }
}

/* Lane mask of the first n (0..8) lanes for maskload/maskstore. */
static inline T256 __m256i lanes256(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The first n (0..8) floats of v to d with plain 128/64/32-bit stores:
 * a masked store (vmaskmovps) costs several times as much on AMD's
 * cores, and a tile of 6 columns stores each output row with one. */
static inline __attribute__((always_inline)) T256 void
store_n(float *d, __m256 v, int n) {
  if (n == 8) {
    _mm256_storeu_ps(d, v);
    return;
  }
  __m128 h = _mm256_castps256_ps128(v);
  if (n >= 4) {
    _mm_storeu_ps(d, h);
    h = _mm256_extractf128_ps(v, 1);
    d += 4;
    n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi((__m64 *)d, h);
    h = _mm_movehl_ps(h, h);
    d += 2;
    n -= 2;
  }
  if (n) _mm_store_ss(d, h);
}

/* Contiguous rows (a Gemm's output): y[i + j*ld_n] = act(tile[j*32+i] +
 * bias[i]), eight rows a vector. */
static T256 void store_avx2(float *y, int64_t ld_n, const float *tile,
                            const float *bias, int nrows, int ncols, pv_act act,
                            float alpha, float beta) {
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  const bool vec = act_vec256(act);
  for (int i = 0; i < nrows; i += 8) {
    const int r = nrows - i < 8 ? nrows - i : 8;
    const __m256i mk = lanes256(r);
    const __m256 bv = bias ? _mm256_maskload_ps(bias + i, mk) : _mm256_setzero_ps();
    for (int j = 0; j < ncols; j++) {
      __m256 v = _mm256_add_ps(_mm256_loadu_ps(tile + j * PV_CPU_TILE_M + i), bv);
      float *d = y + i + j * ld_n;
      if (vec) {
        store_n(d, act256(v, act, va, vb), r);
      } else {
        float t[8];
        _mm256_storeu_ps(t, v);
        for (int q = 0; q < r; q++) d[q] = pv_cpu_act1(t[q], act, alpha, beta);
      }
    }
  }
}

/* Rows contiguous along n (a convolution's output planes): y[rows[i] + j]
 * = act(tile[j*32+i] + bias[i]). Eight rows at a time, the tile's
 * columns turned into rows by an 8 x 8 register transpose, each row
 * stored as one run of ncols (<= 6) floats. */
static T256 void store_rows_avx2(float *y, const int64_t *rows,
                                 const float *tile, const float *bias,
                                 int nrows, int ncols, pv_act act, float alpha,
                                 float beta) {
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  const bool vec = act_vec256(act);
  for (int i0 = 0; i0 < nrows; i0 += 8) {
    __m256 c[8];
    for (int j = 0; j < 8; j++)
      c[j] = j < ncols ? _mm256_loadu_ps(tile + j * PV_CPU_TILE_M + i0)
                       : _mm256_setzero_ps();
    __m256 t0 = _mm256_unpacklo_ps(c[0], c[1]), t1 = _mm256_unpackhi_ps(c[0], c[1]);
    __m256 t2 = _mm256_unpacklo_ps(c[2], c[3]), t3 = _mm256_unpackhi_ps(c[2], c[3]);
    __m256 t4 = _mm256_unpacklo_ps(c[4], c[5]), t5 = _mm256_unpackhi_ps(c[4], c[5]);
    __m256 t6 = _mm256_unpacklo_ps(c[6], c[7]), t7 = _mm256_unpackhi_ps(c[6], c[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
    __m256 r[8] = {_mm256_permute2f128_ps(s0, s4, 0x20), _mm256_permute2f128_ps(s1, s5, 0x20),
                   _mm256_permute2f128_ps(s2, s6, 0x20), _mm256_permute2f128_ps(s3, s7, 0x20),
                   _mm256_permute2f128_ps(s0, s4, 0x31), _mm256_permute2f128_ps(s1, s5, 0x31),
                   _mm256_permute2f128_ps(s2, s6, 0x31), _mm256_permute2f128_ps(s3, s7, 0x31)};
    const int nr8 = nrows - i0 < 8 ? nrows - i0 : 8;
    for (int i = 0; i < nr8; i++) {
      __m256 v = _mm256_add_ps(r[i], _mm256_set1_ps(bias[i0 + i]));
      float *d = y + rows[i0 + i];
      if (vec) {
        store_n(d, act256(v, act, va, vb), ncols);
      } else {
        float t[8];
        _mm256_storeu_ps(t, v);
        for (int q = 0; q < ncols; q++) d[q] = pv_cpu_act1(t[q], act, alpha, beta);
      }
    }
  }
}

/* Max keeping NaN from either side, as the reference's a > b || a != a
 * ? a : b. */
static inline __attribute__((always_inline)) T256 __m256 max_nan256(__m256 a,
                                                                    __m256 b) {
  __m256 keep_a = _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ),
                               _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  return _mm256_blendv_ps(b, a, keep_a);
}

/* 2x2 window, stride 2 (pv_cpu_pool2_fn): eight outputs from sixteen
 * columns of both rows, the column pairs split by shuffles. */
static T256 void pool2_avx2(const float *r0, const float *r1, float *d,
                            int64_t w) {
  const int64_t n = w / 2;
  int64_t x = 0;
  for (; x + 8 <= n; x += 8) {
    __m256 m0 = max_nan256(_mm256_loadu_ps(r0 + 2 * x), _mm256_loadu_ps(r1 + 2 * x));
    __m256 m1 = max_nan256(_mm256_loadu_ps(r0 + 2 * x + 8),
                           _mm256_loadu_ps(r1 + 2 * x + 8));
    __m256 e = _mm256_shuffle_ps(m0, m1, 0x88), o = _mm256_shuffle_ps(m0, m1, 0xdd);
    __m256 r = max_nan256(e, o); /* outputs 0 1 4 5 | 2 3 6 7 */
    _mm256_storeu_ps(d + x, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(r), 0xd8)));
  }
  if (x < n) { /* the tail (all of a 14-wide row) by masked loads */
    const int t = (int)(n - x);
    const __m256i k0 = lanes256(2 * t < 8 ? 2 * t : 8), k1 = lanes256(2 * t - 8);
    __m256 m0 = max_nan256(_mm256_maskload_ps(r0 + 2 * x, k0),
                           _mm256_maskload_ps(r1 + 2 * x, k0));
    __m256 m1 = max_nan256(_mm256_maskload_ps(r0 + 2 * x + 8, k1),
                           _mm256_maskload_ps(r1 + 2 * x + 8, k1));
    __m256 e = _mm256_shuffle_ps(m0, m1, 0x88), o = _mm256_shuffle_ps(m0, m1, 0xdd);
    __m256 r = max_nan256(e, o);
    store_n(d + x, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(r), 0xd8)), t);
  }
}

/* 2x2 window, stride 1: d[x] = max of r0/r1[x, x+1], reading w + 1
 * floats of each row. */
static T256 void pool2s1_avx2(const float *r0, const float *r1, float *d,
                              int64_t w) {
  int64_t x = 0;
  for (; x + 8 <= w; x += 8) {
    __m256 a = max_nan256(_mm256_loadu_ps(r0 + x), _mm256_loadu_ps(r0 + x + 1));
    __m256 b = max_nan256(_mm256_loadu_ps(r1 + x), _mm256_loadu_ps(r1 + x + 1));
    _mm256_storeu_ps(d + x, max_nan256(a, b));
  }
  if (x < w) {
    const int t = (int)(w - x);
    const __m256i k = lanes256(t);
    __m256 a = max_nan256(_mm256_maskload_ps(r0 + x, k), _mm256_maskload_ps(r0 + x + 1, k));
    __m256 b = max_nan256(_mm256_maskload_ps(r1 + x, k), _mm256_maskload_ps(r1 + x + 1, k));
    store_n(d + x, max_nan256(a, b), t);
  }
}

const pv_cpu_pool2_fn pv_cpu_pool2_avx2 = pool2_avx2;
const pv_cpu_pool2_fn pv_cpu_pool2s1_avx2 = pool2s1_avx2;

const pv_cpu_isa pv_cpu_isa_avx2 = {"avx2", NR256, 1, ukr_avx2, store_avx2,
                                    NULL, NULL, NULL, store_rows_avx2,
                                    ukr_cols_avx2, ukr_cols8_avx2, NR256H};
#else
const pv_cpu_isa pv_cpu_isa_avx2 = {"avx2", 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0};
const pv_cpu_pool2_fn pv_cpu_pool2_avx2 = NULL;
const pv_cpu_pool2_fn pv_cpu_pool2s1_avx2 = NULL;
#endif
