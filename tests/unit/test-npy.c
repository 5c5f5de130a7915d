/* .npy: round trips of every dtype and odd shapes, files written by numpy
 * (when /usr/bin/python3 has it), and bad files that must fail with a
 * message naming the problem. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cunit-main.h"
#include "pivot.h"

static char tmpdir[64];

static void make_tmpdir(void) {
  strcpy(tmpdir, "/tmp/pv-npy-XXXXXX");
  CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
}

static void rm_tmpdir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd)) fprintf(stderr, "cannot remove %s\n", tmpdir);
}

static const char *tmp(const char *name) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  return path;
}

static void write_bytes(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  CU_ASSERT_FATAL(f != NULL);
  CU_ASSERT(fwrite(buf, 1, len, f) == len);
  fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  CU_ASSERT_FATAL(f != NULL);
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*len + 1);
  CU_ASSERT(fread(b, 1, *len, f) == *len);
  fclose(f);
  return b;
}

static const pv_dtype all_types[] = {PV_F32, PV_F64, PV_F16, PV_I8,
                                     PV_I16, PV_I32, PV_I64, PV_U8,
                                     PV_U16, PV_U32, PV_U64, PV_BOOL};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* Write, read back from the file and from memory; compare everything. */
static void round_trip(pv_dtype dt, int ndim, const int64_t *dims) {
  pv_tensor t = {.dtype = dt, .ndim = ndim};
  memcpy(t.dims, dims, sizeof(int64_t) * ndim);
  CU_ASSERT_FATAL(pv_tensor_alloc(&t) == 0);
  size_t nb = pv_tensor_nbytes(&t);
  for (size_t i = 0; i < nb; i++)
    ((unsigned char *)t.data)[i] =
        dt == PV_BOOL ? (unsigned char)(i % 3 == 0) : (unsigned char)(i * 37 + 1);
  const char *path = tmp("rt.npy");
  CU_ASSERT_EQUAL_FATAL(pv_npy_write(path, &t), 0);

  size_t len;
  unsigned char *file = read_bytes(path, &len);
  /* Version 1.0, data 64-byte aligned, header ends in '\n'. */
  CU_ASSERT_EQUAL(memcmp(file, "\x93NUMPY\x01\x00", 8), 0);
  size_t hlen = file[8] | (size_t)file[9] << 8;
  CU_ASSERT_EQUAL((10 + hlen) % 64, 0);
  CU_ASSERT_EQUAL(file[10 + hlen - 1], '\n');
  CU_ASSERT_EQUAL(len, 10 + hlen + nb);

  pv_tensor r[2];
  CU_ASSERT_EQUAL_FATAL(pv_npy_read(path, &r[0]), 0);
  CU_ASSERT_EQUAL_FATAL(pv_npy_read_mem(file, len, &r[1]), 0);
  for (int k = 0; k < 2; k++) {
    CU_ASSERT_EQUAL(r[k].dtype, dt);
    CU_ASSERT_EQUAL(r[k].ndim, ndim);
    for (int i = 0; i < ndim; i++) CU_ASSERT_EQUAL(r[k].dims[i], dims[i]);
    CU_ASSERT_EQUAL((uintptr_t)r[k].data % 64, 0);
    CU_ASSERT(nb == 0 || memcmp(r[k].data, t.data, nb) == 0);
    pv_free(r[k].data);
  }
  free(file);
  pv_free(t.data);
}

static void test_round_trips(void) {
  make_tmpdir();
  static const int64_t shapes[][PV_MAX_DIMS] = {
      {0}, {5}, {2, 3}, {0}, {3, 0, 2}, {1, 1, 1, 1, 1, 1, 1, 2}, {7, 129}};
  static const int ranks[] = {0, 1, 2, 1, 3, 8, 2};
  for (size_t t = 0; t < N_TYPES; t++)
    for (size_t s = 0; s < sizeof ranks / sizeof ranks[0]; s++)
      round_trip(all_types[t], ranks[s], shapes[s]);
  rm_tmpdir();
}

