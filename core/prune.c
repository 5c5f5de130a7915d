/* Prune by pivoting: balanced co-clustering of rows and input channels
 * that keeps the most squared weight mass inside equal-size blocks, and
 * the graph-level detect/prune drivers (docs/PIVOT.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-pivot.h"
#include "weights.h"

#define PRUNE_RESTARTS 3
#define PRUNE_MAX_ITERS 25

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int32_t group_size(int32_t total, int32_t n, int32_t g) {
  return total / n + (g < total % n);
}

typedef struct pair {
  double gain;
  int32_t item, group;
} pair;

static int cmp_pair(const void *a, const void *b) {
  const pair *x = a, *y = b;
  if (x->gain != y->gain) return x->gain < y->gain ? 1 : -1;
  if (x->item != y->item) return x->item < y->item ? -1 : 1;
  return x->group < y->group ? -1 : (x->group > y->group);
}

typedef struct swapc {
  double d;
  int32_t item;
} swapc;

static int cmp_swapc(const void *a, const void *b) {
  const swapc *x = a, *y = b;
  if (x->d != y->d) return x->d < y->d ? 1 : -1;
  return x->item < y->item ? -1 : (x->item > y->item);
}

/* Balanced assignment of N items to n groups of fixed sizes maximising
 * the summed gain G[i*n+g]: items in order of regret (best minus second
 * best gain) take their best group with room left, then pairwise swaps
 * between groups while they improve. O(N n + N log N) plus the swaps.
 * Deterministic. */
static int assign(const double *G, int32_t N, int32_t n, int32_t *grp,
                  pair *pairs, swapc *sa, swapc *sb) {
  int32_t *cap = malloc(sizeof(int32_t) * (size_t)n);
  if (!cap) return PV_ENOMEM;
  for (int32_t g = 0; g < n; g++) cap[g] = group_size(N, n, g);
  for (int32_t i = 0; i < N; i++) {
    const double *gi = G + (size_t)i * n;
    double b1 = -1e300, b2 = -1e300;
    for (int32_t g = 0; g < n; g++) {
      if (gi[g] > b1) {
        b2 = b1;
        b1 = gi[g];
      } else if (gi[g] > b2) {
        b2 = gi[g];
      }
    }
    pairs[i] = (pair){n > 1 ? b1 - b2 : 0, i, 0};
  }
  qsort(pairs, (size_t)N, sizeof *pairs, cmp_pair);
  for (int32_t k = 0; k < N; k++) {
    int32_t i = pairs[k].item, best = -1;
    const double *gi = G + (size_t)i * n;
    for (int32_t g = 0; g < n; g++)
      if (cap[g] && (best < 0 || gi[g] > gi[best])) best = g;
    grp[i] = best;
    cap[best]--;
  }
  free(cap);
  /* Swaps: for groups a < b, pair the items of a that most want b with
   * the items of b that most want a while the sum of both moves gains. */
  for (int pass = 0; pass < 4; pass++) {
    bool improved = false;
    for (int32_t a = 0; a < n; a++)
      for (int32_t b = a + 1; b < n; b++) {
        int32_t na = 0, nb = 0;
        double maxa = -1e300, maxb = -1e300;
        for (int32_t i = 0; i < N; i++) {
          const double *gi = G + (size_t)i * n;
          if (grp[i] == a && gi[b] - gi[a] > maxa) maxa = gi[b] - gi[a];
          if (grp[i] == b && gi[a] - gi[b] > maxb) maxb = gi[a] - gi[b];
        }
        if (maxa + maxb <= 1e-12) continue; /* no swap can pay */
        /* Only items that could pair with the other side's best move. */
        for (int32_t i = 0; i < N; i++) {
          const double *gi = G + (size_t)i * n;
          if (grp[i] == a && gi[b] - gi[a] + maxb > 1e-12)
            sa[na++] = (swapc){gi[b] - gi[a], i};
          else if (grp[i] == b && gi[a] - gi[b] + maxa > 1e-12)
            sb[nb++] = (swapc){gi[a] - gi[b], i};
        }
        qsort(sa, (size_t)na, sizeof *sa, cmp_swapc);
        qsort(sb, (size_t)nb, sizeof *sb, cmp_swapc);
        for (int32_t k = 0; k < na && k < nb; k++) {
          if (sa[k].d + sb[k].d <= 1e-12) break;
          grp[sa[k].item] = b;
          grp[sb[k].item] = a;
          improved = true;
        }
      }
    if (!improved) break;
  }
  return 0;
}

