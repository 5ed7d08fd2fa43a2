"""The VALUE table of docs/protocol.md, written independently of splitcore/box for the tests."""
import math

import cbor2

INT64 = range(-(2**63), 2**63)
FRAME_THRESHOLD = 64 * 1024


def box(value, frames):
    """Python value -> CBOR-ready VALUE; large bytes are appended to frames."""
    if isinstance(value, Ref):
        return value.wire()
    if value is None or isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, int):
        return value if value in INT64 else {"$i": str(value)}
    if isinstance(value, bytes):
        if len(value) < FRAME_THRESHOLD:
            return value
        first = len(frames)
        chunks = [value[i:i + (1 << 20)] for i in range(0, len(value), 1 << 20)]
        frames.extend(chunks)
        return {"$F": [first, len(chunks), len(value)]}
    if isinstance(value, bytearray):
        return {"$ba": box(bytes(value), frames)}
    if isinstance(value, complex):
        return {"$c": [value.real, value.imag]}
    if isinstance(value, list):
        return [box(v, frames) for v in value]
    if isinstance(value, tuple):
        return {"$t": [box(v, frames) for v in value]}
    if isinstance(value, dict):
        return {"$d": [x for k, v in value.items() for x in (box(k, frames), box(v, frames))]}
    if isinstance(value, frozenset):
        return {"$fs": [box(v, frames) for v in value]}
    if isinstance(value, set):
        return {"$s": [box(v, frames) for v in value]}
    raise TypeError(f"not plain: {value!r}")


class Ref:
    def __init__(self, boxed):
        self.oid = boxed["$r"]
        self.type = boxed.get("t")
        self.callable = boxed.get("cl")

    def wire(self):
        return {"$r": self.oid}

    def __repr__(self):
        return f"Ref({self.oid}, {self.type})"


def unbox(value, frames):
    if isinstance(value, list):
        return [unbox(v, frames) for v in value]
    if not isinstance(value, dict):
        return value
    if "$r" in value:
        return Ref(value)
    if "$q" in value:
        return ("$q", value["$q"], tuple(unbox(value["v"], frames)), unbox(value["x"], frames))
    if "$o" in value:
        return ("$o", value["$o"], [unbox(v, frames) for v in value["f"]])
    (tag, inner), = value.items()
    if tag == "$i":
        return int(inner)
    if tag == "$F":
        first, count, total = inner
        data = b"".join(bytes(f) for f in frames[first:first + count])
        assert len(data) == total
        return data
    if tag == "$ba":
        return bytearray(unbox(inner, frames))
    if tag == "$H":
        return unbox(cbor2.loads(frames[inner]), frames)
    if tag == "$u":
        return unbox(inner, frames).decode("utf-8", "surrogatepass")
    if tag == "$c":
        return complex(*inner)
    if tag == "$t":
        return tuple(unbox(v, frames) for v in inner)
    if tag == "$d":
        items = [unbox(v, frames) for v in inner]
        return dict(zip(items[::2], items[1::2]))
    if tag == "$s":
        return {unbox(v, frames) for v in inner}
    if tag == "$fs":
        return frozenset(unbox(v, frames) for v in inner)
    raise AssertionError(f"unknown tag {tag}")


def same(a, b):
    """Equality that also holds for NaN and checks types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b
