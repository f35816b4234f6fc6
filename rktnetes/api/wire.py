"""Protobuf wire framing, so list responses can be assembled from cached, serialized items.

A repeated message field on the wire is just each item as `tag, length, bytes`, one after
another; a response made of cached framed items is byte-for-byte what serializing the whole
message would give, without building and copying a thousand message objects per call.
"""

from __future__ import annotations


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def framed(field_number: int, payload: bytes) -> bytes:
    """`payload` (a serialized message) as an occurrence of a length-delimited field."""
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


class CachedMessage:
    """A view whose protobuf message, and that message framed as one repeated entry of a List
    response, are built once per version of the files it was read from. Subclasses are
    dataclasses with a `_memo` dict, set `LIST_FIELD`, and implement `build(detail)`;
    callers must not mutate the returned message (protobuf copies it into a response)."""

    LIST_FIELD: int
    _memo: dict

    def build(self, detail: bool):
        raise NotImplementedError

    def message(self, detail: bool):
        msg = self._memo.get(detail)
        if msg is None:
            msg = self._memo[detail] = self.build(detail)
        return msg

    def framed(self, detail: bool) -> bytes:
        key = ("framed", detail)
        b = self._memo.get(key)
        if b is None:
            b = self._memo[key] = framed(self.LIST_FIELD, self.message(detail).SerializeToString())
        return b


def serialize(msg_or_bytes) -> bytes:
    """The response serializer: pre-assembled bytes pass through, messages are serialized."""
    if isinstance(msg_or_bytes, bytes):
        return msg_or_bytes
    return msg_or_bytes.SerializeToString()