/* The exact bytes numpy writes for np.float32 [[1, 2, 3], [4, 5, 6]]:
 * checks our header against the reference format even without Python. */
static void test_known_bytes(void) {
  char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  unsigned char buf[128 + 24];
  size_t hl = strlen(hdr);
  memcpy(buf, "\x93NUMPY\x01\x00\x76\x00", 10); /* header length 118 */
  memcpy(buf + 10, hdr, hl);
  memset(buf + 10 + hl, ' ', 128 - 10 - hl - 1);
  buf[127] = '\n';
  float v[6] = {1, 2, 3, 4, 5, 6};
  memcpy(buf + 128, v, 24);
  pv_tensor t;
  CU_ASSERT_EQUAL_FATAL(pv_npy_read_mem(buf, sizeof buf, &t), 0);
  CU_ASSERT_EQUAL(t.dtype, PV_F32);
  CU_ASSERT_EQUAL(t.ndim, 2);
  CU_ASSERT_EQUAL(t.dims[1], 3);
  CU_ASSERT_EQUAL(((float *)t.data)[5], 6.0f);
  /* And we write the same bytes. */
  make_tmpdir();
  CU_ASSERT_EQUAL(pv_npy_write(tmp("k.npy"), &t), 0);
  size_t len;
  unsigned char *file = read_bytes(tmp("k.npy"), &len);
  CU_ASSERT_EQUAL(len, sizeof buf);
  CU_ASSERT(len == sizeof buf && memcmp(file, buf, len) == 0);
  free(file);
  pv_free(t.data);
  rm_tmpdir();
}

/* Files written by numpy itself: every dtype, 0-d, 0-size, format 2.0 and
 * 3.0; then numpy reads ours back and compares. */
