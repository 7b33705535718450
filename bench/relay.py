"""`bench relay`: every server as a real process on loopback, driven by the same real Yjs clients.

The clients are `bench/node/client.mjs`: y-websocket `WebsocketProvider`s in one Node process
(`HocuspocusProvider`s, @hocuspocus/provider 4.8.0, for draftsync-hocuspocus, draftsync's
/hocuspocus endpoint, and hocuspocus-server, @hocuspocus/server 4.7.0 with its SQLite extension)
(or several: DRAFTSYNC_BENCH_CLIENT_PROCESSES), latency typed -> visible from Yjs ids on one
shared monotonic clock (see that file). Each (server, scenario) gets a fresh server process, so
its CPU seconds (utime + stime during the scenario) and peak RSS (VmHWM) are its own.

    S1   1 room x 2 clients, each typing 200 edits/s
    S2   1 room x 50 clients, each typing 5 edits/s
    S3   200 rooms x 2 clients, each typing 5 edits/s
    S4   1 room x 4 clients flooding 5,000 edits each as fast as they can
    S4r  1 room x 4 clients, 5,000 edits each at 4,000 edits/s (16,000 edits/s in total)
    S5   1 room x 10 clients, each setting the `fields` key `category` 20 times/s
    S5t  the same clients typing text at the same rate: what S5 is compared with
    C100 ... C600  capacity: 100, 200, 400, 600 rooms x 2 clients, each typing 5 edits/s
                   (`--scenario capacity` runs the steps; bench/capacity.py sums them up)
    N3000  connections: 3,000 idle connections on one room, then one edit fanned out to all
           (bench/connections.py; y-websocket servers only)
    J1   100 clients join a 5 MB draft at once (bench/joins.py): time to synced per joiner
    C1   cold load of a 20,000-update draft after a restart, until a fresh client is synced

Every row also reports the server's RSS when idle (started, no client yet), its peak (VmHWM)
and after the load (`AFTER_LOAD_SECONDS` after the last client left: past the room grace, so
draftsync has unloaded its rooms): memory that does not come back shows there. `--quick` runs
draftsync with `--room-grace 0.25` and reads it after `QUICK_AFTER_LOAD_SECONDS`, to stay short;
J1 and C1 run in `--quick` only when named (`--scenario J1`), smaller.

An unbounded flood is paced by the clients' own CPU (a server that sends fewer frames back gets
flooded harder), so servers are compared on S4r; S4 shows that nothing is lost.

`--instances N` (N >= 2) asks what spreading one room over several draftsync processes costs:
S2 against draftsync (durable) on SQLite (reference), on PostgreSQL + Redis with one instance,
and on the same PostgreSQL + Redis with N instances, the clients dealt round-robin over their
ports as a load balancer would. The one- and N-instance rows differ only by the extra instances;
both services are started by the bench (`bench.services`) and stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.capacity import (
    CAPACITY_PREFIX,
    after_over_idle,
    capacity_summary,
    capacity_table,
    connections_table,
    plot_scaling,
)
from bench.connections import SETTLE_SECONDS, drive_connections
from bench.connections import describe as describe_connections
from bench.joins import MEMORY_ONLY, JoinScenario, run_join
from bench.nodeclient import QUICK_WARM_UP_EDITS, ClientFailed, next_event, node_client
from bench.plots import plot_relay, plot_relay_instances
from bench.report import Column, format_table, publish
from bench.runtime import environment, percentile, progress
from bench.servers import HOCUSPOCUS_SERVERS, NODE_DIR, SERVERS, ServerProc, node_ready
from bench.services import PostgresCluster, RedisServer, postgres_and_redis

__all__ = ["GROUPS", "SCENARIOS", "RelayOptions", "Scenario", "run_relay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    rooms: int
    clients: int  # per room
    rate: float  # edits/s per client; 0 = flood
    seconds: float  # paced: how long each client types
    edits: int  # flood and S4r: edits per client
    kind: str = "relay"  # or "connections" (bench/connections.py: `clients` connections)
    op: str = "text"  # what an edit is: a character typed, or "fields": a `fields` key set

    def describe(self) -> str:
        if self.kind == "connections":
            return describe_connections(self.clients)
        load = f"{self.rate:,.0f} edits/s each" if self.rate else "flood"
        if self.edits and self.rate:
            load += f", {self.edits:,} edits each"
        elif self.edits:
            load += f" {self.edits:,} edits each"
        if self.op == "fields":
            load = load.replace("edits", "`fields` sets")
        rooms = f"{self.rooms} room{'s' if self.rooms > 1 else ''}"
        return f"{rooms} x {self.clients} clients, {load}"

    def config(self) -> dict[str, object]:
        run = uuid.uuid4().hex[:8]
        seconds = self.edits / self.rate if self.edits and self.rate else self.seconds
        return {
            "mode": "relay",
            "op": self.op,
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
        if self.kind == "connections":
            return 60 + self.clients / 20
        typing = self.edits / self.rate if self.edits and self.rate else self.seconds
        return 60 + typing + 30 + 60 + (60 if not self.rate else 0)


SCENARIOS: dict[str, Scenario | JoinScenario] = {
    "S1": Scenario("S1", 1, 2, 200, 10, 0),
    "S2": Scenario("S2", 1, 50, 5, 10, 0),
    "S3": Scenario("S3", 200, 2, 5, 10, 0),
    "S4": Scenario("S4", 1, 4, 0, 0, 5000),
    "S4r": Scenario("S4r", 1, 4, 4000, 0, 5000),
    "S5": Scenario("S5", 1, 10, 20, 10, 0, op="fields"),
    "S5t": Scenario("S5t", 1, 10, 20, 10, 0),
    **{f"C{rooms}": Scenario(f"C{rooms}", rooms, 2, 5, 10, 0) for rooms in (100, 200, 400, 600)},
    "N3000": Scenario("N3000", 1, 3000, 0, 0, 0, kind="connections"),
    "J1": JoinScenario("J1", 5000, 1000, 0, 100, 1, restart=False),
    "C1": JoinScenario("C1", 20_000, 1, 2000, 1, 5, restart=True),
}
# The quick forms (the smoke tests'): every path of each scenario, its sizes cut down; half a
# second of typing sends 100 edits a client in S1, 2 in S2 and the capacity steps, 10 in S5.
QUICK_SECONDS = 0.5
QUICK: dict[str, Scenario | JoinScenario] = {
    "S1": Scenario("S1", 1, 2, 200, QUICK_SECONDS, 0),
    "S2": Scenario("S2", 1, 50, 5, QUICK_SECONDS, 0),
    "S4r": Scenario("S4r", 1, 4, 4000, 0, 1000),
    "S5": Scenario("S5", 1, 10, 20, QUICK_SECONDS, 0, op="fields"),
    **{f"C{rooms}": Scenario(f"C{rooms}", rooms, 2, 5, QUICK_SECONDS, 0) for rooms in (20, 40)},
    "N200": Scenario("N200", 1, 200, 0, 0, 0, kind="connections"),
    # 0.4 MB: past LARGE_REPLY_BYTES (256 KB, server/sync/replies.py), so the joiners' reply is
    # paced as the full run's 5 MB one is; filling 1 MB took most of the quick J1's time.
    "J1": JoinScenario("J1", 400, 1000, 0, 20, 1, restart=False),
    "C1": JoinScenario("C1", 2000, 1, 2000, 1, 2, restart=True),
}
# `--quick` alone: these (the smoke test's); the other quick forms run when named
QUICK_DEFAULT = ("S1", "S2", "S4r")
# `--scenario capacity` / `--scenario connections`: the steps of that scenario in the table used
GROUPS = {"capacity": CAPACITY_PREFIX, "connections": "N"}
# Seconds after the last client left before the "after" RSS is read: past draftsync's room
# grace (5 s) and its unload, and the peers' own unloads.
AFTER_LOAD_SECONDS = 7.0
# --quick (the smoke tests, whose figures nobody reads): draftsync's grace cut to a quarter of a
# second, so that the same "after" read still follows the unload, ~1.5 s sooner a row.
QUICK_AFTER_LOAD_SECONDS = 1.0
QUICK_FLAGS = ("--room-grace", "0.25")  # draftsync's, in --quick
# After a server listens, before its idle RSS is read and the clients start; --quick (whose idle
# figure nobody reads) waits less, as it does for the connections scenario's memory reads.
START_SETTLE_SECONDS = 0.5
QUICK_START_SETTLE_SECONDS = 0.1
QUICK_CONNECTIONS_SETTLE_SECONDS = 0.2
BASELINE = "draftsync"
# A row whose ratio is not to the comparison's baseline: the Hocuspocus server is compared with
# draftsync's /hocuspocus endpoint (the same clients); that one with draftsync's /ws.
PEER_BASELINES = {"hocuspocus-server": "draftsync-hocuspocus"}
INSTANCES_SCENARIO = "S2"  # one room x 50 clients: what several instances share


@dataclass(frozen=True, slots=True)
class RelayOptions:
    out: Path
    quick: bool
    servers: tuple[str, ...]
    scenarios: tuple[str, ...]
    progress: bool
    instances: int = 1

    def plan(self) -> list[Scenario | JoinScenario]:
        table = QUICK if self.quick else SCENARIOS
        if self.instances > 1:
            names: tuple[str, ...] = (INSTANCES_SCENARIO,)
        else:
            names = self.scenarios or (QUICK_DEFAULT if self.quick else tuple(table))
        plan: list[Scenario] = []
        for name in names:
            prefix = GROUPS.get(name)
            if prefix is None:
                plan.append(table.get(name) or SCENARIOS[name])
            else:
                plan += [
                    s
                    for key, s in table.items()
                    if key[0] == prefix and key[1:].isdigit() and isinstance(s, Scenario)
                ]  # C1 (a cold load, bench/joins.py) is not a capacity step
        return plan


@dataclass(frozen=True, slots=True)
class Setup:
    """What one row runs against: `server` as `instances` processes with the same `flags`.

    A row is labelled by its setup, so one-instance and N-instance draftsync are compared the
    same way as different servers are."""

    label: str
    server: str
    instances: int = 1
    flags: tuple[str, ...] = ()
    store: str | None = None  # None: the server's own default


@dataclass(frozen=True, slots=True)
class Comparison:
    """The setups of one run, the one whose figures are divided by every other row's, and how
    the table words that ratio."""

    setups: tuple[Setup, ...]
    baseline: str
    title: str
    ratio_header: str
    ratio_note: str
    peer_baselines: dict[str, str] = field(default_factory=dict)


def _servers_comparison(servers: Sequence[str]) -> Comparison:
    return Comparison(
        setups=tuple(Setup(name, name) for name in servers),
        baseline=BASELINE,
        title="Relay: real Yjs clients (y-websocket or Hocuspocus providers) against each server "
        "(one fresh process per run)",
        ratio_header="ds/peer p50/p99",
        ratio_note="ds/peer: draftsync (durable) p50 / p99 over this server's "
        "(< 1: draftsync lower); hocuspocus-server's over draftsync-hocuspocus's",
        peer_baselines=PEER_BASELINES,
    )


def _instances_comparison(
    instances: int, cluster: PostgresCluster, redis: RedisServer
) -> Comparison:
    """SQLite on one instance (reference), then PostgreSQL + Redis on one and on `instances`
    instances, each on a fresh database so that neither run loads the other's room."""
    shared = "postgresql+redis"

    def on_postgres(count: int) -> Setup:
        flags = ("--store", cluster.new_database(), "--redis", redis.url)
        return Setup(f"draftsync pg+redis x{count}", BASELINE, count, flags, shared)

    many = on_postgres(instances)
    return Comparison(
        setups=(Setup("draftsync sqlite x1", BASELINE, store="sqlite"), on_postgres(1), many),
        baseline=many.label,
        title=f"Relay: one room on {instances} draftsync instances vs one "
        "(real y-websocket clients)",
        ratio_header=f"x{instances}/this p50/p99",
        ratio_note=f"x{instances}/this: p50 / p99 on {instances} instances over this row's "
        "(> 1: the extra instances cost latency)",
    )


