"""Character-level language modelling on a user-supplied text file (details ours).

The one task here whose data is not synthetic: the network reads a window of a
UTF-8 text one character per step and predicts the next character at every
step. The file is named by the ``data`` option; the study records its absolute
path, size and SHA-256 (not the text), and a task rebuilt from those options
refuses a file that has changed since.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rnnsweep.tasks.base import Batch, ClassificationTask, TaskOptionError, _int_option

__all__ = ["CharLMTask"]

MAX_FILE_BYTES = 100_000_000  # read whole only up to 100 MB; larger files need max_chars
MAX_VOCAB = 4096  # codes are stored as int16; a one-hot wider than this is not a char model
SOLVED_NATS = 1.5  # our bar for natural text: 2.16 bits per character


def _sha256(path: Path) -> str:
    """Hex SHA-256 of the whole file, streamed (the file may exceed what is read)."""
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise TaskOptionError(
            f"charlm data file {path} cannot be read ({exc.strerror or exc})"
        ) from None


class CharLMTask(ClassificationTask):
    """Predict the next character of a text file at every step.

    Data. The file ``data`` is decoded as strict UTF-8 with newlines kept as
    they are (``\\r\\n`` stays two characters); a file with NUL characters is
    rejected as binary. At most ``max_chars`` characters are read from its
    start (default: the whole file, which must then be at most 100 MB;
    ``max_chars`` itself is at most 100 million). With
    ``N`` characters read, the first ``floor(0.9 N)`` are for training and
    the rest are held out; ``N`` must be at least ``10 seq_len + 1`` so that the
    held-out part holds one window of ``seq_len + 1`` characters.

    Vocabulary. The distinct characters of the ``N`` read (training and
    held-out part alike, so evaluation meets no unseen symbol), sorted by code
    point, index = rank. If there are more than ``max_vocab``, the
    ``max_vocab - 1`` most frequent are kept (ties to the lower code point),
    still sorted, and every other character maps to one UNK index,
    ``max_vocab - 1``, the last. ``chars`` lists the kept characters by index;
    ``unk`` is the UNK index or None. ``V = len(chars) + (unk is not None)``.

    Encoding (``T = seq_len``, ``n_in = n_out = V``, one softmax, C = V): a
    window of ``T + 1`` consecutive characters ``c_0 .. c_T``; the input at
    step ``t`` is the one-hot ``c_t``, the target ``c_{t+1}``. Mask: every step.
    Loss cross-entropy in nats per character (UNK counts as a character),
    metric accuracy; ``summary`` adds ``bits_per_char = loss / ln 2``.

    Sampling. ``sample`` draws window starts uniformly over the training part
    (every window lies inside it). ``eval_batch`` ignores its seed and returns
    ``size`` windows of the held-out part at evenly spaced starts
    ``floor(i (M - T - 1) / (size - 1))``, ``i = 0 .. size - 1``, with ``M`` its
    length: the first window at its start, the last at its end (windows repeat
    if ``size`` exceeds the ``M - T`` possible starts).

    Solved threshold (ours): ``min(1.5, 0.5 ln V)`` nats per character. For
    natural text (``V`` over 20) that is 1.5 nats = 2.16 bits per character:
    below a unigram model of English (about 4.1 bits) and a bigram one (about
    3.3), so the net must use several characters of context, but within reach
    of small character-level RNNs. The ``0.5 ln V`` arm (half of chance) only
    binds for toy alphabets, where 1.5 nats would exceed chance.
    """

    name = "charlm"
    description = "character-level language model on a text file (data = PATH): next char"

    n_streams = 1

    def __init__(
        self,
        *,
        data: str | os.PathLike[str] | None = None,
        seq_len: int = 100,
        max_chars: int | None = None,
        max_vocab: int = 256,
        data_sha256: str | None = None,
        data_bytes: int | None = None,
    ) -> None:
        if data is None:
            raise TaskOptionError("charlm needs the option data = PATH to a text file")
        if not isinstance(data, str | os.PathLike) or str(data) == "":
            raise TaskOptionError(f"charlm option data must be a path to a text file, got {data!r}")
        self.seq_len = _int_option("charlm", "seq_len", seq_len, 1)
        if max_chars is not None:
            # The same cap in characters: memory is about 7 bytes per character read.
            max_chars = _int_option("charlm", "max_chars", max_chars, 1, MAX_FILE_BYTES)
        self.max_vocab = _int_option("charlm", "max_vocab", max_vocab, 2, MAX_VOCAB)
        if data_bytes is not None:
            data_bytes = _int_option("charlm", "data_bytes", data_bytes, 0)
        if data_sha256 is not None and not isinstance(data_sha256, str):
            raise TaskOptionError(
                f"charlm option data_sha256 must be a hex string, got {data_sha256!r}"
            )

        path = Path(data).expanduser().resolve()
        self.path = path
        self.data_bytes = self._check_file(path, max_chars, data_bytes)
        self.data_sha256 = _sha256(path)  # before decoding: "changed" beats "not UTF-8"
        if data_sha256 is not None and data_sha256.lower() != self.data_sha256:
            raise TaskOptionError(
                f"charlm data file {path} has SHA-256 {self.data_sha256}, but the option"
                f" data_sha256 says {data_sha256} (the file changed?)"
            )
        text = self._read(path, max_chars)
        n_chars = len(text)
        self.max_chars = n_chars  # resolved: the number of characters actually read
        need = 10 * self.seq_len + 1  # ceil(N / 10) held-out chars >= seq_len + 1
        if n_chars < need:
            raise TaskOptionError(
                f"charlm data file {path} gives {n_chars} characters, but seq_len"
                f" {self.seq_len} needs at least {need} (the held-out last 10% must hold"
                f" one window of seq_len + 1)"
            )

        codes = self._build_vocab(text, path)  # (N,) int16
        self.n_classes = len(self.chars) + (self.unk is not None)
        self.n_in = self.n_classes
        self.n_out = self.n_streams * self.n_classes
        self.solved_threshold = min(SOLVED_NATS, 0.5 * math.log(self.n_classes))
        n_train = 9 * n_chars // 10
        self.train_codes = codes[:n_train]  # (floor(0.9 N),)
        self.eval_codes = codes[n_train:]  # (ceil(0.1 N),)

    # ---- loading -----------------------------------------------------------------

    @staticmethod
    def _check_file(path: Path, max_chars: int | None, data_bytes: int | None) -> int:
        """The file's size in bytes, after checking it is a readable, non-empty regular file."""
        if not path.exists():
            raise TaskOptionError(f"charlm data file {path} does not exist")
        if path.is_dir():
            raise TaskOptionError(f"charlm data path {path} is a directory, not a text file")
        if not path.is_file():
            raise TaskOptionError(f"charlm data path {path} is not a regular file")
        size = path.stat().st_size
        if size == 0:
            raise TaskOptionError(f"charlm data file {path} is empty")
        if data_bytes is not None and data_bytes != size:
            raise TaskOptionError(
                f"charlm data file {path} is {size} bytes, but the option data_bytes says"
                f" {data_bytes} (the file changed?)"
            )
        if max_chars is None and size > MAX_FILE_BYTES:
            raise TaskOptionError(
                f"charlm data file {path} is {size} bytes, over the {MAX_FILE_BYTES} byte"
                f" limit; set max_chars to read only its start"
            )
        if not os.access(path, os.R_OK):
            raise TaskOptionError(f"charlm data file {path} is not readable")
        return size

    @staticmethod
    def _read(path: Path, max_chars: int | None) -> str:
        """Up to ``max_chars`` characters (all if None), strict UTF-8, newlines untranslated."""
        try:
            with path.open(encoding="utf-8", errors="strict", newline="") as f:
                text = f.read(-1 if max_chars is None else max_chars)
        except UnicodeDecodeError as exc:
            raise TaskOptionError(
                f"charlm data file {path} is not UTF-8 text ({exc.reason})"
            ) from None
        except OSError as exc:
            raise TaskOptionError(
                f"charlm data file {path} cannot be read ({exc.strerror or exc})"
            ) from None
        if "\x00" in text:
            raise TaskOptionError(
                f"charlm data file {path} contains NUL characters: binary, not text"
            )
        return text

    def _build_vocab(self, text: str, path: Path) -> torch.Tensor:
        """Set ``chars`` and ``unk`` (see class); return the text's codes ``(N,)`` int16."""
        # Code points through one bincount and one table lookup: O(N), no Python loop
        # over the text (up to 100M characters). Debt: UTF-32 copy peaks at 4 bytes/char.
        cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")  # (N,) code points
        counts = np.bincount(cps)  # (max code point + 1,)
        present = np.flatnonzero(counts)  # (n_distinct,) sorted by code point
        if present.size < 2:
            raise TaskOptionError(
                f"charlm data file {path} has only one distinct character,"
                f" {chr(int(present[0]))!r}: nothing to predict"
            )
        if present.size <= self.max_vocab:
            keep, self.unk = present, None
        else:
            k = self.max_vocab - 1
            by_freq = np.argsort(-counts[present], kind="stable")[:k]  # ties: lower code point
            keep, self.unk = np.sort(present[by_freq]), k
        table = np.full(counts.size, -1 if self.unk is None else self.unk, dtype=np.int16)
        table[keep] = np.arange(keep.size, dtype=np.int16)
        self.chars = [chr(int(c)) for c in keep]
        return torch.from_numpy(table[cps])  # (N,) int16

    # ---- batches -----------------------------------------------------------------

    def _batch(self, codes: torch.Tensor, starts: torch.Tensor) -> Batch:
        T = self.seq_len
        idx = starts.unsqueeze(1) + torch.arange(T + 1)  # (B, T + 1)
        window = codes[idx].to(torch.long).T  # (T + 1, B)
        x = F.one_hot(window[:-1], self.n_classes).to(torch.float32)  # (T, B, V)
        y = window[1:].unsqueeze(-1)  # (T, B, S=1)
        mask = torch.ones(T, starts.shape[0])  # (T, B) every step counts
        return Batch(x, y, mask)

    def sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        n_starts = self.train_codes.shape[0] - self.seq_len  # starts 0 .. n - T - 1
        starts = torch.randint(0, n_starts, (batch_size,), generator=generator)  # (B,)
        return self._batch(self.train_codes, starts)

    def eval_batch(self, seed: int, size: int) -> Batch:
        """``size`` held-out windows at evenly spaced starts (see class); ``seed`` is ignored."""
        last = self.eval_codes.shape[0] - self.seq_len - 1  # the last valid start
        size = max(size, 0)
        starts = torch.arange(size) * last // max(size - 1, 1)  # (size,) 0 .. last
        return self._batch(self.eval_codes, starts)

    def summary(self, eval_loss: float, metric: float, n_params: int) -> dict[str, float]:
        """The eval loss in bits per character, the usual unit for character models."""
        return {"bits_per_char": eval_loss / math.log(2)}

    def options(self) -> dict[str, Any]:
        # Which text, not the text: path, size and hash; rebuilding from these
        # options fails if the file has changed (see data_sha256, data_bytes).
        return {
            "data": str(self.path),
            "seq_len": self.seq_len,
            "max_chars": self.max_chars,
            "max_vocab": self.max_vocab,
            "data_sha256": self.data_sha256,
            "data_bytes": self.data_bytes,
        }
