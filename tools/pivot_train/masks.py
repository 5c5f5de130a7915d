"""Masks for pivoted (permuted block-sparse) layers, in numpy.

A layer's weight is viewed as an M x (C*kk) matrix: M output rows, C input
channels of kk columns each (kk = kh*kw for a convolution, 1 for a linear
layer), exactly as core/pv-pivot.h views it.  A pivot mask is given by a
row-group label per row and a column-group label per channel; row group g
is connected to column groups (g + j) mod n for j < c, so density is c/n.
With c == 1 the mask is block diagonal after permutation, which is what
`pivot convert` detects exactly from the zeros of an exported model.

The pruning algorithm (pivot_prune) is the balanced co-clustering
documented in docs/TRAINING.md; its random numbers come from splitmix64
so that a C implementation can reproduce it bit for bit.
"""
import numpy as np

MASK64 = (1 << 64) - 1


class SplitMix64:
    """The splitmix64 generator (Steele, Lea, Flood 2014): tiny, portable,
    identical in C and Python."""

    def __init__(self, seed):
        self.s = seed & MASK64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def permutation(self, n):
        """Fisher-Yates from the top, j = next() mod (i+1)."""
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.next() % (i + 1)
            p[i], p[j] = p[j], p[i]
        return np.array(p, dtype=np.int64)


def group_sizes(count, n):
    """Balanced sizes: the first count % n groups get one more."""
    if n < 1 or n > count:
        raise ValueError("cannot split %d rows/channels into %d groups"
                         % (count, n))
    base, extra = divmod(count, n)
    return np.array([base + (g < extra) for g in range(n)], dtype=np.int64)


def random_groups(count, n, rng):
    """Balanced random labels: position k of a random permutation goes to
    the group whose range holds k."""
    perm = rng.permutation(count)
    labels = np.empty(count, dtype=np.int64)
    labels[perm] = np.repeat(np.arange(n), group_sizes(count, n))
    return labels


def connectivity(n, c):
    """conn[g, h] = 1 when row group g reaches column group h."""
    if c < 1 or c > n:
        raise ValueError("c=%d must be in 1..n=%d" % (c, n))
    conn = np.zeros((n, n), dtype=np.float64)
    for g in range(n):
        for j in range(c):
            conn[g, (g + j) % n] = 1.0
    return conn


def channel_energy(w2d, C, kk):
    """E[r, ch] = sum of squares of the kk columns of channel ch."""
    M = w2d.shape[0]
    if w2d.shape[1] != C * kk:
        raise ValueError("weight has %d columns, expected C*kk = %d"
                         % (w2d.shape[1], C * kk))
    w = np.asarray(w2d, dtype=np.float64).reshape(M, C, kk)
    return (w * w).sum(axis=2)


def balanced_assign(score, sizes):
    """Greedy balanced assignment: visit (item, group) pairs by decreasing
    score (ties: lower item, then lower group) and take a pair while the
    item is free and the group has room.  Deterministic."""
    N, n = score.shape
    flat = -score.reshape(-1)
    order = np.lexsort((np.arange(N * n), flat))  # stable on index
    labels = np.full(N, -1, dtype=np.int64)
    room = sizes.copy()
    left = N
    for idx in order:
        i, g = divmod(int(idx), n)
        if labels[i] < 0 and room[g] > 0:
            labels[i] = g
            room[g] -= 1
            left -= 1
            if left == 0:
                break
    return labels


def _onehot(labels, n):
    o = np.zeros((labels.size, n))
    o[np.arange(labels.size), labels] = 1.0
    return o


def pivot_prune_groups(w2d, C, kk, n, c=1, seed=0, restarts=4, max_iter=30):
    """Balanced co-clustering maximising the squared weight mass kept.

    Returns (row_labels[M], chan_labels[C], retained) with retained = kept
    |W|^2 / total |W|^2.  For each restart r (seed + r), rows start in
    balanced random groups; then channels and rows are reassigned in turn
    (balanced_assign on the mass each would keep) until the labels stop
    changing or max_iter rounds; the best state of all restarts wins
    (ties: the earlier one)."""
    E = channel_energy(w2d, C, kk)
    M = E.shape[0]
    total = float(E.sum())
    conn = connectivity(n, c)
    rsz, csz = group_sizes(M, n), group_sizes(C, n)
    best = None
    for r in range(restarts):
        rng = SplitMix64(seed + r)
        rg = random_groups(M, n, rng)
        cg = None
        state_best = None
        for _ in range(max_iter):
            # mass each channel would keep in column group h, given rows
            rowsum = _onehot(rg, n).T @ E          # [n, C]
            cscore = (conn.T @ rowsum).T           # [C, n]
            new_cg = balanced_assign(cscore, csz)
            colsum = _onehot(new_cg, n).T @ E.T    # [n, M]
            rscore = (conn @ colsum).T             # [M, n]
            new_rg = balanced_assign(rscore, rsz)
            kept = float(rscore[np.arange(M), new_rg].sum())
            if state_best is None or kept > state_best[0]:
                state_best = (kept, new_rg.copy(), new_cg.copy())
            if cg is not None and np.array_equal(new_cg, cg) \
                    and np.array_equal(new_rg, rg):
                break
            rg, cg = new_rg, new_cg
        if best is None or state_best[0] > best[0]:
            best = state_best
    kept, rg, cg = best
    return rg, cg, (kept / total if total > 0 else 1.0)


def random_pivot_groups(M, C, n, seed=0):
    """The mask a fixed random permutation gives (method (a))."""
    rng = SplitMix64(seed)
    return random_groups(M, n, rng), random_groups(C, n, rng)


def mask_from_groups(rg, cg, kk, n, c=1):
    """0/1 float32 mask M x (C*kk) from group labels."""
    conn = connectivity(n, c)
    m = conn[rg][:, cg]                            # [M, C]
    return np.repeat(m, kk, axis=1).astype(np.float32)


def magnitude_mask(w, density):
    """Unstructured: keep the round(density * size) largest |w|."""
    a = np.abs(np.asarray(w, dtype=np.float64)).reshape(-1)
    k = int(round(density * a.size))
    m = np.zeros(a.size, dtype=np.float32)
    if k > 0:
        m[np.argsort(-a, kind="stable")[:k]] = 1.0
    return m.reshape(np.shape(w))


def retained(w, mask):
    w = np.asarray(w, dtype=np.float64)
    tot = float((w * w).sum())
    return float(((w * mask) ** 2).sum()) / tot if tot > 0 else 1.0


def detect_blocks(w2d, C, kk):
    """Connected components of the bipartite row/channel nonzero graph
    (what `pivot convert` detects), by union-find.  Returns a list of
    (rows, channels) pairs, sorted, one per component."""
    M = w2d.shape[0]
    nz = (np.abs(np.asarray(w2d).reshape(M, C, kk)) > 0).any(axis=2)
    parent = list(range(M + C))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    rows, chans = np.nonzero(nz)
    for r, ch in zip(rows.tolist(), chans.tolist()):
        a, b = find(r), find(M + ch)
        if a != b:
            parent[a] = b
    comps = {}
    for x in range(M + C):
        comps.setdefault(find(x), ([], []))
        (comps[find(x)][0] if x < M else comps[find(x)][1]).append(
            x if x < M else x - M)
    return sorted((tuple(r), tuple(ch)) for r, ch in comps.values())
