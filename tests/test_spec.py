"""The study spec: TOML files, flags over files, validation, hashing, samplers, distributions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
from conftest import FAST, FAST_TOML
from optuna.distributions import CategoricalDistribution, FloatDistribution

from rnnsweep.cells import ModelConfig, count_params
from rnnsweep.errors import SpecError
from rnnsweep.store import Store
from rnnsweep.study import (
    Range,
    SearchSpace,
    distributions,
    load_toml,
    parse_count,
    spec_from_dict,
)
from rnnsweep.study.space import grid, settings_from_params
from rnnsweep.tasks import make_task

STUDIES = sorted((Path(__file__).resolve().parent.parent / "studies").glob("*.toml"))


def _count(arch: str, depth: int, hidden: int, task, gru_reset: str = "pre") -> int:
    return count_params(
        ModelConfig(arch, task.n_in, task.n_out, hidden, depth, gru_reset=gru_reset)
    )


# ---- study files ------------------------------------------------------------------


def test_quick_toml_is_among_the_study_files():
    assert "quick.toml" in [p.name for p in STUDIES]


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_study_files_load_and_fit_their_budget(path):
    spec = spec_from_dict(load_toml(path))
    plans = spec.cells()
    expected = {(a, d) for a in spec.archs for d in spec.depths} - set(spec.exclude)
    assert len(plans) == len(expected) > 0
    assert {(p.arch, p.depth) for p in plans} == expected
    task = make_task(spec.task, dict(spec.task_options))
    for p in plans:
        assert p.params == _count(p.arch, p.depth, p.hidden, task, spec.model.gru_reset)
        if spec.model.hidden is None:
            assert p.params <= spec.model.params, p
            # The equal-parameter rule picks the widest network that fits.
            assert (
                _count(p.arch, p.depth, p.hidden + 1, task, spec.model.gru_reset)
                > spec.model.params
            )
        else:
            assert p.hidden == spec.model.hidden


def test_flags_override_file_values(cli, tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(
        'name = "over"\narch = "rnn"\ndepth = 2\ntrials = 2\nseed = 7\nsampler = "qmc"\n'
        "[model]\nhidden = 4\n"
        "[train]\nsteps = 20\neval_every = 6\neval_size = 16\nmomentum = 0.5\n"
        "[task_options]\nseq_len = 8\n"
        '[space]\nlr = "1e-3:1e-2"\noptimizer = ["adam", "sgd"]\n'
    )
    url = f"sqlite:///{tmp_path / 'o.db'}"
    r = cli("run", str(toml), "--trials", "1", *FAST, "--storage", url)
    assert r.code == 0, r.err
    store = Store(url, create=False)
    try:
        spec = store.study_spec("over")
        frame = store.trials_frame("over")
    finally:
        store.dispose()
    # Flags win: --trials 1, and FAST's --steps 12 --batch-size 8 --params 1k (which clears
    # the file's fixed width).
    assert spec["trials"] == 1
    assert spec["train"]["steps"] == 12 and spec["train"]["batch_size"] == 8
    assert spec["model"]["params"] == 1000 and spec["model"]["hidden"] is None
    # Everything else comes from the file.
    assert spec["archs"] == ["rnn"] and spec["depths"] == [2]
    assert spec["seed"] == 7 and spec["sampler"] == "qmc"
    assert spec["train"]["eval_every"] == 6 and spec["train"]["eval_size"] == 16
    assert spec["train"]["momentum"] == 0.5
    assert spec["task_options"]["seq_len"] == 8
    assert spec["space"]["lr"] == {"low": 1e-3, "high": 1e-2, "log": True}
    assert spec["space"]["optimizer"] == ["adam", "sgd"]
    assert len(frame) == 1 and frame["hidden"].iloc[0] > 4


# ---- validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "needles"),
    [
        ({"arch": "gru", "sampeler": "tpe"}, ["'sampeler'", "did you mean 'sampler'"]),
        ({"model": {"param": "5k"}}, ["'param' in [model]", "did you mean 'params'"]),
        ({"train": {"batch": 8}}, ["'batch' in [train]", "did you mean 'batch_size'"]),
        ({"space": {"init_scal": [1, 2]}}, ["'init_scal' in [space]", "did you mean 'init_scale'"]),
        (
            {"space": {"lr": {"low": 1e-3, "hihg": 1e-1}}},
            ["'hihg' in space.lr", "did you mean 'high'"],
        ),
    ],
    ids=["top", "model", "train", "space", "range"],
)
def test_unknown_keys_at_every_level_suggest(d, needles):
    with pytest.raises(SpecError) as exc:
        spec_from_dict(d)
    for n in needles:
        assert n in str(exc.value), (n, str(exc.value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([1e-3, 0.1], Range(1e-3, 0.1, True)),
        ("1e-3:0.1", Range(1e-3, 0.1, True)),
        ({"low": 1e-3, "high": 0.1}, Range(1e-3, 0.1, True)),
        ({"low": 1e-3, "high": 0.1, "log": False}, Range(1e-3, 0.1, False)),
        (0.05, Range(0.05, 0.05, True)),
        ("0.05", Range(0.05, 0.05, True)),
    ],
    ids=["list", "colon", "table", "table-linear", "scalar", "scalar-str"],
)
def test_range_forms(value, expected):
    space = spec_from_dict({"space": {"lr": value}}).space
    assert space.lr == expected
    dists = distributions(space, "gru")
    if expected.fixed:
        assert "lr" not in dists
        plan = spec_from_dict({"arch": "gru"}).cells()[0]
        assert settings_from_params(space, plan, {}, seed=0).lr == expected.low
    else:
        assert dists["lr"] == FloatDistribution(expected.low, expected.high, log=expected.log)


def test_linear_dimension_keeps_its_scale():
    space = spec_from_dict({"space": {"b_fg": "-1:2"}}).space
    assert space.b_fg == Range(-1.0, 2.0, False)
    assert distributions(space, "ugrnn")["b_fg"] == FloatDistribution(-1.0, 2.0, log=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("20k", 20_000), ("1.5M", 1_500_000), (20_000, 20_000), ("0.5k", 500), (" 7 ", 7), (3.0, 3)],
)
def test_parse_count(value, expected):
    assert parse_count(value) == expected


@pytest.mark.parametrize("value", ["abc", 0, -5, 2.5, "1.0005k", "", "-3k", True, float("inf")])
def test_parse_count_rejects(value):
    with pytest.raises(SpecError, match="params must be"):
        parse_count(value)


# ---- identity and hash ------------------------------------------------------------

BASE = {
    "name": "a",
    "arch": "gru",
    "depth": 1,
    "trials": 5,
    "device": "cpu",
    "train": {"steps": 50},
}


def _hash(**over) -> str:
    d = {**BASE, **over}
    return spec_from_dict(d).spec_hash()


def test_identity_keys():
    spec = spec_from_dict(BASE)
    identity = spec.identity()
    assert set(identity) >= {
        "task",
        "task_options",
        "archs",
        "depths",
        "sampler",
        "seed",
        "model",
        "train",
        "space",
    }
    assert set(spec.to_json()) - set(identity) == {"name", "trials", "device"}
    assert all(identity[k] == v for k, v in spec.to_json().items() if k in identity)


def test_spec_hash_ignores_name_trials_device():
    h = _hash()
    assert _hash(name="b") == _hash(trials=50) == _hash(device="auto") == h


@pytest.mark.parametrize(
    "over",
    [
        {"train": {"steps": 51}},
        {"arch": "gru,rnn"},
        {"depth": 2},
        {"space": {"lr": "1e-3:1e-1"}},
        {"space": {"clip": {"low": 0.1, "high": 100.0, "log": False}}},
        {"space": {"optimizer": "adam"}},
        {"seed": 1},
        {"sampler": "tpe"},
        {"task_options": {"seq_len": 20}},
    ],
    ids=["steps", "archs", "depths", "lr", "clip-log", "optimizer", "seed", "sampler", "task"],
)
def test_spec_hash_changes_with_what_matters(over):
    assert _hash(**over) != _hash()


def test_default_study():
    spec = spec_from_dict({"arch": "ugrnn", "depth": 8})
    assert spec.name == "parens-ugrnn-d8"
    assert (spec.task, spec.sampler, spec.trials, spec.model.params) == (
        "parens",
        "random",
        20,
        20_000,
    )
    assert spec.model.hidden is None and spec.seed == 0 and spec.device == "auto"
    (plan,) = spec.cells()
    task = make_task("parens", {})
    assert plan.params == _count("ugrnn", 8, plan.hidden, task) <= 20_000
    assert _count("ugrnn", 8, plan.hidden + 1, task) > 20_000
    assert spec.space == SearchSpace()


# ---- samplers, through the CLI -------------------------------------------------------


def _run(cli, tmp_path: Path, name: str, sampler: str, seed: int = 0) -> str:
    toml = tmp_path / "fast.toml"
    if not toml.exists():
        toml.write_text(FAST_TOML)
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    r = cli(
        "run",
        str(toml),
        "--arch",
        "ugrnn",
        "--depth",
        "1",
        "--trials",
        "3",
        "--sampler",
        sampler,
        "--seed",
        str(seed),
        *FAST,
        "--storage",
        url,
        "--study",
        name,
    )
    assert r.code == 0, r.err
    return url


def _complete(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=f"{name}.ugrnn.d1", storage=url)
    assert study.user_attrs["sampler"] == "random"
    return sorted(
        study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number
    )


@pytest.mark.parametrize("sampler", ["random", "qmc", "tpe", "grid"])
def test_each_sampler_runs_three_trials(cli, tmp_path, sampler):
    url = _run(cli, tmp_path, "s", sampler)
    study = optuna.load_study(study_name="s.ugrnn.d1", storage=url)
    trials = study.get_trials()
    assert len(trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert study.user_attrs["sampler"] == sampler
    store = Store(url, create=False)
    try:
        assert store.study_spec("s")["sampler"] == sampler
    finally:
        store.dispose()
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    rows = con.execute("SELECT sampler, state FROM rnnsweep_trials").fetchall()
    con.close()
    assert rows == [(sampler, "complete")] * 3
    space = spec_from_dict({"arch": "ugrnn"}).space
    dists = distributions(space, "ugrnn")
    for t in trials:
        assert set(t.params) == set(dists)  # every default dimension is sampled for ugrnn
    if sampler == "grid":
        values = grid(space, "ugrnn")
        assert all(
            len(v) == 3
            for k, v in values.items()
            if not isinstance(dists[k], CategoricalDistribution)
        )
        for t in trials:
            for k, v in t.params.items():
                assert v in values[k], (k, v, values[k])
        assert len({tuple(sorted(t.params.items())) for t in trials}) == 3  # no repeats


def test_random_sampler_is_reproducible_and_seeded(cli, tmp_path):
    def params(name: str, seed: int) -> list[dict]:
        url = _run(cli, tmp_path, name, "random", seed)
        return [t.params for t in _complete(url, name)]

    a, b, c = params("same", 5), params("same2", 5), params("other", 6)
    # Study names differ but the sampler seed comes from the study seed and the cell only.
    assert a == b
    assert a != c
    assert all(x["lr"] != y["lr"] for x, y in zip(a, c, strict=True))


# ---- distributions ------------------------------------------------------------------

ALL = {"lr", "init_scale", "b_fg", "clip", "nonlinearity", "optimizer", "init"}


@pytest.mark.parametrize(
    ("arch", "missing"),
    [
        ("rnn", {"b_fg"}),  # no gates
        ("irnn", {"b_fg", "nonlinearity"}),  # ReLU by definition, no gates
        ("ugrnn", set()),
        ("gru", set()),
        ("lstm", set()),
        ("plusrnn", {"nonlinearity"}),  # fixed relu + tanh
        ("minimalrnn", {"nonlinearity"}),  # fixed tanh
    ],
)
def test_distributions_per_arch(arch, missing):
    dists = distributions(SearchSpace(), arch)
    assert set(dists) == ALL - missing
    assert dists["optimizer"] == CategoricalDistribution(["adam", "rmsprop", "sgd"])
    assert dists["clip"] == FloatDistribution(0.1, 100.0, log=True)


def test_single_choice_is_fixed_not_sampled():
    space = spec_from_dict({"space": {"optimizer": "sgd", "nonlinearity": "relu"}}).space
    assert set(distributions(space, "gru")) == ALL - {"optimizer", "nonlinearity"}
    plan = spec_from_dict({"arch": "gru"}).cells()[0]
    s = settings_from_params(space, plan, {}, seed=3)
    assert (s.optimizer, s.nonlinearity) == ("sgd", "relu")
