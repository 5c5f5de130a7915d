/* Image input: JPEG (libjpeg-turbo), PNG (libpng), and where configure
 * found their libraries WebP (libwebp) and HEIC / AVIF (libheif) decoding
 * with the size checked from the header first, and the resize/pad/normalise
 * that turns a photo into a model's input tensor. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "pv-image.h"

#ifdef HAVE_IMAGE
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#endif
#ifdef HAVE_WEBP
#include <webp/decode.h>
#endif
#ifdef HAVE_HEIF
#include <libheif/heif.h>
#include <pthread.h>
#endif

#define KNOWN_FORMATS "a JPEG, PNG, WebP, HEIC or AVIF image"

static bool is_png(const uint8_t *b, size_t len) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return len >= 8 && !memcmp(b, sig, 8);
}

static bool is_jpeg(const uint8_t *b, size_t len) {
  return len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
}

static bool is_webp(const uint8_t *b, size_t len) {
  return len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4);
}

/* An ISO-BMFF file whose major brand is one of HEIF's (HEIC, AVIF, ...). */
static bool is_heif(const uint8_t *b, size_t len) {
  static const char brands[][5] = {"heic", "heix", "heim", "heis", "hevc",
                                   "hevx", "mif1", "msf1", "avif", "avis"};
  if (len < 12 || memcmp(b + 4, "ftyp", 4)) return false;
  for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++)
    if (!memcmp(b + 8, brands[i], 4)) return true;
  return false;
}

