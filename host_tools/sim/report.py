"""What a run leaves behind: the KPI table (text) and the day's plot (PNG)."""

from __future__ import annotations

from pathlib import Path

from host_tools.sim.run import RunResult


def kpi_table(result: RunResult) -> str:
    k = result.kpis
    starts = ", ".join(f"P{i + 1} {n}" for i, n in enumerate(k["starts"]))
    rows = [
        ("scenario", result.scenario.name),
        ("simulated", f"{k['hours']:.2f} h"),
        ("energy", f"{k['energy_kwh']:.1f} kWh"),
        ("remote DP within ±0.5 m of setpoint", f"{k['dp_in_band_pct']:.2f} % (outside faults)"),
        ("min suction margin", f"{k['min_suction_margin_kpa']:.1f} kPa"),
        (
            "min suction margin outside faults",
            f"{k['min_suction_margin_outside_faults_kpa']:.1f} kPa",
        ),
        ("max surge (Joukowsky/Michaud)", f"{k['max_surge_kpa']:.1f} kPa"),
        ("max speed slew", f"{k['max_slew_pct_s']:.2f} %/s"),
        ("starts per pump", starts),
        ("max starts of a pump in an hour", str(k["max_starts_per_hour"])),
        ("bus requests / corrupted frames", f"{k['bus_requests']} / {k['bus_corrupted_frames']}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def plot(result: RunResult, path: Path) -> None:
    """Pressures, flow, speeds and power over the run, one panel each."""
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


def _fault_spans(result: RunResult) -> list[tuple[float, float]]:
    end_of_run = result.samples["t_s"][-1] if len(result.samples["t_s"]) else 0.0
    return [
        (f.at_s, min(f.end_s, end_of_run)) for f in result.scenario.faults if f.at_s < end_of_run
    ]
