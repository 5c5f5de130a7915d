/* Detection post-processing: decode a detector's raw outputs into boxes
 * (YOLOv2 / YOLOv3 grids with anchors, SSD with anchor boxes and
 * variances), score threshold, class-wise non-maximum suppression, top-k;
 * and pv_detect_image(), which runs a model on an encoded image end to end.
 * What to do is read from the model's pivot.detect.* metadata
 * (docs/DETECTION.md). */
#ifndef PV_DETECT_H
#define PV_DETECT_H

#include "pivot.h"
#include "pv-image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pv_detection {
  float box[4];   /* x0, y0, x1, y1 */
  float score;
  int cls;        /* class index (background excluded) */
  char label[48]; /* class name from pivot.detect.labels, or "" */
} pv_detection;

typedef enum pv_detect_type {
  PV_DETECT_YOLO2 = 1, /* anchors in grid cells, softmax classes */
  PV_DETECT_YOLO3,     /* anchors in input pixels, sigmoid classes,
                          one output per scale */
  PV_DETECT_SSD,       /* anchor boxes + variances, sigmoid scores,
                          class 0 = background */
  PV_DETECT_YOLO8,     /* decoded boxes [1, 4+C, N]: cx, cy, w, h in input
                          pixels, C class scores (Ultralytics YOLOv8/11) */
  PV_DETECT_YOLO5,     /* decoded boxes [1, N, 5+C]: cx, cy, w, h,
                          objectness, C class scores (YOLOv5) */
  PV_DETECT_END2END,   /* final boxes [1, K, 6]: x0, y0, x1, y1, score,
                          class (YOLO26 / YOLOv10 / nms=True exports: no
                          NMS of ours by default) */
  PV_DETECT_BOXES,     /* any of the last three, told apart by the
                          output's shape: an Ultralytics export without
                          pivot.detect metadata */
} pv_detect_type;

#define PV_DETECT_MAX_ANCHORS 64
#define PV_DETECT_MAX_OUTPUTS 8

/* A model's decoding settings, parsed from its metadata. Owns `labels`
 * (one allocation): free with pv_detect_cfg_free(). */
typedef struct pv_detect_cfg {
  pv_detect_type type;
  int n_anchors;                          /* YOLO: (w,h) pairs */
  float anchors[2 * PV_DETECT_MAX_ANCHORS];
  int n_masks;                            /* YOLOv3: anchors per output */
  int masks[PV_DETECT_MAX_OUTPUTS][PV_DETECT_MAX_ANCHORS];
  int mask_len[PV_DETECT_MAX_OUTPUTS];
  float variances[4];                     /* SSD: y, x, h, w */
  float score, iou;                       /* defaults for the params */
  bool iou_given;                         /* pivot.detect.iou set: NMS
                                             even on final boxes */
  int top_k;
  int n_labels;
  char **labels;
} pv_detect_cfg;

/* NULL-safe; a model without pivot.detect.type gives PV_EUNSUPPORTED with
 * a message saying so. */
int pv_detect_cfg_from_graph(const pv_graph *g, pv_detect_cfg *c);
void pv_detect_cfg_free(pv_detect_cfg *c);

/* Per-call overrides; a negative field (or 0 for top_k) keeps the model's
 * default. */
typedef struct pv_detect_params {
  float score; /* keep boxes with score > this */
  float iou;   /* suppress a box whose IoU with a kept one is > this */
  int top_k;   /* at most this many boxes after NMS */
  bool stored_orientation; /* ignore a JPEG's EXIF orientation: boxes in
                              the pixels as stored, not as shown */
} pv_detect_params;

/* A growable list; `d` owned by the list, free with free(). */
typedef struct pv_det_list {
  pv_detection *d;
  int n, cap;
} pv_det_list;

/* Decode one YOLO output [1, A*(5+C), GH, GW] (channel a*(5+C)+k: x, y, w,
 * h, objectness, classes) for anchor set `mask` (NULL = all anchors in
 * order) into boxes in network-input pixels (net_w x net_h), appending
 * those with score > thr. */
int pv_detect_decode_yolo(const pv_detect_cfg *c, const pv_tensor *out,
                          const int *mask, int n_mask, int net_w, int net_h,
                          float thr, pv_det_list *l);
/* Decode SSD outputs: deltas [1,N,4] (ty,tx,th,tw), class logits [1,N,K]
 * (K >= 2, class 0 background), anchors [N,4] or [1,N,4] (ymin, xmin, ymax,
 * xmax, relative); boxes scaled to network pixels, not clipped (NMS runs
 * on unclipped boxes; pv_detect_image clips after it). */
int pv_detect_decode_ssd(const pv_detect_cfg *c, const pv_tensor *deltas,
                         const pv_tensor *logits, const pv_tensor *anchors,
                         int net_w, int net_h, float thr, pv_det_list *l);
/* Decode an output of already-decoded boxes (type YOLO8, YOLO5, END2END,
 * or BOXES resolved by the shape) in input pixels, appending those with
 * score > thr (class score, times objectness for YOLO5). */
int pv_detect_decode_boxes(const pv_detect_cfg *c, const pv_tensor *out,
                           float thr, pv_det_list *l);
/* Sort by score (descending, stable) and drop every box whose IoU with a
 * higher-scoring kept box of the same class is > iou; keep at most top_k
 * (<= 0: all). Returns the number kept (l->n is updated). */
int pv_detect_nms(pv_det_list *l, float iou, int top_k);
/* Intersection over union of two x0,y0,x1,y1 boxes (0 when both empty). */
float pv_box_iou(const float *a, const float *b);

/* Decode an encoded image (JPEG/PNG), preprocess it as the model's
 * metadata says, run it on e (an execution context of m), decode, NMS, and
 * return boxes in the original image's pixels: the photo turned upright
 * as its EXIF orientation says, unless p->stored_orientation. *out is
 * allocated (free() it, also when *n is 0); img_w/img_h/img_orientation
 * (may be NULL) get the size the boxes refer to and the EXIF orientation
 * (1..8, 1 without one).
 * Errors: PV_EFORMAT/PV_ERANGE for bad images, PV_EUNSUPPORTED when m is
 * no detector, others from the run. */
int pv_detect_image(pv_model *m, pv_exec *e, const void *img, size_t len,
                    const pv_detect_params *p, pv_detection **out, int *n,
                    int *img_w, int *img_h, int *img_orientation);

#ifdef __cplusplus
}
#endif
#endif
