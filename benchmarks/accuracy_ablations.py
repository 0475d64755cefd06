"""Ablations of docs/accuracy.md that the library does not offer as options.

Each ablation swaps one piece of the training core for the length of a run of
``benchmarks/accuracy_study.py`` (whose arguments follow), so that its runs carry
the study's protocol, record format and commit. They were screened against the
digits gap at epsilon 1 (docs/accuracy.md, "The digits gap: what else was
tried") and none was kept:

``balanced_init``
    The initial topology gives every neuron ``floor`` or ``ceil`` of the mean
    number of inputs and outputs (a random bipartite graph with near-equal
    degrees) instead of Erdős–Rényi's Poisson degrees, under which about a third
    of a 1000-wide layer's neurons have no input at epsilon 1. Growth is unchanged.
``centered_cosine``
    Cosine growth scores the neurons' mean-free activations (Pearson
    correlation): a neuron without inputs has a constant activation, which the
    plain cosine of non-negative ReLU outputs rates as similar to everything.
``zeta_decay``
    The pruned fraction follows RigL's cosine decay, ``zeta * (1 + cos(pi t / T)) / 2``
    over the run's T epochs, instead of staying at ``zeta``.
``topology_end``
    No topology update after the first 75 % of the run's epochs (RigL's
    ``T_end``): the connections grown last get the rest of the run to train,
    where under the cosine learning-rate decay the late ones barely move.
``label_smoothing``
    The loss's targets are ``0.9 * onehot + 0.1 / n_classes`` instead of the one-hot
    codes (Szegedy et al. 2016): a network that fits its training set exactly
    stops pushing its logits apart.
``layer_lr``
    Each layer's learning rate follows its own fan-in instead of the network's
    mean one: layer ``i`` steps at the schedule's rate times
    ``rule(k_i) / rule(k)``, ``rule(k) = min(0.3, 0.4 / sqrt(k))`` (the default
    preset's :func:`~ctre_sparse._params.fan_in_learning_rate`), ``k_i`` its
    connections per output neuron and ``k`` the network's. At epsilon 1 a
    3 x 1000 network's output layer has about 100 inputs per neuron against 1-2 in
    the hidden layers, so under the shared rate its pre-activations move about
    seven times as far per step as theirs.
``weight_average``
    Validation, test scores and the fitted model use an exponential moving
    average of the weights over the SGD steps (Polyak averaging; decay
    ``1 - 1 / n``, ``n`` the epoch's number of batches, so it spans about one
    epoch), while training and the topology updates run on the raw weights. A
    connection's average starts at its value when it is grown; pruned
    connections drop out of it.
``clip_spikes``
    A step whose gradient norm (all weights and biases together) exceeds
    ``CLIP_FACTOR`` times the median norm of the last ``CLIP_WINDOW`` steps (from
    the ``CLIP_MIN_STEPS``-th step on) is
    scaled down to that bound (adaptive clipping in the manner of AutoClip,
    Seetharaman et al. 2020, but clipping only outliers), against the one-epoch
    spikes at the peak learning rate.
``dead_end_aware``
    A connection is a dead end when its source neuron has no input (it passes on
    a constant) or its target neuron has no output (nothing reads it); at epsilon
    1 about half of a hidden 1000 x 1000 layer's connections are. Each update
    (neuron degrees as they are before it) prunes dead ends first, then the
    smallest magnitudes, up to the same ``zeta`` fraction, and grows only between
    live neurons: cosine scores of dead neurons are zeroed, random draws come from
    the live rows and columns.
``update_interval``
    A topology update at most every ``ceil(UPDATE_STEPS / b)`` epochs, ``b`` the
    epoch's number of batches, so that at least ``UPDATE_STEPS`` (100, RigL's
    interval) SGD steps pass between two updates; the sets of 1,000-2,000 rows
    have 10-20 steps an epoch. CTRE-seq's switch still counts epochs (the
    skipped epochs pass their accuracy to it).
``grace_period``
    The connections grown by an update are exempt from the next update's pruning
    (a grace period of one update), so that each update prunes among connections
    that have trained for at least two epochs. Measured first: under the default
    about 1-6 % of the regrown connections survive the next update.

Example
-------
    PYTHONPATH=. python benchmarks/accuracy_ablations.py balanced_init --threads 1 \\
        --datasets digits --methods static random ctre_seq --seeds 0 1 2 \\
        --params '{"preset": "default"}' --name ablation_balanced_init
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`
from benchmarks.threads import limit_threads_from_argv  # noqa: E402  (standard library only)

limit_threads_from_argv(sys.argv[1:])

import numpy as np  # noqa: E402  (after the thread limits)

from ctre_sparse._random import check_random_state  # noqa: E402
from ctre_sparse.nn import init as nn_init  # noqa: E402
from ctre_sparse.nn import mlp  # noqa: E402
from ctre_sparse.sparse import CSRMatrix  # noqa: E402
from ctre_sparse.topology import growth  # noqa: E402
from ctre_sparse.training import Trainer  # noqa: E402


def balanced_keys(rng, n_out, n_in, nnz, rounds=100):
    """Sorted linear keys of ``nnz`` distinct positions with near-equal row and column counts.

    Rows and columns are two degree sequences paired at random; a repeated pair
    swaps its column with a random entry's (both degree sequences stay as they
    are) until no pair repeats.
    """
    def degrees(n):
        counts = np.full(n, nnz // n)
        counts[rng.permutation(n)[: nnz % n]] += 1
        return np.repeat(np.arange(n, dtype=np.int64), counts)

    rows, cols = degrees(n_out), rng.permutation(degrees(n_in))
    for _ in range(rounds):
        keys = rows * n_in + cols
        order = np.argsort(keys, kind="stable")
        repeated = order[1:][keys[order][1:] == keys[order][:-1]]
        if repeated.size == 0:
            break
        for i, j in zip(repeated, rng.integers(0, nnz, repeated.size)):
            cols[i], cols[j] = cols[j], cols[i]  # one by one: two swaps may share an entry
    return np.unique(rows * n_in + cols)


def balanced_erdos_renyi(n_out, n_in, epsilon=None, density=None, *, random_state=None,
                         dtype=np.float32, index_dtype=None, init="he"):
    """:func:`ctre_sparse.nn.init.erdos_renyi`'s count and weights on a degree-balanced topology.

    Falls back to Erdős–Rényi where a balanced pattern does not apply: fewer
    connections than neurons on a side, or a layer denser than 1/4.
    """
    rng = check_random_state(random_state)
    nnz = nn_init.erdos_renyi_nnz(n_out, n_in, epsilon=epsilon, density=density)
    if nnz < max(n_in, n_out) or 4 * nnz > n_in * n_out:
        return nn_init.erdos_renyi(n_out, n_in, epsilon, density, random_state=rng,
                                   dtype=dtype, index_dtype=index_dtype, init=init)
    keys = balanced_keys(rng, n_out, n_in, nnz)
    indptr = np.searchsorted(keys, np.arange(n_out + 1, dtype=np.int64) * n_in)
    W = CSRMatrix.adopt(rng.uniform(-1.0, 1.0, keys.size).astype(dtype),
                        (keys % n_in).astype(np.int32), indptr.astype(np.int32), (n_out, n_in),
                        valid=True)
    bounds = (nn_init.fan_in_bounds(np.diff(W.indptr)) if init == "he_sparse"
              else np.full(n_out, nn_init.init_bound(n_in, n_out, init)))
    W.data *= bounds[W.row_indices()].astype(W.dtype)
    return W


def patch_balanced_init():
    mlp.erdos_renyi = balanced_erdos_renyi


def patch_centered_cosine():
    plain = growth.CosineGrowth._cosine

    def centered(self, ctx, n, rng):
        def center(A):
            return np.ascontiguousarray(A - A.mean(axis=1, keepdims=True), dtype=A.dtype)
        return plain(self, dataclasses.replace(ctx, A_in=center(ctx.A_in),
                                               A_out=center(ctx.A_out)), n, rng)
    growth.CosineGrowth._cosine = centered


def patch_label_smoothing(alpha=0.1):
    plain = mlp.cross_entropy_grad

    def smoothed(P, y, out=None, *, xp=None, n_total=None):
        out = plain(P, y, out=out, xp=xp, n_total=n_total)
        n = P.shape[1] if n_total is None else n_total
        out[y, np.arange(P.shape[1])] += alpha / n
        out -= alpha / (P.shape[0] * n)
        return out
    mlp.cross_entropy_grad = smoothed


def patch_zeta_decay(epochs):
    plain = Trainer._update_topology

    def decayed(self, X, y):
        if self.updater is not None:
            zeta = self.updater.__dict__.setdefault("_zeta_peak", self.updater.zeta)
            t = min(self.epoch, epochs) / epochs
            self.updater.zeta = zeta * 0.5 * (1.0 + math.cos(math.pi * t))
        return plain(self, X, y)
    Trainer._update_topology = decayed


def patch_topology_end(epochs, fraction=0.75):
    plain = Trainer._update_topology
    last = int(fraction * epochs)   # updates run before epochs 1 .. last-1 (0-based)

    def stopped(self, X, y):
        if self.epoch >= last:
            return {"n_pruned": 0, "n_cosine": 0, "n_random": 0}, 0.0
        return plain(self, X, y)
    Trainer._update_topology = stopped


def _layer_rule(k):
    from ctre_sparse import _params
    return min(_params.FAN_IN_LR_MAX, _params.FAN_IN_LR_SCALE / math.sqrt(max(k, 1.0)))


def patch_layer_lr():
    from ctre_sparse.nn import optim

    def step(self, model):
        if self.velocity_W is None:
            self._init_state(model)
        fan_in = [layer.W.nnz / max(1, layer.W.n_out) for layer in model.layers]
        k = sum(layer.W.nnz for layer in model.layers) / max(1, sum(
            layer.W.n_out for layer in model.layers))
        base = self.current_lr
        try:
            for i, layer in enumerate(model.layers):
                self.current_lr = base * _layer_rule(fan_in[i]) / _layer_rule(k)
                self._update(layer.W.data, layer.grad_W, self.velocity_W[i], self.weight_decay)
                self._update(layer.b, layer.grad_b, self.velocity_b[i], 0.0)
        finally:
            self.current_lr = base
    optim.SGD.step = step


#: ``clip_spikes``: the bound is this many times the recent median gradient norm ...
CLIP_FACTOR = 5.0
#: ... over at most this many steps ...
CLIP_WINDOW = 200
#: ... and at least this many (no clipping before).
CLIP_MIN_STEPS = 20


def patch_clip_spikes():
    """Clip each step's gradients with the library's :class:`~ctre_sparse.nn.clip.OutlierClip`
    at the constants above, before (and apart from) any clip of the optimizer itself."""
    from ctre_sparse.nn import optim
    from ctre_sparse.nn.clip import OutlierClip
    plain_step = optim.SGD.step

    def step(self, model):
        clip = self.__dict__.get("_clip_spikes")
        if clip is None:
            clip = self._clip_spikes = OutlierClip(CLIP_FACTOR, CLIP_WINDOW, CLIP_MIN_STEPS)
        clip(model.layers)
        plain_step(self, model)
    optim.SGD.step = step


#: State of ``weight_average``: "avg", per layer (W.data average, b average); "raw", the raw
#: weights while the averages sit in the model; "decay"; "trainer", whose run it is.
_AVERAGE = {}


def patch_weight_average():
    plain_topology, plain_batches = Trainer._update_topology, Trainer._train_batches
    from ctre_sparse.nn import optim
    plain_step = optim.SGD.step
    state = _AVERAGE

    def swap_raw_in(self):
        if state.get("trainer") is not self:  # a new run of the study's process
            state.clear()
            state["trainer"] = self
        raw = state.pop("raw", None)
        if raw is not None:
            for layer, (w, b) in zip(self.model.layers, raw):
                layer.W.data[:] = w
                layer.b[:] = b

    def step(self, model):
        plain_step(self, model)
        avg, d = state.get("avg"), state["decay"]
        if avg is None:
            state["avg"] = [(layer.W.data.copy(), layer.b.copy()) for layer in model.layers]
            return
        for layer, (w, b) in zip(model.layers, avg):
            w *= d
            w += (1.0 - d) * layer.W.data
            b *= d
            b += (1.0 - d) * layer.b

    def topology(self, X, y):
        swap_raw_in(self)
        avg = state.get("avg")
        before = [(growth.pattern_keys(layer.W), layer.W.data.copy()) for layer in self.model.layers] \
            if avg else None
        if avg and not all(np.all(np.diff(k) > 0) for k, _ in before):
            raise RuntimeError("weight_average needs canonical CSR (sorted, unique columns)")
        out = plain_topology(self, X, y)
        if avg:
            for i, layer in enumerate(self.model.layers):
                keys, (old_keys, old_w) = growth.pattern_keys(layer.W), before[i]
                pos = np.minimum(np.searchsorted(old_keys, keys), old_keys.size - 1)
                # a survivor keeps its position and its value; one pruned and grown again
                # in the same place (random growth may) has a new value and starts afresh
                found = (old_keys[pos] == keys) & (old_w[pos] == layer.W.data)
                w = layer.W.data.copy()
                w[found] = avg[i][0][pos[found]]
                avg[i] = (w, avg[i][1])
        return out

    def batches(self, X, y):
        swap_raw_in(self)
        state["decay"] = 1.0 - 1.0 / max(1, -(-X.shape[1] // self.batch_size))
        out = plain_batches(self, X, y)
        state["raw"] = [(layer.W.data.copy(), layer.b.copy()) for layer in self.model.layers]
        for layer, (w, b) in zip(self.model.layers, state["avg"]):
            layer.W.data[:] = w
            layer.b[:] = b
        return out

    optim.SGD.step = step
    Trainer._update_topology = topology
    Trainer._train_batches = batches


#: The live neurons of every layer, (sources, targets) boolean masks, during an update.
_LIVE = {}


def _live_masks(model):
    layers = model.layers
    masks = []
    for i, layer in enumerate(layers):
        W = layer.W
        src = (np.ones(W.n_in, bool) if i == 0
               else np.diff(np.asarray(layers[i - 1].W.indptr)) > 0)
        tgt = (np.ones(W.n_out, bool) if i == len(layers) - 1
               else np.bincount(np.asarray(layers[i + 1].W.indices), minlength=W.n_out) > 0)
        masks.append((src, tgt))
    return masks


def patch_dead_end_aware():
    from ctre_sparse import ops
    from ctre_sparse.topology import updater

    Updater = updater.TopologyUpdater
    plain_update, plain_layer = Updater.update, Updater._update_layer
    plain_prune, plain_cosine, plain_pick = ops.prune_magnitude, growth.CosineGrowth._cosine, \
        growth._random_pick

    def update(self, model, *args, **kwargs):
        _LIVE["masks"] = _live_masks(model)
        return plain_update(self, model, *args, **kwargs)

    def update_layer(self, i, layer, *args, **kwargs):
        _LIVE["layer"] = i
        return plain_layer(self, i, layer, *args, **kwargs)

    def prune(W, fraction, **kwargs):  # dead ends first: their magnitudes scaled to ~0 meanwhile
        src, tgt = _LIVE["masks"][_LIVE["layer"]]
        dead = ~(src[W.indices] & tgt[W.row_indices()])
        saved = W.data.copy()
        W.data[dead] *= 1e-30
        result = plain_prune(W, fraction, **kwargs)
        W.data[:] = saved
        result.matrix.data[:] = saved[result.kept]
        return result

    def cosine(self, ctx, n, rng):
        src, tgt = _LIVE["masks"][ctx.layer_index]
        return plain_cosine(self, dataclasses.replace(
            ctx, A_in=ctx.A_in * src[:, None].astype(ctx.A_in.dtype),
            A_out=ctx.A_out * tgt[:, None].astype(ctx.A_out.dtype)), n, rng)

    def pick(ctx, n, rng):
        src, tgt = _LIVE["masks"][ctx.layer_index]
        rows_live, cols_live = np.flatnonzero(tgt), np.flatnonzero(src)
        W = ctx.W
        r, c = W.row_indices().astype(np.int64), W.indices.astype(np.int64)
        inside = tgt[r] & src[c]
        keys = np.sort(np.searchsorted(rows_live, r[inside]) * cols_live.size
                       + np.searchsorted(cols_live, c[inside]))
        if rows_live.size * cols_live.size - keys.size < n:
            return plain_pick(ctx, n, rng)
        rows, cols = growth.sample_absent(rows_live.size, cols_live.size, n, rng, keys)
        return rows_live[rows], cols_live[cols], 0

    updater.TopologyUpdater.update = update
    updater.TopologyUpdater._update_layer = update_layer
    ops.prune_magnitude = prune
    growth.CosineGrowth._cosine = cosine
    growth._random_pick = pick


def patch_grace_period():
    """The ``grace_period`` ablation (module docstring)."""
    from ctre_sparse import ops
    from ctre_sparse.topology import updater

    plain_prune, plain_insert = ops.prune_magnitude, ops.insert
    plain_update_layer = updater.TopologyUpdater._update_layer
    state = {"owner": None, "layer": None, "young": {}}

    def young_keys():
        entry = state["young"].get((id(state["owner"]), state["layer"]))
        return entry[1] if entry is not None and entry[0] is state["owner"] else None

    def prune(W, fraction, *, column_scale=None, backend="auto", check=True):
        young = young_keys()
        if young is None or young.size == 0 or W.nnz == 0:
            return plain_prune(W, fraction, column_scale=column_scale, backend=backend,
                               check=check)
        exempt = np.isin(growth.pattern_keys(W), young)   # storage order: canonical CSR
        shielded = W.copy()
        data = shielded.data.copy()
        data[exempt] = np.finfo(data.dtype).max / 1e6   # finite, above every other score
        shielded.data = data
        res = plain_prune(shielded, fraction, column_scale=column_scale, backend=backend,
                          check=check)
        res.matrix.data[:] = W.data[res.kept]
        return res

    def insert(W, rows, cols, values, **kw):
        state["young"][(id(state["owner"]), state["layer"])] = (
            state["owner"], np.sort(np.asarray(rows, np.int64) * W.n_in
                                    + np.asarray(cols, np.int64)))
        return plain_insert(W, rows, cols, values, **kw)

    def update_layer(self, i, *args, **kw):
        state["owner"], state["layer"] = self, i
        try:
            return plain_update_layer(self, i, *args, **kw)
        finally:
            state["layer"] = None

    ops.prune_magnitude, ops.insert = prune, insert
    updater.TopologyUpdater._update_layer = update_layer


#: ``update_interval``: the fewest SGD steps between two topology updates.
UPDATE_STEPS = 100


def patch_update_interval():
    """The ``update_interval`` ablation (module docstring)."""
    plain = Trainer._update_topology

    def update(self, X, y):
        every = max(1, math.ceil(UPDATE_STEPS / -(-X.shape[1] // self.batch_size)))
        if self.updater is not None and self.epoch > 0 and self.epoch % every:
            self.updater.observe(self._monitor)
            return {"n_pruned": 0, "n_cosine": 0, "n_random": 0}, 0.0
        return plain(self, X, y)
    Trainer._update_topology = update


def _run_length(name, accuracy_study, rest):
    """The epochs of the study's runs (one length for all of them, else SystemExit)."""
    args = accuracy_study.parse_args(rest)
    if args.epochs is None and args.datasets and len(set(
            accuracy_study.EPOCHS[d] for d in args.datasets)) > 1:
        raise SystemExit(f"{name}: give --epochs, or data sets of one run length")
    return args.epochs or accuracy_study.EPOCHS[(args.datasets or ["digits"])[0]]


#: The ablations whose patch takes no argument, by name.
PATCHES = {"balanced_init": patch_balanced_init, "centered_cosine": patch_centered_cosine,
           "label_smoothing": patch_label_smoothing, "dead_end_aware": patch_dead_end_aware,
           "layer_lr": patch_layer_lr, "weight_average": patch_weight_average,
           "clip_spikes": patch_clip_spikes, "grace_period": patch_grace_period,
           "update_interval": patch_update_interval}
#: The ablations whose patch takes the run length in epochs.
RUN_LENGTH_PATCHES = {"zeta_decay": patch_zeta_decay, "topology_end": patch_topology_end}


def main(argv):
    from benchmarks import accuracy_study

    name, rest = argv[0], argv[1:]
    if name in PATCHES:
        PATCHES[name]()
    elif name in RUN_LENGTH_PATCHES:
        RUN_LENGTH_PATCHES[name](_run_length(name, accuracy_study, rest))
    else:
        raise SystemExit(f"unknown ablation {name!r}: "
                         f"{', '.join([*PATCHES, *RUN_LENGTH_PATCHES])}")
    return accuracy_study.main(rest)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1:]))
