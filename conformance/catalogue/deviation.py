"""The catalogue's record: one known deviation, as data (what it changes, where it shows).

A deviation is the reference with exactly one thing changed, expressed as one or more of:
stage functions swapped (fields of ``setadam_ref.setadam.SETAdamStages`` or
``setadam_ref.adam.AdamStages``), stage functions built from the step's inputs (a quantity of
the previous step's state, or of the raw gradient), a transformed configuration, a transformed step counter,
or a transformed layout (arrays cut into pieces and regrouped into layers). ``replay`` runs the
plain reference step with that change; there is no second implementation of the algorithm.

A *whole-algorithm* entry (NAdam, RAdam, Lion, ... checked as Adam) is the one exception: its
``whole`` step is another published algorithm, written in ``conformance.catalogue.algorithms``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from setadam_ref.adam import AdamStages
from setadam_ref.config import Config
from setadam_ref.layers import Layers
from setadam_ref.setadam import SETAdamStages
from setadam_ref.stage_names import COMPUTATION_ORDER

Algorithm = Literal["setadam", "adam"]


class Relayout(NamedTuple):
    """Coordinates regrouped: ``pieces[i]`` cuts array ``i`` (flattened) into consecutive pieces
    of the given sizes; ``layers`` is a layering of all pieces, numbered array by array."""

    pieces: tuple[tuple[int, ...], ...]
    layers: Layers


#: (shapes, layering) -> the regrouping a variant computes with
Layout = Callable[[Sequence[tuple[int, ...]], Layers], Relayout]
#: (params, grads, state, config, layers) -> (theta_t, m_t, v_t, vmax_t or None), float64
WholeStep = Callable[[Any, Any, Any, Any, Any], tuple[Any, Any, Any, Any]]
#: the step's inputs (params, grads, state) -> stage functions swapped for this step only
InputStages = Callable[[Any, Any, Any], Mapping[str, Callable[..., Any]]]


@dataclass(frozen=True)
class Deviation:
    """One known deviation: SET-Adam (or, with ``algorithm="adam"``, Adam) with one thing changed.

    ``stage`` is the first stage (a name of ``setadam_ref.stage_names``) where it shows in a port
    that exposes its intermediates; ``shows_when`` the inputs under which it has any effect.
    ``equivalent`` marks rewrites that are mathematically equal to the algorithm (never a cause).
    The change: ``stages`` (stage functions swapped), ``from_inputs`` (stage functions built from
    the step's inputs: a quantity of the previous step's state or of the raw gradient), ``config``
    ($\\text{config} \\mapsto$ the configuration the port computes with), ``counter``
    ($t \\mapsto$ the step the port uses), ``layout`` (the port's regrouping of coordinates into
    layers), or ``whole`` (another algorithm's step altogether; nothing else may be set).
    """

    name: str
    bug_class: str
    stage: str
    description: str
    shows_when: str
    equivalent: bool = False
    algorithm: Algorithm = "setadam"
    stages: Mapping[str, Callable[..., Any]] = field(
        default_factory=dict, repr=False, compare=False
    )
    config: Callable[[Any], Config] | None = field(default=None, repr=False, compare=False)
    counter: Callable[[int], int] | None = field(default=None, repr=False, compare=False)
    layout: Layout | None = field(default=None, repr=False, compare=False)
    from_inputs: InputStages | None = field(default=None, repr=False, compare=False)
    whole: WholeStep | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.stage not in COMPUTATION_ORDER:
            raise ValueError(f"{self.name}: stage {self.stage!r} is not in {COMPUTATION_ORDER}")
        record = AdamStages if self.algorithm == "adam" else SETAdamStages
        unknown = set(self.stages) - set(record._fields)
        if unknown:
            raise ValueError(f"{self.name}: {sorted(unknown)} are not fields of {record.__name__}")
        if self.layout is not None and self.algorithm == "adam":
            raise ValueError(f"{self.name}: Adam has no layers to regroup")
        others = (self.stages, self.config, self.counter, self.layout, self.from_inputs)
        if self.whole is not None and any(others):
            raise ValueError(f"{self.name}: a whole-algorithm entry changes nothing else")


def entry(
    name: str,
    bug_class: str,
    stage: str,
    description: str,
    shows_when: str,
    *,
    algorithm: Algorithm = "setadam",
    equivalent: bool = False,
    config: Callable[[Any], Config] | None = None,
    counter: Callable[[int], int] | None = None,
    layout: Layout | None = None,
    from_inputs: InputStages | None = None,
    whole: WholeStep | None = None,
    **stages: Callable[..., Any],
) -> Deviation:
    """A catalogue entry; keyword arguments other than the named ones are swapped stages."""
    return Deviation(
        name,
        bug_class,
        stage,
        description,
        shows_when,
        equivalent,
        algorithm,
        stages,
        config,
        counter,
        layout,
        from_inputs,
        whole,
    )