static int check_size(const char *fmt, long w, long h) {
  if (w <= 0 || h <= 0)
    return pv_error(PV_EFORMAT, "%s header gives an empty image (%ldx%ld)",
                    fmt, w, h);
  if (w > PV_IMAGE_MAX_SIDE || h > PV_IMAGE_MAX_SIDE ||
      w * h > PV_IMAGE_MAX_PIXELS)
    return pv_error(PV_ERANGE,
                    "%s image is %ldx%ld, larger than the limit of %d pixels "
                    "a side and %ld Mpx",
                    fmt, w, h, PV_IMAGE_MAX_SIDE, PV_IMAGE_MAX_PIXELS >> 20);
  return 0;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Walk the JPEG markers up to the first start-of-frame, as libjpeg's
 * next_marker() does: bytes between segments that are no marker (not 0xff,
 * or a stuffed 0xff 0x00) are skipped, so the size found here is the one
 * the decoder will use. */
static int jpeg_dims(const uint8_t *b, size_t len, long *w, long *h) {
  size_t i = 2;
  while (i + 4 <= len) {
    if (b[i] != 0xff) { i++; continue; }     /* garbage */
    uint8_t m = b[i + 1];
    if (m == 0xff) { i++; continue; }        /* fill byte */
    if (m == 0x00) { i += 2; continue; }     /* stuffed zero: garbage */
    if (m == 0xd8 || (m >= 0xd0 && m <= 0xd7) || m == 0x01) { i += 2; continue; }
    if (m == 0xd9 || m == 0xda)
      return pv_error(PV_EFORMAT, "JPEG: no frame header before the image data");
    size_t seg = (size_t)b[i + 2] << 8 | b[i + 3];
    if (seg < 2) return pv_error(PV_EFORMAT, "JPEG: bad segment length at byte %zu", i);
    bool sof = m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
    if (sof) {
      if (seg < 7 || i + 2 + 7 > len) break;
      *h = (long)b[i + 5] << 8 | b[i + 6];
      *w = (long)b[i + 7] << 8 | b[i + 8];
      return 0;
    }
    i += 2 + seg;
  }
  return pv_error(PV_EFORMAT, "JPEG: truncated before the frame header");
}

#ifdef HAVE_HEIF
static pthread_once_t heif_once = PTHREAD_ONCE_INIT;
static void heif_start(void) { heif_init(NULL); }

/* The file's primary image: parsing the boxes decodes no pixel. The size
 * is the one after HEIF's rotation and mirroring (irot / imir), which
 * belong to the image (unlike EXIF's, they are not metadata) and are
 * always applied. */
static int heif_open(const uint8_t *b, size_t len, struct heif_context **ctx,
                     struct heif_image_handle **h) {
  pthread_once(&heif_once, heif_start);
  *h = NULL;
  if (len > INT32_MAX) return pv_error(PV_ERANGE, "HEIF: file too large");
  if (!(*ctx = heif_context_alloc())) return pv_error(PV_ENOMEM, "HEIF: out of memory");
  heif_context_set_maximum_image_size_limit(*ctx, PV_IMAGE_MAX_SIDE);
  struct heif_error e = heif_context_read_from_memory_without_copy(*ctx, b, len, NULL);
  if (e.code == heif_error_Ok) e = heif_context_get_primary_image_handle(*ctx, h);
  if (e.code != heif_error_Ok) {
    /* The message belongs to the context: copy it out first. */
    int rc = pv_error(e.code == heif_error_Memory_allocation_error ? PV_ENOMEM : PV_EFORMAT,
                      "HEIF: %s", e.message);
    heif_context_free(*ctx);
    *ctx = NULL;
    return rc;
  }
  return 0;
}
#endif

typedef enum img_fmt { FMT_PNG, FMT_JPEG, FMT_WEBP, FMT_HEIF } img_fmt;
static const char *const fmt_name[] = {"PNG", "JPEG", "WebP", "HEIF"};
static const char *const fmt_id[] = {"png", "jpeg", "webp", "heif"};

/* The format by its magic bytes, or an error saying what the bytes are not. */
static int sniff(const uint8_t *b, size_t len, img_fmt *f) {
  if (!b || len == 0) return pv_error(PV_EFORMAT, "empty image");
  if (is_png(b, len)) *f = FMT_PNG;
  else if (is_jpeg(b, len)) *f = FMT_JPEG;
  else if (is_webp(b, len)) *f = FMT_WEBP;
  else if (is_heif(b, len)) *f = FMT_HEIF;
  else
    return pv_error(PV_EFORMAT, "not " KNOWN_FORMATS " (%zu bytes starting %02x %02x %02x %02x)",
                    len, b[0], len > 1 ? b[1] : 0, len > 2 ? b[2] : 0, len > 3 ? b[3] : 0);
  return 0;
}

/* The size from a header of format f, checked against the limits. */
static int probe_fmt(const uint8_t *b, size_t len, img_fmt f, long *iw, long *ih) {
  int rc = 0;
  switch (f) {
  case FMT_PNG:
    if (len < 24 || memcmp(b + 12, "IHDR", 4))
      return pv_error(PV_EFORMAT, "PNG: truncated or missing IHDR header");
    *iw = (long)be32(b + 16);
    *ih = (long)be32(b + 20);
    break;
  case FMT_JPEG:
    rc = jpeg_dims(b, len, iw, ih);
    break;
  case FMT_WEBP: {
#ifdef HAVE_WEBP
    int ww, wh;
    if (!WebPGetInfo(b, len, &ww, &wh))
      return pv_error(PV_EFORMAT, "WebP: truncated or broken header");
    *iw = ww, *ih = wh;
#else
    return pv_error(PV_EUNSUPPORTED, "WebP image, but pivotd was built without libwebp");
#endif
    break;
  }
  case FMT_HEIF: {
#ifdef HAVE_HEIF
    struct heif_context *ctx;
    struct heif_image_handle *hd;
    if ((rc = heif_open(b, len, &ctx, &hd))) return rc;
    *iw = heif_image_handle_get_width(hd);
    *ih = heif_image_handle_get_height(hd);
    heif_image_handle_release(hd);
    heif_context_free(ctx);
#else
    return pv_error(PV_EUNSUPPORTED, "HEIC/AVIF image, but pivotd was built without libheif");
#endif
    break;
  }
  }
  return rc ? rc : check_size(fmt_name[f], *iw, *ih);
}

int pv_image_probe(const void *buf, size_t len, const char **format, int *w,
                   int *h) {
  const uint8_t *b = buf;
  long iw = 0, ih = 0;
  img_fmt f;
  int rc = sniff(b, len, &f);
  if (!rc) rc = probe_fmt(b, len, f, &iw, &ih);
  if (rc) return rc;
  if (format) *format = fmt_id[f];
  if (w) *w = (int)iw;
  if (h) *h = (int)ih;
  return 0;
}

void pv_image_free(pv_image *img) {
  if (!img) return;
  free(img->rgb);
  img->rgb = NULL;
  img->w = img->h = 0;
}

#ifdef HAVE_IMAGE

typedef struct jerr {
  struct jpeg_error_mgr mgr;
  jmp_buf jmp;
  char msg[JMSG_LENGTH_MAX];
  bool truncated;
} jerr;

static void jerr_exit(j_common_ptr c) {
  jerr *e = (jerr *)c->err;
  if (!e->truncated) c->err->format_message(c, e->msg);
  longjmp(e->jmp, 1);
}

/* libjpeg only warns about a file cut short and fills the rest with grey;
 * we want an error, so remember those warnings. */
static void jerr_emit(j_common_ptr c, int level) {
  jerr *e = (jerr *)c->err;
  if (level < 0 && (c->err->msg_code == JWRN_JPEG_EOF ||
                    c->err->msg_code == JWRN_HIT_MARKER)) {
    if (!e->truncated) c->err->format_message(c, e->msg);
    e->truncated = true;
  }
}

/* The EXIF orientation (TIFF tag 0x0112, 1..8) in an APP1 "Exif" segment;
 * 1 (upright) when there is none or it is malformed. Every offset is
 * checked against the segment: the bytes come from the client. */
static int exif_orientation(const uint8_t *d, size_t len) {
  if (len < 6 + 8 || memcmp(d, "Exif\0\0", 6)) return 1;
  const uint8_t *t = d + 6;
  size_t tl = len - 6;
  bool le = t[0] == 'I' && t[1] == 'I';
  if (!le && !(t[0] == 'M' && t[1] == 'M')) return 1;
#define U16(p) (le ? (unsigned)(p)[0] | (unsigned)(p)[1] << 8 : (unsigned)(p)[0] << 8 | (unsigned)(p)[1])
#define U32(p) (le ? (uint32_t)U16(p) | (uint32_t)U16((p) + 2) << 16 : (uint32_t)U16(p) << 16 | (uint32_t)U16((p) + 2))
  if (U16(t + 2) != 42) return 1;
  uint32_t ifd = U32(t + 4);
  if (ifd > tl || tl - ifd < 2) return 1;
  unsigned n = U16(t + ifd);
  int o = 1;
  for (unsigned i = 0; i < n; i++) {
    size_t e = (size_t)ifd + 2 + (size_t)i * 12;
    if (e + 12 > tl) break;
    if (U16(t + e) == 0x0112 && U16(t + e + 2) == 3 && U32(t + e + 4) >= 1) {
      unsigned v = U16(t + e + 8);
      if (v >= 1 && v <= 8) o = (int)v;
      break;
    }
  }
#undef U32
#undef U16
  return o;
}

/* Turn the stored pixels the way EXIF orientation `o` says, so the image
 * is the one a viewer shows (orientations 5-8 swap width and height). */
static int orient(pv_image *img, int o) {
  if (o <= 1 || o > 8) return 0;
  int w = img->w, h = img->h;
  int ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
  uint8_t *dst = malloc((size_t)w * h * 3);
  if (!dst) return pv_error(PV_ENOMEM, "no memory to orient a %dx%d image", w, h);
  for (int y = 0; y < oh; y++) {
    uint8_t *q = dst + (size_t)y * ow * 3;
    for (int x = 0; x < ow; x++, q += 3) {
      int sx, sy;
      switch (o) {
      case 2: sx = w - 1 - x, sy = y; break;          /* mirrored */
      case 3: sx = w - 1 - x, sy = h - 1 - y; break;  /* turned 180 */
      case 4: sx = x, sy = h - 1 - y; break;          /* flipped */
      case 5: sx = y, sy = x; break;                  /* transposed */
      case 6: sx = y, sy = h - 1 - x; break;          /* turned 90 clockwise */
      case 7: sx = w - 1 - y, sy = h - 1 - x; break;  /* transversed */
      default: sx = w - 1 - y, sy = x; break;         /* 8: 90 anticlockwise */
      }
      memcpy(q, img->rgb + ((size_t)sy * w + sx) * 3, 3);
    }
  }
  free(img->rgb);
  img->rgb = dst;
  img->w = ow;
  img->h = oh;
  return 0;
}

/* CMYK (or YCCK, which libjpeg turns into CMYK) to RGB as Pillow and
 * browsers do: R = (255 - C)(255 - K) / 255. Files with an Adobe marker
 * (Photoshop's) store the inks inverted. */
static void cmyk_row(const uint8_t *s, uint8_t *d, size_t n, bool inverted) {
  for (size_t i = 0; i < n; i++, s += 4, d += 3) {
    unsigned k = inverted ? s[3] : 255u - s[3];
    for (int c = 0; c < 3; c++) {
      unsigned v = inverted ? s[c] : 255u - s[c];
      d[c] = (uint8_t)((v * k + 127) / 255);
    }
  }
}

static int decode_jpeg(const uint8_t *b, size_t len, pv_image *img) {
  struct jpeg_decompress_struct ci;
  jerr e;
  /* volatile: assigned between setjmp and longjmp. */
  uint8_t *volatile rgb = NULL;
  uint8_t *volatile row4 = NULL;
  memset(&e, 0, sizeof e);
  ci.err = jpeg_std_error(&e.mgr);
  e.mgr.error_exit = jerr_exit;
  e.mgr.emit_message = jerr_emit;
  if (setjmp(e.jmp)) {
    jpeg_destroy_decompress(&ci);
    free(rgb);
    free(row4);
    /* A file cut in its headers ends as "contains no image": say why. */
    return pv_error(PV_EFORMAT, e.truncated ? "JPEG: truncated file (%s)" : "JPEG: %s", e.msg);
  }
  jpeg_create_decompress(&ci);
  jpeg_mem_src(&ci, b, (unsigned long)len);
  jpeg_save_markers(&ci, JPEG_APP0 + 1, 0xffff);
  jpeg_read_header(&ci, TRUE);
  int rc = check_size("JPEG", (long)ci.image_width, (long)ci.image_height);
  if (rc) {
    jpeg_destroy_decompress(&ci);
    return rc;
  }
  img->orientation = 1;
  for (jpeg_saved_marker_ptr mk = ci.marker_list; mk; mk = mk->next)
    if (mk->marker == JPEG_APP0 + 1 && mk->data_length >= 6 &&
        !memcmp(mk->data, "Exif\0\0", 6)) {
      img->orientation = exif_orientation(mk->data, mk->data_length);
      break;
    }
  bool cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
  ci.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&ci);
  if (ci.output_components != (cmyk ? 4 : 3)) {
    jpeg_destroy_decompress(&ci);
    return pv_error(PV_EUNSUPPORTED, "JPEG: %d output components, want %d",
                    ci.output_components, cmyk ? 4 : 3);
  }
  size_t stride = (size_t)ci.output_width * 3;
  rgb = malloc(stride * ci.output_height);
  if (cmyk) row4 = malloc((size_t)ci.output_width * 4);
  if (!rgb || (cmyk && !row4)) {
    jpeg_destroy_decompress(&ci);
    free(rgb);
    free(row4);
    return pv_error(PV_ENOMEM, "JPEG: no memory for %ux%u pixels",
                    ci.output_width, ci.output_height);
  }
  while (ci.output_scanline < ci.output_height && !e.truncated) {
    uint8_t *dst = rgb + stride * ci.output_scanline;
    JSAMPROW row = cmyk ? row4 : dst;
    if (jpeg_read_scanlines(&ci, &row, 1) == 1 && cmyk)
      cmyk_row(row4, dst, ci.output_width, ci.saw_Adobe_marker);
  }
  free(row4);
  row4 = NULL;
  if (e.truncated) {
    jpeg_destroy_decompress(&ci);
    free(rgb);
    return pv_error(PV_EFORMAT, "JPEG: truncated or corrupt image data (%s)", e.msg);
  }
  jpeg_finish_decompress(&ci);
  if (e.truncated) { /* the end-of-image marker itself was missing */
    jpeg_destroy_decompress(&ci);
    free(rgb);
    return pv_error(PV_EFORMAT, "JPEG: truncated (%s)", e.msg);
  }
  img->w = (int)ci.output_width;
  img->h = (int)ci.output_height;
  img->rgb = rgb;
  jpeg_destroy_decompress(&ci);
  return 0;
}

