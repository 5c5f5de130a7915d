/* .pvm: round trips, file size of pruned models, and a strict reader
 * (truncation and bit flips name the section; malformed graphs refused). */
#include <stdio.h>
#include <unistd.h>

#include "cunit-main.h"
#include "crc32.h"
#include "pivot-testlib.h"

static char tmpdir[] = "/tmp/pv-test-pvm-XXXXXX";

static const char *tpath(const char *name) {
  static char buf[256];
  snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
  return buf;
}

static void *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  void *p = malloc(*len ? *len : 1);
  if (fread(p, 1, *len, f) != *len) {
    free(p);
    p = NULL;
  }
  fclose(f);
  return p;
}

/* A graph using every field the format stores. */
static pv_graph *sample_graph(uint64_t *s, bool fold) {
  pv_graph *g = pv_graph_new();
  g->name = strdup("sample");
  g->opset = 13;
  pv_graph_set_meta(g, "producer", "test-pvm");
  pv_graph_set_meta(g, "labels", "cat,dog,\"bird\"");
  pv_graph_set_meta(g, "anchors", "10,14,23,27");
  int x = t_batch_input(g, "x", 24);
  int32_t rg[32], cg[24];
  float *w = t_structured(32, 24, 1, 4, 1, s, rg, cg);
  int w1 = t_const(g, "w1", (int64_t[]){32, 24}, 2, w);
  free(w);
  int b1 = t_const(g, "b1", (int64_t[]){32}, 1, NULL);
  for (int i = 0; i < 32; i++) ((float *)g->values[b1].data)[i] = (float)i;
  float *w2d = malloc(sizeof(float) * 32 * 16);
  for (int i = 0; i < 32 * 16; i++) w2d[i] = t_gauss(s);
  int w2 = t_const(g, "w2", (int64_t[]){32, 16}, 2, w2d);
  free(w2d);
  int idx = pv_graph_add_value(g, "shape"); /* an INT64 constant */
  g->values[idx].dtype = PV_I64;
  g->values[idx].ndim = 1;
  g->values[idx].dims[0] = 2;
  g->values[idx].nbytes = 16;
  g->values[idx].data = pv_aligned_alloc(16);
  ((int64_t *)g->values[idx].data)[0] = -1;
  ((int64_t *)g->values[idx].data)[1] = 16;
  int h = t_act(g, "h"), r = t_act(g, "r"), y = t_act(g, "y"), z = t_act(g, "z");
  int n = t_node1(g, "fc1", "Gemm", (int[]){x, w1, b1}, 3, h);
  t_int_attr(g, n, "transB", 1);
  pv_attr a = {0};
  a.name = "alpha";
  a.type = PV_ATTR_FLOAT;
  a.f = 1.0f;
  pv_node_add_attr(g, n, &a);
  g->nodes[n].act = PV_ACT_LEAKY;
  g->nodes[n].act_alpha = 0.1f;
  n = t_node1(g, "clip", "Clip", (int[]){h, -1, -1}, 3, r);
  free(g->nodes[n].domain);
  g->nodes[n].domain = strdup("com.example");
  memset(&a, 0, sizeof a);
  a.name = "mode";
  a.type = PV_ATTR_STRING;
  a.s = "nearest";
  pv_node_add_attr(g, n, &a);
  char *strs[] = {"a", "", "ccc"};
  memset(&a, 0, sizeof a);
  a.name = "tags";
  a.type = PV_ATTR_STRINGS;
  a.strings = strs;
  a.n = 3;
  pv_node_add_attr(g, n, &a);
  float fl[] = {0.5f, -2.0f};
  memset(&a, 0, sizeof a);
  a.name = "scales";
  a.type = PV_ATTR_FLOATS;
  a.floats = fl;
  a.n = 2;
  pv_node_add_attr(g, n, &a);
  float tv[6] = {1, 2, 3, 4, 5, 6};
  memset(&a, 0, sizeof a);
  a.name = "value";
  a.type = PV_ATTR_TENSOR;
  a.t.dtype = PV_F32;
  a.t.ndim = 2;
  a.t.dims[0] = 2;
  a.t.dims[1] = 3;
  a.t.data = tv;
  pv_node_add_attr(g, n, &a);
  t_ints_attr(g, n, "axes", (int64_t[]){0, -1, 7}, 3);
  t_node1(g, "fc2", "MatMul", (int[]){r, w2}, 2, y);
  t_node1(g, "reshape", "Reshape", (int[]){y, idx}, 2, z);
  t_io(g, x, z);
  CU_ASSERT_EQUAL(pv_graph_detect_pivots(g, 0.75), 0);
  CU_ASSERT_PTR_NOT_NULL(g->values[w1].pivot);
  if (fold) { /* a chan_perm to store, as folding would leave */
    g->values[r].chan_perm = malloc(sizeof(int32_t) * 32);
    g->values[r].chan_perm_n = 32;
    t_shuffle(g->values[r].chan_perm, 32, s);
  }
  return g;
}

