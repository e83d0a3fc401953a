"""The stream of fresh training batches of online gradient descent, drawn ahead on the CPU.

Drawing a step's normals is most of an online step on the CPU (13.6 of 21.5 ms in
``benchmarks/bench_training.py``), and torch's CPU normal sampler runs on one core whatever the
thread count. So when a CPU run has two or more threads, one background thread draws the normals
of batch k+1 while the other threads compute step k. Only that thread touches the generator, one
batch after another, so the stream holds exactly the numbers a foreground draw would give; and
``resume_state`` gives the generator state a checkpoint needs to continue it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from .data import Normals, Prompts, PromptSampler


def draws_ahead_by_default(device: torch.device) -> bool:
    """Draw in the background on a CPU with threads to spare; CUDA kernels are asynchronous
    anyway."""
    return device.type == "cpu" and torch.get_num_threads() >= 2


class PromptStream:
    """``next()`` returns a new batch of ``batch`` prompts each call, inside a ``with`` block only
    (on exit the generator has drawn one batch that was never returned).

    With ``ahead``, the torch intra-op threads (a process-wide setting) are one fewer inside the
    ``with`` block, since the drawing thread takes that core, and restored on exit.
    """

    def __init__(self, sampler: PromptSampler, batch: int, generator: torch.Generator, ahead: bool):
        self.sampler, self.batch, self.generator, self.ahead = (
            sampler,
            int(batch),
            generator,
            bool(ahead),
        )
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._threads = 0
        self._open = False

    def _draw(self) -> tuple[torch.Tensor, Normals]:
        state = self.generator.get_state()
        return state, self.sampler.draw(self.batch, self.generator)

    def __enter__(self) -> PromptStream:
        self._open = True
        if self.ahead:
            self._threads = torch.get_num_threads()
            torch.set_num_threads(max(self._threads - 1, 1))
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prompt-draws")
            self._pending = self._executor.submit(self._draw)
        return self

    def __exit__(self, *exc: object) -> None:
        self._open = False
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor, self._pending = None, None
            torch.set_num_threads(self._threads)

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("PromptStream is used outside its `with` block")

    def next(self) -> Prompts:
        self._check_open()
        if self._pending is None:
            return self.sampler.sample(self.batch, self.generator)
        _, normals = self._pending.result()
        self._pending = self._executor.submit(self._draw)
        return self.sampler.build(normals)

    def resume_state(self) -> torch.Tensor:
        """The generator state from which the next batch is drawn (what a checkpoint must save)."""
        self._check_open()
        if self._pending is None:
            return self.generator.get_state()
        return self._pending.result()[0]
