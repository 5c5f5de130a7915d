/* pivot inspect: layers, shapes, parameters, FLOPs, density, memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void usage(FILE *f) {
  fprintf(f, "usage: pivot inspect MODEL [--json] [--batch N] [--backend LIST]\n");
}

static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

int cmd_inspect(int argc, char **argv) {
  const char *path = NULL, *backend = "cpu";
  bool json = false;
  int batch = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--json")) {
      json = true;
    } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
      if (cli_int(argv[++i], "--batch", 1, 1 << 20, &batch)) return 2;
    } else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
      backend = argv[++i];
    } else if (argv[i][0] == '-' || path) {
      usage(stderr);
      return cli_die("inspect: unexpected argument '%s'", argv[i]), 2;
    } else {
      path = argv[i];
    }
  }
  if (!path) {
    usage(stderr);
    return 2;
  }
  char bbuf[256];
  const char *names[9];
  cli_backends(backend, bbuf, sizeof bbuf, names, 9);
  pv_load_opts lo = {.backends = names};
  pv_model *m = pv_model_load(path, &lo);
  if (!m) return cli_die("%s", pv_errmsg());
  const pv_graph *g = pv_model_graph(m);
  int cap = g->n_nodes + 1;
  pv_layer_info *rows = calloc(cap, sizeof *rows);
  size_t peak = 0;
  int n = rows ? pv_model_inspect(m, batch, rows, cap, &peak) : PV_ENOMEM;
  if (n < 0) {
    free(rows);
    pv_model_release(m);
    return cli_die("inspect: %s", pv_errmsg());
  }
  struct stat st;
  long long file_bytes = stat(path, &st) ? -1 : (long long)st.st_size;
  int64_t params = 0;
  double flops = 0;
  size_t wbytes = 0;
  for (int i = 0; i < n; i++) {
    params += rows[i].params;
    flops += rows[i].flops;
    wbytes += rows[i].weight_bytes;
  }
  char dims[128];
  if (json) {
    printf("{\"model\":");
    json_str(path);
    printf(",\"batch\":%d,\"inputs\":[", batch);
    for (int i = 0; i < pv_model_n_inputs(m); i++) {
      const pv_value *v = pv_model_input(m, i);
      printf("%s{\"name\":", i ? "," : "");
      json_str(v->name);
      printf(",\"datatype\":\"%s\",\"shape\":%s}", pv_dtype_name(v->dtype),
             pv_dims_str(v->dims, v->ndim < 0 ? 0 : v->ndim, dims, sizeof dims));
    }
    printf("],\"outputs\":[");
    for (int i = 0; i < pv_model_n_outputs(m); i++) {
      const pv_value *v = pv_model_output(m, i);
      printf("%s{\"name\":", i ? "," : "");
      json_str(v->name);
      printf(",\"datatype\":\"%s\"}", pv_dtype_name(v->dtype));
    }
    printf("],\"layers\":[");
    for (int i = 0; i < n; i++) {
      pv_layer_info *r = &rows[i];
      printf("%s{\"name\":", i ? "," : "");
      json_str(r->name);
      printf(",\"op\":");
      json_str(r->op);
      printf(",\"backend\":");
      json_str(r->backend);
      printf(",\"shape\":%s,\"params\":%lld,\"flops\":%.0f,\"density\":%.6g,"
             "\"blocks\":%d,\"weight_bytes\":%zu}",
             pv_dims_str(r->out_dims, r->out_ndim, dims, sizeof dims),
             (long long)r->params, r->flops, r->density, r->n_blocks,
             r->weight_bytes);
    }
    printf("],\"params\":%lld,\"flops\":%.0f,\"weight_bytes\":%zu,"
           "\"peak_activation_bytes\":%zu,\"file_bytes\":%lld}\n",
           (long long)params, flops, wbytes, peak, file_bytes);
  } else {
    printf("%s: %d layers, batch %d\n", path, n, batch);
    for (int i = 0; i < pv_model_n_inputs(m); i++) {
      const pv_value *v = pv_model_input(m, i);
      printf("  input  %-24s %-6s %s\n", v->name, pv_dtype_name(v->dtype),
             pv_dims_str(v->dims, v->ndim < 0 ? 0 : v->ndim, dims, sizeof dims));
    }
    for (int i = 0; i < pv_model_n_outputs(m); i++) {
      const pv_value *v = pv_model_output(m, i);
      printf("  output %-24s %-6s %s\n", v->name, pv_dtype_name(v->dtype),
             pv_dims_str(v->dims, v->ndim < 0 ? 0 : v->ndim, dims, sizeof dims));
    }
    printf("\n%-28s %-18s %-7s %-20s %10s %10s %8s %6s %10s\n", "layer", "op",
           "backend", "output", "params", "MFLOP", "density", "blocks", "bytes");
    for (int i = 0; i < n; i++) {
      pv_layer_info *r = &rows[i];
      char dens[16] = "-";
      if (r->params) {
        if (r->n_blocks) snprintf(dens, sizeof dens, "%.4f", r->density);
        else snprintf(dens, sizeof dens, "dense");
      }
      printf("%-28.28s %-18.18s %-7s %-20s %10lld %10.2f %8s %6d %10zu\n", r->name,
             r->op, r->backend, pv_dims_str(r->out_dims, r->out_ndim, dims, sizeof dims),
             (long long)r->params, r->flops / 1e6, dens, r->n_blocks, r->weight_bytes);
    }
    printf("\ntotal: %lld parameters, %.3f GFLOP, weights %.2f MiB, "
           "peak activations %.2f MiB, file %.2f MiB\n",
           (long long)params, flops / 1e9, wbytes / 1048576.0, peak / 1048576.0,
           file_bytes / 1048576.0);
    if (pv_model_data_shaped(m))
      printf("(backend core: output size depends on the data; shapes from there on "
             "are the largest possible)\n");
  }
  free(rows);
  pv_model_release(m);
  return 0;
}
