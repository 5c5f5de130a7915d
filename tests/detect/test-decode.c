/* core/detect.c: YOLOv2/YOLOv3/SSD decoding on hand-made outputs whose
 * boxes are worked out by hand, NMS, IoU, and metadata parsing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cunit-main.h"
#include "pv-detect.h"
#include "pv-image.h"

static float logit(double p) { return (float)log(p / (1 - p)); }

static pv_tensor t4(float *d, int64_t c, int64_t h, int64_t w) {
  pv_tensor t = {PV_F32, 4, {1, c, h, w}, d};
  return t;
}

static void test_yolo2(void) {
  /* One anchor (2 x 3 grid cells), no classes, a 2x2 grid on a 64x64
   * input. Only cell (row 1, col 0) is confident. */
  float o[5 * 4];
  for (int i = 0; i < 20; i++) o[i] = 0;
  for (int i = 0; i < 4; i++) o[4 * 4 + i] = -10;
  int cell = 1 * 2 + 0;
  o[3 * 4 + cell] = (float)log(2.0); /* th */
  o[4 * 4 + cell] = logit(0.8);
  pv_detect_cfg c = {.type = PV_DETECT_YOLO2, .n_anchors = 1, .anchors = {2, 3}};
  pv_tensor t = t4(o, 5, 2, 2);
  pv_det_list l = {0};
  CU_ASSERT_EQUAL_FATAL(pv_detect_decode_yolo(&c, &t, NULL, 0, 64, 64, 0.5f, &l), 0);
  CU_ASSERT_EQUAL_FATAL(l.n, 1);
  /* centre ((0 + .5) / 2 * 64, (1 + .5) / 2 * 64) = (16, 48);
   * size (2 / 2 * 64, 2 * 3 / 2 * 64) = (64, 192). */
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[0], 16 - 32, 1e-4);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[1], 48 - 96, 1e-4);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[2], 16 + 32, 1e-4);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[3], 48 + 96, 1e-4);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].score, 0.8, 1e-6);
  /* The threshold is strict and applies to the score. */
  l.n = 0;
  CU_ASSERT_EQUAL(pv_detect_decode_yolo(&c, &t, NULL, 0, 64, 64, 0.85f, &l), 0);
  CU_ASSERT_EQUAL(l.n, 0);
  free(l.d);
}

static void test_yolo2_classes(void) {
  /* Two classes with logits 0 and log 3: softmax 0.25 / 0.75. */
  float o[7] = {0, 0, 0, 0, logit(0.8), 0, (float)log(3.0)};
  pv_detect_cfg c = {.type = PV_DETECT_YOLO2, .n_anchors = 1, .anchors = {1, 1}};
  pv_tensor t = t4(o, 7, 1, 1);
  pv_det_list l = {0};
  CU_ASSERT_EQUAL_FATAL(pv_detect_decode_yolo(&c, &t, NULL, 0, 32, 32, 0.1f, &l), 0);
  CU_ASSERT_EQUAL_FATAL(l.n, 1);
  CU_ASSERT_EQUAL(l.d[0].cls, 1);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].score, 0.8 * 0.75, 1e-6);
  /* YOLOv3: independent sigmoids, anchors in input pixels, a mask. */
  c.type = PV_DETECT_YOLO3;
  c.n_anchors = 2;
  c.anchors[2] = 10, c.anchors[3] = 20;
  int mask[1] = {1};
  l.n = 0;
  CU_ASSERT_EQUAL_FATAL(pv_detect_decode_yolo(&c, &t, mask, 1, 32, 32, 0.1f, &l), 0);
  CU_ASSERT_EQUAL_FATAL(l.n, 1);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].score, 0.8 * (3.0 / 4.0), 1e-6); /* sigmoid(log 3) = .75 */
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[2] - l.d[0].box[0], 10, 1e-4);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[3] - l.d[0].box[1], 20, 1e-4);
  /* A wrong channel count is a shape error, not a crash. */
  pv_tensor bad = t4(o, 7, 1, 1);
  CU_ASSERT_EQUAL(pv_detect_decode_yolo(&c, &bad, NULL, 0, 32, 32, 0.1f, &l), PV_ESHAPE);
  free(l.d);
}

