/* More ONNX ops for the reference engine (core/ops_ext.c): activations,
 * variadic and logical elementwise ops, reductions, index ops, layout
 * ops, normalisations and ConvTranspose. Hooked into pv_infer_node
 * (shape.c), pv_ref_node and pv_ref_supports (ops_ref.c). */
#ifndef PV_OPS_EXT_H
#define PV_OPS_EXT_H

#include "pivot.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether n is one of the ops of ops_ext.c (by op name and domain). */
bool pv_ext_has(const pv_node *n);
/* Whether n's output shapes depend on its input data (NonZero,
 * NonMaxSuppression, Compress): pv_infer_ext gives the largest possible
 * shape, pv_ref_ext shrinks the output's dims to the actual one. */
bool pv_ext_data_shaped(const pv_node *n);
/* Whether n belongs to an If branch (core/onnx.c): its last input is a
 * BOOL guard, and the engine runs it only when the guard holds, on a
 * copy of the node without that input. */
bool pv_node_guarded(const pv_node *n);
/* The select a flattened If leaves: shape inference and copy of the
 * taken branch's outputs (the other branch's values may be empty). */
int pv_if_infer(const pv_node *n, pv_tensor *vals);
int pv_if_ref(const pv_node *n, pv_tensor *vals);
/* Whether pv_ref_ext runs n with the input types the graph declares. */
bool pv_ext_supports(const pv_graph *g, const pv_node *n);
/* Shape inference: dtype and dims of n's outputs in vals from its inputs
 * (which pv_infer_node has already checked are known). 0 or a negative
 * PV_E* code with a message naming node and problem. */
int pv_infer_ext(const pv_graph *g, const pv_node *n, pv_tensor *vals);
/* Reference computation: inputs have data, outputs have dims and storage
 * (as for pv_ref_node). */
int pv_ref_ext(const pv_graph *g, const pv_node *n, pv_tensor *vals);

#ifdef __cplusplus
}
#endif
#endif