static void test_numpy_files(void) {
  if (access("/usr/bin/python3", X_OK)) {
    fprintf(stderr, "\n  skipped: /usr/bin/python3 not found ");
    return;
  }
  make_tmpdir();
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && /usr/bin/python3 -c \"\n"
           "import numpy as np\n"
           "from numpy.lib import format as F\n"
           "for c in ['f4','f8','f2','i1','i2','i4','i8','u1','u2','u4','u8','b1']:\n"
           "    a = (np.arange(24) %% 7 - 3).reshape(2, 3, 4).astype(c)\n"
           "    np.save(c + '.npy', a)\n"
           "np.save('scalar.npy', np.float32(2.5))\n"
           "np.save('empty.npy', np.zeros((0, 4), np.float32))\n"
           "for v in [(2, 0), (3, 0)]:\n"
           "    with open('v%%d.npy' %% v[0], 'wb') as f:\n"
           "        F.write_array(f, np.arange(6, dtype=np.int32).reshape(3, 2), version=v)\n"
           "np.save('big.npy', np.arange(6, dtype='>f4'))\n"
           "np.save('fortran.npy', np.asfortranarray(np.ones((2, 3), np.float32)))\n"
           "\" 2>&1",
           tmpdir);
  if (system(cmd)) {
    fprintf(stderr, "\n  skipped: python3 cannot import numpy ");
    rm_tmpdir();
    return;
  }
  static const char *codes[] = {"f4", "f8", "f2", "i1", "i2", "i4",
                                "i8", "u1", "u2", "u4", "u8", "b1"};
  for (size_t c = 0; c < N_TYPES; c++) {
    char name[16];
    snprintf(name, sizeof name, "%s.npy", codes[c]);
    pv_tensor t;
    int rc = pv_npy_read(tmp(name), &t);
    if (rc) fprintf(stderr, "\n  %s\n", pv_errmsg());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(t.dtype, all_types[c]);
    CU_ASSERT_EQUAL(t.ndim, 3);
    CU_ASSERT_EQUAL(t.dims[2], 4);
    /* element 1 is (1 % 7 - 3) = -2 in the type (True for bool). */
    switch (t.dtype) {
    case PV_F32: CU_ASSERT_EQUAL(((float *)t.data)[1], -2.0f); break;
    case PV_F64: CU_ASSERT_EQUAL(((double *)t.data)[1], -2.0); break;
    case PV_F16: CU_ASSERT_EQUAL(((uint16_t *)t.data)[1], 0xc000); break;
    case PV_I8: CU_ASSERT_EQUAL(((int8_t *)t.data)[1], -2); break;
    case PV_I16: CU_ASSERT_EQUAL(((int16_t *)t.data)[1], -2); break;
    case PV_I32: CU_ASSERT_EQUAL(((int32_t *)t.data)[1], -2); break;
    case PV_I64: CU_ASSERT_EQUAL(((int64_t *)t.data)[23], -1); break;
    case PV_U8: CU_ASSERT_EQUAL(((uint8_t *)t.data)[1], 254); break;
    case PV_U16: CU_ASSERT_EQUAL(((uint16_t *)t.data)[1], 65534); break;
    case PV_U32: CU_ASSERT_EQUAL(((uint32_t *)t.data)[1], 4294967294u); break;
    case PV_U64: CU_ASSERT_EQUAL(((uint64_t *)t.data)[1], UINT64_MAX - 1); break;
    case PV_BOOL: CU_ASSERT_EQUAL(((uint8_t *)t.data)[3], 0); break;
    default: CU_FAIL("unexpected dtype");
    }
    pv_free(t.data);
  }
  pv_tensor t;
  CU_ASSERT_EQUAL_FATAL(pv_npy_read(tmp("scalar.npy"), &t), 0);
  CU_ASSERT_EQUAL(t.ndim, 0);
  CU_ASSERT_EQUAL(*(float *)t.data, 2.5f);
  pv_free(t.data);
  CU_ASSERT_EQUAL_FATAL(pv_npy_read(tmp("empty.npy"), &t), 0);
  CU_ASSERT_EQUAL(t.ndim, 2);
  CU_ASSERT_EQUAL(t.dims[0], 0);
  CU_ASSERT_EQUAL(t.dims[1], 4);
  pv_free(t.data);
  for (int v = 2; v <= 3; v++) {
    char name[16];
    snprintf(name, sizeof name, "v%d.npy", v);
    CU_ASSERT_EQUAL_FATAL(pv_npy_read(tmp(name), &t), 0);
    CU_ASSERT_EQUAL(t.dtype, PV_I32);
    CU_ASSERT_EQUAL(t.dims[0], 3);
    CU_ASSERT_EQUAL(((int32_t *)t.data)[5], 5);
    pv_free(t.data);
  }
  CU_ASSERT_NOT_EQUAL(pv_npy_read(tmp("big.npy"), &t), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "big-endian"));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "big.npy"));
  CU_ASSERT_NOT_EQUAL(pv_npy_read(tmp("fortran.npy"), &t), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "Fortran"));

  /* numpy reads what we write. */
  pv_tensor w = {.dtype = PV_F32, .ndim = 2, .dims = {2, 3}};
  CU_ASSERT_FATAL(pv_tensor_alloc(&w) == 0);
  for (int i = 0; i < 6; i++) ((float *)w.data)[i] = (float)i / 4;
  CU_ASSERT_EQUAL(pv_npy_write(tmp("ours.npy"), &w), 0);
  pv_free(w.data);
  pv_tensor s = {.dtype = PV_I64, .ndim = 0};
  CU_ASSERT_FATAL(pv_tensor_alloc(&s) == 0);
  *(int64_t *)s.data = -7;
  CU_ASSERT_EQUAL(pv_npy_write(tmp("ours0.npy"), &s), 0);
  pv_free(s.data);
  snprintf(cmd, sizeof cmd,
           "cd '%s' && /usr/bin/python3 -c \"\n"
           "import numpy as np\n"
           "a = np.load('ours.npy')\n"
           "assert a.dtype == np.float32 and a.shape == (2, 3), a\n"
           "assert (a == np.arange(6, dtype=np.float32).reshape(2, 3) / 4).all()\n"
           "b = np.load('ours0.npy')\n"
           "assert b.dtype == np.int64 and b.shape == () and b == -7, b\n"
           "\"",
           tmpdir);
  CU_ASSERT_EQUAL(system(cmd), 0);
  rm_tmpdir();
}

