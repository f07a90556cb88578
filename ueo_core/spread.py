"""A folder's feature pass split over the free CPU slots of the Ray cluster (issue 32, part 4).

``encode_files`` is what the feature store calls for the files it does not have yet. It gives the numbers of the
local pass (``train.features.encode_images`` over ``ImageDataset(files, preprocess, min_side=image_size)``): the
same batches (each share of the files starts at a multiple of ``batch_size``), the same precision (the model object
travels with its ``precision``, so ``inference_autocast`` decides there as here), the adapted weights (the whole
``loaded.model`` travels, not its name).

How: one Ray actor per share of the free CPUs (``ray.available_resources()["CPU"]``), spread over the nodes. Each
receives the model once (``ray.put``; a Ray actor, not a task per chunk, so that a 600-MB ViT-B is unpickled once per
process), sets torch's threads to its CPU slots, and encodes chunks of files handed out in order; the chunks come
back as float32 arrays and are put back in the files' order. Decoding happens where the model runs: each actor reads
its files by path (on a cluster of several machines the folder must be on a file system they share).

Ray is used only when it pays: this process is connected (``ray.is_initialized()``), the model is on the CPU (a GPU
outruns a few CPU slots), the cluster has at least 2 free CPU slots, and there are at least ``MIN_PER_TASK`` files per
actor (an actor takes seconds to start: it imports torch and unpickles the model). Otherwise the pass is local.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from .models import LoadedModel

# Files per actor below which the split does not pay: an actor's start (a process importing torch and open_clip, the
# model unpickled) took about 30 s on this project's busy 2-core machine, what 2 threads need for ~60 ViT-B-32 photos
# (bench/big_folder.py: 32 photos split over 2 actors took 2.7x the local pass).
MIN_PER_TASK = 128


# Files from which the local pass decodes in a DataLoader worker beside the model (on 2 cores or more): the next
# batch decodes while this one runs through the tower, 1.2-1.4x the pass with both in one process for phone photos
# (bench/big_folder.py); below it, the worker's start is not paid back.
DECODE_WORKER_FROM = 64


def local_pass(loaded: LoadedModel, files: list[str], batch_size: int,
               progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """The pass in this process (the reference the split must equal)."""
    from .data import ImageDataset
    from .train.features import encode_images
    images = ImageDataset(files, loaded.preprocess, min_side=loaded.image_size)  # a big JPEG decoded small
    workers = 1 if len(files) >= DECODE_WORKER_FROM and (os.cpu_count() or 1) >= 2 else 0
    return encode_images(loaded, images, batch_size, workers, progress=progress).cpu().numpy().astype(np.float32)


def free_cpus() -> int:
    """Free CPU slots of the connected Ray cluster now (0 when this process is not connected)."""
    import ray
    if not ray.is_initialized():
        return 0
    return int(ray.available_resources().get("CPU", 0))


def plan(n_files: int, batch_size: int, cpus: int, min_per_task: int = MIN_PER_TASK) -> tuple[int, int]:
    """(actors, CPU slots each) for ``n_files`` over ``cpus`` free slots; (0, 0) means: stay local. As many actors as
    the slots and the files allow (``min_per_task`` files each, at least a batch), the slots shared out evenly."""
    actors = min(cpus, n_files // max(min_per_task, batch_size, 1))
    if actors < 2:  # one actor would be the local pass elsewhere, plus its start
        return 0, 0
    return actors, cpus // actors


def chunks(n_files: int, batch_size: int, actors: int) -> list[tuple[int, int]]:
    """[start, end) ranges covering the files in order, each a whole number of batches (the last one excepted), about
    four per actor: enough for progress and for a slower node to take fewer, few enough that each is many batches."""
    per = max(1, -(-n_files // (4 * actors * batch_size))) * batch_size
    return [(s, min(s + per, n_files)) for s in range(0, n_files, per)]


class _Encoder:
    """A Ray actor holding the model: encodes the files it is given with ``local_pass``."""

    def __init__(self, loaded: LoadedModel, threads: int):
        import torch
        torch.set_num_threads(max(1, threads))
        self.loaded = loaded

    def where(self) -> dict:
        import ray
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def encode(self, files: list[str], batch_size: int) -> np.ndarray:
        return local_pass(self.loaded, files, batch_size)


def _runtime_env() -> dict:
    """The actors import this project like the jobs do (``cluster.worker_env``: PYTHONPATH, UEO_/HF_/thread
    settings)."""
    from .cluster import worker_env
    return {"env_vars": worker_env()}


def encode_files(loaded: LoadedModel, files: list[str], batch_size: int,
                 progress: Optional[Callable[[int, int], None]] = None, min_per_task: int = MIN_PER_TASK,
                 where: Optional[list] = None, here: Optional[int] = None) -> np.ndarray:
    """(N, D) L2-normalised float32 image features of ``files``, in order: split over the Ray cluster's free CPU slots
    when that pays (see the module's docstring), else the local pass. ``progress(done, total)`` follows the files
    done; ``where``, if a list, receives one dict per actor used (``node_id``, ``pid``, ``files``).

    The split needs more free slots than this machine's ``here`` cores (default ``os.cpu_count()``): on one machine
    the local pass already has its cores (and a decoding worker), and the split measured 0.36-0.45x of it on 2
    cores (actors start in ~30 s); a cluster of several machines adds cores this one does not have."""
    files = [str(f) for f in files]
    cpus = free_cpus()
    beyond = cpus > (os.cpu_count() or 1 if here is None else here)
    actors, threads = (plan(len(files), batch_size, cpus, min_per_task)
                       if loaded.device.type == "cpu" and beyond else (0, 0))
    if not actors:
        return local_pass(loaded, files, batch_size, progress)
    return _on_ray(loaded, files, batch_size, actors, threads, progress, where)


def _on_ray(loaded, files, batch_size, actors, threads, progress, where) -> np.ndarray:
    import ray
    model = ray.put(dataclasses.replace(loaded, tokenizer=None))  # the image tower's pass needs no tokenizer
    remote = ray.remote(_Encoder).options(num_cpus=threads, scheduling_strategy="SPREAD",
                                          runtime_env=_runtime_env())
    pool = [remote.remote(model, threads) for _ in range(actors)]
    try:
        ranges = chunks(len(files), batch_size, actors)
        out: list[Optional[np.ndarray]] = [None] * len(ranges)
        used, busy = [0] * actors, {}  # files per actor; pending result -> (actor, chunk)
        nxt, done = 0, 0
        while nxt < len(ranges) or busy:
            for a in set(range(actors)) - {a for a, _ in busy.values()}:  # each idle actor takes the next chunk
                if nxt < len(ranges):
                    s, e = ranges[nxt]
                    busy[pool[a].encode.remote(files[s:e], batch_size)] = (a, nxt)
                    used[a] += e - s
                    nxt += 1
            ready, _ = ray.wait(list(busy), num_returns=1)
            _, i = busy.pop(ready[0])
            out[i] = ray.get(ready[0])
            done += len(out[i])
            if progress:
                progress(done, len(files))
        if where is not None:
            where.extend({**info, "files": n} for info, n in zip(ray.get([p.where.remote() for p in pool]), used))
        return np.concatenate(out).astype(np.float32, copy=False)
    finally:
        for p in pool:
            ray.kill(p, no_restart=True)
