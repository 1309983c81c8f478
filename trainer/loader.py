"""The streaming loader: HDF5 shards -> uint8 clips -> the device.

Per sample a worker reads, for every segment, the snippet (start position) drawn for it, one
contiguous read per segment (uint8 frames at final resolution; JPEG frames, the default codec,
are decoded here, in the worker), and copies the crop out of it straight into the batch, which
the worker allocates in shared memory, so handing it to the main process copies nothing more. For a CUDA device the
main process then copies each batch once more, into page-locked memory (DataLoader's pinning
thread, beside the training step), so that the host->device copy runs asynchronously; without
pinning the CUDA driver would make the same host copy itself, on the training thread. Frames stay channels-last
([t, k, crop, crop, 3], as stored) on the CPU; the permute to the model's channels-first layout,
the flip, float conversion and normalisation happen on the device (permute and flip here in
`to_device_batch`, the rest in the model), so the CPU work per sample is a read and one copy.
A worker fills the same few shared buffers again and again once the consumer releases them
(trainer/batch_slots.py): fresh shared memory per batch would cost more system CPU than the read.

    ds = ClipDataset(reader, reader.split_ids("alternating", "train"), cfg, train=True, seed=0)
    loader = make_loader(ds, batch_size=32, train=True, workers=4, seed=0)
    meter = DataWaitMeter()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)            # new shuffle and new crops, reproducibly
        meter.reset()
        for batch in meter.wrap(loader):
            b = to_device_batch(batch, device, train=True, generator=g)
            ...                                    # the step
            release_batch(batch)                   # its buffers go back to the worker
        print(meter.summary())                     # wait_fraction: time waiting for data

Randomness: every random choice of sample `i` in epoch `e` comes from a numpy Generator seeded
with (seed, e, i), and the sampler hands the epoch to the workers with each index, so a batch is
the same whatever the number of workers and whether they persist across epochs.
"""
from __future__ import annotations

import math
import pickle
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from trainer import sampling
from trainer.batch_slots import SlotPool, SlotTicket
from trainer.device import check_shm, should_pin
from trainer.sample_errors import sample_error, sample_source


# where JPEG frames are decoded: in the loader workers (libjpeg-turbo), or after the transfer
# by the training process on its device (trainer/device_decode.py; nvJPEG on CUDA)
DECODE_SITES = ("workers", "device")


def _cfg(cfg, name, default=None):
    value = getattr(cfg, name, default)
    if value is None:
        raise ValueError(f"model config has no '{name}', which the loader needs")
    return value


