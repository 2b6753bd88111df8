"""Training on several processes with ``torchrun``: one process (rank) per GPU or CPU share.

``torchrun --nproc_per_node N -m fusion.cascade train ...`` starts N copies of the command
and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in
each one's environment. :func:`from_env` reads them and joins the process group (NCCL on
CUDA, gloo on the CPU); without them (a plain ``python -m fusion.cascade train``) it returns
:data:`SINGLE`, the one-process group of today, and nothing of ``torch.distributed`` runs.

What each rank does (:mod:`fusion.cascade.train`):

* every rank builds only its share of every epoch's mini-batches: the epoch's global batch
  order is the one-process order (seed and epoch only), and global batch ``i`` goes to rank
  ``i % world_size``; the last ``len % world_size`` batches are left out, so every rank
  takes the same number of steps;
* DDP averages the gradients, so one optimizer step sees ``world_size x --batch-size``
  samples (the learning rate is not rescaled);
* rank 0 alone claims ``--out``, writes config.json, checkpoints, history and training.png,
  and scores the validation draw (the other ranks wait); a resumed run's checkpoint is read
  by rank 0 and sent to the others, so only node 0 needs the run folder. Every rank reads
  the stores.

Example
-------
>>> ranks = from_env()        # no torchrun variables here
>>> ranks.world_size, ranks.is_main
(1, True)
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from base.errors import UsageError

#: Environment variables torchrun sets for every rank.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: ``rank`` of ``world_size`` (``local_rank`` on its
    node). With ``world_size == 1`` every method is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run folder and logs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (any picklable object; tensors as CPU tensors)."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0, device=_comm_device(self))
        return box[0]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums of ``values`` over all ranks (float64)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=_comm_device(self))
        torch.distributed.all_reduce(t)
        return t.cpu().tolist()

    def on_main(self, work, what: str = "rank 0", share: bool = True):
        """Run ``work()`` on rank 0 and return its result on every rank (with ``share``
        False, rank 0 alone gets it and the others None: they only wait for it).

        When it raises, rank 0 re-raises and the other ranks raise a UsageError with the
        same message, so that every rank stops with one line instead of waiting forever
        (or being killed by torchrun) at the next collective call.
        """
        if not self.active:
            return work()
        outcome, error = None, None
        if self.is_main:
            try:
                result = work()
                outcome = ("ok", result if share else None)
            except BaseException as exc:  # sent to the others, then raised here
                error = exc
                outcome = ("error", str(exc))
        outcome = self.broadcast(outcome)
        if error is not None:
            raise error
        if outcome[0] == "error":
            raise UsageError(f"{what} stopped: {outcome[1]}")
        return result if self.is_main else outcome[1]

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


#: The process of a plain ``python -m fusion.cascade train``.
SINGLE = Ranks()


def _comm_device(ranks: Ranks) -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", ranks.local_rank)
    return torch.device("cpu")


def launched_by_torchrun(environ=None) -> bool:
    """Whether torchrun's rank variables are set (all of :data:`TORCHRUN_ENV`)."""
    environ = os.environ if environ is None else environ
    return all(k in environ for k in TORCHRUN_ENV)


def from_env(device: str = "auto", environ=None) -> Ranks:
    """Join torchrun's process group, or :data:`SINGLE` when not launched by torchrun.

    ``device`` is the ``--device`` flag: NCCL when it resolves to CUDA (each rank then uses
    ``cuda:LOCAL_RANK``), gloo otherwise. A world of one (``--nproc_per_node 1``) joins no
    group and runs as a plain process would.
    """
    environ = os.environ if environ is None else environ
    if not launched_by_torchrun(environ):
        return SINGLE
    ranks = Ranks(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ["LOCAL_RANK"]))
    if not ranks.active:
        return ranks
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if ranks.local_rank >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {ranks.local_rank}: this node has only "
                             f"{torch.cuda.device_count()} CUDA devices; lower --nproc_per_node")
        torch.cuda.set_device(ranks.local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return ranks


def rank_device(ranks: Ranks, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA ``device`` under torchrun."""
    if ranks.active and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device
