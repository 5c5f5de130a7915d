/* Detection post-processing (YOLOv2/v3 grids, SSD anchor boxes), NMS, and
 * the image-in, boxes-out path that `pivot detect` and pivotd's detect
 * endpoint share. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pv-detect.h"

/* Parse up to max comma-separated floats; returns the count or < 0. */
static int parse_list(const char *key, const char *s, float *out, int max) {
  int n = 0;
  while (*s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v))
      return pv_error(PV_EFORMAT, "metadata %s: not a comma-separated list of numbers at '%.20s'", key, s);
    if (n == max) return pv_error(PV_EFORMAT, "metadata %s: more than %d numbers", key, max);
    out[n++] = (float)v;
    s = end;
    while (*s == ' ') s++;
    if (*s == ',') s++;
    else if (*s) return pv_error(PV_EFORMAT, "metadata %s: unexpected '%c'", key, *s);
  }
  return n;
}

static int parse_float(const pv_graph *g, const char *key, float *out, float lo, float hi) {
  const char *s = pv_graph_get_meta(g, key);
  if (!s) return 0;
  float v;
  int n = parse_list(key, s, &v, 1);
  if (n < 0) return n;
  if (n != 1 || v < lo || v > hi)
    return pv_error(PV_EFORMAT, "metadata %s: want one number in [%g, %g], not '%s'", key, lo, hi, s);
  *out = v;
  return 0;
}

static int parse_labels(const char *s, pv_detect_cfg *c) {
  size_t len = strlen(s);
  int n = 1;
  for (const char *p = s; *p; p++) n += *p == ',';
  /* One block: the pointer array, then the copied text. */
  char **lab = malloc(sizeof *lab * (size_t)n + len + 1);
  if (!lab) return pv_error(PV_ENOMEM, "metadata pivot.detect.labels: no memory");
  char *txt = (char *)(lab + n);
  memcpy(txt, s, len + 1);
  for (int i = 0; i < n; i++) {
    lab[i] = txt;
    char *comma = strchr(txt, ',');
    if (comma) {
      *comma = 0;
      txt = comma + 1;
    }
  }
  c->labels = lab;
  c->n_labels = n;
  return 0;
}

/* Ultralytics' `names` metadata, a Python dict repr: {0: 'person', 1:
 * "dog's bowl", ...}; the quoted strings in order are the labels. */
static int parse_names(const char *s, pv_detect_cfg *c) {
  size_t len = strlen(s);
  int n = 0;
  /* One block: at most len/3 + 1 labels' pointers, then the text. */
  size_t maxn = len / 3 + 1;
  char **lab = malloc(sizeof *lab * maxn + len + 1);
  if (!lab) return pv_error(PV_ENOMEM, "metadata names: no memory");
  char *txt = (char *)(lab + maxn);
  for (const char *p = s; *p;) {
    if (*p != '\'' && *p != '"') { p++; continue; }
    char q = *p++;
    lab[n++] = txt;
    for (; *p && *p != q; p++) {
      if (*p == '\\' && p[1]) p++;
      *txt++ = *p;
    }
    *txt++ = 0;
    if (*p) p++;
    if ((size_t)n == maxn) break;
  }
  if (!n) {
    free(lab);
    return pv_error(PV_EFORMAT, "metadata names: no quoted class names in '%.40s'", s);
  }
  c->labels = lab;
  c->n_labels = n;
  return 0;
}

