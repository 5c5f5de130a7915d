/* .npy tensors: read format 1.0/2.0/3.0, write 1.0.
 *
 * The header is a Python dict literal; it is parsed strictly (exactly the
 * keys descr, fortran_order and shape, each once) rather than evaluated,
 * and every size is checked before anything is allocated. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pivot.h"

/* Data is copied as is; only little-endian files are accepted. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               ".npy I/O assumes a little-endian host");

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* numpy itself refuses headers over 10000 bytes by default; a valid header
 * of at most PV_MAX_DIMS dims is far smaller. */
#define NPY_MAX_HEADER 65536

static const struct {
  const char *code; /* descr without the byte-order character */
  pv_dtype t;
} npy_types[] = {
    {"f4", PV_F32}, {"f8", PV_F64}, {"f2", PV_F16}, {"i1", PV_I8},
    {"i2", PV_I16}, {"i4", PV_I32}, {"i8", PV_I64}, {"u1", PV_U8},
    {"u2", PV_U16}, {"u4", PV_U32}, {"u8", PV_U64}, {"b1", PV_BOOL},
};

/* ------------------------------------------------------------ header */

typedef struct hdr_parser {
  const char *p, *end;
} hdr_parser;

static void skip_ws(hdr_parser *h) {
  while (h->p < h->end && (*h->p == ' ' || *h->p == '\t')) h->p++;
}

static bool eat(hdr_parser *h, char c) {
  skip_ws(h);
  if (h->p < h->end && *h->p == c) {
    h->p++;
    return true;
  }
  return false;
}

/* A quoted Python string without escapes, into buf. */
static int parse_str(hdr_parser *h, char *buf, size_t len) {
  skip_ws(h);
  if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return -1;
  char q = *h->p++;
  size_t n = 0;
  while (h->p < h->end && *h->p != q) {
    if (*h->p == '\\' || n + 1 >= len) return -1;
    buf[n++] = *h->p++;
  }
  if (h->p >= h->end) return -1;
  h->p++;
  buf[n] = 0;
  return 0;
}

static bool eat_word(hdr_parser *h, const char *w) {
  skip_ws(h);
  size_t n = strlen(w);
  if ((size_t)(h->end - h->p) < n || memcmp(h->p, w, n)) return false;
  h->p += n;
  return true;
}

/* "(2, 3)", "(3,)" or "()"; a one-element tuple needs its comma, as in
 * Python. Python 2 files may write longs as "3L". */
static int parse_shape(hdr_parser *h, pv_tensor *t) {
  if (!eat(h, '(')) return pv_error(PV_EFORMAT, "shape is not a tuple");
  t->ndim = 0;
  bool comma = false;
  while (!eat(h, ')')) {
    if (t->ndim && !comma)
      return pv_error(PV_EFORMAT, "shape: expected ',' between dimensions");
    skip_ws(h);
    if (h->p >= h->end || *h->p < '0' || *h->p > '9')
      return pv_error(PV_EFORMAT, "shape: expected a non-negative integer");
    int64_t v = 0;
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
      if (v > (INT64_MAX - (*h->p - '0')) / 10)
        return pv_error(PV_ERANGE, "shape: dimension too large");
      v = v * 10 + (*h->p++ - '0');
    }
    if (h->p < h->end && *h->p == 'L') h->p++;
    if (t->ndim == PV_MAX_DIMS)
      return pv_error(PV_EUNSUPPORTED, "shape has more than %d dimensions",
                      PV_MAX_DIMS);
    t->dims[t->ndim++] = v;
    comma = eat(h, ',');
  }
  if (t->ndim == 1 && !comma)
    return pv_error(PV_EFORMAT, "shape: a one-element tuple needs a trailing "
                    "comma, as in (3,)");
  return 0;
}

