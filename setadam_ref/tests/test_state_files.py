"""State files: every damage is one ``StateFileError`` saying what is wrong, and whatever
``save_state`` writes ``load_state`` reads back bit for bit (a test at the 2**63 - 1 boundary)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import setadam_ref as R


def _error() -> type[Exception]:
    return R.StateFileError


def _saved(tmp_path: Path, amsgrad: bool = False) -> tuple[Path, R.State, R.Config]:
    rng = np.random.default_rng(3)
    params = [rng.normal(size=(3, 2)), rng.normal(size=4)]
    cfg = R.AdamConfig(amsgrad=amsgrad)
    traj = R.run(params, [[rng.normal(size=p.shape) for p in params] for _ in range(3)], cfg)
    path = tmp_path / "state.npz"
    R.save_state(path, traj.states[-1])
    return path, traj.states[-1], cfg


def _rewrite(path: Path, **changes: Any) -> None:
    """Write the file again with some fields changed (None: removed), as a careless tool would."""
    with np.load(path) as data:
        fields = {k: data[k] for k in data.files}
    for k, v in changes.items():
        if v is None:
            fields.pop(k)
        else:
            fields[k] = v
    np.savez(path, **fields)


def test_a_text_file_is_not_a_state_file(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    path.write_text("step = 3\n")
    with pytest.raises(_error(), match="not a zip"):
        R.load_state(path)


def test_a_truncated_file(tmp_path: Path) -> None:
    path, _, _ = _saved(tmp_path)
    data = path.read_bytes()
    for cut in (len(data) // 2, 40, len(data) - 5):
        path.write_bytes(data[:cut])
        with pytest.raises(_error()):
            R.load_state(path)


def test_a_zip_that_is_not_a_state(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(_error(), match="no field 'schema_version'"):
        R.load_state(path)


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"m_1": None}, "missing field 'm_1'"),
        ({"extra": np.zeros(2)}, "unexpected field 'extra'"),
        ({"step": np.array(2.7)}, "step must be an integer"),
        ({"step": np.array(-4)}, "negative"),
        ({"v_0": np.zeros((2, 3))}, r"v of array 0 has shape \(2, 3\), expected \(3, 2\)"),
        ({"m_0": np.zeros((3, 2), dtype=np.float32)}, "dtype float32"),
        ({"v_1": np.array([1.0, np.nan, 0.0, 1.0])}, "state holds NaN in v of array 1"),
        ({"m_1": np.array([1.0, np.inf, 0.0, 1.0])}, "state holds an infinity in m of array 1"),
        ({"n_arrays": np.array(3)}, "missing field 'm_2'"),
    ],
)
def test_damage_is_named(tmp_path: Path, changes: dict[str, Any], says: str) -> None:
    path, _, _ = _saved(tmp_path)
    _rewrite(path, **changes)
    with pytest.raises(_error(), match=says):
        R.load_state(path)


def test_shape_and_amsgrad_checked_against_what_the_caller_has(tmp_path: Path) -> None:
    path, _, cfg = _saved(tmp_path, amsgrad=True)
    assert R.load_state(path, cfg, [np.zeros((3, 2)), np.zeros(4)]).vmax is not None
    with pytest.raises(_error(), match="does not use amsgrad"):
        R.load_state(path, R.AdamConfig())
    with pytest.raises(_error(), match=r"shape \(3, 2\), expected \(2, 3\)"):
        R.load_state(path, cfg, [np.zeros((2, 3)), np.zeros(4)])


def test_the_errors_are_value_errors_for_old_callers(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    path.write_bytes(b"PK\x03\x04broken")
    with pytest.raises(ValueError):
        R.load_state(path)


@pytest.mark.parametrize("step", [0, 1, 2**53 + 1, 2**63 - 1])
def test_round_trip_bit_for_bit_up_to_the_largest_step(tmp_path: Path, step: int) -> None:
    m = (np.array([0.1, -0.0, 5e-324]), np.zeros((0, 3)))
    v = (np.array([0.0, 1e308, 2.5e-310]), np.zeros((0, 3)))
    state = R.State(step=step, m=m, v=v, vmax=(np.maximum(v[0], 1.0), v[1]))
    path = tmp_path / "s.npz"
    R.save_state(path, state)
    back = R.load_state(path)
    assert back.step == step and type(back.step) is int
    for a, b in zip(back.m + back.v + back.vmax, state.m + state.v + state.vmax):  # type: ignore[operator]
        assert a.dtype == np.float64 and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "state, says",
    [
        (R.State(step=2**63, m=(), v=()), r"0\.\.2\*\*63 - 1"),
        (R.State(step=-1, m=(), v=()), r"0\.\.2\*\*63 - 1"),
        (R.State(step=2.0, m=(), v=()), "must be an integer"),  # type: ignore[arg-type]
        (R.State(step=1, m=(np.zeros(2),), v=(np.array([0.0, np.nan]),)), "NaN in v of array 0"),
        (R.State(step=1, m=(np.zeros(2),), v=()), "m has 1 arrays but v has 0"),
        (R.State(step=1, m=(np.zeros(2),), v=(np.zeros(3),)), r"shape \(3,\), expected \(2,\)"),
    ],
)
def test_save_refuses_what_load_would_refuse(tmp_path: Path, state: R.State, says: str) -> None:
    path = tmp_path / "s.npz"
    with pytest.raises(_error(), match=says):
        R.save_state(path, state)
    assert not path.exists()
