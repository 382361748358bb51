"""Generated malformed study files and flags (issue 13): every one exit 2, one line.

Our own generator (random.Random with a fixed seed, so every run feeds the same
cases): a valid base study with one or two sites made bad (a wrong type, an
out-of-range or non-finite number, an unknown key at every level), sometimes
combined with a bad flag. Each goes through ``rnnsweep create`` in-process, which
writes the study if the spec were valid, so an accepted case fails loudly.
"""

from __future__ import annotations

import json
import math
import random

import pytest
from conftest import snapshot

N_CASES = 240
HUGE_INT = 10**30
TOO_BIG_FOR_FLOAT = 10**400

# site -> values that must be refused there (each a wrong type, out of range, non-finite).
BAD: dict[tuple[str, ...], list] = {
    ("trials",): [0, -3, 2.5, HUGE_INT, True, "many", {"a": 1}, math.nan],
    ("seed",): [-1, HUGE_INT, 1.5, "x", [1], {"a": 1}],
    ("depth",): [0, -1, 1000, "x", 1.5, {"a": 1}, True],
    ("arch",): ["lstn", 3, [], {"a": 1}, True],
    ("task",): ["paren", 3, {"a": 1}],
    ("sampler",): ["sobol", 1, {"a": 1}],
    ("device",): ["tpu", 7, {"a": 1}],
    ("name",): ["bad name!", "", [1, 2], "x" * 200],
    ("exclude",): ["nonsense", 5, "gru/d9"],
    ("model",): ["big", [1, 2], 3, True],
    ("model", "params"): [0, -5, 1e300, math.inf, math.nan, "lots", True, HUGE_INT],
    ("model", "hidden"): [-1, 10**9, 1.5, True, "wide", {"a": 1}],
    ("model", "gru_reset"): ["middle", 1],
    ("train",): ["fast", [1, 2], 3],
    ("train", "steps"): [0, -1, HUGE_INT, 1.5, "x", math.inf, True],
    ("train", "batch_size"): [0, HUGE_INT, "x", {"a": 1}],
    ("train", "eval_every"): [0, HUGE_INT, 2.5],
    ("train", "eval_size"): [0, HUGE_INT, []],
    ("train", "momentum"): [1.0, -0.5, math.nan, math.inf, TOO_BIG_FOR_FLOAT, "x", True],
    ("train", "divergence_factor"): [1.0, 0, math.nan, -math.inf, TOO_BIG_FOR_FLOAT, {"a": 1}],
    ("train", "dtype"): ["float16", 32, []],
    ("train", "diagnostics"): ["yes", 1],
    ("space",): ["wide", [1], 2],
    ("space", "lr"): [[1.0, 0.1], [0, 1], math.nan, [math.nan, 1], [1, math.inf], "fast"],
    ("space", "init_scale"): [[0, 2], -1.0, [TOO_BIG_FOR_FLOAT, 1], {"low": 1}, [1, 2, 3]],
    ("space", "b_fg"): [[3, 1], math.inf, "a:b", {"low": 0, "high": 1, "log": "no"}],
    ("space", "clip"): [0, -1.0, [0, 1], math.nan],
    ("space", "sigma_b"): [-1.0, [-1, 1], math.nan],
    ("space", "optimizer"): ["adamw", [], ","],
    ("space", "nonlinearity"): ["sigmoid", [1]],
    ("space", "init"): ["xavier", []],
    ("space", "grid_points"): [0, 10**6, 1.5, "x"],
    ("task_options",): [3, "x", [1]],
    ("task_options", "seq_len"): [0, HUGE_INT, 1.5, math.nan, "x", {"a": 1}, [1, 2]],
    ("task_options", "p_noise"): [1.5, -0.1, math.nan, math.inf, "x"],
}
# Unknown keys, at every level of the file.
UNKNOWN: list[tuple[str, ...]] = [
    ("archs",),
    ("trails",),
    ("model", "param"),
    ("train", "step"),
    ("train", "learning_rate"),
    ("space", "learning_rate"),
    ("space", "lr", "lo"),
    ("space", "ugrnn", "lrr"),
    ("task_options", "max_dept"),
]
BAD_FLAGS = [
    ["--trials", "-1"],
    ["--trials", str(HUGE_INT)],
    ["--lr", "nan"],
    ["--lr", "inf:1"],
    ["--clip", "0"],
    ["--params", "1e300"],
    ["--depth", "100000"],
    ["--steps", "0"],
    ["--seed", "-1"],
    ["--arch", "lstn"],
    ["--batch-size", str(HUGE_INT)],
    ["--optimizer", "adamw"],
]
BASE = {
    "arch": ["ugrnn"],
    "depth": [1],
    "trials": 2,
    "train": {"steps": 12, "batch_size": 8, "eval_every": 6, "eval_size": 16},
    "model": {"params": 1000},
    "task_options": {"seq_len": 8},
    "space": {"lr": [0.001, 0.1]},
}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(d: dict) -> str:
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in d.items())


def _set(d: dict, path: tuple[str, ...], value) -> None:
    for k in path[:-1]:
        if not isinstance(d.get(k), dict):
            d[k] = {}
        d = d[k]
    d[path[-1]] = value


def generate(n: int, seed: int = 13) -> list[tuple[str, str, list[str]]]:
    """n distinct (case id, TOML text, flags); every one malformed."""
    rng = random.Random(seed)
    sites = sorted(BAD)
    out: dict[str, tuple[str, str, list[str]]] = {}
    while len(out) < n:
        spec = json.loads(json.dumps(BASE))
        labels, flags = [], []
        for _ in range(rng.choice((1, 1, 2))):
            kind = rng.random()
            if kind < 0.75:
                site = sites[rng.randrange(len(sites))]
                value = rng.choice(BAD[site])
                _set(spec, site, value)
                labels.append(f"{'.'.join(site)}={toml_value(value)[:20]}")
            elif kind < 0.9:
                site = rng.choice(UNKNOWN)
                _set(spec, site, 1)
                labels.append(f"unknown {'.'.join(site)}")
            else:
                flags += rng.choice(BAD_FLAGS)
                labels.append(" ".join(flags))
        case = "; ".join(labels)
        out.setdefault(case, (case, to_toml(spec), flags))
    return list(out.values())


CASES = generate(N_CASES)


def test_the_generator_feeds_enough_distinct_cases():
    assert len({c[0] for c in CASES}) == N_CASES >= 200


@pytest.mark.parametrize("chunk", range(4))
def test_generated_malformed_studies_give_one_line_and_write_nothing(
    cli, tmp_path, monkeypatch, chunk
):
    monkeypatch.chdir(tmp_path)
    for case, toml, flags in CASES[chunk::4]:
        (tmp_path / "s.toml").write_text(toml)
        before = snapshot(tmp_path)
        r = cli("create", "s.toml", *flags)
        lines = [ln for ln in r.err.splitlines() if ln.strip()]
        assert r.code == 2, (case, toml, r.code, r.err)
        assert len(lines) == 1 and lines[0].startswith("Error: "), (case, r.err)
        assert "Traceback" not in r.err and "internal error" not in r.err, (case, r.err)
        assert snapshot(tmp_path) == before, case
