"""Layer-mapping strategies: which teacher layers supervise which student layers.

Every strategy returns ``W``, a ``torch.float32`` tensor of shape ``[M, N]``: row ``s-1`` = student layer s
(1..M), column ``j-1`` = teacher layer j (1..N); ``W[s-1, j-1]`` is the weight of the pair (0 = not paired).
Embeddings (layer 0) are mapped separately by the methods that use them.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Iterable, Sequence

import torch

from kdlab.errors import KdlabError

__all__ = [
    "uniform",
    "first_k",
    "last_k",
    "explicit",
    "rail_random",
    "grouped",
    "alp_weights",
    "from_matrix",
    "pairs",
    "one_hot_layers",
    "parse_layers",
    "edit",
    "method_flags",
    "round_half_up",
    "teacher_layers_for_student_init",
    "build",
    "from_cka",
    "STRATEGIES",
]

STRATEGIES = ("uniform", "skip", "first", "last", "explicit", "random", "rail", "grouped", "ckd", "matrix", "cka")


# ----------------------------------------------------------------------------------------------- checks
def _is_int(x) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return True
    try:  # numpy / torch integer scalars
        import numbers

        return isinstance(x, numbers.Integral)
    except Exception:  # pragma: no cover
        return False


def _check_sizes(M, N) -> None:
    if not _is_int(M) or not _is_int(N):
        raise KdlabError(f"layer counts must be integers, got M={M!r}, N={N!r}")
    if N < 1:
        raise KdlabError(f"the teacher must have at least 1 layer, got N={N}")
    if M < 1:
        raise KdlabError(f"the student must have at least 1 layer, got M={M}")
    if M > N:
        raise KdlabError(
            f"a student cannot have more layers (M={M}) than its teacher (N={N}): choose at most {N} layers"
        )


def round_half_up(x: float) -> int:
    """2.5 -> 3 (Python's ``round`` gives 2): the rounding of the uniform (PKD-skip) mapping."""
    return int(math.floor(x + 0.5))


def _from_rows(rows: Sequence[int], M: int, N: int) -> torch.Tensor:
    """rows[i] = 1-based teacher layer for student layer i+1 (0 = unmapped)."""
    W = torch.zeros(M, N, dtype=torch.float32)
    for i, j in enumerate(rows):
        if j > 0:
            W[i, j - 1] = 1.0
    return W


def _check_layer_list(layers, count: int, lo: int, hi: int, what: str, allow_duplicates: bool) -> list[int]:
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise KdlabError(f"{what} must be a list of layer indices, got {layers!r}")
    layers = list(layers)
    if len(layers) != count:
        raise KdlabError(
            f"{what} has {len(layers)} entries but the student has {count} layers: give exactly one teacher "
            f"layer per student layer"
        )
    out = []
    for pos, j in enumerate(layers):
        if not _is_int(j):
            raise KdlabError(f"{what}: entry {pos} ({j!r}) is not an integer layer index")
        j = int(j)
        if not lo <= j <= hi:
            raise KdlabError(
                f"{what}: teacher layer index {j} (entry {pos}) is out of range; valid indices are {lo}..{hi}"
            )
        out.append(j)
    if not allow_duplicates:
        seen = set()
        dups = sorted({j for j in out if j in seen or seen.add(j)})
        if dups:
            raise KdlabError(
                f"{what}: duplicate teacher layer indices {dups}; each teacher layer may be used only once"
            )
    return out


# ----------------------------------------------------------------------------------------------- strategies
def uniform(M: int, N: int) -> torch.Tensor:
    """PKD-skip / TinyBERT ``g(m) = m·N/M``: student layer i <- teacher layer round_half_up(i·N/M).

    3<-6: 2,4,6; 6<-12: 2,4,…,12; 4<-12: 3,6,9,12.
    """
    _check_sizes(M, N)
    return _from_rows([round_half_up(i * N / M) for i in range(1, M + 1)], M, N)


def first_k(M: int, N: int) -> torch.Tensor:
    """Student layer i <- teacher layer i (bottom layers)."""
    _check_sizes(M, N)
    return _from_rows(list(range(1, M + 1)), M, N)


def last_k(M: int, N: int) -> torch.Tensor:
    """Student layer i <- teacher layer N−M+i (top layers)."""
    _check_sizes(M, N)
    return _from_rows([N - M + i for i in range(1, M + 1)], M, N)


def explicit(layers: Sequence[int], N: int, M: int | None = None, *, allow_duplicates: bool = False) -> torch.Tensor:
    """Student layer i <- ``layers[i-1]`` (1-based teacher layers, one per student layer).

    ``M`` (when given) must equal ``len(layers)``; duplicates are rejected unless ``allow_duplicates``.
    """
    if M is None:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
            raise KdlabError(f"explicit layers must be a list of layer indices, got {layers!r}")
        layers = list(layers)
        M = len(layers)
        if M == 0:
            raise KdlabError("explicit layers list is empty: give one teacher layer per student layer")
    _check_sizes(M, N)
    rows = _check_layer_list(layers, M, 1, N, "explicit layers", allow_duplicates)
    return _from_rows(rows, M, N)


def _rail_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"kdlab-rail:{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def rail_random(
    M: int, N: int, seed: int = 0, epoch: int = 0, k: int | None = None, exclude_last: bool = True
) -> torch.Tensor:
    """RAIL-KD random layer selection (docs/METHODS.md: rail-kd).

    Draw ``k`` (default M−1) distinct teacher layers uniformly without replacement from 1..N−1
    (1..N when ``exclude_last`` is false), sort them ascending and pair them with student layers 1..k; the remaining
    student rows (by default only the last one, covered by logit KD) are all zero. The draw uses a
    ``torch.Generator`` seeded from a SHA-256 hash of ``(seed, epoch)``: same (seed, epoch) -> same draw.
    """
    _check_sizes(M, N)
    if k is None:
        k = M - 1
    pool = N - 1 if exclude_last else N
    if not _is_int(k) or k < 0:
        raise KdlabError(f"rail: the number of sampled layers k must be a non-negative integer, got {k!r}")
    if k > M:
        raise KdlabError(f"rail: k={k} sampled teacher layers but the student has only M={M} layers; use k <= {M}")
    if k > pool:
        raise KdlabError(
            f"rail: cannot draw k={k} distinct teacher layers from 1..{pool}"
            f"{' (the last teacher layer is excluded)' if exclude_last else ''}; use k <= {pool}"
        )
    g = torch.Generator().manual_seed(_rail_seed(seed, epoch))
    drawn = torch.randperm(pool, generator=g)[:k] + 1
    chosen = sorted(int(j) for j in drawn)
    return _from_rows(chosen + [0] * (M - k), M, N)


