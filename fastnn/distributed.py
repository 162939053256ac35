"""Data-parallel training over MPI (the optional extra [mpi]: mpi4py and Open MPI).

Run a script on K processes ("ranks") with `mpiexec -n K python -m mpi4py script.py` and call
`model.fit(X, y, ..., distributed=True)` in it (or `mpiexec -n K fastnn train ...`). Every rank
is given the same X, y and trains on its part of every batch:

- Each global batch is cut into `shards` pieces (4 unless fit says otherwise), shard s holding
  rows [s·n/shards, (s+1)·n/shards) of the batch's n rows. The number of shards is fixed by the
  run, not by K: a rank computes the gradients of a contiguous run of shards, each separately
  (fastnn._core's Plan.train), and the shards' gradients are summed in one fixed pairwise tree
  over the shards (`tree_sum`), whichever rank computed them. So 1, 2 or 4 ranks give the same
  weights bit for bit, and every rank holds the same weights after every step.
- A rank sends the sums of the largest subtrees inside its run of shards (one buffer of the
  gradient's size when K divides `shards`) and receives everyone's (MPI Allgatherv); each rank
  then finishes the tree itself. It moves K buffers to every rank where an Allreduce would move
  about two: the price of an order that does not depend on K.
- Dropout: shard s draws from its own stretch of the generator's stream (2⁴⁰ numbers apart), so
  the masks do not depend on which rank computes it. Shuffling comes from the generator, whose
  state rank 0 hands to every rank at the start, with the weights and the optimizer's state.
- Validation metrics are summed over the same fixed shards of the validation data, so every
  rank (and every K) sees the same numbers and callbacks take the same decisions; rank 0 alone
  prints and writes files.

Against plain single-process fit the weights agree to float32 rounding, not bit for bit: a shard's
gradient is scaled by its share of the batch and the shards are summed as a tree, where plain fit
sums the batch in one pass. BatchNorm normalises each shard by the shard's own statistics (as
PyTorch's DistributedDataParallel without SyncBatchNorm, but per shard rather than per rank),
and every rank moves the running averages by every shard's statistics in shard order.

The helpers here serve hand-written loops too: rank(), size(), is_main(), broadcast_parameters,
broadcast_optimizer_state, broadcast_generator, shard_rows / owned_shards (which rows are this
rank's) and average_gradients. Importing fastnn never imports mpi4py; the first call here does.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

DEFAULT_SHARDS = 4
_comm = None
# Seconds this process has spent in distributed fit's exchanges (the gradient and the batch's
# loss): bench/distributed.py reports them as a share of training time.
exchange_seconds = 0.0


def comm():
    """MPI.COMM_WORLD (mpi4py is imported on the first call)."""
    global _comm
    if _comm is None:
        try:
            from mpi4py import MPI
        except ImportError:
            raise ImportError("distributed training needs mpi4py and an MPI library: "
                              "pip install 'fastnn-cpu[mpi]' (mpi4py and Open MPI), then run the script "
                              "under `mpiexec -n 2 python -m mpi4py script.py`") from None
        _comm = MPI.COMM_WORLD
    return _comm


def launched_by_mpi() -> bool:
    """True in a process that mpiexec started as one of several ranks (read from the environment;
    mpi4py is not imported).

    Example:
        >>> from fastnn import distributed as dist
        >>> dist.launched_by_mpi()                             # (a plain process)
        False
    """
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 1:
            return True
    return False


def rank() -> int:
    """This process's rank, 0 .. size() - 1.

    In a script run with `mpiexec -n 2 python -m mpi4py script.py`::

        print(dist.rank(), "of", dist.size())              # 0 of 2 on one process, 1 of 2 on the other
    """
    return comm().Get_rank()


def size() -> int:
    """The number of ranks.

    See rank().
    """
    return comm().Get_size()


def is_main() -> bool:
    """True on rank 0, the rank that prints and writes files.

    In a script under mpiexec::

        if dist.is_main():
            fnn.save(model, "model.fnn")                    # one writer
    """
    return rank() == 0


def shard_rows(n: int, shards: int, s: int) -> tuple[int, int]:
    """Rows [start, stop) of shard s when n rows are cut into `shards` pieces.

    Example:
        >>> from fastnn import distributed as dist
        >>> [dist.shard_rows(10, 4, s) for s in range(4)]
        [(0, 2), (2, 5), (5, 7), (7, 10)]
    """
    return n * s // shards, n * (s + 1) // shards


def owned_shards(shards: int, r: int, k: int) -> tuple[int, int]:
    """The contiguous run [lo, hi) of the shards that rank r of k computes.

    Example:
        >>> from fastnn import distributed as dist
        >>> [dist.owned_shards(4, r, 2) for r in range(2)]      # 4 shards over 2 ranks
        [(0, 2), (2, 4)]
    """
    return shards * r // k, shards * (r + 1) // k


def subtrees(lo: int, hi: int, shards: int) -> list[tuple[int, int]]:
    """The largest nodes of the pairwise tree over `shards` leaves that lie inside [lo, hi),
    left to right. Node (a, b) is the sum of shards a .. b-1 as (a, m) + (m, b), m = (a + b) // 2.

    Example:
        >>> from fastnn import distributed as dist
        >>> dist.subtrees(1, 4, 4)                             # shards 1, 2, 3 of 4
        [(1, 2), (2, 4)]
    """
    out = []

    def cover(a, b):
        if lo <= a and b <= hi:
            out.append((a, b))
        elif a < hi and lo < b:
            m = (a + b) // 2
            cover(a, m)
            cover(m, b)
    cover(0, shards)
    return out


def tree_sum(node: tuple[int, int], known: dict, out: np.ndarray | None = None) -> np.ndarray:
    """The sum of the shards in `node`, in the tree's fixed order, from the `known` node sums
    (leaves (s, s + 1) or larger subtrees); written into `out` when given.

    Example:
        >>> from fastnn import distributed as dist
        >>> leaves = {(s, s + 1): np.full(2, float(s)) for s in range(4)}
        >>> dist.tree_sum((0, 4), leaves)                     # (0 + 1) + (2 + 3)
        array([6., 6.])
    """
    if node in known:
        if out is None:
            return known[node]
        out[...] = known[node]
        return out
    a, b = node
    m = (a + b) // 2
    return np.add(tree_sum((a, m), known), tree_sum((m, b), known), out=out)


def broadcast_parameters(model, root: int = 0) -> None:
    """Every rank's parameters and buffers (BatchNorm's running statistics) become rank `root`'s.

    In a script under mpiexec (each rank built its model with its own seed)::

        dist.broadcast_parameters(model)                    # now every rank holds rank 0's weights
    """
    c = comm()
    for p in model.parameters():
        c.Bcast(p.data, root=root)
    for b in model.buffers():
        c.Bcast(b, root=root)


def average_gradients(model) -> None:
    """For hand-written loops: every rank's parameter gradients become their mean over the ranks
    (each rank having computed the mean loss of an equal share of the batch), summed in a fixed
    tree over the ranks so every rank holds the same bits. Unlike fit's shards, the result
    depends on the number of ranks.

    A hand-written loop under mpiexec, each rank on its rows of every batch::

        dist.broadcast_parameters(model)
        for b in range(0, len(X), 64):
            lo, hi = dist.shard_rows(64, dist.size(), dist.rank())
            loss_fn(model(X[b + lo:b + hi]), y[b + lo:b + hi])
            opt.zero_grad()
            model.backward(loss_fn.backward())
            dist.average_gradients(model)                   # the same mean gradient on every rank
            opt.step()
    """
    c = comm()
    k = c.Get_size()
    for p in model.parameters():
        g = np.ascontiguousarray(p.grad)
        every = np.empty((k, *g.shape), g.dtype)
        c.Allgather(g, every)
        total = tree_sum((0, k), {(r, r + 1): every[r] for r in range(k)})
        p.grad[...] = total / g.dtype.type(k)


def broadcast_optimizer_state(optimizer, root: int = 0) -> None:
    """Every rank's optimizer state (step counts, moment buffers, settings) becomes rank `root`'s.

    In a script under mpiexec, after loading a checkpoint on rank 0 only::

        dist.broadcast_optimizer_state(opt)
    """
    state = comm().bcast(optimizer.state_dict() if rank() == root else None, root=root)
    if rank() != root:
        optimizer.load_state_dict(state)


def broadcast_generator(root: int = 0) -> None:
    """fastnn's random generator on every rank continues from rank `root`'s state.

    In a script under mpiexec::

        dist.broadcast_generator()                          # the same shuffles and Dropout masks everywhere
    """
    from fastnn.random import generator
    g = generator()
    state = comm().bcast(g.bit_generator.state if rank() == root else None, root=root)
    g.bit_generator.state = state


def share_failure(who: str, error: BaseException | None) -> None:
    """Tell every rank whether this one failed (error) and learn the same of the others; if any
    did, raise on every rank (that rank's own exception there, a RuntimeError naming it
    elsewhere), so that no rank goes on to wait in an exchange the failed one never reaches."""
    told = comm().allgather(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    for r, msg in enumerate(told):
        if msg is not None:
            raise RuntimeError(f"{who}: rank {r} failed: {msg}")


def same_everywhere(who: str, **facts) -> None:
    """Raise ValueError on every rank unless every rank holds the same facts (data lengths,
    shapes, model, settings)."""
    every = comm().allgather(facts)
    for r, theirs in enumerate(every):
        for k, v in facts.items():
            if theirs.get(k) != v:
                raise ValueError(f"{who}: rank {r} has {k} = {theirs.get(k)!r} but rank {rank()} has {v!r}; "
                                 "every rank must be given the same data, model and settings")


def abort(who: str, error: BaseException) -> None:
    """End the whole job (every rank) after an error on this rank mid-training: the others would
    wait for it in the next exchange forever."""
    sys.stderr.write(f"{who}: rank {rank()} of {size()} failed: {type(error).__name__}: {error}; "
                     "ending the job\n")
    sys.stderr.flush()
    comm().Abort(1)


class Combiner:
    """The gradient exchange of one distributed fit: Plan.train calls it after computing this
    rank's shards of a batch; it writes the batch's gradient (the fixed tree over all shards)
    into `grads` and returns the batch's (loss, correct)."""

    def __init__(self, shards: int, n: int, batch_size: int, loss_is_sum: bool):
        c = comm()
        self.comm, self.k, self.r = c, c.Get_size(), c.Get_rank()
        self.shards, self.n, self.B, self.loss_is_sum = shards, n, batch_size, loss_is_sum
        self.grads: np.ndarray | None = None
        self.stats_width = 0

    def use(self, grads: np.ndarray, stats_width: int) -> tuple:
        """Plan.train's `shards` argument for a plan whose gradient buffer is `grads` and whose
        ops log `stats_width` batch statistics per shard (BatchNorm)."""
        if self.grads is not grads or self.stats_width != stats_width:
            self._size_for(grads, stats_width)
        return (self.shards, self.lo, self.hi, self.shard_grads, self.shard_losses, self.shard_correct,
                self.shard_stats, self.all_stats, self)

    def _size_for(self, grads: np.ndarray, stats_width: int) -> None:
        from mpi4py import MPI
        shards, W = self.shards, stats_width
        self.grads, self.stats_width, P = grads, stats_width, grads.size
        self.lo, self.hi = owned_shards(shards, self.r, self.k)
        ranges = [owned_shards(shards, r, self.k) for r in range(self.k)]
        self.nodes = [subtrees(lo, hi, shards) for lo, hi in ranges]
        self.mine = self.nodes[self.r]
        counts = [len(nd) for nd in self.nodes]
        self.all_nodes = [nd for nds in self.nodes for nd in nds]
        # this rank's shards' gradients, losses and correct counts (Plan.train fills them)
        self.shard_grads = np.zeros((self.hi - self.lo, P), grads.dtype)
        self.shard_losses = np.zeros(self.hi - self.lo, np.float64)
        self.shard_correct = np.zeros(self.hi - self.lo, np.int64)
        self.send = np.empty((len(self.mine), P), grads.dtype)
        self.recv = np.empty((len(self.all_nodes), P), grads.dtype)
        mpi_t = MPI.FLOAT if grads.dtype == np.float32 else MPI.DOUBLE
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
        self.recv_spec = [self.recv, [c * P for c in counts], [d * P for d in displs], mpi_t]
        self.send_spec = [self.send, mpi_t]
        # per batch, every shard's loss and correct count: this rank's [losses, counts] go to
        # slots [2·lo, 2·hi) of stats
        self.ranges = ranges
        self.my_stats = np.empty(2 * (self.hi - self.lo), np.float64)
        self.stats = np.empty(2 * shards, np.float64)
        self.my_stats_spec = [self.my_stats, MPI.DOUBLE]
        self.stats_spec = [self.stats, [2 * (hi - lo) for lo, hi in ranges], [2 * lo for lo, _ in ranges], MPI.DOUBLE]
        self.leaves = {(s, s + 1): self.shard_grads[s - self.lo] for s in range(self.lo, self.hi)}
        # BatchNorm: every shard's batch statistics reach every rank, which replays the running
        # averages in shard order
        self.shard_stats = self.all_stats = None
        if W:
            self.shard_stats = np.zeros((self.hi - self.lo, W), grads.dtype)
            self.all_stats = np.zeros((shards, W), grads.dtype)
            self.stats_send = [self.shard_stats, mpi_t]
            self.stats_recv = [self.all_stats, [(hi - lo) * W for lo, hi in ranges], [lo * W for lo, _ in ranges],
                               mpi_t]

    def __call__(self, batch: int):
        t0 = time.perf_counter()
        for i, node in enumerate(self.mine):
            tree_sum(node, self.leaves, out=self.send[i])
        self.comm.Allgatherv(self.send_spec, self.recv_spec)
        tree_sum((0, self.shards), dict(zip(self.all_nodes, self.recv)), out=self.grads)
        k = self.hi - self.lo
        self.my_stats[:k], self.my_stats[k:] = self.shard_losses, self.shard_correct
        self.comm.Allgatherv(self.my_stats_spec, self.stats_spec)
        if self.stats_width:
            self.comm.Allgatherv(self.stats_send, self.stats_recv)
        global exchange_seconds
        exchange_seconds += time.perf_counter() - t0
        # the batch's loss: the shards' means weighted by their rows, summed in shard order
        rows = min(self.n, (batch + 1) * self.B) - batch * self.B
        loss, correct = 0.0, 0
        for lo, hi in self.ranges:
            for s in range(lo, hi):
                value, hits = self.stats[2 * lo + s - lo], self.stats[2 * lo + hi - lo + s - lo]
                s0, s1 = shard_rows(rows, self.shards, s)
                loss += value if self.loss_is_sum else value * (s1 - s0) / rows
                correct += int(hits)
        return loss, correct
