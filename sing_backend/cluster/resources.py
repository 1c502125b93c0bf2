"""Resource arithmetic (cpus, mem, disk, port ranges) and its Mesos JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Range = tuple[int, int]  # inclusive

SCALARS = ("cpus", "mem", "disk")
# Mesos rounds scalars to three decimals so sums of offers never drift; we do the same.
_PRECISION = 3
_EPSILON = 1e-6
# Mesos does not offer crumbs: an offer needs at least this many cpus or this much memory.
MIN_OFFER_CPUS = 0.01
MIN_OFFER_MEM = 32.0


def _round(value: float) -> float:
    return round(value, _PRECISION)


def normalize_ranges(ranges: list[Range] | tuple[Range, ...]) -> tuple[Range, ...]:
    """Sorted, merged, disjoint ranges."""
    out: list[list[int]] = []
    for begin, end in sorted(ranges):
        if begin > end:
            raise ValueError(f"bad range {begin}-{end}")
        if out and begin <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([begin, end])
    return tuple((b, e) for b, e in out)


def subtract_ranges(have: tuple[Range, ...], take: tuple[Range, ...]) -> tuple[Range, ...]:
    result: list[Range] = []
    for begin, end in have:
        pieces = [(begin, end)]
        for tb, te in take:
            next_pieces = []
            for pb, pe in pieces:
                if te < pb or tb > pe:
                    next_pieces.append((pb, pe))
                    continue
                if pb < tb:
                    next_pieces.append((pb, tb - 1))
                if te < pe:
                    next_pieces.append((te + 1, pe))
            pieces = next_pieces
        result.extend(pieces)
    return normalize_ranges(result)


def ranges_contain(have: tuple[Range, ...], want: tuple[Range, ...]) -> bool:
    return all(any(hb <= wb and we <= he for hb, he in have) for wb, we in want)


def _ranges_overlap(a: tuple[Range, ...], b: tuple[Range, ...]) -> bool:
    return any(ab <= be and bb <= ae for ab, ae in a for bb, be in b)


@dataclass(frozen=True)
class Resources:
    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    ports: tuple[Range, ...] = ()

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cpus=_round(self.cpus + other.cpus),
            mem=_round(self.mem + other.mem),
            disk=_round(self.disk + other.disk),
            ports=normalize_ranges(self.ports + other.ports),
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            cpus=max(0.0, _round(self.cpus - other.cpus)),
            mem=max(0.0, _round(self.mem - other.mem)),
            disk=max(0.0, _round(self.disk - other.disk)),
            ports=subtract_ranges(self.ports, other.ports),
        )

    def shortfall(self, available: Resources) -> str | None:
        """Why these resources do not fit in ``available``, or None when they do."""
        for name in SCALARS:
            want, have = getattr(self, name), getattr(available, name)
            if want > have + _EPSILON:
                return f"needs {name} {want:g} but only {have:g} is offered"
        if not ranges_contain(available.ports, self.ports):
            return f"ports {format_ranges(self.ports)} are not within offered {format_ranges(available.ports)}"
        return None

    def is_offerable(self) -> bool:
        return self.cpus >= MIN_OFFER_CPUS or self.mem >= MIN_OFFER_MEM

    def is_empty(self) -> bool:
        return not (self.cpus or self.mem or self.disk or self.ports)

    def to_mesos(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"name": name, "type": "SCALAR", "scalar": {"value": getattr(self, name)}, "role": "*"}
            for name in SCALARS
            if getattr(self, name) > 0
        ]
        if self.ports:
            out.append(
                {
                    "name": "ports",
                    "type": "RANGES",
                    "ranges": {"range": [{"begin": b, "end": e} for b, e in self.ports]},
                    "role": "*",
                }
            )
        return out

    @classmethod
    def from_mesos(cls, resources: Any) -> Resources:
        """Parse a Mesos Resource list; ValueError names what is wrong."""
        if resources is None:
            return cls()
        if not isinstance(resources, list):
            raise ValueError("resources must be a list")
        scalars = dict.fromkeys(SCALARS, 0.0)
        ports: tuple[Range, ...] = ()
        for res in resources:
            if not isinstance(res, dict):
                raise ValueError("each resource must be an object")
            name = res.get("name")
            if name in scalars:
                value = (res.get("scalar") or {}).get("value")
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"resource {name} needs a non-negative scalar value")
                scalars[name] = _round(scalars[name] + float(value))
            elif name == "ports":
                new = _parse_ranges(res)
                if _ranges_overlap(ports, new):
                    raise ValueError("ports are listed twice")
                ports = normalize_ranges(ports + new)
            else:
                raise ValueError(f"unknown resource {name!r} (this cluster offers cpus, mem, disk, ports)")
        return cls(ports=ports, **scalars)


def _parse_ranges(res: dict[str, Any]) -> tuple[Range, ...]:
    items = (res.get("ranges") or {}).get("range")
    if not isinstance(items, list):
        raise ValueError("resource ports needs ranges.range")
    parsed: list[Range] = []
    for item in items:
        try:
            begin, end = int(item["begin"]), int(item["end"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("each port range needs integer begin and end") from None
        if not 0 < begin <= end <= 65535:
            raise ValueError(f"bad port range {begin}-{end}")
        parsed.append((begin, end))
    return normalize_ranges(parsed)


def format_ranges(ranges: tuple[Range, ...]) -> str:
    return ",".join(f"{b}-{e}" if b != e else str(b) for b, e in ranges) or "none"