/* PNG with libpng's classic API and only the transforms that keep sample
 * values as they are, as PIL's convert("RGB"), OpenCV's imread and
 * TensorFlow's decode_png give them: 16-bit samples keep their high byte,
 * grey is repeated into R, G and B, palettes are looked up, alpha (and a
 * tRNS colour) is dropped, not composited, and gAMA / sRGB / iCCP are
 * ignored. (The simplified png_image API gamma-encodes: it reads 16-bit
 * samples as linear light, so a mid-grey 16-bit pixel came out as 186,
 * not 128.) */
typedef struct png_src {
  const uint8_t *b;
  size_t len, at;
  char msg[128];
} png_src;

static void png_read_mem(png_structp png, png_bytep out, size_t n) {
  png_src *s = png_get_io_ptr(png);
  if (n > s->len - s->at) png_error(png, "truncated file");
  memcpy(out, s->b + s->at, n);
  s->at += n;
}

static void png_err(png_structp png, png_const_charp msg) {
  png_src *s = png_get_error_ptr(png);
  snprintf(s->msg, sizeof s->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

static int decode_png(const uint8_t *b, size_t len, pv_image *img) {
  png_src src = {.b = b, .len = len};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src,
                                           png_err, png_warn);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return pv_error(PV_ENOMEM, "PNG: out of memory");
  }
  /* volatile: assigned between setjmp and longjmp. */
  uint8_t *volatile rgb = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(rgb);
    free(rows);
    return pv_error(PV_EFORMAT, "PNG: %s", src.msg[0] ? src.msg : "corrupt file");
  }
  png_set_read_fn(png, &src, png_read_mem);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info);
  png_uint_32 h = png_get_image_height(png, info);
  int rc = check_size("PNG", (long)w, (long)h);
  if (rc) {
    png_destroy_read_struct(&png, &info, NULL);
    return rc;
  }
  int ct = png_get_color_type(png, info);
  png_set_strip_16(png);
  png_set_packing(png);
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ct == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
    png_set_expand_gray_1_2_4_to_8(png);
  if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  if (!(ct & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != (size_t)w * 3)
    png_error(png, "unexpected row size after conversion to 8-bit RGB");
  rgb = malloc((size_t)w * h * 3);
  rows = malloc(sizeof(png_bytep) * h);
  if (!rgb || !rows) {
    png_destroy_read_struct(&png, &info, NULL);
    free(rgb);
    free(rows);
    return pv_error(PV_ENOMEM, "PNG: no memory for %ux%u pixels", (unsigned)w, (unsigned)h);
  }
  for (png_uint_32 y = 0; y < h; y++) rows[y] = rgb + (size_t)y * w * 3;
  png_read_image(png, rows);
  /* Not png_read_end: chunks after the pixels change nothing, and a file
   * that lacks only its IEND decodes, as with PIL. */
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  img->w = (int)w;
  img->h = (int)h;
  img->rgb = rgb;
  return 0;
}

