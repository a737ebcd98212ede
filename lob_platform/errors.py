"""Errors a user can act on: each says what is wrong, where, and what to do."""

from __future__ import annotations


class LobDataError(Exception):
    """Base class for every data problem the platform reports to a user."""


class DataFileNotFound(LobDataError, FileNotFoundError):
    """A file the request needs is not in the data folder."""


class MalformedFileError(LobDataError, ValueError):
    """A file cannot be parsed (bad field, truncated line, misaligned companion file)."""


class ConfigError(LobDataError, ValueError):
    """A source name, time range, partition key or ExchangeConfig is wrong."""


class ValidationError(LobDataError, ValueError):
    """Rows break validation rules; ``report`` holds every rule's count and first rows."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class TrainingDataError(LobDataError, ValueError):
    """A training window or test day cannot give an honest model: too few rows or windows, a class
    absent from the training rows, NaN or infinity in a feature."""


class IncompatibleCheckpoint(LobDataError, ValueError):
    """A stored model was made for another feature list, vocabulary, label or configuration."""