class ClipDataset(Dataset):
    """Samples of `ids` from a ShardReader, shaped for VAANet.

    Item: dict(visual uint8 [t, k, crop, crop, 3] (channels-last; `to_device_batch` makes it
    [t, 3, k, crop, crop] on the device), audio float32 [t_a, L, n_mfcc], label int64, index
    int64); `__getitems__` builds a whole batch of them at once (with "slot": in a loader worker
    the ticket of the reused buffers it filled, see `release_batch`, else None; with decode
    "device" the frames stay JPEG files, see `_jpeg_batch`). Train: per segment a snippet of the
    S stored ones drawn anew every epoch (sampling.snippet_choice) and a random k-frame window in
    it (when the shards hold more frames), one random crop. Eval: the middle snippet (S // 2),
    the centred window, the centre crop (on shards of the official profile placed by the
    authors' rounding, sampling.CENTRE_RULES). A stream the config switches off comes back as an
    empty tensor (and is not read).
    """

    # reusable batches per loader worker (trainer/batch_slots.py); make_loader sets
    # prefetch_factor + 1: the batches in flight and the one the consumer holds
    batch_slots = 3

    def __init__(self, reader, ids, cfg, train: bool, seed: int = 0, decode: str = "workers"):
        self.reader = reader
        self.ids = list(ids)
        self.train = bool(train)
        self.seed = int(seed)
        self.epoch = 0
        params = reader.params
        if decode not in DECODE_SITES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_SITES)}, got {decode!r}")
        if decode == "device" and params.codec != "jpeg":
            raise ValueError(f"decoding on the device needs JPEG frames; {reader.root} holds "
                             f"{params.codec} frames (nothing to decode): use decode 'workers'")
        self.decode = decode

        known = set(reader.ids)
        missing = [i for i in self.ids if i not in known]
        if missing:
            raise ValueError(f"{len(missing)} ids are not in the shards (first: {missing[0]!r})")

        streams = getattr(cfg, "streams", "both")
        self.use_visual = streams in ("visual", "both")
        self.use_audio = streams in ("audio", "both")
        if not (self.use_visual or self.use_audio):
            raise ValueError(f"streams must be 'visual', 'audio' or 'both', got {streams!r}")

        # visual: which stored segments, how many frames of each snippet, crop size
        self.segments = int(_cfg(cfg, "segments"))
        self.frames = int(_cfg(cfg, "frames"))
        self.crop = int(_cfg(cfg, "crop"))
        self.stored_segments = int(params.segments)
        # the official profile's frames are cut where the authors' evaluation cuts them
        self.centre = "round" if getattr(params, "profile", "paper") == "official" else "floor"
        self.segment_idx = sampling.segment_indices(self.stored_segments, self.segments)
        if self.use_visual:
            if self.frames > params.frames:
                raise ValueError(f"the model wants {self.frames} frames per segment but the shards "
                                 f"hold {params.frames}; preprocess with --frames {self.frames}")
            if self.crop > params.short_side:
                raise ValueError(f"crop {self.crop} is larger than the shards' short side "
                                 f"{params.short_side}; preprocess with --short-side {self.crop}")

        # audio: t_a windows of L MFCC frames
        self.audio_segments = int(_cfg(cfg, "audio_segments", self.segments))
        self.audio_len = int(_cfg(cfg, "audio_len"))
        self.n_mfcc = int(_cfg(cfg, "n_mfcc", params.n_mfcc))
        self.audio_mode = getattr(cfg, "audio_sampling", "paper")
        if self.audio_mode not in sampling.AUDIO_MODES:
            raise ValueError(f"audio_sampling must be one of {sampling.AUDIO_MODES}, "
                             f"got {self.audio_mode!r}")
        if self.use_audio and self.n_mfcc != params.n_mfcc:
            raise ValueError(f"the model wants {self.n_mfcc} MFCC but the shards hold "
                             f"{params.n_mfcc}; preprocess with --n-mfcc {self.n_mfcc}")
        self.audio_rate = 1.0 / params.winstep  # MFCC frames per second
        self.audio_segment_idx = sampling.segment_indices(self.stored_segments, self.audio_segments)

    def __len__(self):
        return len(self.ids)

    def set_epoch(self, epoch: int):
        """Epoch used by `ds[i]`; the loader's sampler passes the epoch with every index instead."""
        self.epoch = int(epoch)

    @property
    def labels(self) -> list[int]:
        return [int(self.reader.meta(i)["label"]) for i in self.ids]

    def rng(self, index: int, epoch: int) -> np.random.Generator | None:
        """The sample's random source; None in eval (every choice is the deterministic one)."""
        return np.random.default_rng([self.seed, epoch, index]) if self.train else None

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        vid = self.ids[index]
        meta = self.reader.meta(vid)
        rng = self.rng(index, epoch)
        try:
            visual = (torch.from_numpy(np.array(self._visual(vid, meta, rng, epoch, index)))  # off the scratch buffer
                      if self.use_visual else torch.zeros(0, dtype=torch.uint8))
            audio = torch.from_numpy(self._audio(vid, meta)) if self.use_audio else torch.zeros(0)
        except Exception as e:
            raise sample_error(self.reader, vid, e) from e
        return {"visual": visual, "audio": audio,
                "label": torch.tensor(int(meta["label"]), dtype=torch.int64),
                "index": torch.tensor(index, dtype=torch.int64)}

    def __getitems__(self, keys) -> dict:
        """A whole batch (what default_collate would make of the items, with the same values),
        each sample copied once, into tensors that live in shared memory inside a worker."""
        n = len(keys)
        undecoded = self.decode == "device" and self.use_visual
        (visual, audio), ticket = self._batch_tensors(n, frames=not undecoded)
        label = torch.empty(n, dtype=torch.int64)
        index = torch.empty(n, dtype=torch.int64)
        jpeg = []   # device decoding: per sample (byte arrays, offsets, crop origin)
        for b, key in enumerate(keys):
            i, epoch = key if isinstance(key, tuple) else (key, self.epoch)
            vid = self.ids[i]
            meta = self.reader.meta(vid)
            try:
                if undecoded:
                    jpeg.append(self._jpeg(vid, meta, self.rng(i, epoch), epoch, i))
                elif self.use_visual:
                    np.copyto(visual[b].numpy(), self._visual(vid, meta, self.rng(i, epoch), epoch, i))
                if self.use_audio:
                    audio[b] = torch.from_numpy(self._audio(vid, meta))
            except Exception as e:
                raise sample_error(self.reader, vid, e) from e
            label[b], index[b] = int(meta["label"]), i
        batch = {"visual": visual, "audio": audio, "label": label, "index": index}
        if undecoded:
            batch.update(_jpeg_batch(jpeg, (self.segments, self.frames, self.crop)))
        batch["slot"] = ticket
        return batch

    def _batch_tensors(self, n: int, frames: bool = True
                       ) -> tuple[tuple[torch.Tensor, torch.Tensor], SlotTicket | None]:
        """(visual, audio) tensors for a batch of n (visual empty unless `frames`), and their
        slot's ticket: inside a loader worker from its SlotPool (trainer/batch_slots.py), else
        fresh (ticket None)."""
        c = self.crop
        shapes = ((n, self.segments, self.frames, c, c, 3) if self.use_visual and frames else None,
                  (n, self.audio_segments, self.audio_len, self.n_mfcc) if self.use_audio else None)

        def make():
            return (_empty(shapes[0], torch.uint8) if shapes[0] else torch.zeros(n, 0, dtype=torch.uint8),
                    _empty(shapes[1], torch.float32) if shapes[1] else torch.zeros(n, 0))
        if get_worker_info() is None:
            return make(), None
        pool = self.__dict__.get("_slot_pool")
        if pool is None:
            pool = self.__dict__["_slot_pool"] = SlotPool(self.batch_slots)
        return pool.take(shapes, n, make)

    def _choice(self, meta, rng, epoch: int, index: int) -> tuple:
        """(snippet per segment, first frame per segment, crop origin y, x): every random choice
        of the sample's frames, the same whoever decodes them."""
        n_snip, n_seg, n_frames, height, width, _ = meta["frames_shape"]
        snippets = sampling.snippet_choice(n_snip, self.segments,
                                           self.seed if rng is not None else None, epoch, index)
        starts = sampling.frame_starts(n_frames, self.frames, self.segments, rng)
        y, x = sampling.crop_origin(height, width, self.crop, rng, self.centre)
        return snippets, starts, y, x

    def _visual(self, vid, meta, rng, epoch: int = 0, index: int = 0) -> np.ndarray:
        """The sample's [t, k, crop, crop, 3] uint8 clip (a view into one read where possible)."""
        _, _, _, height, width, _ = meta["frames_shape"]
        snippets, starts, y, x = self._choice(meta, rng, epoch, index)
        clip = self.reader.clip(vid, snippets, self.segment_idx, starts, self.frames,
                                out=self._scratch((len(self.segment_idx), self.frames, height, width, 3)))
        c = self.crop
        return clip[:, :, y:y + c, x:x + c]

    def _jpeg(self, vid, meta, rng, epoch: int, index: int) -> tuple[list, np.ndarray, tuple]:
        """The sample's t * k frames as their JPEG files, undecoded: (byte arrays, offsets,
        crop origin (y, x), where they come from: sample_source)."""
        snippets, starts, y, x = self._choice(meta, rng, epoch, index)
        parts, offsets = self.reader.clip_jpeg(vid, snippets, self.segment_idx, starts, self.frames)
        return parts, offsets, (y, x), sample_source(self.reader, vid)

    def _scratch(self, shape) -> np.ndarray:
        """A buffer for whole decoded frames, reused from sample to sample in this process (the
        crop is copied out at once): a fresh 10 MB array per sample would cost its page faults
        every time. One per frame size."""
        buffers = self.__dict__.setdefault("_buffers", {})
        if shape not in buffers:
            if len(buffers) >= 4:    # videos of many aspect ratios: keep memory bounded
                buffers.clear()
            buffers[shape] = np.empty(shape, np.uint8)
        return buffers[shape]

    def _audio(self, vid, meta) -> np.ndarray:
        shape = (self.audio_segments, self.audio_len, self.n_mfcc)
        if not meta.get("has_audio", True):
            return np.zeros(shape, np.float32)
        mfcc = np.asarray(self.reader.mfcc(vid), dtype=np.float32)
        if self.audio_mode == "official":
            out = sampling.audio_official(mfcc, self.audio_segments, self.audio_len)
        elif self.audio_mode == "paper":
            out = sampling.audio_paper(mfcc, self.audio_segments, self.audio_len)
        else:
            duration = meta.get("duration") or len(mfcc) / self.audio_rate
            out = sampling.audio_aligned(mfcc, self.audio_segment_idx, self.stored_segments,
                                         float(duration), self.audio_len, self.audio_rate)
        return np.ascontiguousarray(out, dtype=np.float32)