#ifdef HAVE_WEBP
/* The first frame's pixels; alpha dropped, as for PNG. */
static int decode_webp(const uint8_t *b, size_t len, pv_image *img) {
  WebPBitstreamFeatures f;
  if (WebPGetFeatures(b, len, &f) != VP8_STATUS_OK)
    return pv_error(PV_EFORMAT, "WebP: truncated or broken header");
  if (f.has_animation)
    return pv_error(PV_EUNSUPPORTED, "WebP: animated images are not supported; send one frame");
  size_t stride = (size_t)f.width * 3, n = stride * (size_t)f.height;
  uint8_t *rgb = malloc(n);
  if (!rgb) return pv_error(PV_ENOMEM, "WebP: no memory for %dx%d pixels", f.width, f.height);
  if (!WebPDecodeRGBInto(b, len, rgb, n, (int)stride)) {
    free(rgb);
    return pv_error(PV_EFORMAT, "WebP: truncated or corrupt image data");
  }
  img->w = f.width;
  img->h = f.height;
  img->rgb = rgb;
  return 0;
}
#endif

#ifdef HAVE_HEIF
static int decode_heif(const uint8_t *b, size_t len, pv_image *img) {
  struct heif_context *ctx;
  struct heif_image_handle *hd;
  int rc = heif_open(b, len, &ctx, &hd);
  if (rc) return rc;
  struct heif_image *im = NULL;
  if ((rc = check_size("HEIF", heif_image_handle_get_width(hd), heif_image_handle_get_height(hd))))
    goto out;
  struct heif_error e = heif_decode_image(hd, &im, heif_colorspace_RGB,
                                          heif_chroma_interleaved_RGB, NULL);
  if (e.code != heif_error_Ok) {
    rc = pv_error(e.code == heif_error_Memory_allocation_error ? PV_ENOMEM : PV_EFORMAT,
                  "HEIF: %s", e.message);
    goto out;
  }
  int w = heif_image_get_width(im, heif_channel_interleaved);
  int h = heif_image_get_height(im, heif_channel_interleaved);
  int stride = 0;
  const uint8_t *p = heif_image_get_plane_readonly(im, heif_channel_interleaved, &stride);
  if (!p) {
    rc = pv_error(PV_EFORMAT, "HEIF: the decoder gave no RGB plane");
    goto out;
  }
  /* The size was checked from the header: a coded image of another size
   * is a broken file, not a surprise to pass on. */
  if (w != heif_image_handle_get_width(hd) || h != heif_image_handle_get_height(hd)) {
    rc = pv_error(PV_EFORMAT, "HEIF: the image decodes to %dx%d but its header says %dx%d",
                  w, h, heif_image_handle_get_width(hd), heif_image_handle_get_height(hd));
    goto out;
  }
  if (!(img->rgb = malloc((size_t)w * h * 3))) {
    rc = pv_error(PV_ENOMEM, "HEIF: no memory for %dx%d pixels", w, h);
    goto out;
  }
  for (int y = 0; y < h; y++)
    memcpy(img->rgb + (size_t)y * w * 3, p + (size_t)y * stride, (size_t)w * 3);
  img->w = w;
  img->h = h;
out:
  heif_image_release(im);
  heif_image_handle_release(hd);
  heif_context_free(ctx);
  return rc;
}
#endif

