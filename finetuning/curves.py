"""The learning-curve figure of a fine-tuning run, from SB3's ``progress.csv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (progress.csv column, panel title with unit)
CURVE_PANELS: tuple[tuple[str, str], ...] = (
    ("rollout/success_rate", "success rate (training episodes)"),
    ("rollout/ep_rew_mean", "episode return (shaped reward)"),
    ("embodied/jerk_ms", "mean squared joint jerk (rad²/s⁶)"),
    ("embodied/energy_j", "motor energy per episode (J)"),
)
STEP_COLUMN = "time/total_timesteps"


def plot_learning_curve(progress_csv: Path, out: Path, title: str = "") -> Path:
    """Four panels against environment steps; a column the log lacks gets an empty panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(progress_csv)
    if STEP_COLUMN not in table:
        raise ValueError(f"{progress_csv} has no {STEP_COLUMN!r} column: not an SB3 progress log")
    table = table.sort_values(STEP_COLUMN)
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for axis, (column, label) in zip(axes.ravel(), CURVE_PANELS):
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3)
        if column in table and table[column].notna().any():
            rows = table[[STEP_COLUMN, column]].dropna()
            axis.plot(rows[STEP_COLUMN], rows[column], color="tab:blue", alpha=0.35, linewidth=1)
            window = max(1, len(rows) // 20)
            axis.plot(rows[STEP_COLUMN], rows[column].rolling(window, min_periods=1).mean(), color="tab:blue")
            if column == "rollout/success_rate":
                axis.set_ylim(-0.02, 1.02)  # a rate: 0.99 must not look like a collapse
        else:
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes, color="grey")
    for axis in axes[-1]:
        axis.set_xlabel("environment steps")
    figure.suptitle(title or "fine-tuning learning curve")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def final_window(progress_csv: Path, column: str, rows: int = 10) -> float:
    """The mean of a column over the log's last ``rows`` rows that have it (NaN when none)."""
    import pandas as pd

    table = pd.read_csv(progress_csv)
    if column not in table:
        return float("nan")
    values = table[column].dropna().to_numpy()
    return float(np.mean(values[-rows:])) if len(values) else float("nan")
