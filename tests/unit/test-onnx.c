/* ONNX import: models built here with the protobuf-c API, packed, and
 * loaded with pv_onnx_load_mem; bad models must fail with a message that
 * names what is wrong. A model written by the onnx Python package checks
 * the schema against the real one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cunit-main.h"
#include "onnx.pb-c.h"
#include "pivot.h"

/* ------------------------------------------------------------ builders */

/* Everything a test builds is freed at once by arena_free(). */
static void *arena[4096];
static int n_arena;

static void *A(size_t n) {
  void *p = calloc(1, n ? n : 1);
  CU_ASSERT_FATAL(p != NULL && n_arena < 4096);
  arena[n_arena++] = p;
  return p;
}

static void arena_free(void) {
  while (n_arena) free(arena[--n_arena]);
}

static char *S(const char *s) {
  char *d = A(strlen(s) + 1);
  strcpy(d, s);
  return d;
}

#define NEW(type, init) \
  ({ type *p_ = A(sizeof(type)); type i_ = init; *p_ = i_; p_; })

#define MAXN 32

static Onnx__GraphProto *graph_new(void) {
  Onnx__GraphProto *g = NEW(Onnx__GraphProto, ONNX__GRAPH_PROTO__INIT);
  g->node = A(sizeof(void *) * MAXN);
  g->initializer = A(sizeof(void *) * MAXN);
  g->input = A(sizeof(void *) * MAXN);
  g->output = A(sizeof(void *) * MAXN);
  g->name = S("test");
  return g;
}

/* A tensor value info; dims < 0 become the symbolic "N". */
static Onnx__ValueInfoProto *vinfo(const char *name, int elem, int ndim,
                                   const int64_t *dims) {
  Onnx__ValueInfoProto *v =
      NEW(Onnx__ValueInfoProto, ONNX__VALUE_INFO_PROTO__INIT);
  v->name = S(name);
  v->type = NEW(Onnx__TypeProto, ONNX__TYPE_PROTO__INIT);
  v->type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  Onnx__TypeProto__Tensor *tt =
      NEW(Onnx__TypeProto__Tensor, ONNX__TYPE_PROTO__TENSOR__INIT);
  v->type->tensor_type = tt;
  tt->has_elem_type = 1;
  tt->elem_type = elem;
  if (ndim < 0) return v;
  tt->shape = NEW(Onnx__TensorShapeProto, ONNX__TENSOR_SHAPE_PROTO__INIT);
  tt->shape->n_dim = (size_t)ndim;
  tt->shape->dim = A(sizeof(void *) * (ndim ? ndim : 1));
  for (int i = 0; i < ndim; i++) {
    Onnx__TensorShapeProto__Dimension *d = NEW(
        Onnx__TensorShapeProto__Dimension,
        ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT);
    if (dims[i] >= 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = dims[i];
    } else {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = S("N");
    }
    tt->shape->dim[i] = d;
  }
  return v;
}

static Onnx__TensorProto *tensor(const char *name, int dtype, int ndim,
                                 const int64_t *dims) {
  Onnx__TensorProto *t = NEW(Onnx__TensorProto, ONNX__TENSOR_PROTO__INIT);
  if (name) t->name = S(name);
  t->has_data_type = 1;
  t->data_type = dtype;
  t->n_dims = (size_t)ndim;
  t->dims = A(sizeof(int64_t) * (ndim ? ndim : 1));
  if (ndim) memcpy(t->dims, dims, sizeof(int64_t) * ndim);
  return t;
}

static void set_raw(Onnx__TensorProto *t, const void *data, size_t len) {
  t->has_raw_data = 1;
  t->raw_data.len = len;
  t->raw_data.data = A(len);
  memcpy(t->raw_data.data, data, len);
}

static Onnx__NodeProto *node(Onnx__GraphProto *g, const char *op,
                             const char *name, const char *ins,
                             const char *outs) {
  Onnx__NodeProto *n = NEW(Onnx__NodeProto, ONNX__NODE_PROTO__INIT);
  n->op_type = S(op);
  if (name) n->name = S(name);
  n->input = A(sizeof(char *) * MAXN);
  n->output = A(sizeof(char *) * MAXN);
  n->attribute = A(sizeof(void *) * MAXN);
  /* ins/outs: comma-separated names; "" between commas = omitted */
  const char *lists[2] = {ins, outs};
  for (int k = 0; k < 2; k++) {
    if (!lists[k]) continue;
    char *copy = S(lists[k]);
    for (char *p = copy;;) {
      char *c = strchr(p, ',');
      if (c) *c = 0;
      if (k == 0)
        n->input[n->n_input++] = p;
      else
        n->output[n->n_output++] = p;
      if (!c) break;
      p = c + 1;
    }
  }
  g->node[g->n_node++] = n;
  return n;
}

static Onnx__AttributeProto *attr(Onnx__NodeProto *n, const char *name,
                                  int type) {
  Onnx__AttributeProto *a =
      NEW(Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT);
  a->name = S(name);
  if (type) {
    a->has_type = 1;
    a->type = type;
  }
  n->attribute[n->n_attribute++] = a;
  return a;
}

/* Give message m an (empty) length-prefixed field our schema lacks, as
 * protobuf-c packs unknown fields back as they came. */
static void add_unknown(ProtobufCMessage *m, uint32_t tag) {
  ProtobufCMessageUnknownField *u = A(sizeof *u);
  u->tag = tag;
  u->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
  u->len = 1;
  u->data = A(1); /* a zero-length submessage: its length byte, 0 */
  m->n_unknown_fields = 1;
  m->unknown_fields = u;
}

/* Scalars must be marked present or protobuf-c does not pack them. */
static void attr_f(Onnx__NodeProto *n, const char *name, float f) {
  Onnx__AttributeProto *a = attr(n, name, 1);
  a->has_f = 1;
  a->f = f;
}

