"""The greedy channel search of `autocompress` (NetAdapt-style steps, and the uniform baseline's
bisection); `sparsity.SparsitySearch` extends it with per-kernel proposals. The method is
described in `search`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tf_keras

from nlighten_tf import interrupts
from nlighten_tf.optimize import training
from nlighten_tf.optimize.channel_groups import restore, zero_inputs
from nlighten_tf.optimize.channel_prune import kept_indices, prune_to_counts, rounded_count


class ChannelSearch:
    def __init__(self, config, cgraph, groups, floors, estimator, scores, work, score, log, bn_data):
        self.config, self.cgraph, self.groups, self.floors = config, cgraph, groups, floors
        self.estimator, self.scores, self.work, self.score, self.log = estimator, scores, work, score, log
        self.sizes = cgraph.sizes()
        self.bn_data = bn_data

    def _score(self, counts: Mapping[str, int]) -> tuple[float, float]:
        """Validation (loss, accuracy) of `counts`, emulated in `work` with its BatchNorm moving
        statistics re-estimated first: without that, the stale statistics after a cut ranked
        proposals by the damage they do before any fine-tune (EagleEye, Li et al. 2020)."""
        saved = self._emulate(counts)
        if self.bn_data is not None:
            training.recalibrate_batch_norm(self.work, self.bn_data, 1)  # one batch: this runs per proposal
        result = self.score()
        restore(self.work, saved)
        return result

    def _emulate(self, counts: Mapping[str, int]) -> dict[str, list]:
        removed = {g: np.setdiff1d(np.arange(self.sizes[g]), kept_indices(self.scores[g], k))
                   for g, k in counts.items() if k < self.sizes[g]}  # fmt: skip
        return zero_inputs(self.work, self.cgraph, removed)

    def estimate(self, counts: Mapping[str, int]) -> float:
        """The estimated cost of the search's state with `counts` (channels only here)."""
        return self.estimator(counts)

    def reach(self) -> tuple[float, str]:
        """The lowest estimate the search can reach, and how."""
        return self.estimate(self.floors), f"every group at min_keep={self.config.min_keep:g}"

    def extra_proposals(self, counts: Mapping[str, int], now: float, aim: float, current_loss: float) -> list[tuple]:
        """Proposals of other kinds than channels, as (loss per cost, name, value, cost, loss, accuracy)."""
        return []

    def accept(self, counts: dict[str, int], name: str, value: Any) -> dict[str, Any]:
        """Applies the chosen proposal; returns what changed, for the history."""
        entry = {"group": name, "from": counts[name], "to": value}
        counts[name] = value
        return entry

    def build(self, model: tf_keras.Model, counts: Mapping[str, int]) -> tf_keras.Model:
        """The model the search's state describes, built from `model`."""
        return prune_to_counts(model, {g: k for g, k in counts.items() if k < self.sizes[g]}, self.scores, self.cgraph)

    def sparsities(self) -> dict[str, float]:
        return {}

    def sparsity_report(self, model: tf_keras.Model, counts: Mapping[str, int]) -> dict[str, Any] | None:
        return None

    def _thinner(self, counts: Mapping[str, int], group: str, aim: float) -> int:
        """The group's count after one proposal: `step` of its original width fewer (at least one
        channel multiple), not below its floor, and no further than the aim needs."""
        multiple = self.config.channel_multiple
        cut = max(multiple, int(round(self.config.step * self.sizes[group] / multiple)) * multiple)
        kept = max(self.floors[group], counts[group] - cut)
        while kept + multiple < counts[group] and self.estimate({**counts, group: kept + multiple}) <= aim:
            kept += multiple  # the last step: stop at the budget, not past it
        return kept

    def run(self, counts: dict[str, int], aim: float, history: list[dict[str, Any]]) -> dict[str, int]:
        """Greedy steps until the estimate is <= aim: each thins the group whose proposal costs
        the least validation loss per unit of estimated cost saved."""
        counts = dict(counts)
        while (now := self.estimate(counts)) > aim + 1e-9:
            current_loss = self._score(counts)[0]
            proposals = []
            for group in self.groups:
                interrupts.raise_if_requested()
                kept = self._thinner(counts, group, aim)
                if kept >= counts[group]:
                    continue  # at its floor
                proposal = {**counts, group: kept}
                cost = self.estimate(proposal)
                if cost >= now:
                    continue  # thinning this group saves nothing measurable
                loss, accuracy = self._score(proposal)
                proposals.append(((loss - current_loss) / (now - cost), group, kept, cost, loss, accuracy))
            proposals += self.extra_proposals(counts, now, aim, current_loss)
            if not proposals:
                raise ValueError(f"the search is stuck at an estimated {now:.1%} of the original: every group is at "
                                 f"min_keep={self.config.min_keep:g} or saves nothing")  # fmt: skip
            _, name, value, cost, loss, accuracy = min(proposals)
            change = self.accept(counts, name, value)
            history.append({"step": len(history) + 1, **change, "estimated_ratio": cost, "val_loss": loss,
                            "val_accuracy": accuracy})  # fmt: skip
            if len(history) % self.config.log_every == 0 or cost <= aim:
                what = "channels" if "group" in change else "zeros"
                self.log(f"  step {len(history)}: {change.get('group') or change['layer']} {change['from']:g} -> {value:g} "
                         f"{what}; estimated "
                         f"{cost:.1%}, validation loss {loss:.4f}, accuracy {100 * accuracy:.2f}% "
                         f"({len(proposals)} proposals)")  # fmt: skip
        return counts

    def uniform(self, aim: float) -> dict[str, int]:
        """One keep ratio for every group: the largest whose estimate is <= aim (bisection)."""
        def counts_at(ratio: float) -> dict[str, int]:
            return {g: max(self.floors[g], rounded_count(ratio, self.sizes[g], self.config.channel_multiple))
                    for g in self.groups}  # fmt: skip

        low, high = self.config.min_keep, 1.0  # estimate(low) <= aim
        for _ in range(30):
            middle = (low + high) / 2
            if self.estimator(counts_at(middle)) <= aim:
                low = middle
            else:
                high = middle
        counts = counts_at(low)
        self.log(f"  uniform keep ratio {low:.3f}: estimated {self.estimate(counts):.1%}")
        return counts
