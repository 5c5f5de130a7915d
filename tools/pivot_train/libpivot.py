"""ctypes binding to libpivot's pv_pivot_prune (core/pv-pivot.h), so the
training tool prunes exactly as `pivot convert --prune` does.  Returns None
from find() when the library is not built or lacks the symbol; callers then
use the numpy implementation in masks.py."""
import ctypes
import os

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_CANDIDATES = [
    os.environ.get("PIVOT_LIBPIVOT", ""),
    os.path.join(_HERE, "..", "..", "core", ".libs", "libpivot.so"),
    "libpivot.so",
]


class _Block(ctypes.Structure):
    _fields_ = [("rg", ctypes.c_int32), ("cg", ctypes.c_int32),
                ("offset", ctypes.c_uint64)]


class _Pivot(ctypes.Structure):
    # Mirrors struct pv_pivot in core/pv-pivot.h field for field.
    _fields_ = [("M", ctypes.c_int32), ("C", ctypes.c_int32),
                ("kk", ctypes.c_int32),
                ("perm_r", ctypes.POINTER(ctypes.c_int32)),
                ("perm_c", ctypes.POINTER(ctypes.c_int32)),
                ("nr", ctypes.c_int32), ("nc", ctypes.c_int32),
                ("row_off", ctypes.POINTER(ctypes.c_int32)),
                ("col_off", ctypes.POINTER(ctypes.c_int32)),
                ("n_blocks", ctypes.c_int32),
                ("blocks", ctypes.POINTER(_Block)),
                ("data", ctypes.POINTER(ctypes.c_float)),
                ("data_len", ctypes.c_uint64),
                ("data_owned", ctypes.c_bool)]


_lib = None
_why = None


def find():
    """The loaded library with pv_pivot_prune, or None (see why())."""
    global _lib, _why
    if _lib is not None or _why is not None:
        return _lib
    if os.environ.get("PIVOT_NO_LIBPIVOT"):
        _why = "PIVOT_NO_LIBPIVOT is set (e.g. an AddressSanitizer build)"
        return None
    errs = []
    for path in _CANDIDATES:
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            fn = lib.pv_pivot_prune
        except (OSError, AttributeError) as e:
            errs.append("%s: %s" % (path, e))
            continue
        fn.restype = ctypes.POINTER(_Pivot)
        fn.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_int32,
                       ctypes.c_int32, ctypes.c_int32, ctypes.c_int,
                       ctypes.c_int, ctypes.c_uint64,
                       ctypes.POINTER(ctypes.c_double)]
        lib.pv_pivot_free.argtypes = [ctypes.POINTER(_Pivot)]
        lib.pv_pivot_free.restype = None
        lib.pv_errmsg.restype = ctypes.c_char_p
        _lib = lib
        return lib
    _why = "; ".join(errs) or "no candidate path"
    return None


def why():
    return _why


def prune(w2d, C, kk, n, c=1, seed=0):
    """Call pv_pivot_prune.  Returns (mask M x C*kk float32, retained), or
    raises RuntimeError with libpivot's message."""
    lib = find()
    if lib is None:
        raise RuntimeError("libpivot not available: %s" % _why)
    w = np.ascontiguousarray(w2d, dtype=np.float32)
    M = w.shape[0]
    ret = ctypes.c_double(0.0)
    p = lib.pv_pivot_prune(w.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                           M, C, kk, n, c, seed, ctypes.byref(ret))
    if not p:
        msg = lib.pv_errmsg()
        raise RuntimeError("pv_pivot_prune: %s"
                           % (msg.decode() if msg else "returned NULL"))
    try:
        pv = p.contents
        perm_r = np.ctypeslib.as_array(pv.perm_r, (pv.M,)).copy()
        perm_c = np.ctypeslib.as_array(pv.perm_c, (pv.C,)).copy()
        row_off = np.ctypeslib.as_array(pv.row_off, (pv.nr + 1,)).copy()
        col_off = np.ctypeslib.as_array(pv.col_off, (pv.nc + 1,)).copy()
        mask = np.zeros((M, C), dtype=np.float32)
        for b in range(pv.n_blocks):
            blk = pv.blocks[b]
            rows = perm_r[row_off[blk.rg]:row_off[blk.rg + 1]]
            chans = perm_c[col_off[blk.cg]:col_off[blk.cg + 1]]
            mask[np.ix_(rows, chans)] = 1.0
    finally:
        lib.pv_pivot_free(p)
    return np.repeat(mask, kk, axis=1), float(ret.value)