def _jpeg_batch(samples: list, clip: tuple) -> dict:
    """The undecoded frames of a batch: "jpeg" uint8 [bytes] (every frame's file, sample-major,
    in shared memory inside a worker), "jpeg_offsets" int64 [B * t * k + 1], "crop_yx" int64
    [B, 2], "clip" int64 [3] = (t, k, crop), "sources" (sample_source of each sample, for the
    error a damaged file gets). trainer/device_decode.py turns it into frames."""
    total = sum(int(off[-1]) for _, off, _, _ in samples)
    data = _empty((total,), torch.uint8)
    flat = data.numpy()
    offsets = np.zeros(1 + sum(len(off) - 1 for _, off, _, _ in samples), np.int64)
    at, row = 0, 0
    for parts, off, _, _ in samples:
        for part in parts:
            flat[at:at + len(part)] = part
            at += len(part)
        offsets[row + 1:row + len(off)] = off[1:] + offsets[row]
        row += len(off) - 1
    return {"jpeg": data, "jpeg_offsets": torch.from_numpy(offsets),
            "crop_yx": torch.tensor([yx for _, _, yx, _ in samples], dtype=torch.int64).reshape(-1, 2),
            "clip": torch.tensor(clip, dtype=torch.int64),
            "sources": [list(src) for _, _, _, src in samples]}


