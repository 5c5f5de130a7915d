/* ONNX import: an ONNX protobuf (parsed with protobuf-c) becomes a pv_graph.
 *
 * protobuf-c checks the wire format; everything it cannot know (counts that
 * must agree with dims, sizes that overflow, names that must resolve, files
 * that must hold the bytes they claim) is checked here, so that no byte
 * string can crash the importer or make it allocate more than the input
 * justifies. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pivot.h"
#include "onnx.pb-c.h"

/* raw_data is little-endian by spec and is copied as is. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the ONNX importer assumes a little-endian host");

#define OPSET_MIN 7
#define OPSET_MAX 25

/* Field numbers of the subgraph attributes left out of onnx.proto. */
#define ATTR_FIELD_G 6
#define ATTR_FIELD_GRAPHS 11
#define GRAPH_FIELD_SPARSE_INIT 15

#define MAX_ATTRS 1024

static const char *nz(const char *s) {
  return s ? s : "";
}

/* ------------------------------------------------------------ name table */

/* Value name -> value index, so resolving names stays linear in the model
 * size (pv_graph_find_value is a linear scan). Keys are the graph's own
 * value names. */
typedef struct name_map {
  const pv_graph *g;
  int *slot; /* value index + 1; 0 = empty */
  size_t cap, n;
} name_map;

static size_t hash_str(const char *s) {
  size_t h = 1469598103934665603ULL & SIZE_MAX;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * (size_t)1099511628211ULL;
  return h;
}

static int map_find(const name_map *m, const char *name) {
  if (!m->cap) return -1;
  for (size_t i = hash_str(name) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    int s = m->slot[i];
    if (!s) return -1;
    if (!strcmp(m->g->values[s - 1].name, name)) return s - 1;
  }
}

static void map_insert(name_map *m, int idx) {
  const char *name = m->g->values[idx].name;
  size_t i = hash_str(name) & (m->cap - 1);
  while (m->slot[i]) i = (i + 1) & (m->cap - 1);
  m->slot[i] = idx + 1;
  m->n++;
}

/* Record value idx under its name; the caller checked it is new. */
static int map_put(name_map *m, int idx) {
  if (2 * (m->n + 1) > m->cap) {
    size_t ncap = m->cap ? 2 * m->cap : 64;
    int *old = m->slot;
    size_t ocap = m->cap;
    m->slot = calloc(ncap, sizeof *m->slot);
    if (!m->slot) {
      m->slot = old;
      return pv_error(PV_ENOMEM, "out of memory");
    }
    m->cap = ncap;
    m->n = 0;
    for (size_t i = 0; i < ocap; i++)
      if (old[i]) map_insert(m, old[i] - 1);
    free(old);
  }
  map_insert(m, idx);
  return 0;
}

/* ------------------------------------------------------------ context */

typedef struct onnx_ctx {
  pv_graph *g;
  name_map names;
  const char *base_dir; /* for external data; NULL = none allowed */
  const Onnx__ModelProto *model;
} onnx_ctx;

/* Add a value named `name`, refusing a name already in use. */
static int new_value(onnx_ctx *c, const char *name, const char *what) {
  if (map_find(&c->names, name) >= 0)
    return pv_error(PV_EFORMAT, "value '%s' is defined twice (again as %s)",
                    name, what);
  int v = pv_graph_add_value(c->g, name);
  if (v < 0) return v;
  int rc = map_put(&c->names, v);
  return rc ? rc : v;
}

/* ------------------------------------------------------------ tensors */

/* The pv_dtype of an ONNX element type, or PV_UNDEFINED when pivotd cannot
 * hold it (string, complex, bfloat16, unknown). The enums share numbers. */
static pv_dtype dtype_of(int64_t t) {
  switch (t) {
  case PV_F32: case PV_U8: case PV_I8: case PV_U16: case PV_I16:
  case PV_I32: case PV_I64: case PV_BOOL: case PV_F16: case PV_F64:
  case PV_U32: case PV_U64:
    return (pv_dtype)t;
  default:
    return PV_UNDEFINED;
  }
}

static const char *onnx_type_name(int64_t t) {
  static const char *names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8",
                                "UINT16", "INT16", "INT32", "INT64",
                                "STRING", "BOOL", "FLOAT16", "DOUBLE",
                                "UINT32", "UINT64", "COMPLEX64",
                                "COMPLEX128", "BFLOAT16",
                                /* opsets 19 to 25 */
                                "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
                                "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1",
                                "FLOAT8E8M0", "UINT2", "INT2"};
  return t >= 0 && t < (int64_t)(sizeof names / sizeof names[0]) ? names[t]
                                                                 : "unknown";
}

/* Parse a non-negative decimal integer with nothing after it. */
static int parse_size(const char *s, int64_t *out) {
  if (!s || !*s) return -1;
  int64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    if (v > (INT64_MAX - (*s - '0')) / 10) return -1;
    v = v * 10 + (*s - '0');
  }
  *out = v;
  return 0;
}

/* A location must stay inside the model's directory: an uploaded model
 * must not be able to read /etc/shadow or ../other-model into its
 * weights. */
static bool location_ok(const char *loc) {
  if (!*loc || loc[0] == '/') return false;
  for (const char *p = loc; *p;) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 2 && p[0] == '.' && p[1] == '.') return false;
    if (!e) break;
    p = e + 1;
  }
  return true;
}

/* Read `nbytes` of external data described by tp->external_data into a
 * new 64-byte-aligned buffer *dst (the caller frees it with pv_free),
 * allocated only once offset and length are known to fit the file. */
static int read_external(const onnx_ctx *c, const Onnx__TensorProto *tp,
                         const char *what, size_t nbytes, void **dst) {
  const char *loc = NULL;
  int64_t off = 0, len = -1;
  for (size_t i = 0; i < tp->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = tp->external_data[i];
    const char *k = nz(e->key), *v = nz(e->value);
    if (!strcmp(k, "location")) {
      loc = v;
    } else if (!strcmp(k, "offset")) {
      if (parse_size(v, &off))
        return pv_error(PV_EFORMAT, "%s: external data offset '%s' is not a "
                        "non-negative integer", what, v);
    } else if (!strcmp(k, "length")) {
      if (parse_size(v, &len))
        return pv_error(PV_EFORMAT, "%s: external data length '%s' is not a "
                        "non-negative integer", what, v);
    }
  }
  if (!loc)
    return pv_error(PV_EFORMAT, "%s: external data without a 'location'",
                    what);
  if (!location_ok(loc))
    return pv_error(PV_EFORMAT, "%s: external data location '%s' must be a "
                    "relative path inside the model's directory", what, loc);
  if (!c->base_dir)
    return pv_error(PV_EINVAL, "%s: data is in external file '%s', but the "
                    "model was loaded from memory without a base directory",
                    what, loc);
  char path[PATH_MAX];
  int n = snprintf(path, sizeof path, "%s/%s", c->base_dir, loc);
  if (n < 0 || (size_t)n >= sizeof path)
    return pv_error(PV_EINVAL, "%s: external data path too long", what);

  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return pv_error(PV_EIO, "%s: cannot open external data file '%s': %s",
                    what, path, strerror(errno));
  int rc = 0;
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    rc = pv_error(PV_EIO, "%s: external data '%s' is not a regular file",
                  what, path);
    goto out;
  }
  int64_t size = st.st_size;
  if (off > size) {
    rc = pv_error(PV_EFORMAT, "%s: external data offset %lld is past the end "
                  "of '%s' (%lld bytes)", what, (long long)off, path,
                  (long long)size);
    goto out;
  }
  if (len < 0) len = size - off;
  if (len > size - off) {
    rc = pv_error(PV_EFORMAT, "%s: external data at offset %lld, length %lld "
                  "runs past the end of '%s' (%lld bytes)", what,
                  (long long)off, (long long)len, path, (long long)size);
    goto out;
  }
  if ((uint64_t)len != nbytes) {
    rc = pv_error(PV_EFORMAT, "%s: external data holds %lld bytes but its "
                  "dims need %zu bytes", what, (long long)len, nbytes);
    goto out;
  }
  char *buf = pv_aligned_alloc(nbytes);
  if (!buf) {
    rc = pv_error(PV_ENOMEM, "%s: cannot allocate %zu bytes", what, nbytes);
    goto out;
  }
  for (size_t done = 0; done < nbytes;) {
    ssize_t r = pread(fd, buf + done, nbytes - done,
                      (off_t)(off + (int64_t)done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      rc = pv_error(PV_EIO, "%s: cannot read external data '%s': %s", what,
                    path, r < 0 ? strerror(errno) : "file shrank");
      pv_free(buf);
      goto out;
    }
    done += (size_t)r;
  }
  *dst = buf;
out:
  close(fd);
  return rc;
}