static void attr_i(Onnx__NodeProto *n, const char *name, int64_t i) {
  Onnx__AttributeProto *a = attr(n, name, 2);
  a->has_i = 1;
  a->i = i;
}

/* Pack a model around g with the given opset; the caller frees. */
static uint8_t *pack_model(Onnx__GraphProto *g, int64_t opset,
                           const char *domain, size_t *len) {
  Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
  Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT;
  Onnx__OperatorSetIdProto *osp = &os;
  Onnx__StringStringEntryProto kv = ONNX__STRING_STRING_ENTRY_PROTO__INIT;
  Onnx__StringStringEntryProto *kvp = &kv;
  m.has_ir_version = 1;
  m.ir_version = 8;
  m.producer_name = "pivot-test";
  m.producer_version = "1.2";
  os.domain = (char *)domain;
  os.has_version = 1;
  os.version = opset;
  m.n_opset_import = 1;
  m.opset_import = &osp;
  kv.key = "labels";
  kv.value = "cat,dog";
  m.n_metadata_props = 1;
  m.metadata_props = &kvp;
  m.graph = g;
  *len = onnx__model_proto__get_packed_size(&m);
  uint8_t *buf = malloc(*len ? *len : 1);
  CU_ASSERT_FATAL(buf != NULL);
  CU_ASSERT_FATAL(onnx__model_proto__pack(&m, buf) == *len);
  return buf;
}

static pv_graph *load(Onnx__GraphProto *g, int64_t opset, const char *dir) {
  size_t len;
  uint8_t *buf = pack_model(g, opset, "", &len);
  pv_graph *pg = pv_onnx_load_mem(buf, len, dir);
  free(buf);
  return pg;
}

/* Load must fail and the message contain every word given. */
static void expect_fail(Onnx__GraphProto *g, int64_t opset, const char *dir,
                        const char *w1, const char *w2) {
  pv_graph *pg = load(g, opset, dir);
  CU_ASSERT_PTR_NULL(pg);
  if (pg) pv_graph_free(pg);
  const char *m = pv_errmsg();
  if (w1 && !strstr(m, w1)) fprintf(stderr, "\n  message: %s (want %s)\n", m, w1);
  CU_ASSERT_PTR_NOT_NULL(w1 ? strstr(m, w1) : m);
  CU_ASSERT_PTR_NOT_NULL(w2 ? strstr(m, w2) : m);
}

/* y = x @ W + B with a symbolic batch, the smallest realistic model. */
static Onnx__GraphProto *mlp(void) {
  Onnx__GraphProto *g = graph_new();
  int64_t xd[2] = {-1, 3}, wd[2] = {3, 2}, bd[1] = {2}, yd[2] = {-1, 2};
  g->input[g->n_input++] = vinfo("x", 1, 2, xd);
  Onnx__TensorProto *w = tensor("W", 1, 2, wd);
  float wv[6] = {1, 2, 3, 4, 5, 6};
  set_raw(w, wv, sizeof wv);
  Onnx__TensorProto *b = tensor("B", 1, 1, bd);
  b->n_float_data = 2;
  b->float_data = A(2 * sizeof(float));
  b->float_data[0] = 0.5f;
  b->float_data[1] = -1.5f;
  g->initializer[g->n_initializer++] = w;
  g->initializer[g->n_initializer++] = b;
  /* ONNX allows initializers to be listed as inputs (default values). */
  g->input[g->n_input++] = vinfo("W", 1, 2, wd);
  node(g, "MatMul", "mm", "x,W", "h");
  node(g, "Add", NULL, "h,B", "y");
  g->output[g->n_output++] = vinfo("y", 1, 2, yd);
  return g;
}

/* ------------------------------------------------------------ tests */

static void test_mlp(void) {
  pv_graph *g = load(mlp(), 13, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g);
  CU_ASSERT_EQUAL(g->opset, 13);
  CU_ASSERT_STRING_EQUAL(g->name, "test");
  CU_ASSERT_EQUAL(g->n_inputs, 1);
  const pv_value *x = &g->values[g->inputs[0]];
  CU_ASSERT_STRING_EQUAL(x->name, "x");
  CU_ASSERT_EQUAL(x->dtype, PV_F32);
  CU_ASSERT_EQUAL(x->ndim, 2);
  CU_ASSERT_EQUAL(x->dims[0], PV_DIM_BATCH);
  CU_ASSERT_EQUAL(x->dims[1], 3);
  CU_ASSERT_PTR_NULL(x->data);

  int w = pv_graph_find_value(g, "W"), b = pv_graph_find_value(g, "B");
  CU_ASSERT_FATAL(w >= 0 && b >= 0);
  const pv_value *wv = &g->values[w];
  CU_ASSERT_EQUAL(wv->ndim, 2);
  CU_ASSERT_EQUAL(wv->dims[0], 3);
  CU_ASSERT_EQUAL(wv->dims[1], 2);
  CU_ASSERT_EQUAL(wv->nbytes, 24);
  CU_ASSERT_FATAL(wv->data != NULL);
  CU_ASSERT_EQUAL((uintptr_t)wv->data % 64, 0);
  CU_ASSERT_EQUAL(((float *)wv->data)[5], 6.0f);
  CU_ASSERT_EQUAL(((float *)g->values[b].data)[1], -1.5f);

  CU_ASSERT_EQUAL_FATAL(g->n_nodes, 2);
  CU_ASSERT_STRING_EQUAL(g->nodes[0].op, "MatMul");
  CU_ASSERT_STRING_EQUAL(g->nodes[0].name, "mm");
  CU_ASSERT_EQUAL(g->nodes[0].in[0], g->inputs[0]);
  CU_ASSERT_EQUAL(g->nodes[0].in[1], w);
  CU_ASSERT_STRING_EQUAL(g->nodes[1].op, "Add");
  CU_ASSERT_STRING_EQUAL(g->nodes[1].name, "Add_1"); /* unnamed node */
  CU_ASSERT_EQUAL(g->nodes[1].in[0], g->nodes[0].out[0]);

  CU_ASSERT_EQUAL_FATAL(g->n_outputs, 1);
  const pv_value *y = &g->values[g->outputs[0]];
  CU_ASSERT_STRING_EQUAL(y->name, "y");
  CU_ASSERT_EQUAL(y->producer, 1);
  CU_ASSERT_EQUAL(y->ndim, 2);
  CU_ASSERT_EQUAL(y->dims[0], PV_DIM_BATCH);
  CU_ASSERT_EQUAL(y->dims[1], 2);

  CU_ASSERT_STRING_EQUAL(pv_graph_get_meta(g, "producer_name"), "pivot-test");
  CU_ASSERT_STRING_EQUAL(pv_graph_get_meta(g, "producer_version"), "1.2");
  CU_ASSERT_STRING_EQUAL(pv_graph_get_meta(g, "labels"), "cat,dog");
  pv_graph_free(g);
  arena_free();
}

