"""Reused batch buffers of the loader workers (trainer/batch_slots.py): a slot is refilled only
after its batch is released, and the batches are the same whether or not slots are reused."""
import torch

from tests import test_loader
from tests.test_loader import config
from trainer.batch_slots import SlotPool, release_batch
from trainer.loader import ClipDataset, make_loader

reader = test_loader.reader   # the shards of tests/test_loader.py, made once for this module


def fresh():
    return (torch.zeros(2, 3),)


def test_a_slot_is_reused_only_after_its_release():
    pool = SlotPool(2)
    a, ta = pool.take("k", 2, fresh)
    b, tb = pool.take("k", 2, fresh)
    assert (ta.slot, tb.slot) == (0, 1) and a[0] is not b[0]
    c, tc = pool.take("k", 2, fresh)            # both out: fresh tensors, no ticket
    assert tc is None and c[0] is not a[0] and c[0] is not b[0]
    ta.release()
    d, td = pool.take("k", 2, fresh)
    assert td.slot == 0 and d[0] is a[0] and td.generation > ta.generation
    ta.release()                                # a stale ticket frees nothing
    assert pool.take("k", 2, fresh)[1] is None
    td.release()
    td.release()                                # twice: still one free slot
    assert pool.take("k", 2, fresh)[1].slot == 0
    assert pool.take("k", 2, fresh)[1] is None


def test_only_the_largest_batch_is_pooled():
    pool = SlotPool(2)
    _, t = pool.take("full", 4, fresh)
    assert t is not None
    _, small = pool.take("last", 3, fresh)      # an epoch's last, smaller batch
    assert small is None
    t.release()
    assert pool.take("full", 4, fresh)[1].slot == 0
    _, t2 = pool.take("larger", 6, fresh)       # a larger batch takes over the pool
    assert t2 is not None and t2.slot == 0 and pool.size == 6
    assert SlotPool(0).take("k", 2, fresh)[1] is None   # no slots: always fresh


def test_release_batch_ignores_batches_without_a_slot():
    release_batch({"visual": torch.zeros(1), "slot": None})
    release_batch([torch.zeros(1)])
    release_batch({"label": torch.zeros(1)})


def test_workers_reuse_slots_and_batches_stay_right(reader):
    """A consumer that releases every batch after use sees slots come back (generations beyond
    the pool's size) and exactly the batches of an in-process loader; one that keeps every batch
    without releasing gets fresh buffers, none overwritten."""
    ds = ClipDataset(reader, reader.ids * 6, config(frames=6, crop=56), train=True, seed=3)
    expect = {}
    ref = make_loader(ds, batch_size=2, train=True, workers=0, seed=5)
    for epoch in range(3):
        ref.sampler.set_epoch(epoch)
        expect[epoch] = [{k: b[k].clone() for k in ("visual", "audio", "label", "index")} for b in ref]
        assert all(b["slot"] is None for b in ref)          # no worker, no slot

    loader = make_loader(ds, batch_size=2, train=True, workers=2, seed=5)
    tickets = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        for n, b in enumerate(loader):
            for k in ("visual", "audio", "label", "index"):
                assert torch.equal(b[k], expect[epoch][n][k]), (epoch, n, k)
            tickets.append(b["slot"])
            release_batch(b)
    assert all(t is not None for t in tickets)
    assert max(t.slot for t in tickets) < ds.batch_slots == 3
    assert max(t.generation for t in tickets) > 3            # slots were filled again

    kept = ClipDataset(reader, reader.ids * 6, config(frames=6, crop=56), train=True, seed=3)
    held = make_loader(kept, batch_size=2, train=True, workers=2, seed=5)
    for epoch in range(2):
        held.sampler.set_epoch(epoch)
        batches = list(held)                                   # never released
        assert sum(b["slot"] is None for b in batches) >= len(batches) - 2 * 3
        for n, b in enumerate(batches):
            for k in ("visual", "audio", "label", "index"):
                assert torch.equal(b[k], expect[epoch][n][k]), (epoch, n, k)
