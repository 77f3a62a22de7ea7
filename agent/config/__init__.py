"""The keepalived.conf language: reader, model, checks and renderer."""

from __future__ import annotations

from .parser import ParseResult, parse
from .validate import validate


def load(path: str, *, config_id: str | None = None, text: str | None = None,
         interfaces: set[str] | None = None) -> ParseResult:
    """Read and check a configuration as ``keepalived -t`` does.

    ``interfaces`` defaults to the links of the network namespace we run in.
    """
    result = parse(path, config_id=config_id, text=text)
    validate(result, interfaces=interfaces)
    return result


__all__ = ["ParseResult", "load", "parse", "validate"]