static void test_ssd(void) {
  /* Two anchors; the first with zero deltas decodes to itself, the second
   * is shifted down by one y-delta (0.1 of its height) and is background. */
  float an[8] = {0.2f, 0.2f, 0.6f, 0.4f, 0.5f, 0.5f, 0.7f, 0.9f};
  float dl[8] = {0, 0, 0, 0, 1, 0, 0, 0};
  float lg[4] = {0, logit(0.9), 0, -5};
  pv_tensor td = {PV_F32, 3, {1, 2, 4}, dl}, tl = {PV_F32, 3, {1, 2, 2}, lg},
            ta = {PV_F32, 2, {2, 4}, an};
  pv_detect_cfg c = {.type = PV_DETECT_SSD, .variances = {0.1f, 0.1f, 0.2f, 0.2f}};
  pv_det_list l = {0};
  CU_ASSERT_EQUAL_FATAL(pv_detect_decode_ssd(&c, &td, &tl, &ta, 100, 200, 0.5f, &l), 0);
  CU_ASSERT_EQUAL_FATAL(l.n, 1);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].score, 0.9, 1e-6);
  CU_ASSERT_EQUAL(l.d[0].cls, 0);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[0], 0.2 * 100, 1e-3); /* xmin * width */
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[1], 0.2 * 200, 1e-3);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[2], 0.4 * 100, 1e-3);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].box[3], 0.6 * 200, 1e-3);
  lg[3] = logit(0.7f);
  l.n = 0;
  CU_ASSERT_EQUAL_FATAL(pv_detect_decode_ssd(&c, &td, &tl, &ta, 100, 200, 0.5f, &l), 0);
  CU_ASSERT_EQUAL_FATAL(l.n, 2);
  /* ty = 1: centre y 0.6 + 0.1 * 0.2 = 0.62, height 0.2 unchanged. */
  CU_ASSERT_DOUBLE_EQUAL(l.d[1].box[1], (0.62 - 0.1) * 200, 1e-3);
  CU_ASSERT_DOUBLE_EQUAL(l.d[1].box[3], (0.62 + 0.1) * 200, 1e-3);
  pv_tensor ta_bad = {PV_F32, 2, {3, 4}, an};
  CU_ASSERT_EQUAL(pv_detect_decode_ssd(&c, &td, &tl, &ta_bad, 100, 200, 0.5f, &l), PV_ESHAPE);
  free(l.d);
}

static void test_iou_and_nms(void) {
  float a[4] = {0, 0, 10, 10}, b[4] = {5, 0, 15, 10}, z[4] = {3, 3, 3, 3};
  CU_ASSERT_DOUBLE_EQUAL(pv_box_iou(a, a), 1, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pv_box_iou(a, b), 50.0 / 150.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pv_box_iou(z, z), 0, 0);
  pv_det_list l = {0};
  l.cap = 8;
  l.d = calloc(8, sizeof *l.d);
  pv_detection in[] = {
      {{100, 100, 110, 110}, 0.7f, 0, ""}, /* C: far away */
      {{5, 0, 15, 10}, 0.8f, 0, ""},       /* B: IoU 1/3 with A */
      {{1, 0, 11, 10}, 0.85f, 0, ""},      /* E: IoU 0.82 with A */
      {{0, 0, 10, 10}, 0.9f, 0, ""},       /* A */
      {{0, 0, 10, 10}, 0.6f, 1, ""},       /* D: A's place, other class */
  };
  memcpy(l.d, in, sizeof in);
  l.n = 5;
  CU_ASSERT_EQUAL(pv_detect_nms(&l, 0.3f, 0), 3);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].score, 0.9, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(l.d[1].score, 0.7, 1e-6); /* B (1/3 > 0.3) went */
  CU_ASSERT_EQUAL(l.d[2].cls, 1);                  /* class-wise */
  memcpy(l.d, in, sizeof in);
  l.n = 5;
  CU_ASSERT_EQUAL(pv_detect_nms(&l, 0.4f, 2), 2); /* B kept, but top-2 */
  CU_ASSERT_DOUBLE_EQUAL(l.d[1].score, 0.8, 1e-6);
  free(l.d);
}

