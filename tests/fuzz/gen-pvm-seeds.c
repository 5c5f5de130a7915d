/* Writes a few small valid .pvm files into DIR: the fuzzer's seed corpus.
 * Block-structured weights so the seeds hold pivots, folded permutations
 * and dense tensors. Usage: gen-pvm-seeds DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-pivot.h"

static uint64_t rng = 12345;
static float frand(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng >> 40) & 0xffff) / 65536.0f - 0.5f;
}

static int add_const(pv_graph *g, const char *name, int64_t d0, int64_t d1,
                     int64_t d2, int64_t d3, int nd, int blocks) {
  int v = pv_graph_add_value(g, name);
  pv_value *val = &g->values[v];
  int64_t dims[4] = {d0, d1, d2, d3}, n = 1;
  val->dtype = PV_F32;
  val->ndim = nd;
  for (int i = 0; i < nd; i++) n *= (val->dims[i] = dims[i]);
  val->nbytes = sizeof(float) * (size_t)n;
  val->data = pv_aligned_alloc(val->nbytes);
  float *w = val->data;
  int64_t inner = n / d0 / (nd > 1 ? d1 : 1);
  for (int64_t i = 0; i < n; i++) {
    int64_t r = i / (n / d0), c = nd > 1 ? (i / inner) % d1 : 0;
    /* interleaved blocks: a permutation hides them */
    bool in = blocks <= 1 || (r % blocks) == (c % blocks);
    w[i] = in ? frand() + (frand() > 0 ? 0.6f : -0.6f) : 0;
  }
  return v;
}

static int act(pv_graph *g, const char *name) {
  int v = pv_graph_add_value(g, name);
  g->values[v].dtype = PV_F32;
  return v;
}

static int node(pv_graph *g, const char *name, const char *op, const int *in,
                int n_in, int out) {
  return pv_graph_add_node(g, name, op, in, n_in, &out, 1);
}

static void io(pv_graph *g, int in, int out) {
  g->n_inputs = g->n_outputs = 1;
  g->inputs = malloc(sizeof(int));
  g->outputs = malloc(sizeof(int));
  g->inputs[0] = in;
  g->outputs[0] = out;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen-pvm-seeds DIR\n");
    return 2;
  }
  char path[4096];
  /* 1: MLP, detected and folded */
  pv_graph *g = pv_graph_new();
  g->name = strdup("mlp");
  g->opset = 13;
  pv_graph_set_meta(g, "labels", "a,b,c,d");
  int x = act(g, "x");
  g->values[x].ndim = 2;
  g->values[x].dims[0] = PV_DIM_BATCH;
  g->values[x].dims[1] = 8;
  int w1 = add_const(g, "w1", 16, 8, 0, 0, 2, 4);
  int b1 = add_const(g, "b1", 16, 1, 0, 0, 1, 1);
  int w2 = add_const(g, "w2", 4, 16, 0, 0, 2, 2);
  int h = act(g, "h"), r = act(g, "r"), y = act(g, "y");
  int n = node(g, "fc1", "Gemm", (int[]){x, w1, b1}, 3, h);
  pv_attr a = {.name = "transB", .type = PV_ATTR_INT, .i = 1};
  pv_node_add_attr(g, n, &a);
  node(g, "relu", "Relu", (int[]){h}, 1, r);
  n = node(g, "fc2", "Gemm", (int[]){r, w2}, 2, y);
  pv_node_add_attr(g, n, &a);
  io(g, x, y);
  if (pv_graph_detect_pivots(g, 0.75) || pv_graph_fold_perms(g)) goto fail;
  snprintf(path, sizeof path, "%s/mlp.pvm", argv[1]);
  if (pv_pvm_save(g, path)) goto fail;
  pv_graph_free(g);

  /* 2: small conv net, pruned 1/2 */
  g = pv_graph_new();
  g->name = strdup("conv");
  g->opset = 13;
  x = act(g, "image");
  int wc = add_const(g, "wc", 8, 4, 3, 3, 4, 1);
  int wp = add_const(g, "wp", 8, 8, 1, 1, 4, 1);
  int c1 = act(g, "c1"), p1 = act(g, "p1"), out = act(g, "out");
  n = node(g, "conv", "Conv", (int[]){x, wc}, 2, c1);
  int64_t pads[4] = {1, 1, 1, 1};
  pv_attr pa = {.name = "pads", .type = PV_ATTR_INTS, .ints = pads, .n = 4};
  pv_node_add_attr(g, n, &pa);
  g->nodes[n].act = PV_ACT_LEAKY;
  g->nodes[n].act_alpha = 0.1f;
  node(g, "pool", "MaxPool", (int[]){c1}, 1, p1);
  node(g, "proj", "Conv", (int[]){p1, wp}, 2, out);
  io(g, x, out);
  pv_prune_spec spec = {.density = 0.5, .min_channels = 1, .seed = 1};
  if (pv_graph_prune(g, &spec, NULL) || pv_graph_fold_perms(g)) goto fail;
  snprintf(path, sizeof path, "%s/conv.pvm", argv[1]);
  if (pv_pvm_save(g, path)) goto fail;
  pv_graph_free(g);
  return 0;
fail:
  fprintf(stderr, "gen-pvm-seeds: %s\n", pv_errmsg());
  pv_graph_free(g);
  return 1;
}
