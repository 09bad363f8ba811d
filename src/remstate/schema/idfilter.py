"""A Bloom filter of the IDs held in one history segment.

The head's history index keeps one per segment, so that an ID that is not in
the history (the common case: every new append, increment or error record)
is known to be new without reading any segment; a hit is confirmed by
reading the one segment it names. A false positive costs that one read.

Written by hand, not taken from a library, because the bit layout is part of
the stored format: it must read back the same in every remstate version and
from any language, and a library's serialisation is its own to change. The
layout:

- ``m`` bits (the filter's bytes, little-endian bit order within a byte: bit
  ``i`` is ``bits[i // 8] >> (i % 8) & 1``), ``k`` probes; a reader takes any
  length, a writer makes it odd (see ``IdFilter.of``);
- an ID's digest is BLAKE2b-128 of its UTF-8 bytes with the personalisation
  ``remstate-ids-v1``; ``h1`` and ``h2`` are its two little-endian 64-bit halves
  (``h2`` made odd);
- probe ``i`` (``0 <= i < k``) sets bit ``(h1 + i * h2) mod m``
  (Kirsch and Mitzenmacher's double hashing).

Stored as ``{"k": 22, "bloom": "<base64 of the bits>"}``. A reader that finds
another form (a newer remstate's) treats the segment as "maybe holds any ID".

Pure code, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from remstate.errors import InvalidInput

__all__ = ["BITS_PER_ID", "PROBES", "IdFilter", "id_digest"]

#: Bits per ID and probes: a false-positive rate of about 2e-7 per segment
#: ((1 - e^(-22/32))^22), so that looking up a new ID reads a segment for
#: nothing about once in 10,000 lookups with 500 segments, and a 2,048-entry
#: batch about once in 50 batches with 50. The filters cost 5.3 bytes per ID
#: (base64); they live in the head only until they fill a filter page (see
#: ``compaction``), so their size costs the head nothing as the history grows.
BITS_PER_ID = 32
PROBES = 22
_PERSON = b"remstate-ids-v1"
_MASK = (1 << 64) - 1


def id_digest(entry_id: str) -> tuple[int, int]:
    """The two 64-bit hashes of an ID (compute once, probe many filters)."""
    digest = hashlib.blake2b(entry_id.encode("utf-8"), digest_size=16, person=_PERSON).digest()
    h1 = int.from_bytes(digest[:8], "little")
    h2 = int.from_bytes(digest[8:], "little") | 1
    return h1, h2


class IdFilter:
    """An immutable Bloom filter over a set of IDs; see the module docstring."""

    __slots__ = ("_bits", "_encoded", "k", "m")

    def __init__(self, bits: bytes, k: int) -> None:
        if not bits or not 1 <= k <= 64:
            raise InvalidInput("an ID filter needs at least one byte and 1 to 64 probes")
        self._bits = bytes(bits)
        self.k = k
        self.m = len(bits) * 8
        self._encoded: str | None = None

    @classmethod
    def of(cls, ids: Iterable[str], *, bits_per_id: int = BITS_PER_ID) -> IdFilter:
        """The filter of ``ids``, sized for how many there are."""
        digests = [id_digest(i) for i in ids]
        # An odd number of bytes: with m a power of two, the double-hashing probes
        # of different IDs correlate, and the false positives were measured 50
        # times more frequent than the formula (1.7e-5 against 2e-7).
        size = max(9, math.ceil(len(digests) * bits_per_id / 8)) | 1
        k = PROBES if bits_per_id == BITS_PER_ID else max(1, round(bits_per_id * math.log(2)))
        bits = bytearray(size)
        m = size * 8
        for h1, h2 in digests:
            for i in range(k):
                p = ((h1 + i * h2) & _MASK) % m
                bits[p >> 3] |= 1 << (p & 7)
        return cls(bytes(bits), k)

    def may_hold(self, digest: tuple[int, int]) -> bool:
        """False if the ID of this digest is certainly not in the set."""
        h1, h2 = digest
        bits, m = self._bits, self.m
        for i in range(self.k):
            p = ((h1 + i * h2) & _MASK) % m
            if not bits[p >> 3] >> (p & 7) & 1:
                return False
        return True

    def __contains__(self, entry_id: object) -> bool:
        return isinstance(entry_id, str) and self.may_hold(id_digest(entry_id))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdFilter):
            return NotImplemented
        return self.k == other.k and self._bits == other._bits

    def __hash__(self) -> int:
        return hash((self.k, self._bits))

    def __repr__(self) -> str:
        return f"IdFilter(m={self.m}, k={self.k})"

    def to_dict(self) -> dict[str, Any]:
        if self._encoded is None:
            self._encoded = base64.b64encode(self._bits).decode("ascii")
        return {"k": self.k, "bloom": self._encoded}

    @classmethod
    def from_stored(cls, value: object) -> IdFilter | None:
        """The filter in its stored form; ``None`` for a form this version does not know.

        ``None`` means "maybe holds any ID": the caller reads the segment.
        """
        if not isinstance(value, Mapping):
            return None
        k, text = value.get("k"), value.get("bloom")
        if isinstance(k, bool) or not isinstance(k, int) or not isinstance(text, str):
            return None
        if len(value) != 2 or not 1 <= k <= 64:
            return None  # more keys: a form a newer remstate writes; play safe
        try:
            bits = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        return cls(bits, k) if bits else None
