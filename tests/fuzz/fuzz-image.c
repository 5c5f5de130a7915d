/* libFuzzer target: the image input path (pv_image_probe, pv_image_decode,
 * pv_image_to_chw) on any byte string. Decoding must either fail with a
 * message or give an image of the size the header announced (turned by
 * the EXIF orientation: 5-8 swap the sides; as stored with
 * PV_IMAGE_STORED_ORIENTATION), and every resize mode must fill the
 * tensor with finite values. */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pv-image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *fmt;
  int pw, ph;
  int prc = pv_image_probe(data, size, &fmt, &pw, &ph);
  if (prc && !pv_errmsg()[0]) __builtin_trap();
  /* Headers up to the real limits are checked above; decode only small
   * images so each run stays fast. */
  if (prc || (int64_t)pw * ph > (1 << 22)) return 0;
  pv_image im;
  int rc = pv_image_decode(data, size, &im);
  if (rc) {
    if (!pv_errmsg()[0] || im.rgb) __builtin_trap();
    return 0;
  }
  if (im.orientation < 1 || im.orientation > 8 || !im.rgb) __builtin_trap();
  bool swap = im.orientation >= 5;
  if (im.w != (swap ? ph : pw) || im.h != (swap ? pw : ph)) __builtin_trap();
  pv_image st;
  if (pv_image_decode_ex(data, size, PV_IMAGE_STORED_ORIENTATION, &st) ||
      st.w != pw || st.h != ph || st.orientation != im.orientation)
    __builtin_trap();
  /* Turning moves pixels, never changes them: same bytes in some order
   * (compared by sum). */
  uint64_t a = 0, b = 0;
  for (size_t i = 0; i < (size_t)pw * ph * 3; i++) a += im.rgb[i], b += st.rgb[i];
  if (a != b) __builtin_trap();
  pv_image_free(&st);
  static float out[3 * 24 * 16];
  for (int mode = PV_RESIZE_STRETCH; mode <= PV_RESIZE_LETTERBOX; mode++) {
    pv_image_prep p = {.width = 24, .height = 16, .resize = (pv_resize_mode)mode,
                       .mean = {1, 2, 3}, .std = {255, 255, 255}, .pad = 9};
    pv_image_xform xf;
    if (pv_image_to_chw(&im, &p, out, &xf)) __builtin_trap();
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
      if (!isfinite(out[i]) || out[i] < -1 || out[i] > 1) __builtin_trap();
    if (!(xf.sx > 0 && xf.sy > 0)) __builtin_trap();
  }
  pv_image_free(&im);
  return 0;
}
