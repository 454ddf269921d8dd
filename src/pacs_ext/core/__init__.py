"""Foundations every layer may use: configuration, database, domain errors, auth, logging
and metrics primitives."""
