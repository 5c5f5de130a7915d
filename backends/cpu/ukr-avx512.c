/* AVX-512 micro-kernels: 32 rows (two packed panels) x 8 columns in 16
 * zmm accumulators; per k two panel loads and eight broadcast FMAs, so
 * FMA issue, not loads, is the limit. Batch 1 gets its own kernel with
 * the k loop unrolled into independent accumulators to hide FMA latency
 * while it streams weights. */
#include "cpu-impl.h"

#if defined(__x86_64__)
#include "act-avx512.h"

#define T512 __attribute__((target("avx512f,avx512vl,avx2")))
#define NR512 8
#define PF_DIST 16 /* k steps ahead = 16 cache lines per panel */

static inline __attribute__((always_inline)) T512 void
k512(const float *a, int64_t as, const float *b, int64_t lk, int64_t ln,
     int64_t k, float *tile, const int NP, const int NR) {
  __m512 c0[NR512], c1[NR512];
  const float *bc[NR512];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) bc[j] = b + j * ln;
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    c0[j] = _mm512_setzero_ps();
    c1[j] = _mm512_setzero_ps();
  }
  const float *a1 = a + as;
  for (int64_t p = 0; p < k; p++) {
    /* Weights stream once per column panel: fetch them ahead. */
    _mm_prefetch((const char *)(a + (p + PF_DIST) * PV_CPU_MR), _MM_HINT_T0);
    if (NP > 1)
      _mm_prefetch((const char *)(a1 + (p + PF_DIST) * PV_CPU_MR), _MM_HINT_T0);
    __m512 x0 = _mm512_load_ps(a + p * PV_CPU_MR);
    __m512 x1 = NP > 1 ? _mm512_load_ps(a1 + p * PV_CPU_MR) : x0;
    _Pragma("GCC unroll 16")
    for (int j = 0; j < NR; j++) {
      __m512 bj = _mm512_set1_ps(bc[j][p * lk]);
      c0[j] = _mm512_fmadd_ps(x0, bj, c0[j]);
      if (NP > 1) c1[j] = _mm512_fmadd_ps(x1, bj, c1[j]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    _mm512_storeu_ps(tile + j * PV_CPU_TILE_M, c0[j]);
    if (NP > 1) _mm512_storeu_ps(tile + j * PV_CPU_TILE_M + 16, c1[j]);
  }
}

/* The same with the input gather fused: one index load per k, then the
 * broadcasts read the gathered column straight from the input rows. */
static inline __attribute__((always_inline)) T512 void
k512i(const float *a, int64_t as, const float *b, const int32_t *idx,
      int64_t ln, int64_t k, float *tile, const int NP, const int NR) {
  __m512 c0[NR512], c1[NR512];
  const float *bc[NR512];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    bc[j] = b + j * ln;
    c0[j] = _mm512_setzero_ps();
    c1[j] = _mm512_setzero_ps();
  }
  const float *a1 = a + as;
  for (int64_t p = 0; p < k; p++) {
    _mm_prefetch((const char *)(a + (p + PF_DIST) * PV_CPU_MR), _MM_HINT_T0);
    if (NP > 1)
      _mm_prefetch((const char *)(a1 + (p + PF_DIST) * PV_CPU_MR), _MM_HINT_T0);
    __m512 x0 = _mm512_load_ps(a + p * PV_CPU_MR);
    __m512 x1 = NP > 1 ? _mm512_load_ps(a1 + p * PV_CPU_MR) : x0;
    const int64_t o = idx[p];
    _Pragma("GCC unroll 16")
    for (int j = 0; j < NR; j++) {
      /* Keep each column's base in a register: one base+index*4 load per
       * broadcast instead of a chain of eight dependent adds. */
      __asm__("" : "+r"(bc[j]));
      __m512 bj = _mm512_set1_ps(bc[j][o]);
      c0[j] = _mm512_fmadd_ps(x0, bj, c0[j]);
      if (NP > 1) c1[j] = _mm512_fmadd_ps(x1, bj, c1[j]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    _mm512_storeu_ps(tile + j * PV_CPU_TILE_M, c0[j]);
    if (NP > 1) _mm512_storeu_ps(tile + j * PV_CPU_TILE_M + 16, c1[j]);
  }
}

#define U512I(NP, NR)                                                      \
  static T512 void u512i_##NP##_##NR(const float *a, int64_t as,           \
                                     const float *b, const int32_t *idx,   \
                                     int64_t ln, int64_t k, float *t) {    \
    k512i(a, as, b, idx, ln, k, t, NP, NR);                                \
  }
#define U512I_ROW(NP) U512I(NP, 1) U512I(NP, 2) U512I(NP, 3) U512I(NP, 4) \
  U512I(NP, 5) U512I(NP, 6) U512I(NP, 7) U512I(NP, 8)
U512I_ROW(1)
U512I_ROW(2)

typedef void (*ukri_fixed)(const float *, int64_t, const float *,
                           const int32_t *, int64_t, int64_t, float *);
static const ukri_fixed tab512i[2][NR512] = {
    {u512i_1_1, u512i_1_2, u512i_1_3, u512i_1_4, u512i_1_5, u512i_1_6,
     u512i_1_7, u512i_1_8},
    {u512i_2_1, u512i_2_2, u512i_2_3, u512i_2_4, u512i_2_5, u512i_2_6,
     u512i_2_7, u512i_2_8},
};

static void ukr_idx_avx512(const float *a, int64_t as, int np, const float *b,
                           const int32_t *idx, int64_t ln, int64_t k, int nr,
                           float *tile) {
  tab512i[np - 1][nr - 1](a, as, b, idx, ln, k, tile);
}

/* One column: four partial sums per panel, so 8 FMA chains in flight. */
static inline __attribute__((always_inline)) T512 void
k512_gemv(const float *a, int64_t as, const float *b, int64_t lk, int64_t k,
          float *tile, const int NP) {
  __m512 s[2][4];
  _Pragma("GCC unroll 16")
  for (int q = 0; q < 2; q++)
    _Pragma("GCC unroll 16")
    for (int u = 0; u < 4; u++) s[q][u] = _mm512_setzero_ps();
  const float *a1 = a + as;
  int64_t p = 0;
  for (; p + 4 <= k; p += 4) {
    _Pragma("GCC unroll 16")
    for (int u = 0; u < 4; u++) {
      __m512 bj = _mm512_set1_ps(b[(p + u) * lk]);
      s[0][u] = _mm512_fmadd_ps(_mm512_load_ps(a + (p + u) * PV_CPU_MR), bj,
                                s[0][u]);
      if (NP > 1)
        s[1][u] = _mm512_fmadd_ps(_mm512_load_ps(a1 + (p + u) * PV_CPU_MR), bj,
                                  s[1][u]);
    }
  }
  for (; p < k; p++) {
    __m512 bj = _mm512_set1_ps(b[p * lk]);
    s[0][0] = _mm512_fmadd_ps(_mm512_load_ps(a + p * PV_CPU_MR), bj, s[0][0]);
    if (NP > 1)
      s[1][0] = _mm512_fmadd_ps(_mm512_load_ps(a1 + p * PV_CPU_MR), bj, s[1][0]);
  }
  _Pragma("GCC unroll 16")
  for (int q = 0; q < NP; q++) {
    __m512 t = _mm512_add_ps(_mm512_add_ps(s[q][0], s[q][1]),
                             _mm512_add_ps(s[q][2], s[q][3]));
    _mm512_storeu_ps(tile + 16 * q, t);
  }
}

#define U512(NP, NR)                                                       \
  static T512 void u512_##NP##_##NR(const float *a, int64_t as,            \
                                    const float *b, int64_t lk, int64_t ln, \
                                    int64_t k, float *t) {                 \
    k512(a, as, b, lk, ln, k, t, NP, NR);                                  \
  }
