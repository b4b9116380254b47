"""The batch and period kernels' cost against the windows-only kernel, in one run.

Four stages over the same stream and batches, each from fresh state (allocated before
the clock starts), as the daemon's pipeline thread calls the kernels:

- **windows only**: ``advance`` (what ``wattline bench kernels`` calls *full*);
- **+ batches**: ``advance`` logging every line's finalised readings
  (``logged_lines``), then ``close_batches`` on that log, every line a batch line;
- **+ periods**: ``advance``, then ``advance_periods`` with the daemon's default
  calendar (UTC, shifts at 00:00, 08:00 and 16:00) and settings;
- **all three**: both of the above in one pass.

The stages take turns (each round runs all four, the order rotating from round to
round), so that a slow spell of a shared machine hits all of them. A stage's figure is
its fastest round; its ratio to the windows-only stage is given both from the fastest
rounds and as the range of the per-round ratios, which shows the noise. The target is
``STAGES_TARGET``: all three together at most that many times the windows-only time.

Each stage's output is summarised (batches closed, period rows, final rows, their
energy), and the summaries of *all three* must equal those of *+ batches* and
*+ periods*: the stages compute the same things.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wattline.benchmarks.report import BenchResult, rate, sig
from wattline.ingest.calendar import Calendar
from wattline.kernels import KernelConfig, MeterTable, Readings, advance, new_state
from wattline.kernels.batches import close_batches, new_batch_state
from wattline.kernels.periods import PeriodConfig, advance_periods, new_period_state

__all__ = ["STAGES", "STAGES_TARGET", "StageRun", "StageTimes", "report_stages", "run_stage",
           "time_stages"]

STAGES = ("windows", "batches", "periods", "all")
"""The stages, by their JSON names (``stages_<name>_s``, ``<name>_over_windows``)."""
STAGE_TITLES = {"windows": "stage: windows only", "batches": "stage: + batches",
                "periods": "stage: + periods", "all": "stage: all three"}
STAGES_TARGET = 1.3
"""The target: batch and period kernels together at most this times the windows-only time."""


@dataclass(frozen=True)
class StageRun:
    """One stage over the whole stream: seconds taken and a summary of its output."""

    seconds: float
    tick_rows: int
    batches: int  # batches closed
    batch_kgce: float  # their energy, summed
    period_rows: int  # rows emitted, provisional and final
    period_finals: int
    final_kgce: float  # energy of the final rows, summed

    def batch_summary(self) -> tuple[int, float]:
        return self.batches, self.batch_kgce

    def period_summary(self) -> tuple[int, int, float]:
        return self.period_rows, self.period_finals, self.final_kgce


def run_stage(stage: str, config: KernelConfig, meters: MeterTable, stream: list[Readings],
              period_config: PeriodConfig | None = None,
              calendar: Calendar | None = None) -> StageRun:
    """One stage (``STAGES``) over every batch of ``stream`` from fresh state."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
    with_batches = stage in ("batches", "all")
    with_periods = stage in ("periods", "all")
    period_config = period_config or PeriodConfig(
        allowed_lateness_ms=config.allowed_lateness_ms)
    calendar = calendar or Calendar()
    state = new_state(config, meters.n_lines, meters.n_meters)
    logged = np.ones(meters.n_lines, dtype=np.bool_) if with_batches else None
    b_state = new_batch_state(meters.n_lines)
    p_state = new_period_state(meters.n_lines, meters.n_meters)
    tick_rows = n_batches = rows = finals = 0
    batch_kgce = final_kgce = 0.0
    started = time.perf_counter()
    for b in stream:
        ticks = advance(state, config, meters, b, logged_lines=logged)
        tick_rows += len(ticks)
        if with_batches:
            assert ticks.finalised is not None
            closed = close_batches(b_state, ticks.finalised)
            n_batches += len(closed)
            batch_kgce += float(closed.energy_kgce.sum())
        if with_periods:
            periods = advance_periods(p_state, period_config, meters, b, calendar)
            rows += len(periods)
            finals += int(periods.final.sum())
            final_kgce += float(periods.energy_kgce[periods.final].sum())
    seconds = time.perf_counter() - started
    return StageRun(seconds, tick_rows, n_batches, batch_kgce, rows, finals, final_kgce)


