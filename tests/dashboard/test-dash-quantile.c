/* pvd_dash_quantile: the dashboard's percentile estimate from histogram
 * buckets. Expected values are worked out by hand from the definition
 * (linear inside the bucket that holds rank q·n, as Prometheus'
 * histogram_quantile), not taken from the program. */
#include <math.h>
#include <stdio.h>

#include "dashboard.h"

static int fails;

static void near(double got, double want, const char *what) {
  if (fabs(got - want) > 1e-9 * (1 + fabs(want))) {
    fprintf(stderr, "FAIL %s: got %.12g, want %.12g\n", what, got, want);
    fails++;
  }
}

int main(void) {
  const double le[3] = {1, 2, 4};

  uint64_t none[4] = {0, 0, 0, 0};
  near(pvd_dash_quantile(none, le, 3, 0.5), -1, "no sample");

  /* 10 samples in (1, 2]: rank 5 is half-way through the bucket. */
  uint64_t one[4] = {0, 10, 0, 0};
  near(pvd_dash_quantile(one, le, 3, 0.5), 1.5, "p50 inside one bucket");
  near(pvd_dash_quantile(one, le, 3, 0.9), 1.9, "p90 inside one bucket");
  near(pvd_dash_quantile(one, le, 3, 1.0), 2.0, "p100 is the bound");

  /* 4 in [0,1], 4 in (1,2], 2 in (2,4]: rank 5 of 10 is 1/4 into the
   * second bucket; rank 9 is 1/2 into the third. */
  uint64_t three[4] = {4, 4, 2, 0};
  near(pvd_dash_quantile(three, le, 3, 0.5), 1.25, "p50 across buckets");
  near(pvd_dash_quantile(three, le, 3, 0.9), 3.0, "p90 across buckets");
  near(pvd_dash_quantile(three, le, 3, 0.2), 0.5, "p20 in the first bucket from 0");
  near(pvd_dash_quantile(three, le, 3, 0.4), 1.0, "a rank on a bucket edge");

  /* Above the last bound all we know is the bound. */
  uint64_t inf[4] = {1, 0, 0, 9};
  near(pvd_dash_quantile(inf, le, 3, 0.99), 4.0, "+Inf bucket");
  near(pvd_dash_quantile(inf, le, 3, 0.05), 0.5, "below the +Inf bucket");

  /* Out-of-range q is clamped, not a crash or NaN. */
  near(pvd_dash_quantile(one, le, 3, 7), 2.0, "q > 1");
  near(pvd_dash_quantile(one, le, 3, -1), 1.0, "q < 0");

  if (!fails) printf("dash-quantile: ok\n");
  return fails ? 1 : 0;
}
