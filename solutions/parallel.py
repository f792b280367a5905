"""Stage 13: data-parallel training on MPI.

N processes (ranks) train one model together. Each holds a whole copy of the model and takes its share of every batch;
after backward the ranks add up their gradients, so every rank steps with the gradient of the whole batch and the
copies stay identical. The adding up is an all-reduce, built here by hand from point-to-point messages as a ring
(reduce-scatter, then all-gather) that sends 2(N - 1)/N of the array per rank whatever N is. ZeRO-1 then splits
AdamW's moments between the ranks: each updates its shard of the parameters, then the ranks all-gather them. The
engine is MPI (mpi4py on MPICH, both from PyPI): `mpiexec -n 2 python -m exercises.train --preset cpu-small
--data-parallel` runs the given loop of parallel_train.py on these pieces. docs/13-parallel.md derives each piece.

Conventions (the tests rely on them):
  - `comm` is an mpi4py communicator (MPI.COMM_WORLD, or anything with its methods): r = comm.Get_rank(),
    N = comm.Get_size(). The ring sends to (r + 1) % N and receives from (r - 1) % N with comm.Sendrecv on NumPy
    buffers (upper-case methods: no pickling) and uses no MPI collective.
  - Chunks: n elements are cut as np.array_split cuts them, chunk_bounds(n, N): the first n % N chunks hold one element
    more. Rank r owns chunk r: reduce-scatter leaves the sum of chunk r on rank r, and ZeRO-1's shard of rank r is
    chunk r of the flat parameter vector (every p.data.reshape(-1), in model.parameters() order).
  - A global batch (B, T) is the same on every rank; rank r takes rows chunk_bounds(B, N)[r] and weights its loss by
    its share of the rows, b_r / B, so the ranks' gradients add up to the gradient of the mean over the whole batch
    even when N does not divide B. N ranks then follow one process's trajectory; only the order of the sums differs.
"""
from __future__ import annotations

import math

import numpy as np

from .optim import AdamW, clip_grad_norm
from .tensor import Tensor

BUCKET_BYTES = 1 << 20  # 1 MiB of gradients per all-reduce: few messages (latency), none too large to start early


# ---------------------------------------------------------------------- collectives by hand


def chunk_bounds(size: int, ranks: int) -> list[tuple[int, int]]:
    """The (start, stop) of each rank's chunk of `size` elements, cut as np.array_split cuts them:

        q, s = divmod(size, ranks);  chunk i has q + 1 elements when i < s, else q;  contiguous, in order, from 0 to size

    chunk_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)];  chunk_bounds(2, 3) == [(0, 1), (1, 2), (2, 2)] (empty is fine).
    ValueError for size < 0 or ranks < 1.
    """
    ### BEGIN SOLUTION
    if size < 0 or ranks < 1:
        raise ValueError(f"chunk_bounds needs size >= 0 and ranks >= 1, got size={size}, ranks={ranks}")
    quotient, remainder = divmod(size, ranks)
    stops = np.cumsum([quotient + (i < remainder) for i in range(ranks)])
    return [(int(stop - quotient - (i < remainder)), int(stop)) for i, stop in enumerate(stops)]
    ### END SOLUTION