/* Number of typed values tp holds for dtype t, and the field's name. */
static size_t typed_count(const Onnx__TensorProto *tp, pv_dtype t,
                          const char **field) {
  switch (t) {
  case PV_F32: *field = "float_data"; return tp->n_float_data;
  case PV_F64: *field = "double_data"; return tp->n_double_data;
  case PV_I64: *field = "int64_data"; return tp->n_int64_data;
  case PV_U32:
  case PV_U64: *field = "uint64_data"; return tp->n_uint64_data;
  default: *field = "int32_data"; return tp->n_int32_data;
  }
}

/* Copy `count` typed values into dst as elements of dtype t. Narrowing is
 * what ONNX prescribes: int32_data holds int8..uint16, bool and the bits of
 * float16; uint64_data holds uint32. */
static void copy_typed(const Onnx__TensorProto *tp, pv_dtype t, void *dst) {
  const char *field;
  /* An empty repeated field is a NULL pointer, which memcpy must not get
   * even for 0 bytes. */
  if (typed_count(tp, t, &field) == 0) return;
  switch (t) {
  case PV_F32:
    memcpy(dst, tp->float_data, tp->n_float_data * sizeof(float));
    break;
  case PV_F64:
    memcpy(dst, tp->double_data, tp->n_double_data * sizeof(double));
    break;
  case PV_I64:
    memcpy(dst, tp->int64_data, tp->n_int64_data * sizeof(int64_t));
    break;
  case PV_U64:
    memcpy(dst, tp->uint64_data, tp->n_uint64_data * sizeof(uint64_t));
    break;
  case PV_U32:
    for (size_t i = 0; i < tp->n_uint64_data; i++)
      ((uint32_t *)dst)[i] = (uint32_t)tp->uint64_data[i];
    break;
  case PV_I32:
    memcpy(dst, tp->int32_data, tp->n_int32_data * sizeof(int32_t));
    break;
  case PV_I16:
  case PV_U16:
  case PV_F16:
    for (size_t i = 0; i < tp->n_int32_data; i++)
      ((uint16_t *)dst)[i] = (uint16_t)tp->int32_data[i];
    break;
  case PV_I8:
  case PV_U8:
    for (size_t i = 0; i < tp->n_int32_data; i++)
      ((uint8_t *)dst)[i] = (uint8_t)tp->int32_data[i];
    break;
  case PV_BOOL:
    for (size_t i = 0; i < tp->n_int32_data; i++)
      ((uint8_t *)dst)[i] = tp->int32_data[i] != 0;
    break;
  default:
    break;
  }
}

/* Convert a TensorProto into t (dtype, dims, data). t->data is allocated
 * 64-byte aligned and owned by the caller (pv_free); *nbytes gets its size.
 * `what` names the tensor in messages ("initializer 'w'"). The buffer is
 * allocated only after the source is known to hold exactly the bytes the
 * dims claim, so huge dims cannot make us allocate. */
static int tensor_from_proto(const onnx_ctx *c, const Onnx__TensorProto *tp,
                             const char *what, pv_tensor *t, size_t *nbytes) {
  memset(t, 0, sizeof *t);
  if (!tp->has_data_type)
    return pv_error(PV_EFORMAT, "%s has no data type", what);
  pv_dtype dt = dtype_of(tp->data_type);
  if (dt == PV_UNDEFINED)
    return pv_error(PV_EUNSUPPORTED, "%s has data type %s (%d), which is "
                    "not supported", what, onnx_type_name(tp->data_type),
                    (int)tp->data_type);
  if (tp->n_dims > PV_MAX_DIMS)
    return pv_error(PV_EUNSUPPORTED, "%s has %zu dimensions; at most %d are "
                    "supported", what, tp->n_dims, PV_MAX_DIMS);
  if (tp->segment)
    return pv_error(PV_EUNSUPPORTED, "%s is stored in segments, which is not "
                    "supported", what);
  t->dtype = dt;
  t->ndim = (int)tp->n_dims;
  int64_t numel = 1;
  for (int i = 0; i < t->ndim; i++) {
    int64_t d = tp->dims[i];
    if (d < 0)
      return pv_error(PV_EFORMAT, "%s has negative dimension %lld at axis %d",
                      what, (long long)d, i);
    if (d && numel > INT64_MAX / d)
      return pv_error(PV_ERANGE, "%s: element count overflows", what);
    numel *= d;
    t->dims[i] = d;
  }
  size_t es = pv_dtype_size(dt);
  if ((uint64_t)numel > SIZE_MAX / es)
    return pv_error(PV_ERANGE, "%s: byte size overflows", what);
  size_t nb = (size_t)numel * es;
  char dims[128];
  pv_dims_str(t->dims, t->ndim, dims, sizeof dims);

  bool external = tp->has_data_location &&
                  tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  const char *field = NULL;
  if (external) {
    int rc = read_external(c, tp, what, nb, &t->data);
    if (rc) return rc;
    *nbytes = nb;
    return 0;
  } else if (tp->has_raw_data) {
    if (tp->raw_data.len != nb)
      return pv_error(PV_EFORMAT, "%s: raw_data holds %zu bytes but dims %s "
                      "of %s need %zu bytes", what, tp->raw_data.len, dims,
                      onnx_type_name(dt), nb);
  } else {
    size_t n = typed_count(tp, dt, &field);
    if (n != (uint64_t)numel)
      return pv_error(PV_EFORMAT, "%s: %s holds %zu values but dims %s need "
                      "%lld", what, field, n, dims, (long long)numel);
  }
  /* nb now matches bytes present in the input. */
  t->data = pv_aligned_alloc(nb);
  if (!t->data)
    return pv_error(PV_ENOMEM, "%s: cannot allocate %zu bytes", what, nb);
  if (!tp->has_raw_data)
    copy_typed(tp, dt, t->data);
  else if (nb)
    memcpy(t->data, tp->raw_data.data, nb);
  *nbytes = nb;
  return 0;
}

/* Give value v the tensor's dtype, shape and data (ownership moves). */
static void value_take(pv_value *v, pv_tensor *t, size_t nbytes) {
  v->dtype = t->dtype;
  v->ndim = t->ndim;
  memcpy(v->dims, t->dims, sizeof v->dims);
  v->data = t->data;
  v->nbytes = nbytes;
  t->data = NULL;
}

