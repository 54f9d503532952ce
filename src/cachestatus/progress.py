"""Progress bars on stderr (rich): bundles done / total, rate, ETA.

rich is imported only when a bar is shown: a quiet or piped run does not pay for it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def _bar() -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Bundles per second."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            rate = "" if speed is None else f"{speed:,.0f} bundles/s"
            return Text(rate, style="progress.data.speed")

    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("bundles"),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, console=Console(stderr=True), transient=False)


class BundleProgress:
    """A rich progress bar for a scan; does nothing when disabled.

    Shown when stderr is a terminal, or always with ``force`` (``--progress``); ``quiet`` hides it.
    """

    def __init__(self, description: str, force: bool = False, quiet: bool = False) -> None:
        self.enabled = not quiet and (force or sys.stderr.isatty())
        self._description = description
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        return self

    def start(self, total: int | None) -> None:
        """Show the bar for ``total`` bundles; for bundles not counted before the scan
        (``None``: the levels are listed in parts, on a cluster), the bundles done and their
        rate, and the total once the scan ends.

        The bar (and its refresh thread) starts here, once worker processes exist.
        """
        if self.enabled and self._bar is None:
            self._bar = _bar()
            self._bar.start()
            description = self._description
            if total is None:
                description += " (total known once listed)"
            self._task = self._bar.add_task(description, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            if self._task is not None and self._bar.tasks[0].total is None:
                done = self._bar.tasks[0].completed
                self._bar.update(self._task, total=done, description=self._description)
            self._bar.stop()

    def advance(self, count: int) -> None:
        """Count ``count`` more bundles as done."""
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, count)