static void test_cfg(void) {
  pv_graph *g = pv_graph_new();
  pv_detect_cfg c;
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EUNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "not a detector"));
  pv_graph_set_meta(g, "pivot.detect.type", "yolo2");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "pivot.detect.anchors"));
  pv_graph_set_meta(g, "pivot.detect.anchors", "1,2,3");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EFORMAT);
  pv_graph_set_meta(g, "pivot.detect.anchors", "1.5,2, 3,4");
  pv_graph_set_meta(g, "pivot.detect.labels", "face,cat");
  pv_graph_set_meta(g, "pivot.detect.iou", "0.4");
  CU_ASSERT_EQUAL_FATAL(pv_detect_cfg_from_graph(g, &c), 0);
  CU_ASSERT_EQUAL(c.n_anchors, 2);
  CU_ASSERT_DOUBLE_EQUAL(c.anchors[2], 3, 0);
  CU_ASSERT_EQUAL(c.n_labels, 2);
  CU_ASSERT_STRING_EQUAL(c.labels[1], "cat");
  CU_ASSERT_DOUBLE_EQUAL(c.iou, 0.4, 1e-6);
  pv_detect_cfg_free(&c);
  pv_graph_set_meta(g, "pivot.detect.iou", "1.5");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "pivot.detect.iou"));
  pv_detect_cfg_free(&c);
  pv_graph_set_meta(g, "pivot.detect.iou", "0.4");
  pv_graph_set_meta(g, "pivot.detect.anchor_masks", "1;0;2");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EFORMAT);
  pv_detect_cfg_free(&c);
  pv_graph_set_meta(g, "pivot.detect.anchor_masks", "1;0");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), 0);
  CU_ASSERT_EQUAL(c.n_masks, 2);
  CU_ASSERT_EQUAL(c.masks[0][0], 1);
  pv_detect_cfg_free(&c);
  pv_graph_set_meta(g, "pivot.detect.type", "retina");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EFORMAT);
  pv_detect_cfg_free(&c);
  pv_graph_free(g);
}

/* Decoded-box outputs: YOLOv8/11 [1, 4+C, N] (channel-major) and YOLOv5
 * [1, N, 5+C] with objectness; the BOXES type tells them apart by the
 * class count. Box 1 of 3 is the confident one. */
