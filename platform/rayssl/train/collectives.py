"""The worker loop's collectives over its worker group (torch.distributed; no-ops on one worker).
Every rank must call each of them at the same point, the same number of times (rayssl.train.loop)."""

from __future__ import annotations

from collections.abc import Generator

import torch
import torch.distributed as dist


def collective_device() -> torch.device:
    """gloo reduces CPU tensors, NCCL CUDA ones."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather(t: torch.Tensor) -> torch.Tensor:
    """[B] -> [world, B] on every rank."""
    local = t.to(collective_device())
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out).cpu()


def all_reduce(values: torch.Tensor, op: dist.ReduceOp | dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> torch.Tensor:
    """Reduce across ranks (a no-op on one worker); returns a CPU tensor."""
    if distributed():
        values = values.to(collective_device())
        dist.all_reduce(values, op=op)
    return values.cpu()


def equal_lengths(batches: Generator[dict[str, torch.Tensor], None, None]) -> Generator[dict[str, torch.Tensor], None, None]:
    """Every rank's batch cut to the shortest rank's length. A worker that decodes on its device
    quarantines bad rows after batching, so its batch can come out short, and collectives over a
    batch's rows (the contrastive methods' negatives) need the same length on every rank. Costs a
    one-number all-reduce per step, with data.decode: device only. Closing this closes `batches`."""
    try:
        for batch in batches:
            n = int(all_reduce(torch.tensor(len(batch["index"])), dist.ReduceOp.MIN))
            yield {key: value[:n] for key, value in batch.items()}
    finally:
        batches.close()


def average_gradients(model: torch.nn.Module) -> None:
    """What DDP does after backward, for jobs that cannot use DDP (a double backward through the
    inversion loss): one coalesced all-reduce of every gradient, divided by the world size."""
    if not distributed():
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads]).to(collective_device())
    dist.all_reduce(flat)
    flat = flat.to(grads[0].device) / dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
