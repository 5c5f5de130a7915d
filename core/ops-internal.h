/* Private helpers shared by shape inference (shape.c) and the reference
 * ops (ops_ref.c), so both read attributes and compute geometry the same
 * way. */
#ifndef PV_OPS_INTERNAL_H
#define PV_OPS_INTERNAL_H
#include "pivot.h"

#define PV_MAX_SPATIAL 3

/* Set an error "node 'NAME' (OP): message" and return code. */
int pv_node_error(const pv_node *n, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Input k of n in vals, or NULL when absent (omitted optional input). */
static inline const pv_tensor *pv_node_in(const pv_node *n,
                                          const pv_tensor *vals, int k) {
  return k < n->n_in && n->in[k] >= 0 ? &vals[n->in[k]] : NULL;
}

/* Integer contents (INT64/INT32) of a small tensor into buf; returns the
 * count or a negative code (message names node n). */
int pv_read_ints(const pv_node *n, const pv_tensor *t, const char *what,
                 int64_t *buf, int max);

/* Window geometry of Conv/MaxPool/AveragePool for nsp spatial axes of x
 * (NC...): kernel given; fills strides, dilations, pads begin/end and the
 * output sizes from the node's attributes. */
typedef struct pv_window {
  int nsp;
  int64_t k[PV_MAX_SPATIAL], s[PV_MAX_SPATIAL], d[PV_MAX_SPATIAL];
  int64_t pb[PV_MAX_SPATIAL], pe[PV_MAX_SPATIAL], out[PV_MAX_SPATIAL];
} pv_window;
int pv_window_geom(const pv_node *n, const pv_tensor *x, bool ceil_ok,
                   pv_window *w);

/* Slice: per axis of the data, first index, step and count. */
int pv_slice_geom(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                  int64_t *start, int64_t *step, int64_t *count);

/* Resize/Upsample: per-axis scale (output/input) and output sizes. */
int pv_resize_geom(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                   float *scales, int64_t *out);

/* Split: size of each output along the axis (normalised into *axis). */
int pv_split_geom(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                  int *axis, int64_t *sizes);

/* Reduce*: which axes are reduced (mask[r]). */
int pv_reduce_axes(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                   bool *mask);

/* Pad: begin/end pads per axis (may be negative). */
int pv_pad_geom(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                int64_t *pb, int64_t *pe);

/* Numpy broadcast of k shapes into (ndim, dims); 0 or PV_ESHAPE. */
int pv_broadcast(const pv_node *n, const pv_tensor *const *ts, int k,
                 int *ndim, int64_t *dims);
#endif
