"""What a run leaves behind: the KPI table (text) and the day's plot (PNG)."""

from __future__ import annotations

from pathlib import Path

from host_tools.sim.feasible import REACHABLE
from host_tools.sim.kpis import NotComputed, fmt
from host_tools.sim.run import RunResult


def kpi_table(result: RunResult) -> str:
    """The KPI table; a figure that cannot be computed reads "n/a (why)", never nan or inf."""
    k = result.kpis
    starts = ", ".join(f"P{i + 1} {n}" for i, n in enumerate(k["starts"]))
    stops = str(k["station_stops"])
    if k["station_stops"]:
        causes = ", ".join(
            f"{_clock(at)} {cause or 'SPURIOUS'}"
            for at, cause in zip(k["station_stop_times_s"], k["station_stop_causes"], strict=True)
        )
        stops += f" ({k['spurious_station_stops']} spurious: {causes})"
    power = fmt(k["max_power_vs_rated"], "", 3)
    if not isinstance(k["max_power_vs_rated"], NotComputed):
        rated = k["rated_input_kw"][k["max_power_pump"] - 1]
        power += (
            f" (P{k['max_power_pump']} at {_clock(k['max_power_t_s'])}, rated input {rated:.1f} kW)"
        )
    rows = [
        ("scenario", result.scenario.name),
        ("simulated", f"{k['hours']:.2f} h"),
        ("energy", f"{k['energy_kwh']:.1f} kWh"),
        (
            "remote DP within ±0.5 m of setpoint",
            f"{fmt(k['dp_in_band_pct'], '%')} (all time, fault windows included)",
        ),
        (
            "  outside faults (+10 min)",
            fmt(k["dp_in_band_outside_faults_pct"], "%"),
        ),
        (
            "  where the field can reach the band",
            fmt(k["dp_in_band_reachable_pct"], "%"),
        ),
        (
            "band unreachable (field, steady state)",
            f"{k['band_unreachable_min']:.1f} min (over-delivers "
            f"{k['band_unreachable_over_min']:.1f}, under-delivers "
            f"{k['band_unreachable_under_min']:.1f})",
        ),
        ("remote DP > 2 m low (unserved)", fmt(k["unserved_min"], "min", 1)),
        (
            "  where the field can serve it",
            f"{fmt(k['unserved_servable_min'], 'min', 1)} "
            f"(unservable {k['unservable_min']:.1f} min left out)",
        ),
        ("min suction margin", fmt(k["min_suction_margin_kpa"], "kPa", 1)),
        (
            "min suction margin outside faults",
            fmt(k["min_suction_margin_outside_faults_kpa"], "kPa", 1),
        ),
        ("max surge (Joukowsky/Michaud)", fmt(k["max_surge_kpa"], "kPa", 1)),
        ("max speed slew", fmt(k["max_slew_pct_s"], "%/s")),
        ("max sag in a drive's current limit", fmt(k["max_current_limit_sag_pct_s"], "%/s")),
        ("max pump power / rated (10 s mean)", power),
        ("starts per pump", starts),
        ("max starts of a pump in an hour", str(k["max_starts_per_hour"])),
        ("station starts", str(k["station_starts"])),
        ("station stops", stops),
    ]
    for fault, recovery in k["fault_recoveries"]:
        lasted = (
            "" if fault.end_s == float("inf") else f", {(fault.end_s - fault.start_s) / 60:g} min"
        )
        rows.append(
            (
                f"recovery: {fault.kind} at {_clock(fault.start_s)}{lasted}",
                fmt(recovery, "s", 0),
            )
        )
    rows.append(
        ("bus requests / corrupted frames", f"{k['bus_requests']} / {k['bus_corrupted_frames']}")
    )
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def _clock(t_s: float) -> str:
    """Virtual time as H:MM:SS from the start of the run."""
    t = int(round(t_s))
    return f"{t // 3600}:{t // 60 % 60:02d}:{t % 60:02d}"


def plot(result: RunResult, path: Path) -> None:
    """Pressures, flow, speeds and power over the run, one panel each; fault windows shaded red,
    the spans at which the field cannot hold the band (feasible.py) grey on the pressures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.samples
    hours = [t / 3600.0 for t in s["t_s"]]
    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    ax = axes[0]
    ax.plot(hours, s["suction_kpa"], label="suction")
    ax.plot(hours, s["discharge_kpa"], label="discharge")
    ax.plot(hours, s["remote_dp_kpa"], label="remote DP")
    ax.plot(hours, s["setpoint_kpa"], "k--", linewidth=0.8, label="DP setpoint")
    for k, (start, end) in enumerate(_unreachable_spans(result)):
        label = "band unreachable (field)" if k == 0 else None
        ax.axvspan(start / 3600.0, end / 3600.0, color="grey", alpha=0.25, label=label)
    ax.set_ylabel("kPa (gauge)")
    ax.legend(loc="upper right", ncol=4, fontsize=8)
    ax = axes[1]
    ax.plot(hours, s["flow_m3h"], label="network flow")
    ax.plot(hours, s["demand_m3h"], ":", label="demand")
    ax.set_ylabel("m³/h")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[2]
    for i, speeds in enumerate(result.speeds):
        ax.plot(hours, speeds, label=f"pump {i + 1}")
    ax.set_ylabel("speed, % of 1480 rpm")
    ax.legend(loc="upper right", ncol=3, fontsize=8)
    ax = axes[3]
    ax.plot(hours, s["total_power_kw"], label="electrical power")
    ax.set_ylabel("kW")
    ax.set_xlabel("hour of the day")
    ax.legend(loc="upper right", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
        for start, end in _fault_spans(result):
            ax.axvspan(start / 3600.0, end / 3600.0, color="red", alpha=0.08)
    axes[0].set_title(result.scenario.name)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _unreachable_spans(result: RunResult) -> list[tuple[float, float]]:
    """Runs of samples at which the field cannot hold the band (the "reach" column)."""
    t, reach = result.samples["t_s"], result.samples.get("reach", ())
    spans: list[tuple[float, float]] = []
    start = None
    for i in range(len(reach)):
        if reach[i] != REACHABLE and start is None:
            start = t[i]
        elif reach[i] == REACHABLE and start is not None:
            spans.append((start, t[i]))
            start = None
    if start is not None:
        spans.append((start, t[len(reach) - 1]))
    return spans


def _fault_spans(result: RunResult) -> list[tuple[float, float]]:
    end_of_run = result.samples["t_s"][-1] if len(result.samples["t_s"]) else 0.0
    return [
        (f.at_s, min(f.end_s, end_of_run)) for f in result.scenario.faults if f.at_s < end_of_run
    ]