def _empty(shape, dtype) -> torch.Tensor:
    """An uninitialised tensor; inside a DataLoader worker its storage is shared memory already,
    as default_collate does it, so sending the batch to the main process copies nothing."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    proto = torch.empty(0, dtype=dtype)
    storage = proto._typed_storage()._new_shared(math.prod(shape), device=proto.device)
    return proto.new(storage).view(shape)


def collate(data):
    """The batch `ClipDataset.__getitems__` already made, or default_collate for other lists."""
    return data if isinstance(data, dict) else default_collate(data)


class EpochSampler(Sampler):
    """Indices for one epoch, each paired with the epoch number: (index, epoch).

    Train shuffles with a torch.Generator seeded from (seed, epoch); eval keeps the order. With a
    DistributedSampler (several processes) that sampler decides the order and this one adds the
    epoch. Call `set_epoch(e)` before each epoch.
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, epoch: int = 0, distributed=None):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, int(seed), int(epoch)
        self.distributed = distributed
        if distributed is not None:
            distributed.set_epoch(self.epoch)

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)
        if self.distributed is not None:
            self.distributed.set_epoch(self.epoch)

    def order(self) -> list[int]:
        if self.distributed is not None:
            return list(self.distributed)
        if not self.shuffle:
            return list(range(self.n))
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(2, np.uint32)
        g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        epoch = self.epoch
        return iter([(i, epoch) for i in self.order()])

    def __len__(self):
        return len(self.distributed) if self.distributed is not None else self.n


def worker_init(worker_id: int):
    """Runs in each DataLoader worker: one torch thread, and a fresh copy of the reader so that
    its HDF5 files are opened lazily in this process (h5py handles must not cross a fork)."""
    torch.set_num_threads(1)
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset
    if hasattr(dataset, "reader"):
        dataset.reader = pickle.loads(pickle.dumps(dataset.reader))  # pickling drops open handles


