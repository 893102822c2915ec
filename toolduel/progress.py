"""Progress bars for long phases (rich), and a console for tables and one-line phase logs."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Text is printed as it is (a path or a hint may hold brackets); the few styled lines ask for markup.
console = Console(stderr=True, markup=False)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """``with progress_bar("evaluating", n) as advance: advance(k)``, or
    ``advance(completed=step, total=steps)``; a no-op when disabled."""
    if not enabled:
        yield lambda steps=1, completed=None, total=None: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)

        def advance(steps: int = 1, completed: int | None = None, total: int | None = None) -> None:
            if completed is None:
                progress.advance(task, steps)
            else:  # a trainer reports where it is, and how far it will go
                progress.update(task, completed=completed, total=total)

        yield advance
