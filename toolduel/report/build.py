"""Build the weakness report of a run folder or an eval folder: report.html plus one PNG per figure.

Each section is drawn on its own: one that fails on odd data becomes a line in the problems
list and the others still render.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable

from toolduel.report import Report, ReportError, findings, measure
from toolduel.report import figures as draw
from toolduel.report import page as html
from toolduel.report.load import RunData, load_folder
from toolduel.report.traits import TRAITS, compare_traits
from toolduel.run_files import REPORT, write_text_atomic

HTML_FILE = "report.html"
STYLES_DRAWN = 20  # bars in the style figure (the table lists every style)
FIGURES = ("accuracy", "accuracy_by_category", "attack_rates", "attack_steps", "error_kinds", "phrasing", "traits",
           "rejections")


class _Builder:
    """Collects sections and figures; a figure is written as PNG and embedded in the page."""

    def __init__(self, data: RunData, out: Path):
        self.data, self.out = data, out
        self.body: list[str] = []
        self.figures: dict[str, Path] = {}

    def figure(self, name: str, figure, caption: str) -> str:
        if figure is None:
            return ""
        png = draw.png_bytes(figure)
        path = self.out / f"{name}.png"
        path.write_bytes(png)
        self.figures[name] = path
        return html.figure(name, png, caption)

    def add(self, title: str, build: Callable[[], list[str]]) -> None:
        try:
            parts = [part for part in build() if part]
        except Exception as error:  # one odd field must not cost the whole report
            where = traceback.extract_tb(error.__traceback__)[-1]
            self.data.problems.append(f"section {title!r} could not be drawn: {type(error).__name__}: {error} "
                                      f"({Path(where.filename).name}:{where.lineno})")
            return
        if parts:
            self.body.append(html.section(title, *parts, section_id=title.lower().replace(" ", "-")))


RATE_COLUMNS = {measure.ATTACK_SUCCESS_BEFORE: "attack success: before defence (harvest)",
                measure.ATTACK_SUCCESS: "after defence (fresh queries)", measure.VALIDITY: "validity"}


def _pool_size(data: RunData, round_index: int) -> int | str:
    return sum(record["round"] <= round_index for record in data.pool) if data.pool else "-"


def _rounds_section(b: _Builder) -> list[str]:
    data, accuracy = b.data, measure.accuracy_by_set(b.data)
    rates = measure.attack_rates(data)
    metric = {m["round"]: m for m in data.metrics}
    rows = []
    for r in data.rounds:
        seconds = metric.get(r, {}).get("seconds", {})
        total = sum(v for v in seconds.values() if isinstance(v, (int, float)))
        rows.append([r, *(html.Cell(html.percent(accuracy[s].get(r)), "num") for s in accuracy),
                     *(html.Cell(html.percent(rates.get(label, {}).get(r)), "num") for label in RATE_COLUMNS),
                     html.Cell(metric.get(r, {}).get("pool_size", _pool_size(data, r)), "num"),
                     html.Cell(f"{total:.0f}" if seconds else "-", "num")])
    headers = ["round", *(f"accuracy: {s}" for s in accuracy), *RATE_COLUMNS.values(), "pool size", "seconds"]
    return [html.table("rounds", headers, rows),
            html.paragraph("Round 0 is the FC model before any defence; round t's accuracy is the FC model after "
                           "round t's defence. Attack success is that of round t's queries against the FC model "
                           "before and after round t's defence. Numbers come from metrics.jsonl, or from the "
                           "round's files where a metrics line lacks them.")]


def _accuracy_section(b: _Builder) -> list[str]:
    by_set, by_category = measure.accuracy_by_set(b.data), measure.accuracy_by_category(b.data)
    parts = []
    if b.data.kind == "run":
        parts.append(b.figure("accuracy", draw.rate_figure(by_set, "Accuracy on held-out sets", "accuracy"),
                              "Accuracy of the FC model on each held-out set"))
    if by_category:
        parts.append(b.figure("accuracy_by_category",
                              draw.rate_figure(by_category, "Accuracy per category", "accuracy"),
                              "Accuracy per category of the sets that mix categories (BFCL's, for one)"))
    if by_category and b.data.kind == "run":
        rounds = sorted({r for points in by_category.values() for r in points})
        parts.append(html.table("categories", ["category", *(f"round {r}" for r in rounds)], [
            [label, *(html.Cell(html.percent(points.get(r)), "num") for r in rounds)]
            for label, points in by_category.items()]))
    return parts


def _attack_section(b: _Builder) -> list[str]:
    rates = measure.attack_rates(b.data)
    figure = draw.rate_figure(rates, "Attack success and validity per round", "rate", "duel round")
    steps = draw.steps_figure(measure.attack_step_series(b.data), "The attack's training, step by step")
    return [b.figure("attack_rates", figure, "Attack success and validity rate per duel round, and the share of "
                                             "each round's successful attacks the FC model still fails after "
                                             "that round's defence"),
            b.figure("attack_steps", steps, "Each GRPO step of each round's attack: attack success and validity "
                                            "of its queries, and the share of its prompts that taught nothing "
                                            "(every query of the prompt paid the same reward)")]


def _error_kinds_section(b: _Builder) -> list[str]:
    heldout, attacks = measure.heldout_error_kinds(b.data), measure.pool_error_kinds(b.data)
    kinds = measure.kinds_present(heldout, attacks)
    if not kinds:
        return []
    columns = [("held-out", r, heldout) for r in sorted(heldout)] + [("attacks", r, attacks) for r in sorted(attacks)]
    rows = [[measure.kind_label(k), *(counts[r].get(k, 0) for _, r, counts in columns)] for k in kinds]
    names = [f"{source} r{r}" for source, r, _ in columns] if b.data.kind == "run" else ["wrong answers"]
    return [b.figure("error_kinds", draw.error_kinds_figure(heldout, attacks),
                     "The checker's error kinds per round"),
            html.table("error-kinds", ["error kind", *names], rows)]


def _rate_rows(stats: dict[str, dict]) -> list[list]:
    """Table rows of :func:`measure.phrasing_stats`-shaped counts: tag, n, worked, rate, by round."""
    return [[tag, entry["n"], entry["worked"], html.Cell(html.percent(entry["rate"]), "num"),
             ", ".join(f"r{r}: {w}/{n}" for r, (w, n) in entry["by_round"].items())] for tag, entry in stats.items()]


def _phrasing_section(b: _Builder) -> list[str]:
    styles = measure.style_stats(b.data.harvest)
    if styles:  # the harvest asked for styles: weaknesses per query asked, the weakest styles first
        rows = _rate_rows(styles)
        weakest = dict(list(styles.items())[:STYLES_DRAWN])
        move_rows = _rate_rows(measure.style_stats(b.data.harvest, "tool_move"))
        return [b.figure("phrasing", draw.phrasing_figure(weakest, "Weaknesses found per query, by the style asked",
                                                          "style asked (queries harvested)"),
                         f"Weaknesses per query asked in each style: the {len(weakest)} highest rates"),
                html.table("phrasing", ["style asked", "queries", "weaknesses", "rate", "weaknesses/queries by round"],
                           rows),
                *([html.table("tool-moves", ["tool move", "queries", "weaknesses", "rate",
                                             "weaknesses/queries by round"], move_rows)] if move_rows else [])]
    stats = measure.phrasing_stats(b.data.pool)
    if not stats:
        return [html.paragraph("The pool's records carry no phrasing tag: the measured traits below describe "
                               "the attacks instead.")] if b.data.pool else []
    rows = _rate_rows(stats)
    return [b.figure("phrasing", draw.phrasing_figure(stats), "Attack success rate by the seed's phrasing tag"),
            html.table("phrasing", ["seed phrasing", "attacks", "worked", "success rate", "worked/attacks by round"],
                       rows)]


def _traits_section(b: _Builder) -> list[str]:
    comparison = compare_traits(measure.trait_records(b.data))
    first = next(iter(comparison.values()))
    if not first["n_worked"] + first["n_failed"]:
        return []
    rows = [[trait, TRAITS[trait], html.Cell(html.number(row["worked"]), "num"),
             html.Cell(html.number(row["failed"]), "num"), html.Cell(html.number(row["difference"]), "num"),
             html.Cell(html.number(row["effect"]), "num")] for trait, row in comparison.items()]
    if first["n_worked"] and first["n_failed"]:
        note = ("Traits come sorted by how well they separate the two groups: the effect is the difference of "
                "means over the pooled standard deviation.")
    else:
        note = ("Only one of the two groups is in the run's files (a run folder whose harvest records carry "
                "no sample and whose pool keeps only successful attacks, say): the means describe it, and "
                "there is nothing to compare it with.")
    return [b.figure("traits", draw.traits_figure(comparison),
                     "Measured traits of valid queries that fooled the FC model and of those that did not"),
            html.table("traits", ["trait", "what it measures", "mean: fooled", "mean: did not fool", "difference",
                                  "effect (sd units)"], rows),
            html.paragraph(note)]


def _rejections_section(b: _Builder) -> list[str]:
    counts, examples = measure.rejections(b.data.harvest)
    if not any(counts.values()):
        return [html.paragraph("No harvested query was rejected.")] if b.data.harvest else []
    reasons = sorted(examples, key=lambda reason: -sum(c.get(reason, 0) for c in counts.values()))
    rows = [[reason, *(counts[r].get(reason, 0) for r in counts), sum(c.get(reason, 0) for c in counts.values()),
             html.Cell(examples[reason]["query"], "code"), examples[reason]["detail"]] for reason in reasons]
    return [b.figure("rejections", draw.rejections_figure(counts), "Harvested queries the validity gate rejected"),
            html.table("rejections", ["reason", *(f"round {r}" for r in counts), "total", "example query",
                                      "detail"], rows)]


POOL_EXAMPLE_COLUMNS = {  # header -> (example key, CSS class, width in percent)
    "round": ("round", "num", 6), "phrasing": ("phrasing", "", 10), "query": ("query", "", 16),
    "gold": ("gold", "code", 14), "FC output (attacked)": ("before", "code", 17),
    "verdict": ("verdict_before", "bad", 11), "FC output after defence": ("after", "code", 15),
    "verdict after defence": ("verdict_after", None, 11)}
RESULT_EXAMPLE_COLUMNS = {
    "set / category": ("where", "", 14), "query": ("query", "", 22), "gold": ("gold", "code", 20),
    "FC output": ("before", "code", 24), "verdict": ("verdict_before", "bad", 20)}


def _example_row(example: dict, columns: dict) -> list[html.Cell]:
    cells = []
    for key, css, _ in columns.values():
        if css is None:  # the verdict after defence: green when the defence fixed it
            css = "good" if example[key] == "correct" else "bad"
        cells.append(html.Cell(example[key], css))
    return cells


def _examples_section(b: _Builder) -> list[str]:
    from_pool = b.data.kind == "run" and any(measure.succeeded(r) for r in b.data.pool)
    if from_pool:
        examples, columns = measure.pool_examples(b.data), POOL_EXAMPLE_COLUMNS
        intro = "Successful attacks from the pool: the FC model's answer when attacked and after that round's defence."
    else:
        examples, columns = measure.result_examples(b.data), RESULT_EXAMPLE_COLUMNS
        intro = "Wrong answers from the evaluation."
    if not examples:
        return []
    parts = [html.paragraph(intro)]
    for kind, chosen in examples.items():
        parts.append(html.heading(f"{measure.kind_label(kind)} ({kind})"))
        rows = [_example_row(example, columns) for example in chosen]
        parts.append(html.table(f"examples-{kind}", list(columns), rows, css="examples",
                                widths=[width for _, _, width in columns.values()]))
    return parts


FINDING_COLUMNS = {  # header -> (example key, CSS class, width in percent); None: green when correct
    "query": ("query", "", 24), "gold": ("gold", "code", 18), "FC output (attacked)": ("before", "code", 18),
    "verdict": ("verdict_before", "bad", 14), "FC output after defence": ("after", "code", 14),
    "verdict after defence": ("verdict_after", None, 12)}


FINDINGS_NOTE = {
    "run": "The {shown} weakest specs of each surface: the share of queries asked in them that were weaknesses "
           "(valid, answerable, failed on some answer), with Wilson's 95% interval, ranked by its low end. Below, "
           "attacks in each that worked.",
    "eval": "The {shown} weakest categories of each set: error rate with Wilson's 95% interval, ranked by its low "
            "end; below, wrong answers in each."}


def _findings_section(b: _Builder) -> list[str]:
    """The weakest specs (or, for an evaluation, categories) with intervals and example attacks."""
    found = findings.weakest_specs(b.data) if b.data.kind == "run" else findings.weakest_categories(b.data)
    if not found:
        return []
    rows = [[row["surface"], row["spec"], html.Cell(row["n"], "num"), html.Cell(row["failed"], "num"),
             html.Cell(f"{html.percent(row['rate'])} [{html.percent(row['low'])}, {html.percent(row['high'])}]",
                       "num")] for row in found]
    rate = "weakness rate [95%]" if b.data.kind == "run" else "error rate [95%]"
    parts = [html.table("findings", ["surface", "spec", "queries" if b.data.kind == "run" else "answers",
                                     "weaknesses" if b.data.kind == "run" else "wrong", rate], rows),
             html.paragraph(FINDINGS_NOTE[b.data.kind].format(shown=findings.SHOWN))]
    after = b.data.kind == "run" and bool(b.data.after_defence)
    columns = {(k if b.data.kind == "run" else k.replace(" (attacked)", "")): v for k, v in FINDING_COLUMNS.items()
               if after or "after" not in k}
    for row in found:
        if row["examples"]:
            parts.append(html.heading(f"{row['surface']}: {row['spec']}"))
            parts.append(html.table(f"findings-{row['surface']}-{row['spec']}".replace(" ", "-"), list(columns),
                                    [_example_row(example, columns) for example in row["examples"]],
                                    css="examples", widths=[width for _, _, width in columns.values()]))
    return parts


def _eval_summary_section(b: _Builder) -> list[str]:
    rows = []
    for evaluation in b.data.evals.get(0, {}).values():
        summary = evaluation.summary or {}
        per_category = summary.get("per_category") if isinstance(summary.get("per_category"), dict) else {}
        for category, counts in per_category.items():
            counts = counts if isinstance(counts, dict) else {}
            rows.append([category, counts.get("n", "-"), counts.get("correct", "-"),
                         html.Cell(html.percent(counts.get("accuracy")), "num")])
        rows.append([html.Cell("all", "good"), summary.get("n", "-"), summary.get("correct", "-"),
                     html.Cell(html.percent(summary.get("accuracy")), "num")])
    return [html.table("summary", ["category", "n", "correct", "accuracy"], rows)] if rows else []


def _meta_line(data: RunData) -> str:
    if data.kind == "eval":
        return f"evaluation folder {data.folder}"
    rounds = [r for r in data.rounds if r > 0]
    completed = (data.state or {}).get("completed")
    state = f"; last completed phase: {completed[-1]}" if isinstance(completed, list) and completed else ""
    return f"run folder {data.folder}; {len(rounds)} duel round(s) after round 0; {len(data.pool)} pool records{state}"


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Report:
    """Write ``report.html`` and the PNG figures under ``out`` (default ``RUN_DIR/report``) and
    return where they are and the problems found; raises :class:`ReportError` only when
    ``run_dir`` is no folder."""
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".json":  # an ablation's results (benchmarks/ablation.py)
        from toolduel.report.ablation import build_ablation_report

        return build_ablation_report(run_dir, out)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such folder")
    out = Path(out) if out is not None else run_dir / REPORT
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} is a file, not a folder for the report; move it away, or pass --out")
    out.mkdir(parents=True, exist_ok=True)
    data = load_folder(run_dir)
    builder = _Builder(data, out)
    builder.add("What was found", lambda: _findings_section(builder))
    if data.kind == "eval":
        builder.add("Accuracy", lambda: _eval_summary_section(builder) + _accuracy_section(builder))
    else:
        builder.add("Rounds", lambda: _rounds_section(builder))
        builder.add("Accuracy", lambda: _accuracy_section(builder))
        builder.add("Attacks", lambda: _attack_section(builder))
    builder.add("Error kinds", lambda: _error_kinds_section(builder))
    if data.kind == "run":
        builder.add("What the successful attacks look like", lambda: _phrasing_section(builder)
                    + _traits_section(builder))
        builder.add("Validity rejections", lambda: _rejections_section(builder))
    builder.add("Examples", lambda: _examples_section(builder))
    title = f"toolduel weakness report: {run_dir.resolve().name}"
    text = html.page(title, _meta_line(data), [html.problems_section(data.problems), *builder.body], data.config_text)
    write_text_atomic(out / HTML_FILE, text)
    for name in set(FIGURES) - set(builder.figures):  # a figure of an earlier report that has no data now
        (out / f"{name}.png").unlink(missing_ok=True)
    return Report(html=out / HTML_FILE, figures=builder.figures, problems=list(data.problems))