/* ------------------------------------------------------------ value info */

/* dtype and shape of a graph input/output. Unknown dims (dim_param or
 * nothing) become PV_DIM_BATCH on every axis; shape inference resolves
 * them. `required`: inputs need a known element type, outputs may leave
 * it to shape inference. */
static int value_info(const Onnx__ValueInfoProto *vi, pv_value *v,
                      const char *role, bool required) {
  const char *name = v->name;
  const Onnx__TypeProto *tp = vi->type;
  if (!tp) {
    if (required)
      return pv_error(PV_EFORMAT, "%s '%s' has no type", role, name);
    return 0;
  }
  if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
    return pv_error(PV_EUNSUPPORTED, "%s '%s' is not a tensor (sequence, "
                    "map and optional types are not supported)", role, name);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  int32_t et = tt->has_elem_type ? tt->elem_type : 0;
  pv_dtype dt = dtype_of(et);
  if (dt == PV_UNDEFINED && (required || et != 0))
    return pv_error(PV_EUNSUPPORTED, "%s '%s' has element type %s (%d), "
                    "which is not supported", role, name, onnx_type_name(et),
                    (int)et);
  v->dtype = dt;
  if (!tt->shape) {
    v->ndim = -1;
    return 0;
  }
  if (tt->shape->n_dim > PV_MAX_DIMS)
    return pv_error(PV_EUNSUPPORTED, "%s '%s' has %zu dimensions; at most %d "
                    "are supported", role, name, tt->shape->n_dim,
                    PV_MAX_DIMS);
  v->ndim = (int)tt->shape->n_dim;
  for (int i = 0; i < v->ndim; i++) {
    const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
      if (d->dim_value < 0)
        return pv_error(PV_EFORMAT, "%s '%s' has negative dimension %lld at "
                        "axis %d", role, name, (long long)d->dim_value, i);
      v->dims[i] = d->dim_value;
    } else {
      v->dims[i] = PV_DIM_BATCH;
    }
  }
  return 0;
}

/* ------------------------------------------------------------ attributes */

static bool has_unknown_field(const ProtobufCMessage *m, uint32_t tag) {
  for (unsigned i = 0; i < m->n_unknown_fields; i++)
    if (m->unknown_fields[i].tag == tag) return true;
  return false;
}

/* The attribute's type: the `type` field, or for IR version 1 files (no
 * discriminator) whichever value field is present. */
static int attr_type(const Onnx__AttributeProto *a) {
  if (a->has_type) return a->type;
  if (has_unknown_field(&a->base, ATTR_FIELD_G)) return 5;
  if (has_unknown_field(&a->base, ATTR_FIELD_GRAPHS)) return 10;
  if (a->t) return PV_ATTR_TENSOR;
  if (a->has_f) return PV_ATTR_FLOAT;
  if (a->has_i) return PV_ATTR_INT;
  if (a->has_s) return PV_ATTR_STRING;
  if (a->n_floats) return PV_ATTR_FLOATS;
  if (a->n_ints) return PV_ATTR_INTS;
  if (a->n_strings) return PV_ATTR_STRINGS;
  if (a->n_tensors) return 9;
  return 0;
}

static char *bytes_dup(const ProtobufCBinaryData *b) {
  char *s = malloc(b->len + 1);
  if (!s) return NULL;
  if (b->len) memcpy(s, b->data, b->len);
  s[b->len] = 0;
  return s;
}

static void attr_free_tmp(pv_attr *a) {
  free(a->s);
  if (a->strings)
    for (int i = 0; i < a->n; i++) free(a->strings[i]);
  free(a->strings);
  pv_free(a->t.data);
}

/* Convert attribute `ap` of node `nname` (op `op`) and add it to node. */
static int add_attr(onnx_ctx *c, int node, const char *nname, const char *op,
                    const Onnx__AttributeProto *ap) {
  const char *an = nz(ap->name);
  if (!*an)
    return pv_error(PV_EFORMAT, "node '%s' (%s) has an attribute without a "
                    "name", nname, op);
  const pv_node *nd = &c->g->nodes[node];
  if (pv_node_attr(nd, an))
    return pv_error(PV_EFORMAT, "node '%s' (%s) has attribute '%s' twice",
                    nname, op, an);
  pv_attr a = {0};
  a.name = (char *)an;
  int type = attr_type(ap);
  int rc = 0;
  switch (type) {
  case PV_ATTR_FLOAT:
    a.f = ap->f;
    break;
  case PV_ATTR_INT:
    a.i = ap->i;
    break;
  case PV_ATTR_STRING:
    a.s = bytes_dup(&ap->s);
    if (!a.s) return pv_error(PV_ENOMEM, "out of memory");
    break;
  case PV_ATTR_TENSOR: {
    if (!ap->t)
      return pv_error(PV_EFORMAT, "node '%s' (%s): tensor attribute '%s' has "
                      "no tensor", nname, op, an);
    char what[256];
    snprintf(what, sizeof what, "attribute '%s' of node '%s' (%s)", an, nname,
             op);
    size_t nb;
    rc = tensor_from_proto(c, ap->t, what, &a.t, &nb);
    if (rc) return rc;
    break;
  }
  case PV_ATTR_FLOATS:
    if (ap->n_floats > INT_MAX) goto too_long;
    a.n = (int)ap->n_floats;
    a.floats = ap->floats;
    break;
  case PV_ATTR_INTS:
    if (ap->n_ints > INT_MAX) goto too_long;
    a.n = (int)ap->n_ints;
    a.ints = ap->ints;
    break;
  case PV_ATTR_STRINGS:
    if (ap->n_strings > INT_MAX) goto too_long;
    a.strings = calloc(ap->n_strings ? ap->n_strings : 1, sizeof(char *));
    if (!a.strings) return pv_error(PV_ENOMEM, "out of memory");
    a.n = (int)ap->n_strings;
    for (int i = 0; i < a.n; i++)
      if (!(a.strings[i] = bytes_dup(&ap->strings[i]))) {
        rc = pv_error(PV_ENOMEM, "out of memory");
        goto done;
      }
    break;
  case 5:
  case 10:
    return pv_error(PV_EUNSUPPORTED, "node '%s' (%s): attribute '%s' is a "
                    "subgraph; Loop and Scan are not supported (If is)",
                    nname, op, an);
  default:
    return pv_error(PV_EUNSUPPORTED, "node '%s' (%s): attribute '%s' has "
                    "type %s (%d), which is not supported", nname, op, an,
                    type == 9 ? "TENSORS" : type == 11 || type == 12
                    ? "SPARSE_TENSOR" : type == 0 ? "UNDEFINED" : "unknown",
                    type);
  }
  a.type = (pv_attr_type)type;
  rc = pv_node_add_attr(c->g, node, &a);
done:
  a.name = NULL;
  a.floats = NULL;
  a.ints = NULL;
  attr_free_tmp(&a);
  return rc;
too_long:
  return pv_error(PV_ERANGE, "node '%s' (%s): attribute '%s' is too long",
                  nname, op, an);
}

/* ------------------------------------------------------------ nodes */

