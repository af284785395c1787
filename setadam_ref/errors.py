"""Exceptions raised by the reference."""

from __future__ import annotations


class NonFiniteError(ValueError):
    """A parameter or gradient array holds NaN or +-Inf and the step runs with ``nonfinite="raise"``.

    Attributes name what was bad so that a caller can report it without parsing the message.
    """

    def __init__(
        self, what: str, index: int, step: int, count: int, size: int, why: str | None = None
    ) -> None:
        self.what = what
        self.index = index
        self.step = step
        self.count = count
        self.size = size
        # ``why`` replaces the generic description when the cause is known
        head = why or (
            f"{what}[{index}] has {count} non-finite entr{'y' if count == 1 else 'ies'} "
            f"(of {size}) at step t={step}"
        )
        super().__init__(
            f"{head}; pass nonfinite='ieee' to propagate them with IEEE semantics instead"
        )