def _group_bounds(M: int, N: int) -> list[tuple[int, int]]:
    """Contiguous 1-based inclusive groups; sizes differ by at most 1, the first N mod M groups are larger."""
    base, extra = divmod(N, M)
    bounds, start = [], 1
    for i in range(M):
        size = base + (1 if i < extra else 0)
        bounds.append((start, start + size - 1))
        start += size
    return bounds


def grouped(M: int, N: int) -> torch.Tensor:
    """CKD contiguous buckets: teacher layers 1..N split into M contiguous groups as evenly as possible
    (sizes differ by at most one; the lower groups take the extra layers, like ``numpy.array_split``);
    student layer i gets weight 1/|group_i| on each teacher layer of group i (rows sum to 1).
    6<-12: {1,2},{3,4},…,{11,12}.
    """
    _check_sizes(M, N)
    W = torch.zeros(M, N, dtype=torch.float32)
    for i, (a, b) in enumerate(_group_bounds(M, N)):
        W[i, a - 1 : b] = 1.0 / (b - a + 1)
    return W


def alp_weights(student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor]) -> torch.Tensor:
    """ALP-KD attention weights as a mapping matrix ``W [M, N]`` (docs/METHODS.md: alp-kd; ``kdlab.methods.alp``).

    ``student_hidden`` / ``teacher_hidden`` (student first, as every loss) are the hidden-state lists of one batch,
    embeddings first (``Features.hidden``: M+1 and N+1 tensors ``[B, L, d]``). Row i is the batch mean of
    ``softmax_j <h^S_i[CLS], h^T_j[CLS]>`` over teacher layers 1..N, so every row sums to 1. The widths
    must match (a student copied from the teacher); a narrower student needs ALP-KD's learned projection.
    """
    from kdlab.kd import losses

    M, N = len(student_hidden) - 1, len(teacher_hidden) - 1
    _check_sizes(M, N)
    t_stack = torch.stack([teacher_hidden[j][:, 0].float() for j in range(1, N + 1)], dim=1)  # [B, N, d]
    rows = [losses.alp_attention(student_hidden[i][:, 0].float(), t_stack)[0].mean(0) for i in range(1, M + 1)]
    return torch.stack(rows).detach().to(torch.float32)