/* A Constant node becomes a constant value: the runtime never sees it. */
static int constant_value(onnx_ctx *c, const Onnx__NodeProto *np,
                          const char *nname, int v) {
  if (np->n_attribute != 1)
    return pv_error(PV_EFORMAT, "node '%s' (Constant) needs exactly one "
                    "attribute, has %zu", nname, np->n_attribute);
  const Onnx__AttributeProto *ap = np->attribute[0];
  const char *an = nz(ap->name);
  int type = attr_type(ap);
  pv_tensor t = {0};
  size_t nb = 0;
  int rc;
  if (!strcmp(an, "value") && type == PV_ATTR_TENSOR && ap->t) {
    char what[256];
    snprintf(what, sizeof what, "value of node '%s' (Constant)", nname);
    rc = tensor_from_proto(c, ap->t, what, &t, &nb);
    if (rc) return rc;
  } else if (!strcmp(an, "value_float") && type == PV_ATTR_FLOAT) {
    t.dtype = PV_F32;
    t.ndim = 0;
    if ((rc = pv_tensor_alloc(&t))) return rc;
    *(float *)t.data = ap->f;
    nb = sizeof(float);
  } else if (!strcmp(an, "value_int") && type == PV_ATTR_INT) {
    t.dtype = PV_I64;
    t.ndim = 0;
    if ((rc = pv_tensor_alloc(&t))) return rc;
    *(int64_t *)t.data = ap->i;
    nb = sizeof(int64_t);
  } else if ((!strcmp(an, "value_floats") && type == PV_ATTR_FLOATS) ||
             (!strcmp(an, "value_ints") && type == PV_ATTR_INTS)) {
    bool fl = type == PV_ATTR_FLOATS;
    size_t n = fl ? ap->n_floats : ap->n_ints;
    t.dtype = fl ? PV_F32 : PV_I64;
    t.ndim = 1;
    t.dims[0] = (int64_t)n;
    if ((rc = pv_tensor_alloc(&t))) return rc;
    nb = pv_tensor_nbytes(&t);
    if (n) memcpy(t.data, fl ? (void *)ap->floats : (void *)ap->ints, nb);
  } else {
    return pv_error(PV_EUNSUPPORTED, "node '%s' (Constant): attribute '%s' "
                    "is not supported (value, value_float(s) and "
                    "value_int(s) are)", nname, an);
  }
  value_take(&c->g->values[v], &t, nb);
  return 0;
}

static bool default_domain(const char *d) {
  return !d || !*d || !strcmp(d, "ai.onnx");
}

/* The node's name for messages and the graph: exporters may leave it
 * empty, so fall back to "<op>_<index>". */
static const char *node_name(const Onnx__NodeProto *np, size_t i, char *buf,
                             size_t len) {
  if (np->name && *np->name) return np->name;
  snprintf(buf, len, "%s_%zu", nz(np->op_type), i);
  return buf;
}

/* First pass: validate each node and create the values it produces, so
 * inputs may refer to values produced later (checked for cycles by
 * pv_graph_compact). */
static int declare_outputs(onnx_ctx *c, Onnx__NodeProto *const *nodes,
                           size_t n_node) {
  for (size_t i = 0; i < n_node; i++) {
    const Onnx__NodeProto *np = nodes[i];
    char buf[64];
    const char *nname = node_name(np, i, buf, sizeof buf);
    const char *op = nz(np->op_type);
    if (!*op) return pv_error(PV_EFORMAT, "node '%s' has no op_type", nname);
    if (!default_domain(np->domain))
      return pv_error(PV_EUNSUPPORTED, "node '%s' (%s) is in operator domain "
                      "'%s'; only the default ONNX domain (and functions "
                      "the model defines) is supported",
                      nname, op, np->domain);
    if (np->n_output == 0)
      return pv_error(PV_EFORMAT, "node '%s' (%s) has no outputs", nname, op);
    if (np->n_input > INT_MAX || np->n_output > INT_MAX)
      return pv_error(PV_ERANGE, "node '%s' (%s) has too many inputs or "
                      "outputs", nname, op);
    /* Duplicate checks are quadratic per node; no ONNX op has more than a
     * few dozen attributes, so a huge count is an attack, not a model. */
    if (np->n_attribute > MAX_ATTRS)
      return pv_error(PV_ERANGE, "node '%s' (%s) has %zu attributes; at most "
                      "%d are supported", nname, op, np->n_attribute,
                      MAX_ATTRS);
    for (size_t j = 0; j < np->n_output; j++) {
      const char *on = nz(np->output[j]);
      if (!*on) continue; /* omitted optional output */
      char what[160];
      snprintf(what, sizeof what, "output of node '%.64s' (%.64s)", nname, op);
      int v = new_value(c, on, what);
      if (v < 0) return v;
      if (!strcmp(op, "Constant")) {
        if (np->n_output != 1 || np->n_input != 0)
          return pv_error(PV_EFORMAT, "node '%s' (Constant) must have no "
                          "inputs and one output", nname);
        int rc = constant_value(c, np, nname, v);
        if (rc) return rc;
      }
    }
  }
  return 0;
}

/* Second pass: resolve input names and add the nodes with attributes. */
static int add_nodes(onnx_ctx *c, Onnx__NodeProto *const *nodes,
                     size_t n_node) {
  int rc = 0;
  int *in = NULL, *out = NULL;
  for (size_t i = 0; i < n_node && !rc; i++) {
    const Onnx__NodeProto *np = nodes[i];
    const char *op = np->op_type;
    if (!strcmp(op, "Constant")) continue;
    char buf[64];
    const char *nname = node_name(np, i, buf, sizeof buf);
    in = malloc(sizeof(int) * (np->n_input ? np->n_input : 1));
    out = malloc(sizeof(int) * np->n_output);
    if (!in || !out) {
      rc = pv_error(PV_ENOMEM, "out of memory");
      break;
    }
    for (size_t j = 0; j < np->n_input && !rc; j++) {
      const char *iname = nz(np->input[j]);
      in[j] = *iname ? map_find(&c->names, iname) : -1;
      if (*iname && in[j] < 0)
        rc = pv_error(PV_ENOTFOUND, "node '%s' (%s): input '%s' is not a "
                      "graph input, an initializer or the output of any "
                      "node", nname, op, iname);
    }
    for (size_t j = 0; j < np->n_output; j++) {
      const char *oname = nz(np->output[j]);
      out[j] = *oname ? map_find(&c->names, oname) : -1;
    }
    int n = rc ? rc : pv_graph_add_node(c->g, nname, op, in, (int)np->n_input,
                                        out, (int)np->n_output);
    if (n < 0) {
      rc = n;
      break;
    }
    for (size_t j = 0; j < np->n_attribute && !rc; j++)
      rc = add_attr(c, n, nname, op, np->attribute[j]);
    free(in);
    free(out);
    in = out = NULL;
  }
  free(in);
  free(out);
  return rc;
}

/* ------------------------------------------------------------ functions */

/* Model-local functions (ModelProto.functions, IR 8) are inlined at load:
 * a node whose (domain, op_type, overload) names one is replaced by the
 * function's nodes, its formal inputs and outputs bound to the node's
 * actual ones, every other name made unique to the call, and attributes
 * that refer to the caller's (`ref_attr_name`) given the caller's value or
 * the function's default. Functions may call functions; the nesting depth
 * and the total node count are bounded, so a recursive or exponentially
 * nested file is an error, not a hang. */
#define FN_MAX_DEPTH 32
#define FN_MAX_NODES (1 << 20)

typedef struct fn_scope {
  const Onnx__FunctionProto *fn;
  const Onnx__NodeProto *call; /* the caller, already in the outer scope */
  char prefix[96];             /* made-unique names start with it */
} fn_scope;

