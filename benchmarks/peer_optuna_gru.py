"""The study a user would write instead of rnnsweep: Optuna plus torch.nn, one trial at a time.

    python benchmarks/peer_optuna_gru.py --arch gru --depth 2 --trials 32 --steps 300 \
        --threads 1 --storage sqlite:///peer.db

What ``rnnsweep bench --e2e`` times ``rnnsweep run`` against (issue 17). Written as a
researcher would, plainly: an Optuna study stored in a SQLite file; its objective builds
``torch.nn.GRU`` (``LSTM`` for lstm, ``RNN`` for rnn: torch.nn has no UGRNN, so ugrnn is
compared against the GRU script, the closest gated cell torch.nn has), scales its initial
weights, trains for the given steps with gradient-norm clipping, stops on a NaN or
infinite loss, evaluates once on a held-out set and returns that loss.

The search space is rnnsweep's default one for these knobs: lr log-uniform in [1e-4, 1],
init scale log-uniform in [0.3, 3], clip log-uniform in [0.1, 100], optimizer in
{adam, rmsprop, sgd (momentum 0.9)}, and for the vanilla RNN its nonlinearity. The data
are rnnsweep's own parens task (same generator, sequence length 50, same held-out set of
256 sequences), so both sides draw the same kind of batches at the same cost.

Prints one JSON line: trials, wall seconds, trials per hour.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import optuna
import torch

from rnnsweep.tasks import make_task
from rnnsweep.tasks.base import Batch

MODULES = {"gru": torch.nn.GRU, "ugrnn": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="gru", choices=sorted(MODULES))
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--storage", default="sqlite:///peer.db")
    args = ap.parse_args()

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    task = make_task("parens", {"seq_len": args.seq_len})
    held_out = task.eval_batch(1_000_003, args.eval_size)

    def loss_of(rnn: torch.nn.Module, readout: torch.nn.Module, batch: Batch) -> torch.Tensor:
        out, _ = rnn(batch.x)  # (T, B, H)
        logits = readout(out).unsqueeze(0)  # (1, T, B, O): the task's loss takes a pack of one
        one = Batch(batch.x.unsqueeze(0), batch.y.unsqueeze(0), batch.mask.unsqueeze(0))
        return task.loss(logits, one)[0]

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        scale = trial.suggest_float("init_scale", 0.3, 3.0, log=True)
        clip = trial.suggest_float("clip", 0.1, 100.0, log=True)
        opt_name = trial.suggest_categorical("optimizer", ["adam", "rmsprop", "sgd"])
        kw = {}
        if args.arch == "rnn":
            kw["nonlinearity"] = trial.suggest_categorical("nonlinearity", ["tanh", "relu"])
        torch.manual_seed(trial.number)
        rnn = MODULES[args.arch](task.n_in, args.hidden, num_layers=args.depth, **kw)
        readout = torch.nn.Linear(args.hidden, task.n_out)
        with torch.no_grad():
            for name, p in rnn.named_parameters():
                if name.startswith("weight"):
                    p.normal_(0.0, scale / math.sqrt(p.shape[1]))
        params = [*rnn.parameters(), *readout.parameters()]
        if opt_name == "adam":
            opt = torch.optim.Adam(params, lr=lr)
        elif opt_name == "rmsprop":
            opt = torch.optim.RMSprop(params, lr=lr)
        else:
            opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
        gen = torch.Generator().manual_seed(trial.number)
        for _ in range(args.steps):
            loss = loss_of(rnn, readout, task.sample(gen, args.batch_size))
            if not torch.isfinite(loss):
                return math.inf  # diverged: the worst value, the study goes on
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
        with torch.no_grad():
            final = float(loss_of(rnn, readout, held_out))
        return final if math.isfinite(final) else math.inf

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"peer-{args.arch}-d{args.depth}",
        storage=args.storage,
        sampler=optuna.samplers.RandomSampler(seed=args.seed),
        load_if_exists=True,
    )
    study.optimize(objective, n_trials=args.trials)
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {"trials": args.trials, "wall_s": wall, "trials_per_hour": 3600 * args.trials / wall}
        )
    )


if __name__ == "__main__":
    main()
