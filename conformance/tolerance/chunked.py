r"""The comparison budget of one step computed in chunks of coordinates: bitwise the whole step's.

:func:`chunked_comparison_bounds` is :func:`~conformance.tolerance.comparison_bounds` restricted
to the quantities asked for, with a working set of a few chunks (``CHUNK`` coordinates) instead of
some thirty full-length temporaries: a streamed reference run's step (issue 12, item 3;
docs/src/guide/harness.md, "The reference at scale"). Every chunk lies in one array, hence in one
layer, and reads the step's reference values in place (:class:`StepSource`: views of the trace
or of a flat :class:`~conformance.tolerance.StepRef`, no flat copy).

Why it is bitwise the same. The bound of a coordinate is an elementwise function of that
coordinate's values and of SET-Adam's layer terms (:class:`~conformance.tolerance.model.LayerTerms`),
and IEEE elementwise operations do not depend on how an array is cut. The layer terms are
reductions, computed in passes over the chunks that reproduce the whole-array reductions exactly:

- $\max v$, $\min w$, $\max_{w_i = w_{\min}} E_{w,i}$, $\min(w - E_w)$, $\max(v - E_v)$: a minimum
  or maximum is exact in any order (NaN propagates both ways);
- the sums of :class:`~conformance.tolerance.statistics.LayerSums`: ``np.bincount`` adds a layer's
  terms one by one in coordinate order, and each chunk continues that running sum with
  ``np.add.accumulate`` (also one by one), never a pairwise partial sum.

Passes (SET-Adam): $\max v$; $E_g, E_v$ and the sums (then $E_c$,
:func:`~conformance.tolerance.statistics.statistics_from_sums`); $\min w$; $E_w$ and the
minimum's terms (then $E_{w_{\min}}$, :func:`~conformance.tolerance.stages.min_error`); the
bounds. The cheap stages are recomputed per pass rather than kept (memory is the point).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from setadam_ref import Config, SETAdamConfig, State
from setadam_ref.trace import AdamTrace, Trace

from ..layout import Flat
from .model import LayerTerms, chunk_bounds, comparison_bounds, embedded, formats, grad_v_bounds
from .records import QUANTITIES, Bounds, InputErrors, StepRef
from .stages import min_error
from .statistics import LayerSums, scale_exponent, statistics_from_sums

F = np.ndarray

#: coordinates per chunk (at most): 128 KiB per float64 temporary, a few dozen of them in cache
CHUNK = 1 << 14
#: at least this many chunks in a run of 2^18 coordinates or more (so that the chunk's few dozen
#: temporaries stay under one copy of the parameter set), of at least ``MIN_CHUNK`` coordinates
CHUNKS_PER_RUN = 64
MIN_CHUNK = 1 << 12


def chunk_size(n: int) -> int:
    """The chunk size for ``n`` coordinates (any size gives the same bits)."""
    return min(CHUNK, max(MIN_CHUNK, n // CHUNKS_PER_RUN))


#: the array fields of a StepRef, in its order
_FIELDS = (
    "theta0", "m0", "v0", "vmax0", "grad", "m", "v", "vmax", "theta1", "update",
    "denom", "v_scaled", "w", "w_translated",
)  # fmt: skip


@dataclass(frozen=True)
class Chunk:
    """Flat coordinates ``lo:hi``: a piece ``start:stop`` of one array (``arrays`` has one entry),
    or whole consecutive arrays holding every array of the layers they touch (``whole``)."""

    lo: int
    hi: int
    arrays: tuple[int, ...]
    start: int
    stop: int
    whole: bool

    @property
    def flat(self) -> slice:
        return slice(self.lo, self.hi)

    @property
    def size(self) -> int:
        return self.hi - self.lo


def chunks(flat: Flat, size: int = CHUNK) -> list[Chunk]:
    """Chunks of at most ``size`` coordinates (or one array) covering every array in flat order:
    an array longer than ``size`` in pieces, shorter ones grouped when the group is closed under
    layers (a layer's sums then start and end in the chunk), else each on its own."""
    o = flat.offsets
    members: dict[int, set[int]] = {}
    for i, lay in enumerate(flat.layer_of_array):
        members.setdefault(lay, set()).add(i)
    out: list[Chunk] = []
    group: list[int] = []

    def flush() -> None:
        layers = {flat.layer_of_array[i] for i in group}
        if group and all(members[k] <= set(group) for k in layers):
            out.append(Chunk(o[group[0]], o[group[-1] + 1], tuple(group), 0, 0, True))
        else:
            out.extend(Chunk(o[i], o[i + 1], (i,), 0, o[i + 1] - o[i], False) for i in group)
        group.clear()

    for i in range(len(flat.shapes)):
        n = o[i + 1] - o[i]
        if n > size:
            flush()
            out += [
                Chunk(o[i] + a, o[i] + min(a + size, n), (i,), a, min(a + size, n), False)
                for a in range(0, n, size)
            ]
            continue
        if group and o[i + 1] - o[group[0]] > size:
            flush()
        group.append(i)
    flush()
    return [c for c in out if c.size > 0]


@dataclass(frozen=True)
class StepSource:
    """One step's reference values per array, as 1-D views: what the bounds of a chunk read."""

    t: int
    bias_correction1: float
    bias_correction2: float
    cos2: F | None
    arrays: dict[str, tuple[F, ...] | None]

    @staticmethod
    def of_ref(ref: StepRef, flat: Flat) -> StepSource:
        """Views of a flat StepRef's arrays."""
        o = flat.offsets

        def cut(a: F | None) -> tuple[F, ...] | None:
            return None if a is None else tuple(a[o[i] : o[i + 1]] for i in range(len(o) - 1))

        arrays = {f: cut(getattr(ref, f)) for f in _FIELDS}
        return StepSource(ref.t, ref.bias_correction1, ref.bias_correction2, ref.cos2, arrays)

    @staticmethod
    def of_trace(
        params: Sequence[F], state: State, new_params: Sequence[F], trace: Trace
    ) -> StepSource:
        """Views of a traced reference step (``StepRef.from_trace`` without its flat copies)."""

        def flat1(arrs: Sequence[F] | None) -> tuple[F, ...] | None:
            return (
                None if arrs is None else tuple(np.ravel(np.asarray(a, np.float64)) for a in arrs)
            )

        arrays = {
            "theta0": flat1(params), "m0": flat1(state.m), "v0": flat1(state.v),
            "vmax0": flat1(state.vmax), "grad": flat1(trace.grad), "m": flat1(trace.m),
            "v": flat1(trace.v), "theta1": flat1(new_params), "update": flat1(trace.update),
        }  # fmt: skip
        if isinstance(trace, AdamTrace):
            arrays |= {"vmax": flat1(trace.vmax), "denom": flat1(trace.denom)}
            cos2 = None
        else:
            arrays |= {f: flat1(getattr(trace, f)) for f in ("v_scaled", "w", "w_translated")}
            cos2 = np.array([s.cos2 for s in trace.layers], dtype=np.float64)
        t, bc1, bc2 = int(trace.t), float(trace.bias_correction1), float(trace.bias_correction2)
        return StepSource(t, bc1, bc2, cos2, arrays)

    def values(self, name: str, c: Chunk) -> F | None:
        arrs = self.arrays.get(name)
        if arrs is None:
            return None
        if c.whole:
            return np.concatenate([arrs[i] for i in c.arrays])
        return arrs[c.arrays[0]][c.start : c.stop]

    def need(self, name: str, c: Chunk) -> F:
        v = self.values(name, c)
        assert v is not None, name
        return v

    def at(self, c: Chunk) -> StepRef:
        """The StepRef of chunk ``c`` (views)."""
        v = {f: self.values(f, c) for f in _FIELDS}
        return StepRef(
            t=self.t,
            bias_correction1=self.bias_correction1,
            bias_correction2=self.bias_correction2,
            cos2=self.cos2,
            **v,  # type: ignore[arg-type]
        )

    def flat_ref(self, flat: Flat) -> StepRef:
        """The flat StepRef (copies): the whole-step path, for runs of at most one chunk."""
        v = {f: None if (a := self.arrays.get(f)) is None else flat.cat(a) for f in _FIELDS}
        return StepRef(
            t=self.t,
            bias_correction1=self.bias_correction1,
            bias_correction2=self.bias_correction2,
            cos2=self.cos2,
            **v,  # type: ignore[arg-type]
        )


def _inputs_at(ein: InputErrors | None, c: Chunk, amsgrad: bool) -> InputErrors:
    if ein is None:
        return InputErrors.zeros(c.size, amsgrad)
    s = c.flat

    def cut(a: F | None) -> F | None:
        return None if a is None else a[s]

    return InputErrors(ein.theta[s], ein.m[s], ein.v[s], cut(ein.vmax), cut(ein.grad))


def _add_sum(acc: F, c: Chunk, lid: F, terms: F) -> None:
    """Add a chunk's terms to the layer sums ``acc`` in ``np.bincount``'s order (one by one,
    coordinate order): a chunk of whole layers sums them from zero, a piece of one layer
    continues that layer's running sum."""
    if c.whole:
        acc += np.bincount(lid, weights=terms, minlength=acc.size)
    else:
        k = int(lid[0])
        acc[k] = np.add.accumulate(np.concatenate((acc[k : k + 1], terms)))[-1]


TermsAt = Callable[[Chunk], LayerTerms | None]


def _layer_terms(
    config: SETAdamConfig,
    src: StepSource,
    flat: Flat,
    cs: list[Chunk],
    dtype: str,
    state_dtype: str,
    ein: InputErrors | None,
) -> tuple[F, TermsAt]:
    """(bound of c per layer, the layer terms of a chunk) of one side in ``dtype``."""
    fp, fs, fx = formats(dtype, state_dtype)
    nl = flat.n_layers
    assert src.cos2 is not None
    ids = [flat.layer_id[c.flat] for c in cs]
    vmax = np.full(nl, -np.inf)
    for c, lid in zip(cs, ids, strict=True):
        np.maximum.at(vmax, lid, src.need("v", c))
    sig = np.ldexp(1.0, -scale_exponent(vmax))
    s1, s2, e1, e2 = (np.zeros(nl) for _ in range(4))
    low = np.full(nl, -np.inf)
    with np.errstate(all="ignore"):
        for c, lid in zip(cs, ids, strict=True):
            ref = src.at(c)
            ev = grad_v_bounds(config, ref, _inputs_at(ein, c, False), fp, fs)[1]
            sg = sig[lid]
            vv, evv = ref.v * sg, ev * sg
            _add_sum(s1, c, lid, vv)
            _add_sum(s2, c, lid, vv * vv)
            _add_sum(e1, c, lid, evv)
            _add_sum(e2, c, lid, 2 * vv * evv + evv * evv)
            np.maximum.at(low, lid, ref.v - ev)
    sb = statistics_from_sums(LayerSums(vmax, s1, s2, e1, e2, low), src.cos2, flat.layer_size, fx)
    cos2 = src.cos2

    at_chunk = dict(zip((c.lo for c in cs), ids, strict=True))

    def base(c: Chunk) -> LayerTerms:
        lid = at_chunk[c.lo]
        return LayerTerms(cos2[lid], sb.ecq[lid], sb.c_hi[lid])

    if config.tau == 0.0:
        return sb.ec, base
    wmin = np.full(nl, np.inf)
    for c, lid in zip(cs, ids, strict=True):
        np.minimum.at(wmin, lid, src.need("w", c))
    e_at, wlow = np.full(nl, -np.inf), np.full(nl, np.inf)
    with np.errstate(all="ignore"):
        for c, lid in zip(cs, ids, strict=True):
            ref = src.at(c)
            ev = grad_v_bounds(config, ref, _inputs_at(ein, c, False), fp, fs)[1]
            t = base(c)
            ew = embedded(config, ref, ev, t.cos2, t.ecq, t.c_hi, fx)[1]
            assert ref.w is not None
            np.maximum.at(e_at, lid, np.where(ref.w <= wmin[lid], ew, -np.inf))
            np.minimum.at(wlow, lid, ref.w - ew)
    ewmin = min_error(wmin, e_at, wlow, flat.layer_size)

    def full(c: Chunk) -> LayerTerms:
        t, lid = base(c), at_chunk[c.lo]
        return LayerTerms(t.cos2, t.ecq, t.c_hi, wmin[lid], ewmin[lid])

    return sb.ec, full


def chunked_comparison_bounds(
    config: Config,
    src: StepSource,
    flat: Flat,
    dtype: str,
    port_inputs: InputErrors | None = None,
    ref_inputs: InputErrors | None = None,
    state_dtype: str | None = None,
    keep: Sequence[str] = QUANTITIES,
    parts: Sequence[str] = (),
    size: int | None = None,
) -> tuple[Bounds, Bounds, Bounds]:
    """:func:`~conformance.tolerance.comparison_bounds` of the quantities ``keep`` (the total)
    and ``parts`` (the port's and the reference's parts, which a free-running recursion carries),
    in chunks of ``size`` coordinates (default :func:`chunk_size`); bitwise the whole step's (module docstring). A run of at
    most one chunk takes the whole-step path."""
    sdt = state_dtype or dtype
    size = chunk_size(flat.size) if size is None else size
    if flat.size <= size:
        tot, bp, br = comparison_bounds(
            config, src.flat_ref(flat), flat, dtype, port_inputs, ref_inputs, sdt
        )
        return _only(tot, keep), _only(bp, parts), _only(br, parts)
    same = dtype == "float64" and sdt == "float64"  # both sides round alike: total = 2 port's
    sides = [(dtype, sdt, port_inputs)]
    if not same:
        sides.append(("float64", "float64", ref_inputs))
    cs = chunks(flat, size)
    terms: list[tuple[F | None, TermsAt]] = []
    for d, s, ein in sides:
        if isinstance(config, SETAdamConfig):
            terms.append(_layer_terms(config, src, flat, cs, d, s, ein))
        else:
            terms.append((None, lambda c: None))
    amsgrad = src.arrays.get("vmax0") is not None
    n = flat.size
    total: dict[str, F] = {}
    sides_out: list[dict[str, F]] = [{} for _ in sides]
    for c in cs:
        ref = src.at(c)
        got = [
            chunk_bounds(config, ref, d, _inputs_at(ein, c, amsgrad), s, at(c))
            for (d, s, ein), (_, at) in zip(sides, terms, strict=True)
        ]
        for k in keep:
            if k in got[0]:
                both = got[0][k] * 2.0 if same else got[0][k] + got[-1][k]
                total.setdefault(k, np.empty(n))[c.flat] = both
        for out, b in zip(sides_out, got, strict=True):
            for k in parts:
                if k in b:
                    out.setdefault(k, np.empty(n))[c.flat] = b[k]
    ecs = [ec for ec, _ in terms if ec is not None]
    if ecs:  # SET-Adam: the bound of c, per layer
        if "cos2" in keep:
            total["cos2"] = ecs[0] * 2.0 if same else ecs[0] + ecs[-1]
        if "cos2" in parts:
            for out, ec in zip(sides_out, ecs, strict=True):
                out["cos2"] = ec
    return Bounds(total), Bounds(sides_out[0]), Bounds(sides_out[-1])


def _only(b: Bounds, keys: Sequence[str]) -> Bounds:
    return Bounds({k: v for k, v in b.values.items() if k in keys})
