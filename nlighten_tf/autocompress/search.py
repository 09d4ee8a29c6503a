"""Auto-compression to a budget: find per-group channel counts that fit a file size, a device
latency, a MAdds or an Edge TPU on-chip-memory budget (`budgets`) at the best validation loss.

Method: NetAdapt (Yang et al. 2018), adapted to one trained model and a CPU:

1. Cost is *measured*, never assumed: MAdds are read off the graph (exact); file bytes and
   on-chip parameter bytes come from real exports of the target file; latency from a lookup
   table measured on the device: the original file and one file per channel group with that
   group alone halved, timed interleaved in one run (`bench.latency` on the host, the emulated
   board for ``rpi-aarch64``). Per-group savings are assumed linear in the channels removed and
   additive; file bytes are linear in the parameters, fitted on the original and one uniformly
   halved file. These estimates only steer the search.
2. Greedy steps from the original cost to the budget: each step proposes, for every group,
   removing a small fraction (`step`) of its channels, scores each proposal on validation
   batches (pruning emulated exactly by zeroing the channels' inputs at their consumers,
   `channel_groups.zero_inputs`), and keeps the one losing the least validation loss per unit
   of estimated cost saved. (NetAdapt's own steps cut one group until each step's cost target
   is reached and fine-tune in between; without that fine-tune, the large single-group cuts
   wrecked a small network in our runs, so steps are small and ranked by loss per cost.)
3. The chosen model is built (surgery), exported and measured. If the measurement misses the
   budget the estimator was optimistic: the estimate's target is scaled by measured/estimated
   and the steps continue (at most `max_corrections` times). The ratio of measured to estimated
   cost is reported: it is the check of the lookup table against whole-model measurements.
4. A final fine-tune (distilled from the original by default) recovers accuracy; channel
   counts do not change, so the final file is measured again and that figure is reported.

`method="uniform"` keeps one ratio for every group (the baseline), found by bisection on the
same estimate, with the same measurement and correction loop and the same fine-tune.

A `size_kb` budget on an int8 sparse target adds unstructured sparsity per kernel to the
search (`sparsity`: proposals to the next sparsity level whose stored bytes are smaller,
costed by a byte model of the converter's sparse storage) and `method="uniform_sparsity"`,
one sparsity for every prunable kernel with channels whole, the second baseline.

Choices are made on validation data the caller carves from its training data; the test
split is for the caller to report once at the end. Precision per op (int4 weights inside an
int8 file, size budgets, precision=search): `precision`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras

from nlighten_tf import interrupts
from nlighten_tf.autocompress import budgets, precision
from nlighten_tf.autocompress.greedy import ChannelSearch
from nlighten_tf.autocompress.measure import (  # noqa: F401  (re-exported: callers measure with the search's meter)
    DENSE_TARGETS,
    SPARSE_TARGETS,
    CostMeter,
    Measurement,
    representative,
)
from nlighten_tf.export import litert_backend
from nlighten_tf.keras_utils import copy_model
from nlighten_tf.models.complexity import count_madds, count_params
from nlighten_tf.optimize import training
from nlighten_tf.optimize.channel_groups import ChannelGraph, analyze
from nlighten_tf.optimize.channel_prune import (
    batch_scorer,
    channel_scores,
    check_keep,
    prune_to_counts,
    rounded_count,
)
from nlighten_tf.optimize.distill import DistillConfig
from nlighten_tf.optimize.fields import documented

METHODS = ("netadapt", "uniform", "uniform_sparsity")
DEVICES = ("host", *budgets.EMULATED_DEVICES)
CRITERIA = ("l1", "l2", "bn_gamma")  # data-free: scored once on the original model


@dataclasses.dataclass(frozen=True)
class AutocompressConfig:
    """budget: `KIND:VALUE` (`budgets`); device: where latency is measured; target: the export
    target whose file is measured and written (`edgetpu_sram_mib` always measures the edgetpu
    file). step: the fraction of a group's channels one proposal removes; score_batches:
    validation batches each proposal is scored on. The final fine-tune is the caller's
    TrainConfig (None: no fine-tune)."""

    budget: str = documented("madds:0.5x", "KIND:VALUE: size_kb, latency_ms, madds or edgetpu_sram_mib; a fraction "
                             "of the original like 0.5x for any kind (docs/optimize.md, \"Auto-compression\")")
    device: str = documented("host", "where latency is measured (the emulated board takes relative budgets only)",
                             choices=DEVICES)
    target: str = documented("int8", "the export target whose file is measured and written; the int8 sparse ones "
                             "(size_kb budgets only) add per-kernel sparsity to the search",
                             choices=(*DENSE_TARGETS, *SPARSE_TARGETS))
    method: str = documented("netadapt", "netadapt: per-group search (and per-kernel sparsity on a sparse target); "
                             "uniform: one keep ratio for every group; uniform_sparsity: one sparsity for every "
                             "prunable kernel (sparse targets)", choices=METHODS)
    criterion: str = documented("l1", "which channels of a group go first", choices=CRITERIA)
    channel_multiple: int = documented(8, "kept channel counts are multiples of this")
    min_keep: float = documented(0.2, "lowest keep ratio of any group")
    step: float = documented(0.1, "channels one proposal removes, as a fraction of the group's original width "
                             "(at least channel_multiple)")
    score_batches: int = documented(4, "validation batches each proposal is scored on")
    distill: bool = documented(True, "the final fine-tune learns from the original model (knowledge distillation)")
    tolerance: float = documented(0.03, "the budget counts as met up to this fraction above it")
    latency_runs: int = documented(40, "interleaved timed invokes per file (host; the emulated board runs 5)")
    threads: int = documented(1, "interpreter threads for latency")
    calibration_samples: int = documented(64, "examples calibrating each full-integer export")
    bn_recalibration_batches: int = documented(4, "re-estimate BatchNorm statistics on this many training batches "
                                               "after the search and after the fine-tune (0: off)")
    freeze_batch_norm: bool = documented(False, "BatchNorm stays in inference mode during the final fine-tune: for "
                                         "fine-tuning images unlike the model's own data (an ImageNet network "
                                         "tuned on a few hundred photos); then set bn_recalibration_batches: 0 too")
    recalibrate_proposals: bool = documented(True, "re-estimate BatchNorm statistics (one training batch) before "
                                             "scoring each proposal: slower, ranks proposals by what fine-tuning "
                                             "can keep")
    quantizer: str = documented("auto", "who writes the measured files: the TF converter, LiteRT Quantizer (litert) "
                                "or auto (the converter where it can)", choices=litert_backend.QUANTIZERS)
    precision: str = documented("fixed", "fixed: every op at the target's precision; search (size_kb, quantizer litert, "
                                "int8 targets): int4 weights per op where they buy the budget", choices=precision.PRECISIONS)
    precision_share: float = documented(0.5, "precision=search: the share (log scale) of the most int4 weights can save "
                                        "that they are to buy; the channel search aims at the rest")
    precision_examples: int = documented(256, "precision=search: validation images each op's int4 noise is scored on")
    max_corrections: int = 4
    log_every: int = 5  # progress line every this many steps

    def __post_init__(self):
        parsed = self.parsed_budget  # BudgetError now, not after the search
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; valid: {', '.join(DEVICES)}")
        if self.device != "host" and parsed.kind != "latency_ms":
            raise ValueError(f"device {self.device!r} only matters to latency_ms budgets, not {parsed.kind}")
        if self.target in SPARSE_TARGETS and parsed.kind != "size_kb":
            raise ValueError(f"target {self.target!r} stores pruned kernels sparse, which only a size_kb budget measures, "
                             f"not {parsed.kind}: use a dense target ({', '.join(DENSE_TARGETS[:4])}, ...)")  # fmt: skip
        if self.target not in DENSE_TARGETS + SPARSE_TARGETS:
            raise ValueError(f"target {self.target!r}: autocompress measures dense files or int8 sparse ones; valid: "
                             f"{', '.join(DENSE_TARGETS + SPARSE_TARGETS)}")  # fmt: skip
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.method == "uniform_sparsity" and self.target not in SPARSE_TARGETS:
            raise ValueError(f"method 'uniform_sparsity' needs a sparse target ({', '.join(SPARSE_TARGETS)}) and a "
                             f"size_kb budget, not target {self.target!r}")  # fmt: skip
        if self.criterion not in CRITERIA:
            raise ValueError(f"unknown criterion {self.criterion!r}; valid: {', '.join(CRITERIA)}")
        check_keep("min_keep", self.min_keep)
        if not 0.0 < self.step < 1.0:
            raise ValueError(f"step must be a fraction in (0, 1), got {self.step}")
        for name in ("channel_multiple", "log_every", "score_batches", "latency_runs", "threads", "calibration_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bn_recalibration_batches < 0:
            raise ValueError(f"bn_recalibration_batches must be >= 0, got {self.bn_recalibration_batches}")
        if not 0.0 <= self.tolerance < 0.5:
            raise ValueError(f"tolerance must be in [0, 0.5), got {self.tolerance}")
        if self.precision_examples < 1:
            raise ValueError(f"precision_examples must be >= 1, got {self.precision_examples}")
        precision.check(self)

    @property
    def parsed_budget(self) -> budgets.Budget:
        return budgets.parse_budget(self.budget, self.device)

    @property
    def measured_target(self) -> str:
        return "edgetpu" if self.parsed_budget.kind == "edgetpu_sram_mib" else self.target


# --- Cost estimates ------------------------------------------------------------------------


class Estimator:
    """Estimated cost of channel counts as a fraction of the original's: exact MAdds; bytes
    linear in the parameters; latency from the per-group lookup table."""

    def __init__(self, kind: str, cgraph: ChannelGraph):
        self.kind, self.cgraph = kind, cgraph
        self.full = cgraph.cost()
        self.savings: dict[str, float] = {}  # latency: fraction saved per fraction of a group removed
        self.bytes_per_param = 1.0  # size / sram: fraction of the file per fraction of the parameters
        self.table: list[dict[str, Any]] = []

    def __call__(self, counts: Mapping[str, int]) -> float:
        madds, params = self.cgraph.cost(counts)
        if self.kind == "madds":
            return madds / self.full[0]
        if self.kind in ("size_kb", "edgetpu_sram_mib"):
            return 1.0 - self.bytes_per_param * (1.0 - params / self.full[1])
        sizes = self.cgraph.sizes()
        return 1.0 - sum(s * (1.0 - counts.get(g, sizes[g]) / sizes[g]) for g, s in self.savings.items())

    def calibrate(self, model: tf_keras.Model, meter: CostMeter, groups: Sequence[str], multiple: int,
                  log: Callable[[str], None]) -> None:  # fmt: skip
        """Measures what the estimate needs: nothing for MAdds; one uniformly halved file for
        bytes; the lookup table (each group alone halved) for latency."""
        if self.kind == "madds":
            return
        sizes = self.cgraph.sizes()
        scores = channel_scores(model, "l1", cgraph=self.cgraph)
        halved = {g: rounded_count(0.5, sizes[g], multiple) for g in groups}
        if self.kind in ("size_kb", "edgetpu_sram_mib"):
            half = prune_to_counts(model, halved, scores, self.cgraph)
            measured = meter.measure([half])[0]
            params = self.cgraph.cost(halved)[1] / self.full[1]
            self.bytes_per_param = (1.0 - measured.ratio) / max(1.0 - params, 1e-9)
            self.table.append({"counts": "all groups halved", "params_ratio": params, "measured_ratio": measured.ratio})
            log(f"  bytes: halving every group keeps {params:.1%} of the parameters and {measured.ratio:.1%} of the file")
            return
        log(f"  latency lookup table: {len(groups)} files (one group halved each) timed on {meter.config.device}")
        files = []
        for index, group in enumerate(groups):
            interrupts.raise_if_requested()
            files.append(meter._file(prune_to_counts(model, {group: halved[group]}, scores, self.cgraph)))
            if (index + 1) % 5 == 0:
                log(f"    exported {index + 1}/{len(groups)}")
        files.append(meter._file(prune_to_counts(model, halved, scores, self.cgraph)))
        *measured, whole = meter.measure([], files)
        for group, m in zip(groups, measured, strict=True):
            removed = 1.0 - halved[group] / sizes[group]
            # Timing noise can make a tiny group look slower when thinner: it then saves nothing.
            self.savings[group] = max(1.0 - m.ratio, 0.0) / removed if removed > 0 else 0.0
            self.table.append({"group": group, "size": sizes[group], "kept": halved[group], "measured_ratio": m.ratio,
                               "saving_per_removed": self.savings[group]})  # fmt: skip
        # The check against a whole model: every group halved at once. Per-op overheads do not
        # shrink with channels, so summed single-group savings overstate the saving; scale them
        # to what the whole model measured.
        predicted = self(halved)
        scale = max(1.0 - whole.ratio, 0.0) / max(1.0 - predicted, 1e-9)
        self.savings = {g: v * scale for g, v in self.savings.items()}
        self.table.append({"group": "all groups halved", "measured_ratio": whole.ratio, "lookup_table_ratio": predicted,
                           "scale": scale})  # fmt: skip
        log(f"  whole-model check: every group halved measures {whole.ratio:.1%}, the table predicted {predicted:.1%}; "
            f"savings scaled by {scale:.2f}")  # fmt: skip
        for path in files:
            path.unlink(missing_ok=True)


# --- The search ----------------------------------------------------------------------------


@dataclasses.dataclass
class AutocompressResult:
    model: tf_keras.Model
    flatbuffer: bytes  # the final target file
    report: dict[str, Any]


def autocompress(
    model: tf_keras.Model,
    config: AutocompressConfig,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    train_config: training.TrainConfig | None = None,
    workdir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
    callbacks: Sequence[tf_keras.callbacks.Callback] = (),
) -> AutocompressResult:
    """Compresses `model` to `config.budget`; choices on `validation`, fine-tune and export
    calibration on `train`. The input model is not modified. `workdir` holds the measured
    files (a temporary directory by default)."""
    log = log or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="nlighten_autocompress_") as scratch:
        return _autocompress(model, config, train, validation, train_config, Path(workdir or scratch), log, callbacks)


def _autocompress(model, config, train, validation, train_config, workdir, log, callbacks) -> AutocompressResult:
    start = time.time()
    budget = config.parsed_budget
    cgraph = analyze(model)
    sizes = cgraph.sizes()
    groups = list(cgraph.prunable)
    if not groups:
        raise ValueError(f"model {model.name!r} has no prunable channel group: nothing to search")
    meter = CostMeter(config, train, workdir / "measured")
    original = meter.start(model)
    target = budget.value if budget.relative else budget.value / original.value
    unit = budget.kind.split("_")[-1] if budget.kind != "madds" else "MAdds"
    log(f"autocompress to {budget} ({config.method}): original {original.value:,.4g} {unit}, target "
        f"{target:.1%} of it" + (f" on {config.device}" if budget.kind == "latency_ms" else ""))  # fmt: skip
    if target >= 1.0:
        log("  the original already fits the budget")
    floors = {g: rounded_count(config.min_keep, sizes[g], config.channel_multiple) for g in groups}
    estimator = Estimator(budget.kind, cgraph)
    estimator.calibrate(model, meter, groups, config.channel_multiple, log)
    channel_target, precision_pass, extra = target, None, {}
    if config.precision == "search":  # int4 weights are to buy part of the reduction: channels aim higher
        precision_pass = precision.PrecisionPass(config.target, meter.calibration, validation, config.precision_examples, log)
        all_int4 = precision_pass.all_int4_ratio(model)
        channel_target = precision.channel_target(target, all_int4, config.precision_share)
        extra = {"all_int4_ratio": all_int4, "precision_share": config.precision_share, "channel_target": channel_target}
        log(f"  precision: every eligible op at int4 weights gives {all_int4:.1%} of the int8 file; the channel search "
            f"aims at {channel_target:.1%}")  # fmt: skip
    searcher = ChannelSearch
    if config.target in SPARSE_TARGETS:  # a size budget (checked by the config): per-kernel sparsity too
        from nlighten_tf.autocompress import sparsity

        searcher = functools.partial(sparsity.SparsitySearch, byte_model=sparsity.byte_model(model, cgraph, meter, log))
    scores = channel_scores(model, config.criterion, cgraph=cgraph)
    work = copy_model(model)
    score = batch_scorer(work, validation, config.score_batches)
    base_loss, base_accuracy = score()
    bn_data = None
    if config.recalibrate_proposals:  # read once: every proposal re-estimates from one batch
        bn_data = train.take(1).cache()
        for _ in bn_data:
            pass
    search = searcher(config, cgraph, groups, floors, estimator, scores, work, score, log, bn_data)
    lowest, how = search.reach()
    if lowest > channel_target:
        raise ValueError(
            f"budget {budget} is unreachable by {'sparsity' if config.method == 'uniform_sparsity' else 'channel pruning'}"
            f": {how} is still estimated at {lowest:.1%} of the original (lower min_keep or raise the budget"
            + (f"; the channel search aims at {channel_target:.1%}, raise precision_share" if precision_pass else "") + ")"
        )
    counts = {g: sizes[g] for g in groups}
    aim, rounds, history = channel_target, [], []
    candidate = model
    for correction in range(config.max_corrections + 1):
        counts = search.run(counts, aim, history) if config.method == "netadapt" else search.uniform(aim)
        candidate = search.build(model, counts)
        measured = meter.measure([candidate])[0]
        estimate = search.estimate(counts)
        rounds.append({"aim": aim, "estimated_ratio": estimate, "measured_ratio": measured.ratio,
                       "measured": measured.value})  # fmt: skip
        log(f"  built and measured: {measured.ratio:.1%} of the original ({measured.value:,.4g} {unit}); estimated "
            f"{estimate:.1%}")  # fmt: skip
        if measured.ratio <= channel_target or correction == config.max_corrections:
            break
        # The estimate was optimistic here: aim lower by the observed ratio and continue.
        aim = aim * channel_target / measured.ratio
        log(f"  over the budget: aiming the estimate at {aim:.1%} (correction {correction + 1}/{config.max_corrections})")
    search_seconds = time.time() - start
    if config.bn_recalibration_batches:
        training.recalibrate_batch_norm(candidate, train, config.bn_recalibration_batches)
    searched_loss, searched_accuracy = _loss_accuracy(candidate, validation, config.score_batches)
    tuned = candidate
    base = train_config
    if base is not None:
        log(f"  final fine-tune: {base.epochs:g} epochs" + (", distilled from the original" if config.distill else ""))
        levels = search.sparsities()
        prepare, keeping = (None, [])
        if levels:  # each kernel held at its sparsity through the fine-tune (TFMOT), stripped after
            from nlighten_tf.autocompress import sparsity

            prepare, keeping = sparsity.keep_sparsity(levels, train, base)
        with training.frozen_batch_norm(candidate) if config.freeze_batch_norm else contextlib.nullcontext([]) as frozen:
            if config.distill:
                from nlighten_tf.optimize import distill

                tuned = distill.distill(candidate, model, train, DistillConfig(), base,
                                        callbacks=[*keeping, *callbacks], prepare=prepare).model  # fmt: skip
            else:
                tuned, _ = training.fit(candidate, train, base, callbacks=[*keeping, *callbacks], prepare=prepare)
        if levels:
            tuned = sparsity.strip(tuned, levels)
        training.thaw_layers(tuned, frozen)  # copies of the frozen layers (a TFMOT wrapper's clone)
        if config.bn_recalibration_batches:  # a short fine-tune leaves the moving statistics stale
            training.recalibrate_batch_norm(tuned, train, config.bn_recalibration_batches)
    flatbuffer_path = workdir / "final.tflite"
    if precision_pass is None:
        flatbuffer = meter.export(tuned, flatbuffer_path)
    else:  # the written file is the measured one
        from nlighten_tf import io as atomic

        flatbuffer, extra["per_op_precision"] = precision_pass.close_gap(tuned, target * original.value * budgets.UNITS["size_kb"])
        atomic.write_bytes(flatbuffer_path, flatbuffer)
    final = meter.measure([tuned], [flatbuffer_path] if budget.kind != "madds" else None)[0]
    achieved = final.ratio if budget.relative else final.value
    limit = budget.value
    met = achieved <= limit * (1.0 + config.tolerance)
    validation_results = training.evaluate(tuned, validation)
    choices = {g: {"size": sizes[g], "kept": counts[g], "ratio": counts[g] / sizes[g]} for g in groups}
    report = {
        "budget": budget.as_dict(), "device": config.device if budget.kind == "latency_ms" else None,
        "target": meter.target, "method": config.method, "unit": unit,
        "original": {"value": original.value, "madds": count_madds(model), "params": count_params(model)},
        "achieved": {"value": final.value, "ratio": final.ratio, "measured_on": _measured_on(budget.kind, config),
                     "in_budget_terms": achieved},
        "met": bool(met), "tolerance": config.tolerance, "over_budget": achieved / limit - 1.0,
        "madds": count_madds(tuned), "params": count_params(tuned),
        "validation": {"before": {"loss": base_loss, "accuracy": base_accuracy},
                       "searched": {"loss": searched_loss, "accuracy": searched_accuracy},
                       "final": validation_results, "score_batches": config.score_batches},
        "choices": choices, "sparsity": search.sparsity_report(tuned, counts), "rounds": rounds, "steps": history, "estimate_table": estimator.table,
        "search_seconds": search_seconds, "seconds": time.time() - start, "fine_tune_epochs": base.epochs if base else 0.0,
        "distill": config.distill, "quantizer": config.quantizer, "precision": config.precision, **extra,
    }  # fmt: skip
    verdict = "met" if met else f"NOT met ({100 * report['over_budget']:+.1f}%)"
    log(f"  final: {final.ratio:.1%} of the original ({final.value:,.4g} {unit}), budget {verdict}; validation "
        f"accuracy {100 * validation_results['accuracy']:.2f}%")  # fmt: skip
    return AutocompressResult(tuned, flatbuffer, report)


def _measured_on(kind: str, config: AutocompressConfig) -> str:
    if kind == "madds":
        return "the final Keras graph"
    if kind == "latency_ms":
        path = "host XNNPACK" if config.device == "host" else f"emulated {config.device} (relative only)"
        return f"the final {config.target} file, {path}, {config.threads} thread(s), interleaved with the original"
    if kind == "edgetpu_sram_mib":
        return "the final edgetpu file (offline Edge TPU analysis)"
    return f"the final {config.target} file"


def _loss_accuracy(model: tf_keras.Model, data: tf.data.Dataset, batches: int) -> tuple[float, float]:
    return batch_scorer(model, data, batches)()


# --- Outputs -------------------------------------------------------------------------------


def write_outputs(result: AutocompressResult, output_dir: str | os.PathLike[str], extra: Mapping[str, Any] | None = None,
                  save_keras: bool = True) -> dict[str, str]:  # fmt: skip
    """result.json, model.h5 (unless `save_keras`), model.tflite, report.md and choices.png in
    `output_dir`, each written atomically. `extra` (e.g. test accuracy) goes into result.json."""
    from nlighten_tf import io as atomic
    from nlighten_tf.keras_io import save_model

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {**result.report, **(extra or {})}
    written = {}
    if save_keras:
        save_model(result.model, out / "model.h5", qat=False)
        written["model"] = str(out / "model.h5")
    written["tflite"] = str(atomic.write_bytes(out / "model.tflite", result.flatbuffer))
    written["plot"] = plot_choices(report, out / "choices.png")
    written["report"] = str(atomic.write_text(out / "report.md", markdown_report(report)))
    written["result"] = str(atomic.write_json(out / "result.json", report))
    return written


def markdown_report(report: Mapping[str, Any]) -> str:
    from nlighten_tf.render import markdown_table

    budget, achieved = report["budget"], report["achieved"]
    validation = report["validation"]
    lines = [
        f"# Auto-compression to {budget['text']} ({report['method']})", "",
        f"- budget **{'met' if report['met'] else 'NOT met'}**: achieved {achieved['in_budget_terms']:.4g}"
        f"{'x' if budget['relative'] else ' ' + report['unit']} against {budget['value']:g}"
        f"{'x' if budget['relative'] else ' ' + report['unit']} (tolerance {100 * report['tolerance']:.0f}%), measured "
        f"on {achieved['measured_on']}",
        f"- original {report['original']['value']:,.4g} {report['unit']}, final {achieved['value']:,.4g} "
        f"{report['unit']} ({100 * achieved['ratio']:.1f}%)",
        f"- MAdds {report['original']['madds']:,} -> {report['madds']:,}; parameters {report['original']['params']:,} "
        f"-> {report['params']:,}",
        f"- validation accuracy {100 * validation['before']['accuracy']:.2f}% (original, {validation['score_batches']} "
        f"batches) -> {100 * validation['searched']['accuracy']:.2f}% (searched, before fine-tuning) -> "
        f"{100 * validation['final']['accuracy']:.2f}% (final, whole validation split)",
    ]  # fmt: skip
    if "test_accuracy" in report:
        lines.append(f"- test accuracy {100 * report['test_accuracy']:.2f}% (reported once, after every choice)")
    lines.append(f"- search {report['search_seconds']:.0f} s, total {report['seconds']:.0f} s")
    lines += ["", "## Measured against estimated", "", markdown_table(report["rounds"]), "", "## Channels kept", ""]
    lines.append(markdown_table([{"group": g, **c} for g, c in report["choices"].items()]))
    if "per_op_precision" in report:
        lines += precision.markdown_lines(report)
    if report.get("sparsity"):
        from nlighten_tf.autocompress import sparsity

        lines += sparsity.report_lines(report)
    return "\n".join(lines) + "\n"


def plot_choices(report: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    """Keep ratio per channel group and, on a sparse target, zeros per kernel (red: stored
    sparse), in network order."""
    from nlighten_tf.render import pyplot, save_figure

    plt = pyplot()
    panels = [("choices", "ratio", "channels kept (%)", "channels kept per group")]
    if report.get("sparsity"):
        panels.append(("sparsity", "final_sparsity", "zeros in the kernel (%)", "zeros per kernel (red: stored sparse)"))
    width = max(len(report[key]) for key, *_ in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, 0.32 * width), 4.2 * len(panels)), squeeze=False)
    for ax, (key, field, label, title) in zip(axes[:, 0], panels, strict=True):
        names = list(report[key])
        colours = ["#c44e52" if report[key][n].get("stored_sparse") else "#4c72b0" for n in names]
        ax.bar(range(len(names)), [100 * report[key][n][field] for n in names], color=colours)
        ax.set_xticks(range(len(names)), names, rotation=75, fontsize=7, ha="right")
        ax.set_ylabel(label)
        ax.set_ylim(0, 105)
        ax.set_title(f"{report['method']} to {report['budget']['text']}: {title}")
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, os.fspath(path))