int pv_image_decode_ex(const void *buf, size_t len, unsigned flags,
                       pv_image *img) {
  if (!img) return pv_error(PV_EINVAL, "pv_image_decode: no image");
  memset(img, 0, sizeof *img);
  const uint8_t *b = buf;
  img_fmt f;
  long w, h;
  int rc = sniff(b, len, &f);
  if (rc) return rc;
  /* The size is checked from the header before a pixel is decoded; HEIF's
   * decoder checks it on the container it opens, not parsed twice. */
#ifdef HAVE_HEIF
  if (f != FMT_HEIF)
#endif
    if ((rc = probe_fmt(b, len, f, &w, &h))) return rc;
  switch (f) {
  case FMT_PNG: rc = decode_png(b, len, img); break;
  case FMT_JPEG: rc = decode_jpeg(b, len, img); break;
#ifdef HAVE_WEBP
  case FMT_WEBP: rc = decode_webp(b, len, img); break;
#endif
#ifdef HAVE_HEIF
  case FMT_HEIF: rc = decode_heif(b, len, img); break;
#endif
#if !defined(HAVE_WEBP) || !defined(HAVE_HEIF)
  default: /* refused by probe_fmt: built without its library */
    rc = pv_error(PV_EUNSUPPORTED, "no decoder for this format");
#endif
  }
  if (!rc && !img->orientation) img->orientation = 1;
  if (!rc && !(flags & PV_IMAGE_STORED_ORIENTATION))
    rc = orient(img, img->orientation);
  if (rc) {
    pv_image_free(img);
    img->orientation = 0;
  }
  return rc;
}