static int parse_masks(const char *s, pv_detect_cfg *c) {
  /* "6,7,8;3,4,5;0,1,2": anchor indices of each output, in output order. */
  char buf[512];
  if (strlen(s) >= sizeof buf) return pv_error(PV_EFORMAT, "metadata pivot.detect.anchor_masks: too long");
  strcpy(buf, s);
  char *save = NULL;
  for (char *tok = strtok_r(buf, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
    if (c->n_masks == PV_DETECT_MAX_OUTPUTS)
      return pv_error(PV_EFORMAT, "metadata pivot.detect.anchor_masks: more than %d outputs", PV_DETECT_MAX_OUTPUTS);
    float v[PV_DETECT_MAX_ANCHORS];
    int n = parse_list("pivot.detect.anchor_masks", tok, v, PV_DETECT_MAX_ANCHORS);
    if (n < 0) return n;
    if (n == 0) return pv_error(PV_EFORMAT, "metadata pivot.detect.anchor_masks: empty group");
    for (int i = 0; i < n; i++) {
      if (v[i] != floorf(v[i]) || v[i] < 0 || v[i] >= c->n_anchors)
        return pv_error(PV_EFORMAT, "metadata pivot.detect.anchor_masks: %g is not an anchor index below %d", v[i], c->n_anchors);
      c->masks[c->n_masks][i] = (int)v[i];
    }
    c->mask_len[c->n_masks++] = n;
  }
  return 0;
}

void pv_detect_cfg_free(pv_detect_cfg *c) {
  if (!c) return;
  free(c->labels);
  c->labels = NULL;
  c->n_labels = 0;
}

int pv_detect_cfg_from_graph(const pv_graph *g, pv_detect_cfg *c) {
  memset(c, 0, sizeof *c);
  c->score = 0.5f;
  c->iou = 0.45f;
  c->top_k = 100;
  c->variances[0] = c->variances[1] = 0.1f;
  c->variances[2] = c->variances[3] = 0.2f;
  const char *t = g ? pv_graph_get_meta(g, "pivot.detect.type") : NULL;
  int rc = 0;
  if (!t && pv_image_ultralytics(g)) {
    /* An Ultralytics export: its predict defaults (conf 0.25, IoU 0.7,
     * 300 boxes) and its class names; its classify and obb exports are
     * no detectors of ours. */
    const char *task = pv_graph_get_meta(g, "task");
    if (task && strcmp(task, "detect") && strcmp(task, "segment") && strcmp(task, "pose"))
      return pv_error(PV_EUNSUPPORTED, "model is not a detector: an Ultralytics '%s' export "
                      "(detect, segment and pose exports are served)", task);
    c->type = PV_DETECT_BOXES;
    c->score = 0.25f;
    c->iou = 0.7f;
    c->top_k = 300;
    if ((rc = parse_names(pv_graph_get_meta(g, "names"), c))) return rc;
  } else if (!t) {
    return pv_error(PV_EUNSUPPORTED, "model is not a detector (no pivot.detect.type metadata)");
  } else if (!strcmp(t, "yolo2")) c->type = PV_DETECT_YOLO2;
  else if (!strcmp(t, "yolo3")) c->type = PV_DETECT_YOLO3;
  else if (!strcmp(t, "ssd")) c->type = PV_DETECT_SSD;
  else if (!strcmp(t, "yolo8")) c->type = PV_DETECT_YOLO8;
  else if (!strcmp(t, "yolo5")) c->type = PV_DETECT_YOLO5;
  else if (!strcmp(t, "end2end")) c->type = PV_DETECT_END2END;
  else return pv_error(PV_EFORMAT, "metadata pivot.detect.type: '%s' is not yolo2, yolo3, yolo5, yolo8, end2end or ssd", t);
  const char *s = pv_graph_get_meta(g, "pivot.detect.anchors");
  if (c->type == PV_DETECT_YOLO2 || c->type == PV_DETECT_YOLO3) {
    if (!s) return pv_error(PV_EFORMAT, "metadata pivot.detect.anchors: missing (a %s model needs w,h pairs)", t);
    int n = parse_list("pivot.detect.anchors", s, c->anchors, 2 * PV_DETECT_MAX_ANCHORS);
    if (n < 0) return n;
    if (n == 0 || n % 2) return pv_error(PV_EFORMAT, "metadata pivot.detect.anchors: want w,h pairs, got %d numbers", n);
    for (int i = 0; i < n; i++)
      if (c->anchors[i] <= 0) return pv_error(PV_EFORMAT, "metadata pivot.detect.anchors: %g is not positive", c->anchors[i]);
    c->n_anchors = n / 2;
  }
  s = pv_graph_get_meta(g, "pivot.detect.anchor_masks");
  if (s && (rc = parse_masks(s, c))) return rc;
  s = pv_graph_get_meta(g, "pivot.detect.variances");
  if (s) {
    int n = parse_list("pivot.detect.variances", s, c->variances, 4);
    if (n < 0) return n;
    if (n != 4) return pv_error(PV_EFORMAT, "metadata pivot.detect.variances: want 4 numbers");
  }
  c->iou_given = pv_graph_get_meta(g, "pivot.detect.iou") != NULL;
  if ((rc = parse_float(g, "pivot.detect.score", &c->score, 0, 1)) ||
      (rc = parse_float(g, "pivot.detect.iou", &c->iou, 0, 1)))
    return rc;
  float k = (float)c->top_k;
  if ((rc = parse_float(g, "pivot.detect.top_k", &k, 1, 100000))) return rc;
  c->top_k = (int)k;
  s = pv_graph_get_meta(g, "pivot.detect.labels");
  if (s && (rc = parse_labels(s, c))) return rc;
  return 0;
}

static int list_push(pv_det_list *l, const pv_detection *d) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 64;
    if (cap > (1 << 24)) return pv_error(PV_ERANGE, "detect: too many candidate boxes");
    pv_detection *p = realloc(l->d, sizeof *p * (size_t)cap);
    if (!p) return pv_error(PV_ENOMEM, "detect: no memory for boxes");
    l->d = p;
    l->cap = cap;
  }
  l->d[l->n++] = *d;
  return 0;
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

