"""Generate the stepsize plots of docs/src/theory/plots.md from the reference.

Usage (from the repository root):

    python docs/scripts/make_plots.py [--out docs/src/assets/plots]

Deterministic (fixed seeds, no timestamps in the PNG metadata) and quick (a few seconds).
Writes PNG files and ``summary.md`` (a Markdown table included by the plots page) into ``--out``.
Every stepsize comes from ``setadam_ref.stepsize`` (which applies the reference's stages), so the
plots show what the reference computes, not a re-derivation.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# The repository root first, so the script uses the checkout it lives in.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from setadam_ref import AdamConfig, SETAdamConfig, stages
from setadam_ref import stepsize as ss

SEED = 20230203  # arXiv 2302.01029
D = 4096  # coordinates in the synthetic layer
T = 100  # step at which the stepsizes are evaluated
SIGMA = 1.5  # log-normal spread of v within the layer
EPS = 1e-8
LR = 1e-3
REGIMES = (
    ("v small against eps", 1e-4),
    ("v comparable to eps", 1.0),
    ("v large against eps", 1e4),
)
PNG_META = {"Software": None}


def layer(scale_over_eps: float, sigma: float = SIGMA, seed: int = SEED) -> np.ndarray:
    """A layer's second moment ``v`` (the unscaled state at step ``T``), log-normal with spread
    ``sigma``, scaled so that the median of the bias-corrected ``v / (1 - beta2**T)`` is
    ``scale_over_eps * EPS``. The same seed gives the same shape at every scale."""
    rng = np.random.default_rng(seed)
    bc2 = 1.0 - 0.999**T
    return scale_over_eps * EPS * bc2 * np.exp(sigma * rng.standard_normal(D))


def configs(tau: float = 0.5) -> tuple[AdamConfig, SETAdamConfig]:
    return AdamConfig(lr=LR, eps=EPS), SETAdamConfig(lr=LR, eps=EPS, tau=tau)


def histograms(out: Path) -> list[tuple[str, float, float, float, float, float]]:
    adam, setadam = configs()
    rows = []
    fig, axes = plt.subplots(1, len(REGIMES), figsize=(13, 3.6), constrained_layout=True)
    for ax, (name, s) in zip(axes, REGIMES, strict=True):
        v = layer(s)
        a = ss.adam_stepsizes(v, T, adam)
        b = ss.setadam_stepsizes(v, T, setadam)
        la, lb = np.log10(a), np.log10(b)
        lo, hi = min(la.min(), lb.min()), max(la.max(), lb.max())
        pad = 0.05 * (hi - lo) + 1e-3
        bins = np.linspace(lo - pad, hi + pad, 60)
        ax.hist(la, bins=bins, alpha=0.6, label="Adam", color="tab:blue")
        ax.hist(lb, bins=bins, alpha=0.6, label="SET-Adam (tau=0.5)", color="tab:orange")
        ax.set_title(f"{name}\nmedian v_hat / eps = {s:g}")
        ax.set_xlabel("log10 stepsize")
        ax.set_ylabel("coordinates")
        ax.legend(fontsize=8)
        c = stages.cos2(v)
        rows.append((name, s, c, ss.max_min_ratio(a), ss.max_min_ratio(b), 0.0))
    fig.suptitle(f"Stepsizes of one layer (d={D}, log-normal v, sigma={SIGMA}, t={T}, eps={EPS:g})")
    fig.savefig(out / "stepsize_histograms.png", dpi=100, metadata=PNG_META)
    plt.close(fig)
    return rows


def ratio_sweep(out: Path) -> None:
    scales = np.logspace(-10, 8, 73)
    adam, _ = configs()
    series: dict[str, list[float]] = {"Adam": []}
    taus = (0.0, 0.5, 0.9)
    for tau in taus:
        series[f"SET-Adam tau={tau:g}"] = []
    for s in scales:
        v = layer(float(s))
        series["Adam"].append(ss.max_min_ratio(ss.adam_stepsizes(v, T, adam)))
        for tau in taus:
            _, cfg = configs(tau)
            series[f"SET-Adam tau={tau:g}"].append(
                ss.max_min_ratio(ss.setadam_stepsizes(v, T, cfg))
            )
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    for name, ys in series.items():
        ax.loglog(scales, ys, label=name, lw=2 if name == "Adam" else 1.5)
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("median bias-corrected v / eps")
    ax.set_ylabel("max / min stepsize in the layer")
    ax.set_title(f"Range of stepsizes across regimes (d={D}, sigma={SIGMA}, t={T})")
    ax.legend()
    ax.grid(True, which="major", alpha=0.3)
    fig.savefig(out / "ratio_vs_scale.png", dpi=100, metadata=PNG_META)
    plt.close(fig)


def ratio_of_ratios(out: Path) -> None:
    """SET-Adam ratio / Adam ratio across regimes, against the 1/(1-tau) limit."""
    scales = np.logspace(-10, 8, 73)
    adam, _ = configs()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    for tau in (0.0, 0.5, 0.9):
        _, cfg = configs(tau)
        r = [
            ss.max_min_ratio(ss.setadam_stepsizes(layer(float(s)), T, cfg))
            / ss.max_min_ratio(ss.adam_stepsizes(layer(float(s)), T, adam))
            for s in scales
        ]
        (line,) = ax.loglog(scales, r, label=f"tau={tau:g}")
        ax.axhline(1.0 / (1.0 - tau), color=line.get_color(), lw=0.8, ls="--")
    ax.set_xlabel("median bias-corrected v / eps")
    ax.set_ylabel("SET-Adam ratio / Adam ratio")
    ax.set_title("Where SET-Adam narrows the range (< 1) and where it widens it (> 1)")
    ax.legend(title="dashed: 1/(1-tau)")
    ax.grid(True, which="major", alpha=0.3)
    fig.savefig(out / "ratio_of_ratios.png", dpi=100, metadata=PNG_META)
    plt.close(fig)


def cos2_vs_spread(out: Path) -> None:
    """c_l of log-normal layers against exp(-sigma^2), the population value (Lemma 2)."""
    sigmas = np.linspace(0.0, 3.0, 31)
    emp = [stages.cos2(layer(1.0, sigma=float(sg))) for sg in sigmas]
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    ax.semilogy(sigmas, emp, "o", ms=4, label=f"reference cos2, d={D}")
    ax.semilogy(sigmas, np.exp(-(sigmas**2)), label="exp(-sigma^2) (d -> infinity)")
    ax.axhline(1.0 / D, color="grey", ls=":", lw=0.8, label="1/d (lower bound)")
    ax.set_xlabel("sigma of log v")
    ax.set_ylabel("c_l")
    ax.set_title("Down-scaling factor against the spread of v")
    ax.legend(fontsize=8)
    fig.savefig(out / "cos2_vs_spread.png", dpi=100, metadata=PNG_META)
    plt.close(fig)


def summary(out: Path, rows: list[tuple[str, float, float, float, float, float]]) -> None:
    lines = [
        "| regime | median $\\hat v/\\varepsilon$ | $c_l$ | Adam max/min | SET-Adam max/min "
        "($\\tau=0.5$) | SET-Adam / Adam |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, s, c, ra, rb, _ in rows:
        lines.append(f"| {name} | {s:g} | {c:.4f} | {ra:.4g} | {rb:.4g} | {rb / ra:.3g} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=here.parent / "src" / "assets" / "plots")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    plt.rcParams.update({"font.size": 9, "svg.hashsalt": "setadam-ref"})
    rows = histograms(out)
    ratio_sweep(out)
    ratio_of_ratios(out)
    cos2_vs_spread(out)
    summary(out, rows)
    assert all(math.isfinite(r[3]) and math.isfinite(r[4]) for r in rows)
    print(f"wrote plots to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
