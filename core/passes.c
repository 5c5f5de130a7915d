/* graph passes -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
int pv_passes_run(pv_graph *g) { (void)g; return 0; }
int pv_pass_fold_constants(pv_graph *g) { (void)g; return 0; }
int pv_pass_fold_batchnorm(pv_graph *g) { (void)g; return 0; }
int pv_pass_fuse_activations(pv_graph *g) { (void)g; return 0; }
int pv_pass_eliminate_identity(pv_graph *g) { (void)g; return 0; }