def ring_reduce_scatter(comm, flat: np.ndarray) -> np.ndarray:
    """The sum over all ranks of chunk r of `flat`, on rank r, after N - 1 steps round the ring.

    flat: (n,), the same n and dtype on every rank, not changed (work on a copy, the running sums). With bounds =
    chunk_bounds(n, N), at step s = 0 .. N - 2 rank r
        sends    chunk (r - s - 1) % N of its running sums to rank (r + 1) % N,
        receives chunk (r - s - 2) % N from rank (r - 1) % N, and adds it to that chunk of its running sums,
    in one comm.Sendrecv(sendbuf, dest=right, recvbuf=buffer, source=left). Chunk c starts at rank c + 1 and gathers
    one more rank's part at each hop, reaching rank c, which adds its own, at the last step.
    Returns chunk r of the total: a new array of chunk r's size, flat's dtype. One rank: a copy of flat.
    """
    ### BEGIN SOLUTION
    rank, ranks = comm.Get_rank(), comm.Get_size()
    bounds = chunk_bounds(flat.size, ranks)
    sums = np.array(flat, copy=True).reshape(-1)  # (n,) this rank's running sums
    right, left = (rank + 1) % ranks, (rank - 1) % ranks
    for step in range(ranks - 1):
        start, stop = bounds[(rank - step - 1) % ranks]
        into_start, into_stop = bounds[(rank - step - 2) % ranks]
        received = np.empty(into_stop - into_start, dtype=sums.dtype)
        comm.Sendrecv(np.ascontiguousarray(sums[start:stop]), dest=right, recvbuf=received, source=left)
        sums[into_start:into_stop] += received
    start, stop = bounds[rank]
    return sums[start:stop].copy()
    ### END SOLUTION


def ring_all_gather(comm, chunk: np.ndarray, size: int) -> np.ndarray:
    """Every rank's chunk, concatenated, on every rank, after N - 1 steps round the ring.

    Rank r passes its chunk r (chunk_bounds(size, N)[r] elements). At step s = 0 .. N - 2 rank r sends chunk
    (r - s) % N (its own at step 0, then the one it received last) to rank (r + 1) % N and receives chunk
    (r - s - 1) % N from rank (r - 1) % N, with one comm.Sendrecv. Returns a new (size,) array of chunk's dtype.
    ValueError when chunk does not have chunk r's size.
    """
    ### BEGIN SOLUTION
    rank, ranks = comm.Get_rank(), comm.Get_size()
    bounds = chunk_bounds(size, ranks)
    start, stop = bounds[rank]
    if chunk.size != stop - start:
        raise ValueError(f"rank {rank} owns chunk {rank} of {size} elements ({stop - start} of them), got {chunk.size}")
    full = np.empty(size, dtype=chunk.dtype)  # (n,)
    full[start:stop] = chunk.reshape(-1)
    right, left = (rank + 1) % ranks, (rank - 1) % ranks
    for step in range(ranks - 1):
        send_start, send_stop = bounds[(rank - step) % ranks]
        into_start, into_stop = bounds[(rank - step - 1) % ranks]
        received = np.empty(into_stop - into_start, dtype=full.dtype)
        comm.Sendrecv(np.ascontiguousarray(full[send_start:send_stop]), dest=right, recvbuf=received, source=left)
        full[into_start:into_stop] = received
    return full
    ### END SOLUTION


def ring_allreduce(comm, array: np.ndarray) -> np.ndarray:
    """The elementwise sum of `array` over all ranks, on every rank: ring_reduce_scatter of the flattened array, then
    ring_all_gather of the summed chunk. Same shape and dtype as `array`, which is left unchanged.

    Each phase sends N - 1 chunks per rank, so a rank sends 2(N - 1)/N of the array's bytes (exactly, when N divides
    its size; otherwise its own chunk r and chunk r + 1 are the two it does not send). One rank: a copy.
    """
    ### BEGIN SOLUTION
    array = np.asarray(array)
    chunk = ring_reduce_scatter(comm, array.reshape(-1))
    return ring_all_gather(comm, chunk, array.size).reshape(array.shape)
    ### END SOLUTION


def allreduce_seconds(nbytes: float, ranks: int, *, latency: float, bandwidth: float) -> float:
    """The alpha-beta model of the ring all-reduce: 2(N - 1) steps, in each of which every rank sends one message of
    nbytes / N bytes at the same time (α = latency in seconds per message, β = 1 / bandwidth in seconds per byte):

        T(N) = 2 (N - 1) · latency + 2 (N - 1) / N · nbytes / bandwidth

    0 for one rank. The bandwidth term tends to 2 · nbytes / bandwidth: it hardly grows with N; the latency term does.
    """
    ### BEGIN SOLUTION
    steps = 2 * (ranks - 1)
    return float(steps * latency + steps / ranks * nbytes / bandwidth)
    ### END SOLUTION