static void test_boxes(void) {
  /* v8: C = 2, N = 3; box 1: centre (30, 20), size 10 x 8, class 1 at 0.9 */
  float v8[6 * 3] = {0};
  v8[0 * 3 + 1] = 30, v8[1 * 3 + 1] = 20, v8[2 * 3 + 1] = 10, v8[3 * 3 + 1] = 8;
  v8[4 * 3 + 1] = 0.2f, v8[5 * 3 + 1] = 0.9f, v8[4 * 3 + 2] = 0.3f;
  pv_tensor t = {PV_F32, 3, {1, 6, 3}, v8};
  for (int auto_type = 0; auto_type < 2; auto_type++) {
    pv_detect_cfg c = {.type = auto_type ? PV_DETECT_BOXES : PV_DETECT_YOLO8, .n_labels = auto_type ? 2 : 0};
    pv_det_list l = {0};
    CU_ASSERT_EQUAL_FATAL(pv_detect_decode_boxes(&c, &t, 0.25f, &l), 0);
    CU_ASSERT_EQUAL_FATAL(l.n, 2); /* box 2's 0.3 passes 0.25 too */
    CU_ASSERT_EQUAL(l.d[0].cls, 1);
    CU_ASSERT_DOUBLE_EQUAL(l.d[0].score, 0.9, 1e-6);
    CU_ASSERT(l.d[0].box[0] == 25 && l.d[0].box[1] == 16 && l.d[0].box[2] == 35 && l.d[0].box[3] == 24);
    CU_ASSERT_EQUAL(l.d[1].cls, 0);
    free(l.d);
  }
  /* v5: [1, 3, 5+2]; box 1: objectness 0.5 x class 1 at 0.9 = 0.45 */
  float v5[3 * 7] = {0};
  float *b = v5 + 7;
  b[0] = 30, b[1] = 20, b[2] = 10, b[3] = 8, b[4] = 0.5f, b[5] = 0.1f, b[6] = 0.9f;
  v5[2 * 7 + 4] = 0.9f, v5[2 * 7 + 5] = 0.2f; /* 0.18: below */
  pv_tensor t5 = {PV_F32, 3, {1, 3, 7}, v5};
  pv_detect_cfg c5 = {.type = PV_DETECT_BOXES, .n_labels = 2};
  pv_det_list l = {0};
  CU_ASSERT_EQUAL_FATAL(pv_detect_decode_boxes(&c5, &t5, 0.25f, &l), 0);
  CU_ASSERT_EQUAL_FATAL(l.n, 1);
  CU_ASSERT_EQUAL(l.d[0].cls, 1);
  CU_ASSERT_DOUBLE_EQUAL(l.d[0].score, 0.45, 1e-6);
  CU_ASSERT(l.d[0].box[0] == 25 && l.d[0].box[3] == 24);
  free(l.d);
  /* end-to-end [1, 4, 6] (x0, y0, x1, y1, score, class), told by shape */
  float e2e[4 * 6] = {10, 12, 20, 22, 0.8f, 2, 11, 12, 20, 22, 0.6f, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  pv_tensor te = {PV_F32, 3, {1, 4, 6}, e2e};
  pv_detect_cfg ce = {.type = PV_DETECT_BOXES, .n_labels = 3};
  l = (pv_det_list){0};
  CU_ASSERT_EQUAL_FATAL(pv_detect_decode_boxes(&ce, &te, 0.25f, &l), 0);
  CU_ASSERT_EQUAL_FATAL(l.n, 2);
  CU_ASSERT(l.d[0].cls == 2 && l.d[0].box[0] == 10 && l.d[0].box[3] == 22 && l.d[1].box[0] == 11);
  free(l.d);
  e2e[5] = -1; /* a class index that is none */
  l = (pv_det_list){0};
  CU_ASSERT_EQUAL(pv_detect_decode_boxes(&ce, &te, 0.25f, &l), PV_ERANGE);
  free(l.d);
  /* a segmentation export: [1, 4 + 2 + 3 mask coefficients, 12] (more
   * boxes than channels, as real ones); the names' 2 classes are scored,
   * the large coefficients are not */
  float seg[9 * 12] = {0};
  for (int k = 0; k < 6; k++)
    for (int i = 0; i < 3; i++) seg[k * 12 + i] = v8[k * 3 + i];
  for (int i = 6 * 12; i < 9 * 12; i++) seg[i] = 5.0f;
  pv_tensor ts = {PV_F32, 3, {1, 9, 12}, seg};
  pv_detect_cfg cs = {.type = PV_DETECT_BOXES, .n_labels = 2};
  l = (pv_det_list){0};
  CU_ASSERT_EQUAL_FATAL(pv_detect_decode_boxes(&cs, &ts, 0.25f, &l), 0);
  CU_ASSERT_EQUAL_FATAL(l.n, 2);
  CU_ASSERT(l.d[0].cls == 1 && l.d[0].score == 0.9f && l.d[1].cls == 0);
  free(l.d);
  /* end-to-end segmentation rows [1, 40, 6 + 32]: the first 6 columns */
  static float e2s[40 * 38];
  e2s[0] = 1, e2s[1] = 2, e2s[2] = 3, e2s[3] = 4, e2s[4] = 0.7f, e2s[5] = 1;
  for (int i = 6; i < 38; i++) e2s[i] = 9;
  pv_tensor t2s = {PV_F32, 3, {1, 40, 38}, e2s};
  l = (pv_det_list){0};
  CU_ASSERT_EQUAL_FATAL(pv_detect_decode_boxes(&cs, &t2s, 0.25f, &l), 0);
  CU_ASSERT(l.n == 1 && l.d[0].cls == 1 && l.d[0].box[3] == 4 && l.d[0].score == 0.7f);
  free(l.d);
  /* no class channels */
  pv_tensor bad = {PV_F32, 3, {1, 4, 3}, v8};
  pv_detect_cfg c8 = {.type = PV_DETECT_YOLO8};
  l = (pv_det_list){0};
  CU_ASSERT_EQUAL(pv_detect_decode_boxes(&c8, &bad, 0.25f, &l), PV_ESHAPE);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "no class scores"));
}