typedef struct pstate {
  const double *E; /* M x C channel energies */
  int32_t M, C, n, c;
  double *G;   /* max(M,C) x n gains */
  double *R;   /* max(M,C) x n partial sums */
  pair *pairs;
  swapc *sa, *sb;
} pstate;

/* Row gains: energy of row m inside the column groups row group g reaches
 * (g, g+1, ..., g+c-1 mod n). */
static double row_step(pstate *s, const int32_t *cg, int32_t *rg, bool move) {
  int32_t M = s->M, C = s->C, n = s->n;
  memset(s->R, 0, sizeof(double) * (size_t)M * n);
  for (int32_t m = 0; m < M; m++)
    for (int32_t ch = 0; ch < C; ch++)
      s->R[(size_t)m * n + cg[ch]] += s->E[(size_t)m * C + ch];
  for (int32_t m = 0; m < M; m++)
    for (int32_t g = 0; g < n; g++) {
      double v = 0;
      for (int32_t j = 0; j < s->c; j++) v += s->R[(size_t)m * n + (g + j) % n];
      s->G[(size_t)m * n + g] = v;
    }
  if (move && assign(s->G, M, n, rg, s->pairs, s->sa, s->sb)) return -1;
  double score = 0;
  for (int32_t m = 0; m < M; m++) score += s->G[(size_t)m * n + rg[m]];
  return score;
}

/* Channel gains: energy of channel ch inside the row groups that reach
 * column group h (h, h-1, ..., h-c+1 mod n). */
static int chan_step(pstate *s, const int32_t *rg, int32_t *cg) {
  int32_t M = s->M, C = s->C, n = s->n;
  memset(s->R, 0, sizeof(double) * (size_t)C * n);
  for (int32_t m = 0; m < M; m++)
    for (int32_t ch = 0; ch < C; ch++)
      s->R[(size_t)ch * n + rg[m]] += s->E[(size_t)m * C + ch];
  for (int32_t ch = 0; ch < C; ch++)
    for (int32_t h = 0; h < n; h++) {
      double v = 0;
      for (int32_t j = 0; j < s->c; j++)
        v += s->R[(size_t)ch * n + ((h - j) % n + n) % n];
      s->G[(size_t)ch * n + h] = v;
    }
  return assign(s->G, C, n, cg, s->pairs, s->sa, s->sb) ? -1 : 0;
}

/* Seed: n rows chosen k-means++ style (far apart in normalised energy
 * profile), each channel sent to the seed row that weighs it most. */
static int seed_channels(pstate *s, uint64_t *rng, int32_t *cg) {
  int32_t M = s->M, C = s->C, n = s->n;
  int32_t *centre = malloc(sizeof(int32_t) * (size_t)n);
  double *dist = malloc(sizeof(double) * (size_t)M);
  double *norm = malloc(sizeof(double) * (size_t)M);
  if (!centre || !dist || !norm) {
    free(centre);
    free(dist);
    free(norm);
    return -1;
  }
  for (int32_t m = 0; m < M; m++) {
    double q = 0;
    for (int32_t ch = 0; ch < C; ch++) q += s->E[(size_t)m * C + ch] * s->E[(size_t)m * C + ch];
    norm[m] = q > 0 ? 1 / sqrt(q) : 0;
    dist[m] = 2;
  }
  centre[0] = (int32_t)(splitmix(rng) % (uint64_t)M);
  for (int32_t k = 1; k < n; k++) {
    const double *e = s->E + (size_t)centre[k - 1] * C;
    double tot = 0;
    for (int32_t m = 0; m < M; m++) {
      double dot = 0;
      for (int32_t ch = 0; ch < C; ch++) dot += s->E[(size_t)m * C + ch] * e[ch];
      double d = 1 - dot * norm[m] * norm[centre[k - 1]];
      if (d < dist[m]) dist[m] = d;
      tot += dist[m] * dist[m];
    }
    double r = (double)(splitmix(rng) >> 11) / 9007199254740992.0 * tot;
    int32_t pick = M - 1;
    for (int32_t m = 0; m < M; m++) {
      r -= dist[m] * dist[m];
      if (r < 0) {
        pick = m;
        break;
      }
    }
    centre[k] = pick;
  }
  for (int32_t ch = 0; ch < C; ch++)
    for (int32_t g = 0; g < n; g++)
      s->G[(size_t)ch * n + g] =
          s->E[(size_t)centre[g] * C + ch] * norm[centre[g]];
  free(centre);
  free(dist);
  free(norm);
  return assign(s->G, C, n, cg, s->pairs, s->sa, s->sb) ? -1 : 0;
}

