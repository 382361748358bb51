"""The study specification: what to train, how, over which search space.

A spec comes from a TOML file, CLI flags, or both (flags override the file).
:func:`spec_from_dict` is the single validator: every bad value raises
:class:`SpecError` with the offending value, unknown keys come with a "did you
mean" suggestion. The resolved spec is stored with the study and with every
trial; its hash (everything but name, trial budget and device) guards resumes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnsweep.backend import check_device, check_loop
from rnnsweep.cells import ARCHS, GRU_RESETS, ModelConfig, canonical_arch, get_cell
from rnnsweep.cells import count_params as _count_params
from rnnsweep.cells import hidden_for_budget as _hidden_for_budget
from rnnsweep.errors import SpecError, closest
from rnnsweep.tasks import TASKS, TaskOptionError, make_task, task_option_names
from rnnsweep.train import OPTIMIZERS, TrainConfig

if TYPE_CHECKING:
    from rnnsweep.tasks.base import Task

__all__ = [
    "ADAPTIVE_SAMPLERS",
    "LIMITS",
    "SAMPLERS",
    "CellPlan",
    "ModelSpec",
    "Range",
    "SearchSpace",
    "StudySpec",
    "load_toml",
    "parse_count",
    "spec_from_dict",
    "spec_from_json",
]

SAMPLERS = ("random", "qmc", "tpe", "grid", "gp", "cmaes")
# Samplers whose next point depends on the results so far: their feasible fractions
# measure where the optimiser looked, not the volume of the feasible region.
ADAPTIVE_SAMPLERS = ("tpe", "gp", "cmaes")
NONLINEARITIES = ("tanh", "relu")
INITS = ("gaussian", "orthogonal", "critical")
CRITICAL_ARCHS = ("rnn", "minimalrnn")  # cells the mean-field theory covers

# Upper bounds on counts and sizes, checked before anything is written (README,
# "Limits and exit codes"). Each is far above any study this tool is meant for and
# far below what would exhaust memory or disk while the study is being created.
LIMITS: dict[str, int] = {
    "trials": 100_000,  # trials (slots) per (arch, depth) cell
    "slots": 250_000,  # trials in the whole study: cells x trials
    "depth": 64,  # stacked layers
    "hidden": 1 << 16,  # units per layer
    "params": 100_000_000,  # parameters per trial, readout included
    "grid_points": 1_000,  # grid sampler: values per numeric dimension
    "grid": 100_000,  # grid sampler: points per cell (product over dimensions)
    "steps": 10_000_000,  # optimizer steps per trial
    "batch_size": 65_536,  # sequences per step
    "eval_every": 10_000_000,
    "eval_size": 1_000_000,  # held-out sequences per evaluation
    "diagnostic_sequences": 100_000,
    "seq": 100_000,  # task sizes: seq_len, delay, n_vec, unroll, pad, streams, noise, depth
    "seed": 2**63 - 1,
}
_TASK_SIZE_OPTIONS = (
    "seq_len",
    "delay",
    "n_vec",
    "unroll",
    "pad",
    "n_streams",
    "n_noise",
    "max_depth",
)


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    close = closest(word, choices, cutoff=0.5)
    return f" (did you mean {close!r}?)" if close else ""


def parse_count(value: int | float | str, what: str = "params") -> int:
    """``20000``, ``"20k"``, ``"1.5M"`` -> int; SpecError otherwise."""
    if isinstance(value, bool):
        raise SpecError(f"{what} must be a count like 20000 or '20k', got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{what} must be a positive whole count, got {value!r}")
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*", str(value))
        if not m:
            raise SpecError(f"{what} must be a count like 20000 or '20k', got {value!r}")
        n = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if n < 1 or n != int(n):
        raise SpecError(f"{what} must be a positive whole count, got {value!r}")
    if n > LIMITS["params"]:
        raise SpecError(f"{what} must be <= {LIMITS['params']:,} (the limit), got {value!r}")
    return int(n)


@dataclass(frozen=True)
class Range:
    """A numeric search dimension: uniform on [low, high], or log-uniform when ``log``."""

    low: float
    high: float
    log: bool

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


# The default search space. Ranges are our own (Collins' appendix is not public):
# wide enough that a meaningful share of settings diverges (large learning rates
# with SGD/RMSprop, large init scales with ReLU), narrow enough that most
# gated cells train. `rnnsweep run` prints the share it found.
_DEFAULT_NUMERIC: dict[str, Range] = {
    "lr": Range(1e-4, 1.0, True),  # learning rate
    "init_scale": Range(0.3, 3.0, True),  # sigma in W ~ N(0, sigma^2/fan_in)
    "b_fg": Range(-2.0, 4.0, False),  # forget/update gate bias
    "clip": Range(0.1, 100.0, True),  # max gradient norm
    "sigma_b": Range(0.0, 0.0, False),  # bias spread at init: b ~ N(0, sigma_b^2) (Chen)
}
# sigma_v, the input weights' scale (W^x ~ N(0, sigma_v^2/fan_in)), is tied to
# init_scale unless given: Chen et al.'s phase diagrams fix it apart from sigma_w.
_OPTIONAL_NUMERIC: dict[str, Range] = {"sigma_v": Range(1.0, 1.0, True)}
_DEFAULT_CHOICES: dict[str, tuple[str, ...]] = {
    "nonlinearity": NONLINEARITIES,
    "optimizer": OPTIMIZERS,
    "init": ("gaussian", "orthogonal"),
}
_ALLOWED_CHOICES = {"nonlinearity": NONLINEARITIES, "optimizer": OPTIMIZERS, "init": INITS}


@dataclass(frozen=True)
class SearchSpace:
    """The hyperparameters Optuna samples per trial (architecture and depth are study axes)."""

    lr: Range = _DEFAULT_NUMERIC["lr"]
    init_scale: Range = _DEFAULT_NUMERIC["init_scale"]
    b_fg: Range = _DEFAULT_NUMERIC["b_fg"]
    clip: Range = _DEFAULT_NUMERIC["clip"]
    sigma_b: Range = _DEFAULT_NUMERIC["sigma_b"]
    sigma_v: Range | None = None  # None: tied to init_scale
    nonlinearity: tuple[str, ...] = _DEFAULT_CHOICES["nonlinearity"]
    optimizer: tuple[str, ...] = _DEFAULT_CHOICES["optimizer"]
    init: tuple[str, ...] = _DEFAULT_CHOICES["init"]
    grid_points: int = 3  # values per numeric dimension for the grid sampler
    # The task's sample count b, tuned per trial as in Collins' capacity experiments
    # (an integer, log-uniform); None: the task option's fixed value.
    b: Range | None = None

    def numeric(self) -> dict[str, Range]:
        out = {k: getattr(self, k) for k in _DEFAULT_NUMERIC}
        if self.sigma_v is not None:
            out["sigma_v"] = self.sigma_v
        return out

    def choices(self) -> dict[str, tuple[str, ...]]:
        return {k: getattr(self, k) for k in _DEFAULT_CHOICES}

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: r.to_json() for k, r in self.numeric().items()}
        d.update({k: list(v) for k, v in self.choices().items()})
        d["grid_points"] = self.grid_points
        if self.b is not None:
            d["b"] = self.b.to_json()
        return d


@dataclass(frozen=True)
class ModelSpec:
    """How wide the networks are, and the GRU convention."""

    params: int = 20_000  # parameter budget per trial (Collins' equal-parameter rule)
    hidden: int | None = None  # fixed width per layer; overrides the budget
    gru_reset: str = "pre"  # "pre": Collins eq. (7); "post": torch.nn.GRU


@dataclass(frozen=True)
class CellPlan:
    """One (architecture, depth) cell of a study, with its resolved width."""

    arch: str
    depth: int
    hidden: int
    params: int  # exact count per trial, readout included

    @property
    def key(self) -> str:
        return f"{self.arch}/d{self.depth}"


@dataclass(frozen=True)
class StudySpec:
    """A whole study: task x architectures x depths x search space x sampler x budget."""

    name: str
    task: str = "parens"
    task_options: Mapping[str, Any] = field(default_factory=dict)
    archs: tuple[str, ...] = ("ugrnn",)
    depths: tuple[int, ...] = (1,)
    exclude: tuple[tuple[str, int], ...] = ()  # (arch, depth) cells left out of the grid
    trials: int = 20  # per (arch, depth) cell
    sampler: str = "random"
    seed: int = 0
    device: str = "auto"
    # the time loop ([train] loop; rnnsweep.kernels.loops): how, not what, so it is
    # stored but left out of the identity and hash, like the device
    loop: str = "auto"
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    space: SearchSpace = field(default_factory=SearchSpace)
    # Per-architecture overrides of the space ([space.ARCH] sub-tables).
    space_overrides: Mapping[str, SearchSpace] = field(default_factory=dict)
    space_overrides_raw: Mapping[str, Any] = field(default_factory=dict)

    def space_for(self, arch: str) -> SearchSpace:
        """The search space of one architecture's cells."""
        return self.space_overrides.get(arch, self.space)

    # ---- derived -------------------------------------------------------------

    def make_task(self) -> Task:
        """The task instance, built once per spec object (a user's data file is read and
        hashed once: every derived fact below reads this instance)."""
        task = self.__dict__.get("_task")
        if task is None:
            task = make_task(self.task, dict(self.task_options))
            object.__setattr__(self, "_task", task)
        return task

    def cells(self) -> list[CellPlan]:
        """Every (arch, depth) cell with its width: fixed, or the largest that fits the budget."""
        task = self.make_task()
        plans = []
        for arch in self.archs:
            for depth in self.depths:
                if (arch, depth) in self.exclude:
                    continue
                base = ModelConfig(
                    arch, task.n_in, task.n_out, 1, depth, gru_reset=self.model.gru_reset
                )
                if self.model.hidden is not None:
                    hidden = self.model.hidden
                else:
                    hidden = _hidden_for_budget(self.model.params, base)
                cfg = ModelConfig(**{**base.to_dict(), "hidden": hidden})
                plans.append(CellPlan(arch, depth, hidden, _count_params(cfg)))
        return plans

    def to_json(self) -> dict[str, Any]:
        """The full resolved spec as plain JSON values (stored with the study)."""
        return {
            "name": self.name,
            "task": self.task,
            "task_options": dict(self.make_task().options()),
            "archs": list(self.archs),
            "depths": list(self.depths),
            "exclude": [f"{a}/d{d}" for a, d in self.exclude],
            "trials": self.trials,
            "sampler": self.sampler,
            "seed": self.seed,
            "device": self.device,
            **({"loop": self.loop} if self.loop != "auto" else {}),
            "model": asdict(self.model),
            "train": self.train.to_dict(),
            "space": {
                **self.space.to_json(),
                **{a: dict(v) for a, v in self.space_overrides_raw.items()},
            },
        }

    def identity(self) -> dict[str, Any]:
        """What must not change when a study is resumed (not name, budget, device or loop)."""
        d = self.to_json()
        for k in ("name", "trials", "device", "loop"):
            d.pop(k, None)
        return d

    def spec_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---- parsing -------------------------------------------------------------------

