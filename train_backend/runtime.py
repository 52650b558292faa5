"""The process a run lives in: stop signals (SIGINT, SIGTERM, SIGHUP), torchrun's environment and collectives,
devices, and the torch settings a run changes and gives back."""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

import torch
import torch.distributed as dist

from train_backend.interrupts import inside_import


# A scheduler's stop (Slurm preemption, `docker stop`, `kill`, `timeout`) and a closed terminal stop a run as Ctrl-C
# does; the exit code is the shell's 128 + signal number.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Cancelled(KeyboardInterrupt):
    """A stop signal before the training loop started: nothing was trained. `run_id` is None when no run was
    created; `resumable` says whether the run has a checkpoint (a fresh run's step 0, or the one a resume started
    from); `signum` is the signal."""
    run_id: str | None = None
    resumable = False

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


class Stop:
    """A stop signal during start-up raises Cancelled at once, or at the next check() when it lands inside an import
    (only the first: a second one while the cancellation is recorded just sets the flag); inside the loop (armed) it
    sets the flag, and the loop checkpoints at the end of the step and exits as cancelled. `signum` is the first
    signal received."""
    requested = armed = raised = False
    signum = signal.SIGINT

    @classmethod
    def handler(cls, signum, frame):
        if not cls.requested:
            cls.signum = signum
        cls.requested = True
        if not cls.armed and not inside_import(frame):  # inside one (torch imports lazily): at the next check()
            cls.check()

    @classmethod
    def check(cls):
        """During start-up: raise Cancelled for a stop signal received and not yet raised."""
        if cls.requested and not cls.raised:
            cls.raised = True
            raise Cancelled(cls.signum)

    @classmethod
    @contextmanager
    def installed(cls):
        """The handler for the run's duration, flags reset (an earlier run in this process may have been
        cancelled); off the main thread, where Python allows no signal handlers, nothing is installed. A SIGTERM
        or SIGHUP the caller ignores (nohup) stays ignored; one the caller blocks is unblocked for the run (a mask
        is inherited through exec: a launcher's would hold the app's cancel forever) and blocked again after."""
        cls.requested = cls.armed = cls.raised = False
        cls.signum = signal.SIGINT
        previous, mask = {}, None
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if sig == signal.SIGINT or signal.getsignal(sig) is not signal.SIG_IGN:
                    previous[sig] = signal.signal(sig, cls.handler)
            mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, previous)
        try:
            yield
        finally:
            cls.armed = False
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@contextmanager
def torch_settings():
    """Give back the process-wide settings a run changes (deterministic mode, threads): a caller's process (tests,
    benchmarks, the study) keeps its own."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.utils.deterministic.fill_uninitialized_memory, torch.get_num_threads())
    try:
        yield
    finally:
        deterministic, warn_only, fill, threads = saved
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill
        torch.set_num_threads(threads)


def launched() -> bool:
    """Started by torchrun: DDP even on one rank (the path multi-GPU runs take)."""
    return "RANK" in os.environ


def dist_env() -> tuple[int, int, int]:
    if not launched():
        return 0, 1, 0
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


def broadcast(obj, rank: int, world: int):
    if world == 1:
        return obj
    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """To the device without a host sync on CUDA (a pageable host-to-device copy waits for the GPU)."""
    return x.to(device) if device.type == "cpu" else x.pin_memory().to(device, non_blocking=True)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_properties(device).name if device.type == "cuda" else "cpu"
