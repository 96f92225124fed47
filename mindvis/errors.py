"""Exceptions that mindvis raises for problems a user can fix.

Every error names the file (or config key) involved, the offending value, what was expected and a hint, so that
the message alone tells the user what to do. Library code raises these instead of bare asserts; the workflow
scripts let them propagate, so Snakemake prints the message and deletes the job's (atomic) outputs.
"""

from __future__ import annotations

from os import PathLike
from typing import Any


class MindVisError(Exception):
    """Base class: a problem with user input (data, config, checkpoints) described for humans.

    Args:
        problem: one sentence saying what is wrong.
        path: the file, directory or config key the problem was found in.
        value: the offending value (shown with repr, truncated).
        expected: what would have been accepted.
        hint: what the user can do about it.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | PathLike[str] | None = None,
        value: Any = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        self.value = value
        self.expected = expected
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        parts = [f"{self.path}: {self.problem}" if self.path else self.problem]
        if self.value is not None:
            shown = repr(self.value)
            parts.append(f"  got: {shown if len(shown) <= 200 else shown[:197] + '...'}")
        if self.expected:
            parts.append(f"  expected: {self.expected}")
        if self.hint:
            parts.append(f"  hint: {self.hint}")
        return "\n".join(parts)


class ConfigError(MindVisError):
    """config.yaml (or a value derived from it) is invalid; `path` is the key's dotted path."""


class InputDataError(MindVisError):
    """A raw dataset file is missing, unreadable or inconsistent with its format."""


class ContractError(MindVisError):
    """A preprocessed directory does not follow the preprocessed-data contract."""


class CheckpointError(MindVisError):
    """A checkpoint is missing, of an unknown layout, or does not fit the model."""


class UnsafePickleError(CheckpointError):
    """A pickled checkpoint asks to import something outside the allow-list (it could run code)."""


class WeightsError(MindVisError):
    """A configured network weight file (LDM, metric networks) is missing or does not load."""