#define U512_ROW(NP) U512(NP, 2) U512(NP, 3) U512(NP, 4) U512(NP, 5) \
  U512(NP, 6) U512(NP, 7) U512(NP, 8)
U512_ROW(1)
U512_ROW(2)
static T512 void u512_1_1(const float *a, int64_t as, const float *b,
                          int64_t lk, int64_t ln, int64_t k, float *t) {
  (void)ln;
  k512_gemv(a, as, b, lk, k, t, 1);
}
static T512 void u512_2_1(const float *a, int64_t as, const float *b,
                          int64_t lk, int64_t ln, int64_t k, float *t) {
  (void)ln;
  k512_gemv(a, as, b, lk, k, t, 2);
}

typedef void (*ukr_fixed)(const float *, int64_t, const float *, int64_t,
                          int64_t, int64_t, float *);
static const ukr_fixed tab512[2][NR512] = {
    {u512_1_1, u512_1_2, u512_1_3, u512_1_4, u512_1_5, u512_1_6, u512_1_7,
     u512_1_8},
    {u512_2_1, u512_2_2, u512_2_3, u512_2_4, u512_2_5, u512_2_6, u512_2_7,
     u512_2_8},
};

static void ukr_avx512(const float *a, int64_t as, int np, const float *b,
                       int64_t lk, int64_t ln, int64_t k, int nr, float *tile) {
  tab512[np - 1][nr - 1](a, as, b, lk, ln, k, tile);
}

