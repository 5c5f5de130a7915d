/* Tensor data as JSON: a number scanner that parses a "data" array straight
 * into a typed buffer, and a float formatter that round-trips, because one
 * cJSON node per number costs ~0.23 us and a 784-float request has 784. */
#include "pivotd.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------------- buffers */

static void buf_grow(pvd_buf *b, size_t need) {
  if (b->oom) return;
  if (need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) { b->oom = true; return; }
    cap *= 2;
  }
  char *p = realloc(b->p, cap);
  if (!p) { b->oom = true; return; }
  b->p = p;
  b->cap = cap;
}

void pvd_buf_put(pvd_buf *b, const void *s, size_t n) {
  if (n > SIZE_MAX - b->len - 1) { b->oom = true; return; }
  buf_grow(b, b->len + n + 1);
  if (b->oom) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

void pvd_buf_puts(pvd_buf *b, const char *s) { pvd_buf_put(b, s, strlen(s)); }

void pvd_buf_printf(pvd_buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) { pvd_buf_put(b, tmp, (size_t)n); return; }
  buf_grow(b, b->len + (size_t)n + 1);
  if (b->oom) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void pvd_buf_json_str(pvd_buf *b, const char *s) {
  pvd_buf_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      pvd_buf_put(b, e, 2);
    } else if (c < 0x20) {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", c);
      pvd_buf_put(b, e, 6);
    } else {
      pvd_buf_put(b, s, 1);
    }
  }
  pvd_buf_put(b, "\"", 1);
}

/* -------------------------------------------------------------- scanning */