int pv_image_decode(const void *buf, size_t len, pv_image *img) {
  return pv_image_decode_ex(buf, len, 0, img);
}

int pv_image_write_png(const char *path, const pv_image *img) {
  png_image pi;
  memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  pi.width = (png_uint_32)img->w;
  pi.height = (png_uint_32)img->h;
  pi.format = PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&pi, path, 0, img->rgb, 0, NULL)) {
    int rc = pv_error(PV_EIO, "%s: %s", path, pi.message);
    png_image_free(&pi);
    return rc;
  }
  return 0;
}

#else /* !HAVE_IMAGE */

int pv_image_decode_ex(const void *buf, size_t len, unsigned flags,
                       pv_image *img) {
  (void)flags;
  return pv_image_decode(buf, len, img);
}

int pv_image_decode(const void *buf, size_t len, pv_image *img) {
  (void)buf;
  (void)len;
  if (img) memset(img, 0, sizeof *img);
  return pv_error(PV_EUNSUPPORTED, "built without libjpeg/libpng: no image decoding");
}

int pv_image_write_png(const char *path, const pv_image *img) {
  (void)img;
  return pv_error(PV_EUNSUPPORTED, "%s: built without libpng", path);
}

#endif

/* ------------------------------------------------------ preprocessing */

/* Parse exactly n comma-separated floats. */
static int parse_floats(const char *key, const char *s, float *out, int n) {
  for (int i = 0; i < n; i++) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v))
      return pv_error(PV_EFORMAT, "metadata %s: want %d comma-separated numbers", key, n);
    out[i] = (float)v;
    s = end;
    while (*s == ' ') s++;
    if (i + 1 < n) {
      if (*s != ',') return pv_error(PV_EFORMAT, "metadata %s: want %d comma-separated numbers", key, n);
      s++;
    }
  }
  if (*s) return pv_error(PV_EFORMAT, "metadata %s: more than %d numbers", key, n);
  return 0;
}

/* One number for all channels, or three. */
static int parse_channels(const pv_graph *g, const char *key, float *out) {
  const char *s = pv_graph_get_meta(g, key);
  if (!s) return 0;
  if (!strchr(s, ',')) {
    int rc = parse_floats(key, s, out, 1);
    out[1] = out[2] = out[0];
    return rc;
  }
  return parse_floats(key, s, out, 3);
}

bool pv_image_ultralytics(const pv_graph *g) {
  const char *n = g ? pv_graph_get_meta(g, "names") : NULL;
  return n && n[0] == '{' && (pv_graph_get_meta(g, "stride") || pv_graph_get_meta(g, "task") ||
                              pv_graph_get_meta(g, "imgsz"));
}

