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


def serialize(msg_or_bytes) -> bytes:
    """The response serializer: pre-assembled bytes pass through, messages are serialized."""
    if isinstance(msg_or_bytes, bytes):
        return msg_or_bytes
    return msg_or_bytes.SerializeToString()
