/* pivoted matrices -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
#include <stdlib.h>
void pv_pivot_free(pv_pivot *p) { if (!p) return; free(p->perm_r); free(p->perm_c); free(p->row_off); free(p->col_off); free(p->blocks); if (p->data_owned) pv_free(p->data); free(p); }
int64_t pv_pivot_nnz(const pv_pivot *p) { (void)p; return 0; }
double pv_pivot_density(const pv_pivot *p) { (void)p; return 1; }
