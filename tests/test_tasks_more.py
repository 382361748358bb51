"""sine, order, digits and charlm against independent brute-force references.

As in ``test_tasks.py``, the references decode the generated *inputs* with plain
Python loops and recompute the targets from scratch: the sine from the decoded
frequency, the order class by scanning for the two relevant symbols, each digit
by exact pixel match against scikit-learn's own images, each text window by
searching the file's text. They share no code with the vectorised generators.
The Task contract checks of ``test_tasks.py`` are repeated here for these tasks,
since charlm cannot be built without a data file.
"""

from __future__ import annotations

import ast
import hashlib
import math
import os
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnsweep.tasks import (
    TASKS,
    Batch,
    CharLMTask,
    ClassificationTask,
    DigitsTask,
    OrderTask,
    RegressionTask,
    SineTask,
    Task,
    TaskOptionError,
    make_task,
    task_option_names,
)

NEW = ["sine", "order", "digits", "charlm"]

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
    "jovial boxers; naïve café owners—über-zealous—sing of 42 déjà vu moments"
).split()


def _write_text(path: Path, n_words: int, seed: int = 0) -> str:
    """A pseudo-English text with accents, a dash, digits and CRLF line ends; returns it."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n_words)]
    text = "\r\n".join(lines) + "\n"
    path.write_bytes(text.encode("utf-8"))
    return text


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("charlm") / "corpus.txt"
    _write_text(path, 400)
    return path


def _file_text(path: Path) -> str:
    """The file as the task must read it: strict UTF-8, newlines untranslated."""
    return path.read_bytes().decode("utf-8")


# Non-default settings too, so shapes are not only right by coincidence of defaults.
CONFIGS: list[tuple[str, dict]] = [
    ("sine", {}),
    ("sine", {"seq_len": 7, "omega_min": 0.5, "omega_max": 0.6}),
    ("order", {}),
    ("order", {"seq_len": 12, "window1": [0, 3], "window2": [3, 12]}),
    ("digits", {}),
    ("digits", {"pad": 9, "data_seed": 3}),
    ("charlm", {}),
    ("charlm", {"seq_len": 17, "max_vocab": 5}),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)]


def _make(name: str, opts: dict, text_file: Path) -> Task:
    """``make_task`` with charlm pointed at the test corpus."""
    if name == "charlm":
        opts = {"data": str(text_file), **opts}
    return make_task(name, opts)


def _sample(task: Task, seed: int, batch_size: int) -> Batch:
    return task.sample(torch.Generator().manual_seed(seed), batch_size)


def _one_hot_index(row: list[float]) -> int:
    """The index of the single 1.0 in ``row``; fails unless ``row`` is exactly one-hot."""
    ones = [i for i, v in enumerate(row) if v == 1.0]
    assert len(ones) == 1 and sum(row) == 1.0, f"not one-hot: {row}"
    return ones[0]


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize(("name", "opts"), CONFIGS, ids=IDS)
def test_shapes_dtypes_and_declared_sizes(name: str, opts: dict, text_file: Path) -> None:
    task = _make(name, opts, text_file)
    B = 7
    for batch in (_sample(task, 0, B), task.eval_batch(0, B)):
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
def test_sampling_is_deterministic_per_generator(name: str, opts: dict, text_file: Path) -> None:
    task = _make(name, opts, text_file)
    a, b, c = _sample(task, 3, 16), _sample(task, 3, 16), _sample(task, 4, 16)
    for f in ("x", "y", "mask"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert not (torch.equal(a.x, c.x) and torch.equal(a.y, c.y)), "seed ignored"
    e1, e2 = task.eval_batch(5, 10), _make(name, opts, text_file).eval_batch(5, 10)
    for f in ("x", "y", "mask"):
        assert torch.equal(getattr(e1, f), getattr(e2, f)), f


@pytest.mark.parametrize("name", NEW)
def test_options_round_trip_through_make_task(name: str, text_file: Path) -> None:
    task = _make(name, {}, text_file)
    opts = task.options()
    assert list(opts) == task_option_names(name)
    again = make_task(name, opts)
    assert again.options() == opts
    assert torch.equal(_sample(task, 1, 8).x, _sample(again, 1, 8).x)


@pytest.mark.parametrize("name", NEW)
def test_sampling_is_fast(name: str, text_file: Path) -> None:
    """Same budget as the other tasks: one batch of 32 well under ~5 ms."""
    task = _make(name, {}, text_file)
    g = torch.Generator().manual_seed(0)
    task.sample(g, 32)  # warm-up
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(20):
            task.sample(g, 32)
        rounds.append((time.perf_counter() - start) / 20)
    assert min(rounds) < 0.005, f"{name}: {min(rounds) * 1e3:.2f} ms per batch"


@pytest.mark.parametrize(("name", "opts"), CONFIGS, ids=IDS)
def test_pack_loss_and_metric_are_per_member(name: str, opts: dict, text_file: Path) -> None:
    task = _make(name, opts, text_file)
    members = [_sample(task, s, 9) for s in range(3)]
    pack = Batch.stack(members)
    out = torch.randn(3, task.seq_len, 9, task.n_out, generator=torch.Generator().manual_seed(9))
    loss, metric = task.loss(out, pack), task.metric(out, pack)
    assert loss.shape == (3,) and metric.shape == (3,)
    for k, member in enumerate(members):
        alone = Batch.stack([member])
        assert torch.allclose(loss[k], task.loss(out[k : k + 1], alone)[0])
        assert torch.allclose(metric[k], task.metric(out[k : k + 1], alone)[0])


@pytest.mark.parametrize(("name", "opts"), CONFIGS, ids=IDS)
def test_perfect_on_masked_steps_is_perfect_whatever_elsewhere(
    name: str, opts: dict, text_file: Path
) -> None:
    task = _make(name, opts, text_file)
    batch = _sample(task, 5, 13)
    T, B = task.seq_len, 13
    on = batch.mask.bool()  # (T, B)
    garbage = torch.randn(T, B, task.n_out, generator=torch.Generator().manual_seed(1)) * 50
    if isinstance(task, ClassificationTask):
        good = 30.0 * torch.nn.functional.one_hot(batch.y, task.n_classes).float()
        good = good.reshape(T, B, task.n_out)  # (T, B, S * C)
        assert task.loss(torch.zeros(1, T, B, task.n_out), Batch.stack([batch])).item() == (
            pytest.approx(math.log(task.n_classes), rel=1e-6)
        )
        assert task.solved_threshold < task.chance_loss()
    else:
        good = batch.y.clone()
    out = torch.where(on.unsqueeze(-1), good, garbage).unsqueeze(0)  # (1, T, B, n_out)
    pack = Batch.stack([batch])
    assert task.loss(out, pack).item() == pytest.approx(0.0, abs=1e-6)
    expected_metric = 1.0 if isinstance(task, ClassificationTask) else 0.0
    assert task.metric(out, pack).item() == pytest.approx(expected_metric, abs=1e-6)


# --------------------------------------------------------------------------- sine


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"seq_len": 50, "omega_min": 0.1, "omega_max": 3.0},
        {"omega_min": 0.0},
        {"seq_len": 5, "omega_min": 1.0, "omega_max": 1.0},  # one fixed frequency
    ],
)
def test_sine_target_is_the_sine_of_the_running_sum_of_the_input(opts: dict) -> None:
    task = SineTask(**opts)
    batch = _sample(task, 4, 40)
    T = task.seq_len
    assert task.n_in == 1 and task.n_out == 1
    x, y, mask = batch.x.tolist(), batch.y.tolist(), batch.mask.tolist()
    omegas = []
    for b in range(40):
        omega = x[0][b][0]
        assert task.omega_min <= omega <= task.omega_max
        omegas.append(omega)
        phase = 0.0
        for t in range(T):
            assert x[t][b][0] == omega, "the input is constant"
            phase += x[t][b][0]  # sum_{s <= t} omega: the current step included
            assert y[t][b][0] == pytest.approx(math.sin(phase), abs=2e-6), (b, t)
            assert mask[t][b] == 1.0
    spread = task.omega_max - task.omega_min
    if spread == 0:
        return
    assert len(set(omegas)) == 40, "omega is drawn per sequence"
    assert (
        min(omegas) < task.omega_min + 0.2 * spread and max(omegas) > task.omega_max - 0.2 * spread
    )


def test_sine_predicting_zero_scores_about_one_half() -> None:
    task = SineTask()
    pack = Batch.stack([_sample(task, 0, 2000)])
    out = torch.zeros(1, task.seq_len, 2000, 1)
    assert task.loss(out, pack).item() == pytest.approx(0.5, abs=0.01)
    assert task.solved_threshold == 0.01
    assert task.omega_min == math.pi / 16 and task.omega_max == math.pi / 8


# --------------------------------------------------------------------------- order


@pytest.mark.parametrize(
    "opts",
    [{}, {"seq_len": 12, "window1": [0, 3], "window2": [3, 12]}, {"seq_len": 60}],
)
def test_order_class_is_the_ordered_pair_of_the_scanned_symbols(opts: dict) -> None:
    task = OrderTask(**opts)
    (s1, e1), (s2, e2) = task.window1, task.window2
    B, T = 1000, task.seq_len
    batch = _sample(task, 6, B)
    assert task.n_in == 6 and task.n_out == 4
    x, y, mask = batch.x.tolist(), batch.y.tolist(), batch.mask.tolist()
    positions: tuple[set[int], set[int]] = (set(), set())
    classes: Counter[int] = Counter()
    distractors: Counter[int] = Counter()
    assert ((batch.x == 0) | (batch.x == 1)).all() and (batch.x.sum(-1) == 1).all(), "one-hot"
    for b in range(B):
        symbols = [x[t][b].index(1.0) for t in range(T)]
        relevant = [(t, s) for t, s in enumerate(symbols) if s in (0, 1)]  # A = 0, B = 1
        assert len(relevant) == 2, symbols
        (p1, first), (p2, second) = relevant
        assert s1 <= p1 < e1 and s2 <= p2 < e2
        positions[0].add(p1)
        positions[1].add(p2)
        label = {"AA": 0, "AB": 1, "BA": 2, "BB": 3}["AB"[first] + "AB"[second]]
        assert y[T - 1][b][0] == label
        classes[label] += 1
        assert [mask[t][b] for t in range(T)] == [0.0] * (T - 1) + [1.0]
        distractors.update(s for s in symbols if s not in (0, 1))
    assert positions == (set(range(s1, e1)), set(range(s2, e2))), "every window position"
    assert all(abs(classes[c] / B - 0.25) < 0.05 for c in range(4)), classes
    total = sum(distractors.values())
    assert sorted(distractors) == [2, 3, 4, 5]
    assert all(abs(n / total - 0.25) < 0.02 for n in distractors.values()), distractors


def test_order_defaults_are_ribeiros() -> None:
    task = OrderTask()
    assert (task.seq_len, task.window1, task.window2) == (200, (9, 19), (39, 49))
    assert task.solved_threshold == pytest.approx(0.1 * math.log(4))


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digit_table() -> dict[tuple[float, ...], int]:
    """Every sklearn image, as 64 pixels / 16 in row-major order, to its label."""
    from sklearn.datasets import load_digits

    data = load_digits()
    table = {}
    for image, label in zip(data.images, data.target, strict=True):
        pixels = tuple(float(v) for v in (image.reshape(64) / 16.0).astype(np.float32))
        table[pixels] = int(label)
    assert len(table) == 1797, "the images are distinct, so pixels identify them"
    return table


def _digit_items(batch: Batch, pad: int) -> list[tuple[tuple[float, ...], int]]:
    """Decode each item to (pixels, label), checking the padding and the mask on the way."""
    T = 64 + pad
    x, y, mask = batch.x.tolist(), batch.y.tolist(), batch.mask.tolist()
    items = []
    for b in range(batch.x.shape[1]):
        assert all(x[t][b] == [0.0] for t in range(64, T)), "padding is blank"
        assert [mask[t][b] for t in range(T)] == [0.0] * (T - 1) + [1.0]
        items.append((tuple(x[t][b][0] for t in range(64)), y[T - 1][b][0]))
    return items


@pytest.mark.parametrize("opts", [{}, {"pad": 20, "data_seed": 5}])
def test_digits_items_are_sklearn_images_with_their_labels(
    opts: dict, digit_table: dict[tuple[float, ...], int]
) -> None:
    task = DigitsTask(**opts)
    assert task.seq_len == 64 + task.pad and task.n_in == 1 and task.n_out == 10
    held_out = _digit_items(task.eval_batch(seed=0, size=10_000), task.pad)
    assert len(held_out) == 359, "all held-out images when size exceeds them"
    eval_set = set()
    for pixels, label in held_out:
        assert digit_table[pixels] == label
        eval_set.add(pixels)
    assert len(eval_set) == 359
    seen = set()
    for pixels, label in _digit_items(_sample(task, 0, 1500), task.pad):
        assert digit_table[pixels] == label
        assert pixels not in eval_set, "a held-out image was drawn for training"
        seen.add(pixels)
    assert len(seen) > 850, "1500 draws should reach about 930 of the 1438 training images"
    first = task.eval_batch(seed=123, size=5)
    assert first.x.shape[1] == 5
    assert _digit_items(first, task.pad) == held_out[:5], "eval ignores its seed"


def test_digits_split_depends_on_data_seed_only() -> None:
    a, b, c = DigitsTask(), DigitsTask(pad=3), DigitsTask(data_seed=1)
    assert torch.equal(a.eval_idx, b.eval_idx)
    assert not torch.equal(a.eval_idx, c.eval_idx)
    assert a.solved_threshold == pytest.approx(0.1 * math.log(10))


def test_sklearn_is_imported_only_inside_functions() -> None:
    """No module of rnnsweep imports scikit-learn at import time (only digits, when built).

    A static check: a subprocess importing rnnsweep would say the same at runtime
    but costs seconds of torch import.
    """
    root = Path(__file__).resolve().parents[1] / "rnnsweep"
    for path in root.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "sklearn" for n in names), path


# --------------------------------------------------------------------------- charlm


def _windows(task: CharLMTask, batch: Batch) -> list[tuple[str, str]]:
    """Decode each item to (input string, target string) through the task's vocabulary."""
    x, y = batch.x.tolist(), batch.y.tolist()
    chars = task.chars
    out = []
    for b in range(batch.x.shape[1]):
        inp = "".join(chars[_one_hot_index(x[t][b])] for t in range(task.seq_len))
        tgt = "".join(chars[y[t][b][0]] for t in range(task.seq_len))
        out.append((inp, tgt))
    return out


