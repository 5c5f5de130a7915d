/* core/image.c: JPEG/PNG decoding, refusal of oversized images from their
 * header and of truncated files, and TensorFlow-style bilinear resizing
 * with padding and normalisation, checked against values worked out by
 * hand. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h> /* after stdio.h: it needs FILE and size_t */
#include <png.h>

#include "config.h"
#include "cunit-main.h"
#include "pv-image.h"
#ifdef HAVE_WEBP
#include <webp/encode.h>
#endif
#ifdef HAVE_HEIF
#include <libheif/heif.h>
#endif

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* A PNG signature and IHDR claiming w x h (the CRC is never reached). */
static size_t png_header(uint8_t *b, uint32_t w, uint32_t h) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  memcpy(b, sig, 8);
  put32(b + 8, 13);
  memcpy(b + 12, "IHDR", 4);
  put32(b + 16, w);
  put32(b + 20, h);
  b[24] = 8;
  b[25] = 2;
  b[26] = b[27] = b[28] = 0;
  put32(b + 29, 0);
  return 33;
}

/* SOI, an APP0 segment, then a baseline SOF0 claiming w x h. */
static size_t jpeg_header(uint8_t *b, unsigned w, unsigned h) {
  size_t n = 0;
  b[n++] = 0xff, b[n++] = 0xd8;
  b[n++] = 0xff, b[n++] = 0xe0, b[n++] = 0, b[n++] = 16;
  memcpy(b + n, "JFIF\0\1\1\0\0\1\0\1\0\0", 14);
  n += 14;
  b[n++] = 0xff, b[n++] = 0xc0, b[n++] = 0, b[n++] = 17, b[n++] = 8;
  b[n++] = (uint8_t)(h >> 8), b[n++] = (uint8_t)h;
  b[n++] = (uint8_t)(w >> 8), b[n++] = (uint8_t)w;
  b[n++] = 3;
  for (int c = 0; c < 3; c++) b[n++] = (uint8_t)(c + 1), b[n++] = 0x11, b[n++] = 0;
  return n;
}

/* A smooth w x h test picture. */
static uint8_t *gradient(int w, int h) {
  uint8_t *p = malloc((size_t)w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *q = p + ((size_t)y * w + x) * 3;
      q[0] = (uint8_t)(x * 255 / (w - 1));
      q[1] = (uint8_t)(y * 255 / (h - 1));
      q[2] = 128;
    }
  return p;
}

static uint8_t *encode_jpeg(const uint8_t *rgb, int w, int h, size_t *len) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  unsigned char *out = NULL;
  unsigned long n = 0;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &out, &n);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 95, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  *len = n;
  return out;
}

static void test_not_an_image(void) {
  pv_image im;
  CU_ASSERT_EQUAL(pv_image_decode("", 0, &im), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "empty"));
  CU_ASSERT_PTR_NULL(im.rgb);
  CU_ASSERT_EQUAL(pv_image_decode("hello world", 11, &im), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "not a JPEG, PNG"));
  CU_ASSERT_EQUAL(pv_image_decode("\xff\xd8", 2, &im), PV_EFORMAT);
  uint8_t b[64];
  size_t n = png_header(b, 10, 10);
  CU_ASSERT_EQUAL(pv_image_decode(b, 20, &im), PV_EFORMAT); /* cut in IHDR */
  CU_ASSERT_EQUAL(pv_image_decode(b, n, &im), PV_EFORMAT);  /* no pixels */
  CU_ASSERT_PTR_NULL(im.rgb);
}

static void test_oversized_headers(void) {
  uint8_t b[64];
  const char *fmt;
  int w, h;
  pv_image im;
  /* 20000 x 20000 claims 1.2 GB of pixels: refused from the header. */
  size_t n = png_header(b, 20000, 20000);
  CU_ASSERT_EQUAL(pv_image_probe(b, n, &fmt, &w, &h), PV_ERANGE);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "20000x20000"));
  CU_ASSERT_EQUAL(pv_image_decode(b, n, &im), PV_ERANGE);
  n = jpeg_header(b, 20000, 20000);
  CU_ASSERT_EQUAL(pv_image_decode(b, n, &im), PV_ERANGE);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "JPEG image is 20000x20000"));
  /* Within the side limit but over 64 Mpx. */
  n = jpeg_header(b, 16384, 4097);
  CU_ASSERT_EQUAL(pv_image_probe(b, n, &fmt, &w, &h), PV_ERANGE);
  n = png_header(b, 0x80000000u, 1);
  CU_ASSERT_EQUAL(pv_image_probe(b, n, &fmt, &w, &h), PV_ERANGE);
  n = jpeg_header(b, 0, 10);
  CU_ASSERT_EQUAL(pv_image_probe(b, n, &fmt, &w, &h), PV_EFORMAT);
  /* Just inside the limits: the header is accepted. */
  n = jpeg_header(b, 16384, 4096);
  CU_ASSERT_EQUAL(pv_image_probe(b, n, &fmt, &w, &h), 0);
  CU_ASSERT_STRING_EQUAL(fmt, "jpeg");
  CU_ASSERT_EQUAL(w, 16384);
  CU_ASSERT_EQUAL(h, 4096);
}

