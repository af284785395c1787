"""Compile every CUDA source of this folder with nvcc, for sm_90 and sm_80, warnings as errors.

Runs without a GPU (nvcc only), so a syntax or type error in a kernel cannot land unnoticed.
Each ``.cu`` file is compiled to an object per architecture as written (``-I`` this folder; ptxas
warnings on register spills or local-memory use count as errors too), and once to PTX as the
single text that NVRTC receives at run time (:func:`torch_fused.kernel_source`).  The
compilations run in parallel.

Usage: ``python -m conformance.ports.cuda.compile_check [--nvcc PATH] [--arch 90 --arch 80]``;
exit code 0 when every compilation succeeds, 1 when one fails, 2 when nvcc is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from conformance.ports.cuda import KERNEL_SOURCES, SOURCE_DIR
from conformance.ports.cuda.torch_fused import BLOCK, kernel_source

ARCHS = ("90", "80")

__all__ = ["ARCHS", "CompileResult", "compile_all", "find_nvcc", "main"]


@dataclass(frozen=True)
class CompileResult:
    source: str  # file name, with " (nvrtc text)" for the pasted variant
    arch: str
    ok: bool
    command: tuple[str, ...]
    output: str


def find_nvcc(explicit: str | None = None) -> str | None:
    """nvcc from the argument, $NVCC, PATH, $CUDA_HOME/bin or /usr/local/cuda/bin."""
    if explicit:
        return explicit
    cands = [os.environ.get("NVCC"), shutil.which("nvcc")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            cands.append(str(Path(home) / "bin" / "nvcc"))
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def _flags(arch: str) -> list[str]:
    return [
        f"-arch=sm_{arch}",
        "-std=c++17",
        f"-DSETADAM_BLOCK={BLOCK}",
        "--Werror",
        "all-warnings",
        "-Xptxas",
        "--warn-on-spills,--warn-on-local-memory-usage",
        "-c",
    ]


def _run(label: str, arch: str, cmd: tuple[str, ...]) -> CompileResult:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return CompileResult(label, arch, proc.returncode == 0, cmd, proc.stdout + proc.stderr)


def compile_all(nvcc: str, archs: Sequence[str] = ARCHS) -> list[CompileResult]:
    jobs: list[tuple[str, str, tuple[str, ...]]] = []
    with tempfile.TemporaryDirectory(prefix="setadam-cu-") as tmp:
        tmpd = Path(tmp)
        for name in KERNEL_SOURCES:
            path = SOURCE_DIR / name
            for arch in archs:
                obj = tmpd / f"{path.stem}_{arch}.o"
                cmd = (nvcc, *_flags(arch), "-I", str(SOURCE_DIR), str(path), "-o", str(obj))
                jobs.append((name, arch, cmd))
            pasted = tmpd / f"nvrtc_{name}"
            pasted.write_text(kernel_source(name), encoding="utf-8")
            arch = archs[0]
            flags = [f for f in _flags(arch) if f != "-c"]
            cmd = (nvcc, *flags, "-ptx", str(pasted), "-o", str(tmpd / f"nvrtc_{path.stem}.ptx"))
            jobs.append((f"{name} (nvrtc text, ptx)", arch, cmd))
        workers = max(1, min(len(jobs), os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda j: _run(*j), jobs))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--nvcc", default=None, help="path of nvcc (default: $NVCC, PATH, CUDA_HOME)")
    ap.add_argument("--arch", action="append", default=None, help="SM version, e.g. 90 (repeat)")
    args = ap.parse_args(argv)
    nvcc = find_nvcc(args.nvcc)
    if nvcc is None:
        print("compile_check: nvcc not found (set NVCC or CUDA_HOME)", file=sys.stderr)
        return 2
    results = compile_all(nvcc, tuple(args.arch) if args.arch else ARCHS)
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} sm_{r.arch} {r.source}")
        if not r.ok:
            print("  $ " + " ".join(r.command))
            print("  " + r.output.strip().replace("\n", "\n  "))
    bad = sum(not r.ok for r in results)
    print(f"compile_check: {len(results) - bad}/{len(results)} compilations succeeded ({nvcc})")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