/* Nodes listed out of order are sorted; unknown rank stays unknown. */
static void test_unsorted_and_unknown_rank(void) {
  Onnx__GraphProto *g = graph_new();
  g->input[g->n_input++] = vinfo("x", 1, -1, NULL);
  node(g, "Relu", "second", "a", "b");
  node(g, "Relu", "first", "x", "a");
  g->output[g->n_output++] = vinfo("b", 1, -1, NULL);
  pv_graph *pg = load(g, 17, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pg);
  CU_ASSERT_EQUAL(pg->values[pg->inputs[0]].ndim, -1);
  CU_ASSERT_STRING_EQUAL(pg->nodes[0].name, "first");
  CU_ASSERT_STRING_EQUAL(pg->nodes[1].name, "second");
  pv_graph_free(pg);
  arena_free();
}

/* Every dtype through its typed field (int32_data narrows to the small
 * types, uint64_data to uint32) and through raw_data. */
static void test_typed_initializers(void) {
  Onnx__GraphProto *g = graph_new();
  int64_t d3[1] = {3};
  static const struct {
    const char *name;
    int dtype;
  } ts[] = {{"i8", PV_I8},   {"u8", PV_U8},   {"i16", PV_I16},
            {"u16", PV_U16}, {"i32", PV_I32}, {"bool", PV_BOOL},
            {"f16", PV_F16}, {"i64", PV_I64}, {"f64", PV_F64},
            {"u32", PV_U32}, {"u64", PV_U64}};
  int nt = sizeof ts / sizeof ts[0];
  for (int i = 0; i < nt; i++) {
    Onnx__TensorProto *t = tensor(ts[i].name, ts[i].dtype, 1, d3);
    int32_t i32[3] = {-2, 7, 0x3c00};
    switch (ts[i].dtype) {
    case PV_I64:
      t->n_int64_data = 3;
      t->int64_data = A(24);
      t->int64_data[0] = -(INT64_C(1) << 40);
      t->int64_data[1] = 7;
      t->int64_data[2] = INT64_MAX;
      break;
    case PV_F64:
      t->n_double_data = 3;
      t->double_data = A(24);
      t->double_data[0] = 0.1;
      t->double_data[1] = 7;
      t->double_data[2] = -1e300;
      break;
    case PV_U32:
    case PV_U64:
      t->n_uint64_data = 3;
      t->uint64_data = A(24);
      t->uint64_data[0] = 4000000000u;
      t->uint64_data[1] = 7;
      t->uint64_data[2] = UINT64_MAX;
      break;
    default:
      t->n_int32_data = 3;
      t->int32_data = A(12);
      memcpy(t->int32_data, i32, 12);
    }
    g->initializer[g->n_initializer++] = t;
  }
  /* A raw int64 scalar (ndim 0 = one element). */
  Onnx__TensorProto *s = tensor("scalar", PV_I64, 0, NULL);
  int64_t sv = -42;
  set_raw(s, &sv, 8);
  g->initializer[g->n_initializer++] = s;
  /* A zero-size tensor needs no data at all. */
  int64_t d0[2] = {0, 5};
  g->initializer[g->n_initializer++] = tensor("empty", PV_F32, 2, d0);
  /* Keep every initializer alive: Concat reads them all. */
  char ins[512] = "";
  for (size_t i = 0; i < g->n_initializer; i++) {
    strcat(ins, i ? "," : "");
    strcat(ins, g->initializer[i]->name);
  }
  node(g, "Concat", "c", ins, "out");
  g->output[g->n_output++] = vinfo("out", 0, -1, NULL);

  pv_graph *pg = load(g, 11, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pg);
#define V(name) (&pg->values[pv_graph_find_value(pg, name)])
  CU_ASSERT_EQUAL(((int8_t *)V("i8")->data)[0], -2);
  CU_ASSERT_EQUAL(((uint8_t *)V("u8")->data)[0], 254);
  CU_ASSERT_EQUAL(((int16_t *)V("i16")->data)[2], 0x3c00);
  CU_ASSERT_EQUAL(((uint16_t *)V("u16")->data)[0], 65534);
  CU_ASSERT_EQUAL(((int32_t *)V("i32")->data)[0], -2);
  CU_ASSERT_EQUAL(((uint8_t *)V("bool")->data)[0], 1);
  CU_ASSERT_EQUAL(((uint8_t *)V("bool")->data)[1], 1);
  CU_ASSERT_EQUAL(V("bool")->nbytes, 3);
  CU_ASSERT_EQUAL(((uint16_t *)V("f16")->data)[2], 0x3c00); /* 1.0 */
  CU_ASSERT_EQUAL(V("f16")->nbytes, 6);
  CU_ASSERT_EQUAL(((int64_t *)V("i64")->data)[0], -(INT64_C(1) << 40));
  CU_ASSERT_EQUAL(((int64_t *)V("i64")->data)[2], INT64_MAX);
  CU_ASSERT_EQUAL(((double *)V("f64")->data)[2], -1e300);
  CU_ASSERT_EQUAL(((uint32_t *)V("u32")->data)[0], 4000000000u);
  CU_ASSERT_EQUAL(V("u32")->nbytes, 12);
  CU_ASSERT_EQUAL(((uint64_t *)V("u64")->data)[2], UINT64_MAX);
  CU_ASSERT_EQUAL(V("scalar")->ndim, 0);
  CU_ASSERT_EQUAL(*(int64_t *)V("scalar")->data, -42);
  CU_ASSERT_EQUAL(V("empty")->nbytes, 0);
  CU_ASSERT_EQUAL(V("empty")->dims[1], 5);
  for (int i = 0; i < nt; i++)
    CU_ASSERT_EQUAL(V(ts[i].name)->dtype, (pv_dtype)ts[i].dtype);
#undef V
  pv_graph_free(pg);
  arena_free();
}

