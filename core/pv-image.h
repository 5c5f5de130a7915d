/* Image input: decode JPEG/PNG, and turn an image into a model's input
 * tensor (resize, pad, mean/std) as the model's metadata asks
 * (docs/DETECTION.md). Built only when configure found libjpeg and libpng
 * (HAVE_IMAGE); without them every call returns PV_EUNSUPPORTED. */
#ifndef PV_IMAGE_H
#define PV_IMAGE_H

#include "pivot.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Images larger than this are refused from their header, before any pixel
 * is decoded, so a small file cannot make us allocate gigabytes. */
#define PV_IMAGE_MAX_SIDE 16384
#define PV_IMAGE_MAX_PIXELS (64L * 1024 * 1024)

/* 8-bit RGB, row-major, 3 bytes a pixel. `rgb` is owned by the struct:
 * free it with pv_image_free(). */
typedef struct pv_image {
  int w, h;
  uint8_t *rgb;
  int orientation; /* the JPEG's EXIF orientation, 1 (upright) to 8; 1
                      without one (and for PNG) */
} pv_image;

/* Format ("jpeg", "png", "webp", "heif": HEIC and AVIF) and size from the
 * header alone (for HEIF the container's boxes, after its rotation).
 * PV_EFORMAT when the bytes are no such image or the header is broken,
 * PV_ERANGE when the image is larger than the limits above,
 * PV_EUNSUPPORTED for WebP / HEIF in a build without libwebp / libheif. */
int pv_image_probe(const void *buf, size_t len, const char **format, int *w,
                   int *h);
/* Decode an image held in memory (format by magic; WebP's first frame,
 * HEIF's primary image with its rotation and mirroring). A truncated or
 * corrupt file is an error (PV_EFORMAT), never a grey-filled image. On
 * success img->rgb is allocated; on failure img is zeroed. */
int pv_image_decode(const void *buf, size_t len, pv_image *img);
/* Keep a JPEG's pixels as stored instead of turning them upright. */
#define PV_IMAGE_STORED_ORIENTATION 1u
/* pv_image_decode() turns the pixels the way the JPEG's EXIF orientation
 * says (as a viewer, a browser and OpenCV's imread show the photo);
 * PV_IMAGE_STORED_ORIENTATION in `flags` leaves them as stored.
 * img->orientation is set either way. CMYK and YCCK JPEGs come out as
 * RGB too. */
int pv_image_decode_ex(const void *buf, size_t len, unsigned flags,
                       pv_image *img);
void pv_image_free(pv_image *img);
/* Write an RGB image as PNG. */
int pv_image_write_png(const char *path, const pv_image *img);

typedef enum pv_resize_mode {
  PV_RESIZE_STRETCH = 0,   /* scale each axis to the input size */
  PV_RESIZE_PAD_SQUARE,    /* pad bottom/right to a square, then scale
                              (face-api's padToSquare) */
  PV_RESIZE_LETTERBOX_CV,  /* Ultralytics' LetterBox: scale to fit with
                              OpenCV's INTER_LINEAR (half-pixel centres,
                              8-bit result), then pad both sides */
  PV_RESIZE_LETTERBOX,     /* keep the aspect ratio, pad both sides
                              equally to the input's aspect (darknet) */
} pv_resize_mode;

/* How a model wants its image input; from pv_image_prep_from_graph(). */
typedef struct pv_image_prep {
  int width, height;     /* the network input's spatial size */
  pv_resize_mode resize;
  bool bgr;              /* channel order of the input tensor */
  float mean[3], std[3]; /* x' = (x - mean) / std, per channel, x in 0..255,
                            in the tensor's channel order */
  float pad;             /* value (0..255 scale) of padded pixels */
} pv_image_prep;

/* Maps a point of the network input (pixels) back to the original image:
 * x_img = x_net * sx + ox, y_img = y_net * sy + oy. */
typedef struct pv_image_xform {
  double sx, sy, ox, oy;
} pv_image_xform;

/* Whether g carries an Ultralytics export's metadata (`names` as a
 * dict, with `stride`, `task` or `imgsz`): YOLO models exported by
 * `yolo export format=onnx` or YOLOv5's export.py. Without pivot.*
 * metadata, such a model is served as a detector with their defaults. */
bool pv_image_ultralytics(const pv_graph *g);
/* Read the pivot.image.* metadata of g (defaults: stretch, rgb, mean 0,
 * std 1, pad 0) and the spatial size of NCHW float input `input` (value
 * index). Errors name the bad key. */
int pv_image_prep_from_graph(const pv_graph *g, int input, pv_image_prep *p);
/* Resize with TensorFlow's resizeBilinear (alignCorners=false,
 * halfPixelCenters=false: source = dst * in/out) after padding as `p`
 * says, normalise, and write planar CHW floats to `out` (3*height*width,
 * caller-owned). `xf` (may be NULL) receives the mapping back. */
int pv_image_to_chw(const pv_image *img, const pv_image_prep *p, float *out,
                    pv_image_xform *xf);

#ifdef __cplusplus
}
#endif
#endif