int pv_detect_decode_yolo(const pv_detect_cfg *c, const pv_tensor *out,
                          const int *mask, int n_mask, int net_w, int net_h,
                          float thr, pv_det_list *l) {
  int all[PV_DETECT_MAX_ANCHORS];
  if (!mask) {
    for (int i = 0; i < c->n_anchors; i++) all[i] = i;
    mask = all;
    n_mask = c->n_anchors;
  }
  if (out->dtype != PV_F32 || out->ndim != 4 || out->dims[0] != 1 || n_mask <= 0 ||
      out->dims[1] % n_mask || out->dims[1] / n_mask < 5) {
    char d[64];
    return pv_error(PV_ESHAPE, "detect: YOLO output %s is not FP32 [1, %d*(5+classes), H, W]",
                    pv_dims_str(out->dims, out->ndim, d, sizeof d), n_mask);
  }
  for (int j = 0; j < n_mask; j++)
    if (mask[j] < 0 || mask[j] >= c->n_anchors)
      return pv_error(PV_EINVAL, "detect: anchor %d of the mask is not one of the %d anchors", mask[j], c->n_anchors);
  int stride = (int)(out->dims[1] / n_mask), ncls = stride - 5;
  int64_t gh = out->dims[2], gw = out->dims[3], plane = gh * gw;
  const float *o = out->data;
  for (int64_t row = 0; row < gh; row++)
    for (int64_t col = 0; col < gw; col++)
      for (int j = 0; j < n_mask; j++) {
        const float *p = o + (int64_t)j * stride * plane + row * gw + col;
        double obj = sigmoid(p[4 * plane]), best = 1;
        int cls = 0;
        if (ncls > 0) {
          /* YOLOv2: softmax over classes; YOLOv3: independent sigmoids. */
          double mx = p[5 * plane], sum = 0;
          for (int k = 1; k < ncls; k++)
            if (p[(5 + k) * plane] > mx) { mx = p[(5 + k) * plane]; cls = k; }
          if (c->type == PV_DETECT_YOLO2) {
            for (int k = 0; k < ncls; k++) sum += exp(p[(5 + k) * plane] - mx);
            best = 1.0 / sum;
          } else {
            best = sigmoid(mx);
          }
        }
        double score = obj * best;
        if (!(score > thr)) continue;
        int a = mask[j];
        double cx = (col + sigmoid(p[0])) / gw * net_w;
        double cy = (row + sigmoid(p[plane])) / gh * net_h;
        double w = exp(p[2 * plane]) * c->anchors[2 * a];
        double h = exp(p[3 * plane]) * c->anchors[2 * a + 1];
        if (c->type == PV_DETECT_YOLO2) { /* anchors in grid cells */
          w = w / gw * net_w;
          h = h / gh * net_h;
        }
        pv_detection d = {{(float)(cx - w / 2), (float)(cy - h / 2), (float)(cx + w / 2),
                           (float)(cy + h / 2)}, (float)score, cls, ""};
        int rc = list_push(l, &d);
        if (rc) return rc;
      }
  return 0;
}