static void test_png_round_trip(void) {
  int w = 37, h = 23;
  uint8_t *src = gradient(w, h);
  char path[] = "/tmp/pv-img-XXXXXX";
  int fd = mkstemp(path);
  CU_ASSERT_FATAL(fd >= 0);
  close(fd);
  pv_image in = {.w = w, .h = h, .rgb = src};
  CU_ASSERT_EQUAL_FATAL(pv_image_write_png(path, &in), 0);
  FILE *f = fopen(path, "rb");
  uint8_t buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  unlink(path);
  pv_image out;
  CU_ASSERT_EQUAL_FATAL(pv_image_decode(buf, n, &out), 0);
  CU_ASSERT_EQUAL(out.w, w);
  CU_ASSERT_EQUAL(out.h, h);
  CU_ASSERT(memcmp(out.rgb, src, (size_t)w * h * 3) == 0);
  /* A PNG cut short in its pixel data fails with the decoder's message. */
  pv_image cut;
  CU_ASSERT_EQUAL(pv_image_decode(buf, n - 20, &cut), PV_EFORMAT);
  CU_ASSERT_PTR_NULL(cut.rgb);
  pv_image_free(&out);
  free(src);
}

/* A PNG in memory written with libpng's classic API: `depth`-bit samples
 * of colour type `ct` from `px` (16-bit samples as host integers), with a
 * gAMA chunk when gamma > 0. */
typedef struct membuf {
  uint8_t *p;
  size_t n, cap;
} membuf;
static void mem_write(png_structp png, png_bytep d, size_t n) {
  membuf *m = png_get_io_ptr(png);
  if (m->n + n > m->cap) {
    m->cap = (m->n + n) * 2;
    m->p = realloc(m->p, m->cap);
  }
  memcpy(m->p + m->n, d, n);
  m->n += n;
}
static void mem_flush(png_structp png) { (void)png; }
static uint8_t *write_png_mem(int w, int h, int depth, int ct, const void *px,
                              double gamma, size_t *len) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  membuf m = {0};
  png_set_write_fn(png, &m, mem_write, mem_flush);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ct, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (gamma > 0) png_set_gAMA(png, info, gamma);
  png_write_info(png, info);
  if (depth == 16) png_set_swap(png); /* host little-endian to PNG's big */
  int ch = ct == PNG_COLOR_TYPE_RGB ? 3 : ct == PNG_COLOR_TYPE_RGBA ? 4 :
           ct == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
  size_t row = (size_t)w * ch * (depth / 8);
  for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)px + y * row);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  *len = m.n;
  return m.p;
}

/* Sample values come out as stored, like PIL, OpenCV and TensorFlow give
 * them: 16-bit samples keep their high byte (not gamma-encoded as linear
 * light), and a gAMA chunk changes nothing. */
static void test_png_values_as_stored(void) {
  uint16_t rgb16[2 * 3] = {32768, 16384, 65535, 0x1234, 0xff00, 0x00ff};
  size_t len;
  uint8_t *b = write_png_mem(2, 1, 16, PNG_COLOR_TYPE_RGB, rgb16, 0, &len);
  pv_image im;
  CU_ASSERT_EQUAL_FATAL(pv_image_decode(b, len, &im), 0);
  for (int i = 0; i < 6; i++) CU_ASSERT_EQUAL(im.rgb[i], rgb16[i] >> 8);
  pv_image_free(&im);
  free(b);
  /* Linear gamma declared (what 16-bit exports often carry). */
  b = write_png_mem(2, 1, 16, PNG_COLOR_TYPE_RGB, rgb16, 1.0, &len);
  CU_ASSERT_EQUAL_FATAL(pv_image_decode(b, len, &im), 0);
  for (int i = 0; i < 6; i++) CU_ASSERT_EQUAL(im.rgb[i], rgb16[i] >> 8);
  pv_image_free(&im);
  free(b);
  uint8_t rgb8[3] = {128, 64, 255};
  b = write_png_mem(1, 1, 8, PNG_COLOR_TYPE_RGB, rgb8, 1.0, &len);
  CU_ASSERT_EQUAL_FATAL(pv_image_decode(b, len, &im), 0);
  CU_ASSERT(memcmp(im.rgb, rgb8, 3) == 0);
  pv_image_free(&im);
  free(b);
  /* 16-bit grey with alpha: grey repeated, alpha dropped. */
  uint16_t ga[2] = {0x8000, 0};
  b = write_png_mem(1, 1, 16, PNG_COLOR_TYPE_GRAY_ALPHA, ga, 0, &len);
  CU_ASSERT_EQUAL_FATAL(pv_image_decode(b, len, &im), 0);
  CU_ASSERT(im.rgb[0] == 128 && im.rgb[1] == 128 && im.rgb[2] == 128);
  pv_image_free(&im);
  /* Cut in the pixel data: an error naming it, nothing allocated. */
  CU_ASSERT_EQUAL(pv_image_decode(b, len - 16, &im), PV_EFORMAT);
  CU_ASSERT_PTR_NULL(im.rgb);
  free(b);
}