static char tmpdir[64];

static void make_tmpdir(void) {
  strcpy(tmpdir, "/tmp/pv-onnx-XXXXXX");
  CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
}

static void rm_tmpdir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd)) fprintf(stderr, "cannot remove %s\n", tmpdir);
}

static void set_external(Onnx__TensorProto *t, const char *loc,
                         const char *off, const char *len) {
  t->has_data_location = 1;
  t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  t->external_data = A(sizeof(void *) * 3);
  const char *kv[3][2] = {{"location", loc}, {"offset", off}, {"length", len}};
  for (int i = 0; i < 3; i++) {
    if (!kv[i][1]) continue;
    Onnx__StringStringEntryProto *e = NEW(Onnx__StringStringEntryProto,
                                          ONNX__STRING_STRING_ENTRY_PROTO__INIT);
    e->key = S(kv[i][0]);
    e->value = S(kv[i][1]);
    t->external_data[t->n_external_data++] = e;
  }
}

/* A graph reading one 2x2 float initializer "W" with external data. */
static Onnx__GraphProto *ext_graph(const char *loc, const char *off,
                                   const char *len) {
  Onnx__GraphProto *g = graph_new();
  int64_t d[2] = {2, 2};
  g->input[g->n_input++] = vinfo("x", 1, 2, d);
  Onnx__TensorProto *w = tensor("W", 1, 2, d);
  set_external(w, loc, off, len);
  g->initializer[g->n_initializer++] = w;
  node(g, "Add", "add", "x,W", "y");
  g->output[g->n_output++] = vinfo("y", 1, 2, d);
  return g;
}

static void test_external_data(void) {
  make_tmpdir();
  char path[128];
  snprintf(path, sizeof path, "%s/weights.bin", tmpdir);
  FILE *f = fopen(path, "wb");
  CU_ASSERT_FATAL(f != NULL);
  float junk[3] = {-1, -1, -1}, w[4] = {1.5f, 2.5f, 3.5f, 4.5f};
  fwrite(junk, sizeof junk, 1, f); /* offset 12 */
  fwrite(w, sizeof w, 1, f);       /* 16 bytes, file is 28 */
  fclose(f);

  pv_graph *g = load(ext_graph("weights.bin", "12", "16"), 13, tmpdir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g);
  const pv_value *wv = &g->values[pv_graph_find_value(g, "W")];
  CU_ASSERT_EQUAL(wv->nbytes, 16);
  CU_ASSERT_EQUAL(((float *)wv->data)[0], 1.5f);
  CU_ASSERT_EQUAL(((float *)wv->data)[3], 4.5f);
  pv_graph_free(g);
  arena_free();

  /* No length: the rest of the file from offset. */
  g = load(ext_graph("weights.bin", "12", NULL), 13, tmpdir);
  CU_ASSERT_PTR_NOT_NULL(g);
  pv_graph_free(g);
  arena_free();

  expect_fail(ext_graph("weights.bin", "29", NULL), 13, tmpdir,
              "offset 29 is past the end", "weights.bin");
  arena_free();
  expect_fail(ext_graph("weights.bin", "16", "16"), 13, tmpdir,
              "runs past the end", NULL);
  arena_free();
  expect_fail(ext_graph("weights.bin", "0", "28"), 13, tmpdir,
              "holds 28 bytes", "need 16");
  arena_free();
  expect_fail(ext_graph("weights.bin", "-4", NULL), 13, tmpdir, "offset '-4'",
              NULL);
  arena_free();
  expect_fail(ext_graph("weights.bin", "99999999999999999999", NULL), 13,
              tmpdir, "offset", "not a non-negative integer");
  arena_free();
  /* Huge dims are checked against the file before any allocation (found
   * by fuzzing: regress-external-huge.onnx). */
  Onnx__GraphProto *hg = ext_graph("weights.bin", NULL, NULL);
  hg->initializer[0]->dims[0] = INT64_C(1) << 40;
  expect_fail(hg, 13, tmpdir, "holds 28 bytes", NULL);
  arena_free();
  hg = ext_graph("weights.bin", NULL, NULL);
  hg->initializer[0]->dims[0] = INT64_C(1) << 40;
  expect_fail(hg, 13, NULL, "without a base directory", NULL);
  arena_free();
  expect_fail(ext_graph("missing.bin", NULL, NULL), 13, tmpdir,
              "cannot open external data", "missing.bin");
  arena_free();
  expect_fail(ext_graph("../weights.bin", NULL, NULL), 13, tmpdir,
              "relative path inside", NULL);
  arena_free();
  expect_fail(ext_graph("/etc/passwd", NULL, NULL), 13, tmpdir,
              "relative path inside", NULL);
  arena_free();
  expect_fail(ext_graph("weights.bin", NULL, NULL), 13, NULL,
              "without a base directory", NULL);
  arena_free();
  expect_fail(ext_graph(NULL, NULL, NULL), 13, tmpdir, "location", NULL);
  arena_free();

  /* pv_onnx_load resolves relative to the model file's directory and
   * names the file in errors. */
  size_t len;
  uint8_t *buf = pack_model(ext_graph("weights.bin", "12", "16"), 13, "",
                            &len);
  snprintf(path, sizeof path, "%s/model.onnx", tmpdir);
  f = fopen(path, "wb");
  CU_ASSERT_FATAL(f != NULL);
  fwrite(buf, len, 1, f);
  fclose(f);
  g = pv_onnx_load(path);
  CU_ASSERT_PTR_NOT_NULL(g);
  pv_graph_free(g);
  f = fopen(path, "wb");
  fwrite(buf, len / 2, 1, f);
  fclose(f);
  g = pv_onnx_load(path);
  CU_ASSERT_PTR_NULL(g);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "model.onnx: not a valid ONNX "
                                             "protobuf (truncated or corrupt)"));
  free(buf);
  arena_free();
  rm_tmpdir();
}

