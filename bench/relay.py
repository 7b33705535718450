"""`bench relay`: every server as a real process on loopback, driven by the same real Yjs clients.

The clients are `bench/node/client.mjs`: y-websocket `WebsocketProvider`s in one Node process
(or several: DRAFTSYNC_BENCH_CLIENT_PROCESSES), latency typed -> visible from Yjs ids on one
shared monotonic clock (see that file). Each (server, scenario) gets a fresh server process, so
its CPU seconds (utime + stime during the scenario) and peak RSS (VmHWM) are its own.

    S1   1 room x 2 clients, each typing 200 edits/s
    S2   1 room x 50 clients, each typing 5 edits/s
    S3   200 rooms x 2 clients, each typing 5 edits/s
    S4   1 room x 4 clients flooding 5,000 edits each as fast as they can
    S4r  1 room x 4 clients, 5,000 edits each at 4,000 edits/s (16,000 edits/s in total)

An unbounded flood is paced by the clients' own CPU (a server that sends fewer frames back gets
flooded harder), so servers are compared on S4r; S4 shows that nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plots import plot_relay
from bench.report import Column, format_table, publish
from bench.runtime import environment, percentile, progress
from bench.servers import NODE_DIR, SERVERS, ServerProc, node_ready

__all__ = ["SCENARIOS", "RelayOptions", "Scenario", "run_relay"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    rooms: int
    clients: int  # per room
    rate: float  # edits/s per client; 0 = flood
    seconds: float  # paced: how long each client types
    edits: int  # flood and S4r: edits per client

    def describe(self) -> str:
        load = f"{self.rate:,.0f} edits/s each" if self.rate else "flood"
        if self.edits and self.rate:
            load += f", {self.edits:,} edits each"
        elif self.edits:
            load += f" {self.edits:,} edits each"
        rooms = f"{self.rooms} room{'s' if self.rooms > 1 else ''}"
        return f"{rooms} x {self.clients} clients, {load}"

    def config(self) -> dict[str, object]:
        run = uuid.uuid4().hex[:8]
        seconds = self.edits / self.rate if self.edits and self.rate else self.seconds
        return {
            "mode": "relay",
            "rooms": [f"{self.name}-{run}-{i}" for i in range(self.rooms)],
            "clients": self.clients,
            "rate": self.rate,
            "seconds": seconds,
            "edits": self.edits,
            "drainSeconds": 30,
            "connectSeconds": 60,
        }

    def budget(self) -> float:
        """A bound on the client's whole run (connect, type, drain), in seconds."""
        typing = self.edits / self.rate if self.edits and self.rate else self.seconds
        return 60 + typing + 30 + 60 + (60 if not self.rate else 0)


SCENARIOS = {
    "S1": Scenario("S1", 1, 2, 200, 10, 0),
    "S2": Scenario("S2", 1, 50, 5, 10, 0),
    "S3": Scenario("S3", 200, 2, 5, 10, 0),
    "S4": Scenario("S4", 1, 4, 0, 0, 5000),
    "S4r": Scenario("S4r", 1, 4, 4000, 0, 5000),
}
QUICK = {
    "S1": Scenario("S1", 1, 2, 200, 2, 0),
    "S2": Scenario("S2", 1, 50, 5, 3, 0),
    "S4r": Scenario("S4r", 1, 4, 4000, 0, 1000),
}
BASELINE = "draftsync"


@dataclass(frozen=True, slots=True)
class RelayOptions:
    out: Path
    quick: bool
    servers: tuple[str, ...]
    scenarios: tuple[str, ...]
    progress: bool

    def plan(self) -> list[Scenario]:
        table = QUICK if self.quick else SCENARIOS
        names = self.scenarios or tuple(table)
        return [table.get(name) or SCENARIOS[name] for name in names]


class ClientFailed(RuntimeError):
    pass


# Node client processes at most (editors are dealt round-robin, so a room's editors sit in
# different processes when there are several). On this 2-core machine one process measured best:
# more processes only took CPU from the server; at 16,000 edits/s one Node thread taking every
# edit in and out is itself the bottleneck (see README, Performance).
PROCESSES = int(os.environ.get("DRAFTSYNC_BENCH_CLIENT_PROCESSES", "1"))
_LINE_LIMIT = 1 << 28  # the result line carries every send and receipt time


async def node_client(config: dict[str, object], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / "client.mjs"),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            limit=_LINE_LIMIT,
        )


async def next_event(process: asyncio.subprocess.Process, until: str) -> dict[str, Any]:
    """The next event named `until` on the client's stdout; its errors raise ClientFailed."""
    assert process.stdout is not None
    while line := await process.stdout.readline():
        if not line.startswith(b"{"):
            continue
        event = json.loads(line)
        if event.get("event") == "error":
            raise ClientFailed(str(event.get("error")))
        if event.get("event") == until:
            return event  # type: ignore[no-any-return]
    raise ClientFailed(f"the client exited ({await process.wait()}) before {until!r}")