/* Alpha is dropped, whatever it is: a fully transparent pixel keeps its
 * colour (as PIL's convert("RGB") does), so results never depend on what
 * memory held before. */
static void test_png_alpha_dropped(void) {
  uint8_t rgba[2 * 4] = {200, 100, 50, 0, 10, 20, 30, 255};
  png_image pi;
  memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  pi.width = 2;
  pi.height = 1;
  pi.format = PNG_FORMAT_RGBA;
  uint8_t buf[4096];
  png_alloc_size_t n = sizeof buf;
  CU_ASSERT_FATAL(png_image_write_to_memory(&pi, buf, &n, 0, rgba, 0, NULL));
  pv_image im;
  CU_ASSERT_EQUAL_FATAL(pv_image_decode(buf, n, &im), 0);
  CU_ASSERT_EQUAL(im.w, 2);
  const uint8_t want[6] = {200, 100, 50, 10, 20, 30};
  CU_ASSERT(memcmp(im.rgb, want, 6) == 0);
  pv_image_free(&im);
}

static void test_jpeg_decode_and_truncation(void) {
  int w = 256, h = 192;
  uint8_t *src = gradient(w, h);
  size_t len;
  uint8_t *jpg = encode_jpeg(src, w, h, &len);
  pv_image im;
  CU_ASSERT_EQUAL_FATAL(pv_image_decode(jpg, len, &im), 0);
  CU_ASSERT_EQUAL(im.w, w);
  CU_ASSERT_EQUAL(im.h, h);
  double err = 0;
  for (size_t i = 0; i < (size_t)w * h * 3; i++) err += fabs((double)im.rgb[i] - src[i]);
  err /= (double)w * h * 3;
  CU_ASSERT(err < 3.0); /* lossy, but a smooth picture survives quality 95 */
  pv_image_free(&im);
  /* Cut in the entropy-coded data: libjpeg would fill grey; we refuse. */
  CU_ASSERT_EQUAL(pv_image_decode(jpg, len / 2, &im), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "truncated"));
  CU_ASSERT_PTR_NULL(im.rgb);
  /* Missing only the end-of-image marker. */
  CU_ASSERT_EQUAL(pv_image_decode(jpg, len - 2, &im), PV_EFORMAT);
  /* Cut inside the headers. */
  CU_ASSERT_EQUAL(pv_image_decode(jpg, 300, &im), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "truncated"));
  CU_ASSERT_EQUAL(pv_image_decode(jpg, 30, &im), PV_EFORMAT);
  free(jpg);
  free(src);
}

/* A JPEG of w x h RGB pixels (cs JCS_RGB), or of CMYK pixels written as
 * JCS_CMYK or JCS_YCCK (libjpeg adds Adobe's marker: the inks inverted, as
 * Photoshop writes them); `app1` (may be NULL) is written as an APP1
 * segment. */
static uint8_t *encode_jpeg_ex(const uint8_t *px, int w, int h,
                               J_COLOR_SPACE in, J_COLOR_SPACE file,
                               const uint8_t *app1, unsigned app1_len,
                               size_t *len) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  unsigned char *out = NULL;
  unsigned long n = 0;
  int comps = in == JCS_CMYK ? 4 : 3;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &out, &n);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = comps;
  c.in_color_space = in;
  jpeg_set_defaults(&c);
  jpeg_set_colorspace(&c, file);
  jpeg_set_quality(&c, 95, TRUE);
  jpeg_start_compress(&c, TRUE);
  if (app1) jpeg_write_marker(&c, JPEG_APP0 + 1, app1, app1_len);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * comps);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  *len = n;
  return out;
}

/* Four flat quadrants: top-left red, top-right green, bottom-left blue,
 * bottom-right white (16-pixel multiples keep JPEG blocks inside one). */