static void test_attributes(void) {
  Onnx__GraphProto *g = graph_new();
  int64_t d[1] = {4};
  g->input[g->n_input++] = vinfo("x", 1, 1, d);
  Onnx__NodeProto *n = node(g, "Custom", "n", "x", "y");
  attr_f(n, "alpha", 0.25f);
  attr_i(n, "axis", -3);
  Onnx__AttributeProto *s = attr(n, "mode", 3);
  s->has_s = 1;
  s->s.data = (uint8_t *)S("nearest");
  s->s.len = 7;
  Onnx__AttributeProto *t = attr(n, "table", 4);
  int64_t td[1] = {2};
  t->t = tensor(NULL, PV_I32, 1, td);
  int32_t tv[2] = {11, -12};
  set_raw(t->t, tv, 8);
  Onnx__AttributeProto *fs = attr(n, "scales", 6);
  fs->n_floats = 3;
  fs->floats = A(12);
  fs->floats[2] = 2.5f;
  Onnx__AttributeProto *is = attr(n, "pads", 7);
  is->n_ints = 4;
  is->ints = A(32);
  is->ints[3] = 1;
  Onnx__AttributeProto *ss = attr(n, "names", 8);
  ss->n_strings = 2;
  ss->strings = A(sizeof(ProtobufCBinaryData) * 2);
  ss->strings[0].data = (uint8_t *)S("ab");
  ss->strings[0].len = 2;
  ss->strings[1].data = (uint8_t *)S("");
  ss->strings[1].len = 0;
  /* IR version 1 files have no type field: inferred from the value. */
  attr(n, "legacy", 0)->has_i = 1;
  n->attribute[n->n_attribute - 1]->i = 9;
  g->output[g->n_output++] = vinfo("y", 1, 1, d);

  pv_graph *pg = load(g, 13, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pg);
  const pv_node *pn = &pg->nodes[0];
  CU_ASSERT_EQUAL(pn->n_attrs, 8);
  CU_ASSERT_EQUAL(pv_attr_float(pn, "alpha", 0), 0.25f);
  CU_ASSERT_EQUAL(pv_attr_int(pn, "axis", 0), -3);
  CU_ASSERT_STRING_EQUAL(pv_attr_str(pn, "mode", ""), "nearest");
  const pv_attr *ta = pv_node_attr(pn, "table");
  CU_ASSERT_FATAL(ta && ta->type == PV_ATTR_TENSOR && ta->t.data);
  CU_ASSERT_EQUAL(ta->t.dtype, PV_I32);
  CU_ASSERT_EQUAL(ta->t.dims[0], 2);
  CU_ASSERT_EQUAL(((int32_t *)ta->t.data)[1], -12);
  const pv_attr *fa = pv_node_attr(pn, "scales");
  CU_ASSERT_FATAL(fa && fa->type == PV_ATTR_FLOATS && fa->n == 3);
  CU_ASSERT_EQUAL(fa->floats[2], 2.5f);
  const int64_t *pads;
  CU_ASSERT_EQUAL(pv_attr_ints(pn, "pads", &pads), 4);
  CU_ASSERT_EQUAL(pads[3], 1);
  const pv_attr *sa = pv_node_attr(pn, "names");
  CU_ASSERT_FATAL(sa && sa->type == PV_ATTR_STRINGS && sa->n == 2);
  CU_ASSERT_STRING_EQUAL(sa->strings[0], "ab");
  CU_ASSERT_STRING_EQUAL(sa->strings[1], "");
  CU_ASSERT_EQUAL(pv_attr_int(pn, "legacy", 0), 9);
  pv_graph_free(pg);
  arena_free();

  /* An If whose branch attribute carries no graph is refused, naming node
   * and attribute (a real If is flattened: the fuzz seed if_subgraph.onnx
   * below). */
  g = graph_new();
  g->input[g->n_input++] = vinfo("c", PV_BOOL, 0, NULL);
  n = node(g, "If", "branch", "c", "y");
  attr(n, "then_branch", 5);
  g->output[g->n_output++] = vinfo("y", 1, -1, NULL);
  expect_fail(g, 13, NULL, "node 'branch' (If)", "graph attribute 'then_branch'");
  arena_free();

  /* The same without the type field (IR version 1): the subgraph is only
   * an unknown field 6 to our schema. */
  g = graph_new();
  g->input[g->n_input++] = vinfo("c", PV_BOOL, 0, NULL);
  n = node(g, "Loop", "loop", "c", "y");
  add_unknown(&attr(n, "body", 0)->base, 6);
  g->output[g->n_output++] = vinfo("y", 1, -1, NULL);
  expect_fail(g, 13, NULL, "node 'loop' (Loop)", "subgraph");
  arena_free();

  g = graph_new();
  g->input[g->n_input++] = vinfo("x", 1, 1, d);
  n = node(g, "Relu", "r", "x", "y");
  attr(n, "a", 2);
  attr(n, "a", 2);
  g->output[g->n_output++] = vinfo("y", 1, 1, d);
  expect_fail(g, 13, NULL, "attribute 'a' twice", NULL);
  arena_free();
}

