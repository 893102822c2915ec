"""Several processes: under ``accelerate launch`` every process plays the game loop, and only
the main process writes run files (:func:`is_main_process`, :func:`share_from_main`).

:func:`between_phases` stops DeepSpeed ZeRO-3 from partitioning models loaded outside a
trainer; :func:`run_alone` runs one process's own training (the warm starts) outside the group.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
from typing import Any, NoReturn

from toolduel.config import ConfigError

# --- processes ---------------------------------------------------------------------------------


def process_state() -> Any:
    """accelerate's view of this process (set up once; the same object for the trainers).

    On a machine without CUDA the state must be made with ``cpu=True``: otherwise accelerate
    sees no device to run several processes on and every process would think it is alone."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes > 1:
        _end_processes_at_exit()
    return state


@functools.cache
def _end_processes_at_exit() -> None:
    """Destroy the process group when the interpreter exits (on every path out, errors included):
    left to the interpreter's own teardown, gloo's threads can abort a process."""
    from accelerate import PartialState

    atexit.register(lambda: PartialState().destroy_process_group())


def exit_process(code: int) -> NoReturn:
    """End this process with ``code``.

    In a process group, what a normal exit does first is done (other threads joined, the exit
    handlers run, the group destroyed among them) and the process then ends without the rest of
    the interpreter's teardown: even with the group destroyed, about one two-process CPU run in
    twenty finished its work and then aborted there, with no Python code running ("terminate
    called without an active exception", SIGABRT), which ``accelerate launch`` reports as a
    failed run. Alone, a plain ``sys.exit``."""
    distributed = sys.modules.get("torch.distributed")  # not imported: no group, and no need to import it
    if distributed is None or not (distributed.is_available() and distributed.is_initialized()):
        sys.exit(code)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def is_main_process() -> bool:
    return process_state().is_main_process


def process_count() -> int:
    return process_state().num_processes


def wait_for_everyone() -> None:
    """A barrier across processes (for short waits only: it times out like the process group)."""
    process_state().wait_for_everyone()


def share_from_main(value: Any) -> Any:
    """The main process's ``value`` on every process (a picklable object; a no-op when alone)."""
    if process_count() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def gather_from_all(items: list) -> list:
    """Every process's ``items``, concatenated in process order, on every process."""
    if process_count() == 1:
        return list(items)
    from accelerate.utils import gather_object

    return gather_object(list(items))


def between_phases() -> None:
    """Free what the last trainer held, and load whole models again.

    Under DeepSpeed ZeRO-3 a trainer leaves transformers set to partition every model loaded
    afterwards in this process (``zero.Init``); a model the main process then loads alone for
    generation, or one loaded before the next trainer starts, must be whole. The next trainer
    sets ZeRO-3 up again for its own model."""
    import gc

    import torch
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_alone(arguments: list[str], what: str) -> None:
    """Run ``toolduel <arguments>`` in a child process outside the process group, and wait.

    For work that trains but belongs to one process (building the world models): a trainer
    started by one process of a group would wait forever for the others to join its steps."""
    import os
    import subprocess
    import sys

    group = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
             "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in group and not k.startswith(("ACCELERATE_", "TORCHELASTIC_"))}
    child = subprocess.run([sys.executable, "-m", "toolduel.cli", *arguments], env=env, stdout=subprocess.DEVNULL)
    if child.returncode != 0:  # its own messages and progress went to this process's stderr
        raise ConfigError(f"{what} failed (toolduel {' '.join(arguments)}, exit code {child.returncode}); "
                          "see its messages above")
