"""Pipeline configuration: one TOML file, validated section by section, with ``--set section.key=value``.

Sections mirror the pipeline stages (``run``, ``generator``, ``lipschitz``, ``dataset``, ``classifiers``,
``evaluation``, ``report``). Unknown keys are errors (a typo must not silently fall back to a default);
each section has an ``options`` table passed unchanged to the stage's library function.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.lipschitz.base import DEFAULT_ANCHORS, DEFAULT_METHOD, DEFAULT_RADIUS
from intrinsic_robustness.pipeline.configfile import apply_overrides, read_toml
from intrinsic_robustness.pipeline.options import (
    CLASSIFIER_SET,
    EVALUATION_SET,
    GENERATOR_SET,
    INVERSION_SET,
    as_validation_error,
    check_attack_options,
    check_options,
)
from intrinsic_robustness.runtime import DEFAULT_DEVICE
from intrinsic_robustness.threat import DEFAULT_EPS, THREATS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


def _registered(registry: Any, value: str, key: str) -> str:
    """``value`` if ``registry`` knows it (aliases resolved), else a validation error naming ``key``."""
    if value not in registry:
        raise ValueError(f"{value!r} is not a known {registry.kind}; choose from {', '.join(registry.names())}")
    return registry.canonical(value)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def check_device(value: str, flag: str = "--device") -> str:
    """A device name (auto, cpu, cuda, cuda:N), lower-cased; else a one-line error naming ``flag``."""
    name = str(value).strip().lower()
    if not _DEVICE.match(name):
        raise UserInputError(f"{flag} {value!r} is not a device; use auto, cpu, cuda or cuda:N")
    return name


class RunConfig(_Section):
    """Run-wide settings: base seed (every stage derives its own), device and CPU threads.

    ``threads`` fixes torch's CPU thread count for the run (unset: torch's default, the number of cores).
    Float results depend on it, so a run meant to be reproduced on other machines should set it.
    """

    name: str = "run"
    seed: int = 0
    device: str = DEFAULT_DEVICE
    threads: int | None = Field(None, ge=1, le=512)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} must be letters, digits, '_', '-' or '.' and start with a letter or digit "
                             "(it names the directory runs/NAME)")
        return value

    @field_validator("device")
    @classmethod
    def _device_ok(cls, value: str) -> str:
        if not _DEVICE.match(value.strip().lower()):
            raise ValueError(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N")
        return value.strip().lower()


class GeneratorConfig(_Section):
    """Where the generator comes from: ``train`` an ACGAN on real data, or ``load`` a spec."""

    source: Literal["train", "load"] = "train"
    family: Literal["acgan", "flow"] = "acgan"
    data: str = "digits"
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float | None = Field(None, gt=0)
    latent_dim: int = Field(100, ge=1)
    image_size: int = Field(28, ge=8)
    spec: str = ""
    weights: str = ""
    min_fidelity: float = Field(0.8, ge=0, le=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _spec_needed(self) -> GeneratorConfig:
        if self.source == "load" and not self.spec.strip():
            raise ValueError("source = 'load' needs spec (a saved directory, 'affine' or 'module:factory')")
        if self.source == "train":
            from intrinsic_robustness.data.real import check_name

            as_validation_error(check_name, self.data, ".data")
            from intrinsic_robustness.generators.train import trainer

            check_options(self.options, trainer(self.family), GENERATOR_SET, ".options")
        elif self.options:
            raise ValueError(f".options: only source = 'train' takes options (got {sorted(self.options)})")
        return self


class LipschitzConfig(_Section):
    """Local Lipschitz estimation: one estimate per method; the bound uses ``percentile`` of each."""

    methods: list[str] = Field(default_factory=lambda: [DEFAULT_METHOD], min_length=1)
    anchors_per_class: int = Field(DEFAULT_ANCHORS, ge=1)
    radius: float = Field(DEFAULT_RADIUS, gt=0, allow_inf_nan=False)
    neighbors: int = Field(2000, ge=1)
    percentile: str = "p99"
    confidence: float | None = Field(None, gt=0, lt=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("methods")
    @classmethod
    def _methods_ok(cls, value: list[str]) -> list[str]:
        from intrinsic_robustness.lipschitz.registry import ESTIMATORS

        names = [_registered(ESTIMATORS, m, "methods") for m in value]
        return list(dict.fromkeys(names))

    @field_validator("percentile")
    @classmethod
    def _percentile_ok(cls, value: str) -> str:
        from intrinsic_robustness.lipschitz.result import PERCENTILE_SLACK

        if value not in PERCENTILE_SLACK:
            raise ValueError(f"{value!r} is not one of {', '.join(PERCENTILE_SLACK)}")
        return value

    def method_options(self, method: str) -> dict[str, Any]:
        """The options of ``method``: ``neighbors``, every flat ``options`` key the method takes, then its own
        table ``options.<method>`` (``[lipschitz.options.certified-local] radius = 0.1``), which wins."""
        from intrinsic_robustness.lipschitz.registry import ESTIMATORS

        takes = ESTIMATORS.get(method).option_names()
        flat = {k: v for k, v in self.options.items() if not isinstance(v, dict)}
        chosen = {"neighbors": self.neighbors, **flat}
        return {**{k: v for k, v in chosen.items() if k in takes}, **self.options.get(method, {})}

    @model_validator(mode="after")
    def _options_known(self) -> LipschitzConfig:
        from intrinsic_robustness.lipschitz.registry import ESTIMATORS

        for name, table in self.options.items():
            if isinstance(table, dict) and name not in self.methods:
                raise ValueError(f"options.{name}: a table of options for a method not in methods {self.methods}")
            if isinstance(table, dict):
                takes = ESTIMATORS.get(name).option_names()
                bad = sorted(set(table) - set(takes))
                if bad:
                    raise ValueError(f"options.{name}.{bad[0]}: not an option of {name}; it takes "
                                     f"{', '.join(takes) or 'none'}")
        taken = {o for m in self.methods for o in ESTIMATORS.get(m).option_names()}
        unknown = sorted(k for k, v in self.options.items() if not isinstance(v, dict) and k not in taken)
        if unknown:
            raise ValueError(f"options {unknown} are not options of {self.methods}; they take {sorted(taken)}")
        for method in self.methods:
            from intrinsic_robustness.lipschitz.estimate import make_estimator

            try:
                make_estimator(method, **self.method_options(method))
            except UserInputError as exc:
                raise ValueError(f"{method}: {exc}") from None
        return self


class DatasetConfig(_Section):
    """The generated dataset every classifier trains and is evaluated on."""

    n_train: int = Field(5000, ge=1)
    n_test: int = Field(500, ge=1)
    batch_size: int = Field(500, ge=1)
    priors: list[float] | None = None

    @field_validator("priors")
    @classmethod
    def _priors_ok(cls, value: list[float] | None) -> list[float] | None:
        import math

        if value is None:
            return None
        if len(value) < 2 or any(not math.isfinite(p) or p < 0 for p in value) or abs(sum(value) - 1) > 1e-6:
            raise ValueError(f"{value}: need one non-negative finite prior per class (at least 2), summing to 1")
        return value


class ClassifierConfig(_Section):
    """One classifier; ``name`` names its directory; unset = paper recipe. ``data``: train on the generated
    dataset (``generated``) or on the real images the generator models (``real``: ``generator.data``'s train
    split at the generated images' size); either way it is evaluated on the generated test split."""

    name: str
    data: Literal["generated", "real"] = "generated"
    method: str = "standard"
    arch: str | None = None
    eps: float | None = Field(None, gt=0, allow_inf_nan=False)
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    n_train: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"name {value!r} must be letters, digits, '_', '-' or '.' (it names a directory)"
            )
        return value

    @field_validator("method")
    @classmethod
    def _method_ok(cls, value: str) -> str:
        from intrinsic_robustness.training.objectives import METHODS

        return _registered(METHODS, value, "method")

    @field_validator("arch")
    @classmethod
    def _arch_ok(cls, value: str | None) -> str | None:
        from intrinsic_robustness.plugins import is_factory_spec

        if value is None or value == "auto" or is_factory_spec(value):
            return value
        from intrinsic_robustness.models.architectures import ARCHITECTURES

        return _registered(ARCHITECTURES, value, "arch")

    @field_validator("options")
    @classmethod
    def _options_ok(cls, value: dict[str, Any]) -> dict[str, Any]:
        from intrinsic_robustness.training.loop import fit

        check_options(value, fit, CLASSIFIER_SET, "")
        return value