async def _tell(processes: list[asyncio.subprocess.Process], line: str) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(line.encode() + b"\n")
        await process.stdin.drain()


async def _drive(server: ServerProc, scenario: Scenario, directory: Path) -> dict[str, Any]:
    config = {**scenario.config(), "url": server.url, "token": server.token}
    rooms: list[str] = config.pop("rooms")  # type: ignore[assignment]
    slots = [room for room in rooms for _ in range(scenario.clients)]
    count = min(PROCESSES, len(slots))
    processes = [
        await node_client({**config, "slots": slots[i::count]}, directory / f"client-{i}.log")
        for i in range(count)
    ]
    events = asyncio.gather
    try:
        async with asyncio.timeout(scenario.budget()):
            await events(*(next_event(p, "ready") for p in processes))
            await _tell(processes, "go")
            written = await events(*(next_event(p, "written") for p in processes))
            expect: dict[str, int] = {}
            for w in written:
                for room, sent in w["sent"].items():
                    expect[room] = expect.get(room, 0) + sent
            await _tell(processes, json.dumps({"expect": expect}))
            results = await events(*(next_event(p, "result") for p in processes))
            for process in processes:
                await process.wait()
    except TimeoutError:
        raise ClientFailed(
            f"{scenario.name} on {server.name}: no result within the bound"
        ) from None
    except ClientFailed as error:
        raise ClientFailed(f"{scenario.name} on {server.name}: {error}") from None
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return _join(results, scenario.clients)


def _join(results: list[dict[str, Any]], room_size: int) -> dict[str, Any]:
    """Latencies from every (clientID, clock) sent and every time another editor integrated it."""
    sends: dict[int, list[float]] = {}
    for result in results:
        sends.update({int(client): times for client, times in result["sends"].items()})
    latencies = []
    for result in results:
        for client, first, end, at in result["received"]:
            times = sends.get(client)
            if times is not None:
                latencies.extend(at - times[clock] for clock in range(first, min(end, len(times))))
    editors = [e for result in results for e in result["editors"]]
    sent = sum(e["sent"] for e in editors)
    lengths: dict[str, set[int]] = {}
    for e in editors:
        lengths.setdefault(e["room"], set()).add(e["length"])
    return {
        "sent": sent,
        "expected": sent * (room_size - 1),
        "delivered": len(latencies),
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p95_ms": percentile(latencies, 95) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
        "max_ms": max(latencies, default=None),
        "write_seconds": max(r["write_seconds"] for r in results),
        "closes": sum(r["closes"] for r in results),
        "close_codes": sorted({c for r in results for c in r["close_codes"] if c is not None}),
        "convergent": all(len(v) == 1 for v in lengths.values()),
        "client_processes": len(results),
    }


async def _one(name: str, scenario: Scenario, directory: Path) -> dict[str, object]:
    server = ServerProc(name, directory)
    await asyncio.to_thread(server.start)
    try:
        cpu_before = server.cpu_seconds()
        outcome = await _drive(server, scenario, directory)
        cpu = server.cpu_seconds() - cpu_before
        rss = server.peak_rss_mb()
    finally:
        await asyncio.to_thread(server.stop)
    expected = int(outcome["expected"])
    delivered = int(outcome["delivered"])
    return {
        "scenario": scenario.name,
        "server": name,
        "description": scenario.describe(),
        "rooms": scenario.rooms,
        "clients_per_room": scenario.clients,
        "rate_per_client": scenario.rate,
        "edits_per_client": scenario.edits,
        "sent": outcome["sent"],
        "expected_deliveries": expected,
        "delivered": delivered,
        "delivered_pct": 100.0 * delivered / expected if expected else 0.0,
        "p50_ms": outcome["p50_ms"],
        "p95_ms": outcome["p95_ms"],
        "p99_ms": outcome["p99_ms"],
        "max_ms": outcome["max_ms"],
        "write_seconds": outcome["write_seconds"],
        "server_cpu_s": cpu,
        "peak_rss_mb": rss,
        "closes": outcome["closes"],
        "close_codes": outcome["close_codes"],
        "convergent": outcome["convergent"],
        "client_processes": outcome["client_processes"],
        "error": None,
    }