int pv_image_prep_from_graph(const pv_graph *g, int input, pv_image_prep *p) {
  memset(p, 0, sizeof *p);
  p->std[0] = p->std[1] = p->std[2] = 1;
  if (input < 0 || input >= g->n_values)
    return pv_error(PV_EINVAL, "image input: no value %d", input);
  const pv_value *v = &g->values[input];
  if (v->dtype != PV_F32 || v->ndim != 4 || v->dims[1] != 3 || v->dims[2] <= 0 ||
      v->dims[3] <= 0 || v->dims[2] > PV_IMAGE_MAX_SIDE || v->dims[3] > PV_IMAGE_MAX_SIDE) {
    char d[64];
    return pv_error(PV_ESHAPE, "image input '%s' must be FP32 [N,3,H,W] with fixed H and W, not %s %s",
                    v->name, pv_dtype_name(v->dtype),
                    v->ndim >= 0 ? pv_dims_str(v->dims, v->ndim, d, sizeof d) : "[?]");
  }
  p->height = (int)v->dims[2];
  p->width = (int)v->dims[3];
  /* Ultralytics' preprocessing: its letterbox padded with grey 114, RGB / 255;
   * pivot.image.* keys still override it. */
  if (pv_image_ultralytics(g)) {
    p->resize = PV_RESIZE_LETTERBOX_CV;
    p->pad = 114;
    p->std[0] = p->std[1] = p->std[2] = 255;
  }
  static const char *const modes[] = {[PV_RESIZE_STRETCH] = "stretch",
                                       [PV_RESIZE_PAD_SQUARE] = "pad_square",
                                       [PV_RESIZE_LETTERBOX_CV] = "letterbox_cv",
                                       [PV_RESIZE_LETTERBOX] = "letterbox"};
  const char *s = pv_graph_get_meta(g, "pivot.image.resize");
  if (s) { /* else the default above */
    int m = 0;
    while (m < (int)(sizeof modes / sizeof *modes) && strcmp(s, modes[m])) m++;
    if (m == (int)(sizeof modes / sizeof *modes))
      return pv_error(PV_EFORMAT, "metadata pivot.image.resize: '%s' is not stretch, pad_square, letterbox or letterbox_cv", s);
    p->resize = (pv_resize_mode)m;
  }
  s = pv_graph_get_meta(g, "pivot.image.channels");
  if (!s || !strcmp(s, "rgb")) p->bgr = false;
  else if (!strcmp(s, "bgr")) p->bgr = true;
  else return pv_error(PV_EFORMAT, "metadata pivot.image.channels: '%s' is not rgb or bgr", s);
  int rc = parse_channels(g, "pivot.image.mean", p->mean);
  if (!rc) rc = parse_channels(g, "pivot.image.std", p->std);
  if (rc) return rc;
  for (int c = 0; c < 3; c++)
    if (p->std[c] == 0) return pv_error(PV_EFORMAT, "metadata pivot.image.std: zero");
  s = pv_graph_get_meta(g, "pivot.image.pad");
  if (s && (rc = parse_floats("pivot.image.pad", s, &p->pad, 1))) return rc;
  return 0;
}

/* Source taps of TF's resizeBilinear (alignCorners=false,
 * halfPixelCenters=false) for one axis: src = dst * in/out. */
typedef struct tap {
  int lo, hi;
  double frac;
} tap;

static void taps(tap *t, int out, int in) {
  double ratio = (double)in / out;
  for (int i = 0; i < out; i++) {
    double f = ratio * i;
    int lo = (int)floor(f);
    if (lo < 0) lo = 0;
    int hi = (int)ceil(f);
    if (hi > in - 1) hi = in - 1;
    t[i].lo = lo;
    t[i].hi = hi;
    t[i].frac = f - lo;
  }
}

/* OpenCV's INTER_LINEAR taps for one axis: half-pixel centres, src =
 * (dst + 0.5) * in/out - 0.5, clamped into the image. */
static void taps_half(tap *t, int out, int in) {
  double ratio = (double)in / out;
  for (int i = 0; i < out; i++) {
    double f = (i + 0.5) * ratio - 0.5;
    if (f < 0) f = 0;
    int lo = (int)floor(f);
    if (lo >= in - 1) {
      lo = in - 1;
      f = lo;
    }
    t[i].lo = lo;
    t[i].hi = lo + 1 < in ? lo + 1 : lo;
    t[i].frac = f - lo;
  }
}

/* Taps shifted into the image's coordinates: a tap that leaves the image
 * reads the pad value. `at` places the resized run in the output (the
 * letterbox's border), outside it both taps read pad. */
static void taps_place(tap *t, int out, long at, long run, long shift) {
  for (long i = out - 1; i >= 0; i--) {
    if (i < at || i >= at + run) {
      t[i] = (tap){-1, -1, 0};
      continue;
    }
    t[i] = t[i - at];
    t[i].lo -= (int)shift;
    t[i].hi -= (int)shift;
  }
}

/* Output pixel (ox, oy) blends the image pixels at taps tx[ox], ty[oy]
 * (a tap outside the image reads the pad value), rounded to 8 bits where
 * the reference works in 8-bit pixels, then normalised into CHW. */
