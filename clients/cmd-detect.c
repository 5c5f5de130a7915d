/* pivot detect: run a detector on a JPEG/PNG photo, print the boxes (text
 * or JSON) and optionally draw them into a PNG. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pv-detect.h"

/* A photo larger than this is refused before reading it all. */
#define MAX_FILE (256L << 20)

static void usage(FILE *f) {
  fprintf(f,
          "usage: pivot detect MODEL IMAGE [--out ANNOTATED.png] [--score S]\n"
          "                    [--iou T] [--top-k K] [--json] [--backend LIST]\n"
          "                    [--threads N] [--stored-orientation]\n"
          "  Runs the detector MODEL (.onnx or .pvm with pivot.detect.* metadata,\n"
          "  docs/DETECTION.md) on IMAGE (JPEG, PNG, WebP, HEIC, AVIF), one line per\n"
          "  box: label, score, x0 y0 x1 y1 in the image's pixels, the photo\n"
          "  turned upright as its EXIF orientation says.\n"
          "  --score  keep boxes scoring above S (default: the model's)\n"
          "  --iou    NMS: drop boxes overlapping a better one by more than T\n"
          "  --top-k  at most K boxes\n"
          "  --json   print {\"width\",\"height\",\"orientation\",\"detections\":[{\"box\",\"score\",\"class\",\"label\"}]}\n"
          "  --out    write IMAGE with the boxes drawn as a PNG\n"
          "  --stored-orientation  ignore EXIF orientation: the pixels as stored\n");
}

static int read_file(const char *path, void **buf, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return cli_die("detect: %s: %s", path, strerror(errno));
  if (fseek(f, 0, SEEK_END) || ftell(f) < 0) {
    fclose(f);
    return cli_die("detect: %s: not a regular file", path);
  }
  long n = ftell(f);
  rewind(f);
  if (n > MAX_FILE) {
    fclose(f);
    return cli_die("detect: %s: %ld bytes, more than the %ld MiB limit", path, n, MAX_FILE >> 20);
  }
  *buf = malloc(n > 0 ? (size_t)n : 1);
  if (!*buf || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(*buf);
    *buf = NULL;
    return cli_die("detect: %s: read failed", path);
  }
  fclose(f);
  *len = (size_t)n;
  return 0;
}

static int parse_unit(const char *s, const char *what, float *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !(v >= 0 && v <= 1))
    return cli_die("detect: %s wants a number in [0, 1], not '%s'", what, s);
  *out = (float)v;
  return 0;
}

/* A rectangle `t` pixels thick, clipped to the image. */
static void draw_box(pv_image *im, const float *b, int t, const uint8_t rgb[3]) {
  long x0 = lround(b[0]), y0 = lround(b[1]), x1 = lround(b[2]), y1 = lround(b[3]);
  for (long y = y0 - t / 2; y <= y1 + t / 2; y++) {
    if (y < 0 || y >= im->h) continue;
    bool hline = labs(y - y0) <= t / 2 || labs(y - y1) <= t / 2;
    for (long x = x0 - t / 2; x <= x1 + t / 2; x++) {
      if (x < 0 || x >= im->w) continue;
      if (!hline && labs(x - x0) > t / 2 && labs(x - x1) > t / 2) continue;
      memcpy(im->rgb + ((size_t)y * (size_t)im->w + (size_t)x) * 3, rgb, 3);
    }
  }
}

static void print_json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

int cmd_detect(int argc, char **argv) {
  const char *model_path = NULL, *image_path = NULL, *out_path = NULL, *backend = "cpu";
  pv_detect_params p = {.score = -1, .iou = -1};
  bool json = false;
  int threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_val = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--out") && has_val) {
      out_path = argv[++i];
    } else if (!strcmp(a, "--score") && has_val) {
      if (parse_unit(argv[++i], "--score", &p.score)) return 2;
    } else if (!strcmp(a, "--iou") && has_val) {
      if (parse_unit(argv[++i], "--iou", &p.iou)) return 2;
    } else if (!strcmp(a, "--top-k") && has_val) {
      if (cli_int(argv[++i], "--top-k", 1, 100000, &p.top_k)) return 2;
    } else if (!strcmp(a, "--stored-orientation")) {
      p.stored_orientation = true;
    } else if (!strcmp(a, "--json")) {
      json = true;
    } else if (!strcmp(a, "--backend") && has_val) {
      backend = argv[++i];
    } else if (!strcmp(a, "--threads") && has_val) {
      if (cli_int(argv[++i], "--threads", 0, 1024, &threads)) return 2;
    } else if (a[0] == '-') {
      usage(stderr);
      return cli_die("detect: unknown option or missing value: %s", a), 2;
    } else if (!model_path) {
      model_path = a;
    } else if (!image_path) {
      image_path = a;
    } else {
      usage(stderr);
      return cli_die("detect: unexpected argument '%s'", a), 2;
    }
  }
  if (!model_path || !image_path) {
    usage(stderr);
    return 2;
  }
  void *buf = NULL;
  size_t len = 0;
  if (read_file(image_path, &buf, &len)) return 1;
  char bbuf[256];
  const char *names[9];
  cli_backends(backend, bbuf, sizeof bbuf, names, 9);
  pv_load_opts lo = {.backends = names, .threads = threads};
  int rc = 1, n = 0, w = 0, h = 0;
  pv_detection *d = NULL;
  pv_image im = {0};
  pv_exec *e = NULL;
  pv_model *m = pv_model_load(model_path, &lo);
  if (!m) {
    cli_die("%s", pv_errmsg());
    goto out;
  }
  if (!(e = pv_exec_new(m))) {
    cli_die("detect: %s", pv_errmsg());
    goto out;
  }
  int orientation = 1;
  if (pv_detect_image(m, e, buf, len, &p, &d, &n, &w, &h, &orientation)) {
    cli_die("detect: %s: %s", image_path, pv_errmsg());
    goto out;
  }
  if (json) {
    printf("{\"width\":%d,\"height\":%d,\"orientation\":%d,\"detections\":[", w, h, orientation);
    for (int i = 0; i < n; i++) {
      printf("%s{\"box\":[%.3f,%.3f,%.3f,%.3f],\"score\":%.6f,\"class\":%d,\"label\":",
             i ? "," : "", d[i].box[0], d[i].box[1], d[i].box[2], d[i].box[3], d[i].score, d[i].cls);
      print_json_str(d[i].label);
      putchar('}');
    }
    printf("]}\n");
  } else {
    printf("%d detection%s in %dx%d\n", n, n == 1 ? "" : "s", w, h);
    for (int i = 0; i < n; i++)
      printf("%-12s %.4f %8.1f %8.1f %8.1f %8.1f\n", d[i].label[0] ? d[i].label : "-",
             d[i].score, d[i].box[0], d[i].box[1], d[i].box[2], d[i].box[3]);
  }
  if (out_path) {
    static const uint8_t green[3] = {0, 230, 64};
    if (pv_image_decode_ex(buf, len, p.stored_orientation ? PV_IMAGE_STORED_ORIENTATION : 0, &im)) {
      cli_die("detect: %s: %s", image_path, pv_errmsg());
      goto out;
    }
    int t = (w > h ? w : h) / 400 + 2;
    for (int i = 0; i < n; i++) draw_box(&im, d[i].box, t, green);
    if (pv_image_write_png(out_path, &im)) {
      cli_die("detect: %s", pv_errmsg());
      goto out;
    }
  }
  rc = 0;
out:
  pv_image_free(&im);
  free(d);
  pv_exec_free(e);
  pv_model_release(m);
  free(buf);
  return rc;
}
