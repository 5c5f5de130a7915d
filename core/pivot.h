/* libpivot public API: tensors, errors, graph IR, models and execution.
 *
 * Conventions (see docs/ARCHITECTURE.md):
 *  - actions return 0 or a negative PV_E* code and set a thread-local
 *    message readable with pv_errmsg(); constructors return NULL on failure
 *    and set the message too; predicates return bool.
 *  - who owns memory is said in the comment of every call that takes or
 *    returns it.
 */
#ifndef PIVOT_H
#define PIVOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

/* X-macro: name, value, message. */
#define PV_ERRNO_MAP(X)                                            \
  X(EINVAL, -1, "invalid argument")                                \
  X(ENOMEM, -2, "out of memory")                                   \
  X(EIO, -3, "input/output error")                                 \
  X(EFORMAT, -4, "malformed file")                                 \
  X(EUNSUPPORTED, -5, "unsupported")                               \
  X(ESHAPE, -6, "shape mismatch")                                  \
  X(ETYPE, -7, "data type mismatch")                               \
  X(ENOTFOUND, -8, "not found")                                    \
  X(EBACKEND, -9, "backend failure")                               \
  X(ERANGE, -10, "value out of range")                             \
  X(EBUSY, -11, "busy")                                            \
  X(EINTERNAL, -12, "internal error")

typedef enum pv_status {
  PV_OK = 0,
#define PV_ERR_ENUM(name, val, msg) PV_##name = (val),
  PV_ERRNO_MAP(PV_ERR_ENUM)
#undef PV_ERR_ENUM
} pv_status;

/* Name ("EINVAL") and generic message of a code; static strings. */
const char *pv_strerror(int code);
const char *pv_errname(int code);

/* Set the calling thread's error message (printf-style) and return code,
 * so callers write `return pv_error(PV_EINVAL, "bad %s", what);`. */