/* mapped: b came from pv_pvm_load, so its data is 64-byte aligned. */
static void check_equal_graphs(const pv_graph *a, const pv_graph *b,
                               bool mapped) {
  CU_ASSERT_STRING_EQUAL(a->name, b->name);
  CU_ASSERT_EQUAL(a->opset, b->opset);
  CU_ASSERT_EQUAL_FATAL(a->n_meta, b->n_meta);
  for (int i = 0; i < a->n_meta; i++)
    CU_ASSERT_STRING_EQUAL(pv_graph_get_meta(b, a->meta[i].key), a->meta[i].value);
  CU_ASSERT_EQUAL_FATAL(a->n_values, b->n_values);
  for (int i = 0; i < a->n_values; i++) {
    const pv_value *u = &a->values[i], *v = &b->values[i];
    CU_ASSERT_STRING_EQUAL(u->name, v->name);
    CU_ASSERT_EQUAL(u->dtype, v->dtype);
    CU_ASSERT_EQUAL(u->ndim, v->ndim);
    for (int d = 0; d < u->ndim; d++) CU_ASSERT_EQUAL(u->dims[d], v->dims[d]);
    CU_ASSERT_EQUAL(u->producer, v->producer);
    CU_ASSERT_EQUAL(u->chan_perm_n, v->chan_perm_n);
    if (u->chan_perm)
      CU_ASSERT(v->chan_perm && !memcmp(u->chan_perm, v->chan_perm,
                                        sizeof(int32_t) * u->chan_perm_n));
    if (u->pivot) {
      const pv_pivot *p = u->pivot, *q = v->pivot;
      CU_ASSERT_PTR_NOT_NULL_FATAL(q);
      CU_ASSERT(p->M == q->M && p->C == q->C && p->kk == q->kk &&
                p->nr == q->nr && p->nc == q->nc && p->n_blocks == q->n_blocks &&
                p->data_len == q->data_len);
      CU_ASSERT(!memcmp(p->perm_r, q->perm_r, 4 * p->M));
      CU_ASSERT(!memcmp(p->perm_c, q->perm_c, 4 * p->C));
      CU_ASSERT(!memcmp(p->row_off, q->row_off, 4 * (p->nr + 1)));
      CU_ASSERT(!memcmp(p->col_off, q->col_off, 4 * (p->nc + 1)));
      CU_ASSERT(!memcmp(p->blocks, q->blocks, sizeof *p->blocks * p->n_blocks));
      CU_ASSERT(!memcmp(p->data, q->data, 4 * p->data_len));
      CU_ASSERT_FALSE(q->data_owned);
      if (mapped) CU_ASSERT(((uintptr_t)q->data & 63) == 0);
      CU_ASSERT_PTR_NULL(v->data); /* dense copy of a pivoted weight dropped */
    } else if (u->data) {
      CU_ASSERT_EQUAL_FATAL(u->nbytes, v->nbytes);
      CU_ASSERT(!memcmp(u->data, v->data, u->nbytes));
      if (mapped) CU_ASSERT(((uintptr_t)v->data & 63) == 0);
    } else {
      CU_ASSERT_PTR_NULL(v->data);
    }
  }
  CU_ASSERT_EQUAL_FATAL(a->n_nodes, b->n_nodes);
  for (int i = 0; i < a->n_nodes; i++) {
    const pv_node *m = &a->nodes[i], *n = &b->nodes[i];
    CU_ASSERT_STRING_EQUAL(m->name, n->name);
    CU_ASSERT_STRING_EQUAL(m->op, n->op);
    CU_ASSERT_STRING_EQUAL(m->domain, n->domain);
    CU_ASSERT(m->n_in == n->n_in && !memcmp(m->in, n->in, sizeof(int) * m->n_in));
    CU_ASSERT(m->n_out == n->n_out && !memcmp(m->out, n->out, sizeof(int) * m->n_out));
    CU_ASSERT(m->act == n->act && m->act_alpha == n->act_alpha &&
              m->act_beta == n->act_beta);
    CU_ASSERT_EQUAL_FATAL(m->n_attrs, n->n_attrs);
    for (int k = 0; k < m->n_attrs; k++) {
      const pv_attr *x = &m->attrs[k], *y = &n->attrs[k];
      CU_ASSERT_STRING_EQUAL(x->name, y->name);
      CU_ASSERT_EQUAL(x->type, y->type);
      CU_ASSERT_EQUAL(x->n, y->n);
      CU_ASSERT(x->i == y->i && x->f == y->f);
      if (x->s) CU_ASSERT_STRING_EQUAL(x->s, y->s);
      if (x->ints) CU_ASSERT(!memcmp(x->ints, y->ints, 8 * x->n));
      if (x->floats) CU_ASSERT(!memcmp(x->floats, y->floats, 4 * x->n));
      for (int j = 0; x->strings && j < x->n; j++)
        CU_ASSERT_STRING_EQUAL(x->strings[j], y->strings[j]);
      if (x->type == PV_ATTR_TENSOR) {
        CU_ASSERT(x->t.dtype == y->t.dtype && x->t.ndim == y->t.ndim);
        CU_ASSERT(!memcmp(x->t.data, y->t.data, pv_tensor_nbytes(&x->t)));
      }
    }
  }
  CU_ASSERT(a->n_inputs == b->n_inputs &&
            !memcmp(a->inputs, b->inputs, sizeof(int) * a->n_inputs));
  CU_ASSERT(a->n_outputs == b->n_outputs &&
            !memcmp(a->outputs, b->outputs, sizeof(int) * a->n_outputs));
}

