/* pivot convert: ONNX or .pvm in, .pvm out; detects the block structure
 * training left in the weights, or prunes by pivoting, then folds the
 * permutations along layer chains (docs/PIVOT.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "pv-pivot.h"

static void usage(FILE *f) {
  fputs(
      "usage: pivot convert IN.onnx|IN.pvm OUT.pvm [options]\n"
      "\n"
      "Without --prune, finds the exact block structure already in the\n"
      "weights (pruned weights stored as zeros) and prunes nothing.\n"
      "\n"
      "  --prune D                  prune Conv/Gemm/MatMul weights to density D\n"
      "                             (1/8 or 0.125; c/n gives c-of-n blocks)\n"
      "  --layer-density NAME=D     density of one layer (node or weight name);\n"
      "                             repeatable\n"
      "  --keep-dense NAME,...      layers left dense (often the first and last)\n"
      "  --min-channels N           leave layers with fewer in/out channels dense\n"
      "                             (default 8)\n"
      "  --seed S                   seed of the pruning search (default 1)\n"
      "  --no-fold                  keep every layer's own permutations\n"
      "  --detect-max-density D     densest structure worth keeping when\n"
      "                             detecting (default 0.75)\n",
      f);
}

static long long file_size(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static bool is_pvm(const char *path) {
  char magic[8] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  size_t n = fread(magic, 1, sizeof magic, f);
  fclose(f);
  return n == 8 && !memcmp(magic, "PIVOTPVM", 8);
}

/* Per-layer summary of what the .pvm will hold. */
static void summary(const pv_graph *g) {
  int64_t dense = 0, kept = 0;
  printf("%-30s %-7s %15s %8s %7s\n", "layer", "op", "weight (MxCxkk)",
         "density", "blocks");
  for (int i = 0; i < g->n_nodes; i++) {
    const pv_node *n = &g->nodes[i];
    if (n->n_in < 2 || n->in[1] < 0) continue;
    if (strcmp(n->op, "Conv") && strcmp(n->op, "Gemm") && strcmp(n->op, "MatMul"))
      continue;
    const pv_value *w = &g->values[n->in[1]];
    if (!w->data && !w->pivot) continue;
    pv_tensor t = pv_value_tensor(w);
    int64_t numel = pv_tensor_numel(&t);
    if (numel <= 0) continue;
    dense += numel;
    char shape[48];
    if (w->pivot) {
      const pv_pivot *p = w->pivot;
      snprintf(shape, sizeof shape, "%dx%dx%d", p->M, p->C, p->kk);
      kept += pv_pivot_nnz(p);
      printf("%-30.30s %-7s %15s %8.4f %7d\n", n->name, n->op, shape,
             pv_pivot_density(p), p->n_blocks);
    } else {
      pv_dims_str(w->dims, w->ndim, shape, sizeof shape);
      kept += numel;
      printf("%-30.30s %-7s %15s %8s %7s\n", n->name, n->op, shape, "dense", "-");
    }
  }
  if (dense)
    printf("weights: %lld of %lld parameters kept (%.4f)\n", (long long)kept,
           (long long)dense, (double)kept / dense);
}