typedef struct fn_ctx {
  const Onnx__ModelProto *m;
  Onnx__NodeProto **nodes; /* the flattened node list */
  size_t n, cap;
  void **allocs; /* everything made here, freed after the import */
  size_t n_allocs, cap_allocs;
  Onnx__GraphProto **subs; /* If branches unpacked here */
  size_t n_subs, cap_subs;
  unsigned calls;
} fn_ctx;

static void *fn_keep(fn_ctx *f, void *p) {
  if (!p) return NULL;
  if (f->n_allocs == f->cap_allocs) {
    size_t cap = f->cap_allocs ? f->cap_allocs * 2 : 64;
    void **a = realloc(f->allocs, cap * sizeof *a);
    if (!a) {
      free(p);
      return NULL;
    }
    f->allocs = a;
    f->cap_allocs = cap;
  }
  return f->allocs[f->n_allocs++] = p;
}

static void fn_free(fn_ctx *f) {
  for (size_t i = 0; i < f->n_allocs; i++) free(f->allocs[i]);
  free(f->allocs);
  for (size_t i = 0; i < f->n_subs; i++) onnx__graph_proto__free_unpacked(f->subs[i], NULL);
  free(f->subs);
  free(f->nodes);
}

static bool str_eq(const char *a, const char *b) {
  return !strcmp(nz(a), nz(b));
}

static const Onnx__FunctionProto *fn_find(const Onnx__ModelProto *m,
                                          const Onnx__NodeProto *np) {
  for (size_t i = 0; i < m->n_functions; i++) {
    const Onnx__FunctionProto *fn = m->functions[i];
    if (str_eq(fn->name, np->op_type) && str_eq(fn->overload, np->overload) &&
        (str_eq(fn->domain, np->domain) ||
         (default_domain(fn->domain) && default_domain(np->domain))))
      return fn;
  }
  return NULL;
}

/* A name of the function body in the caller's scope. */
static char *fn_rename(fn_ctx *f, const fn_scope *s, const char *name) {
  name = nz(name);
  if (!*name) return (char *)"";
  for (size_t i = 0; i < s->fn->n_input; i++)
    if (!strcmp(name, nz(s->fn->input[i])))
      return i < s->call->n_input ? s->call->input[i] : (char *)"";
  for (size_t i = 0; i < s->fn->n_output; i++)
    if (!strcmp(name, nz(s->fn->output[i])) && i < s->call->n_output &&
        *nz(s->call->output[i]))
      return s->call->output[i];
  size_t n = strlen(s->prefix) + strlen(name) + 1;
  char *r = fn_keep(f, malloc(n));
  if (r) snprintf(r, n, "%s%s", s->prefix, name);
  return r;
}

static int fn_push(fn_ctx *f, Onnx__NodeProto *np) {
  if (f->n >= FN_MAX_NODES)
    return pv_error(PV_ERANGE, "the model's functions expand to more than "
                    "%d nodes", FN_MAX_NODES);
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 256;
    Onnx__NodeProto **a = realloc(f->nodes, cap * sizeof *a);
    if (!a) return pv_error(PV_ENOMEM, "out of memory");
    f->nodes = a;
    f->cap = cap;
  }
  f->nodes[f->n++] = np;
  return 0;
}

/* A copy of body node `np` in the caller's scope `s`. */
static Onnx__NodeProto *fn_instance(fn_ctx *f, const fn_scope *s,
                                    const Onnx__NodeProto *np, size_t idx) {
  Onnx__NodeProto *q = fn_keep(f, malloc(sizeof *q));
  if (!q) return NULL;
  *q = *np;
  q->input = fn_keep(f, malloc(sizeof(char *) * (np->n_input + 1)));
  q->output = fn_keep(f, malloc(sizeof(char *) * (np->n_output + 1)));
  q->attribute = fn_keep(f, malloc(sizeof(void *) * (np->n_attribute + 1)));
  if (!q->input || !q->output || !q->attribute) return NULL;
  for (size_t j = 0; j < np->n_input; j++)
    if (!(q->input[j] = fn_rename(f, s, np->input[j]))) return NULL;
  for (size_t j = 0; j < np->n_output; j++)
    if (!(q->output[j] = fn_rename(f, s, np->output[j]))) return NULL;
  char buf[64];
  const char *inner = np->name && *np->name ? np->name : buf;
  if (inner == buf) snprintf(buf, sizeof buf, "%s_%zu", nz(np->op_type), idx);
  size_t n = strlen(s->prefix) + strlen(inner) + 1;
  if (!(q->name = fn_keep(f, malloc(n)))) return NULL;
  snprintf(q->name, n, "%s%s", s->prefix, inner);
  q->n_attribute = 0;
  for (size_t j = 0; j < np->n_attribute; j++) {
    Onnx__AttributeProto *a = np->attribute[j];
    const char *ref = nz(a->ref_attr_name);
    if (!*ref) {
      q->attribute[q->n_attribute++] = a;
      continue;
    }
    const Onnx__AttributeProto *v = NULL;
    for (size_t k = 0; k < s->call->n_attribute && !v; k++)
      if (!strcmp(nz(s->call->attribute[k]->name), ref))
        v = s->call->attribute[k];
    for (size_t k = 0; k < s->fn->n_attribute_proto && !v; k++)
      if (!strcmp(nz(s->fn->attribute_proto[k]->name), ref))
        v = s->fn->attribute_proto[k];
    if (!v) continue; /* neither given nor defaulted: left unset */
    Onnx__AttributeProto *c = fn_keep(f, malloc(sizeof *c));
    if (!c) return NULL;
    *c = *v;
    c->name = a->name;
    c->ref_attr_name = NULL;
    q->attribute[q->n_attribute++] = c;
  }
  return q;
}

/* ------------------------------------------------------------ If */

/* If runs one of two subgraphs, chosen by a boolean known only at run
 * time. It is flattened at load: each branch's nodes join the graph with
 * their names made unique to the branch ("IF/then/name"), names a branch
 * does not define read the enclosing scope, and every branch node gets a
 * guard, a BOOL value appended as its last input and marked by the
 * attribute `pv.guarded`: the engine runs the node only when the guard
 * holds (the then guard is the condition, the else guard its negation,
 * each And-ed with the enclosing branch's guard). The If node itself
 * becomes a select: inputs (cond, then outputs..., else outputs...), the
 * outputs those of the branch taken. Nested Ifs nest the scopes; the
 * nesting depth is bounded like functions'. */
#define IF_MAX_BRANCH_NODES 8192

typedef struct if_scope {
  const struct if_scope *up;
  const Onnx__GraphProto *g; /* the branch */
  const char *prefix;        /* "IF/then/" */
} if_scope;

static bool branch_defines(const Onnx__GraphProto *g, const char *name) {
  for (size_t i = 0; i < g->n_initializer; i++)
    if (!strcmp(nz(g->initializer[i]->name), name)) return true;
  for (size_t i = 0; i < g->n_node; i++)
    for (size_t j = 0; j < g->node[i]->n_output; j++)
      if (!strcmp(nz(g->node[i]->output[j]), name)) return true;
  return false;
}

static char *if_rename(fn_ctx *f, const if_scope *s, const char *name) {
  name = nz(name);
  if (!*name) return (char *)"";
  for (; s; s = s->up)
    if (branch_defines(s->g, name)) {
      size_t n = strlen(s->prefix) + strlen(name) + 1;
      char *r = fn_keep(f, malloc(n));
      if (r) snprintf(r, n, "%s%s", s->prefix, name);
      return r;
    }
  return (char *)name;
}

