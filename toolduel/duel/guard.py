"""Phase 4, guard, and the defence's replay: a defence that does no harm. The defence data keep
every kind of request, and a defended FC model that lost one of them is not kept.

The pool holds what fooled the FC model, which is mostly requests that call a tool; trained on
it, the FC model learns to call whatever it is asked (the duel's first defence once took no-call
accuracy from 0.69 to 0.15). Two guards:

- :func:`balanced_replay`: the replayed seed examples top each kind of request (one call, several
  calls, no call; :func:`request_kind`) up to at least its share of the seeds in the defence data,
  drawing more replay than ``replay_ratio`` asks where the pool leans on one kind;
- :func:`phase_guard`: after the defence, the FC model before and after it answer a validation
  set drawn from the seeds' training split (the same number of requests of each kind, and for
  the world's seeds as many one-call requests in its perturbation kinds, the make-up of the
  held-out ``hard`` set: :func:`validation_group`); where a group's accuracy falls by more than
  its noise (``gate_z`` standard errors of the difference) the defence is sent back: trained
  again from the round's starting FC model with :data:`RETRY_REPLAY` times the replay and
  :data:`RETRY_EPOCHS` times the passes (``defence_retries`` times at most), and guarded again;
  when no attempt passes, the round keeps the FC model it started with. The run says which.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections import Counter
from pathlib import Path

from toolduel import run_files as files
from toolduel.data import WORLD_TRAIN, load_samples
from toolduel.duel.config import GameConfig
from toolduel.duel.players import load_chat_model
from toolduel.evaluate import evaluate, latest_by_id, read_results
from toolduel.models import close_model
from toolduel.models.base import GenerationConfig
from toolduel.progress import console
from toolduel.run_files import RunFolder, seeded_draw
from toolduel.schema import Sample

REQUEST_KINDS = ("one_call", "several_calls", "no_call")
PERTURBED = "perturbed"  # world seeds: one-call requests in a perturbation kind
VALIDATION = "validation"
RETRY_REPLAY, RETRY_EPOCHS = 3, 0.5  # a retried defence: 3x the replay, half the passes (each retry again)


def request_kind(sample: Sample) -> str:
    """What a request asks of the FC model: no call, one call, or several."""
    return "no_call" if not sample.gold else "one_call" if len(sample.gold) == 1 else "several_calls"


def validation_group(sample: Sample) -> str:
    """The guard's group of a validation request: its kind, or ``perturbed`` for a world request
    phrased in one of the perturbation kinds."""
    from toolduel.world.phrasing import PLAIN

    return PERTURBED if sample.meta.get("phrasing") not in (None, PLAIN) else request_kind(sample)


def _world_samples(kind: str, n: int, stream: str, seed: int) -> list[Sample]:
    from toolduel.world.training_data import replay_requests

    world_kind = {"one_call": "one_call", "several_calls": "two_call", "no_call": "no_call"}[kind]
    return replay_requests(n, seed=random.Random(f"{seed}:{stream}").randrange(10**9), id_prefix=stream,
                           kinds=(world_kind,))


@functools.cache
def _seeds_by_kind(spec: str) -> dict[str, list[Sample]]:
    """The samples of a seeds spec (not ``world:train``) by request kind, read once per process."""
    by_kind: dict[str, list[Sample]] = {}
    for sample in load_samples(spec).samples:
        by_kind.setdefault(request_kind(sample), []).append(sample)
    return by_kind


def seed_shares(spec: str) -> dict[str, float]:
    """Each request kind's share of the seeds (the world's training mix for ``world:train``)."""
    if spec == WORLD_TRAIN:
        from toolduel.world.training_data import FC_KIND_WEIGHTS

        return dict(zip(REQUEST_KINDS, FC_KIND_WEIGHTS))
    by_kind = _seeds_by_kind(spec)
    total = sum(map(len, by_kind.values()))
    return {kind: len(by_kind[kind]) / total for kind in REQUEST_KINDS if by_kind.get(kind)}


def samples_of_kind(spec: str, kind: str, n: int, stream: str, seed: int) -> list[Sample]:
    """``n`` seed samples of one request kind, the same on every resume."""
    if n <= 0:
        return []
    if spec == WORLD_TRAIN:
        return _world_samples(kind, n, stream, seed)
    return seeded_draw(_seeds_by_kind(spec).get(kind, []), n, stream, seed)


def replay_counts(pool_kinds: Counter, replay: int, shares: dict[str, float]) -> dict[str, int]:
    """How many replayed examples of each kind, so that every kind holds at least its share of
    pool + replay (within one example of rounding): ``replay`` in all where that is enough, more
    where the pool leans so far on one kind that it is not."""
    pool = sum(pool_kinds.values())
    # the fewest examples in all in which no kind of the pool is over its share by more than one
    least = [math.ceil((pool_kinds[kind] - 1) / share - 1e-9) for kind, share in shares.items()
             if share > 0 and pool_kinds[kind] > 1]
    total = max([pool + replay, *least])
    counts = {kind: max(0, math.floor(share * total + 0.5) - pool_kinds[kind]) for kind, share in shares.items()}
    short = replay - sum(counts.values())  # a pool a little over some share: the rest, largest share first
    order = sorted(shares, key=shares.get, reverse=True)
    for turn in range(max(0, short)):
        counts[order[turn % len(order)]] += 1
    return counts


def balanced_replay(config: GameConfig, pool: list[dict], replay: int, round_index: int) -> list[Sample]:
    """The round's replayed seed examples (:func:`replay_counts`), drawn kind by kind."""
    if replay == 0 and not pool:
        return []
    shares = seed_shares(config.seeds)
    pool_kinds = Counter(request_kind(Sample.from_dict(record["sample"])) for record in pool)
    counts = replay_counts(pool_kinds, replay, shares)
    return [sample for kind, n in counts.items()
            for sample in samples_of_kind(config.seeds, kind, n, f"replay-{round_index}-{kind}", config.seed)]


