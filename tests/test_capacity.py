"""Collins' capacity half: the information measure, the rcf task, the knee finder, best rows.

References are independent of the code under test: stored bits are recounted from
per-sample predictions with plain Python, rcf targets are rebuilt pattern by pattern
from a fresh generator, knees are planted in synthetic curves.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from rnnsweep.report.best import best_rows, higher_is_better
from rnnsweep.report.capacity import knee_width
from rnnsweep.tasks import CapacityTask, RcfTask, gaussian_bits, make_task, stored_bits

# --------------------------------------------------------------------------- measure


def _brute_bits(correct: list[bool]) -> float:
    """I from a list of per-sample outcomes: b labels of 1 bit each, minus b H(p), with
    H spelled out by cases (0 log 0 = 0) in natural logs."""
    b = len(correct)
    p = sum(correct) / b
    if p in (0.0, 1.0):
        h = 0.0
    else:
        h = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
    return b * (1.0 - h)


def _logits_with(task: CapacityTask, right: list[bool]) -> torch.Tensor:
    """Model output (1, T, b, 2) that classifies pattern i right iff ``right[i]``."""
    out = torch.zeros(1, task.seq_len, task.b, 2)
    for i, ok in enumerate(right):
        label = int(task.labels[i])
        guess = label if ok else 1 - label
        out[0, -1, i, guess] = 3.0
    return out


@pytest.mark.parametrize(
    ("n_right", "case"),
    [(64, "p = 1"), (32, "p = 0.5"), (48, "p = 0.75"), (16, "p = 0.25 < 0.5"), (0, "p = 0")],
)
def test_stored_bits_from_per_sample_predictions(n_right: int, case: str) -> None:
    task = CapacityTask(b=64, n_bits=8, unroll=3, data_seed=5)
    g = torch.Generator().manual_seed(n_right)
    order = torch.randperm(64, generator=g).tolist()
    right = [False] * 64
    for i in order[:n_right]:
        right[i] = True
    out = _logits_with(task, right)
    batch = task.eval_batch(0, 0)
    p = float(task.metric(out, batch)[0])
    assert p == pytest.approx(n_right / 64, abs=1e-7), case
    got = task.summary(eval_loss=0.0, metric=p, n_params=200)
    want = _brute_bits(right)
    assert got["bits"] == pytest.approx(want, abs=1e-6), case
    assert got["bits_per_param"] == pytest.approx(want / 200, abs=1e-8), case
    assert got["b"] == 64
    # The objective a tuner minimises is minus the stored bits.
    assert task.objective(0.0, p) == pytest.approx(-want, abs=1e-6)


def test_edge_cases_of_the_measure_are_pinned() -> None:
    """p = 1: every label (b bits); p = 1/2: nothing; p < 1/2: what rnnsweep does.

    Collins' formula I = b + b (p log2 p + (1 - p) log2 (1 - p)) is symmetric about
    1/2, and rnnsweep applies it as written (SCIENCE.md, capacity.py): a classifier
    right 25% of the time stores as much as one right 75% of the time (flip its
    answers). This test pins that choice: I(0.25) = I(0.75) > 0, and I(0) = b.
    """
    b = 100
    assert stored_bits(b, 1.0) == b
    assert stored_bits(b, 0.5) == 0.0
    assert stored_bits(b, 0.25) == pytest.approx(stored_bits(b, 0.75), abs=1e-12)
    assert stored_bits(b, 0.25) == pytest.approx(b * (1 - 0.8112781244591328), abs=1e-9)
    assert stored_bits(b, 0.25) > 0
    assert stored_bits(b, 0.0) == b
    assert math.isinf(CapacityTask(b=8, n_bits=4).objective(0.1, math.nan))


# --------------------------------------------------------------------------- rcf


def test_rcf_encoding_pattern_first_target_last() -> None:
    task = RcfTask(b=20, n_bits=6, n_out=2, unroll=4, data_seed=3)
    assert (task.n_in, task.n_out, task.seq_len) == (6, 2, 4)
    batch = task.sample(torch.Generator().manual_seed(0), 50)
    assert batch.x.shape == (4, 50, 6) and batch.y.shape == (4, 50, 2)
    assert batch.y.dtype == torch.float32
    assert batch.mask.tolist() == [[0.0] * 50] * 3 + [[1.0] * 50]
    assert torch.all(batch.x[1:] == 0) and torch.all(batch.y[:-1] == 0)
    assert set(batch.x[0].unique().tolist()) <= {0.0, 1.0}
    # every sampled row is one of the b patterns, with that pattern's target
    for i in range(50):
        hits = (task.patterns == batch.x[0, i]).all(dim=1).nonzero().flatten().tolist()
        assert len(hits) == 1
        assert torch.equal(batch.y[-1, i], task.targets[hits[0]])


def test_rcf_targets_against_a_brute_force_rebuild() -> None:
    """Patterns as the capacity task draws them (distinct, same seed, same set), then one
    N(0, I) target per pattern from the same generator, drawn one pattern at a time."""
    b, n_bits, n_out, seed = 12, 5, 3, 11
    task = RcfTask(b=b, n_bits=n_bits, n_out=n_out, data_seed=seed)
    cap = CapacityTask(b=b, n_bits=n_bits, data_seed=seed)
    assert torch.equal(task.patterns, cap.patterns)
    g = torch.Generator().manual_seed(seed)
    codes = torch.randperm(2**n_bits, generator=g)[:b].tolist()  # 32 <= 4 * 12: dense path
    for i, c in enumerate(codes):
        assert task.patterns[i].tolist() == [float((c >> k) & 1) for k in range(n_bits)]
    assert len({tuple(r) for r in task.patterns.tolist()}) == b
    want = torch.randn(b, n_out, generator=g)
    assert torch.equal(task.targets, want)
    ev = task.eval_batch(123, 7)  # all b, in order, whatever seed and size
    assert torch.equal(ev.y[-1], task.targets) and torch.equal(ev.x[0], task.patterns)


def test_rcf_is_deterministic_per_seed() -> None:
    a, b = RcfTask(b=30, data_seed=4), RcfTask(b=30, data_seed=4)
    assert torch.equal(a.targets, b.targets) and torch.equal(a.patterns, b.patterns)
    assert not torch.equal(a.targets, RcfTask(b=30, data_seed=5).targets)
    x1 = a.sample(torch.Generator().manual_seed(9), 16)
    x2 = b.sample(torch.Generator().manual_seed(9), 16)
    assert torch.equal(x1.x, x2.x) and torch.equal(x1.y, x2.y)
    x3 = a.sample(torch.Generator().manual_seed(10), 16)
    assert not torch.equal(x1.x, x3.x)


def test_rcf_loss_and_bits_from_per_sample_predictions() -> None:
    task = RcfTask(b=40, n_bits=8, n_out=2, data_seed=1)
    batch = task.eval_batch(0, 0)
    g = torch.Generator().manual_seed(2)
    noise = 0.3 * torch.randn(40, 2, generator=g)
    out = torch.zeros(1, task.seq_len, 40, 2)
    out[0, -1] = task.targets + noise
    mse = float(task.metric(out, batch)[0])
    brute = sum(float(noise[i, j]) ** 2 for i in range(40) for j in range(2)) / 80
    assert mse == pytest.approx(brute, rel=1e-5)
    assert float(task.loss(out, batch)[0]) == pytest.approx(brute, rel=1e-5)
    got = task.summary(mse, mse, n_params=50)
    want = 80 * 0.5 * math.log(1.0 / brute) / math.log(2)
    assert got["bits"] == pytest.approx(want, rel=1e-5)
    assert got["bits_per_param"] == pytest.approx(want / 50, rel=1e-5)
    # Predicting zero (the mean) stores nothing; a worse MSE is clipped at 0 bits.
    assert task.summary(1.0, 1.0, 50)["bits"] == 0.0
    assert gaussian_bits(10, 4.0) == 0.0 and math.isnan(gaussian_bits(10, math.nan))


def test_rcf_rejects_bad_options() -> None:
    from rnnsweep.tasks import TaskOptionError

    with pytest.raises(TaskOptionError, match="b must be <= 16"):
        make_task("rcf", {"b": 17, "n_bits": 4})
    with pytest.raises(TaskOptionError, match="n_out must be >= 1"):
        make_task("rcf", {"n_out": 0})


# --------------------------------------------------------------------------- knee


@pytest.mark.parametrize("knee", [8, 16, 32])
def test_knee_finder_on_piecewise_curves(knee: int) -> None:
    """log error falls steeply to the knee, then slowly: the corner is found."""
    widths = [4, 6, 8, 12, 16, 24, 32, 48, 64]
    errors = [
        math.exp(-2.0 * math.log2(w / knee)) if w <= knee else math.exp(-0.1 * math.log2(w / knee))
        for w in widths
    ]
    assert knee_width(widths, errors) == knee
    # order does not matter, and mild noise does not move it
    rng = torch.Generator().manual_seed(knee)
    noisy = [e * math.exp(0.05 * float(torch.randn(1, generator=rng))) for e in errors]
    assert knee_width(widths[::-1], noisy[::-1]) == knee


def test_knee_finder_needs_three_points_and_drops_bad_ones() -> None:
    assert knee_width([4, 8], [1.0, 0.5]) is None
    assert knee_width([4, 8, 16, 32], [1.0, math.nan, 0.0, 0.5]) is None
    # a smooth convex curve exp(-w/8): steepest bend found at a width, not None
    widths = [2, 4, 8, 16, 32, 64]
    assert knee_width(widths, [math.exp(-w / 8) + 1e-3 for w in widths]) in widths


# --------------------------------------------------------------------------- best rows


def _frame() -> pd.DataFrame:
    rows = [
        # arch, params, diverged, bits_per_param, metric, final_loss, b
        ("gru", 300, False, 1.2, 0.9, 0.3, 500),
        ("gru", 300, False, 1.5, 0.8, 0.4, 900),
        ("gru", 300, True, math.nan, math.nan, math.nan, None),
        ("gru", 600, False, 0.7, 0.95, 0.1, 300),
        ("rnn", 300, True, math.nan, math.nan, math.nan, None),
    ]
    return pd.DataFrame(
        [
            {
                "arch": a,
                "depth": 1,
                "params": p,
                "hidden": p // 50,
                "diverged": d,
                "bits_per_param": bpp,
                "metric": m,
                "metric_name": "accuracy",
                "final_loss": fl,
                "b": b,
                "lr": 0.01,
                "trial_number": i,
                "sampler": "gp",
                "study": "s",
                "config_json": "{}",
            }
            for i, (a, p, d, bpp, m, fl, b) in enumerate(rows)
        ]
    )


def test_best_rows_pick_the_best_feasible_trial_per_cell() -> None:
    f = _frame()
    rows = {(r["arch"], r["params"]): r for r in best_rows(f, "bits_per_param")}
    assert rows[("gru", 300)]["best"] == 1.5 and rows[("gru", 300)]["b"] == 900
    assert rows[("gru", 300)]["metric"] == 0.8 and rows[("gru", 300)]["trials"] == 3
    assert rows[("gru", 300)]["feasible"] == 2
    assert rows[("gru", 600)]["best"] == 0.7
    assert rows[("rnn", 300)]["best"] is None  # only a diverged trial: no winner
    low = {(r["arch"], r["params"]): r for r in best_rows(f, "final_loss")}
    assert low[("gru", 300)]["best"] == 0.3 and low[("gru", 300)]["b"] == 500
    assert higher_is_better("metric", f) and not higher_is_better("final_loss", f)


def test_best_rows_name_the_columns_on_a_typo() -> None:
    from rnnsweep.errors import SpecError

    with pytest.raises(SpecError, match="no such column.*bits_per_param"):
        best_rows(_frame(), "bits_per_parm")


# --------------------------------------------------------------------------- study files


def test_collins_study_files_hold_what_the_docs_say() -> None:
    from pathlib import Path

    from rnnsweep.study import spec_from_dict
    from rnnsweep.study.spec import load_toml

    root = Path(__file__).resolve().parent.parent / "studies"
    cap = spec_from_dict(load_toml(root / "collins-capacity.toml"))
    assert cap.sampler == "gp" and cap.task == "capacity"
    cells = {(p.arch, p.depth) for p in cap.cells()}
    assert cells == {("rnn", 1), ("ugrnn", 1), ("gru", 1), ("lstm", 1), ("plusrnn", 2)}
    assert cap.space.b is not None and not cap.space.b.fixed  # b is tuned
    assert all(p.params <= 300 for p in cap.cells())
    mem = spec_from_dict(load_toml(root / "collins-memory.toml"))
    assert mem.sampler == "gp" and mem.task == "memory"
    assert mem.task_options["n_vec"] == 16 and mem.model.hidden == 16


def test_best_report_of_a_study_with_no_complete_trial_says_so(cli, tmp_path) -> None:
    """A study created but not yet trained: `report --best` says there is nothing to rank
    (it raised "No objects to concatenate", an internal error, before)."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    r = cli("create", "--arch", "gru", "--depth", "1", "--trials", "2", "--storage", url)
    assert r.code == 0, r.err
    r = cli("report", "--best", "final_loss", "--storage", url)
    assert r.code == 0, r.err
    assert "No complete trials yet." in r.out + r.err and "internal error" not in r.err


def test_rcf_objective_is_minus_the_stored_bits() -> None:
    """An adaptive sampler over a tuned b must be told the information stored, not the
    MSE (which alone favours the smallest b), as for the capacity task."""
    small, large = make_task("rcf", {"b": 8}), make_task("rcf", {"b": 64})
    for task in (small, large):
        bits = gaussian_bits(task.b * task.n_out, 0.25, task.target_variance)
        assert task.objective(0.25, 0.25) == pytest.approx(-bits)
        assert task.objective(math.nan, math.nan) == math.inf
    assert large.objective(0.3, 0.3) < small.objective(0.25, 0.25)  # more stored at more b