static int32_t *order_by_group(const int32_t *grp, int32_t N, int32_t n,
                               int32_t *off) {
  int32_t *perm = malloc(sizeof(int32_t) * (size_t)N);
  if (!perm) return NULL;
  int32_t k = 0;
  for (int32_t g = 0; g < n; g++) {
    off[g] = k;
    for (int32_t i = 0; i < N; i++)
      if (grp[i] == g) perm[k++] = i;
  }
  off[n] = N;
  return perm;
}

pv_pivot *pv_pivot_prune(const float *w, int32_t M, int32_t C, int32_t kk,
                         int n, int c, uint64_t seed, double *retained) {
  if (!w || M <= 0 || C <= 0 || kk <= 0 || (int64_t)M * C > INT32_MAX / kk) {
    pv_error(PV_EINVAL, "prune: bad size %dx%dx%d", M, C, kk);
    return NULL;
  }
  if (n < 1 || c < 1 || c > n || n > M || n > C) {
    pv_error(PV_EINVAL, "prune: cannot cut %dx%d into %d-of-%d groups", M, C,
             c, n);
    return NULL;
  }
  pv_pivot *res = NULL;
  int32_t NM = M > C ? M : C;
  pstate s = {.M = M, .C = C, .n = n, .c = c};
  double *E = malloc(sizeof(double) * (size_t)M * C);
  s.G = malloc(sizeof(double) * (size_t)NM * n);
  s.R = malloc(sizeof(double) * (size_t)NM * n);
  s.pairs = malloc(sizeof(pair) * (size_t)NM);
  s.sa = malloc(sizeof(swapc) * (size_t)NM);
  s.sb = malloc(sizeof(swapc) * (size_t)NM);
  int32_t *rg = malloc(sizeof(int32_t) * (size_t)M);
  int32_t *cg = malloc(sizeof(int32_t) * (size_t)C);
  int32_t *best_rg = malloc(sizeof(int32_t) * (size_t)M);
  int32_t *best_cg = malloc(sizeof(int32_t) * (size_t)C);
  int32_t *roff = malloc(sizeof(int32_t) * (size_t)(n + 1));
  int32_t *coff = malloc(sizeof(int32_t) * (size_t)(n + 1));
  int32_t *brg = malloc(sizeof(int32_t) * (size_t)n * c);
  int32_t *bcg = malloc(sizeof(int32_t) * (size_t)n * c);
  int32_t *perm_r = NULL, *perm_c = NULL;
  if (!E || !s.G || !s.R || !s.pairs || !s.sa || !s.sb || !rg || !cg ||
      !best_rg || !best_cg || !roff || !coff || !brg || !bcg)
    goto oom;
  s.E = E;
  double total = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t ch = 0; ch < C; ch++) {
      double e = 0;
      const float *p = w + (m * C + ch) * kk;
      for (int32_t t = 0; t < kk; t++) e += (double)p[t] * p[t];
      E[m * C + ch] = e;
      total += e;
    }
  double best = -1;
  uint64_t rng = seed;
  for (int r = 0; r < PRUNE_RESTARTS && n > 1; r++) {
    if (seed_channels(&s, &rng, cg)) goto oom;
    double prev = -1, score = 0;
    for (int it = 0; it < PRUNE_MAX_ITERS; it++) {
      score = row_step(&s, cg, rg, true);
      if (score < 0) goto oom;
      if (chan_step(&s, rg, cg)) goto oom;
      score = row_step(&s, cg, rg, false); /* score of the new channels */
      if (score <= prev * (1 + 1e-4)) break; /* gains have levelled off */
      prev = score;
    }
    /* The final channel move may not pay; rescore with rows re-chosen. */
    score = row_step(&s, cg, rg, true);
    if (score > best) {
      best = score;
      memcpy(best_rg, rg, sizeof(int32_t) * (size_t)M);
      memcpy(best_cg, cg, sizeof(int32_t) * (size_t)C);
    }
  }
  if (n == 1) {
    memset(best_rg, 0, sizeof(int32_t) * (size_t)M);
    memset(best_cg, 0, sizeof(int32_t) * (size_t)C);
  }
  perm_r = order_by_group(best_rg, M, n, roff);
  perm_c = order_by_group(best_cg, C, n, coff);
  if (!perm_r || !perm_c) goto oom;
  int32_t nb = 0;
  for (int32_t g = 0; g < n; g++) {
    /* Row group g reaches g..g+c-1 (mod n); blocks sorted by column group. */
    int32_t start = nb;
    for (int32_t j = 0; j < c; j++) {
      int32_t h = (g + j) % n, k = nb++;
      brg[k] = g;
      while (k > start && bcg[k - 1] > h) {
        bcg[k] = bcg[k - 1];
        k--;
      }
      bcg[k] = h;
    }
  }
  res = pv_pivot_from_dense(w, M, C, kk, perm_r, perm_c, n, roff, n, coff, nb,
                            brg, bcg);
  if (res && retained) {
    double kept = 0;
    for (uint64_t i = 0; i < res->data_len; i++)
      kept += (double)res->data[i] * res->data[i];
    *retained = total > 0 ? kept / total : 1;
  }
  goto done;