def validation_samples(config: GameConfig) -> list[Sample]:
    """The guard's validation set: from the seeds' training split, the same number of each kind
    the seeds hold, and for the world's seeds as many perturbed one-call requests (every round
    the same)."""
    kinds = list(seed_shares(config.seeds))
    groups = len(kinds) + (config.seeds == WORLD_TRAIN)
    per_kind = max(1, config.validation_size // groups)
    samples = [s for kind in kinds for s in samples_of_kind(config.seeds, kind, per_kind, f"validation-{kind}",
                                                           config.seed)]
    if config.seeds == WORLD_TRAIN:
        samples += _perturbed_world_samples(per_kind, config.seed)
    # a draw with replacement may hold a sample twice, and evaluation keys answers by id
    seen: Counter = Counter()
    unique = []
    for sample in samples:
        seen[sample.id] += 1
        repeat = seen[sample.id]
        unique.append(sample if repeat == 1 else dataclasses.replace(sample, id=f"{sample.id}#{repeat}"))
    return unique


def _perturbed_world_samples(n: int, seed: int) -> list[Sample]:
    from toolduel.world.generator import generate_samples
    from toolduel.world.phrasing import PERTURBATIONS

    return generate_samples(n, seed=random.Random(f"{seed}:validation-{PERTURBED}").randrange(10**9),
                            kinds=("one_call",), phrasings=PERTURBATIONS, split="train",
                            id_prefix=f"validation-{PERTURBED}")


def accuracy_by_kind(records: list[dict], samples: list[Sample]) -> dict[str, tuple[float, int]]:
    """(accuracy, n) per validation group (:func:`validation_group`) of the answers in ``records``."""
    kinds = {s.id: validation_group(s) for s in samples}
    scored: dict[str, list[bool]] = {}
    for record in latest_by_id(records):
        if str(record["id"]) in kinds:
            scored.setdefault(kinds[str(record["id"])], []).append(bool(record["valid"]))
    return {kind: (sum(v) / len(v), len(v)) for kind, v in scored.items()}


def losses(before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]], z: float) -> dict[str, list]:
    """The kinds whose accuracy fell by more than ``z`` standard errors of the difference, with
    [before, after]. The standard error has a floor of one item in n, so that a set answered
    all right before cannot flag the loss of one answer."""
    fell = {}
    for kind, (a, n) in before.items():
        if kind not in after or n == 0:
            continue
        b = after[kind][0]
        error = max(math.sqrt((a * (1 - a) + b * (1 - b)) / n), 1 / n)
        if a - b > z * error:
            fell[kind] = [round(a, 4), round(b, 4)]
    return fell