/* The types whose output holds boxes already decoded to input pixels
 * (Ultralytics' exports), which are clipped to the photo at the end. */
static bool decoded_boxes(pv_detect_type t) {
  return t == PV_DETECT_YOLO8 || t == PV_DETECT_YOLO5 || t == PV_DETECT_END2END ||
         t == PV_DETECT_BOXES;
}

/* Which layout a decoded-box output has: the configured one, or for
 * BOXES (Ultralytics metadata only) the one its shape and class count
 * say. */
static pv_detect_type boxes_layout(const pv_detect_cfg *c, const pv_tensor *out) {
  if (c->type != PV_DETECT_BOXES || out->ndim != 3) return c->type;
  int64_t a = out->dims[1], b = out->dims[2];
  /* Channel-major [1, 4+C(+extra), N] has fewer rows than columns; of the
   * box-major ones, [1, K, 6(+extra)] final boxes come at most 1000 (its
   * max_det, 300 by default), YOLOv5's anchors by the thousand. Extra
   * columns are segmentation mask coefficients or pose keypoints. */
  int64_t nl = c->n_labels;
  if (nl > 0 && a == 4 + nl) return PV_DETECT_YOLO8;
  if (b == 6 && a <= 1000) return PV_DETECT_END2END; /* before a 1-class v5 */
  if (nl > 0 && b == 5 + nl) return PV_DETECT_YOLO5;
  if (a < b) return PV_DETECT_YOLO8;
  return a <= 1000 && b >= 6 ? PV_DETECT_END2END : PV_DETECT_YOLO5;
}

/* [1, 4+C, N] (YOLOv8/11: channel-major) or [1, N, 5+C] (YOLOv5): boxes
 * already decoded to input pixels, scores already through their sigmoid;
 * [1, K, 6] final boxes (x0, y0, x1, y1, score, class). */
