"""Rich progress bars for uploads and downloads: files and bytes, each with rate and ETA."""

from __future__ import annotations

from rich.console import Console
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

MAX_NOTES = 20


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


class RichTransferProgress(TransferProgress):
    """Two bars (files, bytes); retries and other notes print above them, a few at most."""

    def __init__(self, verb: str, console: Console, *, enabled: bool = True) -> None:
        self.verb = verb
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            _CountColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self._files: TaskID | None = None
        self._bytes: TaskID | None = None
        self._notes = 0

    def __enter__(self) -> RichTransferProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

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
        if self._bytes is not None:
            self.progress.advance(self._bytes, nbytes)

    def file_done(self, name: str) -> None:
        if self._files is not None:
            self.progress.advance(self._files, 1)

    def note(self, message: str) -> None:
        self._notes += 1
        if self._notes <= MAX_NOTES:
            self.progress.console.print(Text(message, style="dim"))
        elif self._notes == MAX_NOTES + 1:
            self.progress.console.print("[dim](further notes not shown)[/dim]")
