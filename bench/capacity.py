"""The capacity scenario of `bench relay`, summed up: what a relayed edit costs each server.

The steps (C100 ... C600: that many rooms x 2 clients, each typing 5 edits/s) are ordinary relay
runs, one fresh server process each; here they become, per server, the server CPU per relayed
edit at each step (CPU seconds from "go" to the last delivery, connects and the clients'
warm-up left out, / edits sent; each edit is relayed to the room's other client) and the
highest rate (edits/s into the server) it held with p99 <= 250 ms and every edit delivered.
The connections scenario (bench/connections.py) shares the table module and the figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.report import Column, format_table

__all__ = [
    "CAPACITY_PREFIX",
    "HELD_P99_MS",
    "after_over_idle",
    "capacity_summary",
    "capacity_table",
    "connections_table",
    "plot_scaling",
]

CAPACITY_PREFIX = "C"
HELD_P99_MS = 250.0

Rows = Sequence[Mapping[str, Any]]


def _is_step(name: str) -> bool:
    return name.startswith(CAPACITY_PREFIX) and name[len(CAPACITY_PREFIX) :].isdigit()


def capacity_summary(rows: Rows) -> dict[str, object]:
    """Per server: each step's rate, CPU per edit, p99 and delivery; the highest rate held."""
    servers: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("kind") != "relay" or not _is_step(str(row["scenario"])):
            continue  # C1 (a cold load, kind "join") is not a capacity step
        rate = float(row["rooms"] * row["clients_per_room"] * row["rate_per_client"])
        sent, cpu = row.get("sent"), row.get("typing_cpu_s")
        held = (
            row.get("error") is None
            and row.get("delivered_pct") == 100.0
            and row.get("p99_ms") is not None
            and row["p99_ms"] <= HELD_P99_MS
        )
        entry = servers.setdefault(str(row["server"]), {"steps": [], "max_rate_held": 0.0})
        entry["steps"].append(
            {
                "scenario": row["scenario"],
                "rate": rate,
                "cpu_ms_per_edit": 1000 * cpu / sent if sent and cpu is not None else None,
                "p99_ms": row.get("p99_ms"),
                "delivered_pct": row.get("delivered_pct"),
                "peak_rss_mb": row.get("peak_rss_mb"),
                "idle_rss_mb": row.get("idle_rss_mb"),
                "after_rss_mb": row.get("after_rss_mb"),
                "held": held,
            }
        )
        if held:
            entry["max_rate_held"] = max(entry["max_rate_held"], rate)
    return {
        "held_if": f"p99 <= {HELD_P99_MS:g} ms and 100 % delivered",
        "cpu_per_edit": "server CPU seconds while typing and draining / edits sent "
        "(each relayed once)",
        "servers": servers,
    }


def capacity_table(summary: Mapping[str, Any], baseline: str) -> str:
    servers: dict[str, Any] = summary["servers"]
    if not servers:
        return ""
    base = {s["scenario"]: s for s in servers.get(baseline, {}).get("steps", [])}
    shown = []
    for server, entry in servers.items():
        for step in entry["steps"]:
            mine, theirs = (
                base.get(step["scenario"], {}).get("cpu_ms_per_edit"),
                step["cpu_ms_per_edit"],
            )
            ratio = "-" if server == baseline or not mine or not theirs else f"{mine / theirs:.2f}x"
            shown.append(
                {
                    **step,
                    "server": server,
                    "vs": ratio,
                    "max": entry["max_rate_held"],
                    "after_idle": after_over_idle(step),
                }
            )
    return format_table(
        "Capacity: rooms x 2 clients at 5 edits/s each, stepped up (one fresh process per step)",
        [
            Column("scenario", "step"),
            Column("server", "server"),
            Column("rate", "edits/s"),
            Column("cpu_ms_per_edit", "cpu ms/edit"),
            Column("p99_ms", "p99 ms"),
            Column("delivered_pct", "deliv %"),
            Column("held", "held"),
            Column("max", "max held/s"),
            Column("vs", "ds/peer cpu"),
            Column("peak_rss_mb", "peak MB"),
            Column("after_idle", "after/idle"),
        ],
        shown,
        footer=f"held: {summary['held_if']}; cpu ms/edit: {summary['cpu_per_edit']}; "
        f"ds/peer cpu: {baseline}'s CPU per edit over this server's (< 1: {baseline} cheaper); "
        f"{_AFTER_IDLE_NOTE}",
    )


