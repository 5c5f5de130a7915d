/* .pvm: pivotd's single-file model format (docs/PVM.md). The writer lays
 * out header, section table, meta, graph, tensor table and a 64-byte
 * aligned data section; the reader maps the file and uses the weights in
 * place, after checking every size, offset, count and checksum. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32.h"
#include "internal.h"
#include "pivot.h"
#include "pv-pivot.h"

#define PVM_MAGIC "PIVOTPVM"
#define PVM_VERSION 1u
#define PVM_BOM 0x01020304u
#define PVM_HDR 32u   /* fixed part of the header */
#define PVM_SECENT 32u /* one section table entry */
#define PVM_ALIGN 64u

/* The fuzz target's build ignores checksums so that mutations reach the
 * parsers behind them; every other build verifies them. */
#ifdef PV_PVM_FUZZING
#define SKIP_CRC 1
#else
#define SKIP_CRC 0
#endif

enum { SEC_META, SEC_GRAPH, SEC_TENSORS, SEC_DATA, SEC_COUNT };
static const char *const sec_names[SEC_COUNT] = {"meta", "graph", "tensors",
                                                 "data"};

enum { META_STRING = 1, META_INT, META_FLOAT, META_INTS, META_FLOATS,
       META_STRINGS };
enum { TENSOR_DENSE = 1, TENSOR_PIVOT = 2 };

/* ============================================================ writer */

typedef struct wbuf {
  uint8_t *p;
  size_t len, cap;
  int err;
} wbuf;

