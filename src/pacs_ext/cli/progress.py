"""A rich progress bar for long commands (migrate, reindex), on stderr and only on a terminal."""

from __future__ import annotations

from types import TracebackType

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


class FilesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} files/s", style="cyan")


class Bytes(ProgressColumn):
    def render(self, task: Task) -> Text:
        done, total = task.fields.get("nbytes", 0), task.fields.get("total_bytes")
        if not total:
            return Text("")
        return Text(f"{filesize.decimal(done)}/{filesize.decimal(total)}", style="green")


class RichProgress:
    """Implements migration.run.Progress: one bar per phase."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            Bytes(),
            FilesPerSecond(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._task: TaskID | None = None
        self._nbytes = 0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end_phase()
        self._progress.stop()

    def _end_phase(self) -> None:
        if self._task is None:
            return
        task = next(t for t in self._progress.tasks if t.id == self._task)
        if task.total is None:
            self._progress.update(self._task, total=task.completed, completed=task.completed)
        self._progress.stop_task(self._task)

    def phase(self, name: str, total: int | None = None, total_bytes: int | None = None) -> None:
        self._end_phase()
        self._nbytes = 0
        self._task = self._progress.add_task(name, total=total, nbytes=0, total_bytes=total_bytes)

    def advance(self, files: int = 1, nbytes: int = 0) -> None:
        if self._task is None:
            return
        self._nbytes += nbytes
        self._progress.update(self._task, advance=files, nbytes=self._nbytes)