class EvaluationConfig(_Section):
    """Attacks on the generated test split under each threat model, at a grid of eps values.

    ``attacks`` maps a threat to attack names (unset: the library's default ensemble for the run's device);
    ``attack_options`` maps an attack name to its keyword arguments; each of ``compare_attacks`` also runs
    alone (unconstrained) on the first ``compare_n`` examples (default: all ``n``), so the report can flag
    the default ensemble as weak where a reference such as AutoAttack finds more (``compare_eps``: the eps at
    which the reference runs, default the whole grid; it is budgeted, so each eps is a run). ``real_n`` also attacks
    every classifier (unconstrained; real images have no latents) on the first ``real_n`` real test images of
    ``generator.data``, so its real-data robustness stands beside its generated-data robustness. ``threat_n``
    gives one threat its own count of test points (e.g. ``{ in-distribution = 100 }`` where the latent attack
    is costly): the first that many of the same points, so every threat's examples are shared.
    ``threat_batch_size`` likewise gives one threat its own batch size (e.g. ``{ in-distribution = 8 }``, so a
    small ``threat_n`` still splits into batches for every torchrun rank).
    """

    threats: list[Literal["unconstrained", "in-distribution"]] = Field(
        default_factory=lambda: list(THREATS), min_length=1
    )
    eps: list[float] = Field(default_factory=lambda: list(DEFAULT_EPS), min_length=1)
    n: int | None = Field(None, ge=1)
    batch_size: int = Field(100, ge=1)
    attacks: dict[str, list[str]] = Field(default_factory=dict)
    attack_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    compare_attacks: list[str] = Field(default_factory=list)
    compare_n: int | None = Field(None, ge=1)
    compare_eps: list[float] | None = Field(None, min_length=1)
    real_n: int | None = Field(None, ge=1)
    threat_n: dict[str, int] = Field(default_factory=dict)
    threat_batch_size: dict[str, int] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("eps", "compare_eps")
    @classmethod
    def _eps_ok(cls, value: list[float] | None) -> list[float] | None:
        import math

        if value is None:
            return None
        if any(not math.isfinite(e) or e <= 0 for e in value):
            raise ValueError(f"{value}: every eps must be a positive finite number")
        return sorted(set(value))

    @field_validator("attacks")
    @classmethod
    def _attack_threats(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        _threat_keys(value, "attacks")
        return {t: _attack_list(names, t) for t, names in value.items()}

    @field_validator("threat_n", "threat_batch_size")
    @classmethod
    def _threat_counts_ok(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        _threat_keys(value, info.field_name)
        small = {k: v for k, v in value.items() if v < 1}
        if small:
            raise ValueError(f"{info.field_name} {small}: each count must be at least 1")
        return value

    @field_validator("compare_attacks")
    @classmethod
    def _compare_ok(cls, value: list[str]) -> list[str]:
        return _attack_list(value, "unconstrained") if value else []

    @model_validator(mode="after")
    def _options_for_known_attacks(self) -> EvaluationConfig:
        from intrinsic_robustness.attacks import ATTACKS

        unknown = sorted(k for k in self.attack_options if k not in ATTACKS)
        if unknown:
            raise ValueError(f"attack_options names unknown attack(s) {unknown}; known: {', '.join(ATTACKS.names())}")
        for name, kwargs in self.attack_options.items():
            check_attack_options(name, kwargs)
        from intrinsic_robustness.attacks.latent import invert_latents
        from intrinsic_robustness.evaluation.run import evaluate

        check_options(self.options, evaluate, EVALUATION_SET, ".options")
        inversion = self.options.get("inversion") or {}
        check_options(inversion, invert_latents, INVERSION_SET, ".options.inversion")
        return self


def _threat_keys(value: dict[str, Any], field: str) -> None:
    """Refuse a per-threat table whose keys are not threat names."""
    bad = [k for k in value if k not in THREATS]
    if bad:
        raise ValueError(f"{field} has threat(s) {bad}; keys must be among {list(THREATS)}")


def _attack_list(names: list[str], threat: str) -> list[str]:
    from intrinsic_robustness.attacks import parse_attack_names

    if not names:
        raise ValueError(f"{threat}: give at least one attack name (or leave the key out for the default)")
    try:
        return parse_attack_names(names, threat)
    except UserInputError as exc:
        raise ValueError(str(exc).replace("--attack ", "")) from None


CONCENTRATION_SET = frozenset({"points", "alpha", "eps", "method", "split_seed", "device", "data"})


class ConcentrationConfig(_Section):
    """Concentration from data (optional section): regions fitted on one half of each sample, measured on the other.

    ``sources``: ``real`` (every image of ``generator.data``, at the generated images' size) and/or ``generated``
    (the generated test split). ``eps`` unset: ``evaluation.eps``. ``n``: at most this many images per sample (a
    seeded subsample). ``options``: keyword arguments of ``estimate_concentration`` (components, max_balls, ...).
    """

    sources: list[Literal["real", "generated"]] = Field(default_factory=lambda: ["real", "generated"], min_length=1)
    alpha: list[float] = Field(default_factory=lambda: [0.01, 0.05], min_length=1)
    eps: list[float] | None = Field(None, min_length=1)
    method: Literal["halfspace", "balls", "all"] = "all"
    split_seed: int = 0
    n: int | None = Field(None, ge=4)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("alpha")
    @classmethod
    def _alpha_ok(cls, value: list[float]) -> list[float]:
        import math

        if any(not math.isfinite(a) or not 0 < a < 1 for a in value):
            raise ValueError(f"{value}: every alpha must lie strictly between 0 and 1")
        return value

    @field_validator("eps")
    @classmethod
    def _eps_ok(cls, value: list[float] | None) -> list[float] | None:
        import math

        if value is not None and any(not math.isfinite(e) or e < 0 for e in value):
            raise ValueError(f"{value}: every eps must be a finite number >= 0")
        return value

    @field_validator("options")
    @classmethod
    def _options_ok(cls, value: dict[str, Any]) -> dict[str, Any]:
        from intrinsic_robustness.concentration import estimate_concentration

        check_options(value, estimate_concentration, CONCENTRATION_SET, "")
        for key in ("components", "max_balls", "max_centres", "chunk"):
            if isinstance(value.get(key), int) and value[key] < 1:
                raise ValueError(f".{key}={value[key]}: must be at least 1")
        return value


class ReportConfig(_Section):
    """What the report draws: bound conditions, grid sizes and flag tolerances."""

    conditions: list[Literal["per_class", "overall"]] = Field(
        default_factory=lambda: ["per_class", "overall"], min_length=1
    )
    samples_per_class: int = Field(8, ge=1)
    adversarial_examples: int = Field(6, ge=0)
    tolerance: float = Field(0.0, ge=0, le=1)


class PipelineConfig(_Section):
    """The whole run: every stage's section."""

    run: RunConfig = Field(default_factory=RunConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    lipschitz: LipschitzConfig = Field(default_factory=LipschitzConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    classifiers: list[ClassifierConfig] = Field(min_length=1)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    concentration: ConcentrationConfig | None = None
    _source: str = PrivateAttr(default="config")  # the file it came from, for messages (never saved)

    @property
    def source(self) -> str:
        """The config file this came from (or "config"), for messages that name a key."""
        return self._source

    @model_validator(mode="after")
    def _sizes_agree(self) -> PipelineConfig:
        n_test, n_train = self.dataset.n_test, self.dataset.n_train
        if self.evaluation.n is not None and self.evaluation.n > n_test:
            raise ValueError(f"evaluation.n = {self.evaluation.n} exceeds dataset.n_test = {n_test}; evaluate at most "
                             "the test split")
        if self.evaluation.real_n is not None or any(c.data == "real" for c in self.classifiers):
            from intrinsic_robustness.data.real import check_name

            try:
                check_name(self.generator.data)
            except UserInputError as exc:
                raise ValueError(f"generator.data (the real images of classifiers.*.data = 'real' and "
                                 f"evaluation.real_n): {exc}") from None
        for i, entry in enumerate(self.classifiers):
            if entry.data == "real":
                continue  # trains on the real train split: dataset.n_train does not bound it
            if entry.n_train is not None and entry.n_train > n_train:
                raise ValueError(f"classifiers.{i}.n_train = {entry.n_train} exceeds dataset.n_train = {n_train}")
            holdout = entry.options.get("holdout")
            if holdout is not None and holdout >= (entry.n_train or n_train):
                raise ValueError(f"classifiers.{i}.options.holdout = {holdout}: must be below dataset.n_train = "
                                 f"{n_train}")
        return self

    @field_validator("classifiers")
    @classmethod
    def _unique_names(cls, value: list[ClassifierConfig]) -> list[ClassifierConfig]:
        names = [c.name for c in value]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"classifier names must be unique; repeated: {dup}")
        return value

    def classifier(self, name: str) -> ClassifierConfig:
        for entry in self.classifiers:
            if entry.name == name:
                return entry
        raise UserInputError(
            f"no classifier named {name!r}; configured: {[c.name for c in self.classifiers]}"
        )


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _one_line(exc: ValidationError, source: str) -> UserInputError:
    """The first validation problem as one line naming the key and what is wrong."""
    first = exc.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key; check the spelling (see 'irob config show' for the valid keys)"
    elif first["type"] == "missing":
        msg = "required key is missing"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if msg.startswith("."):  # a validator naming a key below its own: "generator" + ".options.foo: ..."
        return UserInputError(f"{source}: {_loc(first['loc'])}{msg}{more}")
    if not first["loc"]:  # a whole-config check names its keys itself
        return UserInputError(f"{source}: {msg}{more}")
    return UserInputError(f"{source}: {_loc(first['loc'])}: {msg}{more}")


def config_from_dict(data: dict[str, Any], source: str = "config") -> PipelineConfig:
    """Validate a raw dict into a :class:`PipelineConfig` (one-line error naming the bad key)."""
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, source) from None
    config._source = source
    return config


def load_config(path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read, override and validate a pipeline config file."""
    data = apply_overrides(read_toml(path), list(overrides))
    return config_from_dict(data, str(path))


def config_to_dict(config: PipelineConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (defaults filled in)."""
    return config.model_dump(mode="json")