/* Bias, activation and store of a tile, 16 rows per masked vector. */
static T512 void store_avx512(float *y, int64_t ld_n, const float *tile,
                              const float *bias, int nrows, int ncols,
                              pv_act act, float alpha, float beta) {
  const __m512 zero = _mm512_setzero_ps(), va = _mm512_set1_ps(alpha),
               vb = _mm512_set1_ps(beta);
  for (int i = 0; i < nrows; i += 16) {
    __mmask16 mk = nrows - i >= 16 ? 0xffff : (__mmask16)((1u << (nrows - i)) - 1);
    __m512 bi = bias ? _mm512_maskz_loadu_ps(mk, bias + i) : zero;
    for (int j = 0; j < ncols; j++) {
      __m512 v = _mm512_add_ps(_mm512_loadu_ps(tile + j * PV_CPU_TILE_M + i), bi);
      float *yy = y + j * ld_n + i;
      switch (act) {
      case PV_ACT_NONE: break;
      case PV_ACT_RELU: v = _mm512_max_ps(v, zero); break;
      case PV_ACT_LEAKY:
        v = _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, va);
        break;
      case PV_ACT_CLIP: v = _mm512_min_ps(_mm512_max_ps(v, va), vb); break;
      default: {
        float t[16];
        _mm512_storeu_ps(t, v);
        for (int q = 0; q < 16 && i + q < nrows; q++)
          yy[q] = pv_cpu_act1(t[q], act, alpha, beta);
        continue;
      }
      }
      _mm512_mask_storeu_ps(yy, mk, v);
    }
  }
}

static T512 void scatter_avx512(float *y, int64_t ld_n, const int32_t *rows,
                                const float *tile, const float *bias,
                                int nrows, int ncols, pv_act act, float alpha,
                                float beta) {
  bool vec_act = pv_cpu_act_vec(act);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int i = 0; i < nrows; i += 16) {
    __mmask16 mk = nrows - i >= 16 ? 0xffff : (__mmask16)((1u << (nrows - i)) - 1);
    __m512i idx = _mm512_maskz_loadu_epi32(mk, rows + i);
    __m512 bi = _mm512_maskz_loadu_ps(mk, bias + i);
    for (int j = 0; j < ncols; j++) {
      __m512 v = _mm512_add_ps(_mm512_loadu_ps(tile + j * PV_CPU_TILE_M + i), bi);
      if (vec_act) {
        v = pv_act512(v, act, va, vb);
      } else {
        float t[16];
        _mm512_storeu_ps(t, v);
        for (int q = 0; q < 16; q++) t[q] = pv_cpu_act1(t[q], act, alpha, beta);
        v = _mm512_loadu_ps(t);
      }
      _mm512_mask_i32scatter_ps(y + j * ld_n, mk, idx, v, 4);
    }
  }
}

