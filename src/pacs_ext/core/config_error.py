"""ConfigError alone: the CLI catches it for every command, and client commands (`upload`,
`download`) must not pay for importing the settings machinery (~0.3 s of CPU at start-up)."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the key."""
