"""Seeded samples of the world: tools (targets plus look-alike distractors), a query with a
phrasing tag, and the gold calls, as :class:`~toolduel.schema.Sample`s.

Kinds: ``one_call``, ``two_call`` (two calls in one query, sometimes the same function
twice) and ``no_call`` (no offered tool fits). Every query falls in a ``train`` or a
``heldout`` split by a hash of its text, so held-out sets never share a query with training
data, whatever the seeds.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from typing import Any

from toolduel.referee.validity import is_grounded
from toolduel.schema import Call, GoldCall, Sample
from toolduel.world import phrasing as ph
from toolduel.world.catalog import WORLD_VERSION, Function, Param, sample_value
from toolduel.world.functions import all_functions, domains, functions_by_name
from toolduel.world.phrasing import PHRASINGS, PLAIN, WRAPPERS, Piece
from toolduel.world.surface import indirect_forms, surface_forms

KINDS = ("one_call", "two_call", "no_call")
SPLITS = ("train", "heldout")
HELDOUT_BUCKETS = 10  # one query text in ten belongs to the held-out split
_QUESTION_WORDS = {"what", "how", "when", "where", "is", "are", "do", "does", "which", "who", "has", "any"}
_CONNECTORS = {PLAIN: (". Also,", ". Then"), "other": (", and also", ". After that,", "; plus", ". Oh, and")}
_OFF_WORLD = (
    "Tell me a joke about {topic}", "Write a short poem about {city}", "Who won the football match last night",
    "Recommend a good novel to read", "What is the meaning of life", "Help me write a cover letter",
    "How do I fix a flat bicycle tire", "Explain quantum computing in simple terms",
    "What is the capital of Australia", "Summarize the plot of Hamlet", "Give me a fun fact about {topic}",
    "Draw a picture of a cat", "What should I name my new puppy", "Sing me a lullaby",
)


# Domains whose functions could stand in for each other (a tip is a percentage, an alarm is a
# reminder): a no-call sample never offers a tool from its request's cluster.
_CLUSTERS = ({"arithmetic", "finance", "units", "shopping"}, {"calendar", "smart_home", "messaging"})


def _cluster(domain: str) -> set[str]:
    return next((c for c in _CLUSTERS if domain in c), {domain})


def split_of(query: str) -> str:
    """``heldout`` for one normalised query text in ``HELDOUT_BUCKETS``, else ``train``."""
    key = re.sub(r"\s+", " ", query.lower()).strip().encode()
    return "heldout" if int(hashlib.sha1(key).hexdigest()[:8], 16) % HELDOUT_BUCKETS == 0 else "train"


def sample_arguments(function: Function, rng: random.Random) -> dict[str, Any]:
    """Every required parameter, and each optional one with probability 1/2."""
    args = {}
    for param in function.params:
        if param.required or rng.random() < 0.5:
            args[param.name] = sample_value(param.pool, param.type, rng)
    return args


def _value_pieces(value: Any, indirect: bool, rng: random.Random) -> list[Piece]:
    if isinstance(value, list):
        parts = [_value_pieces(v, indirect, rng) for v in value]
        out = []
        for i, part in enumerate(parts):
            if i:
                out.append(Piece("and" if i == len(parts) - 1 else ","))
            out.extend(part)
        return out
    forms = indirect_forms(value) if indirect else []
    text = rng.choice(forms) if forms else surface_forms(value)[0]
    return [Piece(text, value=True)]


def _has_indirect(value: Any) -> bool:
    return any(_has_indirect(v) for v in value) if isinstance(value, list) else bool(indirect_forms(value))


def _param_chunk(param: Param, value: Any, kinds: tuple[str, ...], indirect: bool, rng: random.Random) -> list[Piece]:
    template = rng.choice(param.alt_phrases if "paraphrase" in kinds else param.phrases)
    if "{v}" not in template:  # a boolean flag: its phrase is its value
        return [Piece(template, value=True)]
    before, after = template.split("{v}", 1)
    return [Piece(before.strip()), *_value_pieces(value, indirect, rng), Piece(after.strip())]


def render_call(function: Function, args: dict, phrasing: str, rng: random.Random) -> list[Piece] | None:
    """The request for one call, in ``phrasing``'s structure (word-level perturbations come
    later, over the whole query). ``None`` when the phrasing cannot apply to this call."""
    kinds = ph.kinds_of(phrasing)
    intent = rng.choice(function.alt_intents if "paraphrase" in kinds else function.intents)
    stated = [p for p in function.params if p.name in args]
    indirect_names = set()
    if "indirect_values" in kinds:
        candidates = [p.name for p in stated if _has_indirect(args[p.name])]
        if not candidates:
            return None
        indirect_names = {n for n in candidates if rng.random() < 0.6} or {rng.choice(candidates)}
    chunks = [_param_chunk(p, args[p.name], kinds, p.name in indirect_names, rng) for p in stated]
    if "reordered" in kinds:
        if not chunks:
            return None
        order = list(range(len(chunks)))
        while len(order) > 1 and order == sorted(order):
            rng.shuffle(order)
        chunks = [chunks[i] for i in order]
        fronted, rest = chunks[0], chunks[1:]
        intent_piece = Piece(intent[0].lower() + intent[1:])
        return ph.capitalize([*fronted, Piece(","), intent_piece, *[x for c in rest for x in c]])
    return [Piece(intent), *[x for c in chunks for x in c]]


def _end(pieces: list[Piece], intent_or_text: str) -> list[Piece]:
    question = intent_or_text.split(" ", 1)[0].lower().strip(",") in _QUESTION_WORDS
    return [*pieces, Piece("?" if question else ".")]


def _distractors(targets: list[Function], rng: random.Random, low: int, high: int,
                 other_domains_only: bool = False) -> list[Function]:
    taken = {f.name for f in targets}
    target_domains = {f.domain for f in targets}
    if other_domains_only:
        target_domains = set().union(*(_cluster(d) for d in target_domains))
    same = [f for d in sorted(target_domains) for f in domains()[d] if f.name not in taken]  # sorted: hash order varies
    other = [f for f in all_functions() if f.domain not in target_domains]
    picked: list[Function] = []
    for _ in range(rng.randint(low, high)):
        pool = same if same and not other_domains_only and rng.random() < 0.5 else other
        choices = [f for f in pool if f.name not in taken]
        if choices:
            pick = rng.choice(choices)
            picked.append(pick)
            taken.add(pick.name)
    return picked


def _perturb(pieces: list[Piece], phrasing: str, rng: random.Random, calls: list[Call] = ()) -> list[Piece]:
    """The phrasing's wrappers applied to a composed query, in :data:`~toolduel.world.phrasing.WRAPPERS`
    order. Distractor numbers avoid the numbers the query states, and those of ``calls``' values where
    the query says them in words (``indirect_values``)."""
    kinds = ph.kinds_of(phrasing)
    for wrapper in (w for w in WRAPPERS if w in kinds):
        if wrapper == "distractor_numbers":
            avoid = {d for p in pieces if p.value for d in re.findall(r"\d+", p.text)}
            if "indirect_values" in kinds:
                avoid |= {d for c in calls for d in re.findall(r"\d+", json.dumps(c.arguments))}
            pieces = ph.add_distractor_numbers(pieces, rng, avoid)
        elif wrapper == "chatty":
            pieces = ph.wrap_chatty(pieces, rng)
        elif wrapper == "terse":
            pieces = ph.make_terse(pieces)
        else:
            pieces = ph.add_noise(pieces, rng)
    return pieces


def _one_request(function: Function, args: dict, phrasing: str, rng: random.Random) -> list[Piece] | None:
    pieces = render_call(function, args, phrasing, rng)
    if pieces is None:
        return None
    return _end(pieces, pieces[0].text if "reordered" not in ph.kinds_of(phrasing) else "")


def render_query(calls: list[Call], phrasing: str, rng: random.Random) -> str | None:
    """A query asking for ``calls`` (one or two), in ``phrasing``; ``None`` when the phrasing
    cannot apply (no value with an indirect form, nothing to reorder) or its words say another
    number than a value."""
    by_name = functions_by_name()
    parts = []
    for call in calls:
        request = _one_request(by_name[call.name], call.arguments, phrasing, rng)
        if request is None:
            return None
        parts.append(request)
    pieces = parts[0]
    if len(parts) == 2:
        connector = rng.choice(_CONNECTORS[PLAIN if phrasing == PLAIN else "other"])
        pieces = [*pieces[:-1], Piece(connector), *ph.decapitalize(parts[1])]
    query = ph.join(ph.capitalize(_perturb(pieces, phrasing, rng, calls)))
    if "indirect_values" in ph.kinds_of(phrasing) and not all(
            is_grounded(value, query, surface_forms) for call in calls for value in call.arguments.values()):
        return None  # numbers in words run together: "five hundred" and "twenty-seven" read as 527
    return query


def render_off_world(text: str, phrasing: str, rng: random.Random) -> str | None:
    """An off-world request (no tool fits) in ``phrasing``; only the wrappers apply to it."""
    if not set(ph.kinds_of(phrasing)) <= set(WRAPPERS):
        return None
    return ph.join(ph.capitalize(_perturb(_end([Piece(text)], text), phrasing, rng)))


def _choose(kind: str, rng: random.Random) -> tuple[list[Call], list[Function], str | None]:
    """The calls the query asks for, the functions offered, and (no-call) an off-world text."""
    functions = list(all_functions())
    if kind == "no_call":
        if rng.random() < 0.5:  # a world request whose function is not offered
            target = rng.choice(functions)
            tools = _distractors([target], rng, 1, 4, other_domains_only=True)
            return [Call(target.name, sample_arguments(target, rng))], tools, None
        text = rng.choice(_OFF_WORLD).format(topic=rng.choice(("cats", "space", "history", "coffee")),
                                             city=rng.choice(("Paris", "Tokyo", "Lima")))
        return [], _distractors([rng.choice(functions)], rng, 1, 4), text
    targets = [rng.choice(functions)]
    if kind == "two_call":
        targets.append(targets[0] if rng.random() < 0.4 else rng.choice([f for f in functions if f is not targets[0]]))
    calls = [Call(t.name, sample_arguments(t, rng)) for t in targets]
    distractors = _distractors(targets, rng, 1, 4 if kind == "one_call" else 3)
    return calls, [*dict.fromkeys(targets), *distractors], None


def make_sample(kind: str, phrasing: str, rng: random.Random, sample_id: str,
                split: str = "train", max_tries: int = 200) -> Sample:
    """One sample of ``kind`` phrased as ``phrasing`` whose query falls in ``split``.

    ``meta["request"]`` keeps the calls the query asks for (for a no-call sample: the call of
    the function that is not offered, or none for an off-world request), so the same request
    can be phrased again (:func:`rephrase`)."""
    if kind not in KINDS or split not in SPLITS:
        raise ValueError(f"kind must be one of {KINDS}, split one of {SPLITS}; got {kind!r}, {split!r}")
    ph.kinds_of(phrasing)  # a ValueError names an unknown phrasing
    for _ in range(max_tries):
        calls, functions, off_world = _choose(kind, rng)
        if len(calls) == 2 and calls[0] == calls[1]:
            continue
        query = render_off_world(off_world, phrasing, rng) if off_world else render_query(calls, phrasing, rng)
        if query is None or split_of(query) != split:
            continue
        rng.shuffle(functions)
        tools = [f.tool() for f in functions]
        by_name = {t.name: t for t in tools}
        gold = [GoldCall.from_call(c, by_name[c.name]) for c in calls] if kind != "no_call" else []
        meta = {"phrasing": phrasing, "kind": kind, "split": split, "world_version": WORLD_VERSION,
                "source": "world", "request": [c.to_dict() for c in calls], "off_world": off_world}
        return Sample(id=sample_id, tools=tools, messages=[{"role": "user", "content": query}],
                      gold=gold, category=phrasing if kind == "one_call" else kind, meta=meta)
    raise RuntimeError(f"no {kind}/{phrasing} sample in the {split} split after {max_tries} tries")


def rephrase(sample: Sample, phrasing: str, rng: random.Random) -> str | None:
    """The request of a world sample phrased again as ``phrasing`` (``None`` if it cannot be)."""
    if sample.meta.get("off_world"):
        return render_off_world(sample.meta["off_world"], phrasing, rng)
    calls = [Call(c["name"], c["arguments"]) for c in sample.meta.get("request", [])]
    return render_query(calls, phrasing, rng) if calls else None


def generate_samples(n: int, seed: int = 0, kinds: Iterable[str] = KINDS,
                     phrasings: Iterable[str] = PHRASINGS, split: str = "train",
                     kind_weights: Iterable[float] | None = None, id_prefix: str = "world") -> list[Sample]:
    """``n`` samples, each of a kind and phrasing drawn from the given ones; the same
    arguments always give the same samples."""
    rng = random.Random(f"{WORLD_VERSION}:{seed}:{split}")
    kinds, phrasings = list(kinds), list(phrasings)
    weights = list(kind_weights) if kind_weights is not None else None
    samples = []
    for i in range(n):
        kind = rng.choices(kinds, weights=weights)[0]
        phrasing = rng.choice(phrasings)
        samples.append(make_sample(kind, phrasing, rng, f"{id_prefix}-{split}-{seed}-{i}", split))
    return samples