def from_matrix(W, M: int, N: int) -> torch.Tensor:
    """Validate a user-supplied weight matrix: shape ``[M, N]``, finite, non-negative -> float32 tensor."""
    _check_sizes(M, N)
    try:
        t = torch.as_tensor(W if not isinstance(W, torch.Tensor) else W.detach(), dtype=torch.float32).clone()
    except Exception as exc:  # ragged lists, strings, ...
        raise KdlabError(f"the mapping matrix could not be read as a numeric [M, N] = [{M}, {N}] array: {exc}")
    if tuple(t.shape) != (M, N):
        raise KdlabError(
            f"the mapping matrix has shape {tuple(t.shape)} but must be [M, N] = [{M}, {N}] "
            f"(one row per student layer, one column per teacher layer)"
        )
    if not torch.isfinite(t).all():
        bad = [tuple(int(x) + 1 for x in idx) for idx in torch.nonzero(~torch.isfinite(t))[:5]]
        raise KdlabError(f"the mapping matrix has non-finite entries (NaN/inf) at (student, teacher) {bad}")
    if (t < 0).any():
        bad = [tuple(int(x) + 1 for x in idx) for idx in torch.nonzero(t < 0)[:5]]
        raise KdlabError(
            f"the mapping matrix has negative entries at (student, teacher) {bad}; weights must be non-negative"
        )
    return t


def from_cka(scores, M: int, N: int) -> torch.Tensor:
    """The ``cka`` strategy: each student layer i <- the teacher layer of highest linear CKA with it, from
    ``scores`` [M, N] (student layer x teacher layer, embeddings left out; ``kdlab.analysis.cka_mapping.cka_scores``
    computes them on a sample before training). Ties go to the lower teacher layer; NaN scores (a constant
    layer) never win. Two student layers may take the same teacher layer."""
    _check_sizes(M, N)
    try:
        t = torch.as_tensor(scores if not isinstance(scores, torch.Tensor) else scores.detach(), dtype=torch.float64)
    except Exception as exc:
        raise KdlabError(f"the CKA scores could not be read as a numeric [M, N] = [{M}, {N}] array: {exc}")
    if tuple(t.shape) != (M, N):
        raise KdlabError(f"the CKA scores have shape {tuple(t.shape)} but must be [M, N] = [{M}, {N}] (one row per "
                         "student layer, one column per teacher layer)")
    t = torch.nan_to_num(t, nan=-float("inf"))
    return _from_rows([int(r.argmax()) + 1 for r in t], M, N)


def pairs(W: torch.Tensor) -> list[tuple[int, int, float]]:
    """Non-zero entries of ``W`` as ``(student_layer, teacher_layer, weight)``, 1-based, row-major order."""
    W = torch.as_tensor(W)
    if W.dim() != 2:
        raise KdlabError(f"a mapping matrix must be 2-D [M, N], got shape {tuple(W.shape)}")
    return [(int(i) + 1, int(j) + 1, float(W[i, j])) for i, j in torch.nonzero(W != 0).tolist()]


def one_hot_layers(W) -> list[int] | None:
    """The 1-based teacher layer of every student row when each row has exactly one pair (weight aside), else
    None: ``one_hot_layers(uniform(3, 6)) == [2, 4, 6]``."""
    W = torch.as_tensor(W)
    nz = W != 0
    if W.dim() != 2 or not bool((nz.sum(1) == 1).all()):
        return None
    return [int(j) + 1 for j in nz.float().argmax(1)]


