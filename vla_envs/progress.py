"""The progress bar every long command shows: what, a bar, done/total, elapsed and an ETA."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_columns(unit: str, *extra: ProgressColumn) -> tuple[ProgressColumn, ...]:
    """Columns for ``rich.progress.Progress``: description, bar, ``done/total unit``, elapsed,
    ETA, then ``extra`` (e.g. a loss or the last episode's outcome)."""
    return (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        *extra,
    )


def episode_progress(enabled: bool, console=None):
    """A ``Progress`` over episodes with the last episode's label (``task.fields["last"]``), or
    ``None`` when disabled: ``vla-envs eval`` and ``vla-envs export`` show the same bar."""
    if not enabled:
        return None
    from rich.progress import Progress

    return Progress(*progress_columns("episodes", TextColumn("{task.fields[last]}")), console=console)