static T512 void gather_avx512(const float *x, int64_t ld_n,
                               const int64_t *cols, int64_t k, float *d) {
  const __m256i rows = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32((int)ld_n));
  for (int64_t p = 0; p < k; p++)
    _mm256_storeu_ps(d + p * NR512, _mm256_i32gather_ps(x + cols[p], rows, 4));
}

/* Tile column j holds output column j: read each row across the columns
 * with a gather (the tile is in L1) and store it as one run. */
static T512 void store_rows_avx512(float *y, const int64_t *rows,
                                   const float *tile, const float *bias,
                                   int nrows, int ncols, pv_act act,
                                   float alpha, float beta) {
  const __m256i cols = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
  const __mmask8 mk = (__mmask8)((1u << ncols) - 1);
  bool vec_act = pv_cpu_act_vec(act);
  const __m256 zero = _mm256_setzero_ps(), va = _mm256_set1_ps(alpha),
               vb = _mm256_set1_ps(beta);
  for (int i = 0; i < nrows; i++) {
    __m256 v = _mm256_mmask_i32gather_ps(zero, mk, cols, tile + i, 4);
    v = _mm256_add_ps(v, _mm256_set1_ps(bias[i]));
    if (!vec_act) {
      float t[8];
      _mm256_storeu_ps(t, v);
      for (int q = 0; q < ncols; q++) y[rows[i] + q] = pv_cpu_act1(t[q], act, alpha, beta);
      continue;
    }
    _mm256_mask_storeu_ps(y + rows[i], mk, pv_act256(v, act, va, vb));
  }
}

/* One line of a permute pass: d[i] = act(x[idx[i]] + bias[i]). The
 * source line is in L1; eight-wide gathers move it at about twice the
 * rate of the scalar loop the compiler makes of it. */
static T512 void permute_avx512(float *d, const float *x, const int32_t *idx,
                                int64_t n, const float *bias, pv_act act,
                                float alpha, float beta) {
  const bool vec_act = pv_cpu_act_vec(act);
  const __m256 zero = _mm256_setzero_ps(), va = _mm256_set1_ps(alpha),
               vb = _mm256_set1_ps(beta);
  for (int64_t i = 0; i < n; i += 8) {
    __mmask8 mk = n - i >= 8 ? 0xff : (__mmask8)((1u << (n - i)) - 1);
    __m256i ix = _mm256_maskz_loadu_epi32(mk, idx + i);
    __m256 v = _mm256_mmask_i32gather_ps(zero, mk, ix, x, 4);
    if (bias) v = _mm256_add_ps(v, _mm256_maskz_loadu_ps(mk, bias + i));
    _mm256_mask_storeu_ps(d + i, mk, pv_act256(v, act, va, vb));
  }
  if (!vec_act)
    for (int64_t i = 0; i < n; i++) d[i] = pv_cpu_act1(d[i], act, alpha, beta);
}

const pv_cpu_isa pv_cpu_isa_avx512 = {"avx512", NR512, 2, ukr_avx512,
                                      store_avx512, scatter_avx512,
                                      gather_avx512, ukr_idx_avx512,
                                      store_rows_avx512, NULL, NULL, 0};

pv_cpu_permute_fn pv_cpu_isa_permute(const pv_cpu_isa *isa) {
  return isa == &pv_cpu_isa_avx512 ? permute_avx512 : NULL;
}
#else
const pv_cpu_isa pv_cpu_isa_avx512 = {"avx512", 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0};

pv_cpu_permute_fn pv_cpu_isa_permute(const pv_cpu_isa *isa) {
  (void)isa;
  return NULL;
}
#endif