static char *kstrdup(fn_ctx *f, const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 1;
  char *r = fn_keep(f, malloc(n));
  if (r) snprintf(r, n, "%s%s", a, b);
  return r;
}

/* Append the guard as q's last input and mark it (q's input and
 * attribute arrays have room for one more). */
static void add_guard(Onnx__NodeProto *q, const char *guard) {
  static Onnx__AttributeProto guarded = {
      PROTOBUF_C_MESSAGE_INIT(&onnx__attribute_proto__descriptor),
      .name = (char *)"pv.guarded", .has_type = 1,
      .type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, .has_i = 1, .i = 1};
  q->input[q->n_input++] = (char *)guard;
  q->attribute[q->n_attribute++] = &guarded;
}

/* A new node: op, name, inputs, outputs (copied pointers), optionally
 * guarded. */
static Onnx__NodeProto *if_node(fn_ctx *f, const char *op, const char *name,
                                char **in, size_t n_in, char **out,
                                size_t n_out, const char *guard) {
  Onnx__NodeProto *q = fn_keep(f, malloc(sizeof *q));
  if (!q) return NULL;
  onnx__node_proto__init(q);
  q->op_type = (char *)op;
  q->name = (char *)name;
  q->input = fn_keep(f, malloc(sizeof(char *) * (n_in + 2)));
  q->output = fn_keep(f, malloc(sizeof(char *) * (n_out + 1)));
  q->attribute = fn_keep(f, malloc(sizeof(void *) * 1));
  if (!q->input || !q->output || !q->attribute) return NULL;
  if (n_in) memcpy(q->input, in, sizeof(char *) * n_in);
  if (n_out) memcpy(q->output, out, sizeof(char *) * n_out);
  q->n_input = n_in;
  q->n_output = n_out;
  if (guard) add_guard(q, guard);
  return q;
}

/* Branch `an` of If node np, unpacked from the attribute's bytes (the
 * field is not in our onnx.proto, so nesting stays under our control). */
static int if_branch(fn_ctx *f, const Onnx__NodeProto *np, const char *an,
                     Onnx__GraphProto **out) {
  *out = NULL;
  for (size_t i = 0; i < np->n_attribute; i++) {
    const Onnx__AttributeProto *a = np->attribute[i];
    if (strcmp(nz(a->name), an)) continue;
    for (unsigned k = 0; k < a->base.n_unknown_fields; k++) {
      const ProtobufCMessageUnknownField *u = &a->base.unknown_fields[k];
      if (u->tag != ATTR_FIELD_G || u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
        continue;
      /* protobuf-c keeps the field's bytes with their length prefix. */
      size_t pl = 0, len = 0;
      unsigned shift = 0;
      while (pl < u->len && pl < 10) {
        uint8_t byte = u->data[pl++];
        len |= (size_t)(byte & 0x7f) << shift;
        shift += 7;
        if (!(byte & 0x80)) break;
      }
      Onnx__GraphProto *g = len == u->len - pl
                                ? onnx__graph_proto__unpack(NULL, len, u->data + pl)
                                : NULL;
      if (!g)
        return pv_error(PV_EFORMAT, "node '%s' (If): attribute '%s' is not a "
                        "valid graph", nz(np->name), an);
      if (f->n_subs == f->cap_subs) {
        size_t cap = f->cap_subs ? f->cap_subs * 2 : 8;
        Onnx__GraphProto **a2 = realloc(f->subs, cap * sizeof *a2);
        if (!a2) {
          onnx__graph_proto__free_unpacked(g, NULL);
          return pv_error(PV_ENOMEM, "out of memory");
        }
        f->subs = a2;
        f->cap_subs = cap;
      }
      f->subs[f->n_subs++] = g;
      *out = g;
      return 0;
    }
  }
  return pv_error(PV_EFORMAT, "node '%s' (If) has no graph attribute '%s'",
                  nz(np->name), an);
}

static int if_expand(fn_ctx *f, const Onnx__NodeProto *np, const char *guard,
                     const if_scope *up, int depth);

/* The nodes of branch g in scope s, each guarded by `guard`. */
static int if_push_branch(fn_ctx *f, const Onnx__GraphProto *g, const if_scope *s,
                          const char *guard, int depth) {
  if (g->n_node > IF_MAX_BRANCH_NODES)
    return pv_error(PV_ERANGE, "an If branch has %zu nodes; at most %d are "
                    "supported", g->n_node, IF_MAX_BRANCH_NODES);
  /* Initializers of the branch become Constant nodes. */
  for (size_t i = 0; i < g->n_initializer; i++) {
    Onnx__TensorProto *tp = g->initializer[i];
    Onnx__AttributeProto *a = fn_keep(f, malloc(sizeof *a));
    if (!a) return pv_error(PV_ENOMEM, "out of memory");
    onnx__attribute_proto__init(a);
    a->name = (char *)"value";
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    a->t = tp;
    char *o = if_rename(f, s, tp->name);
    if (!o) return pv_error(PV_ENOMEM, "out of memory");
    if (!*o) return pv_error(PV_EFORMAT, "an If branch has an initializer without a name");
    Onnx__NodeProto *q = if_node(f, "Constant", o, NULL, 0, &o, 1, NULL);
    if (!q) return pv_error(PV_ENOMEM, "out of memory");
    q->attribute[0] = a;
    q->n_attribute = 1;
    int rc = fn_push(f, q);
    if (rc) return rc;
  }
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *np = g->node[i];
    Onnx__NodeProto *q = fn_keep(f, malloc(sizeof *q));
    if (!q) return pv_error(PV_ENOMEM, "out of memory");
    *q = *np;
    q->input = fn_keep(f, malloc(sizeof(char *) * (np->n_input + 2)));
    q->output = fn_keep(f, malloc(sizeof(char *) * (np->n_output + 1)));
    q->attribute = fn_keep(f, malloc(sizeof(void *) * (np->n_attribute + 1)));
    if (!q->input || !q->output || !q->attribute) return pv_error(PV_ENOMEM, "out of memory");
    for (size_t j = 0; j < np->n_input; j++)
      if (!(q->input[j] = if_rename(f, s, np->input[j]))) return pv_error(PV_ENOMEM, "out of memory");
    for (size_t j = 0; j < np->n_output; j++)
      if (!(q->output[j] = if_rename(f, s, np->output[j]))) return pv_error(PV_ENOMEM, "out of memory");
    char buf[64];
    snprintf(buf, sizeof buf, "%s_%zu", nz(np->op_type), i);
    if (!(q->name = kstrdup(f, s->prefix, np->name && *np->name ? np->name : buf)))
      return pv_error(PV_ENOMEM, "out of memory");
    if (np->n_attribute) memcpy(q->attribute, np->attribute, sizeof(void *) * np->n_attribute);
    int rc;
    if (default_domain(np->domain) && str_eq(np->op_type, "If")) {
      rc = if_expand(f, q, guard, s, depth + 1);
    } else if (default_domain(np->domain) && fn_find(f->m, np)) {
      rc = pv_error(PV_EUNSUPPORTED, "node '%s' calls model function '%s' "
                    "inside an If branch, which is not supported", nz(np->name),
                    nz(np->op_type));
    } else if (default_domain(np->domain) && str_eq(np->op_type, "Constant")) {
      rc = fn_push(f, q); /* a value, not a computation: no guard */
    } else {
      add_guard(q, guard);
      rc = fn_push(f, q);
    }
    if (rc) return rc;
  }
  return 0;
}

