"""Content addresses (spec/memory.md section 2.4): SHA-256 over RFC 8785 canonical JSON.

Payload = ``{"type", "data", "tags", "text"?, "summary"?}`` with every string NFC-normalized,
``tags`` sorted and de-duplicated, ``text``/``summary`` omitted when null.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import rfc8785

__all__ = ["canonical_bytes", "content_hash", "nfc", "payload_of"]


def nfc(value: Any) -> Any:
    """NFC-normalize every string in a JSON value (keys included)."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [nfc(item) for item in value]
    if isinstance(value, dict):
        return {nfc(key): nfc(item) for key, item in value.items()}
    return value


def payload_of(
    type_name: str,
    data: dict[str, Any],
    tags: list[str],
    text: str | None,
    summary: str | None,
) -> dict[str, Any]:
    """The hashed payload of a record."""
    payload: dict[str, Any] = {"type": type_name, "data": data, "tags": sorted(set(tags))}
    if text is not None:
        payload["text"] = text
    if summary is not None:
        payload["summary"] = summary
    normalized: dict[str, Any] = nfc(payload)
    return normalized


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 bytes.

    Raises:
        ValueError: NaN, an infinity, or an integer outside the I-JSON range.
    """
    return rfc8785.dumps(value)


def content_hash(body: bytes) -> str:
    """``sha256:<64 hex>``, never truncated."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
