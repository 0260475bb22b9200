"""Combiners: how a subset's members are combined on each text, as states that merge.

The state of a subset is a tuple of arrays whose first axis runs over subsets. `singles()` gives the
state of every model alone, `merge(a, b)` the state of the union of two disjoint subsets, and
`loss(state)` the subset's loss: a weighted sum over texts, in the run's unit. Search strategies grow
subsets only through these, so one strategy serves every combiner:

- MinCombiner (the oracle): the state is the per-text minimum of C[i, x] = w_x L_i(x) (weighted losses).
- RouterCombiner: a predictor Â (models x texts, lower is better) routes each text to the member with
  the lowest prediction, which is paid its true weighted loss; the state is, per text, the best rank
  among the members in the order Â sorts the models (a minimum, as the oracle's). The oracle is the
  router with Â = C.
- MixtureCombiner: the uniform Bayesian mixture of the members' text probabilities,
  NLL_mix(x) = -log((1/|S|) sum_i exp(-NLL_i(x))), kept as a running log-sum-exp (max, scaled sum,
  count), so texts thousands of nats long neither overflow nor underflow.

`monotone` says that adding a member never raises the loss (exact and milp rely on it); `submodular`
that gains only shrink as the subset grows (greedy's lazy evaluation relies on it).
"""
from __future__ import annotations

import numpy as np

State = tuple  # arrays with a leading subsets axis

CHUNK_BYTES = 64 * 2**20  # memory of the states built at once by Combiner.fold
MAX_BLOCK = 2048  # subsets folded at once: their (B, B) containment matrix stays small


