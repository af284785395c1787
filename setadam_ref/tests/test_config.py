"""Configs are frozen and validated; each bad value names the field, the value and the range."""

from __future__ import annotations

import dataclasses
import math

import pytest

import setadam_ref as R

BAD_COMMON = [
    ("lr", 0.0, "lr must be > 0"),
    ("lr", -1e-3, "lr must be > 0"),
    ("lr", math.inf, "lr must be finite"),
    ("lr", math.nan, "lr must be finite"),
    ("lr", True, "lr must be a real number"),
    ("betas", (1.0, 0.999), r"betas\[0\] \(beta1\) must lie in \[0, 1\)"),
    ("betas", (0.9, -0.1), r"betas\[1\] \(beta2\) must lie in \[0, 1\)"),
    ("betas", (0.9,), "betas must be a pair"),
    ("betas", (0.9, "x"), r"betas\[1\] \(beta2\) must be a real number"),
    ("weight_decay", -0.1, "weight_decay must be >= 0"),
    ("weight_decay_mode", "adamw", "weight_decay_mode must be one of"),
    ("maximize", 1, "maximize must be a bool"),
]


@pytest.mark.parametrize("cls", [R.AdamConfig, R.SETAdamConfig])
@pytest.mark.parametrize(("field", "value", "msg"), BAD_COMMON)
def test_bad_common_fields(cls: type, field: str, value: object, msg: str) -> None:
    with pytest.raises(ValueError, match=msg) as info:
        cls(**{field: value})
    assert field.split("_")[0] in str(info.value)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"eps": -1e-8}, "eps must be >= 0"),
        ({"eps_root": -1.0}, "eps_root must be >= 0"),
        ({"amsgrad_mode": "keras"}, "amsgrad_mode must be one of"),
        ({"amsgrad": "yes"}, "amsgrad must be a bool"),
        ({"eps_mode": "keras"}, "eps_mode must be one of"),
        ({"eps_mode": "tf", "amsgrad": True, "amsgrad_mode": "optax"}, "must be 'torch' with"),
    ],
)
def test_bad_adam_fields(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        R.AdamConfig(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"eps": 0.0}, "eps must be > 0"),
        ({"eps": -1.0}, "eps must be > 0"),
        ({"tau": 1.0}, r"tau must lie in \[0, 1\)"),
        ({"tau": -0.01}, r"tau must lie in \[0, 1\)"),
        ({"tau": math.nan}, "tau must be finite"),
    ],
)
def test_bad_setadam_fields(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        R.SETAdamConfig(**kw)  # type: ignore[arg-type]


def test_defaults_and_frozen() -> None:
    a, s = R.AdamConfig(), R.SETAdamConfig()
    assert (a.lr, a.betas, a.eps, a.eps_root, a.weight_decay_mode, a.amsgrad) == (
        1e-3,
        (0.9, 0.999),
        1e-8,
        0.0,
        "l2",
        False,
    )
    assert (s.lr, s.betas, s.eps, s.tau, s.weight_decay, s.weight_decay_mode) == (
        1e-3,
        (0.9, 0.999),
        1e-8,
        0.5,
        0.0,
        "l2",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.tau = 0.1  # type: ignore[misc]
    assert dataclasses.replace(s, tau=0.0).tau == 0.0
    with pytest.raises(ValueError, match="tau"):
        dataclasses.replace(s, tau=2.0)
    assert R.SETAdamConfig(betas=[0.5, 0.6]).betas == (0.5, 0.6)  # type: ignore[arg-type]
    assert hash(R.SETAdamConfig()) == hash(R.SETAdamConfig())


def test_boundary_values_are_valid() -> None:
    R.AdamConfig(betas=(0.0, 0.0), eps=0.0, eps_root=0.0)
    R.SETAdamConfig(betas=(0.0, 0.0), tau=0.0, eps=1e-300)
