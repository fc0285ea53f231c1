"""Opaque, stable names for sequence numbers: a keyed permutation of 64-bit integers.

The audit trail's ids are gapless and in commit order. Shown to a caller who may not see every
event, two ids in a row with a gap between them would tell it that events it cannot see happened
between two it can, and when. Such callers get each position as a token instead: the same number
always gives the same token (a cursor stays valid), and without the key a token says nothing of the
number, nor of its neighbours. A four-round Feistel network over the number's two 32-bit halves
(round function: HMAC-SHA256), and a tag, so that a token not made here is refused.
"""

from __future__ import annotations

import hashlib
import hmac

_ROUNDS = 4
_TAG_BYTES = 6


class SequenceCipher:
    def __init__(self, key: str, purpose: str) -> None:
        self._key = hmac.new(key.encode(), f"aidaccess sequence cipher: {purpose}".encode(), hashlib.sha256).digest()

    def _round(self, number: int, half: int) -> int:
        digest = hmac.new(self._key, bytes([number]) + half.to_bytes(4, "big"), hashlib.sha256).digest()
        return int.from_bytes(digest[:4], "big")

    def _tag(self, block: bytes) -> bytes:
        return hmac.new(self._key, b"tag" + block, hashlib.sha256).digest()[:_TAG_BYTES]

    def hide(self, value: int) -> str:
        if not 0 <= value < 2**64:
            raise ValueError("a 64-bit unsigned number")
        left, right = value >> 32, value & 0xFFFFFFFF
        for number in range(_ROUNDS):
            left, right = right, left ^ self._round(number, right)
        block = ((left << 32) | right).to_bytes(8, "big")
        return (block + self._tag(block)).hex()

    def reveal(self, token: str) -> int | None:
        """The number a token of ``hide`` names, or None for anything else."""
        try:
            raw = bytes.fromhex(token)
        except ValueError:
            return None
        if len(raw) != 8 + _TAG_BYTES or not hmac.compare_digest(raw[8:], self._tag(raw[:8])):
            return None
        value = int.from_bytes(raw[:8], "big")
        left, right = value >> 32, value & 0xFFFFFFFF
        for number in reversed(range(_ROUNDS)):
            left, right = right ^ self._round(number, left), left
        return (left << 32) | right