int pv_error(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The calling thread's last message; valid until the next pv_error() on
 * this thread. Never NULL. */
const char *pv_errmsg(void);
/* Prefix the current message: "ctx: old message". Returns code. */
int pv_error_prefix(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Logging: libpivot writes through one function, stderr by default. */
enum { PV_LOG_ERROR = 0, PV_LOG_WARN = 1, PV_LOG_INFO = 2, PV_LOG_DEBUG = 3 };
typedef void (*pv_log_fn)(int level, const char *msg);
void pv_set_log_fn(pv_log_fn fn); /* NULL restores the default */
void pv_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- tensors */

/* Numbering follows ONNX TensorProto.DataType so import is a cast. */
typedef enum pv_dtype {
  PV_UNDEFINED = 0,
  PV_F32 = 1,
  PV_U8 = 2,
  PV_I8 = 3,
  PV_U16 = 4,
  PV_I16 = 5,
  PV_I32 = 6,
  PV_I64 = 7,
  PV_STRING = 8,
  PV_BOOL = 9,
  PV_F16 = 10,
  PV_F64 = 11,
  PV_U32 = 12,
  PV_U64 = 13,
} pv_dtype;

#define PV_MAX_DIMS 8

/* Size in bytes of one element; 0 for PV_UNDEFINED/PV_STRING. */
size_t pv_dtype_size(pv_dtype t);
/* "FP32", "INT64", ... as in the Open Inference Protocol; "?" if unknown. */
const char *pv_dtype_name(pv_dtype t);
/* IEEE half <-> float: exact widening; narrowing rounds to nearest even,
 * overflow to infinity, NaN stays NaN. */
float pv_f16_to_f32(uint16_t h);
uint16_t pv_f32_to_f16(float f);
/* Inverse of pv_dtype_name; PV_UNDEFINED if unknown. */
pv_dtype pv_dtype_from_name(const char *s);

/* A view of an n-dimensional row-major array. `data` is not owned by the
 * struct: whoever filled it says who frees it. */
typedef struct pv_tensor {
  pv_dtype dtype;
  int ndim;
  int64_t dims[PV_MAX_DIMS];
  void *data;
} pv_tensor;

/* Product of dims (1 for a scalar). */
int64_t pv_tensor_numel(const pv_tensor *t);
/* numel * element size, or SIZE_MAX if it overflows. */
size_t pv_tensor_nbytes(const pv_tensor *t);
/* Allocate data for t (dtype/ndim/dims set); 64-byte aligned, zeroed.
 * The caller frees t->data with pv_free(). */
int pv_tensor_alloc(pv_tensor *t);
void *pv_aligned_alloc(size_t bytes); /* 64-byte aligned, zeroed */
void pv_free(void *p);
/* "[1,3,224,224]" into buf; returns buf. */
const char *pv_dims_str(const int64_t *dims, int ndim, char *buf, size_t len);

/* .npy (format 1.0/2.0/3.0, little-endian, C order; f4 f8 i1 i2 i4 i8 u1
 * u2 u4 u8 b1). pv_npy_read allocates t->data (free with pv_free). */
int pv_npy_read(const char *path, pv_tensor *t);
int pv_npy_read_mem(const void *buf, size_t len, pv_tensor *t);
int pv_npy_write(const char *path, const pv_tensor *t);

/* ---------------------------------------------------------------- graph IR */

#define PV_DIM_BATCH (-1) /* a dimension that follows the batch size */

typedef enum pv_attr_type {
  PV_ATTR_FLOAT = 1,
  PV_ATTR_INT = 2,
  PV_ATTR_STRING = 3,
  PV_ATTR_TENSOR = 4,
  PV_ATTR_FLOATS = 6,
  PV_ATTR_INTS = 7,
  PV_ATTR_STRINGS = 8,
} pv_attr_type;

/* Node attribute, as in ONNX. Owned by the graph. */
typedef struct pv_attr {
  char *name;
  pv_attr_type type;
  int64_t i;
  float f;
  char *s;          /* STRING (NUL-terminated) */
  int64_t *ints;    /* INTS, n entries */
  float *floats;    /* FLOATS, n entries */
  char **strings;   /* STRINGS, n entries */
  int n;
  pv_tensor t;      /* TENSOR; t.data owned by the graph */
} pv_attr;

/* Activation fused into a producing node by the fuse pass. */
typedef enum pv_act {
  PV_ACT_NONE = 0,
  PV_ACT_RELU,
  PV_ACT_LEAKY, /* alpha */
  PV_ACT_CLIP,  /* [alpha, beta] = [min, max] */
  PV_ACT_SIGMOID,
  PV_ACT_TANH,
} pv_act;

struct pv_pivot; /* pv-pivot.h */

/* A tensor in the graph: model input, initializer, or node output.
 * Shape: ndim < 0 when unknown; dims may hold PV_DIM_BATCH. */
typedef struct pv_value {
  char *name;
  pv_dtype dtype;
  int ndim;
  int64_t dims[PV_MAX_DIMS];
  /* Constant data (initializer, Constant, folded); NULL for activations.
   * Owned by the graph unless it points into the graph's mapped file. */
  void *data;
  size_t nbytes;
  /* Pivoted form of a constant weight, or NULL; owned by the graph. When
   * set, `data` may be NULL (the .pvm stores only the blocks). */
  struct pv_pivot *pivot;
  /* Channel permutation carried by this activation after permutation
   * folding (pv_graph_fold_perms, docs/PIVOT.md): element c of the stored
   * channel axis holds logical channel chan_perm[c]. The channel axis is
   * axis 1 for NCHW tensors of Conv chains and the last axis for tensors
   * of Gemm/MatMul chains. NULL = natural order. Informative: a folded
   * graph is an ordinary graph in stored order (its constants and pivots
   * are permuted to match), so a backend computes it correctly without
   * reading chan_perm. Owned by the graph. */
  int32_t *chan_perm;
  int32_t chan_perm_n; /* entries in chan_perm (the channel count) */
  int producer; /* node index, or -1 */
} pv_value;

typedef struct pv_node {
  char *name;
  char *op;      /* ONNX op type ("Conv", "Gemm", ...) */
  char *domain;  /* "" for ai.onnx */
  int n_in, n_out;
  int *in;       /* value indices; -1 for an omitted optional input */
  int *out;
  int n_attrs;
  pv_attr *attrs;
  pv_act act;    /* fused activation applied to out[0] */
  float act_alpha, act_beta;
  int backend;   /* index in the model's backend list, set by the planner */
} pv_node;

typedef struct pv_meta {
  char *key;
  char *value;
} pv_meta;

/* Nodes are kept in topological order. */
typedef struct pv_graph {
  char *name;
  int opset;
  int n_values, cap_values;
  pv_value *values;
  int n_nodes, cap_nodes;
  pv_node *nodes;
  int n_inputs, n_outputs;
  int *inputs;  /* value indices of runtime inputs (not initializers) */
  int *outputs;
  int n_meta, cap_meta;
  pv_meta *meta;
  /* Keeps external storage alive (a mmapped file, ...). */
  void *storage;
  void (*storage_free)(void *storage);
} pv_graph;

pv_graph *pv_graph_new(void);
void pv_graph_free(pv_graph *g);
/* Add a value; name is copied. Returns its index or a negative code. */
int pv_graph_add_value(pv_graph *g, const char *name);
/* Index of the value named `name`, or -1. */
int pv_graph_find_value(const pv_graph *g, const char *name);
/* Add a node; strings copied, `in`/`out` copied. Returns node index. */
int pv_graph_add_node(pv_graph *g, const char *name, const char *op,
                      const int *in, int n_in, const int *out, int n_out);
/* Add an attribute to node n (copies everything it points to). */
int pv_node_add_attr(pv_graph *g, int node, const pv_attr *a);
/* Set metadata key (replaces an existing one); strings copied. */
int pv_graph_set_meta(pv_graph *g, const char *key, const char *value);
const char *pv_graph_get_meta(const pv_graph *g, const char *key);
/* Remove nodes marked by op == NULL, drop values nobody uses, recompute
 * producers, check topological order (sorting if needed). */
int pv_graph_compact(pv_graph *g);
/* Recompute value.producer from nodes. */
void pv_graph_link(pv_graph *g);
/* Number of nodes reading value v (graph outputs count once each). */
int pv_graph_consumers(const pv_graph *g, int v, int *nodes, int max);

const pv_attr *pv_node_attr(const pv_node *n, const char *name);
int64_t pv_attr_int(const pv_node *n, const char *name, int64_t dflt);
float pv_attr_float(const pv_node *n, const char *name, float dflt);
const char *pv_attr_str(const pv_node *n, const char *name, const char *dflt);
/* INTS attribute: returns count (or -1 if absent), *out points into attr. */
int pv_attr_ints(const pv_node *n, const char *name, const int64_t **out);

/* Tensor view of a constant value (data may be NULL if pivot-only). */
pv_tensor pv_value_tensor(const pv_value *v);

/* ---------------------------------------------------------------- import */

/* ONNX (.onnx protobuf), opsets 7..22 accepted, 11..17 and 22 tested. External
 * data files are resolved relative to the model's directory (base_dir for
 * _mem; NULL refuses external data) and must stay inside it. Symbolic or
 * unknown dims of inputs/outputs become PV_DIM_BATCH on every axis, not
 * only axis 0. Constant nodes become constant values. Returns a graph the
 * caller frees with pv_graph_free(), or NULL with pv_errmsg() set;
 * pv_onnx_load's messages start with the path. */
pv_graph *pv_onnx_load(const char *path);
pv_graph *pv_onnx_load_mem(const void *buf, size_t len, const char *base_dir);

/* ---------------------------------------------------------------- shapes */

/* Per-op shape inference on concrete shapes: fills dims/dtype of the
 * node's outputs in `vals` from its inputs. Shape-computing ops whose
 * inputs are known (Shape, Gather on shapes, Concat, ...) also fill
 * data when `vals[i].data` of inputs is non-NULL and the output is small
 * int64 (the caller provides storage via pv_shape_ctx). See core/shape.c. */
typedef struct pv_shape_ctx pv_shape_ctx;
int pv_infer_node(const pv_graph *g, const pv_node *n, pv_tensor *vals);

/* ---------------------------------------------------------------- ops */

/* Reference implementation of one node on concrete tensors. `vals` is
 * indexed by value id; inputs must have data, outputs have dims and
 * allocated data. Applies n->act. Naive but exact: the yardstick for the
 * backends and the fallback for rare ops. */
int pv_ref_node(const pv_graph *g, const pv_node *n, pv_tensor *vals);
/* Whether pv_ref_node implements this node. */
bool pv_ref_supports(const pv_graph *g, const pv_node *n);
/* Apply an activation in place to n floats. */
void pv_act_apply(float *x, size_t n, pv_act act, float alpha, float beta);

/* ---------------------------------------------------------------- passes */

/* Run the standard passes: drop Identity/Dropout, constant folding, split
 * pivoted GRUs, fold BatchNormalization into Conv/Gemm, fuse activations. */
int pv_passes_run(pv_graph *g);
/* FP16 models compute in FP32: FP16 constants become FP32, casts to FP16
 * keep their rounding, FP16 inputs and outputs keep their declared type
 * through Casts at the boundary (passes.c). */
int pv_pass_fp16_to_fp32(pv_graph *g);
int pv_pass_fold_constants(pv_graph *g);
int pv_pass_fold_batchnorm(pv_graph *g);
int pv_pass_fuse_activations(pv_graph *g);
int pv_pass_eliminate_identity(pv_graph *g);
/* Rewrite a GRU whose W and R are block diagonal after permutation (a
 * pivoted GRU) into one smaller GRU per block (core/gru_split.c). */
int pv_pass_split_gru(pv_graph *g);

/* ---------------------------------------------------------------- models */

typedef struct pv_model pv_model;
typedef struct pv_exec pv_exec;

typedef struct pv_load_opts {
  const char *const *backends; /* preference order, NULL-terminated;
                                  NULL = {"cpu"} */
  const char *backend_dir;     /* NULL = $PIVOT_BACKEND_DIR or built-in */
  int threads;                 /* compute threads; 0 = all cores */
  bool no_passes;              /* skip graph optimisations */
} pv_load_opts;

/* Load .pvm or .onnx (by magic), optimise, assign backends, prepare.
 * Returns NULL with pv_errmsg() set. Free with pv_model_release(). */
pv_model *pv_model_load(const char *path, const pv_load_opts *opts);
/* Same from a graph; takes ownership of g (also on failure). */
pv_model *pv_model_from_graph(pv_graph *g, const pv_load_opts *opts);
/* Reference counting: the model is freed when the count reaches 0. */
pv_model *pv_model_retain(pv_model *m);
void pv_model_release(pv_model *m);

const pv_graph *pv_model_graph(const pv_model *m);
int pv_model_n_inputs(const pv_model *m);
int pv_model_n_outputs(const pv_model *m);
/* Declared shape (dims may be PV_DIM_BATCH), dtype and name. */
const pv_value *pv_model_input(const pv_model *m, int i);
const pv_value *pv_model_output(const pv_model *m, int i);
/* Name of the backend that runs node i ("plan": evaluated when a plan is
 * made; "core": a data-shaped node the engine runs itself). */
const char *pv_model_node_backend(const pv_model *m, int node);
/* Whether some output shape depends on the input data, not only on the
 * input shapes (NonZero, NonMaxSuppression, Compress on activations):
 * such outputs have no batch axis to split a batched run by. */
bool pv_model_data_shaped(const pv_model *m);

/* Execution context: activation memory for one run at a time. Several
 * contexts may run one model concurrently. */
pv_exec *pv_exec_new(pv_model *m);
void pv_exec_free(pv_exec *e);
/* Run. `inputs` in model input order (checked: dtype, rank, dims, the
 * batch dim may vary). `outputs[i]` receive dims/dtype and a data pointer
 * into the context's memory, valid until the next run on e. */
int pv_exec_run(pv_exec *e, const pv_tensor *inputs, int n_in,
                pv_tensor *outputs, int n_out);
/* Peak activation bytes of the last plan (for inspect). */
size_t pv_exec_peak_bytes(const pv_exec *e);

/* Per-layer report for `pivot inspect`; fills at most max rows. */
typedef struct pv_layer_info {
  const char *name;
  const char *op;
  const char *backend;
  int64_t out_dims[PV_MAX_DIMS];
  int out_ndim;
  int64_t params;
  double flops; /* multiply-adds counted as 2 */
  double density; /* 1 for dense */
  int n_blocks;
  size_t weight_bytes;
} pv_layer_info;
/* Shapes for batch `batch`; returns number of rows or negative. The caller
 * owns nothing; strings point into the model. peak: activation bytes. */
int pv_model_inspect(pv_model *m, int batch, pv_layer_info *rows, int max,
                     size_t *peak);

const char *pv_version(void);

#ifdef __cplusplus
}
#endif
#endif