static int if_expand(fn_ctx *f, const Onnx__NodeProto *np, const char *guard,
                     const if_scope *up, int depth) {
  const char *name = nz(np->name);
  if (depth >= FN_MAX_DEPTH)
    return pv_error(PV_EFORMAT, "node '%s' (If): Ifs nest more than %d deep",
                    name, FN_MAX_DEPTH);
  if (np->n_input != 1 || !*nz(np->input[0]))
    return pv_error(PV_EFORMAT, "node '%s' (If) needs one input, the condition",
                    name);
  Onnx__GraphProto *br[2];
  int rc;
  if ((rc = if_branch(f, np, "then_branch", &br[0])) ||
      (rc = if_branch(f, np, "else_branch", &br[1])))
    return rc;
  for (int b = 0; b < 2; b++)
    if (br[b]->n_output != np->n_output)
      return pv_error(PV_EFORMAT, "node '%s' (If): the %s branch has %zu "
                      "outputs, the node %zu", name, b ? "else" : "then",
                      br[b]->n_output, np->n_output);
  /* A unique prefix per If (names of nested ones repeat per call). */
  char pre[128];
  snprintf(pre, sizeof pre, "%.96s#%u/", *name ? name : "If", f->calls++);
  char *cond = np->input[0];
  /* Guards: then = cond, else = Not(cond), And-ed with the enclosing one. */
  char *g[2], *ncond = kstrdup(f, pre, "not_cond");
  if (!ncond) return pv_error(PV_ENOMEM, "out of memory");
  Onnx__NodeProto *q = if_node(f, "Not", ncond, &cond, 1, &ncond, 1, guard);
  if (!q || (rc = fn_push(f, q))) return q ? rc : pv_error(PV_ENOMEM, "out of memory");
  g[0] = cond;
  g[1] = ncond;
  if (guard) {
    for (int b = 0; b < 2; b++) {
      char *in[2] = {(char *)guard, g[b]};
      char *o = kstrdup(f, pre, b ? "else_guard" : "then_guard");
      if (!o) return pv_error(PV_ENOMEM, "out of memory");
      q = if_node(f, "And", o, in, 2, &o, 1, guard);
      if (!q || (rc = fn_push(f, q))) return q ? rc : pv_error(PV_ENOMEM, "out of memory");
      g[b] = o;
    }
  }
  /* The select reads each branch's outputs in that branch's scope. */
  size_t k = np->n_output;
  char **sel = fn_keep(f, malloc(sizeof(char *) * (2 * k + 1)));
  if (!sel) return pv_error(PV_ENOMEM, "out of memory");
  sel[0] = cond;
  for (int b = 0; b < 2; b++) {
    if_scope sc = {.up = up, .g = br[b], .prefix = kstrdup(f, pre, b ? "else/" : "then/")};
    if (!sc.prefix) return pv_error(PV_ENOMEM, "out of memory");
    if ((rc = if_push_branch(f, br[b], &sc, g[b], depth))) return rc;
    for (size_t j = 0; j < k; j++) {
      const char *on = nz(br[b]->output[j]->name);
      if (!*on)
        return pv_error(PV_EFORMAT, "node '%s' (If): output %zu of the %s "
                        "branch has no name", name, j, b ? "else" : "then");
      if (!(sel[1 + b * k + j] = if_rename(f, &sc, on)))
        return pv_error(PV_ENOMEM, "out of memory");
    }
  }
  q = if_node(f, "If", name, sel, 2 * k + 1, np->output, k, guard);
  if (!q) return pv_error(PV_ENOMEM, "out of memory");
  return fn_push(f, q);
}

static int fn_expand(fn_ctx *f, Onnx__NodeProto *const *nodes, size_t n,
                     const fn_scope *s, int depth) {
  for (size_t i = 0; i < n; i++) {
    Onnx__NodeProto *np = nodes[i];
    if (s && !(np = fn_instance(f, s, np, i)))
      return pv_error(PV_ENOMEM, "out of memory");
    if (default_domain(np->domain) && str_eq(np->op_type, "If")) {
      if (s)
        return pv_error(PV_EUNSUPPORTED, "node '%s' (If) is inside model "
                        "function '%s', which is not supported", nz(np->name),
                        nz(s->fn->name));
      int rc = if_expand(f, np, NULL, NULL, depth);
      if (rc) return rc;
      continue;
    }
    const Onnx__FunctionProto *fn = fn_find(f->m, np);
    if (!fn) {
      int rc = fn_push(f, np);
      if (rc) return rc;
      continue;
    }
    if (depth >= FN_MAX_DEPTH)
      return pv_error(PV_EFORMAT, "function '%s' nests more than %d calls "
                      "deep (a recursive function?)", nz(fn->name),
                      FN_MAX_DEPTH);
    if (np->n_input > fn->n_input || np->n_output > fn->n_output)
      return pv_error(PV_EFORMAT, "node '%s' calls function '%s' with %zu "
                      "inputs and %zu outputs; it declares %zu and %zu",
                      nz(np->name), nz(fn->name), np->n_input, np->n_output,
                      fn->n_input, fn->n_output);
    fn_scope in = {.fn = fn, .call = np};
    snprintf(in.prefix, sizeof in.prefix, "%.64s#%u/",
             np->name && *np->name ? np->name : nz(fn->name), f->calls++);
    int rc = fn_expand(f, fn->node, fn->n_node, &in, depth + 1);
    if (rc) return rc;
  }
  return 0;
}

/* A function's default-domain opset must be the model's: one graph runs
 * with one opset's semantics. */
static int fn_check_opsets(const Onnx__ModelProto *m, int opset) {
  for (size_t i = 0; i < m->n_functions; i++) {
    const Onnx__FunctionProto *fn = m->functions[i];
    if (!fn->name || !*fn->name)
      return pv_error(PV_EFORMAT, "model function #%zu has no name", i);
    for (size_t j = 0; j < fn->n_opset_import; j++) {
      const Onnx__OperatorSetIdProto *o = fn->opset_import[j];
      if (default_domain(o->domain) && o->has_version && o->version != opset)
        return pv_error(PV_EUNSUPPORTED, "function '%s' imports ONNX opset "
                        "%lld and the model opset %d; pivotd runs a model "
                        "with one opset", fn->name, (long long)o->version,
                        opset);
    }
  }
  return 0;
}

/* ------------------------------------------------------------ graph */

static int import_opset(pv_graph *g, const Onnx__ModelProto *m) {
  int64_t opset = -1;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    if (default_domain(o->domain) && o->has_version && o->version > opset)
      opset = o->version;
  }
  if (opset < 0)
    return pv_error(PV_EUNSUPPORTED, "model imports no opset of the default "
                    "ONNX domain (opset_import)");
  if (opset < OPSET_MIN || opset > OPSET_MAX)
    return pv_error(PV_EUNSUPPORTED, "model uses ONNX opset %lld; supported "
                    "opsets are %d to %d", (long long)opset, OPSET_MIN,
                    OPSET_MAX);
  g->opset = (int)opset;
  return 0;
}

static int import_meta(pv_graph *g, const Onnx__ModelProto *m) {
  int rc = 0;
  if (m->producer_name && *m->producer_name)
    rc = pv_graph_set_meta(g, "producer_name", m->producer_name);
  if (!rc && m->producer_version && *m->producer_version)
    rc = pv_graph_set_meta(g, "producer_version", m->producer_version);
  for (size_t i = 0; i < m->n_metadata_props && !rc; i++) {
    const Onnx__StringStringEntryProto *e = m->metadata_props[i];
    if (e->key && *e->key)
      rc = pv_graph_set_meta(g, e->key, nz(e->value));
  }
  return rc;
}