def test_charlm_windows_are_training_text_and_targets_the_next_characters(
    text_file: Path,
) -> None:
    task = CharLMTask(data=str(text_file), seq_len=30)
    text = _file_text(text_file)
    assert "\r\n" in text and "é" in text
    assert task.chars == sorted(set(text)) and task.unk is None
    assert task.n_in == task.n_out == task.n_classes == len(set(text))
    n_train = 9 * len(text) // 10
    train, held = text[:n_train], text[n_train:]
    batch = _sample(task, 2, 200)
    assert (batch.mask == 1).all()
    for inp, tgt in _windows(task, batch):
        window = inp + tgt[-1]
        assert tgt == window[1:], "the target is the next character"
        assert window in train, f"not in the training part: {window!r}"
    ev = task.eval_batch(seed=0, size=6)
    windows = [inp + tgt[-1] for inp, tgt in _windows(task, ev)]
    last = len(held) - 31  # the last start of a 31-character window
    starts = [i * last // 5 for i in range(6)]  # evenly spaced, first and last included
    assert windows == [held[s : s + 31] for s in starts]
    assert task.eval_batch(seed=99, size=6).x.equal(ev.x), "eval ignores its seed"
    assert task.eval_batch(seed=0, size=1).x.equal(ev.x[:, :1])


def test_charlm_rare_characters_map_to_unk(tmp_path: Path) -> None:
    text = "a" * 500 + "b" * 300 + "c" * 300 + "d" * 10 + "e" * 5 + "é"
    rng = random.Random(1)
    text = "".join(rng.sample(text, len(text)))
    path = tmp_path / "rare.txt"
    path.write_text(text, encoding="utf-8")
    task = CharLMTask(data=path, seq_len=10, max_vocab=3)
    # Most frequent first, ties to the lower code point: a, then b over c.
    ranked = sorted(Counter(text).items(), key=lambda kv: (-kv[1], kv[0]))
    kept = sorted(ch for ch, _ in ranked[:2])
    assert task.chars == kept == ["a", "b"] and task.unk == 2 and task.n_classes == 3
    x, y = _sample(task, 0, 50).x, _sample(task, 0, 50).y
    codes = x.argmax(-1)  # (T, B)
    assert set(codes.unique().tolist()) == {0, 1, 2}
    assert torch.equal(codes[1:], y[:-1, :, 0]), "input at t + 1 is the target at t"


def test_charlm_options_record_the_file_not_the_text(text_file: Path) -> None:
    task = make_task("charlm", {"data": str(text_file)})
    opts = task.options()
    raw = text_file.read_bytes()
    assert opts == {
        "data": str(text_file.resolve()),
        "seq_len": 100,
        "max_chars": len(raw.decode("utf-8")),
        "max_vocab": 256,
        "data_sha256": hashlib.sha256(raw).hexdigest(),
        "data_bytes": len(raw),
    }
    assert task.summary(eval_loss=math.log(4), metric=0.5, n_params=10) == {
        "bits_per_char": pytest.approx(2.0)
    }
    assert task.solved_threshold == 1.5


def test_charlm_max_chars_reads_only_the_start(text_file: Path) -> None:
    task = CharLMTask(data=text_file, seq_len=20, max_chars=1000)
    text = _file_text(text_file)[:1000]
    assert task.options()["max_chars"] == 1000
    assert task.options()["data_bytes"] == text_file.stat().st_size, "size of the whole file"
    held = text[900:]
    for inp, tgt in _windows(task, task.eval_batch(0, 4)):
        assert inp + tgt[-1] in held


def test_charlm_refuses_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    _write_text(path, 100, seed=1)
    opts = make_task("charlm", {"data": str(path), "seq_len": 10}).options()
    text = path.read_bytes()
    assert b"fox" in text
    path.write_bytes(text.replace(b"fox", b"FOX"))  # same size, other content
    with pytest.raises(TaskOptionError, match=f"charlm data file {path} has SHA-256"):
        make_task("charlm", opts)
    path.write_bytes(text + b"more")
    with pytest.raises(TaskOptionError, match="but the option data_bytes says"):
        make_task("charlm", opts)


# --------------------------------------------------------------------------- options


def test_charlm_needs_a_data_file() -> None:
    with pytest.raises(TaskOptionError) as err:
        make_task("charlm")
    assert str(err.value) == "charlm needs the option data = PATH to a text file"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("DIR", "is a directory, not a text file"),
        (b"", "is empty"),
        (b"caf\xe9 au lait " * 200, "is not UTF-8 text"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10, "is not UTF-8 text"),
        (b"text\x00with\x00nul " * 200, "contains NUL characters: binary, not text"),
        (b"too short " * 20, "gives 200 characters, but seq_len 100 needs at least 1001"),
        (b"a" * 2000, "has only one distinct character, 'a'"),
    ],
    ids=["missing", "directory", "empty", "latin1", "binary", "nul", "short", "one-char"],
)
def test_charlm_bad_files_name_the_path(tmp_path: Path, content: bytes | str | None, message: str):
    path = tmp_path / "data.txt"
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(TaskOptionError) as err:
        make_task("charlm", {"data": str(path)})
    assert str(path.resolve()) in str(err.value) and message in str(err.value)