@dataclass(frozen=True)
class StageTimes:
    """Every round of every stage: ``runs[stage][round]``."""

    runs: dict[str, list[StageRun]]

    def best(self, stage: str) -> float:
        return min(r.seconds for r in self.runs[stage])

    def over_windows(self, stage: str) -> float:
        """The stage's fastest round over the windows-only stage's fastest."""
        return self.best(stage) / self.best("windows")

    def round_ratios(self, stage: str) -> list[float]:
        """Per round, the stage's time over the windows-only time of the same round."""
        return [s.seconds / w.seconds
                for s, w in zip(self.runs[stage], self.runs["windows"], strict=True)]

    def agree(self) -> tuple[bool, str]:
        """Whether all three computed what the single stages did (in every round)."""
        last = {stage: runs[-1] for stage, runs in self.runs.items()}
        for stage, runs in self.runs.items():
            if any(r.tick_rows != last["windows"].tick_rows for r in runs):
                return False, f"{stage}: different tick rows"
            for r in runs:
                if r.batch_summary() != last[stage].batch_summary() or (
                        r.period_summary() != last[stage].period_summary()):
                    return False, f"{stage}: rounds differ"
        if last["all"].batch_summary() != last["batches"].batch_summary():
            return False, "all three close other batches than + batches"
        if last["all"].period_summary() != last["periods"].period_summary():
            return False, "all three emit other period rows than + periods"
        return True, ""


def time_stages(config: KernelConfig, meters: MeterTable, stream: list[Readings], rounds: int,
                period_config: PeriodConfig | None = None,
                progress: Callable[[str], None] = lambda _: None) -> StageTimes:
    """``rounds`` rounds of all four stages, the order rotating by one each round."""
    if rounds < 1:
        raise ValueError("stage rounds must be at least 1")
    calendar = Calendar()
    runs: dict[str, list[StageRun]] = {s: [] for s in STAGES}
    for k in range(rounds):
        order = STAGES[k % len(STAGES):] + STAGES[:k % len(STAGES)]
        progress(f"stages, round {k + 1}/{rounds}: {', '.join(order)} ...")
        for stage in order:
            runs[stage].append(run_stage(stage, config, meters, stream, period_config,
                                         calendar))
    return StageTimes(runs)


def report_stages(result: BenchResult, times: StageTimes, readings: int, bare_s: float,
                  grace_s: float) -> None:
    """The stage rows, notes and JSON figures, added to ``result``."""
    agrees, problem = times.agree()
    for stage in STAGES:
        ratios = times.round_ratios(stage)
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        figure = rate(readings / times.best(stage))
        if stage == "windows":
            result.row(STAGE_TITLES[stage], figure, "1.00")
        else:
            result.row(STAGE_TITLES[stage], figure, f"{times.over_windows(stage):.2f}x ({spread})",
                       "yes" if agrees else "NO")
    combined = times.over_windows("all")
    met = combined <= STAGES_TARGET
    all_over_bare = bare_s / times.best("all")
    last = times.runs["all"][-1]
    rounds = len(times.runs["windows"])
    seconds = ", ".join(f"{s} {times.best(s):.3f}" for s in STAGES)
    result.notes += [
        f"stages: seconds over the stream (fastest round): {seconds}",
        f"stages: windows only = advance; + batches = advance logging every line + "
        f"close_batches; + periods = advance + advance_periods; all three = both; fastest "
        f"of {rounds} alternating rounds each, fresh state each; a stage's ratio is its "
        f"time over the windows-only stage's (the range of the per-round ratios in "
        f"brackets); every line a batch line; periods with the default calendar (UTC, "
        f"shifts 00:00/08:00/16:00), period_grace {grace_s:g} s",
        f"stages target: all three <= {STAGES_TARGET}x windows only: "
        f"{combined:.2f}x, {'met' if met else 'NOT met'}",
        f"stages output: {last.batches:,} batches closed, {last.period_rows:,} period rows "
        f"({last.period_finals:,} final); all three agree with the single stages: "
        f"{'yes' if agrees else 'NO (' + problem + ')'}",
        f"all three / bare floor = {all_over_bare:.2f} (target: >= 0.6 with the batch "
        f"and period kernels on)",
    ]
    if not agrees:
        result.notes.append(f"WARNING: the stages disagree ({problem}); do not trust them")
    figures = result.figures
    for stage in STAGES:
        figures[f"stages_{stage}_s"] = sig(times.best(stage))
        figures[f"stages_{stage}_rounds_s"] = [sig(r.seconds) for r in times.runs[stage]]
        figures[f"stages_{stage}_readings_per_s"] = round(readings / times.best(stage), 1)
        if stage != "windows":
            figures[f"{stage}_over_windows"] = sig(times.over_windows(stage))
            figures[f"{stage}_over_windows_rounds"] = [sig(x)
                                                       for x in times.round_ratios(stage)]
    figures.update({
        "stages_rounds": rounds,
        "stages_target": STAGES_TARGET,
        "stages_target_met": met,
        "stages_agree": agrees,
        "stages_batches_closed": last.batches,
        "stages_period_rows": last.period_rows,
        "stages_period_finals": last.period_finals,
        "stages_period_grace_s": grace_s,
        "all_over_bare": sig(all_over_bare),
    })