_TOP_KEYS = (
    "name",
    "task",
    "task_options",
    "arch",
    "depth",
    "exclude",
    "trials",
    "sampler",
    "seed",
    "device",
    "model",
    "train",
    "space",
)
_MODEL_KEYS = tuple(f.name for f in fields(ModelSpec))
_TRAIN_KEYS = (*(f.name for f in fields(TrainConfig)), "loop")
_SPACE_KEYS = tuple(f.name for f in fields(SearchSpace))


def _parse_spaces(
    d: Mapping[str, Any], archs: tuple[str, ...]
) -> tuple[SearchSpace, dict[str, SearchSpace], dict[str, Any]]:
    """The common space and per-architecture spaces.

    A sub-table named after an architecture (``[space.rnn]``) overrides the
    common values for that cell only, e.g. to search sigma_b for the vanilla
    RNN and b_fg (mu_b) for the minimalRNN in one study (Chen et al.'s two
    phase planes). Returns (common, {arch: space}, raw overrides for the JSON).
    """
    common_raw = {k: v for k, v in d.items() if not isinstance(v, Mapping) or k in _SPACE_KEYS}
    over_raw = {k: v for k, v in d.items() if isinstance(v, Mapping) and k not in _SPACE_KEYS}
    common = _parse_space(common_raw)
    per_arch: dict[str, SearchSpace] = {}
    raw: dict[str, Any] = {}
    for key, sub in over_raw.items():
        try:
            arch = canonical_arch(key)
        except ValueError:
            raise SpecError(
                f"unknown key {key!r} in [space]{suggest(key, _SPACE_KEYS + ARCHS)}; a "
                "sub-table must be named after an architecture of the study"
            ) from None
        if arch not in archs:
            raise SpecError(f"[space.{key}] names no architecture of this study")
        per_arch[arch] = _parse_space({**common_raw, **sub}, f"[space.{key}]")
        raw[arch] = dict(sub)
    return common, per_arch, raw


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a study file; SpecError for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"study file {str(p)!r} does not exist")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"study file {str(p)!r} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read study file {str(p)!r}: {exc}") from None


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dict merge: values in ``over`` win (used for flags over a file)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _check_keys(d: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for k in d:
        if k not in allowed:
            raise SpecError(
                f"unknown key {k!r} in {where}{suggest(k, allowed)}; "
                f"valid keys: {', '.join(allowed)}"
            )


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        out: list[Any] = []
        for v in value:
            out.extend(_as_list(v))
        return out
    if isinstance(value, str):
        return [s for s in (p.strip() for p in value.split(",")) if s]
    return [value]


def _table(d: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A sub-table of the spec (``[model]``, ``[train]``...): a mapping or nothing."""
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{key} must be a table ([{key}] in a study file), got {value!r}")
    return dict(value)


def _int(value: Any, what: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(f"{what} must be an integer, got {value!r}")
    try:
        n = int(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise SpecError(f"{what} must be an integer, got {value!r}") from None
    if minimum is not None and n < minimum:
        raise SpecError(f"{what} must be >= {minimum}, got {n}")
    if maximum is not None and n > maximum:
        raise SpecError(f"{what} must be <= {maximum:,} (the limit), got {n}")
    return n


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise SpecError(f"{what} must be a number, got {value!r}")
    if not isinstance(value, int | float | str):
        raise SpecError(f"{what} must be a number, got {value!r}")
    try:
        x = float(value)
    except ValueError:
        raise SpecError(f"{what} must be a number, got {value!r}") from None
    except OverflowError:
        raise SpecError(f"{what} is too large for a number, got {value!r}") from None
    if not math.isfinite(x):
        raise SpecError(f"{what} must be finite, got {value!r}")
    return x


def _parse_range(name: str, value: Any, default: Range) -> Range:
    """A scalar (fixed), ``[low, high]``, ``"low:high"`` or ``{low, high, log}``."""
    log = default.log
    if isinstance(value, Mapping):
        _check_keys(value, ("low", "high", "log"), f"space.{name}")
        if "low" not in value or "high" not in value:
            raise SpecError(f"space.{name} needs both low and high, got {dict(value)!r}")
        low, high = value["low"], value["high"]
        log = value.get("log", log)
        if not isinstance(log, bool):
            raise SpecError(f"space.{name}.log must be true or false, got {log!r}")
    elif isinstance(value, str) and ":" in value:
        parts = value.split(":")
        if len(parts) != 2:
            raise SpecError(f"{name} range must be LOW:HIGH, got {value!r}")
        low, high = parts
    elif isinstance(value, list | tuple):
        if len(value) != 2:
            raise SpecError(f"{name} range must be [low, high], got {list(value)!r}")
        low, high = value
    else:
        low = high = value
    lo, hi = _float(low, f"{name} low"), _float(high, f"{name} high")
    if lo > hi:
        raise SpecError(f"{name} range is inverted: low {lo:g} > high {hi:g}")
    if log and lo <= 0:
        raise SpecError(f"{name} is searched on a log scale and needs low > 0, got {lo:g}")
    if name == "clip" and lo <= 0:
        raise SpecError(f"clip must be > 0, got {lo:g}")
    return Range(lo, hi, log)


def _parse_choices(name: str, value: Any) -> tuple[str, ...]:
    items = [str(v).strip().lower() for v in _as_list(value)]
    if not items:
        raise SpecError(
            f"{name} choices are empty; give at least one of {', '.join(_ALLOWED_CHOICES[name])}"
        )
    for it in items:
        if it not in _ALLOWED_CHOICES[name]:
            raise SpecError(
                f"unknown {name} {it!r}{suggest(it, _ALLOWED_CHOICES[name])}; "
                f"choose from {', '.join(_ALLOWED_CHOICES[name])}"
            )
    return tuple(dict.fromkeys(items))


def _parse_space(d: Mapping[str, Any], where: str = "[space]") -> SearchSpace:
    _check_keys(d, _SPACE_KEYS, where)
    kw: dict[str, Any] = {}
    for k, default in {**_DEFAULT_NUMERIC, **_OPTIONAL_NUMERIC}.items():
        if k in d:
            kw[k] = _parse_range(k, d[k], default)
            if k == "sigma_b" and kw[k].low < 0:
                raise SpecError(f"sigma_b is a spread and must be >= 0, got {kw[k].low:g}")
    for k in _DEFAULT_CHOICES:
        if k in d:
            kw[k] = _parse_choices(k, d[k])
    if "grid_points" in d:
        kw["grid_points"] = _int(d["grid_points"], "space.grid_points", 1, LIMITS["grid_points"])
    if "b" in d:
        kw["b"] = _parse_range("b", d["b"], Range(1.0, 1.0, True))
        if kw["b"].low < 1 or kw["b"].low != int(kw["b"].low) or kw["b"].high != int(kw["b"].high):
            raise SpecError(f"space.b is a sample count: whole numbers >= 1, got {d['b']!r}")
    return SearchSpace(**kw)


def _parse_archs(value: Any) -> tuple[str, ...]:
    names = _as_list(value)
    if not names:
        raise SpecError("no architecture given; choose from " + ", ".join(ARCHS))
    out = []
    for n in names:
        try:
            out.append(canonical_arch(str(n)))
        except ValueError:
            raise SpecError(
                f"unknown arch {n!r}{suggest(str(n).lower(), ARCHS)}; choose from "
                f"{', '.join(ARCHS)} (+rnn is an alias of plusrnn)"
            ) from None
    return tuple(dict.fromkeys(out))


def _parse_depths(value: Any) -> tuple[int, ...]:
    items = _as_list(value)
    if not items:
        raise SpecError("no depth given")
    depths = [_int(v, "depth", None, LIMITS["depth"]) for v in items]
    for dep in depths:
        if dep < 1:
            raise SpecError(f"depth must be >= 1, got {dep}")
    return tuple(dict.fromkeys(depths))


def _parse_exclude(
    value: Any, archs: tuple[str, ...], depths: tuple[int, ...]
) -> set[tuple[str, int]]:
    """``["plusrnn/d1", ...]`` -> {(arch, depth)}; each must name a cell of the study."""
    out: set[tuple[str, int]] = set()
    for item in _as_list(value):
        m = re.fullmatch(r"\s*([^/\s]+)\s*/\s*d?(\d+)\s*", str(item))
        if not m:
            raise SpecError(f"exclude entries look like 'plusrnn/d1', got {item!r}")
        arch = _parse_archs([m.group(1)])[0]
        depth = int(m.group(2))
        if arch not in archs or depth not in depths:
            raise SpecError(f"exclude entry {item!r} names no cell of this study")
        out.add((arch, depth))
    return out


def _check_tuned_b(task: str, options: Mapping[str, Any], spaces: list[SearchSpace]) -> None:
    """A tuned ``b`` needs a task with a ``b`` option, and both ends must be valid for it."""
    for sp in spaces:
        if sp.b is None:
            continue
        if "b" not in task_option_names(task):
            raise SpecError(f"space.b tunes a task's sample count b; task {task!r} has none")
        for end in (sp.b.low, sp.b.high):
            try:
                make_task(task, {**options, "b": int(end)})
            except TaskOptionError as exc:
                raise SpecError(f"space.b: {exc}") from None


def default_name(task: str, archs: tuple[str, ...], depths: tuple[int, ...]) -> str:
    return f"{task}-{'+'.join(archs)}-d{'+'.join(str(d) for d in depths)}"


def spec_from_dict(d: Mapping[str, Any]) -> StudySpec:
    """Validate a nested dict (TOML layout) into a StudySpec; SpecError on any problem."""
    _check_keys(d, _TOP_KEYS, "the study spec")

    task = str(d.get("task", "parens")).strip().lower()
    if task not in TASKS:
        raise SpecError(
            f"unknown task {task!r}{suggest(task, tuple(TASKS))}; choose from {', '.join(TASKS)}"
        )
    task_options = _table(d, "task_options")
    _check_task_options(task_options)
    try:
        task_obj = make_task(task, task_options)
    except TaskOptionError as exc:
        raise SpecError(str(exc)) from None

    archs = _parse_archs(d.get("arch", ["ugrnn"]))
    depths = _parse_depths(d.get("depth", [1]))
    exclude = _parse_exclude(d.get("exclude", []), archs, depths)
    for arch in archs:
        min_depth = get_cell(arch).min_depth
        bad = [dep for dep in depths if dep < min_depth and (arch, dep) not in exclude]
        if bad:
            hint = (
                (
                    f" (to run it at other depths only, add --exclude {arch}/d{bad[0]}, "
                    "or exclude = [...] in a study file)"
                )
                if len(depths) > 1
                else ""
            )
            raise SpecError(
                f"{arch} needs depth >= {min_depth}, got {bad[0]}: Collins et al. exclude the "
                "+RNN at depth 1, where its depth output is only a gated copy of its projected "
                f"input and no layer above uses its recurrent output{hint}"
            )
    if all((a, dep) in exclude for a in archs for dep in depths):
        raise SpecError("every (arch, depth) cell is excluded; nothing to run")

    sampler = str(d.get("sampler", "random")).strip().lower()
    if sampler not in SAMPLERS:
        raise SpecError(
            f"unknown sampler {sampler!r}{suggest(sampler, SAMPLERS)}; "
            f"choose from {', '.join(SAMPLERS)}"
        )
    device = check_device(d.get("device", "auto"))

    model_d = _table(d, "model")
    _check_keys(model_d, _MODEL_KEYS, "[model]")
    gru_reset = str(model_d.get("gru_reset", "pre")).lower()
    if gru_reset not in GRU_RESETS:
        raise SpecError(
            f"model.gru_reset must be 'pre' (Collins) or 'post' (torch), got {gru_reset!r}"
        )
    hidden = model_d.get("hidden")
    model = ModelSpec(
        params=parse_count(model_d.get("params", ModelSpec.params)),
        hidden=None
        if hidden is None or (type(hidden) in (int, str) and hidden in (0, ""))
        else _int(hidden, "hidden", 1, LIMITS["hidden"]),
        gru_reset=gru_reset,
    )

    train_d = _table(d, "train")
    _check_keys(train_d, _TRAIN_KEYS, "[train]")
    tkw: dict[str, Any] = {}
    for k in ("steps", "batch_size", "eval_every", "eval_size", "eval_seed"):
        if k in train_d:
            top = LIMITS["seed" if k == "eval_seed" else k]
            tkw[k] = _int(train_d[k], k.replace("_", "-"), 0 if k == "eval_seed" else 1, top)
    for k in ("divergence_factor", "momentum"):
        if k in train_d:
            tkw[k] = _float(train_d[k], k)
    if tkw.get("divergence_factor", 10.0) <= 1.0:
        raise SpecError(f"divergence_factor must be > 1, got {tkw['divergence_factor']}")
    if not 0.0 <= tkw.get("momentum", 0.9) < 1.0:
        raise SpecError(f"momentum must be in [0, 1), got {tkw['momentum']}")
    if "diagnostic_sequences" in train_d:
        tkw["diagnostic_sequences"] = _int(
            train_d["diagnostic_sequences"],
            "diagnostic_sequences",
            1,
            LIMITS["diagnostic_sequences"],
        )
    if "diagnostics" in train_d:
        if not isinstance(train_d["diagnostics"], bool):
            raise SpecError(f"diagnostics must be true or false, got {train_d['diagnostics']!r}")
        tkw["diagnostics"] = train_d["diagnostics"]
    if "dtype" in train_d:
        if train_d["dtype"] not in ("float32", "float64"):
            raise SpecError(f"dtype must be float32 or float64, got {train_d['dtype']!r}")
        tkw["dtype"] = train_d["dtype"]
    train = TrainConfig(**tkw)
    loop = check_loop(train_d.get("loop", "auto"), "[train] loop")

    space, space_overrides, space_raw = _parse_spaces(_table(d, "space"), archs)
    _check_tuned_b(task, task_options, [space, *space_overrides.values()])
    if any("critical" in space_overrides.get(a, space).init for a in archs):
        bad = [
            a
            for a in archs
            if a not in CRITICAL_ARCHS and "critical" in space_overrides.get(a, space).init
        ]
        if bad:
            raise SpecError(
                f"init 'critical' is defined for {' and '.join(CRITICAL_ARCHS)} only "
                f"(the mean-field theory covers them), not {', '.join(bad)}"
            )
        if "rnn" in archs and "relu" in space_overrides.get("rnn", space).nonlinearity:
            raise SpecError(
                "init 'critical' for rnn needs nonlinearity tanh (no chi = 1 line with "
                "finite q* for ReLU); set nonlinearity = ['tanh']"
            )

    name = d.get("name") or default_name(task, archs, depths)
    name = str(name).strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,99}", name):
        raise SpecError(f"study name must be letters, digits and _.+- (max 100), got {name!r}")

    spec = StudySpec(
        name=name,
        task=task,
        task_options=task_obj.options(),
        archs=archs,
        depths=depths,
        exclude=tuple(sorted(exclude)),
        trials=_int(d.get("trials", 20), "trials", 1, LIMITS["trials"]),
        sampler=sampler,
        seed=_int(d.get("seed", 0), "seed", 0, LIMITS["seed"]),
        device=device,
        loop=loop,
        model=model,
        train=train,
        space=space,
        space_overrides=space_overrides,
        space_overrides_raw=space_raw,
    )
    object.__setattr__(spec, "_task", task_obj)  # built once, above: see make_task
    _check_cost(spec)
    return spec


def _check_task_options(options: Mapping[str, Any]) -> None:
    """Task options are single values; sizes are bounded; numbers are finite."""
    for k, v in options.items():
        where = f"task_options.{k}"
        if isinstance(v, Mapping | list | tuple):
            raise SpecError(f"{where} must be a single value, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise SpecError(f"{where} must be finite, got {v!r}")
        if isinstance(v, int) and not isinstance(v, bool):
            top = LIMITS["seq"] if k in _TASK_SIZE_OPTIONS else LIMITS["seed"]
            if abs(v) > top:
                raise SpecError(f"{where} must be <= {top:,} (the limit), got {v}")


def _check_cost(spec: StudySpec) -> None:
    """What creating the study would cost, refused over the limits before anything is built."""
    n_cells = sum(1 for a in spec.archs for dep in spec.depths if (a, dep) not in spec.exclude)
    if n_cells * spec.trials > LIMITS["slots"]:
        raise SpecError(
            f"{n_cells} cells x {spec.trials:,} trials = {n_cells * spec.trials:,} trials, over "
            f"the limit of {LIMITS['slots']:,} per study"
        )
    if spec.sampler == "grid":
        from rnnsweep.study.space import grid  # imports this module

        for arch in spec.archs:
            size = math.prod(len(v) for v in grid(spec.space_for(arch), arch).values())
            if size > LIMITS["grid"]:
                raise SpecError(
                    f"the grid of {arch} has {size:,} points, over the limit of "
                    f"{LIMITS['grid']:,}; lower space.grid_points or fix some dimensions"
                )
    try:
        plans = spec.cells()
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    for plan in plans:
        if plan.params > LIMITS["params"]:
            raise SpecError(
                f"cell {plan.key} would have {plan.params:,} parameters per trial (hidden "
                f"{plan.hidden}), over the limit of {LIMITS['params']:,}"
            )


def spec_from_json(d: Mapping[str, Any]) -> StudySpec:
    """Rebuild a spec from :meth:`StudySpec.to_json` (the form stored with a study)."""
    layout = {
        "name": d["name"],
        "task": d["task"],
        "task_options": dict(d.get("task_options", {})),
        "arch": list(d["archs"]),
        "depth": list(d["depths"]),
        "exclude": list(d.get("exclude", [])),
        "trials": d["trials"],
        "sampler": d["sampler"],
        "seed": d["seed"],
        "device": d.get("device", "auto"),
        "model": {k: v for k, v in d["model"].items() if v is not None},
        "train": {**d["train"], **({"loop": d["loop"]} if "loop" in d else {})},
        "space": dict(d["space"]),
    }
    return spec_from_dict(layout)
