"""JSON text for jsonb that keeps every float a float.

jsonb stores numbers as ``numeric`` and prints them without an exponent: the float
``4.243184763541981e+16`` goes in as orjson writes it and comes back as the integer
``42431847635419810``, another value once read as a Python int. A number written with a
decimal point keeps it in ``numeric`` (``42431847635419808.0``), so floats that orjson
writes with a positive exponent are written out in full instead. Only documents whose
JSON holds such an exponent take the slow path.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

__all__ = ["dumps"]

_EXPONENT = re.compile(rb"[0-9]e\+")


def dumps(obj: Any) -> bytes:
    """``orjson.dumps``, with floats of 1e16 and more (and -1e16 and less) in full."""
    text = orjson.dumps(obj)
    if _EXPONENT.search(text) is None:  # also true of strings holding "1e+5": harmless
        return text
    # Each such float becomes a placeholder string, unguessable by a client, then its
    # quoted JSON form is replaced by the number written with a decimal point.
    nonce = secrets.token_hex(8)
    found: list[float] = []
    marked = orjson.dumps(_mark(obj, found, nonce))
    for n, value in enumerate(found):
        token = orjson.dumps(f"\x01{nonce}:{n}")
        marked = marked.replace(token, format(value, ".1f").encode())
    return marked


def _mark(value: Any, found: list[float], nonce: str) -> Any:
    if isinstance(value, float):
        if abs(value) >= 1e16:
            found.append(value)
            return f"\x01{nonce}:{len(found) - 1}"
        return value
    if isinstance(value, dict):
        return {k: _mark(v, found, nonce) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mark(v, found, nonce) for v in value]
    return value