oom:
  pv_error(PV_ENOMEM, "out of memory pruning a %dx%d matrix", M, C);
done:
  free(E);
  free(s.G);
  free(s.R);
  free(s.pairs);
  free(s.sa);
  free(s.sb);
  free(rg);
  free(cg);
  free(best_rg);
  free(best_cg);
  free(roff);
  free(coff);
  free(brg);
  free(bcg);
  free(perm_r);
  free(perm_c);
  return res;
}

/* ------------------------------------------------------------ graph */

static const char *layer_name(const pv_graph *g, const pv_wlayer *L) {
  const char *nm = g->nodes[L->node].name;
  return nm && *nm ? nm : g->values[L->wv].name;
}

static bool name_is(const pv_graph *g, const pv_wlayer *L, const char *s) {
  const char *nm = g->nodes[L->node].name;
  return (nm && !strcmp(nm, s)) || !strcmp(g->values[L->wv].name, s);
}

/* c/n closest to the density with n <= limit; ties go to the smaller n
 * (fewer, larger blocks run faster). */
static void choose_grid(double d, int32_t limit, int *n_out, int *c_out) {
  int bn = 1, bc = 1;
  double berr = 2;
  for (int n = 1; n <= 64 && n <= limit; n++) {
    int c = (int)floor(d * n + 0.5);
    if (c < 1) c = 1;
    if (c > n) c = n;
    double err = fabs((double)c / n - d);
    if (err < berr - 1e-9) {
      berr = err;
      bn = n;
      bc = c;
    }
  }
  *n_out = bn;
  *c_out = bc;
}

int pv_graph_detect_pivots(pv_graph *g, double max_density) {
  if (!g) return pv_error(PV_EINVAL, "detect: no graph");
  pv_graph_link(g); /* constants are told apart by having no producer */
  for (int i = 0; i < g->n_nodes; i++) {
    pv_wlayer L;
    if (!pv_wlayer_of(g, i, &L) || g->values[L.wv].pivot) continue;
    /* Blocks cover every nonzero, so a weight with more than max_density
     * nonzeros has no structure worth keeping: skip the copy and the scan
     * (this runs at every ONNX load). */
    const pv_value *wv = &g->values[L.wv];
    if (wv->data && wv->dtype == PV_F32) {
      size_t n = (size_t)L.M * (size_t)L.C * (size_t)L.kk, nz = 0;
      size_t limit = (size_t)(max_density * (double)n);
      const float *d = wv->data;
      for (size_t k = 0; k < n && nz <= limit; k++) nz += d[k] != 0.0f;
      if (nz > limit) continue;
    }
    float *W = pv_wlayer_dense(g, &L);
    if (!W) return pv_error_prefix(PV_ENOMEM, "layer '%s'", layer_name(g, &L));
    pv_pivot *p = pv_pivot_detect(W, L.M, L.C, L.kk, max_density);
    free(W);
    if (p) g->values[L.wv].pivot = p;
  }
  return 0;
}