static void test_constants(void) {
  Onnx__GraphProto *g = graph_new();
  int64_t d[1] = {2};
  g->input[g->n_input++] = vinfo("x", 1, 1, d);
  Onnx__NodeProto *c = node(g, "Constant", "c0", NULL, "k");
  Onnx__AttributeProto *a = attr(c, "value", 4);
  a->t = tensor(NULL, PV_F32, 1, d);
  float kv[2] = {3, 4};
  set_raw(a->t, kv, 8);
  attr_f(node(g, "Constant", "c1", NULL, "f"), "value_float", 0.5f);
  Onnx__AttributeProto *ints = attr(node(g, "Constant", "c2", NULL, "shape"),
                                    "value_ints", 7);
  ints->n_ints = 2;
  ints->ints = A(16);
  ints->ints[0] = -1;
  ints->ints[1] = 2;
  attr_i(node(g, "Constant", "c3", NULL, "i"), "value_int", 5);
  Onnx__AttributeProto *fl = attr(node(g, "Constant", "c4", NULL, "fs"),
                                  "value_floats", 6);
  fl->n_floats = 1;
  fl->floats = A(4);
  fl->floats[0] = -2;
  node(g, "Add", "a0", "x,k", "s0");
  node(g, "Mul", "a1", "s0,f", "s1");
  node(g, "Reshape", "a2", "s1,shape", "s2");
  node(g, "Pow", "a3", "s2,i", "s3");
  node(g, "Sub", "a4", "s3,fs", "y");
  g->output[g->n_output++] = vinfo("y", 1, -1, NULL);
  pv_graph *pg = load(g, 13, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pg);
  CU_ASSERT_EQUAL(pg->n_nodes, 5); /* no Constant node left */
  for (int i = 0; i < pg->n_nodes; i++)
    CU_ASSERT_STRING_NOT_EQUAL(pg->nodes[i].op, "Constant");
  const pv_value *k = &pg->values[pv_graph_find_value(pg, "k")];
  CU_ASSERT_FATAL(k->data != NULL);
  CU_ASSERT_EQUAL(((float *)k->data)[1], 4.0f);
  CU_ASSERT_EQUAL(k->producer, -1);
  const pv_value *f = &pg->values[pv_graph_find_value(pg, "f")];
  CU_ASSERT_EQUAL(f->ndim, 0);
  CU_ASSERT_EQUAL(f->dtype, PV_F32);
  CU_ASSERT_EQUAL(*(float *)f->data, 0.5f);
  const pv_value *s = &pg->values[pv_graph_find_value(pg, "shape")];
  CU_ASSERT_EQUAL(s->dtype, PV_I64);
  CU_ASSERT_EQUAL(s->dims[0], 2);
  CU_ASSERT_EQUAL(((int64_t *)s->data)[0], -1);
  const pv_value *i = &pg->values[pv_graph_find_value(pg, "i")];
  CU_ASSERT_EQUAL(i->dtype, PV_I64);
  CU_ASSERT_EQUAL(*(int64_t *)i->data, 5);
  const pv_value *fs = &pg->values[pv_graph_find_value(pg, "fs")];
  CU_ASSERT_EQUAL(((float *)fs->data)[0], -2.0f);
  pv_graph_free(pg);
  arena_free();

  g = graph_new();
  attr(node(g, "Constant", "cs", NULL, "y"), "value_string", 3);
  g->output[g->n_output++] = vinfo("y", 1, -1, NULL);
  expect_fail(g, 13, NULL, "node 'cs' (Constant)", "value_string");
  arena_free();
}

/* An omitted optional input ("") is -1; an omitted output too. */
static void test_optional_io(void) {
  Onnx__GraphProto *g = graph_new();
  int64_t d[1] = {4};
  g->input[g->n_input++] = vinfo("x", 1, 1, d);
  node(g, "Clip", "clip", "x,,", "y");
  node(g, "Dropout", "drop", "y", "z,");
  g->output[g->n_output++] = vinfo("z", 1, 1, d);
  pv_graph *pg = load(g, 13, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pg);
  CU_ASSERT_EQUAL(pg->nodes[0].n_in, 3);
  CU_ASSERT_EQUAL(pg->nodes[0].in[1], -1);
  CU_ASSERT_EQUAL(pg->nodes[0].in[2], -1);
  CU_ASSERT_EQUAL(pg->nodes[1].n_out, 2);
  CU_ASSERT_EQUAL(pg->nodes[1].out[1], -1);
  pv_graph_free(pg);
  arena_free();
}

