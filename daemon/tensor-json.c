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

void pvd_buf_reserve(pvd_buf *b, size_t n) {
  if (n > SIZE_MAX - b->len - 1) { b->oom = true; return; }
  buf_grow(b, b->len + n + 1);
}

void pvd_buf_i64(pvd_buf *b, int64_t v) {
  char tmp[24], *e = tmp + sizeof tmp, *o = e;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do { *--o = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) *--o = '-';
  pvd_buf_put(b, o, (size_t)(e - o));
}

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
    /* Runs of characters that need no escape go in one copy. */
    size_t run = 0;
    while (s[run] && s[run] != '"' && s[run] != '\\' && (unsigned char)s[run] >= 0x20) run++;
    if (run) {
      pvd_buf_put(b, s, run);
      s += run - 1;
      continue;
    }
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

static const uint32_t pow10_exact_u32[9] = {1, 10, 100, 1000, 10000, 100000,
                                             1000000, 10000000, 100000000};

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

/* Value of 8 digit chars. */
static inline uint32_t value8_all(uint64_t v) {
  v -= 0x3030303030303030ull;
  v = (v * 10) + (v >> 8);
  v = (((v & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
       (((v >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >> 32;
  return (uint32_t)v;
}

/* The common shape of numbers that clients print, -?(0|[1-9]d{0,6})
 * (.d{1,8})? followed by neither a digit nor an exponent, eight chars at
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
  uint64_t mant = ni == 1 ? (uint64_t)(*p - '0') : value8(v, ni);
  p += ni;
  int exp10 = 0;
  bool is_int = true;
  if (*p == '.') {
    p++;
    if (end - p < 8) return false;
    v = load8(p);
    int nf = digits8(v);
    if (nf == 0) return false;
    if (nf == 8) {
      /* Eight fraction digits (0.0d{7}, as %.7g prints below 0.1):
       * taken when a non-digit follows them. */
      if (end - p < 9 || is_digit(p[8])) return false;
      mant = mant * pow10_exact_u32[8] + value8_all(v);
    } else {
      mant = mant * pow10_exact_u32[nf] + value8(v, nf);
    }
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
  case PV_F16: ((uint16_t *)dst)[i] = pv_f32_to_f16(num_to_float(n)); return 0;
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
  if (t == PV_F32 && end - p > 1 && (p[1] == '-' || is_digit(p[1]))) {
    /* What clients send most, a flat FP32 array of numbers (separated by
     * "," or ", "), in a tight loop. Anything else stops it where it stands,
     * at a value or after one, and the general walk below goes on from
     * there with the same result. */
    float *d = dst;
    const char *q = p + 1;
    bool after = false;
    num v;
    while (i < n && scan_num(q, end, &v) == 0) {
      d[i++] = num_to_float(&v);
      q = v.end;
      while (q < end && *q == ' ') q++;
      if (q < end && *q == ']') { *pp = q + 1; *got = i; return 0; }
      if (q >= end || *q != ',') { after = true; break; }
      q++;
      while (q < end && *q == ' ') q++; /* ", " as Python's json writes */
    }
    p = q;
    depth = 1;
    if (after) goto after_value;
  }
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

static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Eight decimal digits of v < 10^8 as ASCII, first digit in the lowest
 * byte: split into halves, quarters and pairs by multiplications (Paul
 * Khuong's method) instead of eight divisions. */
static inline uint64_t digits8_ascii(uint32_t v) {
  uint64_t merged = (uint64_t)(v / 10000) | ((uint64_t)(v % 10000) << 32);
  uint64_t top = ((merged * 10486ull) >> 20) & ((0x7Full << 32) | 0x7Full);
  uint64_t bot = merged - 100ull * top;
  uint64_t hundreds = (bot << 16) + top;
  uint64_t tens = (hundreds * 103ull) >> 10;
  tens &= (0xFull << 48) | (0xFull << 32) | (0xFull << 16) | 0xFull;
  tens += (hundreds - 10ull * tens) << 8;
  return tens + 0x3030303030303030ull;
}

/* Write the 9-digit significand m9 (10^8 <= m9 < 10^9, trailing zeros
 * dropped) with decimal exponent e10 of its first digit, choosing fixed or
 * exponent notation like %g. Writes are whole 16-byte copies, past the
 * end of the text but inside the caller's 32 bytes, so no copy is a call
 * with a variable length. */
static int emit(char *out, bool neg, uint32_t m9, int e10) {
  char dig[32];
  memcpy(dig, "00000000000000000000000000000000", 32); /* pads integers */
  uint32_t d0 = m9 / 100000000;
  uint64_t w = digits8_ascii(m9 - d0 * 100000000);
  dig[0] = (char)('0' + d0);
  memcpy(dig + 1, &w, 8);
  /* Trailing '0's are the highest bytes of w whose digit value is 0. */
  uint64_t v = w - 0x3030303030303030ull;
  int ndig = v ? 9 - (__builtin_clzll(v) >> 3) : 1;
  char *o = out;
  *o = '-';
  o += neg;
  if (e10 >= -5 && e10 < 10) {
    if (e10 < 0) {
      memcpy(o, "0.000000", 8);
      o += 1 - e10;
      memcpy(o, dig, 16);
      o += ndig;
    } else if (ndig <= e10 + 1) {
      memcpy(o, dig, 16); /* ndig digits then zeros: the integer part */
      o += e10 + 1;
    } else {
      memcpy(o, dig, 16);
      o[e10 + 1] = '.';
      memcpy(o + e10 + 2, dig + e10 + 1, 16);
      o += ndig + 1;
    }
  } else {
    *o++ = dig[0];
    if (ndig > 1) {
      *o++ = '.';
      memcpy(o, dig + 1, 16);
      o += ndig - 1;
    }
    *o++ = 'e';
    unsigned e = (unsigned)(e10 < 0 ? -e10 : e10);
    *o = '-';
    o += e10 < 0;
    if (e >= 10) {
      memcpy(o, digit_pairs + 2 * e, 2);
      o += 2;
    } else {
      *o++ = (char)('0' + e);
    }
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

/* 2^e as a double, for -1022 <= e <= 1023. */
static inline double pow2(int e) {
  uint64_t bits = (uint64_t)(e + 1023) << 52;
  double d;
  memcpy(&d, &bits, 8);
  return d;
}

/* 9 significant digits always read back to the same float. Shorter forms
 * (6, 7, 8 digits, rounded from the 9-digit integer) are kept when they
 * lie inside the float's rounding interval, all measured in units of the
 * 9th digit: v = the float scaled so, h = half the gap to the next float
 * (below a power of two, to the previous one: half as wide). v carries
 * an error of a few 1e-7 units (one or two roundings of a ~1e9 double)
 * against h >= ~3 units, so a candidate within 1e-5 of the edge counts as
 * outside: the result may then be one digit longer than the shortest, but
 * always reads back to f. The 9-digit form is off by at most one unit
 * from the true value, far inside h. */
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
  int ef = (int)(fb >> 23);
  int e2 = ef - 127;
  if (ef == 0) e2 = -127 - (__builtin_clz(fb) - 9); /* subnormal */
  int e10 = (e2 * 1233) >> 12;
  if (e10 < -50) e10 = -50;
  while (a >= p10(e10 + 1)) e10++;
  while (a < p10(e10)) e10--;
  int k = 8 - e10;
  double sc = k >= 0 ? a * p10(k) : a / p10(-k);
  uint32_t m9 = (uint32_t)(int64_t)(sc + 0.5);
  if (m9 >= 1000000000u) return emit(out, neg, (m9 + 5) / 10, e10 + 1);
  /* Half the float's spacing, scaled like sc: 2^(e2-24), or 2^-150 for
   * subnormals (their spacing is 2^-149 throughout). */
  double ulp2 = pow2(ef == 0 ? -150 : e2 - 24);
  double hi = k >= 0 ? ulp2 * p10(k) : ulp2 / p10(-k);
  double lo = (fb & 0x7fffff) == 0 && ef > 1 ? hi / 2 : hi;
  hi -= 1e-5;
  lo -= 1e-5;
#define FITS(c) ((c) >= sc ? (c) - sc < hi : sc - (c) < lo)
  /* m9 rounded to 6, 7 and 8 digits, kept 9 wide (trailing zeros). */
  uint32_t c6 = (m9 + 500) / 1000 * 1000, c7 = (m9 + 50) / 100 * 100, c8 = (m9 + 5) / 10 * 10;
  if (c6 < 1000000000u && FITS((double)c6)) return emit(out, neg, c6, e10);
  if (c7 < 1000000000u && FITS((double)c7)) return emit(out, neg, c7, e10);
  if (c8 < 1000000000u && FITS((double)c8)) return emit(out, neg, c8, e10);
#undef FITS
  return emit(out, neg, m9, e10);
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
  if (t->dtype == PV_F32) {
    /* The common case without a switch per element. */
    const float *x = t->data;
    for (int64_t i = 0; i < n; i++) {
      *o = ',';
      o += i > 0;
      o += pvd_fmt_float(x[i], o);
    }
    n = 0;
  }
  for (int64_t i = 0; i < n; i++) {
    if (i) *o++ = ',';
    switch (t->dtype) {
    case PV_F32: o += pvd_fmt_float(((const float *)t->data)[i], o); break;
    case PV_F64: o += pvd_fmt_double(((const double *)t->data)[i], o); break;
    case PV_F16: o += pvd_fmt_float(pv_f16_to_f32(((const uint16_t *)t->data)[i]), o); break;
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
