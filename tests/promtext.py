"""A strict parser of the Prometheus text exposition format (version 0.0.4), for the tests.

It refuses what a lenient scraper would let pass: a sample before its family's ``# TYPE``, a
family split in two, a repeated series, a counter without ``_total``, a histogram whose buckets
are not cumulative or whose ``+Inf`` bucket differs from its ``_count``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE_RE = re.compile(
    rf"^({NAME})(?:\{{((?:{LABEL}={LABEL_VALUE})(?:,{LABEL}={LABEL_VALUE})*)?,?\}})?"
    r" (\S+)(?: (-?\d+))?$"
)
PAIR_RE = re.compile(rf"({LABEL})=({LABEL_VALUE})")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ExpositionError(AssertionError):
    pass


@dataclass
class Family:
    name: str
    kind: str = "untyped"
    help: str | None = None
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)


def _value(text: str, line: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)", text):
        raise ExpositionError(f"bad value {text!r} in {line!r}")
    return float(text)


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v[1:-1])


def _family_of(sample: str, kind: str, family: str) -> bool:
    if kind == "histogram":
        return sample in (f"{family}_bucket", f"{family}_sum", f"{family}_count")
    if kind == "summary":
        return sample in (family, f"{family}_sum", f"{family}_count")
    return sample == family


def parse(text: str) -> dict[str, Family]:
    """Parse ``text``; every rule broken raises :class:`ExpositionError`."""
    if not text.endswith("\n"):
        raise ExpositionError("the text does not end with a newline")
    families: dict[str, Family] = {}
    current: Family | None = None
    finished: set[str] = set()
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            m = re.fullmatch(rf"# (HELP|TYPE) ({NAME}) (.*)", line)
            if not m:
                raise ExpositionError(f"unexpected comment line {line!r}")
            what, name, rest = m.groups()
            fam = families.get(name)
            if fam is None:
                if name in finished:
                    raise ExpositionError(f"family {name} appears twice")
                fam = families[name] = Family(name)
            elif fam.samples:
                raise ExpositionError(f"{what} of {name} after its samples")
            if current is not None and current is not fam:
                finished.add(current.name)
            current = fam
            if what == "HELP":
                if fam.help is not None:
                    raise ExpositionError(f"second HELP for {name}")
                fam.help = rest
            else:
                if rest not in TYPES:
                    raise ExpositionError(f"unknown type {rest!r} for {name}")
                if fam.kind != "untyped" or fam.samples:
                    raise ExpositionError(f"TYPE of {name} given twice or late")
                fam.kind = rest
            continue
        if not line:
            raise ExpositionError("empty line")
        m = SAMPLE_RE.match(line)
        if not m:
            raise ExpositionError(f"bad sample line {line!r}")
        name, labels_text, value_text, _ts = m.groups()
        labels = tuple(sorted((k, _unescape(v)) for k, v in PAIR_RE.findall(labels_text or "")))
        if len({k for k, _ in labels}) != len(labels):
            raise ExpositionError(f"repeated label in {line!r}")
        if current is None or not _family_of(name, current.kind, current.name):
            raise ExpositionError(
                f"sample {name} outside its family (after {current and current.name})"
            )
        key = (name, labels)
        if key in current.samples:
            raise ExpositionError(f"repeated series {line!r}")
        current.samples[key] = _value(value_text, line)
    for fam in families.values():
        if fam.kind == "counter" and not fam.name.endswith("_total"):
            raise ExpositionError(f"counter {fam.name} does not end in _total")
        if fam.kind == "histogram":
            _check_histogram(fam)
        for v in fam.samples.values():
            if fam.kind == "counter" and not v >= 0:
                raise ExpositionError(f"negative counter in {fam.name}")
    return families


def _check_histogram(fam: Family) -> None:
    groups: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    sums: set[tuple[tuple[str, str], ...]] = set()
    for (name, labels), v in fam.samples.items():
        rest = tuple(kv for kv in labels if kv[0] != "le")
        if name.endswith("_bucket"):
            le = dict(labels).get("le")
            if le is None:
                raise ExpositionError(f"bucket of {fam.name} without le")
            groups.setdefault(rest, []).append((_value(le, le), v))
        elif name.endswith("_count"):
            counts[rest] = v
        else:
            sums.add(rest)
    if not groups:
        raise ExpositionError(f"histogram {fam.name} has no buckets")
    for rest, buckets in groups.items():
        les = [le for le, _ in buckets]
        if les != sorted(les) or len(set(les)) != len(les):
            raise ExpositionError(f"{fam.name}: buckets not in ascending order {les}")
        if not math.isinf(les[-1]):
            raise ExpositionError(f"{fam.name}: no +Inf bucket")
        values = [v for _, v in buckets]
        if any(b < a for a, b in zip(values, values[1:])):
            raise ExpositionError(f"{fam.name}: buckets not cumulative {values}")
        if rest not in counts or counts[rest] != values[-1]:
            raise ExpositionError(f"{fam.name}: _count differs from the +Inf bucket")
        if rest not in sums:
            raise ExpositionError(f"{fam.name}: no _sum")


def value(
    families: dict[str, Family], family: str, sample: str | None = None, **labels: str
) -> float:
    """The value of one series; a missing series is 0 (a counter never incremented)."""
    fam = families[family]
    key = (sample or family, tuple(sorted(labels.items())))
    return fam.samples.get(key, 0.0)


def series(families: dict[str, Family], family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every series of a family's own sample name, by its labels."""
    fam = families[family]
    return {labels: v for (name, labels), v in fam.samples.items() if name == family}