# Node client processes at most (editors are dealt round-robin, so a room's editors sit in
# different processes when there are several). On this 2-core machine one process measured best:
# more processes only took CPU from the server; at 16,000 edits/s one Node thread taking every
# edit in and out is itself the bottleneck (see README, Performance).
PROCESSES = int(os.environ.get("DRAFTSYNC_BENCH_CLIENT_PROCESSES", "1"))


async def _tell(processes: list[asyncio.subprocess.Process], line: str) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(line.encode() + b"\n")
        await process.stdin.drain()


async def _drive(
    setup: Setup,
    servers: Sequence[ServerProc],
    scenario: Scenario,
    directory: Path,
    quick: bool = False,
) -> dict[str, Any]:
    # Every instance shares the secret, so one token is good on all of them.
    urls = [server.url for server in servers]
    config = {
        **scenario.config(),
        "urls": urls,
        "token": servers[0].token,
        "protocol": servers[0].protocol,
        **({"warmUpEdits": QUICK_WARM_UP_EDITS} if quick else {}),
    }
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
            cpu_at_go = sum(server.cpu_seconds() for server in servers)
            await _tell(processes, "go")
            written = await events(*(next_event(p, "written") for p in processes))
            expect: dict[str, int] = {}
            for w in written:
                for room, sent in w["sent"].items():
                    expect[room] = expect.get(room, 0) + sent
            await _tell(processes, json.dumps({"expect": expect}))
            results = await events(*(next_event(p, "result") for p in processes))
            # While typing and draining only: connects and the clients' warm-up left out.
            typing_cpu = sum(server.cpu_seconds() for server in servers) - cpu_at_go
            for process in processes:
                await process.wait()
    except TimeoutError:
        raise ClientFailed(
            f"{scenario.name} on {setup.label}: no result within the bound"
        ) from None
    except ClientFailed as error:
        raise ClientFailed(f"{scenario.name} on {setup.label}: {error}") from None
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return {**_join(results, scenario.clients), "typing_cpu_s": typing_cpu}


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
    per_instance = Counter(int(e["instance"]) for e in editors)
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
        "clients_per_instance": [per_instance[i] for i in range(max(per_instance) + 1)],
    }