static const uint8_t quad_rgb[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
static uint8_t *quadrants(int w, int h) {
  uint8_t *p = malloc((size_t)w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      memcpy(p + ((size_t)y * w + x) * 3, quad_rgb[(y >= h / 2) * 2 + (x >= w / 2)], 3);
  return p;
}

/* Which quadrant colour the decoded image has near corner k (0 TL, 1 TR,
 * 2 BL, 3 BR); -1 when none is close. */
static int corner_colour(const pv_image *im, int k) {
  int x = k & 1 ? im->w - 3 : 2, y = k & 2 ? im->h - 3 : 2;
  const uint8_t *p = im->rgb + ((size_t)y * im->w + x) * 3;
  for (int q = 0; q < 4; q++)
    if (abs(p[0] - quad_rgb[q][0]) < 24 && abs(p[1] - quad_rgb[q][1]) < 24 &&
        abs(p[2] - quad_rgb[q][2]) < 24)
      return q;
  return -1;
}

/* An APP1 "Exif" segment whose IFD0 holds the orientation tag; big- or
 * little-endian TIFF. Returns its length. */
static unsigned exif_app1(uint8_t *b, int orientation, bool big, uint16_t type) {
  memset(b, 0, 64);
  memcpy(b, "Exif\0\0", 6);
  uint8_t *t = b + 6;
#define W16(p, v) (big ? ((p)[0] = (uint8_t)((v) >> 8), (p)[1] = (uint8_t)(v)) : ((p)[0] = (uint8_t)(v), (p)[1] = (uint8_t)((v) >> 8)))
  t[0] = t[1] = big ? 'M' : 'I';
  W16(t + 2, 42);
  W16(big ? t + 6 : t + 4, 8); /* IFD0 at offset 8 */
  W16(t + 8, 2);               /* two entries: a width tag, orientation */
  W16(t + 10, 0x0100), W16(t + 12, 3), W16(big ? t + 16 : t + 14, 1), W16(t + 18, 640);
  W16(t + 22, 0x0112), W16(t + 24, type), W16(big ? t + 28 : t + 26, 1), W16(t + 30, orientation);
#undef W16
  return 6 + 8 + 2 + 2 * 12 + 4;
}

/* EXIF orientation: stored pixel (0, 0) and (w-1, 0) land where the TIFF
 * spec's "0th row / 0th column" table says, width and height swap for 5-8;
 * PV_IMAGE_STORED_ORIENTATION keeps the stored pixels; malformed or
 * mistyped tags are ignored, never read past. */
static void test_jpeg_exif_orientation(void) {
  int w = 64, h = 32;
  uint8_t *src = quadrants(w, h);
  /* Display corner (0 TL, 1 TR, 2 BL, 3 BR) of stored top-left and
   * stored top-right, per orientation 1..8. */
  static const int tl_at[9] = {0, 0, 1, 3, 2, 0, 1, 3, 2};
  static const int tr_at[9] = {0, 1, 0, 2, 3, 2, 3, 1, 0};
  for (int o = 1; o <= 8; o++)
    for (int big = 0; big < 2; big++) {
      uint8_t app1[64];
      unsigned al = exif_app1(app1, o, big, 3);
      size_t len;
      uint8_t *jpg = encode_jpeg_ex(src, w, h, JCS_RGB, JCS_YCbCr, app1, al, &len);
      pv_image im;
      CU_ASSERT_EQUAL_FATAL(pv_image_decode(jpg, len, &im), 0);
      CU_ASSERT_EQUAL(im.orientation, o);
      CU_ASSERT_EQUAL(im.w, o >= 5 ? h : w);
      CU_ASSERT_EQUAL(im.h, o >= 5 ? w : h);
      CU_ASSERT_EQUAL(corner_colour(&im, tl_at[o]), 0);
      CU_ASSERT_EQUAL(corner_colour(&im, tr_at[o]), 1);
      pv_image_free(&im);
      CU_ASSERT_EQUAL_FATAL(pv_image_decode_ex(jpg, len, PV_IMAGE_STORED_ORIENTATION, &im), 0);
      CU_ASSERT_EQUAL(im.orientation, o);
      CU_ASSERT(im.w == w && im.h == h);
      CU_ASSERT_EQUAL(corner_colour(&im, 0), 0);
      CU_ASSERT_EQUAL(corner_colour(&im, 1), 1);
      pv_image_free(&im);
      free(jpg);
    }
  /* A LONG-typed tag, an out-of-range value, an IFD offset past the end,
   * an entry count running past the segment: all read as upright. */
  uint8_t app1[64];
  unsigned al;
  for (int k = 0; k < 4; k++) {
    al = exif_app1(app1, k == 1 ? 9 : 6, false, k == 0 ? 4 : 3);
    if (k == 2) app1[6 + 4] = 0xf0;
    if (k == 3) app1[6 + 8] = 0xff, al = 6 + 8 + 2 + 12;
    size_t len;
    uint8_t *jpg = encode_jpeg_ex(src, w, h, JCS_RGB, JCS_YCbCr, app1, al, &len);
    pv_image im;
    CU_ASSERT_EQUAL_FATAL(pv_image_decode(jpg, len, &im), 0);
    CU_ASSERT_EQUAL(im.orientation, 1);
    CU_ASSERT(im.w == w && im.h == h);
    CU_ASSERT_EQUAL(corner_colour(&im, 0), 0);
    pv_image_free(&im);
    free(jpg);
  }
  free(src);
}

/* CMYK and YCCK JPEGs (Adobe-inverted inks) decode to the RGB that
 * Pillow and browsers show: R = (255 - C)(255 - K) / 255. */
static void test_jpeg_cmyk(void) {
  int w = 64, h = 32;
  uint8_t *rgb = quadrants(w, h);
  uint8_t *cmyk = malloc((size_t)w * h * 4);
  for (size_t i = 0; i < (size_t)w * h; i++) {
    /* Inks C, M, Y = 255 - R, G, B and K = 0, but K = 128 in the blue
     * quadrant; stored inverted (255 - ink), as Adobe's marker says. */
    const uint8_t *p = rgb + 3 * i;
    bool blue = p[2] == 255 && p[0] == 0;
    for (int c = 0; c < 3; c++) cmyk[4 * i + c] = p[c]; /* 255 - (255 - p) */
    cmyk[4 * i + 3] = (uint8_t)(255 - (blue ? 128 : 0));
  }
  J_COLOR_SPACE files[2] = {JCS_CMYK, JCS_YCCK};
  for (int f = 0; f < 2; f++) {
    size_t len;
    uint8_t *jpg = encode_jpeg_ex(cmyk, w, h, JCS_CMYK, files[f], NULL, 0, &len);
    pv_image im;
    CU_ASSERT_EQUAL_FATAL(pv_image_decode(jpg, len, &im), 0);
    CU_ASSERT(im.w == w && im.h == h);
    CU_ASSERT_EQUAL(corner_colour(&im, 0), 0);
    CU_ASSERT_EQUAL(corner_colour(&im, 1), 1);
    CU_ASSERT_EQUAL(corner_colour(&im, 3), 3);
    /* Blue with K at half: (0, 0, 255 * 127 / 255). */
    const uint8_t *b = im.rgb + ((size_t)(h - 3) * w + 2) * 3;
    CU_ASSERT(b[0] < 16 && b[1] < 16 && abs(b[2] - 127) < 16);
    pv_image_free(&im);
    /* Cut short: still an error, the row buffer freed (ASan run). */
    CU_ASSERT_EQUAL(pv_image_decode(jpg, len / 2, &im), PV_EFORMAT);
    free(jpg);
  }
  free(cmyk);
  free(rgb);
}

/* WebP, lossless and lossy, from libwebp's own encoder: the size from the
 * header, the pixels (exact when lossless), truncation refused. Without
 * libwebp the format is still recognised and refused by name. */
static void test_webp(void) {
  int w = 64, h = 32;
  uint8_t *src = quadrants(w, h);
  pv_image im;
#ifdef HAVE_WEBP
  for (int lossless = 0; lossless < 2; lossless++) {
    uint8_t *out = NULL;
    size_t len = lossless ? WebPEncodeLosslessRGB(src, w, h, w * 3, &out)
                          : WebPEncodeRGB(src, w, h, w * 3, 90, &out);
    CU_ASSERT_FATAL(len > 0);
    const char *fmt;
    int pw, ph;
    CU_ASSERT_EQUAL(pv_image_probe(out, len, &fmt, &pw, &ph), 0);
    CU_ASSERT(!strcmp(fmt, "webp") && pw == w && ph == h);
    CU_ASSERT_EQUAL_FATAL(pv_image_decode(out, len, &im), 0);
    CU_ASSERT(im.w == w && im.h == h && im.orientation == 1);
    if (lossless) CU_ASSERT(memcmp(im.rgb, src, (size_t)w * h * 3) == 0);
    for (int k = 0; k < 4; k++) CU_ASSERT_EQUAL(corner_colour(&im, k), k);
    pv_image_free(&im);
    CU_ASSERT_EQUAL(pv_image_decode(out, len * 2 / 3, &im), PV_EFORMAT);
    CU_ASSERT_PTR_NULL(im.rgb);
    WebPFree(out);
  }
#else
  uint8_t riff[16] = {'R', 'I', 'F', 'F', 8, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', ' '};
  CU_ASSERT_EQUAL(pv_image_decode(riff, sizeof riff, &im), PV_EUNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "libwebp"));
#endif
  free(src);
}

#ifdef HAVE_HEIF
static struct heif_error mem_heif_write(struct heif_context *ctx, const void *d,
                                        size_t n, void *user) {
  (void)ctx;
  membuf *m = user;
  m->p = realloc(m->p, m->n + n);
  memcpy(m->p + m->n, d, n);
  m->n += n;
  struct heif_error ok = {heif_error_Ok, heif_suberror_Unspecified, "ok"};
  return ok;
}

/* An HEIC (HEVC) or AVIF (AV1) file of the w x h RGB pixels, from libheif's
 * encoders (x265, aom); NULL when this libheif has no such encoder. */
static uint8_t *encode_heif(const uint8_t *rgb, int w, int h,
                            enum heif_compression_format f, size_t *len) {
  if (!heif_have_encoder_for_format(f)) return NULL;
  struct heif_context *ctx = heif_context_alloc();
  struct heif_encoder *enc;
  heif_context_get_encoder_for_format(ctx, f, &enc);
  heif_encoder_set_lossy_quality(enc, 95);
  struct heif_image *im;
  heif_image_create(w, h, heif_colorspace_RGB, heif_chroma_interleaved_RGB, &im);
  heif_image_add_plane(im, heif_channel_interleaved, w, h, 8);
  int stride;
  uint8_t *p = heif_image_get_plane(im, heif_channel_interleaved, &stride);
  for (int y = 0; y < h; y++) memcpy(p + (size_t)y * stride, rgb + (size_t)y * w * 3, (size_t)w * 3);
  struct heif_error e = heif_context_encode_image(ctx, im, enc, NULL, NULL);
  CU_ASSERT_EQUAL(e.code, heif_error_Ok);
  membuf m = {0};
  struct heif_writer wr = {1, mem_heif_write};
  heif_context_write(ctx, &wr, &m);
  heif_image_release(im);
  heif_encoder_release(enc);
  heif_context_free(ctx);
  *len = m.n;
  return m.p;
}
#endif

/* HEIC (iPhone photos) and AVIF: libheif's encoders make them, pivot
 * decodes size and pixels (lossy: corner colours), truncation refused. */
static void test_heif(void) {
  int w = 64, h = 32;
  uint8_t *src = quadrants(w, h);
  pv_image im;
#ifdef HAVE_HEIF
  enum heif_compression_format fs[2] = {heif_compression_HEVC, heif_compression_AV1};
  for (int i = 0; i < 2; i++) {
    size_t len;
    uint8_t *b = encode_heif(src, w, h, fs[i], &len);
    if (!b) continue;
    const char *fmt;
    int pw, ph;
    CU_ASSERT_EQUAL(pv_image_probe(b, len, &fmt, &pw, &ph), 0);
    CU_ASSERT(!strcmp(fmt, "heif") && pw == w && ph == h);
    CU_ASSERT_EQUAL_FATAL(pv_image_decode(b, len, &im), 0);
    CU_ASSERT(im.w == w && im.h == h);
    for (int k = 0; k < 4; k++) CU_ASSERT_EQUAL(corner_colour(&im, k), k);
    pv_image_free(&im);
    CU_ASSERT_NOT_EQUAL(pv_image_decode(b, len * 2 / 3, &im), 0);
    CU_ASSERT_PTR_NULL(im.rgb);
    free(b);
  }
#else
  uint8_t ftyp[16] = {0, 0, 0, 16, 'f', 't', 'y', 'p', 'h', 'e', 'i', 'c', 0, 0, 0, 0};
  CU_ASSERT_EQUAL(pv_image_decode(ftyp, sizeof ftyp, &im), PV_EUNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "libheif"));
#endif
  free(src);
}

static pv_image_prep prep(int w, int h, pv_resize_mode mode) {
  pv_image_prep p = {.width = w, .height = h, .resize = mode,
                     .std = {1, 1, 1}};
  return p;
}

/* TF resizeBilinear, alignCorners=false, halfPixelCenters=false: source =
 * dst * in/out, the far neighbour clamped to the last pixel. */
static void test_resize_like_tensorflow(void) {
  uint8_t px[2 * 1 * 3] = {0, 10, 20, 100, 110, 120};
  pv_image im = {.w = 2, .h = 1, .rgb = px};
  pv_image_prep p = prep(4, 1, PV_RESIZE_STRETCH);
  float out[3 * 4];
  pv_image_xform xf;
  CU_ASSERT_EQUAL_FATAL(pv_image_to_chw(&im, &p, out, &xf), 0);
  /* Red row: source x = 0, 0.5, 1, 1.5 -> 0, 50, 100, 100 (clamped). */
  const float red[4] = {0, 50, 100, 100};
  for (int i = 0; i < 4; i++) CU_ASSERT_DOUBLE_EQUAL(out[i], red[i], 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(out[4 + 1], 60, 1e-6); /* green plane */
  CU_ASSERT_DOUBLE_EQUAL(xf.sx, 0.5, 1e-12);
  /* Downscale 4 -> 2 samples source 0 and 2, no averaging. */
  uint8_t row[4 * 3] = {0, 0, 0, 40, 0, 0, 80, 0, 0, 120, 0, 0};
  pv_image im4 = {.w = 4, .h = 1, .rgb = row};
  p = prep(2, 1, PV_RESIZE_STRETCH);
  CU_ASSERT_EQUAL_FATAL(pv_image_to_chw(&im4, &p, out, NULL), 0);
  CU_ASSERT_DOUBLE_EQUAL(out[0], 0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(out[1], 80, 1e-6);
}

static void test_pad_square_and_normalise(void) {
  /* 4 wide, 2 high, every pixel (200, 100, 50): padded at the bottom to
   * 4x4 with zeros, then (x - mean) / std in BGR order. */
  uint8_t px[4 * 2 * 3];
  for (int i = 0; i < 8; i++) px[i * 3] = 200, px[i * 3 + 1] = 100, px[i * 3 + 2] = 50;
  pv_image im = {.w = 4, .h = 2, .rgb = px};
  pv_image_prep p = prep(4, 4, PV_RESIZE_PAD_SQUARE);
  p.bgr = true;
  p.mean[0] = 10, p.mean[1] = 20, p.mean[2] = 30; /* B, G, R */
  p.std[0] = 2, p.std[1] = 4, p.std[2] = 5;
  float out[3 * 16];
  pv_image_xform xf;
  CU_ASSERT_EQUAL_FATAL(pv_image_to_chw(&im, &p, out, &xf), 0);
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++) {
      bool in = y < 2;
      CU_ASSERT_DOUBLE_EQUAL(out[0 * 16 + y * 4 + x], ((in ? 50 : 0) - 10) / 2.0, 1e-5);
      CU_ASSERT_DOUBLE_EQUAL(out[1 * 16 + y * 4 + x], ((in ? 100 : 0) - 20) / 4.0, 1e-5);
      CU_ASSERT_DOUBLE_EQUAL(out[2 * 16 + y * 4 + x], ((in ? 200 : 0) - 30) / 5.0, 1e-5);
    }
  CU_ASSERT_DOUBLE_EQUAL(xf.sx, 1, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(xf.sy, 1, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(xf.oy, 0, 1e-12);
  /* Letterbox centres the image: rows 0 and 3 are padding, and the
   * mapping back subtracts the offset. */
  p = prep(4, 4, PV_RESIZE_LETTERBOX);
  p.pad = 7;
  CU_ASSERT_EQUAL_FATAL(pv_image_to_chw(&im, &p, out, &xf), 0);
  CU_ASSERT_DOUBLE_EQUAL(out[0], 7, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(out[4], 200, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(out[8], 200, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(out[12], 7, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(xf.oy, -1, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(2 * xf.sy + xf.oy, 1, 1e-12); /* net row 2 -> image row 1 */
}

/* Ultralytics' letterbox (letterbox_cv): resize to fit with OpenCV's
 * half-pixel INTER_LINEAR into 8-bit pixels, then pad; worked by hand. */
static void test_letterbox_cv(void) {
  float out[3 * 16];
  pv_image_xform xf;
  pv_image_prep p = prep(4, 4, PV_RESIZE_LETTERBOX_CV);
  p.pad = 114;
  /* 8 x 4 -> 4 x 4: r = 1/2, content 4 x 2 at top = round(0.9) = 1; a
   * half-pixel tap at 2i + 0.5 averages pixels 2i and 2i + 1, so R =
   * 10 x + 40 y becomes 20 i + 80 j + 25 exactly. */
  uint8_t px[8 * 4 * 3];
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 8; x++) {
      uint8_t *q = px + (y * 8 + x) * 3;
      q[0] = (uint8_t)(10 * x + 40 * y), q[1] = 7, q[2] = 200;
    }
  pv_image im = {.w = 8, .h = 4, .rgb = px};
  CU_ASSERT_EQUAL_FATAL(pv_image_to_chw(&im, &p, out, &xf), 0);
  for (int i = 0; i < 4; i++) {
    CU_ASSERT_EQUAL(out[0 * 4 + i], 114); /* pad rows 0 and 3 */
    CU_ASSERT_EQUAL(out[3 * 4 + i], 114);
    for (int j = 0; j < 2; j++) {
      CU_ASSERT_EQUAL(out[(1 + j) * 4 + i], 20 * i + 80 * j + 25);
      CU_ASSERT_EQUAL(out[16 + (1 + j) * 4 + i], 7);
    }
  }
  /* back: x_img = (x - 0) * 2, y_img = (y - 1) * 2 */
  CU_ASSERT(xf.sx == 2 && xf.sy == 2 && xf.ox == 0 && xf.oy == -2);
  /* 3 x 1 -> 4 x 4: r = 4/3, 4 x 1 content (Python's round), top =
   * round(1.4) = 1; back: y_img = (y - 1) * 3/4 */
  uint8_t px3[9] = {0, 0, 0, 90, 90, 90, 180, 180, 180};
  pv_image im3 = {.w = 3, .h = 1, .rgb = px3};
  CU_ASSERT_EQUAL_FATAL(pv_image_to_chw(&im3, &p, out, &xf), 0);
  CU_ASSERT_DOUBLE_EQUAL(xf.sx, 0.75, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(xf.oy, -0.75, 1e-12);
  /* half-pixel taps at 0 (clamped), 0.625, 1.375, 2 (clamped):
   * 0, 56.25 -> 56, 123.75 -> 124, 180 */
  CU_ASSERT(out[4] == 0 && out[5] == 56 && out[6] == 124 && out[7] == 180);
  CU_ASSERT(out[0] == 114 && out[8] == 114 && out[12] == 114);
}

static void test_prep_from_metadata(void) {
  pv_graph *g = pv_graph_new();
  int v = pv_graph_add_value(g, "input");
  g->values[v].dtype = PV_F32;
  g->values[v].ndim = 4;
  int64_t d[4] = {1, 3, 416, 320};
  memcpy(g->values[v].dims, d, sizeof d);
  pv_image_prep p;
  CU_ASSERT_EQUAL(pv_image_prep_from_graph(g, v, &p), 0);
  CU_ASSERT_EQUAL(p.width, 320);
  CU_ASSERT_EQUAL(p.height, 416);
  CU_ASSERT_EQUAL(p.resize, PV_RESIZE_STRETCH);
  CU_ASSERT_DOUBLE_EQUAL(p.std[2], 1, 0);
  pv_graph_set_meta(g, "pivot.image.resize", "pad_square");
  pv_graph_set_meta(g, "pivot.image.mean", "117.001,114.697,97.404");
  pv_graph_set_meta(g, "pivot.image.std", "255");
  CU_ASSERT_EQUAL(pv_image_prep_from_graph(g, v, &p), 0);
  CU_ASSERT_EQUAL(p.resize, PV_RESIZE_PAD_SQUARE);
  CU_ASSERT_DOUBLE_EQUAL(p.mean[1], 114.697, 1e-4);
  CU_ASSERT_DOUBLE_EQUAL(p.std[1], 255, 0);
  pv_graph_set_meta(g, "pivot.image.mean", "1,2");
  CU_ASSERT_EQUAL(pv_image_prep_from_graph(g, v, &p), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "pivot.image.mean"));
  pv_graph_set_meta(g, "pivot.image.mean", "0");
  pv_graph_set_meta(g, "pivot.image.resize", "crop");
  CU_ASSERT_EQUAL(pv_image_prep_from_graph(g, v, &p), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "pivot.image.resize"));
  pv_graph_set_meta(g, "pivot.image.resize", "stretch");
  g->values[v].dims[1] = 1;
  CU_ASSERT_EQUAL(pv_image_prep_from_graph(g, v, &p), PV_ESHAPE);
  pv_graph_free(g);
}

static CU_TestInfo tests[] = {
    {"not an image", test_not_an_image},
    {"oversized headers refused before decoding", test_oversized_headers},
    {"PNG round trip and truncation", test_png_round_trip},
    {"PNG alpha dropped", test_png_alpha_dropped},
    {"PNG sample values as stored", test_png_values_as_stored},
    {"JPEG decode and truncation", test_jpeg_decode_and_truncation},
    {"JPEG EXIF orientation", test_jpeg_exif_orientation},
    {"CMYK and YCCK JPEG", test_jpeg_cmyk},
    {"WebP", test_webp},
    {"HEIC and AVIF", test_heif},
    {"bilinear resize like TF", test_resize_like_tensorflow},
    {"pad to square, letterbox, normalise", test_pad_square_and_normalise},
    {"preprocessing from metadata", test_prep_from_metadata},
    {"Ultralytics letterbox", test_letterbox_cv},
    CU_TEST_INFO_NULL,
};

PV_CUNIT_MAIN("image", tests)