int cmd_convert(int argc, char **argv) {
  const char *in = NULL, *out = NULL;
  double prune = -1, max_density = 0.75;
  bool fold = true;
  pv_prune_spec spec = {.density = 1, .min_channels = 8, .seed = 1};
  int rc = 1;
  /* at most argc entries of each list */
  const char **names = calloc((size_t)argc + 1, sizeof *names);
  double *dens = calloc((size_t)argc + 1, sizeof *dens);
  const char **keep = calloc((size_t)argc + 1, sizeof *keep);
  char **owned = calloc((size_t)argc + 1, sizeof *owned);
  int nkeep = 0, nowned = 0;
  pv_graph *g = NULL;
  if (!names || !dens || !keep || !owned) {
    cli_die("out of memory");
    goto done;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_val = i + 1 < argc;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      rc = 0;
      goto done;
    } else if (!strcmp(a, "--no-fold")) {
      fold = false;
    } else if (!strcmp(a, "--prune") && has_val) {
      prune = cli_parse_fraction(argv[++i]);
      if (prune < 0) {
        cli_die("convert: --prune '%s': expected a density in (0,1] like 1/8 or 0.125",
                argv[i]);
        goto done;
      }
    } else if (!strcmp(a, "--detect-max-density") && has_val) {
      max_density = cli_parse_fraction(argv[++i]);
      if (max_density < 0) {
        cli_die("convert: --detect-max-density '%s': expected a fraction in (0,1]",
                argv[i]);
        goto done;
      }
    } else if (!strcmp(a, "--layer-density") && has_val) {
      char *eq = strrchr(argv[++i], '=');
      double d = eq ? cli_parse_fraction(eq + 1) : -1;
      if (!eq || eq == argv[i] || d < 0) {
        cli_die("convert: --layer-density '%s': expected NAME=DENSITY", argv[i]);
        goto done;
      }
      char *nm = strndup(argv[i], (size_t)(eq - argv[i]));
      if (!nm) {
        cli_die("out of memory");
        goto done;
      }
      owned[nowned++] = nm;
      names[spec.n_layers] = nm;
      dens[spec.n_layers++] = d;
    } else if (!strcmp(a, "--keep-dense") && has_val) {
      char *list = strdup(argv[++i]);
      if (!list) {
        cli_die("out of memory");
        goto done;
      }
      owned[nowned++] = list;
      const char **more = realloc(keep, sizeof *keep * (size_t)(nkeep + strlen(list) + 2));
      if (!more) {
        cli_die("out of memory");
        goto done;
      }
      keep = more;
      for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
           tok = strtok_r(NULL, ",", &save))
        keep[nkeep++] = tok;
      keep[nkeep] = NULL;
    } else if (!strcmp(a, "--min-channels") && has_val) {
      if (cli_int(argv[++i], "--min-channels", 1, 1 << 30, &spec.min_channels))
        goto done;
    } else if (!strcmp(a, "--seed") && has_val) {
      char *end;
      errno = 0;
      spec.seed = strtoull(argv[++i], &end, 0);
      if (end == argv[i] || *end || errno) {
        cli_die("convert: --seed '%s' is not an unsigned integer", argv[i]);
        goto done;
      }
    } else if (a[0] == '-' && a[1]) {
      cli_die("convert: unknown option or missing value: %s", a);
      usage(stderr);
      goto done;
    } else if (!in) {
      in = a;
    } else if (!out) {
      out = a;
    } else {
      cli_die("convert: unexpected argument '%s'", a);
      goto done;
    }
  }
  if (!in || !out) {
    usage(stderr);
    rc = 2;
    goto done;
  }
  if ((spec.n_layers || nkeep) && prune < 0) {
    /* Per-layer settings refine a global --prune; alone they prune only
     * the named layers. */
    prune = 1;
  }
  spec.keep_dense = keep;
  spec.layer_names = names;
  spec.layer_density = dens;

  bool pvm = is_pvm(in);
  g = pvm ? pv_pvm_load(in) : pv_onnx_load(in);
  if (!g) {
    cli_die("%s", pv_errmsg());
    goto done;
  }
  /* A .pvm went through the passes when it was made. */
  if (!pvm && pv_passes_run(g)) {
    cli_die("%s: %s", in, pv_errmsg());
    goto done;
  }
  if (prune > 0) {
    spec.density = prune;
    printf("pruning by pivoting (seed %llu):\n", (unsigned long long)spec.seed);
    if (pv_graph_prune(g, &spec, stdout)) {
      cli_die("%s: %s", in, pv_errmsg());
      goto done;
    }
  } else if (pv_graph_detect_pivots(g, max_density)) {
    cli_die("%s: %s", in, pv_errmsg());
    goto done;
  }
  if (fold && pv_graph_fold_perms(g)) {
    cli_die("%s: %s", in, pv_errmsg());
    goto done;
  }
  char prod[64];
  snprintf(prod, sizeof prod, "pivot convert %s", pv_version());
  pv_graph_set_meta(g, "pivot.converter", prod);
  if (pv_pvm_save(g, out)) {
    cli_die("%s", pv_errmsg());
    goto done;
  }
  summary(g);
  long long si = file_size(in), so = file_size(out);
  printf("%s: %lld bytes -> %s: %lld bytes (%.4f)\n", in, si, out, so,
         si > 0 ? (double)so / si : 0.0);
  rc = 0;
done:
  pv_graph_free(g);
  for (int i = 0; i < nowned; i++) free(owned[i]);
  free(owned);
  free(names);
  free(dens);
  free(keep);
  return rc;
}