def _identity(setup: Setup, scenario: Scenario | JoinScenario) -> dict[str, object]:
    """The fields that say what a row ran, the same whether it has figures or failed."""
    if isinstance(scenario, JoinScenario):
        return {
            "scenario": scenario.name,
            "kind": "join",
            "server": setup.label,
            "instances": setup.instances,
            "store": setup.store,
            "description": scenario.describe(),
            "rooms": 1,
            "clients_per_room": scenario.joiners,
            "rate_per_client": scenario.fill_rate,
            "edits_per_client": scenario.fill_edits,
        }
    return {
        "scenario": scenario.name,
        "kind": scenario.kind,
        "server": setup.label,
        "instances": setup.instances,
        "store": setup.store,
        "description": scenario.describe(),
        "rooms": scenario.rooms,
        "clients_per_room": scenario.clients,
        "rate_per_client": scenario.rate,
        "edits_per_client": scenario.edits,
    }


async def _settle_after_start(quick: bool) -> None:
    await asyncio.sleep(QUICK_START_SETTLE_SECONDS if quick else START_SETTLE_SECONDS)


async def _settled_rss(servers: Sequence[ServerProc], quick: bool) -> float:
    await asyncio.sleep(QUICK_AFTER_LOAD_SECONDS if quick else AFTER_LOAD_SECONDS)
    return sum(server.rss_mb() for server in servers)