def scaling_efficiency(compute_seconds: float, nbytes: float, ranks: int, *, latency: float,
                       bandwidth: float) -> float:
    """The share of a data-parallel step spent computing, when one rank's forward, backward and update take
    compute_seconds and the all-reduce of nbytes of gradients follows them (no overlap):

        E(N) = compute / (compute + allreduce_seconds(nbytes, N, latency=..., bandwidth=...))

    1 for one rank. N ranks then have N · E(N) times the throughput of one.
    """
    ### BEGIN SOLUTION
    return float(compute_seconds / (compute_seconds + allreduce_seconds(nbytes, ranks, latency=latency,
                                                                        bandwidth=bandwidth)))
    ### END SOLUTION


# ---------------------------------------------------------------------- DDP: one model per rank, gradients added up


def broadcast_parameters(comm, model) -> None:
    """Make every rank's parameters rank 0's, in place: comm.Bcast(p.data, root=0) for each p in model.parameters(),
    in order (the same order on every rank, so the messages pair up). Ranks whose models drew different initial
    weights then hold one and the same model."""
    ### BEGIN SOLUTION
    for p in model.parameters():
        comm.Bcast(p.data, root=0)  # in place: p.data stays the same array
    ### END SOLUTION


def shard_batch(x: np.ndarray, y: np.ndarray, rank: int, ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank `rank`'s rows of a global batch: x[start:stop], y[start:stop] with (start, stop) = chunk_bounds(B, ranks)
    [rank]. x, y: (B, T) -> (b_r, T). ValueError when B < ranks: a rank without rows has no mean loss."""
    ### BEGIN SOLUTION
    if len(x) < ranks:
        raise ValueError(f"a batch of {len(x)} rows cannot be shared by {ranks} ranks: every rank needs a row")
    start, stop = chunk_bounds(len(x), ranks)[rank]
    return x[start:stop], y[start:stop]
    ### END SOLUTION


def make_buckets(params: list[Tensor], bucket_bytes: int) -> list[list[int]]:
    """Group the parameters' indices, in order, into buckets of at most bucket_bytes of gradient (p.data.nbytes each):
    walk the parameters and start a new bucket when adding the next one would pass bucket_bytes; a parameter larger
    than bucket_bytes gets a bucket of its own. Every index appears once, in order. With parameters of 400, 400, 400,
    2000 and 100 bytes and bucket_bytes 1000: [[0, 1], [2], [3], [4]]. ValueError for bucket_bytes < 1."""
    ### BEGIN SOLUTION
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be >= 1, got {bucket_bytes}")
    buckets, filled = [], 0
    for i, p in enumerate(params):
        if not buckets or filled + p.data.nbytes > bucket_bytes:
            buckets.append([])
            filled = 0
        buckets[-1].append(i)
        filled += p.data.nbytes
    return buckets
    ### END SOLUTION


def allreduce_gradients(comm, params: list[Tensor], buckets: list[list[int]]) -> None:
    """Sum every parameter's gradient over the ranks, one ring_allreduce per bucket (make_buckets): flatten the
    bucket's gradients into one 1-D array (each g.reshape(-1), in the bucket's order), all-reduce it, and copy each
    piece back into its p.grad in place. A parameter whose grad is None gets zeros first: every rank must send
    buckets of the same sizes, or the ring's messages no longer pair up."""
    ### BEGIN SOLUTION
    for p in params:
        if p.grad is None:
            p.grad = np.zeros_like(p.data)
    for bucket in buckets:
        flat = np.concatenate([params[i].grad.reshape(-1) for i in bucket])  # (bucket's elements,)
        total = ring_allreduce(comm, flat)
        offset = 0
        for i in bucket:
            grad = params[i].grad
            grad[...] = total[offset:offset + grad.size].reshape(grad.shape)
            offset += grad.size
    ### END SOLUTION


