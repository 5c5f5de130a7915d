/* The live dashboard: a page embedded in the binary (GET /) and the time
 * series it draws (GET /v2/dashboard/series), sampled once a second from
 * the same counters and histograms that /metrics exports. */
#ifndef PVD_DASHBOARD_H
#define PVD_DASHBOARD_H

#include <stdint.h>

#include "http.h"

/* Start the sampler thread (0 / -PV_EINTERNAL). The series cover the last
 * PVD_DASH_POINTS seconds. */
#define PVD_DASH_POINTS 300
int pvd_dash_start(void);
/* Stop and join the sampler; safe to call when it never started. */
void pvd_dash_stop(void);

/* Called as a version is freed: its counters are final now, and the
 * requests it served after its last sample still count. */
void pvd_dash_retired(const pvd_version *v);

/* Route handlers. */
void pvd_dash_page(pvd_conn *c);
void pvd_dash_series(pvd_conn *c);

/* Estimate the q-quantile (0..1) of n samples counted per bucket, where
 * count[i] holds those <= le[i] (and > le[i-1]) and count[nle] those above
 * le[nle-1]; linear inside a bucket, as Prometheus' histogram_quantile.
 * Returns -1 when there is no sample. */
double pvd_dash_quantile(const uint64_t *count, const double *le, int nle, double q);

/* The page, generated at build time from dashboard.html. */
extern const unsigned char pvd_dash_html[];
extern const unsigned int pvd_dash_html_len;

#endif