static int import_graph(onnx_ctx *c, const Onnx__GraphProto *gp) {
  pv_graph *g = c->g;
  int rc;
  if (gp->name && !(g->name = strdup(gp->name)))
    return pv_error(PV_ENOMEM, "out of memory");
  /* Left out of onnx.proto; say so rather than report its names missing. */
  if (has_unknown_field(&gp->base, GRAPH_FIELD_SPARSE_INIT))
    return pv_error(PV_EUNSUPPORTED, "sparse initializers are not "
                    "supported");

  for (size_t i = 0; i < gp->n_initializer; i++) {
    Onnx__TensorProto *tp = gp->initializer[i];
    const char *name = nz(tp->name);
    if (!*name)
      return pv_error(PV_EFORMAT, "initializer #%zu has no name", i);
    char what[256];
    snprintf(what, sizeof what, "initializer '%s'", name);
    int v = new_value(c, name, "an initializer");
    if (v < 0) return v;
    pv_tensor t;
    size_t nb;
    if ((rc = tensor_from_proto(c, tp, what, &t, &nb))) return rc;
    value_take(&g->values[v], &t, nb);
    /* The copy is made: give the protobuf's bytes back now rather than
     * at the end, so the weights are never held three times. protobuf-c
     * allocated them with malloc (NULL allocator) and skips NULL when
     * freeing the message. */
    if (tp->has_raw_data && tp->raw_data.data) {
      free(tp->raw_data.data);
      tp->raw_data.data = NULL;
      tp->raw_data.len = 0;
    }
  }

  /* Inputs that are initializers only declare a default: not runtime
   * inputs. */
  g->inputs = malloc(sizeof(int) * (gp->n_input ? gp->n_input : 1));
  g->outputs = malloc(sizeof(int) * (gp->n_output ? gp->n_output : 1));
  if (!g->inputs || !g->outputs) return pv_error(PV_ENOMEM, "out of memory");
  for (size_t i = 0; i < gp->n_input; i++) {
    const char *name = nz(gp->input[i]->name);
    if (!*name) return pv_error(PV_EFORMAT, "graph input #%zu has no name", i);
    int v = map_find(&c->names, name);
    if (v >= 0 && g->values[v].data) continue;
    if (v >= 0)
      return pv_error(PV_EFORMAT, "graph input '%s' is listed twice", name);
    if ((v = new_value(c, name, "a graph input")) < 0) return v;
    if ((rc = value_info(gp->input[i], &g->values[v], "graph input", true)))
      return rc;
    g->inputs[g->n_inputs++] = v;
  }

  /* The graph's nodes, or with model-local functions the flattened list
   * their calls expand to. */
  fn_ctx f = {.m = c->model};
  Onnx__NodeProto *const *nodes = gp->node;
  size_t n_nodes = gp->n_node;
  rc = 0;
  bool has_if = false;
  for (size_t i = 0; i < gp->n_node && !has_if; i++)
    has_if = default_domain(gp->node[i]->domain) && str_eq(gp->node[i]->op_type, "If");
  if (c->model->n_functions || has_if) {
    rc = fn_check_opsets(c->model, g->opset);
    if (!rc) rc = fn_expand(&f, gp->node, gp->n_node, NULL, 0);
    nodes = f.nodes;
    n_nodes = f.n;
  }
  if (!rc) rc = declare_outputs(c, nodes, n_nodes);
  if (!rc) rc = add_nodes(c, nodes, n_nodes);
  fn_free(&f);
  if (rc) return rc;

  if (gp->n_output == 0) return pv_error(PV_EFORMAT, "graph has no outputs");
  for (size_t i = 0; i < gp->n_output; i++) {
    const char *name = nz(gp->output[i]->name);
    int v = map_find(&c->names, name);
    if (v < 0)
      return pv_error(PV_ENOTFOUND, "graph output '%s' is not produced by any "
                      "node, input or initializer", name);
    pv_value *val = &g->values[v];
    /* The declared type of a computed output is a hint for clients; the
     * shape of inputs and constants is already known. */
    if (!val->data && val->producer >= 0 &&
        (rc = value_info(gp->output[i], val, "graph output", false)))
      return rc;
    g->outputs[g->n_outputs++] = v;
  }
  return 0;
}

/* Unpack a model; NULL with the message set when it is not a protobuf. */
static Onnx__ModelProto *unpack(const void *buf, size_t len) {
  static const uint8_t empty[1];
  Onnx__ModelProto *m =
      onnx__model_proto__unpack(NULL, len, buf ? buf : empty);
  if (!m)
    pv_error(PV_EFORMAT, "not a valid ONNX protobuf (truncated or corrupt)");
  return m;
}

/* Convert and free an unpacked model (ownership of m is taken). */
static pv_graph *convert(Onnx__ModelProto *m, const char *base_dir) {
  onnx_ctx c = {0};
  c.base_dir = base_dir;
  c.model = m;
  if (!m->graph) {
    pv_error(PV_EFORMAT, "not an ONNX model: it has no graph");
    goto out_model;
  }
  if (!(c.g = pv_graph_new())) goto out_model;
  c.names.g = c.g;
  if (import_opset(c.g, m) || import_meta(c.g, m) ||
      import_graph(&c, m->graph) || pv_graph_compact(c.g)) {
    pv_graph_free(c.g);
    c.g = NULL;
  }
out_model:
  free(c.names.slot);
  onnx__model_proto__free_unpacked(m, NULL);
  return c.g;
}

pv_graph *pv_onnx_load_mem(const void *buf, size_t len, const char *base_dir) {
  if (!buf && len) {
    pv_error(PV_EINVAL, "NULL buffer");
    return NULL;
  }
  Onnx__ModelProto *m = unpack(buf, len);
  return m ? convert(m, base_dir) : NULL;
}

pv_graph *pv_onnx_load(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    pv_error(PV_EIO, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    pv_error(PV_EIO, "%s: not a regular file", path);
    return NULL;
  }
  size_t len = (size_t)st.st_size;
  void *map = NULL;
  if (len) {
    map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      pv_error(PV_EIO, "%s: cannot map: %s", path, strerror(errno));
      close(fd);
      return NULL;
    }
    madvise(map, len, MADV_SEQUENTIAL);
  }
  close(fd);
  /* protobuf-c copies everything it keeps, so the file can go before the
   * conversion makes its own copies: peak memory is twice the model, not
   * three times. */
  Onnx__ModelProto *m = unpack(map, len);
  if (map) munmap(map, len);
  if (!m) {
    pv_error_prefix(PV_EFORMAT, "%s", path);
    return NULL;
  }
  /* External data lives next to the model file. */
  char *dir = strdup(path);
  if (!dir) {
    onnx__model_proto__free_unpacked(m, NULL);
    pv_error(PV_ENOMEM, "out of memory");
    return NULL;
  }
  char *slash = strrchr(dir, '/');
  if (!slash)
    strcpy(dir, ".");
  else if (slash == dir)
    dir[1] = 0;
  else
    *slash = 0;
  pv_graph *g = convert(m, dir);
  if (!g) pv_error_prefix(PV_EFORMAT, "%s", path);
  free(dir);
  return g;
}
