"""Rich progress bars for uploads and downloads: files and bytes, each with rate and ETA."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console, RenderableType
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..client.progress import TransferProgress
from .notes import MAX_NOTES

# A bar redrawn 4 times a second looks as live as at rich's 10, for 40% of the drawing CPU.
REFRESH_PER_SECOND = 4


class _CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = int(task.total or 0)
        if task.fields.get("unit") == "bytes":
            return Text(f"{decimal(int(task.completed))}/{decimal(total)}")
        return Text(f"{int(task.completed):,}/{total:,} files")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("?", style="progress.data.speed")
        if task.fields.get("unit") == "bytes":
            return Text(f"{decimal(int(speed))}/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} files/s", style="progress.data.speed")


class _Bars(Progress):
    """Progress that takes the counts from its owner when it draws, not at every file."""

    def __init__(self, owner: RichTransferProgress, *columns: ProgressColumn, **kw: Any) -> None:
        self.owner = owner  # set first: rich draws once while it is set up
        super().__init__(*columns, **kw)

    def get_renderables(self) -> Iterable[RenderableType]:
        self.owner.sync()
        yield from super().get_renderables()


class RichTransferProgress(TransferProgress):
    """Two bars (files, bytes); retries and other notes print above them, a few at most.

    The SDK calls advance() and file_done() once per file: they only add to two counters,
    which the bars read when they are drawn (a few times a second). Updating rich at every
    file cost a lock, a speed sample and, at each redraw, a walk over thousands of samples.
    Without a terminal nothing is drawn until the end (the final bars are printed once); the
    client commands use notes.TextNotes there instead.
    """

    def __init__(self, verb: str, console: Console, *, enabled: bool = True) -> None:
        self.verb = verb
        self._files: TaskID | None = None
        self._bytes: TaskID | None = None
        self._notes = 0
        self._files_done = 0
        self._bytes_done = 0
        self.progress = _Bars(
            self,
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            _CountColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
            auto_refresh=console.is_terminal,
            refresh_per_second=REFRESH_PER_SECOND,
        )

    def __enter__(self) -> RichTransferProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sync()
        self.progress.stop()

    def sync(self) -> None:
        """Hand the counts to rich (called when the bars are drawn, and at the end)."""
        if self._files is not None and self._bytes is not None:
            self.progress.update(self._files, completed=self._files_done)
            self.progress.update(self._bytes, completed=self._bytes_done)

    def start(self, files: int, total_bytes: int) -> None:
        self._files = self.progress.add_task(f"{self.verb} files", total=files, unit="files")
        self._bytes = self.progress.add_task(f"{self.verb} bytes", total=total_bytes, unit="bytes")

    def skipped(self, files: int, nbytes: int) -> None:
        # Shrink the totals instead of jumping the bars: rates and ETAs stay honest.
        if self._files is None or self._bytes is None or not files:
            return
        for task_id, amount in ((self._files, files), (self._bytes, nbytes)):
            task = self.progress.tasks[task_id]
            self.progress.update(task_id, total=max((task.total or 0) - amount, 0))
        self.progress.console.print(f"{files:,} file(s) ({decimal(nbytes)}) already there")

    def advance(self, nbytes: int) -> None:
        self._bytes_done += nbytes

    def file_done(self, name: str) -> None:
        self._files_done += 1

    def note(self, message: str) -> None:
        self._notes += 1
        if self._notes <= MAX_NOTES:
            self.progress.console.print(Text(message, style="dim"))
        elif self._notes == MAX_NOTES + 1:
            self.progress.console.print("[dim](further notes not shown)[/dim]")