static void test_bad_models(void) {
  /* Not a protobuf at all, and a valid one cut short. */
  pv_graph *pg = pv_onnx_load_mem("\xff\xff\xff\xff", 4, NULL);
  CU_ASSERT_PTR_NULL(pg);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "truncated or corrupt"));
  size_t len;
  uint8_t *buf = pack_model(mlp(), 13, "", &len);
  pg = pv_onnx_load_mem(buf, len - 1, NULL);
  CU_ASSERT_PTR_NULL(pg);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "truncated or corrupt"));
  /* Every prefix must fail cleanly or load (a prefix that ends on a field
   * boundary is a valid, smaller message). */
  for (size_t cut = 0; cut < len; cut++) {
    pg = pv_onnx_load_mem(buf, cut, NULL);
    if (pg) pv_graph_free(pg);
    else CU_ASSERT(pv_errmsg()[0] != 0);
  }
  free(buf);
  arena_free();

  /* Random bytes, from a fixed seed so a failure reproduces. */
  uint32_t seed = 12345;
  uint8_t rnd[256];
  for (int iter = 0; iter < 2000; iter++) {
    size_t n = 1 + iter % sizeof rnd;
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      rnd[i] = (uint8_t)(seed >> 16);
    }
    pg = pv_onnx_load_mem(rnd, n, NULL);
    CU_ASSERT_PTR_NULL(pg);
    if (pg) pv_graph_free(pg);
  }

  pg = pv_onnx_load_mem("", 0, NULL);
  CU_ASSERT_PTR_NULL(pg);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "no graph"));

  expect_fail(mlp(), 26, NULL, "opset 26", "7 to 25");
  arena_free();
  pg = load(mlp(), 25, NULL); /* the newest opset loads */
  CU_ASSERT_PTR_NOT_NULL_FATAL(pg);
  CU_ASSERT_EQUAL(pg->opset, 25);
  pv_graph_free(pg);
  arena_free();
  expect_fail(mlp(), 6, NULL, "opset 6", NULL);
  arena_free();
  buf = pack_model(mlp(), 13, "com.microsoft", &len);
  CU_ASSERT_PTR_NULL(pv_onnx_load_mem(buf, len, NULL));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "no opset of the default"));
  free(buf);
  arena_free();

  Onnx__GraphProto *g = mlp();
  g->node[1]->domain = S("com.microsoft");
  expect_fail(g, 13, NULL, "node 'Add_1' (Add)", "domain 'com.microsoft'");
  arena_free();

  g = mlp();
  g->initializer[0]->raw_data.len -= 4;
  expect_fail(g, 13, NULL, "initializer 'W': raw_data holds 20 bytes", "24");
  arena_free();

  g = mlp();
  g->initializer[1]->n_float_data = 1;
  expect_fail(g, 13, NULL, "initializer 'B': float_data holds 1 values", NULL);
  arena_free();

  g = mlp();
  g->node[1]->input[1] = S("nope");
  expect_fail(g, 13, NULL, "input 'nope'", "not a graph input");
  arena_free();

  g = mlp();
  g->output[0]->name = S("ghost");
  expect_fail(g, 13, NULL, "graph output 'ghost'", NULL);
  arena_free();

  g = mlp();
  g->initializer[0]->dims[0] = -3;
  expect_fail(g, 13, NULL, "negative dimension", "'W'");
  arena_free();

  /* Dims whose product overflows, and dims far larger than the data: both
   * must fail before anything is allocated. */
  g = mlp();
  g->initializer[0]->dims[0] = INT64_MAX / 2;
  g->initializer[0]->dims[1] = 4;
  expect_fail(g, 13, NULL, "overflows", NULL);
  arena_free();
  g = mlp();
  g->initializer[0]->dims[0] = INT64_C(1) << 40;
  expect_fail(g, 13, NULL, "raw_data holds 24 bytes", NULL);
  arena_free();

  g = mlp();
  g->initializer[0]->data_type = 8;
  expect_fail(g, 13, NULL, "STRING", "not supported");
  arena_free();
  g = mlp();
  g->initializer[0]->has_data_type = 0;
  expect_fail(g, 13, NULL, "no data type", NULL);
  arena_free();

  g = mlp();
  g->node[1]->output[0] = S("h");
  expect_fail(g, 13, NULL, "value 'h' is defined twice", NULL);
  arena_free();
  g = mlp();
  g->initializer[1]->name = S("W");
  expect_fail(g, 13, NULL, "value 'W' is defined twice", NULL);
  arena_free();

  g = mlp();
  g->n_output = 0;
  expect_fail(g, 13, NULL, "no outputs", NULL);
  arena_free();

  g = mlp();
  g->input[0]->type->tensor_type->has_elem_type = 0;
  expect_fail(g, 13, NULL, "graph input 'x'", "element type");
  arena_free();
  g = mlp();
  g->input[0]->type->tensor_type->shape->dim[1]->dim_value = -2;
  expect_fail(g, 13, NULL, "graph input 'x' has negative dimension", NULL);
  arena_free();

  /* Attribute names are checked for duplicates, so their count is
   * bounded to keep that fast. */
  g = mlp();
  Onnx__NodeProto *big = g->node[0];
  big->attribute = A(sizeof(void *) * 1025);
  for (int i = 0; i < 1025; i++) {
    char an[16];
    snprintf(an, sizeof an, "a%d", i);
    big->attribute[i] = NEW(Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT);
    big->attribute[i]->name = S(an);
  }
  big->n_attribute = 1025;
  expect_fail(g, 13, NULL, "node 'mm' (MatMul) has 1025 attributes", NULL);
  arena_free();

  g = mlp();
  add_unknown(&g->base, 15);
  expect_fail(g, 13, NULL, "sparse initializers", NULL);
  arena_free();

  /* A cycle: a = Relu(b), b = Relu(a). */
  g = graph_new();
  node(g, "Relu", "r1", "b", "a");
  node(g, "Relu", "r2", "a", "b");
  g->output[g->n_output++] = vinfo("b", 1, -1, NULL);
  expect_fail(g, 13, NULL, "cycle", NULL);
  arena_free();
}

/* A model saved by the onnx Python package (its own schema, external data
 * through onnx.save_model) must load, checking our field numbers against
 * the real ones. */