def _flags(setup: Setup, quick: bool) -> tuple[str, ...]:
    return setup.flags + (QUICK_FLAGS if quick and setup.server.startswith(BASELINE) else ())


async def _one_join(
    setup: Setup, scenario: JoinScenario, directory: Path, quick: bool
) -> dict[str, object]:
    server = ServerProc(setup.server, directory / "instance-0", flags=_flags(setup, quick))
    room = f"{scenario.name}-{uuid.uuid4().hex[:8]}"
    try:
        await asyncio.to_thread(server.start)
        await _settle_after_start(quick)
        idle = server.rss_mb()
        outcome = await run_join(server, scenario, directory, room)
        after = await _settled_rss([server], quick)
    finally:
        await asyncio.to_thread(server.stop)
    return {
        **_identity(setup, scenario),
        **outcome,
        "idle_rss_mb": outcome.get("idle_rss_mb", idle),  # C1: its last process's
        "after_rss_mb": after,
        "error": None,
    }


async def _one(
    setup: Setup, scenario: Scenario | JoinScenario, directory: Path, quick: bool = False
) -> dict[str, object]:
    if isinstance(scenario, JoinScenario):
        return await _one_join(setup, scenario, directory, quick)
    if scenario.kind == "connections":
        return await _one_connections(setup, scenario, directory, quick)
    servers = [
        ServerProc(setup.server, directory / f"instance-{k}", flags=_flags(setup, quick))
        for k in range(setup.instances)
    ]
    try:
        for server in servers:
            await asyncio.to_thread(server.start)
        await _settle_after_start(quick)
        idle = sum(server.rss_mb() for server in servers)
        cpu_before = sum(server.cpu_seconds() for server in servers)
        outcome = await _drive(setup, servers, scenario, directory, quick)
        # Summed over instances: what the deployment as a whole spent on the room.
        cpu = sum(server.cpu_seconds() for server in servers) - cpu_before
        rss = sum(server.peak_rss_mb() for server in servers)
        after = await _settled_rss(servers, quick)
    finally:
        for server in servers:  # never started ones are a no-op
            await asyncio.to_thread(server.stop)
    expected = int(outcome["expected"])
    delivered = int(outcome["delivered"])
    return {
        **_identity(setup, scenario),
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
        "typing_cpu_s": outcome["typing_cpu_s"],
        "peak_rss_mb": rss,
        "idle_rss_mb": idle,
        "after_rss_mb": after,
        "closes": outcome["closes"],
        "close_codes": outcome["close_codes"],
        "convergent": outcome["convergent"],
        "client_processes": outcome["client_processes"],
        "clients_per_instance": outcome["clients_per_instance"],
        "error": None,
    }