def make_loader(dataset: ClipDataset, batch_size: int, train: bool, workers: int = 2, seed: int = 0,
                epoch: int = 0, distributed: bool = False, prefetch_factor: int = 2,
                pin_memory: bool | None = None, drop_last: bool = False,
                rank: int | None = None, world_size: int | None = None,
                persistent: bool | None = None, device=None) -> DataLoader:
    """A DataLoader over `dataset` with seeded per-epoch shuffling (train), prefetching workers;
    `distributed=True` splits the data over processes with a DistributedSampler (rank /
    world_size from torch.distributed unless given). Use `loader.sampler.set_epoch(epoch)`
    before each epoch.

    Pinned memory only for a CUDA `device` (`device` None: when this process uses CUDA already,
    see trainer.device.should_pin). Workers persist across epochs in training (`persistent`
    None); an evaluation loader's workers live only while it is iterated, so that validation
    reuses the cores the idle training workers leave instead of doubling the processes.

    Each worker keeps `prefetch_factor` batches ready in shared memory (/dev/shm), in
    `prefetch_factor + 1` reused buffers (the consumer gives one back with `release_batch`
    after its step; trainer/batch_slots.py): at paper size a batch of 32 is about 200 MB, so a
    container needs a large enough --shm-size (a small /dev/shm is reported with the fix).
    Distributed evaluation pads the last ranks with repeated samples (DistributedSampler's
    rule)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    dist_sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler
        dist_sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                          shuffle=train, seed=seed, drop_last=False)
    sampler = EpochSampler(len(dataset), shuffle=train, seed=seed, epoch=epoch,
                           distributed=dist_sampler)
    if pin_memory is None:
        pin_memory = should_pin(device)
    extra = {}
    if workers > 0:
        extra = dict(persistent_workers=train if persistent is None else bool(persistent),
                     prefetch_factor=prefetch_factor, worker_init_fn=worker_init)
        if isinstance(dataset, ClipDataset):
            dataset.batch_slots = prefetch_factor + 1
        check_shm(workers * (prefetch_factor + 1) * batch_size * sample_bytes(dataset))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate, pin_memory=pin_memory, drop_last=drop_last, **extra)


def sample_bytes(dataset) -> int:
    """Bytes of one sample in a batch (visual uint8 + audio float32); 0 for other datasets."""
    if not isinstance(dataset, ClipDataset):
        return 0
    visual = dataset.segments * dataset.frames * dataset.crop ** 2 * 3 if dataset.use_visual else 0
    audio = 4 * dataset.audio_segments * dataset.audio_len * dataset.n_mfcc if dataset.use_audio else 0
    return visual + audio


def to_device_batch(batch: dict, device, train: bool, generator: torch.Generator | None = None,
                    flip_p: float = 0.5, channels_last: bool = False) -> dict:
    """Copy a loader batch to `device` (non-blocking from pinned memory), make the channels-last
    clips [B, t, k, H, W, 3] the model's [B, t, 3, k, H, W] there and, in train, flip a random
    `flip_p` share of the samples horizontally. `generator` (on any device) makes the flips
    reproducible. The clips come out contiguous ([B, t, 3, k, H, W] in memory), or with
    `channels_last` as a permuted view that keeps the channels-last memory order (for a model
    converted with trainer.device.channels_last_3d: no transposing copy on either side).
    Frames the workers left as JPEG files (decode "device") are decoded here first, on `device`
    (trainer/device_decode.py). Returns dict(visual uint8 or None, audio float32 or None, label,
    index)."""
    device = torch.device(device)
    visual, audio = batch["visual"], batch["audio"]
    if "jpeg" in batch:   # frames left undecoded by the workers (ClipDataset decode="device")
        from trainer.device_decode import decode_clips
        visual = decode_clips(batch, device)
    if visual.numel():
        visual = visual.to(device, non_blocking=True).permute(0, 1, 5, 2, 3, 4)
        if not channels_last:
            visual = visual.contiguous()
    else:
        visual = None
    audio = audio.to(device, non_blocking=True) if audio.numel() else None
    label = batch["label"].to(device, non_blocking=True)
    if train and visual is not None and flip_p > 0:
        g_device = generator.device if generator is not None else torch.device("cpu")
        flip = torch.rand(visual.shape[0], generator=generator, device=g_device) < flip_p
        flip = flip.to(device).view(-1, *[1] * (visual.dim() - 1))
        visual = torch.where(flip, visual.flip(-1), visual)
    return {"visual": visual, "audio": audio, "label": label, "index": batch["index"]}


class DataWaitMeter:
    """How long the training loop waits for its next batch, against the whole step.

    `for batch in meter.wrap(loader)` times each `next()` (the wait) and the span from one
    `next()` to the following one (the step), i.e. at the loader boundary, as the host sees it:
    the training loop does not sync per step, so on CUDA a step's time is the host's, a few queued
    steps ahead of the device (trainer/train.py: train_epoch). The first batch's wait
    (worker start-up) is counted and also reported alone as `first_wait_s`.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self.wait_s = 0.0
        self.step_s = 0.0
        self.first_wait_s = None
        self.steps = 0
        self.samples = 0

    def wrap(self, loader):
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            wait = time.perf_counter() - t0
            if self.first_wait_s is None:
                self.first_wait_s = wait
            self.wait_s += wait
            self.steps += 1
            self.samples += _batch_size(batch)
            yield batch
            self.step_s += time.perf_counter() - t0

    def summary(self) -> dict:
        step = max(self.step_s, 1e-12)
        return {"steps": self.steps, "samples": self.samples, "wait_s": self.wait_s,
                "step_s": self.step_s, "wait_fraction": self.wait_s / step if self.steps else 0.0,
                "samples_per_s": self.samples / step if self.steps else 0.0,
                "first_wait_s": self.first_wait_s or 0.0}


def _batch_size(batch) -> int:
    if isinstance(batch, dict) and "label" in batch:
        return int(batch["label"].shape[0])
    return 1