static void test_python_onnx(void) {
  if (access("/usr/bin/python3", X_OK)) {
    fprintf(stderr, "\n  skipped: /usr/bin/python3 not found ");
    return;
  }
  make_tmpdir();
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && /usr/bin/python3 -c \"\n"
           "import onnx, numpy as np\n"
           "from onnx import helper as h, numpy_helper as nh, TensorProto as T\n"
           "w = nh.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), 'w')\n"
           "s = nh.from_array(np.array([2, -1], dtype=np.int64), 's')\n"
           "x = h.make_tensor_value_info('x', T.FLOAT, ['batch', 3])\n"
           "y = h.make_tensor_value_info('y', T.FLOAT, ['batch', 2, 2])\n"
           "n1 = h.make_node('Gemm', ['x', 'w'], ['g'], name='gemm', alpha=2.0, transB=0)\n"
           "n2 = h.make_node('Reshape', ['g', 's'], ['y'], name='rs')\n"
           "gr = h.make_graph([n1, n2], 'py', [x], [y], [w, s])\n"
           "m = h.make_model(gr, opset_imports=[h.make_opsetid('', 13)], producer_name='onnx-py')\n"
           "onnx.save_model(m, 'model.onnx', save_as_external_data=True, all_tensors_to_one_file=True, location='weights.data', size_threshold=16)\n"
           "\" 2>&1",
           tmpdir);
  if (system(cmd)) {
    fprintf(stderr, "\n  skipped: python3 cannot import onnx/numpy ");
    rm_tmpdir();
    return;
  }
  char path[128];
  snprintf(path, sizeof path, "%s/model.onnx", tmpdir);
  pv_graph *g = pv_onnx_load(path);
  if (!g) fprintf(stderr, "\n  %s\n", pv_errmsg());
  CU_ASSERT_PTR_NOT_NULL_FATAL(g);
  CU_ASSERT_EQUAL(g->opset, 13);
  CU_ASSERT_STRING_EQUAL(pv_graph_get_meta(g, "producer_name"), "onnx-py");
  CU_ASSERT_EQUAL(g->n_inputs, 1);
  CU_ASSERT_EQUAL(g->values[g->inputs[0]].dims[0], PV_DIM_BATCH);
  CU_ASSERT_EQUAL(g->n_nodes, 2);
  CU_ASSERT_STRING_EQUAL(g->nodes[0].op, "Gemm");
  CU_ASSERT_EQUAL(pv_attr_float(&g->nodes[0], "alpha", 0), 2.0f);
  CU_ASSERT_EQUAL(pv_attr_int(&g->nodes[0], "transB", 7), 0);
  const pv_value *w = &g->values[pv_graph_find_value(g, "w")];
  CU_ASSERT_EQUAL(w->dims[0], 3);
  CU_ASSERT_EQUAL(w->dims[1], 4);
  for (int i = 0; i < 12; i++) CU_ASSERT_EQUAL(((float *)w->data)[i], (float)i);
  const pv_value *s = &g->values[pv_graph_find_value(g, "s")];
  CU_ASSERT_EQUAL(((int64_t *)s->data)[1], -1);
  const pv_value *y = &g->values[g->outputs[0]];
  CU_ASSERT_EQUAL(y->ndim, 3);
  CU_ASSERT_EQUAL(y->dims[2], 2);
  pv_graph_free(g);
  rm_tmpdir();
}

/* The fuzz seed corpus (written by the onnx package, see
 * tests/fuzz/make-corpus.py) also pins which real files load and how the
 * bad ones fail; crash inputs found by fuzzing are added there too. */
static void test_corpus(void) {
  static const struct {
    const char *file, *err;
  } cases[] = {
      {"mlp.onnx", NULL},
      {"conv_attrs.onnx", NULL},
      {"constants.onnx", NULL},
      {"typed.onnx", NULL},
      {"external.onnx", "cannot open external data file"},
      {"if_subgraph.onnx", NULL},
      {"opset18.onnx", NULL},
      {"opset99.onnx", "opset 99"},
      {"truncated.onnx", "truncated.onnx: not a valid ONNX protobuf"},
      {"empty.onnx", "no graph"},
      {"regress-external-huge.onnx", "cannot open external data file"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/onnx/%s",
             pv_test_srcdir(), cases[i].file);
    pv_graph *g = pv_onnx_load(path);
    if (!cases[i].err) {
      if (!g) fprintf(stderr, "\n  %s\n", pv_errmsg());
      CU_ASSERT_PTR_NOT_NULL(g);
    } else {
      CU_ASSERT_PTR_NULL(g);
      if (!strstr(pv_errmsg(), cases[i].err))
        fprintf(stderr, "\n  %s (want %s)\n", pv_errmsg(), cases[i].err);
      CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), cases[i].err));
    }
    if (g && !strcmp(cases[i].file, "if_subgraph.onnx")) {
      /* Flattened: Not(c), Identity(x) guarded by c, Neg(x) by not c, and
       * the select If(c, then y, else y) -> y. */
      int guarded = 0, selects = 0;
      for (int k = 0; k < g->n_nodes; k++) {
        const pv_node *nd = &g->nodes[k];
        if (pv_attr_int(nd, "pv.guarded", 0)) {
          guarded++;
          CU_ASSERT_EQUAL(g->values[nd->in[nd->n_in - 1]].dtype == PV_BOOL ||
                              g->values[nd->in[nd->n_in - 1]].producer >= 0,
                          1);
        }
        if (!strcmp(nd->op, "If")) {
          selects++;
          CU_ASSERT_EQUAL(nd->n_in, 3);
          CU_ASSERT_EQUAL(nd->n_out, 1);
          CU_ASSERT_PTR_NULL(pv_node_attr(nd, "then_branch"));
        }
      }
      CU_ASSERT_EQUAL(guarded, 2);
      CU_ASSERT_EQUAL(selects, 1);
    }
    if (g && !strcmp(cases[i].file, "conv_attrs.onnx")) {
      const pv_node *c = &g->nodes[0];
      const int64_t *pads;
      CU_ASSERT_STRING_EQUAL(c->op, "Conv");
      CU_ASSERT_EQUAL(pv_attr_int(c, "group", 0), 2);
      CU_ASSERT_EQUAL(pv_attr_ints(c, "pads", &pads), 4);
      CU_ASSERT_STRING_EQUAL(pv_attr_str(c, "auto_pad", ""), "NOTSET");
      CU_ASSERT_EQUAL(c->in[2], -1);
      CU_ASSERT_EQUAL(g->opset, 11);
    }
    pv_graph_free(g);
  }
}

static CU_TestInfo tests[] = {
    {"mlp", test_mlp},
    {"unsorted nodes, unknown rank", test_unsorted_and_unknown_rank},
    {"typed initializers", test_typed_initializers},
    {"external data", test_external_data},
    {"attributes", test_attributes},
    {"Constant nodes", test_constants},
    {"optional inputs/outputs", test_optional_io},
    {"bad models", test_bad_models},
    {"model written by the onnx package", test_python_onnx},
    {"fuzz seed corpus", test_corpus},
    CU_TEST_INFO_NULL};
PV_CUNIT_MAIN("onnx", tests)