def shard_backward(comm, model, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Backward through this rank's rows of each global micro-batch, weighted so that the ranks' gradients add up to
    the gradient of the mean loss over all k = len(batches) micro-batches:

        for each (x, y) (B rows, the same on every rank):
            x_r, y_r = shard_batch(x, y, r, N);  loss = model.loss(x_r, y_r)     # the mean over this rank's b_r rows
            (loss * (b_r / B / k)).backward()

    Returns this rank's share of the mean loss, the sum of loss.item() * b_r / B / k: the shares add up to it.
    """
    ### BEGIN SOLUTION
    rank, ranks = comm.Get_rank(), comm.Get_size()
    share = 0.0
    for x, y in batches:
        x_rank, y_rank = shard_batch(x, y, rank, ranks)  # (b_r, T)
        weight = len(x_rank) / len(x) / len(batches)  # this rank's rows' share of the step's mean
        loss = model.loss(x_rank, y_rank)
        (loss * weight).backward()
        share += loss.item() * weight
    return share
    ### END SOLUTION


def data_parallel_step(comm, model, optimizer: AdamW, batches: list[tuple[np.ndarray, np.ndarray]], *, lr: float,
                       clip: float, bucket_bytes: int = BUCKET_BYTES) -> dict:
    """train.train_step shared by the ranks (every rank calls it with the same global micro-batches):

        optimizer.lr = lr; optimizer.zero_grad()
        share = shard_backward(comm, model, batches)
        allreduce_gradients(comm, params, make_buckets(params, bucket_bytes))    # now every rank has the whole sum
        loss = comm.allreduce(share)                                            # the step's mean loss, on every rank
        grad_norm = clip_grad_norm(params, clip); FloatingPointError if it is not finite (before any update)
        optimizer.step()

    Every rank then holds the gradient one process would have computed on the whole batch and makes the same update,
    so the copies stay equal. Returns {"loss", "grad_norm", "lr"} (floats) like train_step.
    """
    ### BEGIN SOLUTION
    params = model.parameters()
    optimizer.lr = lr
    optimizer.zero_grad()
    share = shard_backward(comm, model, batches)
    allreduce_gradients(comm, params, make_buckets(params, bucket_bytes))
    loss = comm.allreduce(share)  # a Python float: the lower-case (pickling) allreduce is fine for one number
    grad_norm = clip_grad_norm(params, clip)
    if not math.isfinite(grad_norm):
        raise FloatingPointError(f"the gradient norm is {grad_norm}: lower the learning rate or check the model")
    optimizer.step()
    return {"loss": float(loss), "grad_norm": float(grad_norm), "lr": float(lr)}
    ### END SOLUTION


# ---------------------------------------------------------------------- ZeRO-1: the optimizer's state split by rank


class ShardedAdamW:
    """ZeRO stage 1: AdamW with its moments split between the ranks. Rank r owns chunk r (chunk_bounds(P, N)[r]) of
    the flat parameter vector of P elements and keeps exp_avg and exp_avg_sq for that chunk alone: 2P/N numbers per
    rank instead of 2P. A step reduce-scatters the gradients (each rank gets the sum of its chunk only), clips by the
    global norm, updates the chunk with AdamW, and all-gathers the updated parameters, so every rank again holds the
    whole model. The update is AdamW's, elementwise, so the trajectory is DDP's.
    """

    def __init__(self, comm, params: list[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        """Keep comm, self.params = list(params) and self.lr = lr. Find this rank's chunk (start, stop) of the flat
        vector (P = sum of p.size, parameters in order) and make self.pieces: for each parameter overlapping it, in
        order, a Tensor(view, requires_grad=True, dtype=view.dtype) whose data is a VIEW of that parameter's part of
        the chunk, p.data.reshape(-1)[a:b], so that updating a piece updates the parameter (Tensor's default dtype,
        float32, would make a copy of a float64 view). Then self.optimizer = AdamW(self.pieces, lr, betas, eps,
        weight_decay), stage 05's: its moments have the chunk's size, no more.
        ValueError when P < N (a rank would own nothing).
        """
        ### BEGIN SOLUTION
        self.comm = comm
        self.params = list(params)
        self.lr = float(lr)
        rank, ranks = comm.Get_rank(), comm.Get_size()
        self.size = sum(p.size for p in self.params)  # P
        if self.size < ranks:
            raise ValueError(f"{self.size} parameter elements cannot be shared by {ranks} ranks")
        self.start, self.stop = chunk_bounds(self.size, ranks)[rank]
        self.pieces, offset = [], 0
        for p in self.params:
            lo, hi = max(self.start, offset), min(self.stop, offset + p.size)
            if lo < hi:
                view = p.data.reshape(-1)[lo - offset:hi - offset]  # a view: writes reach the parameter
                self.pieces.append(Tensor(view, requires_grad=True, dtype=view.dtype))  # the same dtype: no copy
            offset += p.size
        self.optimizer = AdamW(self.pieces, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        ### END SOLUTION

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (p.grad = None), as an optimizer's zero_grad does."""
        ### BEGIN SOLUTION
        for p in self.params:
            p.grad = None
        ### END SOLUTION

    def step(self, clip: float | None = None) -> float:
        """One ZeRO-1 update; returns the global gradient norm (before clipping).

            flat = every p.grad.reshape(-1) concatenated (zeros for None)              # (P,) this rank's part
            chunk = ring_reduce_scatter(comm, flat)                                      # the summed gradient, chunk r
            norm = sqrt(comm.allreduce(sum of chunk² in float64))                       # the whole gradient's norm
            if norm is not finite: return it, update nothing (the caller raises)
            if clip is not None and norm > clip: chunk *= clip / norm                   # as clip_grad_norm does
            each piece's .grad = its part of chunk;  self.optimizer.lr = self.lr;  self.optimizer.step()
            params = ring_all_gather(comm, concatenated pieces' data, P)                 # every rank's chunk
            copy params back into every p.data, in place
        """
        ### BEGIN SOLUTION
        flat = np.concatenate([(p.grad if p.grad is not None else np.zeros_like(p.data)).reshape(-1)
                               for p in self.params])  # (P,)
        chunk = ring_reduce_scatter(self.comm, flat)  # (stop - start,) the sum over ranks
        norm = math.sqrt(self.comm.allreduce(float(np.sum(np.square(chunk), dtype=np.float64))))
        if not math.isfinite(norm):
            return norm
        if clip is not None and norm > clip:
            chunk *= clip / norm
        offset = 0
        for piece in self.pieces:
            piece.grad = chunk[offset:offset + piece.size]
            offset += piece.size
        self.optimizer.lr = self.lr
        self.optimizer.step()
        mine = np.concatenate([piece.data for piece in self.pieces])  # this rank's updated chunk
        everything = ring_all_gather(self.comm, mine, self.size)  # (P,)
        offset = 0
        for p in self.params:
            p.data[...] = everything[offset:offset + p.size].reshape(p.shape)
            offset += p.size
        return norm
        ### END SOLUTION


def zero_step(comm, model, optimizer: ShardedAdamW, batches: list[tuple[np.ndarray, np.ndarray]], *, lr: float,
              clip: float) -> dict:
    """data_parallel_step with ZeRO-1 (every rank calls it with the same global micro-batches):

        optimizer.lr = lr; optimizer.zero_grad()
        share = shard_backward(comm, model, batches);  loss = comm.allreduce(share)
        grad_norm = optimizer.step(clip);  FloatingPointError when it is not finite

    Returns {"loss", "grad_norm", "lr"} (floats).
    """
    ### BEGIN SOLUTION
    optimizer.lr = lr
    optimizer.zero_grad()
    share = shard_backward(comm, model, batches)
    loss = comm.allreduce(share)
    grad_norm = optimizer.step(clip)
    if not math.isfinite(grad_norm):
        raise FloatingPointError(f"the gradient norm is {grad_norm}: lower the learning rate or check the model")
    return {"loss": float(loss), "grad_norm": float(grad_norm), "lr": float(lr)}
    ### END SOLUTION
