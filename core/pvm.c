/* .pvm format -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
