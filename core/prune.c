/* prune by pivoting -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