def test_charlm_refuses_a_huge_file_unless_max_chars_is_set(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as f:  # sparse: instant, and never read
        f.write(b"ab" * 600)
        f.truncate(100_000_001)
    with pytest.raises(TaskOptionError, match="100000001 bytes, over the 100000000 byte limit"):
        make_task("charlm", {"data": str(path)})
    task = make_task("charlm", {"data": str(path), "max_chars": 1200, "seq_len": 10})
    assert task.chars == ["a", "b"] and task.options()["max_chars"] == 1200


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_charlm_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    _write_text(path, 100)
    path.chmod(0)
    try:
        with pytest.raises(TaskOptionError, match="is not readable"):
            make_task("charlm", {"data": str(path)})
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize(
    ("name", "opts", "message"),
    [
        ("sine", {"seq_len": 0}, "sine option seq_len must be >= 1, got 0"),
        ("sine", {"omega_min": -0.1}, "sine option omega_min must be in [0.0, 3.14"),
        ("sine", {"omega_max": 4.0}, "sine option omega_max must be in [0.0, 3.14"),
        ("sine", {"omega_min": 0.3, "omega_max": 0.2}, "omega_max must be >= omega_min (0.3)"),
        ("order", {"seq_len": 40}, "window2 must satisfy 0 <= start < end <= seq_len (40)"),
        ("order", {"window1": [5, 5]}, "order option window1 must satisfy 0 <= start < end"),
        ("order", {"window1": 9}, "window1 must be a pair [start, end) of integers, got 9"),
        ("order", {"window1": [1.0, 3]}, "must be a pair [start, end) of integers"),
        ("order", {"window1": [9, 40]}, "window2 must start at or after window1 ends (40)"),
        ("digits", {"pad": -1}, "digits option pad must be >= 0, got -1"),
        ("digits", {"data_seed": 1.5}, "digits option data_seed must be an integer, got 1.5"),
        ("charlm", {"data": 3}, "charlm option data must be a path to a text file, got 3"),
        ("charlm", {"data": ""}, "charlm option data must be a path to a text file, got ''"),
        ("charlm", {"data": "x", "seq_len": 0}, "charlm option seq_len must be >= 1, got 0"),
        ("charlm", {"data": "x", "max_vocab": 1}, "charlm option max_vocab must be >= 2, got 1"),
        ("charlm", {"data": "x", "max_chars": 0}, "charlm option max_chars must be >= 1, got 0"),
        ("charlm", {"data": "x", "max_chars": 10**9}, "option max_chars must be <= 100000000"),
    ],
)
def test_out_of_range_options_name_the_offending_value(name: str, opts: dict, message: str) -> None:
    with pytest.raises(TaskOptionError) as err:
        make_task(name, opts)
    assert message in str(err.value)


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sine", SineTask), ("order", OrderTask), ("digits", DigitsTask), ("charlm", CharLMTask)],
)
def test_registry_builds_each_new_task(name: str, cls: type[Task], text_file: Path) -> None:
    assert TASKS[name] is cls and cls.name == name
    assert isinstance(_make(name, {}, text_file), cls)