async def _one_connections(
    setup: Setup, scenario: Scenario, directory: Path, quick: bool
) -> dict[str, object]:
    server = ServerProc(setup.server, directory / "instance-0", flags=_flags(setup, quick))
    try:
        await asyncio.to_thread(server.start)
        await _settle_after_start(quick)
        idle = server.rss_mb()  # as every other row's: started, no client yet
        figures = await drive_connections(
            server,
            scenario.clients,
            directory,
            budget=scenario.budget(),
            settle=QUICK_CONNECTIONS_SETTLE_SECONDS if quick else SETTLE_SECONDS,
        )
        rss = server.peak_rss_mb()
        after = await _settled_rss([server], quick)  # every connection closed, room unloaded
    except TimeoutError:
        bound = f"{scenario.name} on {setup.label}: no result within the bound"
        raise ClientFailed(bound) from None
    except ClientFailed as error:
        raise ClientFailed(f"{scenario.name} on {setup.label}: {error}") from None
    finally:
        await asyncio.to_thread(server.stop)
    return {
        **_failed(setup, scenario, ""),
        **figures,
        "peak_rss_mb": rss,
        "idle_rss_mb": idle,
        "after_rss_mb": after,
        "error": None,
    }


def _failed(setup: Setup, scenario: Scenario | JoinScenario, error: str) -> dict[str, object]:
    figures = ("sent", "expected_deliveries", "delivered", "p50_ms", "p95_ms", "p99_ms")
    more = ("max_ms", "write_seconds", "server_cpu_s", "typing_cpu_s", "peak_rss_mb", "closes")
    more += ("client_processes", "idle_rss_mb", "after_rss_mb")
    return {
        **_identity(setup, scenario),
        **dict.fromkeys(figures + more),
        "clients_per_instance": [],
        "delivered_pct": 0.0,
        "close_codes": [],
        "convergent": False,
        "error": error,
    }


