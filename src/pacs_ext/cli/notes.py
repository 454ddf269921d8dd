"""Transfer progress for the client commands: bars on a terminal, plain notes elsewhere."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from types import TracebackType

from rich.filesize import decimal

from ..client.progress import TransferProgress

MAX_NOTES = 20


class TextNotes(TransferProgress, AbstractContextManager["TextNotes"]):
    """Without a terminal (a log, a pipe, a job runner): no bars, which nobody would watch;
    notes (retries, renewed URLs) and files found already there, as plain lines on stderr,
    a few at most. The command's summary line on stdout carries the counts and rates."""

    def __init__(self) -> None:
        self._notes = 0

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def skipped(self, files: int, nbytes: int) -> None:
        if files:
            print(f"{files:,} file(s) ({decimal(nbytes)}) already there", file=sys.stderr)

    def note(self, message: str) -> None:
        self._notes += 1
        if self._notes <= MAX_NOTES:
            print(message, file=sys.stderr)
        elif self._notes == MAX_NOTES + 1:
            print("(further notes not shown)", file=sys.stderr)


def transfer_progress(verb: str, *, quiet: bool) -> AbstractContextManager[TransferProgress]:
    """Rich bars (files and bytes) when stderr is a terminal and not `quiet`; TextNotes
    otherwise, without importing rich's console and progress machinery or rendering bars
    at the end."""
    if quiet or not sys.stderr.isatty():
        return TextNotes()
    from .common import err_console
    from .progress_bars import RichTransferProgress

    return RichTransferProgress(verb, err_console())
