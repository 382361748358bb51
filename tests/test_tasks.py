"""Tasks against independent brute-force references, plus the Task contract for every task.

The references below decode the generated *inputs* with plain Python loops and
recompute the targets from scratch (walking the bracket string, parsing and
adding the integers with Python ``int``, finding the markers), so they share no
code with the vectorised generators they check.
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from rnnsweep.tasks import (
    TASKS,
    AddingTask,
    ArithTask,
    Batch,
    CapacityTask,
    ClassificationTask,
    MemoryTask,
    ParensTask,
    RegressionTask,
    Task,
    TaskOptionError,
    make_task,
    task_option_names,
)

# charlm cannot be built without a data file; tests/test_tasks_more.py covers it.
ALL = sorted(n for n in TASKS if n != "charlm")
# Non-default settings too, so shapes are not only right by coincidence of defaults.
CONFIGS: list[tuple[str, dict]] = [(name, {}) for name in ALL] + [
    ("parens", {"seq_len": 17, "n_streams": 3, "n_noise": 2, "max_depth": 2, "p_noise": 0.2}),
    ("memory", {"n_vec": 3, "delay": 0}),
    ("capacity", {"b": 10, "n_bits": 4, "unroll": 2, "data_seed": 7}),
    ("adding", {"seq_len": 3}),
    ("arith", {"max_digits": 1}),
    ("arith", {"max_digits": 5}),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)]


def _sample(task: Task, seed: int, batch_size: int) -> Batch:
    return task.sample(torch.Generator().manual_seed(seed), batch_size)


def _one_hot_index(row: list[float]) -> int:
    """The index of the single 1.0 in ``row``; fails unless ``row`` is exactly one-hot."""
    ones = [i for i, v in enumerate(row) if v == 1.0]
    assert len(ones) == 1 and sum(row) == 1.0, f"not one-hot: {row}"
    return ones[0]


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize(("name", "opts"), CONFIGS, ids=IDS)
def test_shapes_dtypes_and_declared_sizes(name: str, opts: dict) -> None:
    task = make_task(name, opts)
    B = 7
    batch = _sample(task, 0, B)
    T = task.seq_len
    assert batch.x.shape == (T, B, task.n_in) and batch.x.dtype == torch.float32
    assert batch.mask.shape == (T, B) and batch.mask.dtype == torch.float32
    assert set(batch.mask.unique().tolist()) <= {0.0, 1.0}
    assert (batch.mask.sum(dim=0) >= 1).all(), "every sample needs a scored step"
    if isinstance(task, ClassificationTask):
        assert task.kind == "classification"
        assert batch.y.shape == (T, B, task.n_streams) and batch.y.dtype == torch.long
        assert task.n_out == task.n_streams * task.n_classes
        assert 0 <= int(batch.y.min()) and int(batch.y.max()) < task.n_classes
    else:
        assert isinstance(task, RegressionTask) and task.kind == "regression"
        assert batch.y.shape == (T, B, task.n_out) and batch.y.dtype == torch.float32
    assert isinstance(task.description, str) and "\n" not in task.description
    assert task.solved_threshold > 0


@pytest.mark.parametrize(("name", "opts"), CONFIGS, ids=IDS)
def test_sampling_is_deterministic_per_generator(name: str, opts: dict) -> None:
    task = make_task(name, opts)
    a, b, c = _sample(task, 3, 16), _sample(task, 3, 16), _sample(task, 4, 16)
    for f in ("x", "y", "mask"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert not (torch.equal(a.x, c.x) and torch.equal(a.y, c.y)), "seed ignored"


@pytest.mark.parametrize(("name", "opts"), CONFIGS, ids=IDS)
def test_sample_pack_is_each_members_own_sample(name: str, opts: dict) -> None:
    """A pack's batch (parens forms it in one pass) stacks exactly the batches each
    member's generator gives alone: a trial's data never depends on its pack."""
    task = make_task(name, opts)
    seeds = [5, 0, 5, 11]
    pack = task.sample_pack([torch.Generator().manual_seed(s) for s in seeds], 6)
    alone = Batch.stack([_sample(task, s, 6) for s in seeds])
    for f in ("x", "y", "mask"):
        got, want = getattr(pack, f), getattr(alone, f)
        assert got.dtype == want.dtype and torch.equal(got, want), f


@pytest.mark.parametrize("name", ALL)
def test_options_round_trip_through_make_task(name: str) -> None:
    task = make_task(name)
    opts = task.options()
    assert list(opts) == task_option_names(name)
    again = make_task(name, opts)
    assert again.options() == opts
    assert torch.equal(_sample(task, 1, 8).x, _sample(again, 1, 8).x)


@pytest.mark.parametrize("name", ALL)
def test_sampling_is_fast(name: str) -> None:
    """A pack of 64 members samples every step: one batch must cost well under ~2 ms."""
    task = make_task(name)
    g = torch.Generator().manual_seed(0)
    task.sample(g, 32)  # warm-up
    rounds = []
    for _ in range(3):  # best of three, so a busy CI machine does not fail it
        start = time.perf_counter()
        for _ in range(20):
            task.sample(g, 32)
        rounds.append((time.perf_counter() - start) / 20)
    per_call = min(rounds)
    assert per_call < 0.005, f"{name}: {per_call * 1e3:.2f} ms per batch"  # typical: < 0.3 ms


# --------------------------------------------------------------------------- loss / metric


@pytest.mark.parametrize(("name", "opts"), CONFIGS, ids=IDS)
def test_pack_loss_and_metric_are_per_member(name: str, opts: dict) -> None:
    task = make_task(name, opts)
    members = [_sample(task, s, 9) for s in range(3)]
    pack = Batch.stack(members)
    g = torch.Generator().manual_seed(99)
    out = torch.randn(3, task.seq_len, 9, task.n_out, generator=g)  # (K, T, B, n_out)
    loss, metric = task.loss(out, pack), task.metric(out, pack)
    assert loss.shape == (3,) and metric.shape == (3,)
    for k, member in enumerate(members):
        alone = Batch.stack([member])
        assert torch.allclose(loss[k], task.loss(out[k : k + 1], alone)[0])
        assert torch.allclose(metric[k], task.metric(out[k : k + 1], alone)[0])


CLASSIFICATION = [(n, o) for n, o in CONFIGS if issubclass(TASKS[n], ClassificationTask)]


@pytest.mark.parametrize(("name", "opts"), CLASSIFICATION)
def test_uniform_logits_score_chance(name: str, opts: dict) -> None:
    """Uniform logits give exactly ``log C`` whatever the targets and mask."""
    task = make_task(name, opts)
    assert isinstance(task, ClassificationTask)
    pack = Batch.stack([_sample(task, 0, 11)])
    out = torch.zeros(1, task.seq_len, 11, task.n_out)
    loss = task.loss(out, pack)
    assert loss.item() == pytest.approx(math.log(task.n_classes), rel=1e-6)
    assert task.chance_loss() == pytest.approx(math.log(task.n_classes))
    assert task.solved_threshold < task.chance_loss()


@pytest.mark.parametrize(
    ("task", "mean", "variance"),
    [
        (MemoryTask(), 0.0, 1.0),
        (MemoryTask(n_vec=2, delay=3), 0.0, 1.0),
        (AddingTask(), 1.0, 1 / 6),
    ],
)
def test_predicting_the_mean_scores_the_variance(task: Task, mean: float, variance: float) -> None:
    pack = Batch.stack([_sample(task, 0, 20_000)])
    out = torch.full((1, task.seq_len, 20_000, task.n_out), mean)
    assert task.loss(out, pack).item() == pytest.approx(variance, rel=0.03)
    assert task.solved_threshold < variance


@pytest.mark.parametrize(("name", "opts"), CONFIGS, ids=IDS)
def test_perfect_on_masked_steps_is_perfect_whatever_elsewhere(name: str, opts: dict) -> None:
    task = make_task(name, opts)
    batch = _sample(task, 5, 13)
    T, B = task.seq_len, 13
    on = batch.mask.bool()  # (T, B)
    garbage = torch.randn(T, B, task.n_out, generator=torch.Generator().manual_seed(1)) * 50
    if isinstance(task, ClassificationTask):
        good = 30.0 * torch.nn.functional.one_hot(batch.y, task.n_classes).float()
        good = good.reshape(T, B, task.n_out)  # (T, B, S * C), stream-major as _logits reads
    else:
        good = batch.y.clone()
    out = torch.where(on.unsqueeze(-1), good, garbage).unsqueeze(0)  # (1, T, B, n_out)
    pack = Batch.stack([batch])
    assert task.loss(out, pack).item() == pytest.approx(0.0, abs=1e-6)
    expected_metric = 1.0 if isinstance(task, ClassificationTask) else 0.0
    assert task.metric(out, pack).item() == pytest.approx(expected_metric, abs=1e-6)


# --------------------------------------------------------------------------- parens


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"n_streams": 3, "n_noise": 2, "max_depth": 2, "seq_len": 40},
        {"n_noise": 0, "p_noise": 0},
    ],
)
def test_parens_targets_match_a_walk_over_the_decoded_symbols(opts: dict) -> None:
    task = ParensTask(**opts)
    batch = _sample(task, 11, 64)
    S, M = task.n_streams, task.max_depth
    n_sym = 2 + task.n_noise
    x, y = batch.x.tolist(), batch.y.tolist()
    saw_clip_then_drop = False
    for b in range(64):
        for s in range(S):
            depth, was_clipped_above = 0, False
            for t in range(task.seq_len):
                sym = _one_hot_index(x[t][b][s * n_sym : (s + 1) * n_sym])
                if sym == 0:  # '('
                    depth += 1
                elif sym == 1:  # ')'
                    depth = max(0, depth - 1)
                assert y[t][b][s] == min(depth, M), (b, s, t)
                if depth > M + 1:
                    was_clipped_above = True
                if was_clipped_above and depth < M:
                    saw_clip_then_drop = True
    assert (batch.mask == 1).all()
    if M == 2:  # the reference must have exercised counting past the clip
        assert saw_clip_then_drop


def test_parens_symbol_frequencies_follow_p_noise() -> None:
    task = ParensTask(p_noise=0.4, n_noise=4)
    batch = _sample(task, 0, 4000)
    sym = batch.x.view(task.seq_len, 4000, task.n_streams, 6).argmax(-1)  # (T, B, S)
    freq = torch.bincount(sym.flatten(), minlength=6).double() / sym.numel()
    expected = torch.tensor([0.3, 0.3, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)
    assert torch.allclose(freq, expected, atol=0.005), freq


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("opts", [{}, {"n_vec": 3, "delay": 0}, {"n_vec": 5, "delay": 25}])
def test_memory_target_is_the_vector_shown_at_step_zero(opts: dict) -> None:
    task = MemoryTask(**opts)
    batch = _sample(task, 2, 10)
    N, T = task.n_vec, task.seq_len
    assert T == task.delay + 2 and task.n_in == N + 1 and task.n_out == N
    x, y, mask = batch.x.tolist(), batch.y.tolist(), batch.mask.tolist()
    for b in range(10):
        assert x[0][b][N] == 0.0
        for t in range(1, T - 1):
            assert x[t][b] == [0.0] * (N + 1)
        assert x[T - 1][b] == [0.0] * N + [1.0]
        assert y[T - 1][b] == x[0][b][:N]
        assert [mask[t][b] for t in range(T)] == [0.0] * (T - 1) + [1.0]


# --------------------------------------------------------------------------- capacity


def _pattern_labels(task: CapacityTask) -> dict[tuple[float, ...], int]:
    ev = task.eval_batch(seed=123, size=5)
    assert ev.x.shape[1] == task.b, "eval set is all b patterns, whatever size says"
    table = {}
    for i in range(task.b):
        table[tuple(ev.x[0, i].tolist())] = int(ev.y[-1, i, 0])
    return table


def test_capacity_patterns_are_fixed_distinct_and_consistently_labelled() -> None:
    task = CapacityTask(b=64, n_bits=16, unroll=5, data_seed=0)
    table = _pattern_labels(task)
    assert len(table) == 64, "patterns must be distinct"
    assert all(set(p) <= {0.0, 1.0} for p in table)
    assert set(table.values()) == {0, 1}
    seen = set()
    for seed in range(5):
        batch = _sample(task, seed, 500)
        x, y, mask = batch.x.tolist(), batch.y.tolist(), batch.mask.tolist()
        for b in range(500):
            pattern = tuple(x[0][b])
            assert pattern in table, "sampled a pattern outside the fixed set"
            assert y[4][b][0] == table[pattern], "same pattern, different label"
            assert all(x[t][b] == [0.0] * 16 for t in range(1, 5))
            assert [mask[t][b] for t in range(5)] == [0.0, 0.0, 0.0, 0.0, 1.0]
            seen.add(pattern)
    assert len(seen) == 64, "sampling with replacement should reach every pattern"
    # The set depends on data_seed only, not on which instance or generator.
    assert _pattern_labels(CapacityTask(data_seed=0)) == table
    assert _pattern_labels(CapacityTask(data_seed=1)) != table


def test_capacity_dense_pattern_set_uses_every_code() -> None:
    task = CapacityTask(b=16, n_bits=4, unroll=1)
    table = _pattern_labels(task)
    assert len(table) == 16 and task.seq_len == 1
    eval_y = task.eval_batch(0, 0).y[0, :, 0].tolist()
    assert eval_y == [table[tuple(p)] for p in task.eval_batch(0, 0).x[0].tolist()]


@pytest.mark.parametrize(
    ("b", "p", "bits"),
    [
        (64, 1.0, 64.0),  # everything stored
        (64, 0.0, 64.0),  # consistently wrong: flipping recovers every label
        (64, 0.5, 0.0),  # chance: nothing stored
        (64, 0.9, 33.98428201028601),  # 64 * (1 + 0.9 log2 0.9 + 0.1 log2 0.1), by hand
        (64, 0.1, 33.98428201028601),  # symmetric about 1/2
        (100, 0.75, 18.872187554086718),  # 100 * (1 - H(0.75)), H(0.75) = 0.811278...
    ],
)
def test_capacity_bits_formula(b: int, p: float, bits: float) -> None:
    task = CapacityTask(b=b)
    out = task.summary(eval_loss=0.3, metric=p, n_params=200)
    assert out["bits"] == pytest.approx(bits, abs=1e-9)
    assert out["bits_per_param"] == pytest.approx(bits / 200, abs=1e-12)


def test_other_tasks_have_no_summary() -> None:
    assert make_task("parens").summary(0.1, 0.9, 100) == {}


# --------------------------------------------------------------------------- adding


@pytest.mark.parametrize("seq_len", [2, 3, 50, 101])
def test_adding_target_is_the_sum_of_the_two_marked_values(seq_len: int) -> None:
    task = AddingTask(seq_len=seq_len)
    batch = _sample(task, 8, 200)
    T = seq_len
    x, y, mask = batch.x.tolist(), batch.y.tolist(), batch.mask.tolist()
    for b in range(200):
        marked = [t for t in range(T) if x[t][b][1] == 1.0]
        assert all(x[t][b][1] in (0.0, 1.0) for t in range(T))
        assert len(marked) == 2
        assert marked[0] < T // 2 <= marked[1]
        assert all(0.0 <= x[t][b][0] < 1.0 for t in range(T))
        total = x[marked[0]][b][0] + x[marked[1]][b][0]
        assert y[T - 1][b][0] == pytest.approx(total, abs=1e-6)
        assert [mask[t][b] for t in range(T)] == [0.0] * (T - 1) + [1.0]


# --------------------------------------------------------------------------- arith


@pytest.mark.parametrize("max_digits", [1, 2, 3, 5])
def test_arith_targets_are_the_sum_of_the_decoded_operands(max_digits: int) -> None:
    task = ArithTask(max_digits=max_digits)
    D, B = max_digits, 300
    P = 2 * D + 2
    assert task.seq_len == P + D + 2 and task.n_in == 13 and task.n_out == 11
    batch = _sample(task, 21, B)
    x, y, mask = batch.x.tolist(), batch.y.tolist(), batch.mask.tolist()
    chars = "0123456789+= "
    outs = "0123456789$"  # $ = end
    lengths_seen: set[int] = set()
    for b in range(B):
        text = "".join(chars[_one_hot_index(x[t][b])] for t in range(task.seq_len))
        prompt, tail = text[:P], text[P:]
        assert tail == " " * (D + 2), text
        assert prompt == prompt.strip().rjust(P), f"not left-padded: {text!r}"
        assert prompt.endswith("="), text
        a_str, b_str = prompt.strip()[:-1].split("+")
        for operand in (a_str, b_str):
            assert 1 <= len(operand) <= D and operand.isdigit()
            assert operand == str(int(operand)), "no leading zeros"
            lengths_seen.add(len(operand))
        expected = str(int(a_str) + int(b_str)) + "$"
        scored = [t for t in range(task.seq_len) if mask[t][b] == 1.0]
        assert scored == list(range(P, P + len(expected))), text
        assert "".join(outs[y[t][b][0]] for t in scored) == expected, text
    assert lengths_seen == set(range(1, D + 1)), "every operand length should occur"


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_task_by_its_name() -> None:
    new = {"sine", "order", "digits", "charlm", "rcf"}
    assert set(TASKS) == {"parens", "memory", "capacity", "adding", "arith"} | new
    for name in ALL:
        cls = TASKS[name]
        assert cls.name == name
        assert isinstance(make_task(name), cls)


def test_unknown_task_suggests_the_closest_name() -> None:
    with pytest.raises(TaskOptionError) as err:
        make_task("paren")
    msg = str(err.value)
    assert "'paren'" in msg and "did you mean 'parens'?" in msg
    assert "adding, arith, capacity, charlm, digits, memory, order, parens, rcf, sine" in msg
    with pytest.raises(TaskOptionError, match="unknown task 'zzz'"):
        task_option_names("zzz")


def test_unknown_option_suggests_the_closest_name() -> None:
    with pytest.raises(TaskOptionError) as err:
        make_task("parens", {"max_dpth": 3})
    msg = str(err.value)
    assert "'max_dpth'" in msg and "did you mean 'max_depth'?" in msg
    assert "seq_len, n_streams, n_noise, max_depth, p_noise" in msg
    with pytest.raises(TaskOptionError, match="unknown option 'seq_len' for task 'memory'"):
        make_task("memory", {"seq_len": 10})


@pytest.mark.parametrize(
    ("name", "opts", "message"),
    [
        ("parens", {"max_depth": 0}, "parens option max_depth must be >= 1, got 0"),
        ("parens", {"n_streams": 2.0}, "parens option n_streams must be an integer, got 2.0"),
        ("parens", {"seq_len": True}, "parens option seq_len must be an integer, got True"),
        ("parens", {"p_noise": 1.0}, "parens option p_noise must be in [0.0, 1.0), got 1.0"),
        ("parens", {"n_noise": 0}, "p_noise must be 0 when n_noise is 0"),
        ("memory", {"n_vec": 0}, "memory option n_vec must be >= 1, got 0"),
        ("memory", {"delay": -1}, "memory option delay must be >= 0, got -1"),
        ("capacity", {"b": 17, "n_bits": 4}, "capacity option b must be <= 16, got 17"),
        ("capacity", {"unroll": 0}, "capacity option unroll must be >= 1, got 0"),
        ("capacity", {"data_seed": "x"}, "capacity option data_seed must be an integer, got 'x'"),
        ("adding", {"seq_len": 1}, "adding option seq_len must be >= 2, got 1"),
        ("arith", {"max_digits": 16}, "arith option max_digits must be <= 15, got 16"),
    ],
)
def test_out_of_range_options_name_the_offending_value(name: str, opts: dict, message: str) -> None:
    with pytest.raises(TaskOptionError) as err:
        make_task(name, opts)
    assert message in str(err.value)