def parse_layers(text: str, example: str = "2,4,6") -> list[int]:
    """``"2, 4,6"`` -> ``[2, 4, 6]``; a KdlabError (showing ``example``) when it is not a list of integers."""
    try:
        return [int(x) for x in str(text).replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise KdlabError(f"'{text}' is not a comma-separated list of layer numbers, e.g. {example}") from None


def edit(W, edits: Iterable) -> torch.Tensor:
    """``W`` after pair edits, validated (``from_matrix``). Each edit is ``(op, student, teacher, weight)``,
    1-based: op ``"add"`` sets that pair's weight, ``"row"`` makes it the only pair of its row. Edits outside
    the matrix (left from a larger one) are skipped."""
    W = torch.as_tensor(W if not isinstance(W, torch.Tensor) else W.detach(), dtype=torch.float32).clone()
    if W.dim() != 2:
        raise KdlabError(f"a mapping matrix must be 2-D [M, N], got shape {tuple(W.shape)}")
    M, N = W.shape
    for op, s, t, w in edits:
        if op not in ("add", "row"):
            raise KdlabError(f"unknown mapping edit '{op}': use 'add' or 'row'")
        if not (1 <= s <= M and 1 <= t <= N):
            continue
        if op == "row":
            W[s - 1, :] = 0.0
        W[s - 1, t - 1] = float(w)
    return from_matrix(W, M, N)


def method_flags(W) -> str:
    """Command-line options that train with ``W``: the explicit mapping for one pair of weight 1 per row, else
    the ``hidden`` method with the whole weight matrix."""
    W = torch.as_tensor(W, dtype=torch.float32)
    layers = one_hot_layers(W)
    if layers is not None and bool((W.sum(1) == 1).all()):
        return "--set mapping=explicit --set mapping_layers=" + ",".join(map(str, layers))
    rows = [[round(float(v), 4) for v in r] for r in W]
    return "--method hidden --set mapping=matrix --set mapping_matrix=" + json.dumps(rows, separators=(",", ":"))


def teacher_layers_for_student_init(
    strategy: str, M: int, N: int, layers: Sequence[int] | None = None
) -> list[int]:
    """0-based teacher transformer-layer indices that a student copied from the teacher takes, one per student layer.

    * ``"uniform"`` / ``"skip"``: ``[round_half_up((i+1)·N/M) − 1 for i in range(M)]`` (12->6: 1,3,5,7,9,11)
    * ``"first"``: 0..M−1; ``"last"``: N−M..N−1
    * ``"explicit"``: ``layers`` as given, 0-based (DistilBERT: [0,2,4,7,9,11])
    """
    _check_sizes(M, N)
    name = str(strategy).lower()
    if name in ("uniform", "skip"):
        return [round_half_up((i + 1) * N / M) - 1 for i in range(M)]
    if name == "first":
        return list(range(M))
    if name == "last":
        return list(range(N - M, N))
    if name == "explicit":
        if layers is None:
            raise KdlabError(
                "student init strategy 'explicit' needs a list of 0-based teacher layers (e.g. [0,2,4,7,9,11])"
            )
        return _check_layer_list(layers, M, 0, N - 1, "student init layers (0-based)", allow_duplicates=False)
    raise KdlabError(
        f"unknown student init strategy {strategy!r}; choose one of 'uniform'/'skip', 'first', 'last', 'explicit'"
    )


def build(
    strategy: str,
    M: int,
    N: int,
    *,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    epoch: int = 0,
    matrix=None,
    k: int | None = None,
) -> torch.Tensor:
    """Dispatch by name: "uniform"/"skip", "first", "last", "explicit" (needs ``layers``, 1-based),
    "random"/"rail" (uses ``seed``, ``epoch``, ``k``), "grouped"/"ckd", "matrix" (needs ``matrix``), "cka"
    (needs ``matrix``: the CKA scores, ``from_cka``)."""
    name = str(strategy).lower()
    if name in ("uniform", "skip"):
        return uniform(M, N)
    if name == "first":
        return first_k(M, N)
    if name == "last":
        return last_k(M, N)
    if name == "explicit":
        if layers is None:
            raise KdlabError("mapping 'explicit' needs a list of 1-based teacher layers, one per student layer")
        return explicit(layers, N, M)
    if name in ("random", "rail"):
        return rail_random(M, N, seed=seed, epoch=epoch, k=k)
    if name in ("grouped", "ckd"):
        return grouped(M, N)
    if name == "matrix":
        if matrix is None:
            raise KdlabError("mapping 'matrix' needs a weight matrix of shape [M, N]")
        return from_matrix(matrix, M, N)
    if name == "cka":
        if matrix is None:
            raise KdlabError("mapping 'cka' needs the student x teacher CKA scores [M, N]: a distillation run "
                             "computes them on a sample of its training data before training")
        return from_cka(matrix, M, N)
    raise KdlabError(f"unknown mapping strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
