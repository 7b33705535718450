"""The PNG of each bench (matplotlib, Agg: no display needed, same output on CI and laptops).

One figure per bench, drawn only from its JSON result, so a stored result can be redrawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

__all__ = ["plot_crash", "plot_merge", "plot_persistence", "plot_relay", "plot_relay_instances"]

Rows = Sequence[Mapping[str, Any]]


def _bars(ax: Axes, labels: list[str], values: list[float], *, color: str) -> None:
    bars = ax.barh(labels, values, color=color)
    ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 10 else f"{v:.2f}" for v in values], padding=3)
    ax.invert_yaxis()


def _pairs(
    ax: Axes, labels: list[str], *series: tuple[str, list[float], str], height: float = 0.4
) -> None:
    """Horizontal bars, one group per label, one bar per series, first label on top."""
    for k, (name, values, color) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * height
        ax.barh([i + offset for i in range(len(labels))], values, height, label=name, color=color)
    ax.set_yticks(list(range(len(labels))), labels)
    if not ax.yaxis_inverted():  # axes that share y were inverted by the first call
        ax.invert_yaxis()


def plot_persistence(result: Mapping[str, Any], path: Path) -> None:
    fig, (store, room, load) = plt.subplots(3, 1, figsize=(9, 10), layout="constrained")
    throughput: Rows = result["throughput"]
    _bars(
        store,
        [r["mode"] for r in throughput],
        [r["updates_per_s"] for r in throughput],
        color="tab:blue",
    )
    target = result["targets"]["group_commit_updates_per_s"]["target"]
    store.axvline(target, color="tab:red", linestyle="--", label=f"target {target:,}")
    store.set_title(f"Store: durable updates/s, {throughput[0]['writers']} writers, one room")
    store.set_xlabel("updates/s (higher is better)")
    store.legend(loc="best")

    durability: Rows = result["durability"]
    labels = [r["mode"] for r in durability]
    _pairs(
        room,
        labels,
        ("flood p50", [r["flood_visible_p50_ms"] for r in durability], "tab:orange"),
        ("paced p50", [r["paced_visible_p50_ms"] for r in durability], "tab:green"),
    )
    room.set_xscale("log")
    room.set_title("Room: time until another client's queue has the update")
    room.set_xlabel("ms, log scale (lower is better)")
    room.legend(loc="best")

    cold: Rows = result["cold_load"]
    _bars(load, [r["case"] for r in cold], [r["total_ms"] for r in cold], color="tab:purple")
    limit = result["targets"]["cold_load_ms"]["target"]
    load.axvline(limit, color="tab:red", linestyle="--", label=f"target {limit} ms (snapshot)")
    load.set_xscale("log")
    load.set_title(f"Cold load of a {cold[0]['updates']:,}-update draft (median)")
    load.set_xlabel("ms, log scale (lower is better)")
    load.legend(loc="best")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_merge(result: Mapping[str, Any], path: Path) -> None:
    rows: Rows = result["traces"]
    labels = [r["trace"] for r in rows]
    fig, (speed, ratio, storage) = plt.subplots(
        1, 3, figsize=(17, 2.2 + 0.5 * len(rows)), layout="constrained", sharey=True
    )
    _pairs(
        speed,
        labels,
        ("bare pycrdt Doc", [r["bare_updates_per_s"] for r in rows], "tab:blue"),
        ("draftsync room", [r["room_updates_per_s"] for r in rows], "tab:orange"),
    )
    speed.set_xscale("log")
    speed.set_xlim(left=min(r["room_updates_per_s"] for r in rows) / 4)
    speed.set_xlabel("updates/s, log scale (higher is better)")
    speed.set_title("Replaying editing traces: updates/s")
    fig.legend(loc="outside upper center", ncols=2)
    ratios = [r["ratio_room_to_bare"] for r in rows]
    bars = ratio.barh(labels, ratios, color="tab:gray")
    ratio.bar_label(bars, labels=[f"{v:.3f}" for v in ratios], padding=3)
    ratio.set_xlabel("room / bare")
    ratio.set_title("Share of the CRDT's speed the room keeps")
    _pairs(
        storage,
        labels,
        ("update log", [r["stored_log_mb"] for r in rows], "tab:purple"),
        ("snapshots kept", [r["stored_snapshot_mb"] for r in rows], "tab:olive"),
    )
    storage.legend(loc="best")
    storage.set_xlabel("MB in the store (lower is better)")
    kept = result["settings"]["snapshots_kept"]
    storage.set_title(f"One version a keystroke, stored (at most {kept:,} snapshots)")
    credits = result["credits"]
    fig.supxlabel(f"Traces: {credits['source']}, {credits['licence']}", fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


_SERVER_COLORS = ("tab:orange", "tab:red", "tab:blue", "tab:green", "tab:purple", "tab:gray")


def plot_relay(result: Mapping[str, Any], path: Path) -> None:
    rows: Rows = result["rows"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    servers = list(dict.fromkeys(r["server"] for r in rows))
    cell = {(r["scenario"], r["server"]): r for r in rows}
    height = 0.8 / max(1, len(servers))
    fig, axes = plt.subplots(
        1, 3, figsize=(15, 2.5 + 0.9 * len(scenarios)), layout="constrained", sharey=True
    )
    for ax, key, title, log in (
        (axes[0], "p50_ms", "typed -> visible p50 (ms, log)", True),
        (axes[1], "p99_ms", "typed -> visible p99 (ms, log)", True),
        (axes[2], "server_cpu_s", "server CPU seconds", False),
    ):
        series = [
            (
                server,
                [float(cell.get((s, server), {}).get(key) or 0) for s in scenarios],
                _SERVER_COLORS[i % len(_SERVER_COLORS)],
            )
            for i, server in enumerate(servers)
        ]
        _pairs(ax, scenarios, *series, height=height)
        _mark_short_deliveries(ax, scenarios, servers, cell, height=height)
        if log:
            ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("lower is better")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(servers))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mark_short_deliveries(
    ax: Axes,
    scenarios: list[str],
    servers: list[str],
    cell: Mapping[tuple[str, str], Mapping[str, Any]],
    *,
    height: float,
) -> None:
    """Say in the plot why a bar is missing or stands for a partial run: a short bar of a
    server that relayed 3 % of the edits would otherwise read as a fast server."""
    for i, scenario in enumerate(scenarios):
        for k, server in enumerate(servers):
            row = cell.get((scenario, server))
            if row is None or row.get("delivered_pct") == 100.0:
                continue
            if row.get("p50_ms") is None:
                note = f"{server}: failed"
            else:
                note = f"{server}: {row['delivered_pct']:.1f} % delivered"
            offset = (k - (len(servers) - 1) / 2) * height
            ax.text(
                0.99,
                i + offset,
                note,
                transform=ax.get_yaxis_transform(),
                ha="right",
                va="center",
                fontsize=7,
                color="tab:red",
            )


def plot_relay_instances(result: Mapping[str, Any], path: Path) -> None:
    """`relay --instances N`: one scenario on a few draftsync setups. Linear axes, unlike
    `plot_relay`'s log ones, so that the N-instance bars read directly against one instance's."""
    rows: Rows = result["rows"]
    labels = [r["server"] for r in rows]
    fig, (latency, cpu, rss) = plt.subplots(
        1, 3, figsize=(15, 2 + 0.8 * len(rows)), layout="constrained", width_ratios=(2, 1, 1)
    )
    quantiles = (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red"))
    series = [(q, [float(r[f"{q}_ms"] or 0) for r in rows], color) for q, color in quantiles]
    _pairs(latency, labels, *series, height=0.27)
    latency.set_title("typed -> visible latency")
    latency.set_xlabel("ms (lower is better)")
    latency.legend(loc="best")
    for ax, key, title, unit in (
        (cpu, "server_cpu_s", "CPU", "s"),
        (rss, "peak_rss_mb", "peak RSS", "MB"),
    ):
        _bars(ax, labels, [float(r[key] or 0) for r in rows], color="tab:gray")
        ax.tick_params(labelleft=False)  # the rows are named on the latency panel
        ax.margins(x=0.2)
        ax.set_title(f"server {title}, all instances")
        ax.set_xlabel(f"{unit} (lower is better)")
    scenario = rows[0]
    fig.suptitle(f"{scenario['scenario']}: {scenario['description']}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_crash(result: Mapping[str, Any], path: Path) -> None:
    rows: Rows = result["rows"]
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.6 * len(rows)), layout="constrained")
    _bars(ax, [r["server"] for r in rows], [r["survived_pct"] for r in rows], color="tab:blue")
    ax.axvline(100, color="tab:red", linestyle="--", label="goal: 100 %")
    ax.set_xlim(0, 110)
    ax.set_title("kill -9 mid-flood: share of relayed edits found after restart")
    ax.set_xlabel("% of edits another client had received (higher is better)")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)