int pv_detect_decode_boxes(const pv_detect_cfg *c, const pv_tensor *out,
                           float thr, pv_det_list *l) {
  char d[64];
  if (out->dtype != PV_F32 || out->ndim != 3 || out->dims[0] != 1)
    return pv_error(PV_ESHAPE, "detect: box output %s is not FP32 [1, 4+classes, boxes] or [1, boxes, 5+classes]",
                    pv_dims_str(out->dims, out->ndim, d, sizeof d));
  pv_detect_type t = boxes_layout(c, out);
  if (t == PV_DETECT_END2END) {
    if (out->dims[2] < 6)
      return pv_error(PV_ESHAPE, "detect: end-to-end output %s is not [1, boxes, 6]",
                      pv_dims_str(out->dims, out->ndim, d, sizeof d));
    const float *o = out->data;
    for (int64_t i = 0; i < out->dims[1]; i++) {
      const float *p = o + i * out->dims[2];
      if (!(p[4] > thr)) continue;
      if (!(p[5] >= 0 && p[5] < 1e6f))
        return pv_error(PV_ERANGE, "detect: end-to-end box %lld has class %g", (long long)i, p[5]);
      pv_detection det = {{p[0], p[1], p[2], p[3]}, p[4], (int)p[5], ""};
      int rc = list_push(l, &det);
      if (rc) return rc;
    }
    return 0;
  }
  bool v8 = t == PV_DETECT_YOLO8;
  int64_t n = v8 ? out->dims[2] : out->dims[1], ch = v8 ? out->dims[1] : out->dims[2];
  int64_t ncls = ch - (v8 ? 4 : 5);
  /* the class count from the names when the output has more channels
   * (segmentation: 32 mask coefficients; pose: keypoints) */
  if (c->n_labels > 0 && c->n_labels < ncls) ncls = c->n_labels;
  if (ncls < 1)
    return pv_error(PV_ESHAPE, "detect: box output %s has no class scores (%s layout)",
                    pv_dims_str(out->dims, out->ndim, d, sizeof d), v8 ? "YOLOv8 [1, 4+C, N]" : "YOLOv5 [1, N, 5+C]");
  const float *o = out->data;
  /* element k of box i */
  int64_t si = v8 ? 1 : ch, sk = v8 ? n : 1;
  for (int64_t i = 0; i < n; i++) {
    const float *p = o + i * si;
    const float *cls0 = p + (v8 ? 4 : 5) * sk;
    int cls = 0;
    for (int64_t k = 1; k < ncls; k++)
      if (cls0[k * sk] > cls0[cls * sk]) cls = (int)k;
    double score = cls0[cls * sk];
    if (!v8) score *= p[4 * sk];
    if (!(score > thr)) continue;
    double cx = p[0], cy = p[sk], w = p[2 * sk], h = p[3 * sk];
    pv_detection det = {{(float)(cx - w / 2), (float)(cy - h / 2), (float)(cx + w / 2),
                         (float)(cy + h / 2)}, (float)score, cls, ""};
    int rc = list_push(l, &det);
    if (rc) return rc;
  }
  return 0;
}

static float clampf(float v, float hi) { return v < 0 ? 0 : v > hi ? hi : v; }

int pv_detect_decode_ssd(const pv_detect_cfg *c, const pv_tensor *deltas,
                         const pv_tensor *logits, const pv_tensor *anchors,
                         int net_w, int net_h, float thr, pv_det_list *l) {
  char d1[64], d2[64], d3[64];
  int64_t n = deltas->ndim == 3 ? deltas->dims[1] : -1;
  int64_t k = logits->ndim == 3 ? logits->dims[2] : -1;
  bool ok = deltas->dtype == PV_F32 && logits->dtype == PV_F32 && anchors->dtype == PV_F32 &&
            deltas->ndim == 3 && deltas->dims[0] == 1 && deltas->dims[2] == 4 &&
            logits->ndim == 3 && logits->dims[0] == 1 && logits->dims[1] == n && k >= 2 &&
            ((anchors->ndim == 2 && anchors->dims[0] == n && anchors->dims[1] == 4) ||
             (anchors->ndim == 3 && anchors->dims[0] == 1 && anchors->dims[1] == n &&
              anchors->dims[2] == 4));
  if (!ok)
    return pv_error(PV_ESHAPE, "detect: SSD outputs must be FP32 deltas [1,N,4], logits [1,N,K>=2], anchors [N,4]; got %s, %s, %s",
                    pv_dims_str(deltas->dims, deltas->ndim, d1, sizeof d1),
                    pv_dims_str(logits->dims, logits->ndim, d2, sizeof d2),
                    pv_dims_str(anchors->dims, anchors->ndim, d3, sizeof d3));
  const float *dl = deltas->data, *lg = logits->data, *an = anchors->data;
  for (int64_t i = 0; i < n; i++) {
    const float *s = lg + i * k;
    int cls = 1;
    for (int64_t j = 2; j < k; j++)
      if (s[j] > s[cls]) cls = (int)j;
    double score = sigmoid(s[cls]);
    if (!(score > thr)) continue;
    const float *a = an + i * 4, *t = dl + i * 4;
    double ah = (double)a[2] - a[0], aw = (double)a[3] - a[1];
    double acy = a[0] + ah / 2, acx = a[1] + aw / 2;
    double cy = t[0] * c->variances[0] * ah + acy, cx = t[1] * c->variances[1] * aw + acx;
    double hh = exp(t[2] * c->variances[2]) * ah / 2, hw = exp(t[3] * c->variances[3]) * aw / 2;
    pv_detection d = {{(float)((cx - hw) * net_w), (float)((cy - hh) * net_h),
                       (float)((cx + hw) * net_w), (float)((cy + hh) * net_h)},
                      (float)score, cls - 1, ""};
    int rc = list_push(l, &d);
    if (rc) return rc;
  }
  return 0;
}