static int parse_descr(const char *d, pv_dtype *out) {
  if (d[0] == '>')
    return pv_error(PV_EUNSUPPORTED, "big-endian data ('%s') is not "
                    "supported; convert with arr.astype('<%s')", d, d + 1);
  for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
    if (strcmp(d + (d[0] ? 1 : 0), npy_types[i].code)) continue;
    bool one_byte = npy_types[i].code[1] == '1';
    /* numpy writes '|' for single bytes and '<' for the rest; '=' means
     * native order, which we only are when little-endian. */
    if (d[0] == '<' || d[0] == '=' || (d[0] == '|' && one_byte)) {
      *out = npy_types[i].t;
      return 0;
    }
  }
  return pv_error(PV_EUNSUPPORTED, "data type '%s' is not supported "
                  "(supported: <f4 <f8 <f2 <i1 <i2 <i4 <i8 <u1 <u2 <u4 <u8 "
                  "|b1)", d);
}

/* Parse the dict literal hdr[0..len). */
static int parse_header(const char *hdr, size_t len, pv_tensor *t) {
  hdr_parser h = {hdr, hdr + len};
  /* Padding is spaces then one '\n'; numpy >= 1.x always ends with it. */
  if (!len || hdr[len - 1] != '\n')
    return pv_error(PV_EFORMAT, "header does not end with a newline");
  h.end--;
  while (h.end > h.p && h.end[-1] == ' ') h.end--;
  if (!eat(&h, '{')) return pv_error(PV_EFORMAT, "header is not a dict");
  bool have_descr = false, have_fortran = false, have_shape = false;
  char key[32], descr[16];
  int rc;
  while (!eat(&h, '}')) {
    if (parse_str(&h, key, sizeof key))
      return pv_error(PV_EFORMAT, "header: expected a quoted key");
    if (!eat(&h, ':'))
      return pv_error(PV_EFORMAT, "header: expected ':' after '%s'", key);
    if (!strcmp(key, "descr") && !have_descr) {
      if (parse_str(&h, descr, sizeof descr))
        return pv_error(PV_EFORMAT, "header: descr is not a simple type "
                        "string (structured arrays are not supported)");
      if ((rc = parse_descr(descr, &t->dtype))) return rc;
      have_descr = true;
    } else if (!strcmp(key, "fortran_order") && !have_fortran) {
      if (eat_word(&h, "True"))
        return pv_error(PV_EUNSUPPORTED, "Fortran-order arrays are not "
                        "supported; save with np.ascontiguousarray(a)");
      if (!eat_word(&h, "False"))
        return pv_error(PV_EFORMAT, "header: fortran_order is not True or "
                        "False");
      have_fortran = true;
    } else if (!strcmp(key, "shape") && !have_shape) {
      if ((rc = parse_shape(&h, t))) return rc;
      have_shape = true;
    } else {
      return pv_error(PV_EFORMAT, "header: unexpected or repeated key '%s'",
                      key);
    }
    if (!eat(&h, ',')) {
      if (!eat(&h, '}')) return pv_error(PV_EFORMAT, "header: expected ',' "
                                         "or '}'");
      break;
    }
  }
  skip_ws(&h);
  if (h.p != h.end)
    return pv_error(PV_EFORMAT, "header: unexpected text after the dict");
  if (!have_descr || !have_fortran || !have_shape)
    return pv_error(PV_EFORMAT, "header lacks '%s'",
                    !have_descr ? "descr" : !have_fortran ? "fortran_order"
                                                          : "shape");
  return 0;
}

/* Parse the preamble in buf[0..len): sets *hdr_total (bytes before the
 * data) once the length fields are readable; returns 1 if more bytes are
 * needed to know it. */
