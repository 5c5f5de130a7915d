/* Tensor helpers: sizes, names, aligned allocation. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pivot.h"

static const struct {
  pv_dtype t;
  size_t size;
  const char *name;
} dtypes[] = {
    {PV_F32, 4, "FP32"},  {PV_U8, 1, "UINT8"},   {PV_I8, 1, "INT8"},
    {PV_U16, 2, "UINT16"}, {PV_I16, 2, "INT16"}, {PV_I32, 4, "INT32"},
    {PV_I64, 8, "INT64"}, {PV_STRING, 0, "BYTES"}, {PV_BOOL, 1, "BOOL"},
    {PV_F16, 2, "FP16"},  {PV_F64, 8, "FP64"},   {PV_U32, 4, "UINT32"},
    {PV_U64, 8, "UINT64"},
};

size_t pv_dtype_size(pv_dtype t) {
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (dtypes[i].t == t) return dtypes[i].size;
  return 0;
}

float pv_f16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
  if (e == 0x1f) u = s | 0x7f800000u | (m << 13); /* inf, NaN */
  else if (e) u = s | ((e + 112) << 23) | (m << 13);
  else if (!m) u = s;                               /* zero */
  else {                                            /* subnormal: normalise */
    e = 113;
    while (!(m & 0x400)) {
      m <<= 1;
      e--;
    }
    u = s | (e << 23) | ((m & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t pv_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t s = (uint16_t)((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return s | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0);
  if (a >= 0x477ff000u) return s | 0x7c00; /* rounds past 65504: infinity */
  if (a < 0x38800000u) {                   /* half subnormal or zero */
    if (a < 0x33000000u) return s;         /* below half the smallest */
    uint32_t m = (a & 0x7fffff) | 0x800000, sh = 126 - (a >> 23);
    uint32_t q = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return s | (uint16_t)q;
  }
  uint32_t q = ((a >> 13) - (112u << 10)), rem = a & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
  return s | (uint16_t)q;
}

const char *pv_dtype_name(pv_dtype t) {
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (dtypes[i].t == t) return dtypes[i].name;
  return "?";
}

pv_dtype pv_dtype_from_name(const char *s) {
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (!strcasecmp(dtypes[i].name, s)) return dtypes[i].t;
  return PV_UNDEFINED;
}

int64_t pv_tensor_numel(const pv_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) {
    if (t->dims[i] < 0) return -1;
    if (t->dims[i] && n > INT64_MAX / t->dims[i]) return -1;
    n *= t->dims[i];
  }
  return n;
}

size_t pv_tensor_nbytes(const pv_tensor *t) {
  int64_t n = pv_tensor_numel(t);
  size_t es = pv_dtype_size(t->dtype);
  if (n < 0 || (es && (uint64_t)n > SIZE_MAX / es)) return SIZE_MAX;
  return (size_t)n * es;
}

void *pv_aligned_alloc(size_t bytes) {
  size_t rounded = (bytes + 63) & ~(size_t)63;
  if (rounded < bytes) return NULL;
  if (rounded == 0) rounded = 64;
  void *p = aligned_alloc(64, rounded);
  if (p) memset(p, 0, rounded);
  return p;
}

void pv_free(void *p) {
  free(p);
}

int pv_tensor_alloc(pv_tensor *t) {
  size_t n = pv_tensor_nbytes(t);
  if (n == SIZE_MAX) return pv_error(PV_ERANGE, "tensor too large");
  t->data = pv_aligned_alloc(n);
  if (!t->data) return pv_error(PV_ENOMEM, "cannot allocate %zu bytes", n);
  return 0;
}

const char *pv_dims_str(const int64_t *dims, int ndim, char *buf, size_t len) {
  size_t o = 0;
  if (len == 0) return buf;
  buf[0] = 0;
  o += snprintf(buf + o, len - o, "[");
  for (int i = 0; i < ndim && o < len; i++)
    o += snprintf(buf + o, len - o, "%s%lld", i ? "," : "",
                  (long long)dims[i]);
  if (o < len) snprintf(buf + o, len - o, "]");
  return buf;
}