float pv_box_iou(const float *a, const float *b) {
  double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]);
  double ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
  double inter = iw > 0 && ih > 0 ? iw * ih : 0;
  double ua = ((double)a[2] - a[0]) * ((double)a[3] - a[1]) +
              ((double)b[2] - b[0]) * ((double)b[3] - b[1]) - inter;
  return ua > 0 ? (float)(inter / ua) : 0;
}

/* Sort key: qsort is not stable, so ties keep decode order by index. */
typedef struct rank {
  float score;
  int idx;
} rank;

static int by_score(const void *x, const void *y) {
  const rank *a = x, *b = y;
  if (a->score != b->score) return a->score < b->score ? 1 : -1;
  return (a->idx > b->idx) - (a->idx < b->idx);
}

int pv_detect_nms(pv_det_list *l, float iou, int top_k) {
  if (l->n == 0) return 0;
  rank *r = malloc(sizeof *r * (size_t)l->n);
  pv_detection *s = malloc(sizeof *s * (size_t)l->n);
  if (!r || !s) {
    free(r);
    free(s);
    return pv_error(PV_ENOMEM, "detect: no memory for NMS");
  }
  for (int i = 0; i < l->n; i++) r[i] = (rank){l->d[i].score, i};
  qsort(r, (size_t)l->n, sizeof *r, by_score);
  for (int i = 0; i < l->n; i++) s[i] = l->d[r[i].idx];
  free(r);
  memcpy(l->d, s, sizeof *s * (size_t)l->n);
  free(s);
  int kept = 0;
  for (int i = 0; i < l->n && (top_k <= 0 || kept < top_k); i++) {
    bool drop = false;
    for (int j = 0; j < kept && !drop; j++)
      drop = l->d[j].cls == l->d[i].cls && pv_box_iou(l->d[j].box, l->d[i].box) > iou;
    if (!drop) l->d[kept++] = l->d[i];
  }
  l->n = kept;
  return kept;
}

