"""The `outdial simulate --plot` PNG: dial level, occupancy and abandon rate over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_plot(result: dict[str, Any], path: Path) -> None:
    """Three panels, one line per algorithm, from the per-minute series in `result`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    panels = (
        ("level", "dial level (calls in flight / agent)"),
        ("occupancy", "agent occupancy"),
        ("abandon_rate_30min", "abandon rate, trailing 30 min"),
    )
    for name, series in result["series"].items():
        for ax, (key, _) in zip(axes, panels, strict=True):
            values = [float("nan") if v is None else v for v in series[key]]
            if any(v == v for v in values) and not (name == "oracle" and key == "level"):
                ax.plot(series["t_min"], values, label=name, linewidth=1.0)
    target = result["config"]["abandon_target"]
    axes[2].axhline(target, color="black", linestyle="--", linewidth=0.8, label="target")
    for ax, (_, label) in zip(axes, panels, strict=True):
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("minutes")
    s = result["scenario"]
    fig.suptitle(
        f"{s['agents']} agents, answer {s['answer_rate']:g}, talk {s['talk']}, "
        f"wrap {s['wrap']}, ring {s['ring']}, seed {s['seed']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
