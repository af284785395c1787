"""``run`` includes our sharded ports, and says what it leaves out of them.

Only the selection is checked here (no rank is started): the default run has the 2- and 4-rank
torch ports on every sharding scenario (run in the harness process, no worker locator) and the
4-device JAX mesh (in a worker, with a locator) on its scenarios; ``--quick`` has the 2-rank
port on one scenario; each leaves a note naming what is left out. The ports themselves are
checked on the same scenarios by ``test_sharded_torch.py`` and ``test_sharded_jax.py``, and
``bash .ci/main`` runs them.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from conformance.adapters import ours_sharded
from conformance.adapters.registry import available_ports
from conformance.results import PortSpec
from conformance.scenarios import SHARDING


def _sharded(quick: bool) -> tuple[dict[tuple[str, str], PortSpec], list[str]]:
    specs, notes = available_ports("cpu", None, None, quick)
    return {(s.name, s.dtype): s for s in specs if "@" in s.name}, notes


def test_the_default_run_has_2_and_4_ranks_and_the_mesh() -> None:
    got, notes = _sharded(quick=False)
    two = got[("ours.torch.SETAdam[sharded-foreach]@2ranks", "float64")]
    four = got[("ours.torch.SETAdam[sharded-single]@4ranks", "float32")]
    for s in (two, four):
        assert s.scenarios == tuple(x.name for x in SHARDING) + ours_sharded.TORCH_CONTRACT
        assert s.locator is None
    assert ours_sharded.rank_counts([two, four]) == [2, 4]
    if ("ours.jax.setadam@4dev", "float32") in got:
        mesh = got[("ours.jax.setadam@4dev", "float32")]
        assert mesh.locator is not None and mesh.scenarios == ours_sharded.JAX_SCENARIOS
        assert ours_sharded.mesh_devices([mesh]) == 4
        assert any("shard_groups left out" in n for n in notes), notes
    assert any("NCCL" in n and "not checked" in n for n in notes), notes


def test_quick_has_2_ranks_on_one_scenario_and_says_what_is_left_out() -> None:
    got, notes = _sharded(quick=True)
    assert list(got) == [("ours.torch.SETAdam[sharded-foreach]@2ranks", "float64")]
    (s,) = got.values()
    assert s.scenarios == ("shard_uneven",)
    assert any("4 ranks and the 4-device JAX mesh are left out" in n for n in notes), notes