def _ratios(
    rows: Sequence[dict[str, object]], baseline: str, peer_baselines: dict[str, str] | None = None
) -> list[dict[str, object]]:
    """baseline / each other row, per scenario: below 1 means the baseline is lower. A row named
    in `peer_baselines` is divided into its own baseline there, if that ran."""

    def ratio(a: object, b: object) -> float | None:
        if not isinstance(a, int | float) or not isinstance(b, int | float) or b == 0:
            return None
        return float(a) / float(b)

    out = []
    by_key = {(r["scenario"], r["server"]): r for r in rows}
    for (scenario, server), peer in by_key.items():
        base_name = (peer_baselines or {}).get(str(server), baseline)
        if (scenario, base_name) not in by_key:
            base_name = baseline
        base = by_key.get((scenario, base_name))
        if server == base_name or base is None:
            continue
        out.append(
            {
                "scenario": scenario,
                "peer": server,
                "baseline": base_name,
                **{
                    f"{key}_ratio": ratio(base[key], peer[key])
                    for key in ("p50_ms", "p95_ms", "p99_ms", "server_cpu_s", "peak_rss_mb")
                },
            }
        )
    return out


async def _measure(options: RelayOptions, comparison: Comparison) -> dict[str, object]:
    env = environment()
    plan = options.plan()
    setups = comparison.setups
    rows = []
    steps = progress(
        desc="relay", total=len(plan) * len(setups), unit="run", enabled=options.progress
    )
    with tempfile.TemporaryDirectory(prefix="draftsync-relay-") as tmp:
        for scenario in plan:
            for setup in setups:  # servers interleaved within each scenario
                if isinstance(scenario, JoinScenario) and (
                    (setup.server in MEMORY_ONLY and scenario.restart) or setup.instances > 1
                ):
                    steps.update(1)  # an in-memory server keeps nothing across a restart
                    continue
                if (
                    isinstance(scenario, Scenario)
                    and scenario.kind == "connections"
                    and setup.server in HOCUSPOCUS_SERVERS
                ):
                    steps.update(1)  # the connections client speaks y-websocket only
                    continue
                steps.set_postfix_str(f"{scenario.name} {setup.label}")
                where = Path(tmp) / f"{scenario.name}-{setup.label.replace(' ', '-')}"
                try:
                    rows.append(await _one(setup, scenario, where, options.quick))
                except RuntimeError as error:  # ClientFailed, or a server that did not start
                    # One server failing a scenario (e.g. not all clients synced in time) is a
                    # result, not the end of the run: the row says so and has no figures.
                    log.warning("%s on %s failed: %s", scenario.name, setup.label, error)
                    rows.append(_failed(setup, scenario, str(error)))
                steps.update(1)
    steps.close()
    return {
        "bench": "relay",
        "quick": options.quick,
        "instances": options.instances,
        "environment": env,
        "settings": {
            "servers": [setup.label for setup in setups],
            "scenarios": {s.name: s.describe() for s in plan},
            "baseline": comparison.baseline,
            "title": comparison.title,
            "ratio_header": comparison.ratio_header,
            "ratio_note": comparison.ratio_note,
            "client": "bench/node/client.mjs: yjs 13.6.33, y-websocket 3.1.0 WebsocketProviders; "
            "@hocuspocus/provider 4.8.0 HocuspocusProviders (one socket each) for "
            f"{', '.join(HOCUSPOCUS_SERVERS)}",
            "latency": "typed on one client -> integrated on another, from Yjs (client, clock)",
        },
        "rows": rows,
        "ratios": _ratios(rows, comparison.baseline, comparison.peer_baselines),
        "capacity": capacity_summary(rows),
    }