int pv_graph_prune(pv_graph *g, const pv_prune_spec *spec, FILE *report) {
  if (!g || !spec) return pv_error(PV_EINVAL, "prune: no graph or spec");
  pv_graph_link(g);
  if (!(spec->density > 0 && spec->density <= 1))
    return pv_error(PV_EINVAL, "prune: density %g not in (0,1]", spec->density);
  for (int k = 0; k < spec->n_layers; k++)
    if (!(spec->layer_density[k] > 0 && spec->layer_density[k] <= 1))
      return pv_error(PV_EINVAL, "prune: density %g of layer '%s' not in (0,1]",
                      spec->layer_density[k], spec->layer_names[k]);
  /* A misspelt layer name would silently prune the wrong thing. */
  for (int k = 0; k < spec->n_layers; k++) {
    bool found = false;
    for (int i = 0; i < g->n_nodes && !found; i++) {
      pv_wlayer L;
      found = pv_wlayer_of(g, i, &L) && name_is(g, &L, spec->layer_names[k]);
    }
    if (!found)
      return pv_error(PV_ENOTFOUND, "prune: no prunable layer named '%s'",
                      spec->layer_names[k]);
  }
  for (const char *const *kd = spec->keep_dense; kd && *kd; kd++) {
    bool found = false;
    for (int i = 0; i < g->n_nodes && !found; i++) {
      pv_wlayer L;
      found = pv_wlayer_of(g, i, &L) && name_is(g, &L, *kd);
    }
    if (!found)
      return pv_error(PV_ENOTFOUND, "prune: --keep-dense: no layer named '%s'",
                      *kd);
  }
  for (int i = 0; i < g->n_nodes; i++) {
    pv_wlayer L;
    if (!pv_wlayer_of(g, i, &L)) continue;
    const char *nm = layer_name(g, &L);
    double d = spec->density;
    for (int k = 0; k < spec->n_layers; k++)
      if (name_is(g, &L, spec->layer_names[k])) d = spec->layer_density[k];
    bool keep = false;
    for (const char *const *kd = spec->keep_dense; kd && *kd; kd++)
      keep = keep || name_is(g, &L, *kd);
    if (keep || d >= 1 || L.M < spec->min_channels ||
        L.C < spec->min_channels) {
      if (report)
        fprintf(report, "  %-28s %6d x %-6d kk=%-3d dense (%s)\n", nm, L.M,
                L.C, L.kk, keep ? "kept dense" : d >= 1 ? "density 1"
                                                        : "few channels");
      continue;
    }
    int n, c;
    choose_grid(d, L.M < L.C ? L.M : L.C, &n, &c);
    if (n == 1) continue;
    float *W = pv_wlayer_dense(g, &L);
    if (!W) return pv_error_prefix(PV_ENOMEM, "layer '%s'", nm);
    double kept = 0;
    pv_pivot *p = pv_pivot_prune(W, L.M, L.C, L.kk, n, c,
                                 spec->seed ^ (uint64_t)i * 0x9e3779b97f4a7c15ull,
                                 &kept);
    if (!p) {
      free(W);
      return pv_error_prefix(PV_EINVAL, "layer '%s'", nm);
    }
    /* The dense copy keeps the pruned weights so that a backend without
     * pivot support computes the same function. */
    pv_pivot_to_dense(p, W);
    int rc = pv_wlayer_store(g, &L, W);
    free(W);
    if (rc) {
      pv_pivot_free(p);
      return rc;
    }
    pv_pivot_free(g->values[L.wv].pivot);
    g->values[L.wv].pivot = p;
    if (report)
      fprintf(report,
              "  %-28s %6d x %-6d kk=%-3d density %.4f (%d of %d) "
              "retained energy %.4f\n",
              nm, L.M, L.C, L.kk, pv_pivot_density(p), c, n, kept);
  }
  return 0;
}
