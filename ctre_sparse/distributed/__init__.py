"""Data-parallel training over MPI (mpi4py): P processes train one model.

Install with ``pip install 'ctre_sparse[mpi]'`` (mpi4py and the MPICH wheel,
whose ``mpiexec`` lands in the environment's ``bin``), then either::

    mpiexec -n 4 ctre-sparse train --out runs/mpi

or, in a script run by ``mpiexec -n 4 python script.py``,
``CTREClassifier(..., distributed="mpi").fit(X, y)`` with the same data and
parameters on every rank.

What happens (docs/distributed.md has the measured costs and a scaling model):

- the same seed gives every rank the same initial topology (rank 0's seed
  is broadcast when none is given);
- each global mini-batch (``batch_size`` samples, as in one process) is cut
  into one shard per rank; each rank runs forward and backward on its shard,
  the gradients of the nonzeros (``W.data``-aligned, the patterns being equal)
  and of the biases are summed by one ``MPI_Allreduce`` per layer, and every
  rank applies the same SGD step: up to the order of floating-point sums,
  the run is the single-process run;
- the topology update's cosine top-k is split by output neurons and the
  candidates are merged with the op's tie rule; pruning, random growth and
  the new weights come from the shared random stream: the same topology on
  every rank, checked after every epoch;
- only rank 0 writes checkpoints, history and figures;
- a rank that stops answering (killed, hung, cut off) is reported by name
  after ``$CTRE_SPARSE_MPI_TIMEOUT`` seconds (default 10) and the job is
  aborted; an error on one rank during training aborts every rank too
  (otherwise the others would wait for it forever).
"""

from .communicator import (DEFAULT_TIMEOUT, ENV_TIMEOUT, EXIT_RANK_LOST, MPICommunicator,
                           RanksDivergedError, import_mpi, model_digest, mpi_size_from_env)
from .split import merge_topk, row_block, shard_bounds

__all__ = ["MPICommunicator", "RanksDivergedError", "import_mpi", "mpi_size_from_env",
           "model_digest", "merge_topk", "row_block", "shard_bounds", "ENV_TIMEOUT",
           "DEFAULT_TIMEOUT", "EXIT_RANK_LOST"]