static void test_round_trip(void) {
  uint64_t s = 1;
  pv_graph *g = sample_graph(&s, true);
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, tpath("rt.pvm")), 0);
  pv_graph *h = pv_pvm_load(tpath("rt.pvm"));
  if (!h) fprintf(stderr, "load: %s\n", pv_errmsg());
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  check_equal_graphs(g, h, true);
  /* a loaded graph saves to the same bytes */
  CU_ASSERT_EQUAL(pv_pvm_save(h, tpath("rt2.pvm")), 0);
  size_t l1, l2;
  void *b1 = read_file(tpath("rt.pvm"), &l1), *b2 = read_file(tpath("rt2.pvm"), &l2);
  CU_ASSERT(b1 && b2 && l1 == l2 && !memcmp(b1, b2, l1));
  /* load_mem gives the same graph */
  pv_graph *k = pv_pvm_load_mem(b1, l1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(k);
  check_equal_graphs(g, k, false);
  pv_graph_free(k);
  free(b1);
  free(b2);
  pv_graph_free(h);
  pv_graph_free(g);
}

/* A weight pruned to 1/8 costs about 1/8 of its dense bytes on disk. */
static void test_file_size(void) {
  uint64_t s = 2;
  pv_graph *g = pv_graph_new();
  int x = t_act(g, "x"), y = t_act(g, "y");
  float *w = malloc(sizeof(float) * 512 * 512);
  for (int i = 0; i < 512 * 512; i++) w[i] = t_gauss(&s);
  int wv = t_const(g, "w", (int64_t[]){512, 512}, 2, w);
  free(w);
  t_node1(g, "fc", "MatMul", (int[]){x, wv}, 2, y);
  t_io(g, x, y);
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, tpath("dense.pvm")), 0);
  pv_prune_spec spec = {.density = 0.125, .seed = 1};
  CU_ASSERT_EQUAL_FATAL(pv_graph_prune(g, &spec, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, tpath("pruned.pvm")), 0);
  size_t ld, lp;
  void *bd = read_file(tpath("dense.pvm"), &ld), *bp = read_file(tpath("pruned.pvm"), &lp);
  double ratio = (double)lp / ld;
  printf("\n    dense %zu bytes, 1/8 pruned %zu bytes (%.4f) ", ld, lp, ratio);
  CU_ASSERT(ratio > 0.125 && ratio < 0.135);
  free(bd);
  free(bp);
  pv_graph_free(g);
}

