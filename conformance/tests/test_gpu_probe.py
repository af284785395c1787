"""Whether this machine has a GPU for torch, decided without importing torch where it has none."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conformance.adapters import registry


def test_no_gpu_nodes_means_torch_sees_no_cuda_device() -> None:
    torch = pytest.importorskip("torch")
    if registry.no_gpu_here():
        assert not torch.cuda.is_available()
    else:  # a node exists: torch is asked, and its answer is what cuda_available() says
        assert registry.cuda_available() == torch.cuda.is_available()


def test_listing_the_ports_imports_no_framework_on_a_machine_without_gpu() -> None:
    pytest.importorskip("torch")
    if not registry.no_gpu_here():
        pytest.skip("this machine has a GPU device node: torch is asked")
    code = (
        "import sys\n"
        "from conformance.adapters.registry import available_ports\n"
        "specs, _ = available_ports()\n"
        "assert specs, 'no port listed'\n"
        "print(sorted(m for m in ('torch', 'jax', 'optax') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_gpu_node_sends_the_question_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut only ever answers 'no GPU': with a node present, torch decides."""
    monkeypatch.setattr(registry.os.path, "exists", lambda p: p == "/dev/nvidiactl")
    assert not registry.no_gpu_here()
    monkeypatch.setattr(registry.os.path, "exists", lambda p: False)
    assert registry.no_gpu_here() == sys.platform.startswith("linux")
