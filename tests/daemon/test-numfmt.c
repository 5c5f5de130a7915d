/* The JSON number scanner and float formatter against the C library:
 * every formatted float must read back (strtof) to the same bits, and the
 * scanner must agree with strtof on decimal strings of every shape. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pivotd.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

int main(void) {
  int bad = 0;
  char out[40], txt[64];
  for (int i = 0; i < 2000000 && bad < 10; i++) {
    uint32_t bits = (uint32_t)next();
    if (i < 1000) bits = (uint32_t)i; /* subnormals near zero */
    float f;
    memcpy(&f, &bits, 4);
    if (!isfinite(f)) continue;
    int n = pvd_fmt_float(f, out);
    float back = strtof(out, NULL);
    if ((size_t)n != strlen(out) || memcmp(&back, &f, 4)) {
      fprintf(stderr, "format %.9g (0x%08x) -> %s -> %.9g\n", (double)f, bits, out, (double)back);
      bad++;
    }
    const char *p = out;
    float s;
    if (pvd_scan_float(&p, out + n, &s) || memcmp(&s, &f, 4)) {
      fprintf(stderr, "scan of %s gave %.9g\n", out, (double)s);
      bad++;
    }
    /* Inside a longer array the eight-chars-at-a-time path reads it. */
    char arr[64];
    int len = snprintf(arr, sizeof arr, "%s,12345678,", out);
    p = arr;
    if (pvd_scan_float(&p, arr + len, &s) || memcmp(&s, &f, 4) || p != arr + n) {
      fprintf(stderr, "scan of %s followed by more gave %.9g\n", out, (double)s);
      bad++;
    }
  }
  /* Decimal strings with many digits and exponents, as clients print them. */
  for (int i = 0; i < 500000 && bad < 20; i++) {
    double d = ((double)(next() % 2000000001) - 1e9) * pow(10.0, (double)((int)(next() % 60) - 40));
    /* %.8f and %.7g of small values: eight fraction digits, the longest
     * the eight-chars-at-a-time path takes. */
    static const char *const fmts[] = {"%.17g", "%.6f", "%.3e", "%.12g", "%g", "%.8f", "%.7g"};
    if (i % 7 >= 5) d = fmod(d, 10.0);
    int len = snprintf(txt, sizeof txt, fmts[i % 7], d);
    const char *p = txt;
    float s;
    float want = strtof(txt, NULL);
    if (pvd_scan_float(&p, txt + len, &s) || memcmp(&s, &want, 4) || p != txt + len) {
      fprintf(stderr, "scan of %s gave %.9g, strtof %.9g\n", txt, (double)s, (double)want);
      bad++;
    }
    memcpy(txt + len, "]       ", 9); /* room for whole-word loads */
    p = txt;
    if (pvd_scan_float(&p, txt + len + 8, &s) || memcmp(&s, &want, 4) || p != txt + len) {
      fprintf(stderr, "scan of %s followed by more gave %.9g\n", txt, (double)s);
      bad++;
    }
  }
  /* Nested arrays, integers with range checks, malformed data. */
  float buf[6];
  size_t got = 0;
  const char *a = "[[1, 2.5, -3e2], [4E-1,5,6]]";
  const char *p = a;
  if (pvd_json_parse_data(&p, a + strlen(a), PV_F32, buf, 6, &got) || got != 6 || buf[2] != -300.0f || buf[3] != 0.4f) {
    fprintf(stderr, "nested array parse failed: %s\n", pv_errmsg());
    bad++;
  }
  /* Spaced and mixed arrays: the flat-array loop hands over to the
   * general walk mid-array and both must agree with strtof. */
  const char *spaced[] = {"[0.1234567, 0.2345678 ,-0.3456789 , 1e3,[0.01234567] ,  -2]",
                          "[ 0.1234567,0.2345678,-0.3456789,1000,0.01234567,-2 ]"};
  const float want6[] = {0.1234567f, 0.2345678f, -0.3456789f, 1000.0f, 0.01234567f, -2.0f};
  for (size_t i = 0; i < sizeof spaced / sizeof *spaced; i++) {
    p = spaced[i];
    if (pvd_json_parse_data(&p, spaced[i] + strlen(spaced[i]), PV_F32, buf, 6, &got) || got != 6 ||
        memcmp(buf, want6, sizeof want6) || *p) {
      fprintf(stderr, "spaced array %s: got %zu (%s)\n", spaced[i], got, pv_errmsg());
      bad++;
    }
  }
  const char *bads[] = {"[1,2", "[1,,2]", "[1,x]", "[01]", "[1.]", "[1,2,3,4,5,6,7]", "{}",
                        "[0.1234567, ]", "[0.1234567 0.2345678]", "[0.1234567, 0.2345678",
                        "[0.1234567,0.2345678,0.3456789,0.4567891,0.5678912,0.6789123,0.7891234]"};
  for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
    p = bads[i];
    if (pvd_json_parse_data(&p, bads[i] + strlen(bads[i]), PV_F32, buf, 6, &got) == 0) {
      fprintf(stderr, "accepted malformed %s\n", bads[i]);
      bad++;
    }
  }
  uint8_t u8[2];
  const char *ov = "[255,256]";
  p = ov;
  if (pvd_json_parse_data(&p, ov + strlen(ov), PV_U8, u8, 2, &got) == 0) {
    fprintf(stderr, "UINT8 256 accepted\n");
    bad++;
  }
  if (bad) return 1;
  printf("numfmt: ok\n");
  return 0;
}
