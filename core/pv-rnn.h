/* Recurrent ops (ONNX RNN, GRU, LSTM) for the reference engine; see
 * core/ops_rnn.c. Hooked into pv_infer_node, pv_ref_node, pv_ref_supports. */
#ifndef PV_RNN_H
#define PV_RNN_H

#include "pivot.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether pv_ref_rnn implements this node (ops RNN, GRU, LSTM). */
bool pv_rnn_supports(const pv_node *n);
/* Shape inference: fills dtype/dims of the node's outputs in vals from its
 * inputs. 0 or a negative PV_E* code with a message naming the problem. */
int pv_infer_rnn(const pv_graph *g, const pv_node *n, pv_tensor *vals);
/* Reference RNN/GRU/LSTM on concrete tensors: inputs have data, outputs have dims
 * and allocated data (as for pv_ref_node). */
int pv_ref_rnn(const pv_graph *g, const pv_node *n, pv_tensor *vals);

#ifdef __cplusplus
}
#endif
#endif