class Combiner:
    monotone = False
    submodular = False

    def singles(self) -> State:
        raise NotImplementedError

    def merge(self, a: State, b: State) -> State:
        raise NotImplementedError

    def loss(self, state: State) -> np.ndarray:
        raise NotImplementedError

    @property
    def n_models(self) -> int:
        return len(self.singles()[0])

    @property
    def single_losses(self) -> np.ndarray:
        """(M,) the loss of every model alone."""
        return self.loss(self.singles())

    def baseline(self) -> float:
        """Loss before any model is chosen, for gains from the empty subset: sum over texts of the worst
        single model's weighted loss (a constant, so it never changes which model is best)."""
        return float(self.per_text(self.singles()).max(axis=0).sum())

    def per_text(self, state: State) -> np.ndarray:
        """(B, N) weighted loss per text; loss(state) is its row sum."""
        raise NotImplementedError

    def state_bytes(self) -> int:
        """Bytes of one subset's state."""
        return sum(a[0].nbytes for a in self.singles())

    def active_params(self, state: State, total_params: np.ndarray, params: np.ndarray) -> np.ndarray:
        """(B,) parameters run per text, on average over texts, by subsets of total parameters `total_params`
        (B,), `params` (M,) being the models' counts. Every member runs unless the combiner routes."""
        return np.asarray(total_params, dtype=np.float64)

    def fold(self, members: np.ndarray):
        """(rows, state) for blocks of a bool (S, M) matrix of subsets (no empty rows): the states of the
        subsets members[rows], a bounded memory's worth at a time. Within a block, subsets are taken smallest
        first and each starts from the largest earlier subset it contains (on a frontier, usually all but one
        model of it), so few merges build each state."""
        members = np.asarray(members, dtype=bool)
        block_size = min(MAX_BLOCK, max(1, CHUNK_BYTES // max(1, self.state_bytes())))
        order = np.argsort(members.sum(axis=1), kind="stable")
        for start in range(0, len(members), block_size):
            rows = order[start:start + block_size]
            yield rows, self._fold_block(members[rows])

    def _fold_block(self, block: np.ndarray) -> State:
        """States of the subsets `block` (bool (B, M), sorted by size), each built on its largest earlier subset."""
        singles, size = self.singles(), block.sum(axis=1)
        shared = block.astype(np.int32) @ block.T.astype(np.int32)  # (B, B) members in common
        inside = (shared == size[None, :]) & np.tri(len(block), k=-1, dtype=bool)  # row i contains earlier row j
        score = np.where(inside, size[None, :], 0)
        parent = np.where(score.max(axis=1) > 0, score.argmax(axis=1), -1)
        first = block.argmax(axis=1)
        missing = np.where(parent[:, None] >= 0, block & ~block[np.maximum(parent, 0)], block)
        missing[np.flatnonzero(parent < 0), first[parent < 0]] = False  # a root starts as its first member
        generation = np.zeros(len(block), dtype=np.int64)
        for i in np.flatnonzero(parent >= 0):  # parents come first: one pass
            generation[i] = generation[parent[i]] + 1
        state = take(singles, first)
        for g in range(generation.max() + 1 if len(block) else 0):
            rows = np.flatnonzero(generation == g)
            if g:
                for whole in state:
                    whole[rows] = whole[parent[rows]]
            for j in np.flatnonzero(missing[rows].any(axis=0)):
                merge_rows = rows[missing[rows, j]]
                merged = self.merge(take(state, merge_rows), take(singles, slice(j, j + 1)))
                for whole, part in zip(state, merged):
                    whole[merge_rows] = part
        return state

    def evaluate(self, members: np.ndarray, params: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(loss (S,), parameters run per text (S,) or None without `params`) of each subset of a bool (S, M)
        matrix (no empty rows), from one fold of their states."""
        members = np.asarray(members, dtype=bool)
        loss = np.empty(len(members))
        active = None if params is None else np.empty(len(members))
        for rows, state in self.fold(members):
            loss[rows] = self.loss(state)
            if params is not None:
                active[rows] = self.active_params(state, members[rows] @ np.asarray(params, np.float64), params)
        return loss, active

    def subset_losses(self, members: np.ndarray) -> np.ndarray:
        """Loss of each subset of a bool (S, M) matrix (no empty rows)."""
        return self.evaluate(members)[0]


def take(state: State, index) -> State:
    return tuple(a[index] for a in state)


def concat(states: list[State]) -> State:
    return tuple(np.concatenate(parts) for parts in zip(*states))


class MinCombiner(Combiner):
    """The oracle: per text, the member with the lowest loss. `weighted` is C (M, N)."""

    monotone = True
    submodular = True

    def __init__(self, weighted: np.ndarray):
        self.weighted = np.asarray(weighted, dtype=np.float64)

    def singles(self) -> State:
        return (self.weighted,)

    def merge(self, a: State, b: State) -> State:
        return (np.minimum(a[0], b[0]),)

    def per_text(self, state: State) -> np.ndarray:
        return state[0]

    def loss(self, state: State) -> np.ndarray:
        return state[0].sum(axis=-1)


class RouterCombiner(Combiner):
    """Route each text to the member with the lowest prediction `predicted` (M, N); pay `weighted` (M, N).

    Per text, the models are ranked by prediction (ties: the lower model index first); a subset routes to its
    best-ranked member, so the state is that rank (B, N) and merging is a minimum: a subset's loss does not
    depend on the order its members were merged in.
    """

    def __init__(self, predicted: np.ndarray, weighted: np.ndarray):
        predicted = np.asarray(predicted, dtype=np.float64)
        self.order = np.argsort(predicted, axis=0, kind="stable")  # (M, N): models by rank, per text
        rank = np.empty_like(self.order, dtype=np.int32)
        np.put_along_axis(rank, self.order, np.arange(len(predicted), dtype=np.int32)[:, None], axis=0)
        self.paid_by_rank = np.take_along_axis(np.asarray(weighted, dtype=np.float64), self.order, axis=0)
        self._singles = (rank,)
        self._columns = np.arange(predicted.shape[1])

    def singles(self) -> State:
        return self._singles

    def merge(self, a: State, b: State) -> State:
        return (np.minimum(a[0], b[0]),)

    def chosen(self, state: State) -> np.ndarray:
        """(B, N) index of the member each text is routed to."""
        return self.order[state[0], self._columns]

    def active_params(self, state: State, total_params: np.ndarray, params: np.ndarray) -> np.ndarray:
        return np.asarray(params, dtype=np.float64)[self.chosen(state)].mean(axis=1)  # one member per text

    def per_text(self, state: State) -> np.ndarray:
        return self.paid_by_rank[state[0], self._columns]

    def loss(self, state: State) -> np.ndarray:
        return self.per_text(state).sum(axis=-1)


class MixtureCombiner(Combiner):
    """The uniform whole-text mixture: `nll` (M, N) in nats, `scale` (N,) turns a text's nats into its weighted
    loss in the run's unit (unit factor times text weight)."""

    def __init__(self, nll: np.ndarray, scale: np.ndarray):
        nll = np.asarray(nll, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self._singles = (-nll, np.ones_like(nll), np.ones((len(nll), 1)))

    def singles(self) -> State:
        return self._singles

    def merge(self, a: State, b: State) -> State:
        top = np.maximum(a[0], b[0])  # running max of log-probabilities
        return top, a[1] * np.exp(a[0] - top) + b[1] * np.exp(b[0] - top), a[2] + b[2]

    def mixture_nll(self, state: State) -> np.ndarray:
        """(B, N) NLL of the mixture in nats."""
        return -(state[0] + np.log(state[1]) - np.log(state[2]))

    def evaluate(self, members: np.ndarray, params: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """As Combiner.evaluate, in one product: with each text's probabilities scaled by the pool's most likely
        model (p_i(x) = exp(NLL_min(x) - NLL_i(x)) <= 1), a subset's mixture NLL is NLL_min(x) - log(mean over
        members of p_i(x)). Where that mean underflows (every member over ~700 nats worse than the pool's best),
        those subsets go through the log-sum-exp fold."""
        members = np.asarray(members, dtype=bool)
        log_p = self._singles[0]  # (M, N) -NLL
        top = log_p.max(axis=0)
        mean = members.astype(np.float64) @ np.exp(log_p - top) / members.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            loss = (-(top + np.log(mean)) * self.scale).sum(axis=1)
        underflow = np.flatnonzero((mean < 1e-280).any(axis=1))
        if len(underflow):
            loss[underflow] = super().evaluate(members[underflow])[0]
        active = None if params is None else members @ np.asarray(params, dtype=np.float64)
        return loss, active

    def per_text(self, state: State) -> np.ndarray:
        return self.mixture_nll(state) * self.scale

    def loss(self, state: State) -> np.ndarray:
        return self.per_text(state).sum(axis=-1)


class PrefixRouterCombiner(Combiner):
    """Every member reads a text's prefix, predicted by their uniform mixture; the rest of the text goes to the
    member whose prefix NLL was lowest (the mixture's posterior favourite). `prefix_nll`, `rest_nll` (M, N) in
    nats; `scale` (N,) as for MixtureCombiner. The state is the prefix mixture's, then the rest's router's."""

    def __init__(self, prefix_nll: np.ndarray, rest_nll: np.ndarray, scale: np.ndarray):
        self.prefix = MixtureCombiner(prefix_nll, scale)
        self.rest = RouterCombiner(prefix_nll, np.asarray(rest_nll, dtype=np.float64) * scale)

    def singles(self) -> State:
        return self.prefix.singles() + self.rest.singles()

    def merge(self, a: State, b: State) -> State:
        return self.prefix.merge(a[:3], b[:3]) + self.rest.merge(a[3:], b[3:])

    def chosen(self, state: State) -> np.ndarray:
        """(B, N) the member each text's rest is routed to."""
        return self.rest.chosen(state[3:])

    def per_text(self, state: State) -> np.ndarray:
        return self.prefix.per_text(state[:3]) + self.rest.per_text(state[3:])

    def loss(self, state: State) -> np.ndarray:
        return self.per_text(state).sum(axis=-1)


class SwitchingMixtureCombiner(Combiner):
    """Fixed share (Herbster and Warmuth) over a subset's members, updated at segment boundaries.

    Per text, weights start uniform over the |S| members; each segment is predicted by the weighted mixture
    of the members' probabilities exp(-NLL), the weights become the posterior, then a share `rate` of them is
    spread uniformly: w <- (1 - rate) w + rate / |S|. At rate 0 this is the whole-text mixture. It does not
    fold members one at a time, so the state is the membership itself (B, M) and `loss` runs the recursion.

    `segment_nll` (M, G) holds the segments of every text in order, `segment_text` (G,) their text's index,
    `scale` (N,) per text as for MixtureCombiner.
    """

    def __init__(self, segment_nll: np.ndarray, segment_text: np.ndarray, scale: np.ndarray, rate: float):
        segment_nll, segment_text = np.asarray(segment_nll, dtype=np.float64), np.asarray(segment_text)
        self.scale, self.rate = np.asarray(scale, dtype=np.float64), float(rate)
        m, n = len(segment_nll), len(self.scale)
        first = np.searchsorted(segment_text, np.arange(n))  # segments are grouped by text, in order
        position = np.arange(len(segment_text)) - first[segment_text]
        self.valid = np.zeros((n, position.max() + 1), dtype=bool)  # (N, S_max): which padded slots are segments
        self.valid[segment_text, position] = True
        self.log_prob = np.zeros((n, position.max() + 1, m))  # (N, S_max, M): -NLL of each segment
        self.log_prob[segment_text, position] = -segment_nll.T
        self._singles = (np.eye(m, dtype=bool),)

    def singles(self) -> State:
        return self._singles

    def merge(self, a: State, b: State) -> State:
        return (a[0] | b[0],)

    def state_bytes(self) -> int:
        return self.log_prob.size * 8 // max(1, self.log_prob.shape[1])  # the recursion's working set per subset

    def per_text(self, state: State) -> np.ndarray:
        members = state[0]
        size = members.sum(axis=1)[:, None, None]  # (B, 1, 1)
        member = members[:, None, :]  # (B, 1, M)
        log_w = np.where(member, -np.log(size), -np.inf)  # (B, N, M) after broadcasting below
        log_w = np.broadcast_to(log_w, (len(members), len(self.scale), members.shape[1])).copy()
        nll = np.zeros(log_w.shape[:2])
        with np.errstate(divide="ignore"):
            keep, share = np.log1p(-self.rate), np.log(self.rate / size)
        for s in range(self.valid.shape[1]):
            joint = log_w + self.log_prob[None, :, s, :]
            top = joint.max(axis=-1, keepdims=True)
            mix = top[..., 0] + np.log(np.exp(joint - top).sum(axis=-1))  # log of the mixture's segment probability
            valid = self.valid[:, s]
            nll -= np.where(valid, mix, 0.0)
            posterior = joint - mix[..., None]
            shared = np.where(member, np.logaddexp(keep + posterior, share), -np.inf)
            log_w = np.where(valid[None, :, None], shared, log_w)
        return nll * self.scale

    def loss(self, state: State) -> np.ndarray:
        return self.per_text(state).sum(axis=-1)