def _validate(config: GameConfig, model_path: Path, samples: list[Sample], progress: bool,
              label: str) -> dict[str, tuple[float, int]]:
    """The validation answers of the FC model in ``model_path``, kept beside it (``validation/``
    in its round's folder): the model a round starts with was validated as the one the round
    before defended, and is not asked again."""
    out_dir = model_path.parent / VALIDATION
    answered = {str(r["id"]) for r in latest_by_id(read_results(out_dir / files.RESULTS))
                if not r.get("generation_error")}  # as evaluate's resume counts them
    if not {sample.id for sample in samples} <= answered:
        model = load_chat_model(model_path, config, progress, label)
        try:
            evaluate(model, samples, out_dir, GenerationConfig(max_new_tokens=128), batch_size=config.batch_size,
                     resume=True, progress=progress, meta={"set": VALIDATION})
        finally:
            close_model(model)
    return accuracy_by_kind(read_results(out_dir / files.RESULTS), samples)


def guard_verdict(run: RunFolder, round_index: int) -> str | None:
    """What the round's last guard decided: ``defended``, ``retry`` or ``previous`` (None: no guard yet)."""
    path = files.round_dir(run.dir, round_index) / files.GUARD
    return files.read_json_object(path).get("kept") if path.exists() else None


def phase_guard(run: RunFolder, round_index: int, progress: bool, attempt: int = 0) -> None:
    """Keep the defended FC model; or, where the defence lost a kind of request beyond its noise,
    send it back for a retry (``attempt < defence_retries``) or keep the round's starting FC model.
    The verdict, with every attempt's, goes to ``rounds/round_N/guard.json``."""
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    before_path = run.path("fc_path_before_defence")
    after_path = run.path("fc_path")
    if before_path == after_path:  # nothing was trained (an empty pool)
        files.write_json_atomic(out_dir / files.GUARD, {"kept": "defended", "fell": {}, "before": {}, "after": {},
                                                        "n": {}, "skipped": "nothing was trained"})
        run.mark(f"{round_index}:guard")
        return
    samples = validation_samples(config)
    before = _validate(config, before_path, samples, progress, "FC model before")
    after = _validate(config, after_path, samples, progress, "defended FC model")
    fell = losses(before, after, config.gate_z)
    retry = bool(fell) and attempt < config.defence_retries
    earlier = files.read_json_object(out_dir / files.GUARD).get("attempts", []) if attempt else []
    verdict = {"kept": "retry" if retry else "previous" if fell else "defended", "fell": fell,
               "before": {k: v[0] for k, v in before.items()}, "after": {k: v[0] for k, v in after.items()},
               "n": {k: v[1] for k, v in before.items()}, "attempt": attempt}
    verdict["attempts"] = [*earlier, {k: verdict[k] for k in ("kept", "fell", "after")}]
    files.write_json_atomic(out_dir / files.GUARD, verdict)
    phase = f"{round_index}:guard" + (f"-retry{attempt}" if attempt else "")
    if fell:
        lost = ", ".join(f"{kind} {a:.2f} -> {b:.2f}" for kind, (a, b) in fell.items())
        then = (f"defending again from the FC model it started with, with {RETRY_REPLAY}x the replay and "
                f"{RETRY_EPOCHS:g}x the passes" if retry else f"round {round_index} keeps the FC model it started with")
        console.print(f"guard: the defence{f' (retry {attempt})' if attempt else ''} lost {lost} on the validation "
                      f"set (beyond {config.gate_z:g} standard errors); {then}")
        run.mark(phase, fc_path=before_path)
    else:
        console.print(f"guard: no kind of request (nor the perturbed ones) fell beyond its noise on the validation "
                      f"set; the defended FC model{f' (retry {attempt})' if attempt else ''} is kept")
        run.mark(phase)