def _failed(name: str, scenario: Scenario, error: str) -> dict[str, object]:
    figures = ("sent", "expected_deliveries", "delivered", "p50_ms", "p95_ms", "p99_ms")
    more = ("max_ms", "write_seconds", "server_cpu_s", "peak_rss_mb", "closes", "client_processes")
    return {
        "scenario": scenario.name,
        "server": name,
        "description": scenario.describe(),
        "rooms": scenario.rooms,
        "clients_per_room": scenario.clients,
        "rate_per_client": scenario.rate,
        "edits_per_client": scenario.edits,
        **dict.fromkeys(figures + more),
        "delivered_pct": 0.0,
        "close_codes": [],
        "convergent": False,
        "error": error,
    }


def _ratios(rows: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """draftsync (durable) / each peer, per scenario: below 1 means draftsync is lower."""

    def ratio(a: object, b: object) -> float | None:
        if not isinstance(a, int | float) or not isinstance(b, int | float) or b == 0:
            return None
        return float(a) / float(b)

    out = []
    by_key = {(r["scenario"], r["server"]): r for r in rows}
    for (scenario, server), peer in by_key.items():
        base = by_key.get((scenario, BASELINE))
        if server == BASELINE or base is None:
            continue
        out.append(
            {
                "scenario": scenario,
                "peer": server,
                **{
                    f"{key}_ratio": ratio(base[key], peer[key])
                    for key in ("p50_ms", "p95_ms", "p99_ms", "server_cpu_s", "peak_rss_mb")
                },
            }
        )
    return out


async def _measure(options: RelayOptions) -> dict[str, object]:
    if not node_ready():
        raise RuntimeError(f"no node_modules in {NODE_DIR}: run `npm ci` there (make bench-node)")
    env = environment()
    plan = options.plan()
    rows = []
    steps = progress(
        desc="relay", total=len(plan) * len(options.servers), unit="run", enabled=options.progress
    )
    with tempfile.TemporaryDirectory(prefix="draftsync-relay-") as tmp:
        for scenario in plan:
            for name in options.servers:  # servers interleaved within each scenario
                steps.set_postfix_str(f"{scenario.name} {name}")
                where = Path(tmp) / f"{scenario.name}-{name}"
                try:
                    rows.append(await _one(name, scenario, where))
                except RuntimeError as error:  # ClientFailed, or a server that did not start
                    # One server failing a scenario (e.g. not all clients synced in time) is a
                    # result, not the end of the run: the row says so and has no figures.
                    rows.append(_failed(name, scenario, str(error)))
                steps.update(1)
    steps.close()
    return {
        "bench": "relay",
        "quick": options.quick,
        "environment": env,
        "settings": {
            "servers": list(options.servers),
            "scenarios": {s.name: s.describe() for s in plan},
            "client": "bench/node/client.mjs: yjs 13.6.33, y-websocket 3.1.0 WebsocketProviders",
            "latency": "typed on one client -> integrated on another, from Yjs (client, clock)",
        },
        "rows": rows,
        "ratios": _ratios(rows),
    }


def _table(result: dict[str, object]) -> str:
    rows = result["rows"]
    ratios = {(r["scenario"], r["peer"]): r for r in result["ratios"]}  # type: ignore[attr-defined]
    shown = []
    for row in rows:  # type: ignore[attr-defined]
        r = ratios.get((row["scenario"], row["server"]))
        shown.append(
            {
                **row,
                "vs": "-"
                if r is None or r["p50_ms_ratio"] is None
                else f"{r['p50_ms_ratio']:.2f}x / {r['p99_ms_ratio']:.2f}x",
            }
        )
    settings = result["settings"]
    assert isinstance(settings, dict)
    footer = "\n".join(
        [
            *(f"{name}: {text}" for name, text in settings["scenarios"].items()),
            "latency: typed on one client -> integrated on another (Yjs ids), ms",
            "ds/peer: draftsync (durable) p50 / p99 over this server's (< 1: draftsync lower)",
            *(
                f"FAILED {r['scenario']} on {r['server']}: {r['error']}"
                for r in rows  # type: ignore[attr-defined]
                if r.get("error")
            ),
        ]
    )
    return format_table(
        "Relay: real y-websocket clients against each server (one fresh process per run)",
        [
            Column("scenario", "scen"),
            Column("server", "server"),
            Column("p50_ms", "p50 ms"),
            Column("p95_ms", "p95 ms"),
            Column("p99_ms", "p99 ms"),
            Column("delivered_pct", "deliv %"),
            Column("server_cpu_s", "cpu s"),
            Column("peak_rss_mb", "rss MB"),
            Column("vs", "ds/peer p50/p99"),
        ],
        shown,
        footer=footer,
    )


async def run_relay(options: RelayOptions) -> dict[str, object]:
    unknown = set(options.servers) - set(SERVERS)
    if unknown:
        raise ValueError(f"unknown servers {sorted(unknown)}; known: {', '.join(SERVERS)}")
    result = await _measure(options)
    publish(result, options.out, "relay", plot_relay, _table(result))
    return result