int pv_detect_image(pv_model *m, pv_exec *e, const void *img, size_t len,
                    const pv_detect_params *p, pv_detection **out, int *n,
                    int *img_w, int *img_h, int *img_orientation) {
  *out = NULL;
  *n = 0;
  const pv_graph *g = pv_model_graph(m);
  pv_detect_cfg c;
  pv_image im = {0};
  pv_tensor in = {0};
  pv_tensor outs[PV_DETECT_MAX_OUTPUTS];
  pv_det_list l = {0};
  int rc = pv_detect_cfg_from_graph(g, &c);
  if (rc) goto out_cfg;
  int nout = pv_model_n_outputs(m);
  if (pv_model_n_inputs(m) != 1 || nout > PV_DETECT_MAX_OUTPUTS) {
    rc = pv_error(PV_EUNSUPPORTED, "detect: the model has %d inputs and %d outputs; want 1 image input and at most %d outputs",
                  pv_model_n_inputs(m), nout, PV_DETECT_MAX_OUTPUTS);
    goto out_cfg;
  }
  pv_image_prep prep;
  if ((rc = pv_image_prep_from_graph(g, g->inputs[0], &prep))) goto out_cfg;
  if ((rc = pv_image_decode_ex(img, len,
                               p && p->stored_orientation
                                   ? PV_IMAGE_STORED_ORIENTATION : 0,
                               &im)))
    goto out_cfg;
  in.dtype = PV_F32;
  in.ndim = 4;
  in.dims[0] = 1;
  in.dims[1] = 3;
  in.dims[2] = prep.height;
  in.dims[3] = prep.width;
  if ((rc = pv_tensor_alloc(&in))) goto out_img;
  pv_image_xform xf;
  if ((rc = pv_image_to_chw(&im, &prep, in.data, &xf))) goto out_in;
  memset(outs, 0, sizeof outs);
  if ((rc = pv_exec_run(e, &in, 1, outs, nout))) goto out_in;

  float thr = p && p->score >= 0 ? p->score : c.score;
  float iou = p && p->iou >= 0 ? p->iou : c.iou;
  int top_k = p && p->top_k > 0 ? p->top_k : c.top_k;
  if (c.type == PV_DETECT_SSD) {
    if (nout != 3) {
      rc = pv_error(PV_EUNSUPPORTED, "detect: an SSD model needs 3 outputs (deltas, logits, anchors), this one has %d", nout);
      goto out_in;
    }
    rc = pv_detect_decode_ssd(&c, &outs[0], &outs[1], &outs[2], prep.width, prep.height, thr, &l);
  } else if (decoded_boxes(c.type)) {
    /* the first output: Ultralytics' segmentation models add mask
     * prototypes after it */
    rc = pv_detect_decode_boxes(&c, &outs[0], thr, &l);
    /* final boxes of an end-to-end export are suppressed already: no NMS
     * unless an IoU is asked for (query or metadata) */
    if (boxes_layout(&c, &outs[0]) == PV_DETECT_END2END && !(p && p->iou >= 0) && !c.iou_given)
      iou = 1;
  } else if (c.type == PV_DETECT_YOLO3 || c.n_masks > 0) {
    if (c.n_masks != nout) {
      rc = pv_error(PV_EFORMAT, "detect: metadata pivot.detect.anchor_masks has %d groups for %d outputs", c.n_masks, nout);
      goto out_in;
    }
    for (int i = 0; i < nout && !rc; i++)
      rc = pv_detect_decode_yolo(&c, &outs[i], c.masks[i], c.mask_len[i], prep.width, prep.height, thr, &l);
  } else {
    rc = pv_detect_decode_yolo(&c, &outs[0], NULL, 0, prep.width, prep.height, thr, &l);
  }
  if (rc) goto out_list;
  if ((rc = pv_detect_nms(&l, iou, top_k)) < 0) goto out_list;
  rc = 0;
  for (int i = 0; i < l.n; i++) {
    pv_detection *d = &l.d[i];
    if (c.type == PV_DETECT_SSD) { /* clipped after NMS, as TF's SSD does */
      d->box[0] = clampf(d->box[0], (float)prep.width);
      d->box[1] = clampf(d->box[1], (float)prep.height);
      d->box[2] = clampf(d->box[2], (float)prep.width);
      d->box[3] = clampf(d->box[3], (float)prep.height);
    }
    d->box[0] = (float)(d->box[0] * xf.sx + xf.ox);
    d->box[1] = (float)(d->box[1] * xf.sy + xf.oy);
    d->box[2] = (float)(d->box[2] * xf.sx + xf.ox);
    d->box[3] = (float)(d->box[3] * xf.sy + xf.oy);
    if (decoded_boxes(c.type)) { /* Ultralytics clips to the photo */
      d->box[0] = clampf(d->box[0], (float)im.w);
      d->box[1] = clampf(d->box[1], (float)im.h);
      d->box[2] = clampf(d->box[2], (float)im.w);
      d->box[3] = clampf(d->box[3], (float)im.h);
    }
    if (d->cls < c.n_labels) snprintf(d->label, sizeof d->label, "%s", c.labels[d->cls]);
  }
  if (img_w) *img_w = im.w;
  if (img_h) *img_h = im.h;
  if (img_orientation) *img_orientation = im.orientation;
  *n = l.n;
  *out = l.d;
  l.d = NULL;
out_list:
  free(l.d);
out_in:
  pv_free(in.data);
out_img:
  pv_image_free(&im);
out_cfg:
  pv_detect_cfg_free(&c);
  return rc;
}