static void resample(const pv_image *img, const pv_image_prep *p, const tap *tx,
                     const tap *ty, bool round8, float *out) {
  long W = img->w, H = img->h, OW = p->width, OH = p->height;
  size_t plane = (size_t)OW * (size_t)OH;
  float pad = p->pad;
  for (long oy = 0; oy < OH; oy++) {
    long y0 = ty[oy].lo, y1 = ty[oy].hi;
    bool in0 = y0 >= 0 && y0 < H, in1 = y1 >= 0 && y1 < H;
    const uint8_t *r0 = img->rgb + (size_t)(in0 ? y0 : 0) * (size_t)W * 3;
    const uint8_t *r1 = img->rgb + (size_t)(in1 ? y1 : 0) * (size_t)W * 3;
    double fy = ty[oy].frac;
    for (long ox = 0; ox < OW; ox++) {
      long x0 = tx[ox].lo, x1 = tx[ox].hi;
      bool ix0 = x0 >= 0 && x0 < W, ix1 = x1 >= 0 && x1 < W;
      double fx = tx[ox].frac;
      for (int c = 0; c < 3; c++) {
        double tl = in0 && ix0 ? r0[x0 * 3 + c] : pad;
        double tr = in0 && ix1 ? r0[x1 * 3 + c] : pad;
        double bl = in1 && ix0 ? r1[x0 * 3 + c] : pad;
        double br = in1 && ix1 ? r1[x1 * 3 + c] : pad;
        double top = tl + (tr - tl) * fx, bot = bl + (br - bl) * fx;
        double bi = top + (bot - top) * fy;
        /* TF.js stores the resized image as float32, then normalises in
         * float32: round at the same places. */
        float v = (float)(round8 ? floor(bi + 0.5) : bi);
        int oc = p->bgr ? 2 - c : c;
        out[(size_t)oc * plane + (size_t)oy * (size_t)OW + (size_t)ox] =
            (v - p->mean[oc]) / p->std[oc];
      }
    }
  }
}

int pv_image_to_chw(const pv_image *img, const pv_image_prep *p, float *out,
                    pv_image_xform *xf) {
  if (!img || !img->rgb || img->w <= 0 || img->h <= 0)
    return pv_error(PV_EINVAL, "image to tensor: empty image");
  if (p->width <= 0 || p->height <= 0)
    return pv_error(PV_EINVAL, "image to tensor: bad input size %dx%d", p->width, p->height);
  long W = img->w, H = img->h, OW = p->width, OH = p->height;
  tap *tx = malloc(sizeof *tx * (size_t)OW), *ty = malloc(sizeof *ty * (size_t)OH);
  if (!tx || !ty) {
    free(tx);
    free(ty);
    return pv_error(PV_ENOMEM, "image to tensor: no memory");
  }
  pv_image_xform x = {(double)W / OW, (double)H / OH, 0, 0};
  if (p->resize == PV_RESIZE_LETTERBOX_CV) {
    /* Ultralytics' LetterBox (auto=False, centred): r = min(OH/H, OW/W),
     * the image resized to round(W r) x round(H r) (Python's round: half
     * to even) with OpenCV's INTER_LINEAR into 8-bit pixels, then bordered
     * with the pad value, top = round(dh - 0.1), left = round(dw - 0.1);
     * boxes map back as its scale_boxes does: (x - left) / r. */
    double r = fmin((double)OH / H, (double)OW / W);
    long nw = (long)nearbyint(W * r), nh = (long)nearbyint(H * r);
    nw = nw < 1 ? 1 : nw > OW ? OW : nw;
    nh = nh < 1 ? 1 : nh > OH ? OH : nh;
    long left = (long)nearbyint((OW - nw) / 2.0 - 0.1), top = (long)nearbyint((OH - nh) / 2.0 - 0.1);
    if (left < 0) left = 0;
    if (top < 0) top = 0;
    taps_half(tx, (int)nw, (int)W);
    taps_half(ty, (int)nh, (int)H);
    taps_place(tx, (int)OW, left, nw, 0);
    taps_place(ty, (int)OH, top, nh, 0);
    x = (pv_image_xform){1 / r, 1 / r, -(double)left / r, -(double)top / r};
  } else {
    /* The image sits at (px, py) on a canvas of CW x CH filled with the
     * pad value; the canvas is what gets resized, as face-api does it. */
    long CW = W, CH = H, px = 0, py = 0;
    if (p->resize == PV_RESIZE_PAD_SQUARE) {
      CW = CH = W > H ? W : H;
      /* face-api scales boxes back by the rounded fitted size, not the
       * canvas: match it so boxes agree to the pixel. */
      long rw = lround((double)W * OW / CW), rh = lround((double)H * OH / CH);
      x.sx = (double)W / (rw > 0 ? rw : 1);
      x.sy = (double)H / (rh > 0 ? rh : 1);
    } else if (p->resize == PV_RESIZE_LETTERBOX) {
      if (W * OH > H * OW) {
        CH = lround((double)W * OH / OW);
        py = (CH - H) / 2;
      } else {
        CW = lround((double)H * OW / OH);
        px = (CW - W) / 2;
      }
      x.sx = (double)CW / OW;
      x.sy = (double)CH / OH;
      x.ox = -(double)px;
      x.oy = -(double)py;
    }
    taps(tx, (int)OW, (int)CW);
    taps(ty, (int)OH, (int)CH);
    taps_place(tx, (int)OW, 0, OW, px);
    taps_place(ty, (int)OH, 0, OH, py);
  }
  resample(img, p, tx, ty, p->resize == PV_RESIZE_LETTERBOX_CV, out);
  free(tx);
  free(ty);
  if (xf) *xf = x;
  return 0;
}
