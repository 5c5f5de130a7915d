/* pivot run: run a model on .npy inputs, write .npy outputs, time it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

#define MAX_IO 16

static void usage(FILE *f) {
  fprintf(f,
          "usage: pivot run MODEL (--input NAME=FILE.npy ... | --input FILE.npy)\n"
          "                 [--output-dir DIR] [--backend LIST] [--threads N]\n"
          "                 [--repeat N]\n"
          "  Runs MODEL (.onnx or .pvm) and writes each output to DIR/NAME.npy\n"
          "  (characters other than [A-Za-z0-9._-] in NAME become '_').\n"
          "  --backend  preference list, e.g. opencl,cpu (default cpu)\n"
          "  --repeat   run N times and print the median time (default 1)\n");
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

void cli_sanitize(const char *in, char *out, size_t len) {
  size_t i = 0;
  for (; in[i] && i + 1 < len; i++) {
    char c = in[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    out[i] = ok ? c : '_';
  }
  out[i] = 0;
  if (!strcmp(out, ".") || !strcmp(out, "..") || !out[0])
    snprintf(out, len, "output");
}

int cmd_run(int argc, char **argv) {
  const char *model_path = NULL, *outdir = NULL, *backend = "cpu";
  const char *in_spec[MAX_IO];
  int n_spec = 0, threads = 0, repeat = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_val = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if ((!strcmp(a, "--input") || !strcmp(a, "-i")) && has_val) {
      if (n_spec == MAX_IO) return cli_die("run: at most %d inputs", MAX_IO);
      in_spec[n_spec++] = argv[++i];
    } else if ((!strcmp(a, "--output-dir") || !strcmp(a, "-o")) && has_val) {
      outdir = argv[++i];
    } else if (!strcmp(a, "--backend") && has_val) {
      backend = argv[++i];
    } else if (!strcmp(a, "--threads") && has_val) {
      if (cli_int(argv[++i], "--threads", 0, 1024, &threads)) return 2;
    } else if (!strcmp(a, "--repeat") && has_val) {
      if (cli_int(argv[++i], "--repeat", 1, 1000000, &repeat)) return 2;
    } else if (a[0] == '-') {
      usage(stderr);
      return cli_die("run: unknown option or missing value: %s", a), 2;
    } else if (!model_path) {
      model_path = a;
    } else {
      usage(stderr);
      return cli_die("run: unexpected argument '%s'", a), 2;
    }
  }
  if (!model_path) {
    usage(stderr);
    return 2;
  }

  char bbuf[256];
  const char *names[9];
  cli_backends(backend, bbuf, sizeof bbuf, names, 9);
  pv_load_opts lo = {.backends = names, .threads = threads};
  pv_model *m = pv_model_load(model_path, &lo);
  if (!m) return cli_die("%s", pv_errmsg());

  int rc = 1, n_in = pv_model_n_inputs(m), n_out = pv_model_n_outputs(m);
  pv_tensor in[MAX_IO], out[64];
  memset(in, 0, sizeof in);
  pv_exec *e = NULL;
  double *times = NULL;
  if (n_in > MAX_IO || n_out > 64) {
    cli_die("run: model has too many inputs or outputs");
    goto out;
  }
  bool named = n_spec > 0 && strchr(in_spec[0], '=');
  if (!named && !(n_spec == 1 && n_in == 1)) {
    if (n_spec < n_in) {
      const pv_value *missing = pv_model_input(m, n_spec);
      cli_die("run: missing input '%s' (the model has %d input%s; give --input NAME=FILE.npy for each)",
              missing->name, n_in, n_in == 1 ? "" : "s");
      goto out;
    }
    cli_die("run: give inputs as --input NAME=FILE.npy");
    goto out;
  }
  bool given[MAX_IO] = {0};
  for (int s = 0; s < n_spec; s++) {
    const char *spec = in_spec[s], *eq = strchr(spec, '=');
    int k = 0;
    const char *file = spec;
    if (named) {
      if (!eq) {
        cli_die("run: --input '%s': expected NAME=FILE.npy", spec);
        goto out;
      }
      char name[256];
      snprintf(name, sizeof name, "%.*s", (int)(eq - spec), spec);
      for (k = 0; k < n_in; k++)
        if (!strcmp(pv_model_input(m, k)->name, name)) break;
      if (k == n_in) {
        cli_die("run: the model has no input named '%s'", name);
        goto out;
      }
      file = eq + 1;
    }
    if (given[k]) {
      cli_die("run: input '%s' given twice", pv_model_input(m, k)->name);
      goto out;
    }
    if (pv_npy_read(file, &in[k])) {
      cli_die("run: input '%s': %s", pv_model_input(m, k)->name, pv_errmsg());
      goto out;
    }
    given[k] = true;
  }
  for (int k = 0; k < n_in; k++)
    if (!given[k]) {
      cli_die("run: missing input '%s'", pv_model_input(m, k)->name);
      goto out;
    }

  e = pv_exec_new(m);
  times = calloc(repeat, sizeof *times);
  if (!e || !times) {
    cli_die("run: %s", pv_errmsg());
    goto out;
  }
  /* CPU time of the whole process too: on a shared machine it leaves out
   * the time other processes hold the cores. */
  double cpu_min = 0;
  for (int r = 0; r < repeat; r++) {
    double t0 = now_ms(), c0 = cpu_ms();
    if (pv_exec_run(e, in, n_in, out, n_out)) {
      cli_die("run: %s", pv_errmsg());
      goto out;
    }
    times[r] = now_ms() - t0;
    double c = cpu_ms() - c0;
    if (!r || c < cpu_min) cpu_min = c;
  }
  /* With --repeat the first run also plans; the median hides it. */
  qsort(times, repeat, sizeof *times, cmp_double);
  double med = repeat % 2 ? times[repeat / 2]
                          : (times[repeat / 2 - 1] + times[repeat / 2]) / 2;

  if (outdir) {
    if (mkdir(outdir, 0777) && errno != EEXIST) {
      cli_die("run: cannot create %s: %s", outdir, strerror(errno));
      goto out;
    }
  }
  for (int k = 0; k < n_out; k++) {
    const pv_value *ov = pv_model_output(m, k);
    char dims[128];
    printf("output %s %s %s\n", ov->name, pv_dtype_name(out[k].dtype),
           pv_dims_str(out[k].dims, out[k].ndim, dims, sizeof dims));
    if (outdir) {
      char safe[256], path[4096];
      cli_sanitize(ov->name, safe, sizeof safe);
      snprintf(path, sizeof path, "%s/%s.npy", outdir, safe);
      if (pv_npy_write(path, &out[k])) {
        cli_die("run: %s", pv_errmsg());
        goto out;
      }
    }
  }
  /* The minimum too: on a shared machine it is the least disturbed run. */
  printf("time %.3f ms (median of %d, %s), min %.3f ms, min cpu %.3f ms\n",
         med, repeat, backend, times[0], cpu_min);
  rc = 0;
out:
  free(times);
  pv_exec_free(e);
  for (int k = 0; k < MAX_IO; k++) pv_free(in[k].data);
  pv_model_release(m);
  return rc;
}