_AFTER_IDLE_NOTE = (
    "after/idle: RSS once the clients left and the rooms unloaded over RSS before any client"
)


def after_over_idle(row: Mapping[str, Any]) -> str:
    """A row's after-load RSS over its idle RSS, as a table shows it ("-": either missing)."""
    idle, after = row.get("idle_rss_mb"), row.get("after_rss_mb")
    if not isinstance(idle, int | float) or not isinstance(after, int | float) or idle <= 0:
        return "-"
    return f"{after / idle:.2f}x"


def connections_table(rows: Rows) -> str:
    mine = [r for r in rows if r.get("connections") is not None or r.get("kind") == "connections"]
    if not mine:
        return ""
    return format_table(
        "Connections: one room, N idle connections, then one edit fanned out to all",
        [
            Column("scenario", "scen"),
            Column("server", "server"),
            Column("connections", "conns"),
            Column("accept_per_s", "synced/s"),
            Column("sync_p50_ms", "sync p50"),
            Column("sync_p99_ms", "sync p99"),
            Column("kb_per_connection", "KB/conn"),
            Column("fanout_p50_ms", "fan-out p50"),
            Column("fanout_max_ms", "fan-out max"),
            Column("fanout_received", "got it"),
            Column("connect_cpu_s", "cpu s"),
            Column("peak_rss_mb", "peak MB"),
            Column("idle_rss_mb", "idle MB"),
            Column("after_rss_mb", "after MB"),
            Column("after_idle", "after/idle"),
        ],
        [{**row, "after_idle": after_over_idle(row)} for row in mine],
        footer="synced/s: connections synced per second, first connect to last synced (at most "
        "256 connecting at once); KB/conn: server RSS delta (all synced and idle - before) / N; "
        "fan-out: ms from typing to each other connection integrating the edit; idle MB: RSS "
        "before any client; after MB: once every connection closed and the room unloaded; "
        f"{_AFTER_IDLE_NOTE}",
    )


def plot_scaling(result: Mapping[str, Any], path: Path) -> None:
    """CPU per edit and p99 against the offered rate; memory and sync time per connection."""
    servers: dict[str, Any] = result["capacity"]["servers"]
    conns = [r for r in result["rows"] if r.get("kind") == "connections" and not r.get("error")]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4), layout="constrained")
    for server, entry in servers.items():
        steps = [s for s in entry["steps"] if s["cpu_ms_per_edit"] is not None]
        rates = [s["rate"] for s in steps]
        axes[0].plot(rates, [s["cpu_ms_per_edit"] for s in steps], marker="o", label=server)
        axes[1].plot(rates, [s["p99_ms"] or 0 for s in steps], marker="o", label=server)
    axes[0].set_title("server CPU per relayed edit (ms)")
    axes[1].set_title("typed -> visible p99 (ms, log)")
    axes[1].set_yscale("log")
    axes[1].axhline(HELD_P99_MS, color="tab:red", linestyle="--", label=f"{HELD_P99_MS:g} ms")
    for ax in axes[:2]:
        ax.set_xlabel("edits/s into the server")
        ax.legend(loc="best")
    labels = [f"{r['server']} {r['scenario']}" for r in conns]
    axes[2].barh(labels, [r["kb_per_connection"] for r in conns], color="tab:gray")
    axes[2].set_title("server KB per idle connection")
    axes[3].barh(labels, [r["sync_p99_ms"] for r in conns], color="tab:red", label="p99")
    axes[3].barh(labels, [r["sync_p50_ms"] for r in conns], color="tab:blue", label="p50")
    axes[3].set_title("connect -> synced (ms)")
    axes[3].legend(loc="best")
    for ax in axes[2:]:
        ax.invert_yaxis()
        ax.set_xlabel("lower is better")
    fig.savefig(path, dpi=110)
    plt.close(fig)
