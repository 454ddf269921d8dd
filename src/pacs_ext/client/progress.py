"""Progress hooks: the SDK calls these; the CLI draws bars from them. All are no-ops here."""

from __future__ import annotations


class TransferProgress:
    """Subclass and override what you need. Called from the event loop, never from threads."""

    def start(self, files: int, total_bytes: int) -> None:
        """The work is known: `files` files of `total_bytes` bytes in all."""

    def skipped(self, files: int, nbytes: int) -> None:
        """Files already where they should be (a resumed run): counted as done, not sent."""

    def advance(self, nbytes: int) -> None:
        """Bytes sent or received; negative when a failed attempt's bytes are taken back."""

    def file_done(self, name: str) -> None:
        """One file is through."""

    def note(self, message: str) -> None:
        """Something worth telling a person: a retry, a renewed URL, a resumed group."""
