"""Batch buffers that a DataLoader worker reuses instead of allocating new shared memory per batch.

A worker hands its batches to the main process as tensors in shared memory. Fresh tensors for
every batch cost the kernel a page fault and a zeroed page for every 4 KB (at paper size about
9 ms of system CPU per sample on a 2-core x86_64, more than reading and cropping the sample
itself), and the main process maps them anew. A worker therefore keeps a few slots, each holding
one batch's frame and audio tensors, and fills a slot again once the consumer has called
`release_batch(batch)`. Sent again, the same shared memory is not mapped again in the main
process: torch keeps a received storage while it is alive and finds it by its file.

A slot is only refilled after an explicit release. Consumers that never release (a list of
batches, a notebook) get freshly allocated tensors once every slot is taken, as without slots.
Each slot's state is one int64 in shared memory: 0 when free, else the generation of the batch
in it. A ticket frees only its own generation, so a repeated or stale release cannot free a
later batch.

    batch = next(it)                          # batch["slot"]: a SlotTicket, or None
    ...                                       # the step: the batch's tensors are in use
    release_batch(batch)                      # done with them: the worker may refill the slot
"""
from __future__ import annotations

from typing import Callable, Hashable

import torch


class SlotTicket:
    """Travels with a batch to the main process; `release()` lets the worker reuse the slot."""

    def __init__(self, states: torch.Tensor, slot: int, generation: int):
        self.states, self.slot, self.generation = states, int(slot), int(generation)

    def release(self) -> None:
        flags = self.states.numpy()
        # only the holder of this generation writes 0; the worker writes only to free slots
        if flags[self.slot] == self.generation:
            flags[self.slot] = 0

    def __repr__(self):
        return f"SlotTicket(slot={self.slot}, generation={self.generation})"


def release_batch(batch) -> None:
    """Say that the consumer no longer uses `batch`'s CPU tensors (no-op without a slot)."""
    ticket = batch.get("slot") if isinstance(batch, dict) else None
    if ticket is not None:
        ticket.release()


class SlotPool:
    """At most `count` reusable sets of batch tensors, in one process (a loader worker).

    `take(key, make)`: `key` describes the batch's tensors (their shapes and types); `make()`
    allocates a fresh set in shared memory. Only the largest batch seen is pooled (a last,
    smaller batch of an epoch gets fresh tensors and no ticket), so the slots are not thrown
    away at every epoch's end."""

    def __init__(self, count: int):
        self.count = int(count)
        self.states = torch.zeros(max(self.count, 1), dtype=torch.int64).share_memory_()
        self.key: Hashable | None = None
        self.size = -1
        self.slots: list = []
        self.generation = 0

    def take(self, key: Hashable, size: int, make: Callable[[], tuple]):
        """(tensors, ticket): a free slot's tensors and its ticket, or fresh ones and None."""
        if self.count <= 0 or size < self.size:
            return make(), None
        if key != self.key:                     # a larger batch: pool that one from now on
            if any(self.states.numpy()[:len(self.slots)]):
                # slots still out with the consumer keep their memory; start a new state array
                self.states = torch.zeros_like(self.states).share_memory_()
            self.key, self.size, self.slots = key, int(size), []
        flags = self.states.numpy()
        for i in range(len(self.slots)):
            if flags[i] == 0:
                return self.slots[i], self._ticket(i)
        if len(self.slots) < self.count:
            self.slots.append(make())
            return self.slots[-1], self._ticket(len(self.slots) - 1)
        return make(), None

    def _ticket(self, i: int) -> SlotTicket:
        self.generation += 1
        self.states.numpy()[i] = self.generation
        return SlotTicket(self.states, i, self.generation)