def _table(result: dict[str, object]) -> str:
    rows = result["rows"]
    ratios = {(r["scenario"], r["peer"]): r for r in result["ratios"]}  # type: ignore[attr-defined]
    shown = []
    for row in rows:  # type: ignore[attr-defined]
        if row["kind"] == "connections":  # their own table (connections_table)
            continue
        r = ratios.get((row["scenario"], row["server"]))
        shown.append(
            {
                **row,
                "after_idle": after_over_idle(row),
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
            settings["ratio_note"],
            "cpu s, rss MB: the server's, summed over its instances; idle MB: RSS before any "
            "client, after MB: RSS once the clients left and the rooms unloaded",
            "J1, C1: p50/p95/p99 = time from connect to synced per joiner; deliv % = joiners "
            "synced with the whole draft; cpu s = during the joins",
            *(
                f"FAILED {r['scenario']} on {r['server']}: {r['error']}"
                for r in rows  # type: ignore[attr-defined]
                if r.get("error")
            ),
        ]
    )
    more = (
        capacity_table(result["capacity"], str(result["settings"]["baseline"])),  # type: ignore[index, arg-type]
        connections_table(rows),  # type: ignore[arg-type]
    )
    first = [_relay_table(settings, shown, footer)] if shown else []  # only N rows: none
    return "\n\n".join([*first, *(t for t in more if t)])


def _relay_table(settings: dict[str, Any], shown: list[dict[str, Any]], footer: str) -> str:
    return format_table(
        settings["title"],
        [
            Column("scenario", "scen"),
            Column("server", "server"),
            Column("p50_ms", "p50 ms"),
            Column("p95_ms", "p95 ms"),
            Column("p99_ms", "p99 ms"),
            Column("delivered_pct", "deliv %"),
            Column("server_cpu_s", "cpu s"),
            Column("peak_rss_mb", "rss MB"),
            Column("idle_rss_mb", "idle MB"),
            Column("after_rss_mb", "after MB"),
            Column("after_idle", "after/idle"),
            Column("vs", settings["ratio_header"]),
        ],
        shown,
        footer=footer,
    )


async def run_relay(options: RelayOptions) -> dict[str, object]:
    unknown = set(options.servers) - set(SERVERS)
    if unknown:
        raise ValueError(f"unknown servers {sorted(unknown)}; known: {', '.join(SERVERS)}")
    if not node_ready():
        raise RuntimeError(f"no node_modules in {NODE_DIR}: run `npm ci` there (make bench-node)")
    if options.instances > 1:
        # Started and stopped synchronously: nothing else runs on the loop meanwhile.
        with postgres_and_redis() as (cluster, redis):
            comparison = _instances_comparison(options.instances, cluster, redis)
            result = await _measure(options, comparison)
    else:
        result = await _measure(options, _servers_comparison(options.servers))
    plot = plot_relay_instances if options.instances > 1 else _plot
    publish(result, options.out, "relay", plot, _table(result))
    return result


def _plot(result: dict[str, Any], path: Path) -> None:
    """relay.png: latency and CPU of the relay runs; relay-scaling.png beside it when the
    capacity steps or the connections scenario ran."""
    relay_rows = [r for r in result["rows"] if r["kind"] != "connections"]
    plot_relay({**result, "rows": relay_rows}, path)
    if result["capacity"]["servers"] or len(relay_rows) < len(result["rows"]):
        plot_scaling(result, path.with_name("relay-scaling.png"))
