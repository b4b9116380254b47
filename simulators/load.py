"""Load mode: many simulated lines published from several processes at a target rate.

``run_load`` splits the lines over ``processes`` worker processes. Each runs
``publisher.simulate`` for its share with one reading per message and a plant
clock fast enough that all of them together send ``target_msgs_per_s`` messages a
second (every meter reads every ``rate_s`` of plant time, so a line of ``m`` meters
sends ``m * speed / rate_s`` messages a wall second). Each worker starts its plant
clock ``duration_s * speed`` in the past so its readings end near now. The result
says what was asked and what was achieved, per worker and in all: a publisher that
cannot keep up shows as an achieved rate below the target, never as a silent cap.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Sequence
from dataclasses import dataclass

from wattline.simulators.publisher import simulate
from wattline.simulators.scenario import load_scenario

__all__ = ["LoadResult", "line_names", "run_load"]


@dataclass(frozen=True)
class LoadResult:
    target_msgs_per_s: float
    processes: int
    lines: int
    messages: int
    readings: int
    wall_s: float  # the slowest worker's
    per_process_msgs_per_s: tuple[float, ...]

    @property
    def achieved_msgs_per_s(self) -> float:
        return self.messages / self.wall_s if self.wall_s > 0 else 0.0

    def __str__(self) -> str:
        share = self.achieved_msgs_per_s / self.target_msgs_per_s
        return (f"load: {self.lines} lines from {self.processes} process(es): "
                f"{self.messages:,} messages ({self.readings:,} readings) in "
                f"{self.wall_s:.1f} s = {self.achieved_msgs_per_s:,.0f} msg/s against a "
                f"target of {self.target_msgs_per_s:,.0f} ({share:.0%}); per process "
                + ", ".join(f"{r:,.0f}" for r in self.per_process_msgs_per_s))


def line_names(models: Sequence[str], count: int) -> list[str]:
    """``count`` lines cycling through ``models``: eaf-1, kiln-1, eaf-2, kiln-2, ..."""
    return [f"{models[i % len(models)]}-{i // len(models) + 1}" for i in range(count)]


def _meters(line: str) -> int:
    return len(load_scenario(line.rsplit("-", 1)[0]).meters)


def _worker(args: tuple) -> tuple[int, int, float]:  # type: ignore[type-arg]
    mqtt_url, lines, site, rate_s, duration_s, speed, seed, prefix = args
    summary = simulate(mqtt_url, lines, site=site, rate_s=rate_s, duration_s=duration_s,
                       speed=speed, seed=seed, topic_prefix=prefix, max_batch_span_s=0.0)
    return summary.messages, summary.readings, summary.wall_s


def run_load(mqtt_url: str, lines: Sequence[str], *, target_msgs_per_s: float,
             processes: int = 2, duration_s: float = 10.0, site: str = "load",
             rate_s: float = 10.0, seed: int = 0, topic_prefix: str = "factory") -> LoadResult:
    """Publish ``lines`` from ``processes`` processes at ``target_msgs_per_s`` in all."""
    if target_msgs_per_s <= 0 or processes < 1 or duration_s <= 0:
        raise ValueError("target rate, processes and duration must be positive")
    if len(lines) < processes:
        raise ValueError(f"{len(lines)} line(s) cannot be shared by {processes} processes")
    shares = [list(lines[i::processes]) for i in range(processes)]
    meters = sum(_meters(line) for line in lines)
    speed = target_msgs_per_s * rate_s / meters  # the same plant clock in every worker
    jobs = [(mqtt_url, share, site, rate_s, duration_s, speed, seed, topic_prefix)
            for share in shares]
    with mp.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_worker, jobs)
    wall = max(r[2] for r in results)
    return LoadResult(
        target_msgs_per_s=target_msgs_per_s, processes=processes, lines=len(lines),
        messages=sum(r[0] for r in results), readings=sum(r[1] for r in results),
        wall_s=wall, per_process_msgs_per_s=tuple(r[0] / r[2] if r[2] else 0.0
                                                  for r in results),
    )