static int preamble(const unsigned char *buf, size_t len, size_t *hdr_total) {
  if (len < NPY_MAGIC_LEN + 2) return 1;
  if (memcmp(buf, NPY_MAGIC, NPY_MAGIC_LEN))
    return pv_error(PV_EFORMAT, "not a .npy file (bad magic)");
  int major = buf[6], minor = buf[7];
  if (major < 1 || major > 3 || minor != 0)
    return pv_error(PV_EUNSUPPORTED, ".npy format version %d.%d is not "
                    "supported (1.0, 2.0 and 3.0 are)", major, minor);
  size_t lenbytes = major == 1 ? 2 : 4;
  if (len < 8 + lenbytes) return 1;
  size_t hlen = buf[8] | (size_t)buf[9] << 8;
  if (lenbytes == 4) hlen |= (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
  if (hlen > NPY_MAX_HEADER)
    return pv_error(PV_EFORMAT, "header of %zu bytes is too long", hlen);
  *hdr_total = 8 + lenbytes + hlen;
  return 0;
}

/* Parse a complete header buf[0..total); fills dtype/ndim/dims of t and
 * *nbytes, the data size. */
static int read_header(const unsigned char *buf, size_t total, pv_tensor *t,
                       size_t *nbytes) {
  size_t off = buf[6] == 1 ? 10 : 12;
  memset(t, 0, sizeof *t);
  /* Format 3.0 allows UTF-8 but a valid header is ASCII anyway. */
  for (size_t i = off; i < total; i++)
    if (buf[i] == 0 || buf[i] >= 0x80)
      return pv_error(PV_EFORMAT, "header is not ASCII text");
  int rc = parse_header((const char *)buf + off, total - off, t);
  if (rc) return rc;
  *nbytes = pv_tensor_nbytes(t);
  if (*nbytes == SIZE_MAX)
    return pv_error(PV_ERANGE, "array size overflows");
  return 0;
}

int pv_npy_read_mem(const void *buf, size_t len, pv_tensor *t) {
  const unsigned char *b = buf;
  size_t total = 0, nbytes;
  if (!b && len) return pv_error(PV_EINVAL, "NULL buffer");
  int rc = preamble(b, len, &total);
  if (rc > 0 || (rc == 0 && total > len))
    return pv_error(PV_EFORMAT, "truncated .npy header (%zu bytes)", len);
  if (rc) return rc;
  pv_tensor tmp;
  if ((rc = read_header(b, total, &tmp, &nbytes))) return rc;
  size_t have = len - total;
  if (have < nbytes)
    return pv_error(PV_EFORMAT, "truncated data: expected %zu bytes, found "
                    "%zu", nbytes, have);
  if (have > nbytes)
    return pv_error(PV_EFORMAT, "%zu unexpected bytes after the %zu data "
                    "bytes", have - nbytes, nbytes);
  if ((rc = pv_tensor_alloc(&tmp))) return rc;
  if (nbytes) memcpy(tmp.data, b + total, nbytes);
  *t = tmp;
  return 0;
}

static int read_full(int fd, void *buf, size_t n, size_t *got) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = read(fd, (char *)buf + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return pv_error(PV_EIO, "read failed: %s", strerror(errno));
    if (r == 0) break;
    done += (size_t)r;
  }
  *got = done;
  return 0;
}

/* Reads straight into the tensor's buffer so a large file is held once. */
static int npy_read_fd(int fd, pv_tensor *t) {
  unsigned char pre[12];
  size_t got, total = 0, nbytes;
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode))
    return pv_error(PV_EIO, "not a regular file");
  int rc = read_full(fd, pre, sizeof pre, &got);
  if (rc) return rc;
  rc = preamble(pre, got, &total);
  if (rc > 0 || (rc == 0 && total > (uint64_t)st.st_size))
    return pv_error(PV_EFORMAT, "truncated .npy header (%lld bytes)",
                    (long long)st.st_size);
  if (rc) return rc;
  unsigned char *hdr = malloc(total);
  if (!hdr) return pv_error(PV_ENOMEM, "out of memory");
  memcpy(hdr, pre, got < total ? got : total);
  size_t more = 0;
  if (total > got) rc = read_full(fd, hdr + got, total - got, &more);
  if (!rc && got + more < total)
    rc = pv_error(PV_EFORMAT, "truncated .npy header");
  pv_tensor tmp;
  if (!rc) rc = read_header(hdr, total, &tmp, &nbytes);
  free(hdr);
  if (rc) return rc;
  uint64_t have = (uint64_t)st.st_size - total;
  if (have < nbytes)
    return pv_error(PV_EFORMAT, "truncated data: expected %zu bytes, found "
                    "%llu", nbytes, (unsigned long long)have);
  if (have > nbytes)
    return pv_error(PV_EFORMAT, "%llu unexpected bytes after the %zu data "
                    "bytes", (unsigned long long)(have - nbytes), nbytes);
  if ((rc = pv_tensor_alloc(&tmp))) return rc;
  /* The header read may have consumed the first data bytes. */
  size_t pre_data = got > total ? got - total : 0;
  if (pre_data) memcpy(tmp.data, pre + total, pre_data);
  if (nbytes > pre_data) {
    rc = read_full(fd, (char *)tmp.data + pre_data, nbytes - pre_data, &more);
    if (!rc && more < nbytes - pre_data)
      rc = pv_error(PV_EIO, "file shrank while reading");
  }
  if (rc) {
    pv_free(tmp.data);
    return rc;
  }
  *t = tmp;
  return 0;
}

