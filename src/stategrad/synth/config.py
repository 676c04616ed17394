"""What determines a synthetic language and its corpus: the trigger classes, the
configuration and its presets."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

PROPERTIES = ("identity", "feature", "class")
VARIANCE_PROFILES = ("equal", "unequal")
SPLITS = ("train", "valid", "test")


class SynthError(ValueError):
    """A synthetic-language setting or file that cannot be used as asked."""


@dataclass(frozen=True)
class TriggerClass:
    """One class of trigger words that fix the word ``delay`` steps later."""

    name: str
    delay: int
    n_triggers: int = 8
    remembered: str = "identity"  # the property of the trigger that selects the target
    n_values: int | None = None  # only for remembered="feature"
    rate: float = 0.05

    @property
    def values(self) -> int:
        """How many different targets the class's triggers select."""
        if self.remembered == "identity":
            return self.n_triggers
        if self.remembered == "class":
            return 1
        return int(self.n_values or 0)

    def value_of(self) -> np.ndarray:
        """The property value of each trigger (index into the class's targets)."""
        i = np.arange(self.n_triggers)
        if self.remembered == "identity":
            return i
        if self.remembered == "class":
            return np.zeros_like(i)
        return i % self.values

    def check(self) -> None:
        where = f"trigger class {self.name!r}"
        if not self.name or any(ch.isspace() for ch in self.name):
            raise SynthError(f"trigger class name must be a non-empty word, got {self.name!r}")
        if not isinstance(self.delay, int) or self.delay < 1:
            raise SynthError(f"{where}: delay must be an integer >= 1, got {self.delay!r}")
        if not isinstance(self.n_triggers, int) or self.n_triggers < 1:
            raise SynthError(f"{where}: n_triggers must be >= 1, got {self.n_triggers!r}")
        if self.remembered not in PROPERTIES:
            raise SynthError(
                f"{where}: remembered must be one of {', '.join(PROPERTIES)}, got {self.remembered!r}"
            )
        if self.remembered == "feature":
            if self.n_values is None or not 2 <= self.n_values <= self.n_triggers:
                raise SynthError(
                    f"{where}: remembered='feature' needs n_values between 2 and n_triggers "
                    f"({self.n_triggers}), got {self.n_values!r}"
                )
        elif self.n_values is not None and self.n_values != self.values:
            raise SynthError(
                f"{where}: n_values is only used with remembered='feature' "
                f"(remembered={self.remembered!r} implies {self.values})"
            )
        if not 0.0 < self.rate < 1.0:
            raise SynthError(f"{where}: rate must be in (0, 1), got {self.rate!r}")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a generated corpus (and its embedding file)."""

    triggers: tuple[TriggerClass, ...]
    n_fillers: int = 50
    filler_zipf: float = 1.0
    end_prob: float = 0.06
    noise: float = 0.0
    train_tokens: int = 500_000
    valid_tokens: int = 50_000
    test_tokens: int = 50_000
    seed: int = 0
    embedding_dim: int = 0  # 0: no embedding file
    variance: str = "equal"
    scales: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "triggers", tuple(self.triggers))
        object.__setattr__(self, "scales", dict(self.scales))

    def check(self) -> None:
        if not self.triggers:
            raise SynthError("at least one trigger class is needed")
        for t in self.triggers:
            t.check()
        names = [t.name for t in self.triggers]
        if len(set(names)) != len(names):
            raise SynthError(f"trigger class names must be distinct, got {names}")
        if not isinstance(self.n_fillers, int) or self.n_fillers < 1:
            raise SynthError(f"n_fillers must be >= 1, got {self.n_fillers!r}")
        if not (self.filler_zipf >= 0 and math.isfinite(self.filler_zipf)):
            raise SynthError(f"filler_zipf must be >= 0, got {self.filler_zipf!r}")
        if not 0.0 < self.end_prob < 1.0:
            raise SynthError(f"end_prob must be in (0, 1), got {self.end_prob!r}")
        free = 1.0 - self.end_prob - sum(t.rate for t in self.triggers)
        if free <= 0:
            raise SynthError(
                f"end_prob + the trigger rates must stay below 1 (filler probability "
                f"{free:.3g}); lower end_prob or the rates"
            )
        if not 0.0 <= self.noise <= 1.0:
            raise SynthError(f"noise must be in [0, 1], got {self.noise!r}")
        for split in SPLITS:
            n = getattr(self, f"{split}_tokens")
            if not isinstance(n, int) or n < 1:
                raise SynthError(f"{split}_tokens must be a positive integer, got {n!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SynthError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.embedding_dim, int) or self.embedding_dim < 0:
            raise SynthError(f"embedding_dim must be >= 0 (0: none), got {self.embedding_dim!r}")
        if self.variance not in VARIANCE_PROFILES:
            raise SynthError(
                f"variance must be one of {', '.join(VARIANCE_PROFILES)}, got {self.variance!r}"
            )
        known = set(embedding_groups(self))
        for key, value in self.scales.items():
            if key not in known:
                raise SynthError(
                    f"unknown embedding scale group {key!r}; the groups are {', '.join(sorted(known))}"
                )
            if not (value > 0 and math.isfinite(value)):
                raise SynthError(f"scale of group {key!r} must be positive, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["triggers"] = [asdict(t) for t in self.triggers]
        d["scales"] = dict(self.scales)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SynthConfig:
        data = dict(data)
        try:
            triggers = tuple(TriggerClass(**t) for t in data.pop("triggers"))
            config = cls(triggers=triggers, **data)
        except (TypeError, KeyError) as exc:
            raise SynthError(f"not a synthetic-language configuration: {exc}") from None
        config.check()
        return config


def property_class(distance: int, n_carriers: int = 8, rate: float = 0.05,
                   name: str | None = None) -> TriggerClass:
    """A planted *property*: a binary feature of its carrier words (carrier i has value
    i mod 2, like singular/plural nouns) that the word exactly ``distance`` steps later
    must agree with (one agreeing word per value).  The words between carry no value of
    this property.  Its classes are ``trigger_<name>`` (all carriers),
    ``trigger_<name>_v0`` / ``_v1`` (by value) and ``target_<name>`` (the agreeing words)."""
    return TriggerClass(name=name or f"p{distance}", delay=distance, n_triggers=n_carriers,
                        remembered="feature", n_values=2, rate=rate)


def _trigger(k: int, n: int, rate: float, **kw: Any) -> TriggerClass:
    return TriggerClass(name=f"k{k}", delay=k, n_triggers=n, rate=rate, **kw)


PRESETS: dict[str, SynthConfig] = {
    # Small and quick: a 64-unit LSTM (frozen 32-dim embeddings, Adam 0.005) comes within
    # 0.015 nats of the entropy rate in about 10 epochs, some 20 s on one CPU core.
    "demo": SynthConfig(
        triggers=(_trigger(5, 6, 0.08), _trigger(15, 6, 0.08)),
        n_fillers=20,
        filler_zipf=1.0,
        end_prob=0.08,
        noise=0.0,
        train_tokens=120_000,
        valid_tokens=8_000,
        test_tokens=8_000,
        embedding_dim=32,
    ),
    # The setting: triggers remembered for 5 and for 15 steps.
    "default": SynthConfig(
        triggers=(_trigger(5, 10, 0.05), _trigger(15, 10, 0.05)),
        n_fillers=100,
        filler_zipf=1.0,
        end_prob=0.06,
        noise=0.05,
        train_tokens=500_000,
        valid_tokens=50_000,
        test_tokens=50_000,
        embedding_dim=48,
    ),
}


def preset(name: str = "default", **overrides: Any) -> SynthConfig:
    """A preset configuration (``demo`` or ``default``) with some fields replaced."""
    if name not in PRESETS:
        raise SynthError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    try:
        config = replace(PRESETS[name], **overrides)
    except TypeError as exc:
        raise SynthError(f"bad override for preset {name!r}: {exc}") from None
    config.check()
    return config


def class_label(t: TriggerClass) -> str:
    """The name of a trigger class's word class in the corpus and the analysis."""
    return f"trigger_{t.name}"


def embedding_groups(config: SynthConfig) -> list[str]:
    """Names of the embedding blocks that a scale can be given to."""
    return ["groups", "filler", "target"] + [class_label(t) for t in config.triggers]