/* Section boundaries from the file's own table. */
static void sections(const uint8_t *b, uint64_t off[5], uint64_t end[5]) {
  off[0] = 0;
  end[0] = 32 + 4 * 32;
  for (int s = 0; s < 4; s++) {
    memcpy(&off[s + 1], b + 32 + 32 * s + 8, 8);
    uint64_t size;
    memcpy(&size, b + 32 + 32 * s + 16, 8);
    end[s + 1] = off[s + 1] + size;
  }
}

static const char *const names[5] = {"'header'", "'meta'", "'graph'",
                                     "'tensors'", "'data'"};

static void test_corrupt(void) {
  uint64_t s = 3;
  pv_graph *g = sample_graph(&s, true);
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, tpath("c.pvm")), 0);
  pv_graph_free(g);
  size_t len;
  uint8_t *orig = read_file(tpath("c.pvm"), &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
  uint64_t off[5], end[5];
  sections(orig, off, end);
  /* Bit flips anywhere in a section name that section. */
  for (int sec = 0; sec < 5; sec++) {
    int tested = 0;
    for (uint64_t pos = off[sec]; pos < end[sec]; pos += 1 + (end[sec] - off[sec]) / 37) {
      for (int bit = 0; bit < 8; bit += 3) {
        uint8_t *b = malloc(len);
        memcpy(b, orig, len);
        b[pos] ^= (uint8_t)(1u << bit);
        pv_graph *h = pv_pvm_load_mem(b, len);
        CU_ASSERT_PTR_NULL(h);
        /* a flip in the header's magic/version/BOM is named differently */
        if (sec > 0 || pos >= 16) {
          if (!strstr(pv_errmsg(), names[sec]))
            fprintf(stderr, "\nflip %s+%llu: %s\n", names[sec],
                    (unsigned long long)(pos - off[sec]), pv_errmsg());
          CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), names[sec]));
        }
        pv_graph_free(h);
        free(b);
        tested++;
      }
    }
    CU_ASSERT(tested > 0);
  }
  /* Truncation at every length: never a crash; at section boundaries the
   * message names the section cut off. */
  for (size_t l = 0; l < len; l++) {
    uint8_t *b = malloc(l ? l : 1);
    memcpy(b, orig, l);
    pv_graph *h = pv_pvm_load_mem(b, l);
    CU_ASSERT_PTR_NULL(h);
    CU_ASSERT(pv_errmsg()[0] != 0);
    for (int sec = 1; sec < 5; sec++)
      if (l == off[sec] || (l > off[sec] && l < end[sec]))
        CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), names[sec]));
    pv_graph_free(h);
    free(b);
  }
  /* Trailing garbage and the file path in messages. */
  uint8_t *b = malloc(len + 8);
  memcpy(b, orig, len);
  memset(b + len, 0, 8);
  CU_ASSERT_PTR_NULL(pv_pvm_load_mem(b, len + 8));
  free(b);
  FILE *f = fopen(tpath("trunc.pvm"), "wb");
  fwrite(orig, 1, (size_t)end[3] + 3, f);
  fclose(f);
  CU_ASSERT_PTR_NULL(pv_pvm_load(tpath("trunc.pvm")));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "trunc.pvm: section 'data'"));
  CU_ASSERT_PTR_NULL(pv_pvm_load(tpath("missing.pvm")));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "missing.pvm"));
  free(orig);
}

/* Re-seal a patched file: recompute the section and header checksums, so
 * the semantic checks behind them are reached. */
static void reseal(uint8_t *b) {
  uint64_t off[5], end[5];
  sections(b, off, end);
  for (int s = 0; s < 4; s++) {
    uint32_t c = pv_crc32_update(0, b + off[s + 1], end[s + 1] - off[s + 1]);
    memcpy(b + 32 + 32 * s + 24, &c, 4);
  }
  uint32_t c = pv_crc32_update(0, b, 20);
  c = pv_crc32_update(c, b + 24, 32 * 4 + 8);
  memcpy(b + 20, &c, 4);
}