static void w_bytes(wbuf *b, const void *src, size_t n) {
  if (b->err || n == 0) return;
  if (b->len + n > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 4096;
    while (nc < b->len + n) nc *= 2;
    uint8_t *q = realloc(b->p, nc);
    if (!q) {
      b->err = PV_ENOMEM;
      return;
    }
    b->p = q;
    b->cap = nc;
  }
  memcpy(b->p + b->len, src, n);
  b->len += n;
}
static void w_u8(wbuf *b, uint8_t v) { w_bytes(b, &v, 1); }
static void w_u32(wbuf *b, uint32_t v) { w_bytes(b, &v, 4); }
static void w_i32(wbuf *b, int32_t v) { w_bytes(b, &v, 4); }
static void w_u64(wbuf *b, uint64_t v) { w_bytes(b, &v, 8); }
static void w_i64(wbuf *b, int64_t v) { w_bytes(b, &v, 8); }
static void w_f32(wbuf *b, float v) { w_bytes(b, &v, 4); }
static void w_str(wbuf *b, const char *s) {
  size_t n = s ? strlen(s) : 0;
  w_u32(b, (uint32_t)n);
  w_bytes(b, s, n);
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* One chunk of the data section. */
typedef struct chunk {
  const void *src;
  size_t len;
  uint64_t off; /* within the data section */
} chunk;

static void w_attr(wbuf *b, const pv_attr *a) {
  w_str(b, a->name);
  w_u8(b, (uint8_t)a->type);
  switch (a->type) {
  case PV_ATTR_FLOAT: w_f32(b, a->f); break;
  case PV_ATTR_INT: w_i64(b, a->i); break;
  case PV_ATTR_STRING: w_str(b, a->s); break;
  case PV_ATTR_FLOATS:
    w_u32(b, (uint32_t)a->n);
    for (int i = 0; i < a->n; i++) w_f32(b, a->floats[i]);
    break;
  case PV_ATTR_INTS:
    w_u32(b, (uint32_t)a->n);
    for (int i = 0; i < a->n; i++) w_i64(b, a->ints[i]);
    break;
  case PV_ATTR_STRINGS:
    w_u32(b, (uint32_t)a->n);
    for (int i = 0; i < a->n; i++) w_str(b, a->strings[i]);
    break;
  case PV_ATTR_TENSOR: {
    size_t nb = a->t.data ? pv_tensor_nbytes(&a->t) : 0;
    w_u32(b, (uint32_t)a->t.dtype);
    w_i32(b, a->t.ndim);
    for (int i = 0; i < a->t.ndim; i++) w_i64(b, a->t.dims[i]);
    w_u64(b, nb);
    w_bytes(b, a->t.data, nb);
    break;
  }
  }
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t k = write(fd, c, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    c += k;
    n -= (size_t)k;
  }
  return 0;
}

static const uint8_t zeros[PVM_ALIGN];

int pv_pvm_save(const pv_graph *g, const char *path) {
  wbuf sec[SEC_COUNT] = {{0}};
  chunk *chunks = NULL;
  char *produced = NULL;
  int nchunks = 0, rc = 0, fd = -1;
  char *tmp = NULL;
  if (!g || !path) return pv_error(PV_EINVAL, "pvm save: no graph or path");
  chunks = calloc((size_t)g->n_values + 1, sizeof *chunks);
  if (!chunks) return pv_error(PV_ENOMEM, "out of memory");

  /* meta */
  wbuf *b = &sec[SEC_META];
  w_u32(b, (uint32_t)g->n_meta);
  for (int i = 0; i < g->n_meta; i++) {
    w_str(b, g->meta[i].key);
    w_u8(b, META_STRING);
    w_str(b, g->meta[i].value);
  }

  /* graph */
  b = &sec[SEC_GRAPH];
  w_str(b, g->name);
  w_i64(b, g->opset);
  w_u32(b, (uint32_t)g->n_values);
  for (int i = 0; i < g->n_values; i++) {
    const pv_value *v = &g->values[i];
    w_str(b, v->name);
    w_u32(b, (uint32_t)v->dtype);
    w_i32(b, v->ndim);
    for (int d = 0; d < v->ndim; d++) w_i64(b, v->dims[d]);
    int32_t cn = v->chan_perm ? v->chan_perm_n : 0;
    w_i32(b, cn);
    for (int32_t k = 0; k < cn; k++) w_i32(b, v->chan_perm[k]);
  }
  w_u32(b, (uint32_t)g->n_nodes);
  for (int i = 0; i < g->n_nodes; i++) {
    const pv_node *n = &g->nodes[i];
    w_str(b, n->name);
    w_str(b, n->op);
    w_str(b, n->domain);
    w_u32(b, (uint32_t)n->n_in);
    for (int k = 0; k < n->n_in; k++) w_i32(b, n->in[k]);
    w_u32(b, (uint32_t)n->n_out);
    for (int k = 0; k < n->n_out; k++) w_i32(b, n->out[k]);
    w_u8(b, (uint8_t)n->act);
    w_f32(b, n->act_alpha);
    w_f32(b, n->act_beta);
    w_u32(b, (uint32_t)n->n_attrs);
    for (int k = 0; k < n->n_attrs; k++) w_attr(b, &n->attrs[k]);
  }
  w_u32(b, (uint32_t)g->n_inputs);
  for (int i = 0; i < g->n_inputs; i++) w_i32(b, g->inputs[i]);
  w_u32(b, (uint32_t)g->n_outputs);
  for (int i = 0; i < g->n_outputs; i++) w_i32(b, g->outputs[i]);

  /* tensor table; a pivoted weight keeps only its blocks. Values a node
   * computes are never stored, whatever data they hold. */
  b = &sec[SEC_TENSORS];
  produced = calloc((size_t)g->n_values + 1, 1);
  if (!produced) {
    rc = pv_error(PV_ENOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_out; k++)
      if (g->nodes[i].out[k] >= 0 && g->nodes[i].out[k] < g->n_values)
        produced[g->nodes[i].out[k]] = 1;
  uint32_t ntens = 0;
  for (int i = 0; i < g->n_values; i++)
    ntens += (g->values[i].pivot || g->values[i].data) && !produced[i];
  w_u32(b, ntens);
  uint64_t doff = 0;
  for (int i = 0; i < g->n_values; i++) {
    const pv_value *v = &g->values[i];
    if ((!v->pivot && !v->data) || produced[i]) continue;
    w_u32(b, (uint32_t)i);
    if (v->pivot) {
      const pv_pivot *p = v->pivot;
      if ((rc = pv_pivot_validate(p))) {
        rc = pv_error_prefix(rc, "pvm save: value '%s'", v->name);
        goto done;
      }
      w_u8(b, TENSOR_PIVOT);
      w_i32(b, p->M);
      w_i32(b, p->C);
      w_i32(b, p->kk);
      w_i32(b, p->nr);
      w_i32(b, p->nc);
      w_i32(b, p->n_blocks);
      w_bytes(b, p->perm_r, sizeof(int32_t) * p->M);
      w_bytes(b, p->perm_c, sizeof(int32_t) * p->C);
      w_bytes(b, p->row_off, sizeof(int32_t) * (p->nr + 1));
      w_bytes(b, p->col_off, sizeof(int32_t) * (p->nc + 1));
      for (int32_t k = 0; k < p->n_blocks; k++) {
        w_i32(b, p->blocks[k].rg);
        w_i32(b, p->blocks[k].cg);
        w_u64(b, p->blocks[k].offset);
      }
      chunks[nchunks] = (chunk){p->data, sizeof(float) * p->data_len, doff};
      w_u64(b, doff);
      w_u64(b, p->data_len);
    } else {
      pv_tensor t = pv_value_tensor(v);
      if (v->ndim < 0 || pv_tensor_nbytes(&t) != v->nbytes) {
        rc = pv_error(PV_EINVAL,
                      "pvm save: value '%s' has %zu bytes of data for %s %s",
                      v->name, v->nbytes, pv_dtype_name(v->dtype),
                      v->ndim < 0 ? "of unknown shape" : "of its shape");
        goto done;
      }
      w_u8(b, TENSOR_DENSE);
      chunks[nchunks] = (chunk){v->data, v->nbytes, doff};
      w_u64(b, doff);
      w_u64(b, v->nbytes);
    }
    doff = align_up(doff + chunks[nchunks].len, PVM_ALIGN);
    nchunks++;
  }
  for (int s = 0; s < SEC_COUNT - 1; s++)
    if (sec[s].err) {
      rc = pv_error(PV_ENOMEM, "pvm save: out of memory");
      goto done;
    }

  /* layout: header, table, meta, graph, tensors (8-aligned), data (64) */
  uint64_t off[SEC_COUNT], size[SEC_COUNT];
  uint32_t crc[SEC_COUNT];
  uint64_t pos = PVM_HDR + PVM_SECENT * SEC_COUNT;
  for (int s = 0; s < SEC_COUNT - 1; s++) {
    pos = align_up(pos, 8);
    off[s] = pos;
    size[s] = sec[s].len;
    crc[s] = pv_crc32_update(0, sec[s].p, sec[s].len);
    pos += size[s];
  }
  off[SEC_DATA] = align_up(pos, PVM_ALIGN);
  size[SEC_DATA] = doff;
  crc[SEC_DATA] = 0;
  for (int k = 0; k < nchunks; k++) {
    crc[SEC_DATA] = pv_crc32_update(crc[SEC_DATA], chunks[k].src, chunks[k].len);
    uint64_t end = k + 1 < nchunks ? chunks[k + 1].off : doff;
    uint64_t pad = end - chunks[k].off - chunks[k].len;
    crc[SEC_DATA] = pv_crc32_update(crc[SEC_DATA], zeros, pad);
  }
  uint64_t file_size = off[SEC_DATA] + size[SEC_DATA];

  uint8_t hdr[PVM_HDR + PVM_SECENT * SEC_COUNT];
  memset(hdr, 0, sizeof hdr);
  memcpy(hdr, PVM_MAGIC, 8);
  uint32_t u = PVM_VERSION;
  memcpy(hdr + 8, &u, 4);
  u = PVM_BOM;
  memcpy(hdr + 12, &u, 4);
  u = SEC_COUNT;
  memcpy(hdr + 16, &u, 4);
  memcpy(hdr + 24, &file_size, 8);
  for (int s = 0; s < SEC_COUNT; s++) {
    uint8_t *e = hdr + PVM_HDR + PVM_SECENT * s;
    memcpy(e, sec_names[s], strlen(sec_names[s]));
    memcpy(e + 8, &off[s], 8);
    memcpy(e + 16, &size[s], 8);
    memcpy(e + 24, &crc[s], 4);
  }
  u = pv_crc32_update(0, hdr, 20);
  u = pv_crc32_update(u, hdr + 24, sizeof hdr - 24);
  memcpy(hdr + 20, &u, 4);

  /* Write a temporary file and rename it, so a reader (or a model
   * repository watcher) never sees a half-written model. */
  tmp = malloc(strlen(path) + 16);
  if (!tmp) {
    rc = pv_error(PV_ENOMEM, "out of memory");
    goto done;
  }
  sprintf(tmp, "%s.tmp%ld", path, (long)getpid());
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    rc = pv_error(PV_EIO, "%s: cannot write (temporary %s): %s", path, tmp,
                  strerror(errno));
    goto done;
  }
  bool bad = write_all(fd, hdr, sizeof hdr) != 0;
  pos = sizeof hdr;
  for (int s = 0; s < SEC_COUNT && !bad; s++) {
    bad = write_all(fd, zeros, off[s] - pos) != 0;
    if (s < SEC_DATA) {
      bad = bad || write_all(fd, sec[s].p, sec[s].len) != 0;
      pos = off[s] + size[s];
    }
  }
  for (int k = 0; k < nchunks && !bad; k++) {
    uint64_t end = k + 1 < nchunks ? chunks[k + 1].off : doff;
    bad = write_all(fd, chunks[k].src, chunks[k].len) != 0 ||
          write_all(fd, zeros, end - chunks[k].off - chunks[k].len) != 0;
  }
  if (bad || fsync(fd) != 0) {
    rc = pv_error(PV_EIO, "%s: write failed: %s", tmp, strerror(errno));
    goto done;
  }
  if (close(fd) != 0) {
    fd = -1;
    rc = pv_error(PV_EIO, "%s: %s", tmp, strerror(errno));
    goto done;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    rc = pv_error(PV_EIO, "%s: rename: %s", path, strerror(errno));
    goto done;
  }
done:
  if (fd >= 0) close(fd);
  if (rc && tmp) unlink(tmp);
  free(tmp);
  free(chunks);
  free(produced);
  for (int s = 0; s < SEC_COUNT; s++) free(sec[s].p);
  return rc;
}

/* ============================================================ reader */

typedef struct rd {
  const uint8_t *p, *end;
  const char *sec;
} rd;

static int trunc_err(rd *r, const char *what) {
  return pv_error(PV_EFORMAT, "section '%s' truncated reading %s", r->sec,
                  what);
}

static int r_bytes(rd *r, void *dst, size_t n, const char *what) {
  if ((size_t)(r->end - r->p) < n) return trunc_err(r, what);
  memcpy(dst, r->p, n);
  r->p += n;
  return 0;
}
#define R_FN(name, type)                                      \
  static int name(rd *r, type *v, const char *what) {        \
    *v = 0; /* defined even when truncated */                   \
    return r_bytes(r, v, sizeof *v, what);                   \
  }
R_FN(r_u8, uint8_t)
R_FN(r_u32, uint32_t)
R_FN(r_i32, int32_t)
R_FN(r_u64, uint64_t)
R_FN(r_i64, int64_t)
R_FN(r_f32, float)
R_FN(r_f64, double)

/* A count of items of at least `min_item` bytes each: rejects counts the
 * rest of the section cannot hold before anything is allocated. */
static int r_count(rd *r, uint32_t *n, size_t min_item, uint32_t max,
                   const char *what) {
  int rc = r_u32(r, n, what);
  if (rc) return rc;
  if (*n > max || (uint64_t)*n * min_item > (uint64_t)(r->end - r->p))
    return pv_error(PV_EFORMAT, "section '%s': %s count %u out of range",
                    r->sec, what, *n);
  return 0;
}

/* A string: u32 length then bytes; returned NUL-terminated (malloc). */
static int r_str(rd *r, char **out, const char *what) {
  uint32_t n;
  *out = NULL;
  int rc = r_u32(r, &n, what);
  if (rc) return rc;
  if ((size_t)(r->end - r->p) < n) return trunc_err(r, what);
  if (memchr(r->p, 0, n))
    return pv_error(PV_EFORMAT, "section '%s': %s contains a NUL byte", r->sec,
                    what);
  *out = malloc((size_t)n + 1);
  if (!*out) return pv_error(PV_ENOMEM, "out of memory");
  memcpy(*out, r->p, n);
  (*out)[n] = 0;
  r->p += n;
  return 0;
}

static bool valid_dtype(uint32_t t) { return t <= PV_U64; }

static int read_meta(rd *r, pv_graph *g) {
  uint32_t n;
  int rc = r_count(r, &n, 5, 1u << 20, "metadata");
  for (uint32_t i = 0; i < n && !rc; i++) {
    char *key = NULL;
    uint8_t type;
    if ((rc = r_str(r, &key, "metadata key"))) break;
    if (!*key)
      rc = pv_error(PV_EFORMAT, "section 'meta': empty key");
    else if (pv_graph_get_meta(g, key))
      rc = pv_error(PV_EFORMAT, "section 'meta': duplicate key '%s'", key);
    if (!rc) rc = r_u8(r, &type, "metadata type");
    /* pv_graph keeps text; typed values are rendered as text. */
    wbuf t = {0};
    char num[64];
    uint32_t cnt = 1;
    if (!rc && (type == META_INTS || type == META_FLOATS || type == META_STRINGS))
      rc = r_count(r, &cnt, type == META_STRINGS ? 4 : 8, 1u << 24,
                   "metadata array");
    for (uint32_t k = 0; k < cnt && !rc; k++) {
      if (k) w_bytes(&t, ",", 1);
      if (type == META_STRING || type == META_STRINGS) {
        char *s;
        if ((rc = r_str(r, &s, "metadata value"))) break;
        w_bytes(&t, s, strlen(s));
        free(s);
      } else if (type == META_INT || type == META_INTS) {
        int64_t v;
        if ((rc = r_i64(r, &v, "metadata value"))) break;
        snprintf(num, sizeof num, "%lld", (long long)v);
        w_bytes(&t, num, strlen(num));
      } else if (type == META_FLOAT || type == META_FLOATS) {
        double v;
        if ((rc = r_f64(r, &v, "metadata value"))) break;
        snprintf(num, sizeof num, "%.17g", v);
        w_bytes(&t, num, strlen(num));
      } else {
        rc = pv_error(PV_EFORMAT, "section 'meta': key '%s' has unknown type %u",
                      key, type);
      }
    }
    w_bytes(&t, "", 1);
    if (!rc && t.err) rc = pv_error(PV_ENOMEM, "out of memory");
    if (!rc) rc = pv_graph_set_meta(g, key, (char *)t.p);
    free(t.p);
    free(key);
  }
  if (!rc && r->p != r->end)
    rc = pv_error(PV_EFORMAT, "section 'meta': %zu trailing bytes",
                  (size_t)(r->end - r->p));
  return rc;
}

static int read_attr(rd *r, pv_graph *g, int node) {
  pv_attr a;
  memset(&a, 0, sizeof a);
  uint8_t type;
  uint32_t n = 0;
  int rc = r_str(r, &a.name, "attribute name");
  if (!rc) rc = r_u8(r, &type, "attribute type");
  if (rc) goto done;
  if (pv_node_attr(&g->nodes[node], a.name)) {
    rc = pv_error(PV_EFORMAT, "section 'graph': node '%s' repeats attribute '%s'",
                  g->nodes[node].name, a.name);
    goto done;
  }
  a.type = (pv_attr_type)type;
  switch (type) {
  case PV_ATTR_FLOAT: rc = r_f32(r, &a.f, "attribute"); break;
  case PV_ATTR_INT: rc = r_i64(r, &a.i, "attribute"); break;
  case PV_ATTR_STRING: rc = r_str(r, &a.s, "attribute"); break;
  case PV_ATTR_FLOATS:
    if ((rc = r_count(r, &n, 4, INT32_MAX, "attribute floats"))) break;
    a.n = (int)n;
    a.floats = malloc(sizeof(float) * (n ? n : 1));
    if (!a.floats) rc = pv_error(PV_ENOMEM, "out of memory");
    else rc = r_bytes(r, a.floats, sizeof(float) * n, "attribute");
    break;
  case PV_ATTR_INTS:
    if ((rc = r_count(r, &n, 8, INT32_MAX, "attribute ints"))) break;
    a.n = (int)n;
    a.ints = malloc(sizeof(int64_t) * (n ? n : 1));
    if (!a.ints) rc = pv_error(PV_ENOMEM, "out of memory");
    else rc = r_bytes(r, a.ints, sizeof(int64_t) * n, "attribute");
    break;
  case PV_ATTR_STRINGS:
    if ((rc = r_count(r, &n, 4, INT32_MAX, "attribute strings"))) break;
    a.strings = calloc(n ? n : 1, sizeof(char *));
    if (!a.strings) {
      rc = pv_error(PV_ENOMEM, "out of memory");
      break;
    }
    for (uint32_t k = 0; k < n && !rc; k++, a.n++)
      rc = r_str(r, &a.strings[k], "attribute");
    break;
  case PV_ATTR_TENSOR: {
    uint32_t dt;
    int32_t nd;
    uint64_t nb;
    if ((rc = r_u32(r, &dt, "attribute tensor")) ||
        (rc = r_i32(r, &nd, "attribute tensor")))
      break;
    if (!valid_dtype(dt) || nd < 0 || nd > PV_MAX_DIMS) {
      rc = pv_error(PV_EFORMAT,
                    "section 'graph': attribute '%s': bad tensor type/rank",
                    a.name);
      break;
    }
    a.t.dtype = (pv_dtype)dt;
    a.t.ndim = nd;
    for (int d = 0; d < nd && !rc; d++) {
      rc = r_i64(r, &a.t.dims[d], "attribute tensor");
      if (!rc && a.t.dims[d] < 0)
        rc = pv_error(PV_EFORMAT, "section 'graph': attribute '%s': negative dim",
                      a.name);
    }
    if (!rc) rc = r_u64(r, &nb, "attribute tensor");
    if (rc) break;
    if (nb && nb != pv_tensor_nbytes(&a.t)) {
      rc = pv_error(PV_EFORMAT,
                    "section 'graph': attribute '%s': %llu bytes for its shape",
                    a.name, (unsigned long long)nb);
      break;
    }
    if ((uint64_t)(r->end - r->p) < nb) {
      rc = trunc_err(r, "attribute tensor");
      break;
    }
    a.t.data = nb ? (void *)r->p : NULL; /* copied by pv_node_add_attr */
    r->p += nb;
    break;
  }
  default:
    rc = pv_error(PV_EFORMAT, "section 'graph': attribute '%s' has type %u",
                  a.name, type);
  }
  if (!rc) rc = pv_node_add_attr(g, node, &a);
done:
  free(a.name);
  free(a.s);
  free(a.floats);
  free(a.ints);
  if (a.strings)
    for (int k = 0; k < a.n; k++) free(a.strings[k]);
  free(a.strings);
  return rc;
}

static int r_index_list(rd *r, int nvals, bool allow_missing, int **out,
                        uint32_t *n, const char *what) {
  int rc = r_count(r, n, 4, 1u << 20, what);
  if (rc) return rc;
  *out = malloc(sizeof(int) * (*n ? *n : 1));
  if (!*out) return pv_error(PV_ENOMEM, "out of memory");
  for (uint32_t k = 0; k < *n; k++) {
    int32_t v;
    if ((rc = r_i32(r, &v, what))) return rc;
    if (v < (allow_missing ? -1 : 0) || v >= nvals)
      return pv_error(PV_EFORMAT, "section 'graph': %s index %d out of range",
                      what, v);
    (*out)[k] = v;
  }
  return 0;
}

static int read_graph(rd *r, pv_graph *g) {
  int64_t opset;
  uint32_t nv, nn;
  int rc = r_str(r, &g->name, "graph name");
  if (!rc) rc = r_i64(r, &opset, "opset");
  if (rc) return rc;
  if (opset < 0 || opset > 1000)
    return pv_error(PV_EFORMAT, "section 'graph': opset %lld", (long long)opset);
  g->opset = (int)opset;
  if ((rc = r_count(r, &nv, 16, INT32_MAX / 2, "values"))) return rc;
  for (uint32_t i = 0; i < nv; i++) {
    char *name;
    uint32_t dt;
    int32_t nd, cn;
    if ((rc = r_str(r, &name, "value name"))) return rc;
    if (*name && pv_graph_find_value(g, name) >= 0) {
      rc = pv_error(PV_EFORMAT, "section 'graph': duplicate value name '%s'",
                    name);
      free(name);
      return rc;
    }
    int vi = pv_graph_add_value(g, name);
    free(name);
    if (vi < 0) return vi;
    pv_value *v = &g->values[vi];
    if ((rc = r_u32(r, &dt, "value dtype")) || (rc = r_i32(r, &nd, "value rank")))
      return rc;
    if (!valid_dtype(dt) || nd < -1 || nd > PV_MAX_DIMS)
      return pv_error(PV_EFORMAT, "section 'graph': value '%s' has dtype %u rank %d",
                      v->name, dt, nd);
    v->dtype = (pv_dtype)dt;
    v->ndim = nd;
    for (int d = 0; d < nd; d++) {
      if ((rc = r_i64(r, &v->dims[d], "value dims"))) return rc;
      if (v->dims[d] < PV_DIM_BATCH)
        return pv_error(PV_EFORMAT, "section 'graph': value '%s' dim %d is %lld",
                        v->name, d, (long long)v->dims[d]);
    }
    if ((rc = r_i32(r, &cn, "chan_perm"))) return rc;
    if (cn < 0 || (uint64_t)cn * 4 > (uint64_t)(r->end - r->p))
      return pv_error(PV_EFORMAT, "section 'graph': value '%s' chan_perm length %d",
                      v->name, cn);
    if (cn) {
      v->chan_perm = malloc(sizeof(int32_t) * (size_t)cn);
      char *seen = calloc((size_t)cn, 1);
      if (!v->chan_perm || !seen) {
        free(seen);
        return pv_error(PV_ENOMEM, "out of memory");
      }
      v->chan_perm_n = cn;
      memcpy(v->chan_perm, r->p, sizeof(int32_t) * (size_t)cn);
      r->p += sizeof(int32_t) * (size_t)cn;
      for (int32_t k = 0; k < cn && !rc; k++)
        if (v->chan_perm[k] < 0 || v->chan_perm[k] >= cn || seen[v->chan_perm[k]]++)
          rc = pv_error(PV_EFORMAT,
                        "section 'graph': value '%s' chan_perm is not a permutation",
                        v->name);
      free(seen);
      if (rc) return rc;
    }
  }
  if ((rc = r_count(r, &nn, 30, INT32_MAX / 2, "nodes"))) return rc;
  for (uint32_t i = 0; i < nn; i++) {
    char *name = NULL, *op = NULL, *dom = NULL;
    int *in = NULL, *out = NULL;
    uint32_t nin, nout, na;
    int ni = -1;
    rc = r_str(r, &name, "node name");
    if (!rc) rc = r_str(r, &op, "node op");
    if (!rc) rc = r_str(r, &dom, "node domain");
    if (!rc && !*op)
      rc = pv_error(PV_EFORMAT, "section 'graph': node %u has no op", i);
    if (!rc) rc = r_index_list(r, g->n_values, true, &in, &nin, "node input");
    if (!rc) rc = r_index_list(r, g->n_values, false, &out, &nout, "node output");
    for (uint32_t k = 0; k < nout && !rc; k++)
      if (g->values[out[k]].producer >= 0)
        rc = pv_error(PV_EFORMAT,
                      "section 'graph': value '%s' produced by two nodes",
                      g->values[out[k]].name);
    if (!rc) {
      ni = pv_graph_add_node(g, name, op, in, (int)nin, out, (int)nout);
      if (ni >= 0) {
        free(g->nodes[ni].domain);
        g->nodes[ni].domain = dom;
        dom = NULL;
      } else {
        rc = ni;
      }
    }
    free(name);
    free(op);
    free(dom);
    free(in);
    free(out);
    if (rc) return rc;
    pv_node *n = &g->nodes[ni];
    uint8_t act;
    if ((rc = r_u8(r, &act, "node activation")) ||
        (rc = r_f32(r, &n->act_alpha, "node activation")) ||
        (rc = r_f32(r, &n->act_beta, "node activation")))
      return rc;
    if (act > PV_ACT_TANH)
      return pv_error(PV_EFORMAT, "section 'graph': node '%s' activation %u",
                      n->name, act);
    n->act = (pv_act)act;
    if ((rc = r_count(r, &na, 5, 1u << 16, "attributes"))) return rc;
    for (uint32_t k = 0; k < na; k++)
      if ((rc = read_attr(r, g, ni))) return rc;
  }
  uint32_t nin, nout;
  if ((rc = r_index_list(r, g->n_values, false, &g->inputs, &nin, "graph input")))
    return rc;
  g->n_inputs = (int)nin;
  if ((rc = r_index_list(r, g->n_values, false, &g->outputs, &nout,
                         "graph output")))
    return rc;
  g->n_outputs = (int)nout;
  if (r->p != r->end)
    return pv_error(PV_EFORMAT, "section 'graph': %zu trailing bytes",
                    (size_t)(r->end - r->p));
  return 0;
}

/* Data section range [off, off+len) checked against the section. */
static int data_range(const char *what, const char *vname, uint64_t off,
                      uint64_t len, uint64_t dsize) {
  if (off % PVM_ALIGN)
    return pv_error(PV_EFORMAT, "section 'tensors': %s of '%s' at unaligned offset %llu",
                    what, vname, (unsigned long long)off);
  if (off > dsize || len > dsize - off)
    return pv_error(PV_EFORMAT,
                    "section 'tensors': %s of '%s' [%llu,+%llu) outside data (%llu bytes)",
                    what, vname, (unsigned long long)off, (unsigned long long)len,
                    (unsigned long long)dsize);
  return 0;
}

static int read_i32s(rd *r, int32_t **out, int64_t n, const char *what) {
  if (n < 0 || (uint64_t)n * 4 > (uint64_t)(r->end - r->p)) return trunc_err(r, what);
  *out = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
  if (!*out) return pv_error(PV_ENOMEM, "out of memory");
  return r_bytes(r, *out, sizeof(int32_t) * (size_t)n, what);
}

static int read_tensors(rd *r, pv_graph *g, const uint8_t *data, uint64_t dsize) {
  uint32_t n;
  int rc = r_count(r, &n, 5, (uint32_t)g->n_values, "tensors");
  for (uint32_t i = 0; i < n && !rc; i++) {
    uint32_t vi;
    uint8_t kind;
    if ((rc = r_u32(r, &vi, "tensor value")) || (rc = r_u8(r, &kind, "tensor kind")))
      break;
    if (vi >= (uint32_t)g->n_values)
      return pv_error(PV_EFORMAT, "section 'tensors': value index %u out of range", vi);
    pv_value *v = &g->values[vi];
    if (v->data || v->pivot)
      return pv_error(PV_EFORMAT, "section 'tensors': value '%s' stored twice", v->name);
    if (v->producer >= 0)
      return pv_error(PV_EFORMAT,
                      "section 'tensors': value '%s' is also computed by node '%s'",
                      v->name, g->nodes[v->producer].name);
    pv_tensor t = pv_value_tensor(v);
    int64_t numel = v->ndim < 0 ? -1 : pv_tensor_numel(&t);
    if (kind == TENSOR_DENSE) {
      uint64_t off, len;
      if ((rc = r_u64(r, &off, "tensor offset")) || (rc = r_u64(r, &len, "tensor size")))
        break;
      size_t want = v->ndim < 0 ? SIZE_MAX : pv_tensor_nbytes(&t);
      if (want == SIZE_MAX || want == 0 || len != want)
        return pv_error(PV_EFORMAT,
                        "section 'tensors': '%s' has %llu bytes, its shape needs %zu",
                        v->name, (unsigned long long)len, want == SIZE_MAX ? 0 : want);
      if ((rc = data_range("data", v->name, off, len, dsize))) return rc;
      v->data = (void *)(data + off);
      v->nbytes = (size_t)len;
    } else if (kind == TENSOR_PIVOT) {
      pv_pivot *p = calloc(1, sizeof *p);
      if (!p) return pv_error(PV_ENOMEM, "out of memory");
      v->pivot = p; /* freed with the graph on any error below */
      int32_t hdr[6];
      for (int k = 0; k < 6 && !rc; k++) rc = r_i32(r, &hdr[k], "pivot header");
      if (rc) break;
      p->M = hdr[0];
      p->C = hdr[1];
      p->kk = hdr[2];
      p->nr = hdr[3];
      p->nc = hdr[4];
      p->n_blocks = hdr[5];
      if (p->M <= 0 || p->C <= 0 || p->kk <= 0 || p->nr <= 0 || p->nr > p->M ||
          p->nc <= 0 || p->nc > p->C || p->n_blocks < 0 ||
          (int64_t)p->n_blocks > (int64_t)p->nr * p->nc)
        return pv_error(PV_EFORMAT,
                        "section 'tensors': pivot of '%s' has bad sizes "
                        "M=%d C=%d kk=%d nr=%d nc=%d blocks=%d",
                        v->name, p->M, p->C, p->kk, p->nr, p->nc, p->n_blocks);
      int64_t mck;
      if (v->dtype != PV_F32 ||
          __builtin_mul_overflow((int64_t)p->M * p->C, (int64_t)p->kk, &mck) ||
          numel != mck)
        return pv_error(PV_EFORMAT,
                        "section 'tensors': pivot of '%s' (%dx%dx%d) does not "
                        "match the value's shape/dtype",
                        v->name, p->M, p->C, p->kk);
      if ((rc = read_i32s(r, &p->perm_r, p->M, "pivot perm_r")) ||
          (rc = read_i32s(r, &p->perm_c, p->C, "pivot perm_c")) ||
          (rc = read_i32s(r, &p->row_off, (int64_t)p->nr + 1, "pivot row_off")) ||
          (rc = read_i32s(r, &p->col_off, (int64_t)p->nc + 1, "pivot col_off")))
        break;
      if ((uint64_t)p->n_blocks * 16 > (uint64_t)(r->end - r->p))
        return trunc_err(r, "pivot blocks");
      p->blocks = malloc(sizeof *p->blocks * (size_t)(p->n_blocks ? p->n_blocks : 1));
      if (!p->blocks) return pv_error(PV_ENOMEM, "out of memory");
      for (int32_t k = 0; k < p->n_blocks && !rc; k++) {
        rc = r_i32(r, &p->blocks[k].rg, "pivot blocks");
        if (!rc) rc = r_i32(r, &p->blocks[k].cg, "pivot blocks");
        if (!rc) rc = r_u64(r, &p->blocks[k].offset, "pivot blocks");
      }
      uint64_t off, len;
      if (rc || (rc = r_u64(r, &off, "pivot data offset")) ||
          (rc = r_u64(r, &len, "pivot data size")))
        break;
      if (len > UINT64_MAX / 4)
        return pv_error(PV_EFORMAT, "section 'tensors': pivot data of '%s' too large",
                        v->name);
      if ((rc = data_range("pivot data", v->name, off, len * 4, dsize))) return rc;
      p->data = (float *)(void *)(data + off);
      p->data_len = len;
      p->data_owned = false;
      if ((rc = pv_pivot_validate(p)))
        return pv_error_prefix(rc, "section 'tensors': value '%s'", v->name);
    } else {
      return pv_error(PV_EFORMAT, "section 'tensors': value '%s' has kind %u",
                      v->name, kind);
    }
  }
  if (!rc && r->p != r->end)
    rc = pv_error(PV_EFORMAT, "section 'tensors': %zu trailing bytes",
                  (size_t)(r->end - r->p));
  return rc;
}

/* Every node reads only graph inputs, stored tensors, omitted inputs or
 * outputs of earlier nodes: the order is topological and nothing dangles. */
static int check_order(const pv_graph *g) {
  char *avail = calloc((size_t)g->n_values + 1, 1);
  if (!avail) return pv_error(PV_ENOMEM, "out of memory");
  int rc = 0;
  for (int i = 0; i < g->n_inputs; i++) avail[g->inputs[i]] = 1;
  for (int v = 0; v < g->n_values; v++)
    if (g->values[v].data || g->values[v].pivot) avail[v] = 1;
  for (int i = 0; i < g->n_nodes && !rc; i++) {
    const pv_node *n = &g->nodes[i];
    for (int k = 0; k < n->n_in && !rc; k++)
      if (n->in[k] >= 0 && !avail[n->in[k]])
        rc = pv_error(PV_EFORMAT,
                      "section 'graph': node '%s' reads '%s' before it is produced",
                      n->name, g->values[n->in[k]].name);
    for (int k = 0; k < n->n_out; k++) avail[n->out[k]] = 1;
  }
  for (int i = 0; i < g->n_outputs && !rc; i++)
    if (!avail[g->outputs[i]])
      rc = pv_error(PV_EFORMAT, "section 'graph': output '%s' is never produced",
                    g->values[g->outputs[i]].name);
  free(avail);
  return rc;
}

typedef struct pvm_storage {
  pv_storage_hdr hdr; /* first: graph.c reads it */
  void *map;
  size_t map_len;
} pvm_storage;

static void storage_free(void *s) {
  pvm_storage *st = s;
  if (!st) return;
  if (st->map) munmap(st->map, st->map_len);
  free(st);
}

static int load_into(pv_graph *g, const uint8_t *buf, size_t len) {
  if (((uintptr_t)buf & 3) != 0)
    return pv_error(PV_EINVAL, "pvm buffer must be 4-byte aligned");
  if (len < PVM_HDR)
    return pv_error(PV_EFORMAT, "section 'header' truncated (%zu bytes)", len);
  if (memcmp(buf, PVM_MAGIC, 8))
    return pv_error(PV_EFORMAT, "not a .pvm file (bad magic)");
  uint32_t version, bom, nsec, hcrc;
  uint64_t fsize;
  memcpy(&version, buf + 8, 4);
  memcpy(&bom, buf + 12, 4);
  memcpy(&nsec, buf + 16, 4);
  memcpy(&hcrc, buf + 20, 4);
  memcpy(&fsize, buf + 24, 8);
  if (bom == 0x04030201u)
    return pv_error(PV_EUNSUPPORTED, "file byte order differs from this host's");
  if (bom != PVM_BOM)
    return pv_error(PV_EFORMAT, "section 'header': bad byte-order mark 0x%08x", bom);
  if (nsec != SEC_COUNT)
    return pv_error(PV_EFORMAT, "section 'header': %u sections, expected %u", nsec,
                    (unsigned)SEC_COUNT);
  size_t hlen = PVM_HDR + PVM_SECENT * SEC_COUNT;
  if (len < hlen) return pv_error(PV_EFORMAT, "section 'header' truncated");
  uint32_t c = pv_crc32_update(0, buf, 20);
  c = pv_crc32_update(c, buf + 24, hlen - 24);
  if (c != hcrc && !SKIP_CRC)
    return pv_error(PV_EFORMAT, "section 'header' checksum mismatch");
  if (version != PVM_VERSION)
    return pv_error(PV_EUNSUPPORTED, "format version %u (this reader knows %u)",
                    version, PVM_VERSION);
  uint64_t off[SEC_COUNT], size[SEC_COUNT];
  uint32_t crc[SEC_COUNT];
  uint64_t pos = hlen;
  for (int s = 0; s < SEC_COUNT; s++) {
    const uint8_t *e = buf + PVM_HDR + PVM_SECENT * s;
    char name[9] = {0}, want[8] = {0};
    memcpy(name, e, 8);
    memcpy(want, sec_names[s], strlen(sec_names[s]));
    /* v1 has exactly these sections in this order, so a duplicate or an
     * unknown one is an error. */
    if (memcmp(e, want, 8))
      return pv_error(PV_EFORMAT, "section table entry %d is '%.8s', expected '%s'",
                      s, name, sec_names[s]);
    memcpy(&off[s], e + 8, 8);
    memcpy(&size[s], e + 16, 8);
    memcpy(&crc[s], e + 24, 4);
    uint64_t align = s == SEC_DATA ? PVM_ALIGN : 8;
    if (off[s] < pos || off[s] % align || off[s] - pos >= align)
      return pv_error(PV_EFORMAT, "section '%s' at bad offset %llu", sec_names[s],
                      (unsigned long long)off[s]);
    if (off[s] > len || size[s] > len - off[s])
      return pv_error(PV_EFORMAT, "section '%s' [%llu,+%llu) extends past end of file",
                      sec_names[s], (unsigned long long)off[s],
                      (unsigned long long)size[s]);
    for (uint64_t k = pos; k < off[s]; k++)
      if (buf[k])
        return pv_error(PV_EFORMAT, "padding before section '%s' is not zero",
                        sec_names[s]);
    if (pv_crc32_update(0, buf + off[s], size[s]) != crc[s] && !SKIP_CRC)
      return pv_error(PV_EFORMAT, "section '%s' checksum mismatch", sec_names[s]);
    pos = off[s] + size[s];
  }
  /* Checked after the sections so that a truncated file names the first
   * section it cuts. */
  if (fsize != len || pos != len)
    return pv_error(PV_EFORMAT,
                    "file is %zu bytes, header says %llu, sections end at %llu",
                    len, (unsigned long long)fsize, (unsigned long long)pos);
  rd r = {buf + off[SEC_META], buf + off[SEC_META] + size[SEC_META], "meta"};
  int rc = read_meta(&r, g);
  if (rc) return rc;
  r = (rd){buf + off[SEC_GRAPH], buf + off[SEC_GRAPH] + size[SEC_GRAPH], "graph"};
  if ((rc = read_graph(&r, g))) return rc;
  r = (rd){buf + off[SEC_TENSORS], buf + off[SEC_TENSORS] + size[SEC_TENSORS],
           "tensors"};
  if ((rc = read_tensors(&r, g, buf + off[SEC_DATA], size[SEC_DATA]))) return rc;
  return check_order(g);
}

pv_graph *pv_pvm_load_mem(const void *buf, size_t len) {
  pv_graph *g = pv_graph_new();
  pvm_storage *st = calloc(1, sizeof *st);
  if (!g || !st || !buf) {
    free(st);
    pv_graph_free(g);
    pv_error(buf ? PV_ENOMEM : PV_EINVAL, buf ? "out of memory" : "no buffer");
    return NULL;
  }
  st->hdr.base = buf;
  st->hdr.len = len;
  g->storage = st;
  g->storage_free = storage_free;
  if (load_into(g, buf, len)) {
    pv_graph_free(g);
    return NULL;
  }
  return g;
}

pv_graph *pv_pvm_load(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    pv_error(PV_EIO, "%s: %s", path, strerror(errno));
    return NULL;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    pv_error(PV_EIO, "%s: not a regular file", path);
    close(fd);
    return NULL;
  }
  size_t len = (size_t)sb.st_size;
  if (len < PVM_HDR) {
    close(fd);
    pv_error(PV_EFORMAT, "%s: section 'header' truncated (%zu bytes)", path, len);
    return NULL;
  }
  void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    pv_error(PV_EIO, "%s: mmap: %s", path, strerror(errno));
    return NULL;
  }
  pv_graph *g = pv_graph_new();
  pvm_storage *st = calloc(1, sizeof *st);
  if (!g || !st) {
    free(st);
    pv_graph_free(g);
    munmap(map, len);
    pv_error(PV_ENOMEM, "out of memory");
    return NULL;
  }
  st->hdr.base = map;
  st->hdr.len = len;
  st->map = map;
  st->map_len = len;
  g->storage = st;
  g->storage_free = storage_free;
  int rc = load_into(g, map, len);
  if (rc) {
    pv_error_prefix(rc, "%s", path);
    pv_graph_free(g);
    return NULL;
  }
  return g;
}