/* An Ultralytics export's metadata makes a detector with its defaults:
 * the names dict's labels (quotes of both kinds), conf 0.25, IoU 0.7,
 * letterbox padded with 114 and / 255; pivot.* keys still win. */
static void test_ultralytics_cfg(void) {
  pv_graph *g = pv_graph_new();
  int x = pv_graph_add_value(g, "images");
  g->values[x].dtype = PV_F32;
  g->values[x].ndim = 4;
  int64_t dims[4] = {1, 3, 640, 640};
  memcpy(g->values[x].dims, dims, sizeof dims);
  pv_graph_set_meta(g, "names", "{0: 'person', 1: \"dog's bowl\", 2: 'traffic light'}");
  pv_detect_cfg c;
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EUNSUPPORTED); /* names alone: no */
  pv_graph_set_meta(g, "stride", "32");
  CU_ASSERT_EQUAL_FATAL(pv_detect_cfg_from_graph(g, &c), 0);
  CU_ASSERT_EQUAL(c.type, PV_DETECT_BOXES);
  CU_ASSERT_EQUAL_FATAL(c.n_labels, 3);
  CU_ASSERT_STRING_EQUAL(c.labels[0], "person");
  CU_ASSERT_STRING_EQUAL(c.labels[1], "dog's bowl");
  CU_ASSERT_STRING_EQUAL(c.labels[2], "traffic light");
  CU_ASSERT_DOUBLE_EQUAL(c.score, 0.25, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(c.iou, 0.7, 1e-6);
  pv_detect_cfg_free(&c);
  pv_image_prep p;
  CU_ASSERT_EQUAL_FATAL(pv_image_prep_from_graph(g, x, &p), 0);
  CU_ASSERT(p.resize == PV_RESIZE_LETTERBOX_CV && p.pad == 114 && p.std[1] == 255 && p.mean[0] == 0);
  pv_graph_set_meta(g, "pivot.image.resize", "stretch");
  CU_ASSERT_EQUAL_FATAL(pv_image_prep_from_graph(g, x, &p), 0);
  CU_ASSERT(p.resize == PV_RESIZE_STRETCH && p.pad == 114);
  pv_graph_set_meta(g, "pivot.detect.type", "yolo8");
  CU_ASSERT_EQUAL_FATAL(pv_detect_cfg_from_graph(g, &c), 0);
  CU_ASSERT(c.type == PV_DETECT_YOLO8 && c.n_labels == 0 && c.score == 0.5f);
  pv_detect_cfg_free(&c);
  pv_graph_free(g);
  /* a classifier or oriented-box export is no detector of ours */
  g = pv_graph_new();
  pv_graph_set_meta(g, "names", "{0: 'cat'}");
  pv_graph_set_meta(g, "task", "classify");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EUNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "'classify'"));
  pv_graph_set_meta(g, "task", "obb");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EUNSUPPORTED);
  pv_graph_set_meta(g, "task", "segment");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), 0);
  pv_detect_cfg_free(&c);
  pv_graph_free(g);
  /* a names dict without a quoted name */
  g = pv_graph_new();
  pv_graph_set_meta(g, "names", "{0: 1}");
  pv_graph_set_meta(g, "task", "detect");
  CU_ASSERT_EQUAL(pv_detect_cfg_from_graph(g, &c), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "names"));
  pv_detect_cfg_free(&c);
  pv_graph_free(g);
}

static CU_TestInfo tests[] = {
    {"YOLOv2 box by hand", test_yolo2},
    {"YOLO classes (softmax, sigmoid) and masks", test_yolo2_classes},
    {"SSD anchors and variances", test_ssd},
    {"IoU and class-wise NMS", test_iou_and_nms},
    {"metadata", test_cfg},
    {"decoded boxes (YOLOv8/11, YOLOv5)", test_boxes},
    {"Ultralytics metadata", test_ultralytics_cfg},
    CU_TEST_INFO_NULL,
};

PV_CUNIT_MAIN("detect", tests)