static void test_header_fields(void) {
  CU_ASSERT_EQUAL(pv_crc32_update(0, "123456789", 9), 0xcbf43926u);
  uint64_t s = 4;
  pv_graph *g = sample_graph(&s, false);
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, tpath("h.pvm")), 0);
  pv_graph_free(g);
  size_t len;
  uint8_t *orig = read_file(tpath("h.pvm"), &len), *b = malloc(len);
  struct {
    size_t pos;
    uint32_t val;
    const char *msg;
  } cases[] = {
      {8, 2, "version 2"},
      {12, 0x04030201u, "byte order"},
      {16, 5, "5 sections"},
      {24, 12345, "header says 12345"},
      {32, 0x6174656d, "section table entry 0"}, /* "meta" -> "mata" */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    memcpy(b, orig, len);
    memcpy(b + cases[i].pos, &cases[i].val, 4);
    if (cases[i].pos == 32) b[33] = 'a';
    reseal(b);
    CU_ASSERT_PTR_NULL(pv_pvm_load_mem(b, len));
    if (!strstr(pv_errmsg(), cases[i].msg))
      fprintf(stderr, "\ncase %zu: %s\n", i, pv_errmsg());
    CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), cases[i].msg));
  }
  memcpy(b, orig, len);
  b[0] = 'X';
  CU_ASSERT_PTR_NULL(pv_pvm_load_mem(b, len));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "magic"));
  /* misaligned buffer */
  uint8_t *m = malloc(len + 1);
  memcpy(m + 1, orig, len);
  CU_ASSERT_PTR_NULL(pv_pvm_load_mem(m + 1, len));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "aligned"));
  free(m);
  free(b);
  free(orig);
}

/* Graphs the writer accepts but the reader must refuse. */
static void test_bad_graphs(void) {
  uint64_t s = 5;
  pv_graph *g = sample_graph(&s, false);
  free(g->values[2].name);
  g->values[2].name = strdup("x"); /* duplicate value name */
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, tpath("dup.pvm")), 0);
  CU_ASSERT_PTR_NULL(pv_pvm_load(tpath("dup.pvm")));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "duplicate value name 'x'"));
  pv_graph_free(g);

  g = sample_graph(&s, false);
  pv_node t = g->nodes[0]; /* swap two nodes: not topological */
  g->nodes[0] = g->nodes[1];
  g->nodes[1] = t;
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, tpath("order.pvm")), 0);
  CU_ASSERT_PTR_NULL(pv_pvm_load(tpath("order.pvm")));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "before it is produced"));
  pv_graph_free(g);

  g = sample_graph(&s, false);
  g->nodes[1].out[0] = g->nodes[0].out[0]; /* two producers */
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, tpath("prod.pvm")), 0);
  CU_ASSERT_PTR_NULL(pv_pvm_load(tpath("prod.pvm")));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "produced by two nodes"));
  pv_graph_free(g);

  g = sample_graph(&s, false);
  int h = pv_graph_find_value(g, "h"); /* stale data on a computed value */
  g->values[h].ndim = 1;
  g->values[h].dims[0] = 4;
  g->values[h].nbytes = 16;
  g->values[h].data = pv_aligned_alloc(16);
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, tpath("act.pvm")), 0);
  pv_graph *k = pv_pvm_load(tpath("act.pvm"));
  CU_ASSERT_PTR_NOT_NULL_FATAL(k);
  CU_ASSERT_PTR_NULL(k->values[h].data);
  pv_graph_free(k);
  pv_graph_free(g);

  g = sample_graph(&s, false);
  g->values[1].dims[0] = 31; /* dense bytes no longer match the shape */
  pv_pivot_free(g->values[1].pivot);
  g->values[1].pivot = NULL;
  CU_ASSERT_NOT_EQUAL(pv_pvm_save(g, tpath("shape.pvm")), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "w1"));
  pv_graph_free(g);
}

static void cleanup(void) {
  const char *files[] = {"rt.pvm", "rt2.pvm", "dense.pvm", "pruned.pvm", "c.pvm",
                         "trunc.pvm", "h.pvm", "dup.pvm", "order.pvm", "prod.pvm", "act.pvm"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(tpath(files[i]));
  rmdir(tmpdir);
}

static void test_setup(void) { CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmpdir)); }

static CU_TestInfo tests[] = {
    {"setup", test_setup},
    {"round trip", test_round_trip},
    {"1/8 file size", test_file_size},
    {"truncation and bit flips", test_corrupt},
    {"header fields", test_header_fields},
    {"malformed graphs", test_bad_graphs},
    {"cleanup", cleanup},
    CU_TEST_INFO_NULL};
PV_CUNIT_MAIN("pvm", tests)