static const double pow10_exact[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static const uint32_t pow10_exact_u32[8] = {1, 10, 100, 1000, 10000, 100000,
                                             1000000, 10000000};

typedef struct num {
  bool neg;
  uint64_t mant;   /* first 19 significant digits */
  int exp10;       /* value = mant * 10^exp10 (when !trunc) */
  bool trunc;      /* more digits than fit in mant */
  bool is_int;     /* no '.', no exponent */
  const char *start, *end;
} num;

static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Eight bytes at p as a little-endian word (the first char lowest). */
static inline uint64_t load8(const char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

/* How many of the 8 chars in v are leading decimal digits. A borrow or
 * carry between bytes only runs towards later chars, so the first
 * non-digit is always seen correctly. */
static inline int digits8(uint64_t v) {
  uint64_t t = v - 0x3030303030303030ull;
  uint64_t bad = ((t + 0x7676767676767676ull) | t) & 0x8080808080808080ull;
  return bad ? __builtin_ctzll(bad) >> 3 : 8;
}

/* Value of the first nd (1..7) digit chars of v: the others are replaced
 * by leading '0's, then pairs, quads and halves are combined with three
 * multiplications instead of one per digit. */
static inline uint32_t value8(uint64_t v, int nd) {
  v = (v << (8 * (8 - nd))) | (0x3030303030303030ull >> (8 * nd));
  v -= 0x3030303030303030ull;
  v = (v * 10) + (v >> 8);
  v = (((v & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
       (((v >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >> 32;
  return (uint32_t)v;
}

/* The common shape of numbers that clients print, -?(0|[1-9]d{0,6})
 * (.d{1,7})? followed by neither a digit nor an exponent, eight chars at
 * a time; false (nothing consumed) for anything else, which then takes
 * the general scanner. Every load stays before end. */
static inline bool scan_num_fast(const char *p, const char *end, num *n) {
  const char *s = p;
  bool neg = false;
  if (p < end && *p == '-') { neg = true; p++; }
  if (end - p < 8) return false;
  uint64_t v = load8(p);
  int ni = digits8(v);
  if (ni == 0 || ni == 8 || (ni > 1 && *p == '0')) return false;
  uint64_t mant = value8(v, ni);
  p += ni;
  int exp10 = 0;
  bool is_int = true;
  if (*p == '.') {
    p++;
    if (end - p < 8) return false;
    v = load8(p);
    int nf = digits8(v);
    if (nf == 0 || nf == 8) return false;
    mant = mant * pow10_exact_u32[nf] + value8(v, nf);
    exp10 = -nf;
    p += nf;
    is_int = false;
  }
  if (*p == 'e' || *p == 'E') return false; /* p < end: a non-digit was seen */
  n->start = s;
  n->end = p;
  n->neg = neg;
  n->mant = mant;
  n->exp10 = exp10;
  n->trunc = false;
  n->is_int = is_int;
  return true;
}

/* JSON number grammar; returns -1 if there is no number at p. */
static int scan_num(const char *p, const char *end, num *n) {
  if (scan_num_fast(p, end, n)) return 0;
  n->start = p;
  n->neg = false;
  n->mant = 0;
  n->exp10 = 0;
  n->trunc = false;
  n->is_int = true;
  if (p < end && *p == '-') { n->neg = true; p++; }
  if (p >= end || !is_digit(*p)) return -1;
  int nd = 0;
  if (*p == '0') {
    p++;
  } else {
    while (p < end && is_digit(*p)) {
      if (nd < 19) { n->mant = n->mant * 10 + (uint64_t)(*p - '0'); nd++; }
      else { n->exp10++; if (*p != '0') n->trunc = true; }
      p++;
    }
  }
  if (p < end && *p == '.') {
    n->is_int = false;
    p++;
    if (p >= end || !is_digit(*p)) return -1;
    while (p < end && is_digit(*p)) {
      if (nd < 19) {
        if (n->mant || *p != '0') { n->mant = n->mant * 10 + (uint64_t)(*p - '0'); nd++; }
        n->exp10--;
      } else if (*p != '0') {
        n->trunc = true;
      }
      p++;
    }
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    n->is_int = false;
    p++;
    bool eneg = false;
    if (p < end && (*p == '+' || *p == '-')) { eneg = *p == '-'; p++; }
    if (p >= end || !is_digit(*p)) return -1;
    int e = 0;
    while (p < end && is_digit(*p)) {
      if (e < 100000) e = e * 10 + (*p - '0');
      p++;
    }
    n->exp10 += eneg ? -e : e;
  }
  n->end = p;
  return 0;
}

static double slow_strtod(const num *n) {
  char tmp[128];
  size_t len = (size_t)(n->end - n->start);
  if (len >= sizeof tmp) {
    char *big = malloc(len + 1);
    if (!big) return NAN;
    memcpy(big, n->start, len);
    big[len] = 0;
    double d = strtod(big, NULL);
    free(big);
    return d;
  }
  memcpy(tmp, n->start, len);
  tmp[len] = 0;
  return strtod(tmp, NULL);
}

static float slow_strtof(const num *n) {
  char tmp[128];
  size_t len = (size_t)(n->end - n->start);
  if (len >= sizeof tmp) return (float)slow_strtod(n); /* pathological */
  memcpy(tmp, n->start, len);
  tmp[len] = 0;
  return strtof(tmp, NULL);
}

/* Clinger's fast path: mantissa and power of ten both exact in double, so
 * one correctly rounded operation. For float, a double result sitting
 * exactly on a float tie could round twice wrongly: those go to strtof. */
static float num_to_float(const num *n) {
  if (n->mant == 0) return n->neg ? -0.0f : 0.0f;
  if (!n->trunc && n->mant <= (1ull << 53) && n->exp10 >= -22 &&
      n->exp10 <= 22) {
    double d = (double)n->mant;
    d = n->exp10 < 0 ? d / pow10_exact[-n->exp10] : d * pow10_exact[n->exp10];
    if (d >= FLT_MIN && d <= FLT_MAX) {
      uint64_t bits;
      memcpy(&bits, &d, 8);
      uint64_t low = bits & ((1ull << 29) - 1);
      if (low != (1ull << 28)) {
        float f = (float)d;
        return n->neg ? -f : f;
      }
    }
  }
  return slow_strtof(n);
}

static double num_to_double(const num *n) {
  if (n->mant == 0) return n->neg ? -0.0 : 0.0;
  if (!n->trunc && n->mant <= (1ull << 53) && n->exp10 >= -22 &&
      n->exp10 <= 22) {
    double d = (double)n->mant;
    d = n->exp10 < 0 ? d / pow10_exact[-n->exp10] : d * pow10_exact[n->exp10];
    return n->neg ? -d : d;
  }
  return slow_strtod(n);
}

int pvd_scan_float(const char **p, const char *end, float *out) {
  num n;
  if (scan_num(*p, end, &n) < 0) return PV_EINVAL;
  *out = num_to_float(&n);
  *p = n.end;
  return 0;
}

static inline const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

/* Store one scanned element; integers are range-checked. */
static int store(const num *n, const char *p, const char *end, pv_dtype t,
                 void *dst, size_t i) {
  (void)p; (void)end;
  switch (t) {
  case PV_F32: ((float *)dst)[i] = num_to_float(n); return 0;
  case PV_F64: ((double *)dst)[i] = num_to_double(n); return 0;
  default: break;
  }
  if (!n->is_int || n->trunc)
    return pv_error(PV_EINVAL, "element %zu: %s needs an integer", i,
                    pv_dtype_name(t));
  uint64_t m = n->mant;
  bool neg = n->neg && m != 0;
#define RANGE(lo_abs, hi)                                                     \
  if ((neg && m > (uint64_t)(lo_abs)) || (!neg && m > (uint64_t)(hi)))        \
    return pv_error(PV_ERANGE, "element %zu out of range for %s", i,          \
                    pv_dtype_name(t));
  switch (t) {
  case PV_U8: RANGE(0, UINT8_MAX) ((uint8_t *)dst)[i] = (uint8_t)m; break;
  case PV_I8: RANGE(128, INT8_MAX) ((int8_t *)dst)[i] = (int8_t)(neg ? -(int64_t)m : (int64_t)m); break;
  case PV_U16: RANGE(0, UINT16_MAX) ((uint16_t *)dst)[i] = (uint16_t)m; break;
  case PV_I16: RANGE(32768, INT16_MAX) ((int16_t *)dst)[i] = (int16_t)(neg ? -(int64_t)m : (int64_t)m); break;
  case PV_U32: RANGE(0, UINT32_MAX) ((uint32_t *)dst)[i] = (uint32_t)m; break;
  case PV_I32: RANGE(2147483648u, INT32_MAX) ((int32_t *)dst)[i] = (int32_t)(neg ? -(int64_t)m : (int64_t)m); break;
  case PV_U64: RANGE(0, UINT64_MAX) ((uint64_t *)dst)[i] = m; break;
  case PV_I64:
    RANGE(9223372036854775808ull, INT64_MAX)
    ((int64_t *)dst)[i] = neg ? (int64_t)(0 - m) : (int64_t)m;
    break;
  case PV_BOOL: RANGE(0, 1) ((uint8_t *)dst)[i] = (uint8_t)m; break;
  default:
    return pv_error(PV_EUNSUPPORTED, "datatype %s is not supported in JSON",
                    pv_dtype_name(t));
  }
#undef RANGE
  return 0;
}

int pvd_json_parse_data(const char **pp, const char *end, pv_dtype t,
                        void *dst, size_t n, size_t *got) {
  const char *p = skip_ws(*pp, end);
  size_t i = 0;
  int depth = 0;
  if (p >= end || *p != '[') return pv_error(PV_EINVAL, "\"data\" must be an array");
  /* Iterative walk: '[' opens, ']' closes, numbers fill; nesting is not
   * checked against the shape (row-major flattening is what counts). */
  for (;;) {
    p = skip_ws(p, end);
    if (p >= end) return pv_error(PV_EINVAL, "\"data\": unterminated array");
    char c = *p;
    if (c == '[') {
      if (++depth > PV_MAX_DIMS + 1) return pv_error(PV_EINVAL, "\"data\": nested too deep");
      p++;
      p = skip_ws(p, end);
      if (p < end && *p == ']') { p++; depth--; goto after_value; }
      continue;
    }
    if (i >= n) return pv_error(PV_ESHAPE, "\"data\" has more than %zu elements", n);
    if (t == PV_BOOL && (c == 't' || c == 'f')) {
      if (end - p >= 4 && !memcmp(p, "true", 4)) { ((uint8_t *)dst)[i++] = 1; p += 4; }
      else if (end - p >= 5 && !memcmp(p, "false", 5)) { ((uint8_t *)dst)[i++] = 0; p += 5; }
      else return pv_error(PV_EINVAL, "\"data\": element %zu is not a boolean", i);
    } else {
      num v;
      if (scan_num(p, end, &v) < 0)
        return pv_error(PV_EINVAL, "\"data\": element %zu is not a number", i);
      int rc = store(&v, p, end, t, dst, i);
      if (rc) return rc;
      i++;
      p = v.end;
    }
  after_value:
    for (;;) {
      p = skip_ws(p, end);
      if (p >= end) return pv_error(PV_EINVAL, "\"data\": unterminated array");
      if (*p == ',') { p++; break; }
      if (*p == ']') {
        p++;
        if (--depth == 0) { *pp = p; *got = i; return 0; }
        continue;
      }
      return pv_error(PV_EINVAL, "\"data\": expected ',' or ']' after element %zu", i);
    }
  }
}

/* -------------------------------------------------------------- formatting */

static const uint64_t pow10_u[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull,
    10000000ull, 100000000ull, 1000000000ull, 10000000000ull,
    100000000000ull, 1000000000000ull, 10000000000000ull,
    100000000000000ull, 1000000000000000ull, 10000000000000000ull,
    100000000000000000ull, 1000000000000000000ull,
    10000000000000000000ull};


/* Write digits (ndig of them, value m) with decimal exponent e10 of the
 * first digit, choosing fixed or exponent notation like %g. */
static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static int emit(char *out, bool neg, uint64_t m, int ndig, int e10) {
  char dig[24];
  int i = ndig;
  /* Two digits per division by a constant. */
  for (; i >= 2; i -= 2) {
    memcpy(dig + i - 2, digit_pairs + 2 * (m % 100), 2);
    m /= 100;
  }
  if (i) dig[0] = (char)('0' + m);
  while (ndig > 1 && dig[ndig - 1] == '0') ndig--;
  char *o = out;
  if (neg) *o++ = '-';
  if (e10 >= -5 && e10 < 10) {
    if (e10 < 0) {
      *o++ = '0'; *o++ = '.';
      for (int i = -1; i > e10; i--) *o++ = '0';
      memcpy(o, dig, (size_t)ndig); o += ndig;
    } else {
      for (int i = 0; i <= e10; i++) *o++ = i < ndig ? dig[i] : '0';
      if (ndig > e10 + 1) {
        *o++ = '.';
        memcpy(o, dig + e10 + 1, (size_t)(ndig - e10 - 1));
        o += ndig - e10 - 1;
      }
    }
  } else {
    *o++ = dig[0];
    if (ndig > 1) { *o++ = '.'; memcpy(o, dig + 1, (size_t)ndig - 1); o += ndig - 1; }
    o += sprintf(o, "e%d", e10);
  }
  *o = 0;
  return (int)(o - out);
}

/* Powers of ten 1e-60..1e60 as doubles (correctly rounded by the C
 * library once, at start-up). */
static double p10tab[121];
__attribute__((constructor)) static void p10_init(void) {
  for (int i = 0; i <= 120; i++) {
    char t[16];
    snprintf(t, sizeof t, "1e%d", i - 60);
    p10tab[i] = strtod(t, NULL);
  }
}
static inline double p10(int e) { return p10tab[e + 60]; }

/* 9 significant digits always read back to the same float; 6, 7 and 8 are
 * tried first (by rounding the 9-digit integer) so common values print
 * short. The scale by 10^k is one double operation on an exact float: off
 * by at most one unit in the 9th digit, far inside the float's
 * half-spacing, and the read-back check decides each shorter form. */
int pvd_fmt_float(float f, char *out) {
  if (!isfinite(f)) { memcpy(out, "null", 5); return 4; }
  if (f == 0) {
    if (signbit(f)) { memcpy(out, "-0.0", 5); return 4; }
    memcpy(out, "0.0", 4); return 3;
  }
  bool neg = f < 0;
  float af = neg ? -f : f;
  double a = (double)af;
  /* Decimal exponent from the binary one (log10(2) ~ 1233/4096), then
   * corrected against the table: no libm call per number. */
  uint32_t fb;
  memcpy(&fb, &af, 4);
  int e2 = (int)(fb >> 23) - 127;
  if ((fb >> 23) == 0) e2 = -127 - (__builtin_clz(fb) - 9); /* subnormal */
  int e10 = (e2 * 1233) >> 12;
  if (e10 < -50) e10 = -50;
  while (a >= p10(e10 + 1)) e10++;
  while (a < p10(e10)) e10--;
  int k = 8 - e10;
  double sc = k >= 0 ? a * p10(k) : a / p10(-k);
  uint64_t m9 = (uint64_t)(sc + 0.5);
  if (m9 >= 1000000000ull) { m9 = (m9 + 5) / 10; e10++; }
  /* Most floats need 8 or 9 digits: try 8, and only then go shorter. */
  uint64_t best = m9;
  int best_nd = 9;
  for (int nd = 8; nd >= 6; nd--) {
    uint64_t div = pow10_u[9 - nd];
    uint64_t m = (m9 + div / 2) / div;
    if (m >= pow10_u[nd]) break;
    int kk = nd - 1 - e10;
    double back = kk >= 0 ? (double)m / p10(kk) : (double)m * p10(-kk);
    if ((float)back != af) break;
    best = m;
    best_nd = nd;
  }
  if (best_nd < 9) return emit(out, neg, best, best_nd, e10);
  return emit(out, neg, m9, 9, e10);
}

int pvd_fmt_double(double d, char *out) {
  if (!isfinite(d)) { memcpy(out, "null", 5); return 4; }
  return sprintf(out, "%.17g", d);
}

void pvd_json_write_data(pvd_buf *b, const pv_tensor *t) {
  int64_t n = pv_tensor_numel(t);
  /* Reserve the worst case once so the loop below never reallocates. */
  size_t per = 26;
  if (n > 0 && (uint64_t)n > (SIZE_MAX - b->len - 16) / per) { b->oom = true; return; }
  buf_grow(b, b->len + (size_t)(n > 0 ? n : 0) * per + 16);
  if (b->oom) return;
  char *o = b->p + b->len;
  *o++ = '[';
  for (int64_t i = 0; i < n; i++) {
    if (i) *o++ = ',';
    switch (t->dtype) {
    case PV_F32: o += pvd_fmt_float(((const float *)t->data)[i], o); break;
    case PV_F64: o += pvd_fmt_double(((const double *)t->data)[i], o); break;
    case PV_U8: o += sprintf(o, "%u", ((const uint8_t *)t->data)[i]); break;
    case PV_I8: o += sprintf(o, "%d", ((const int8_t *)t->data)[i]); break;
    case PV_U16: o += sprintf(o, "%u", ((const uint16_t *)t->data)[i]); break;
    case PV_I16: o += sprintf(o, "%d", ((const int16_t *)t->data)[i]); break;
    case PV_U32: o += sprintf(o, "%u", ((const uint32_t *)t->data)[i]); break;
    case PV_I32: o += sprintf(o, "%d", ((const int32_t *)t->data)[i]); break;
    case PV_U64: o += sprintf(o, "%llu", (unsigned long long)((const uint64_t *)t->data)[i]); break;
    case PV_I64: o += sprintf(o, "%lld", (long long)((const int64_t *)t->data)[i]); break;
    case PV_BOOL: o += sprintf(o, "%s", ((const uint8_t *)t->data)[i] ? "true" : "false"); break;
    default: o += sprintf(o, "null"); break;
    }
  }
  *o++ = ']';
  *o = 0;
  b->len = (size_t)(o - b->p);
}
