/* Exporters of the daemon's statistics. */
#ifndef PVD_METRICS_H
#define PVD_METRICS_H
#include "pivotd.h"
/* Append Prometheus text format 0.0.4 for every live version. */
void pvd_metrics_text(pvd_buf *b);
/* Append Triton statistics JSON; model NULL = all, version -1 = all.
 * Returns the number of versions written. */
int pvd_stats_json(pvd_buf *b, const char *model, int64_t version);
#endif