int pv_npy_read(const char *path, pv_tensor *t) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return pv_error(PV_EIO, "%s: cannot open: %s", path, strerror(errno));
  int rc = npy_read_fd(fd, t);
  close(fd);
  if (rc) pv_error_prefix(rc, "%s", path);
  return rc;
}

/* ------------------------------------------------------------ write */

static const char *descr_of(pv_dtype t) {
  switch (t) {
  case PV_F32: return "<f4";
  case PV_F64: return "<f8";
  case PV_F16: return "<f2";
  case PV_I8: return "|i1";
  case PV_I16: return "<i2";
  case PV_I32: return "<i4";
  case PV_I64: return "<i8";
  case PV_U8: return "|u1";
  case PV_U16: return "<u2";
  case PV_U32: return "<u4";
  case PV_U64: return "<u8";
  case PV_BOOL: return "|b1";
  default: return NULL;
  }
}

/* Format 1.0 header, padded with spaces so the data starts at a multiple
 * of 64 bytes, as numpy writes it. Returns its length or negative. */
static int format_header(const pv_tensor *t, char *buf, size_t cap) {
  const char *descr = descr_of(t->dtype);
  if (!descr)
    return pv_error(PV_EUNSUPPORTED, "cannot write dtype %s to .npy",
                    pv_dtype_name(t->dtype));
  if (t->ndim < 0 || t->ndim > PV_MAX_DIMS)
    return pv_error(PV_EINVAL, "bad rank %d", t->ndim);
  char shape[PV_MAX_DIMS * 24 + 4];
  size_t o = 0;
  shape[o++] = '(';
  for (int i = 0; i < t->ndim; i++) {
    if (t->dims[i] < 0)
      return pv_error(PV_EINVAL, "negative dimension %lld",
                      (long long)t->dims[i]);
    o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld",
                          i ? ", " : "", (long long)t->dims[i]);
  }
  if (t->ndim == 1) shape[o++] = ',';
  shape[o++] = ')';
  shape[o] = 0;
  int n = snprintf(buf + 10, cap - 10,
                   "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                   descr, shape);
  size_t total = 10 + (size_t)n + 1;
  size_t padded = (total + 63) & ~(size_t)63;
  if (padded > cap) return pv_error(PV_EINTERNAL, "header too long");
  memset(buf + 10 + n, ' ', padded - total);
  buf[padded - 1] = '\n';
  memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
  buf[6] = 1;
  buf[7] = 0;
  size_t hlen = padded - 10;
  buf[8] = (char)(hlen & 0xff);
  buf[9] = (char)(hlen >> 8);
  return (int)padded;
}

static int write_full(int fd, const void *buf, size_t n) {
  for (size_t done = 0; done < n;) {
    ssize_t w = write(fd, (const char *)buf + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return pv_error(PV_EIO, "write failed: %s", strerror(errno));
    done += (size_t)w;
  }
  return 0;
}

int pv_npy_write(const char *path, const pv_tensor *t) {
  char hdr[512];
  int hl = format_header(t, hdr, sizeof hdr);
  if (hl < 0) return pv_error_prefix(hl, "%s", path);
  size_t nbytes = pv_tensor_nbytes(t);
  if (nbytes == SIZE_MAX)
    return pv_error(PV_ERANGE, "%s: tensor too large", path);
  if (nbytes && !t->data) return pv_error(PV_EINVAL, "%s: no data", path);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return pv_error(PV_EIO, "%s: cannot create: %s", path, strerror(errno));
  int rc = write_full(fd, hdr, (size_t)hl);
  if (!rc && nbytes) rc = write_full(fd, t->data, nbytes);
  if (close(fd) && !rc)
    rc = pv_error(PV_EIO, "close failed: %s", strerror(errno));
  if (rc) {
    unlink(path);
    return pv_error_prefix(rc, "%s", path);
  }
  return 0;
}
