"""Deterministic, resumable batching of a random-access source, sharded per host.

The global batch of step s is a pure function of (seed, s): epoch e = s // steps_per_epoch is a
permutation of the source seeded by (seed, e), and step s takes its (s mod steps_per_epoch)-th run of
batch_size indices. Host p of P reads only its contiguous slice p of that global batch. A checkpoint
therefore only needs the step to resume the data exactly, on any number of hosts.
"""
from __future__ import annotations

import itertools
import queue
import threading
from typing import Any, Iterable, Iterator

import numpy as np

_DONE = object()
PREFETCH_THREAD_NAME = "gan_jax.data prefetch"


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (Steele, Lea & Flood 2014): a bijective 64-bit mixer, uint64 -> uint64."""
    with np.errstate(over="ignore"):  # uint64 arithmetic is meant to wrap
        z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_counters(seed: int, counters: np.ndarray) -> np.ndarray:
    """uint64 splitmix64(splitmix64(seed) + counter): a counter-based random stream, any element on its own."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    with np.errstate(over="ignore"):
        return splitmix64(splitmix64(np.uint64(seed)) + np.asarray(counters, dtype=np.uint64))


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The order of the examples in an epoch: argsort of hash(hash(seed, epoch), i) over i.

    Defined by this code alone (not by a numpy generator's version), so a resumed run reads the same
    batches after any library upgrade; the mixer is a bijection, so the keys never tie.
    """
    epoch_key = int(hash_counters(seed, np.uint64(epoch)))
    return np.argsort(hash_counters(epoch_key, np.arange(num_examples, dtype=np.uint64)))


def prefetch_in_background(batches: Iterable[Any], size: int) -> Iterator[Any]:
    """Yield `batches` while a daemon thread computes up to `size` of them ahead (0: no thread).

    Errors in the thread are raised here; closing the generator stops the thread.
    """
    if size < 0:
        raise ValueError(f"prefetch size must be >= 0, got {size}")
    if size == 0:
        yield from batches
        return
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in batches:
                if not put(item):
                    return
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(e)
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name=PREFETCH_THREAD_NAME, daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class Pipeline:
    """Host batches of a source: {key: [batch_size // process_count, ...]} for each global step.

    batch_size is the global batch. drop_remainder=False keeps a last, partial batch per epoch, padded
    to full size by repeating the epoch's first examples and marked by a "mask" key (False on padding)
    present in every batch. shuffle=False reads in source order (evaluation). prefetch: host batches
    prepared ahead by a background thread in `iterate`.
    """

    def __init__(self, source: Any, *, batch_size: int, seed: int, process_index: int = 0,
                 process_count: int = 1, drop_remainder: bool = True, shuffle: bool = True, prefetch: int = 2):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if process_count < 1 or batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} must be divisible by process_count {process_count}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} must be in 0..{process_count - 1}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        n = len(source)
        if drop_remainder and n < batch_size:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} examples of the source "
                             "(with drop_remainder=True no batch fits)")
        self.source, self.batch_size, self.seed = source, batch_size, seed
        self.process_index, self.process_count = process_index, process_count
        self.drop_remainder, self.shuffle, self.prefetch = drop_remainder, shuffle, prefetch
        self.num_examples = n
        self.local_batch_size = batch_size // process_count
        self.steps_per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
        self._order_lock = threading.Lock()
        self._order: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_examples)
        with self._order_lock:  # one cached epoch: consecutive steps share it
            if self._order is None or self._order[0] != epoch:
                self._order = (epoch, epoch_permutation(self.seed, epoch, self.num_examples))
            return self._order[1]

    def global_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(source indices [batch_size], valid [batch_size]) of the global batch at `step`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, position = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        idx = order[position * self.batch_size:(position + 1) * self.batch_size]
        valid = np.ones(self.batch_size, dtype=bool)
        valid[len(idx):] = False
        return np.concatenate([idx, np.resize(order, self.batch_size - len(idx))]), valid

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This host's slice of the global batch at `step`."""
        idx, valid = self.global_indices(step)
        host = slice(self.process_index * self.local_batch_size, (self.process_index + 1) * self.local_batch_size)
        rows = idx[host].tolist()
        if hasattr(self.source, "__getitems__"):
            out = self.source.__getitems__(rows)
        else:
            out = [self.source[i] for i in rows]
        if isinstance(out, list):  # one dict per example (the TFDS / grain convention): stack them
            out = {k: np.stack([np.asarray(ex[k]) for ex in out]) for k in out[0]}
        else:
            out = dict(out)
        if not self.drop_remainder:
            out["mask"] = valid[host]
        return out

    def iterate(self, start_step: int = 0, num_steps: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Host batches of steps start_step, start_step + 1, ... (num_steps of them; None: forever)."""
        steps = itertools.count(start_step) if num_steps is None else range(start_step, start_step + num_steps)
        return prefetch_in_background(map(self.batch, steps), self.prefetch)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.iterate(0)
