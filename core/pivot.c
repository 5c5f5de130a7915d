/* pivoted matrices -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
#include <stdlib.h>
void pv_pivot_free(pv_pivot *p) { if (!p) return; free(p->perm_r); free(p->perm_c); free(p->row_off); free(p->col_off); free(p->blocks); if (p->data_owned) pv_free(p->data); free(p); }
