"""Progress bars on stderr (rich): bundles done / total, rate, ETA."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    """Bundles per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} bundles/s", style="progress.data.speed")


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

    def start(self, total: int) -> None:
        """Show the bar for ``total`` bundles.

        The bar (and its refresh thread) starts here, once worker processes exist.
        """
        if self.enabled and self._bar is None:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("bundles"),
                _RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self._description, total=total)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, count: int) -> None:
        """Count ``count`` more bundles as done."""
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, count)