/* A buffer with magic, version 1.0 and the given header, plus data. */
static size_t make_npy(unsigned char *buf, const char *hdr, size_t data) {
  size_t hl = strlen(hdr);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)(hl & 0xff);
  buf[9] = (unsigned char)(hl >> 8);
  memcpy(buf + 10, hdr, hl);
  memset(buf + 10 + hl, 0, data);
  return 10 + hl + data;
}

static void expect_bad(const void *buf, size_t len, const char *w1,
                       const char *w2) {
  pv_tensor t = {0};
  int rc = pv_npy_read_mem(buf, len, &t);
  CU_ASSERT(rc < 0);
  if (rc == 0) pv_free(t.data);
  const char *m = pv_errmsg();
  if (!strstr(m, w1)) fprintf(stderr, "\n  message: %s (want %s)\n", m, w1);
  CU_ASSERT_PTR_NOT_NULL(strstr(m, w1));
  CU_ASSERT_PTR_NOT_NULL(w2 ? strstr(m, w2) : m);
}

#define H(descr, fo, shape)                                              \
  "{'descr': '" descr "', 'fortran_order': " fo ", 'shape': " shape ", }" \
  "          \n"

static void test_bad_files(void) {
  unsigned char buf[512];
  size_t n;
  /* The good baseline, so the failures below are about what they change. */
  n = make_npy(buf, H("<f4", "False", "(2, 3)"), 24);
  pv_tensor t;
  CU_ASSERT_EQUAL_FATAL(pv_npy_read_mem(buf, n, &t), 0);
  pv_free(t.data);
  n = make_npy(buf, "{\"shape\": (2L, 3L), \"fortran_order\": False, "
                    "\"descr\": \"<f4\"}\n", 24);
  CU_ASSERT_EQUAL(pv_npy_read_mem(buf, n, &t), 0); /* Python 2 style */
  pv_free(t.data);

  n = make_npy(buf, H("<f4", "False", "(2, 3)"), 24);
  expect_bad(buf, n - 1, "truncated data: expected 24 bytes, found 23", NULL);
  expect_bad(buf, 9, "truncated .npy header", NULL);
  expect_bad(buf, 40, "truncated .npy header", NULL);
  expect_bad(buf, 0, "truncated", NULL);
  n = make_npy(buf, H("<f4", "False", "(2, 3)"), 25);
  expect_bad(buf, n, "1 unexpected bytes", NULL);
  memcpy(buf, "\x93NUMPZ", 6);
  expect_bad(buf, n, "bad magic", NULL);
  expect_bad("PK\x03\x04zipfile", 11, "bad magic", NULL);
  make_npy(buf, H("<f4", "False", "(2, 3)"), 24);
  buf[6] = 4;
  expect_bad(buf, n, "version 4.0", NULL);

  n = make_npy(buf, H("<f4", "True", "(2, 3)"), 24);
  expect_bad(buf, n, "Fortran-order", NULL);
  n = make_npy(buf, H(">f4", "False", "(2, 3)"), 24);
  expect_bad(buf, n, "big-endian", ">f4");
  n = make_npy(buf, H("<c8", "False", "(2, 3)"), 48);
  expect_bad(buf, n, "'<c8' is not supported", NULL);
  n = make_npy(buf, H("|f4", "False", "(2, 3)"), 24);
  expect_bad(buf, n, "'|f4' is not supported", NULL);
  n = make_npy(buf, H("<f4", "False", "(3)"), 12);
  expect_bad(buf, n, "trailing comma", NULL);
  n = make_npy(buf, H("<f4", "False", "(2, -3)"), 0);
  expect_bad(buf, n, "non-negative integer", NULL);
  n = make_npy(buf, H("<f4", "False", "(1,1,1,1,1,1,1,1,1)"), 4);
  expect_bad(buf, n, "more than 8 dimensions", NULL);
  n = make_npy(buf, H("<f4", "False", "(99999999999, 99999999999)"), 4);
  expect_bad(buf, n, "overflows", NULL);
  n = make_npy(buf, H("<f4", "False", "(999999999999999999999, 1)"), 4);
  expect_bad(buf, n, "too large", NULL);
  n = make_npy(buf, H("<f4", "Maybe", "(2,)"), 8);
  expect_bad(buf, n, "fortran_order", NULL);
  n = make_npy(buf, "{'descr': '<f4', 'shape': (2,), }\n", 8);
  expect_bad(buf, n, "lacks 'fortran_order'", NULL);
  n = make_npy(buf, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                    "'shape': (2,), }\n", 8);
  expect_bad(buf, n, "repeated key 'descr'", NULL);
  n = make_npy(buf, "{'descr': [('a', '<f4')], 'fortran_order': False, "
                    "'shape': (2,), }\n", 8);
  expect_bad(buf, n, "structured", NULL);
  n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "
                    "} junk\n", 8);
  expect_bad(buf, n, "after the dict", NULL);
  n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
               8);
  expect_bad(buf, n, "newline", NULL);

  /* Every prefix of a valid file fails cleanly. */
  n = make_npy(buf, H("<i8", "False", "(3,)"), 24);
  for (size_t cut = 0; cut < n; cut++) {
    CU_ASSERT(pv_npy_read_mem(buf, cut, &t) < 0);
  }

  /* The file reader gives the same errors, prefixed by the path. */
  make_tmpdir();
  n = make_npy(buf, H("<f4", "False", "(2, 3)"), 24);
  write_bytes(tmp("short.npy"), buf, n - 8);
  CU_ASSERT(pv_npy_read(tmp("short.npy"), &t) < 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "short.npy: truncated data: "
                                             "expected 24 bytes, found 16"));
  write_bytes(tmp("tiny.npy"), buf, 5);
  CU_ASSERT(pv_npy_read(tmp("tiny.npy"), &t) < 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "truncated .npy header"));
  CU_ASSERT(pv_npy_read(tmp("absent.npy"), &t) < 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "absent.npy: cannot open"));
  CU_ASSERT(pv_npy_read(tmpdir, &t) < 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "not a regular file"));
  /* A header so short that data bytes sit in the first 12 bytes read. */
  n = make_npy(buf, "", 0);
  write_bytes(tmp("empty-hdr.npy"), buf, 12);
  CU_ASSERT(pv_npy_read(tmp("empty-hdr.npy"), &t) < 0);

  pv_tensor bad = {.dtype = PV_STRING, .ndim = 1, .dims = {1}};
  CU_ASSERT(pv_npy_write(tmp("s.npy"), &bad) < 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "BYTES"));
  pv_tensor ok = {.dtype = PV_F32, .ndim = 1, .dims = {1}};
  float one = 1;
  ok.data = &one;
  CU_ASSERT(pv_npy_write("/nonexistent-dir/x.npy", &ok) < 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "cannot create"));
  rm_tmpdir();
}

static CU_TestInfo tests[] = {{"round trips", test_round_trips},
                              {"numpy's bytes", test_known_bytes},
                              {"files written by numpy", test_numpy_files},
                              {"bad files", test_bad_files},
                              CU_TEST_INFO_NULL};
PV_CUNIT_MAIN("npy", tests)
