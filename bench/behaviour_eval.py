"""Evaluation of the flow-behaviour mining detector (beh.periodic_low_rate).

Builds the canonical flows of the real corpus (nDPI captures, Slips captures and Zeek
conn logs) with the project's readers, labels the real mining flows, adds positives
from a loopback TLS replay of real stratum sessions, runs the detector SQL on DuckDB
with payload heads withheld, and prints precision / recall / FPR per flow and per host.

    PYTHONPATH=src .venv/bin/python bench/behaviour_eval.py [--no-replay] [--speed 10]
        [--replay-pcap tests/data/behaviour/replay_tls_stratum.pcap]   # reuse the bundled replay

It also shows where every session passing the shape rules sits on the message rules,
and scores the same flows without the message view (older data) and as a NetFlow
exporter gives them. Results: bench/behaviour_eval.md.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

import duckdb
import pyarrow as pa

from minewatch.errors import InputError
from minewatch.schema.flows import FLOWS, MESSAGE_FIELDS
from minewatch.sources import ReadStats

CORPUS = Path(os.environ.get("MINEWATCH_CORPUS", "/work/shared/corpus"))
HEADS = ("src_payload_head", "dst_payload_head")


def read_capture_flows(path: str) -> pa.Table | None:
    """All flows of one capture (fast reader, nfstream for link types it lacks), heads withheld."""
    from minewatch.sources.pcap import UnsupportedCapture, read_pcap

    batches = []
    try:
        try:
            batches = list(read_pcap(path, stats=ReadStats(path)))
        except UnsupportedCapture:
            from minewatch.sources.nfstream_source import read_nfstream

            batches = list(read_nfstream(path, stats=ReadStats(path)))
    except InputError as exc:
        print(f"skipped {path}: {exc}", file=sys.stderr)
    if not batches:
        return None
    return withhold_payload(pa.Table.from_batches(batches, schema=FLOWS))


def withhold_payload(table: pa.Table) -> pa.Table:
    """The detector must not see payload: null the heads (as if the traffic were encrypted)."""
    for name in HEADS:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pa.nulls(table.num_rows, pa.binary()))
    return table


FLOW_ONLY_NULLS = ("src_payload_packets", "dst_payload_packets", "src_payload_bytes", "dst_payload_bytes",
                   "src_iat_mean_ms", "src_iat_std_ms") + MESSAGE_FIELDS


def _null_columns(table: pa.Table, names) -> pa.Table:
    for name in names:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), pa.nulls(table.num_rows, table.schema.field(i).type))
    return table


def as_flow_export(table: pa.Table) -> pa.Table:
    """The same flows as a NetFlow/IPFIX exporter would give them: no payload counts,
    no inter-arrival statistics, no messages (packets, IP bytes, flags and times only)."""
    return _null_columns(table, FLOW_ONLY_NULLS)


def without_messages(table: pa.Table) -> pa.Table:
    """The flows as the reader gave them before it measured messages (payload counts and
    the src side's payload-packet timing only): what detector v2 falls back to."""
    return _null_columns(table, MESSAGE_FIELDS)


# the message rules switched off: to show where every session sits on them
NO_MESSAGE_RULES = {"max_client_size_cv": 1e9, "max_msg_iat_cv": 1e9}


def message_features(flows: pa.Table, params: dict | None = None) -> list[tuple]:
    """(file, client, server, port, client size CV, client msg IAT CV, server msg IAT CV)
    of every session passing the other rules."""
    import json

    from minewatch.detect.behaviour import run

    con = duckdb.connect()
    con.register("flows", flows)
    out = []
    for row in run(con, dict(NO_MESSAGE_RULES, **(params or {}))).to_pylist():
        d = json.loads(row["details"])
        out.append((Path(row["source_file"]).name, row["src_ip"], row["dst_ip"], row["dst_port"],
                    d.get("client_size_cv"), d.get("client_iat_cv"), d.get("server_iat_cv")))
    return out


def read_zeek_flows(path: str) -> pa.Table | None:
    from minewatch.sources._records import SourceStats
    from minewatch.sources.zeek import read_zeek

    stats = SourceStats(path) if "path" in SourceStats.__dataclass_fields__ else SourceStats()
    batches = [b for kind, b in read_zeek(path, stats=stats) if kind == "flows"]
    return pa.Table.from_batches(batches, schema=FLOWS) if batches else None


def corpus_flows(cache: Path | None = None) -> pa.Table:
    """Flows of every corpus capture and Zeek conn log, heads withheld; cached as Parquet."""
    import pyarrow.parquet as pq

    if cache is not None and cache.exists():
        return pq.read_table(cache)
    captures = sorted(glob.glob(str(CORPUS / "ndpi/pcap/*")))
    captures += sorted(glob.glob(str(CORPUS / "slips/**/*.pcap"), recursive=True))
    tables = [t for t in map(read_capture_flows, captures) if t is not None]
    conns = sorted(glob.glob(str(CORPUS / "slips/**/conn.log*"), recursive=True))
    tables += [t for t in map(read_zeek_flows, conns) if t is not None]
    table = pa.concat_tables(tables)
    if cache is not None:
        pq.write_table(table, cache)
    return table


# --- real positives --------------------------------------------------------------------

MINING_LABEL = "Mining"


def ndpi_mining_sessions() -> set[tuple[str, str, int]]:
    """(client ip, server ip, server port) of the flows nDPI labels Mining."""
    import csv

    out = set()
    with open(CORPUS / "ndpi/ndpi_flows.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["ndpi_category"] == MINING_LABEL:
                client = row["endpoint_a"].rsplit(":", 1)[0]
                server, port = row["endpoint_b"].rsplit(":", 1)
                out.add((row["pcap"], client, server, int(port)))
    return out


# --- stratum conversations taken from the real captures ---------------------------------

COALESCE_S = 0.005  # segments of one side closer than this are one application message


def stratum_conversations(pcap: Path, sessions: set[tuple[str, str, int]]) -> dict:
    """Per mining session of a real capture: [(offset_s, 'c'|'s', payload bytes)], with
    back-to-back segments of one side joined into one message. Payload content is not kept."""
    import socket

    import dpkt

    convs: dict[tuple, list] = {key: [] for key in sessions}
    first: dict[tuple, float] = {}
    with open(pcap, "rb") as f:
        is_ng = f.read(4) == b"\x0a\x0d\x0d\x0a"
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if is_ng else dpkt.pcap.Reader(f)
        for ts, buf in reader:
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            src, dst = socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)
            if (src, dst, tcp.dport) in convs:
                key, side = (src, dst, tcp.dport), "c"
            elif (dst, src, tcp.sport) in convs:
                key, side = (dst, src, tcp.sport), "s"
            else:
                continue
            first.setdefault(key, float(ts))
            if not tcp.data:
                continue
            msgs, t = convs[key], float(ts) - first[key]
            if msgs and msgs[-1][1] == side and t - msgs[-1][0] - msgs[-1][3] <= COALESCE_S:
                off, s, size, spread = msgs[-1]
                msgs[-1] = (off, s, size + len(tcp.data), t - off)
            else:
                msgs.append((t, side, len(tcp.data), 0.0))
    return {k: [(round(t, 6), s, n) for t, s, n, _ in v] for k, v in convs.items() if v}


# --- loopback TLS replay ----------------------------------------------------------------

REPLAY_SERVER_IP = "127.0.0.1"
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
TLS_VERSIONS = ("TLSv1.3", "TLSv1.2")


def self_signed_cert(workdir: Path) -> tuple[Path, Path]:
    """A throw-away certificate for the replay pool, made with the openssl CLI."""
    import subprocess

    cert, key = workdir / "pool.crt", workdir / "pool.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=pool.replay.invalid", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


class LoopbackCapture:
    """Capture TCP packets to/from given ports on `lo` with an AF_PACKET socket (root)."""

    def __init__(self, ports: set[int]):
        import socket
        import threading

        self.ports = ports
        self.packets: list[tuple[float, bytes]] = []
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import time

        while not self.stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(1 << 17)
            except TimeoutError:
                continue
            if addr[2] == PACKET_OUTGOING or len(frame) < 54 or frame[12:14] != b"\x08\x00":
                continue  # each loopback packet is seen going out and coming in: keep one
            ihl = (frame[14] & 0x0F) * 4
            if frame[23] != 6:
                continue
            sport = int.from_bytes(frame[14 + ihl:16 + ihl], "big")
            dport = int.from_bytes(frame[16 + ihl:18 + ihl], "big")
            if sport in self.ports or dport in self.ports:
                self.packets.append((time.time(), frame))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()

    def write_pcap(self, path: Path, speed: float = 1.0) -> None:
        """Classic pcap, Ethernet; with speed > 1 the times are stretched back by `speed`
        so that the flows have the real sessions' durations."""
        import struct

        t0 = self.packets[0][0] if self.packets else 0.0
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 1 << 18, 1))
            for ts, frame in self.packets:
                ts = t0 + (ts - t0) * speed
                sec = int(ts)
                f.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
                f.write(frame)


async def _replay_side(conv, side: str, reader, writer, t0: float, speed: float) -> None:
    """Send this side's messages at their recorded offsets; read whatever the peer sends.
    The client closes one second after the conversation's last message; the server
    closes when the client has."""
    import asyncio
    import os
    import ssl

    async def drain_reads():
        try:
            while await reader.read(1 << 16):
                pass
        except (ssl.SSLError, ConnectionError):
            pass

    reads = asyncio.create_task(drain_reads())
    loop = asyncio.get_running_loop()
    for offset, who, size in conv:
        if who != side:
            continue
        await asyncio.sleep(max(0.0, t0 + offset / speed - loop.time()))
        writer.write(os.urandom(size))  # content is irrelevant: only sizes and times are replayed
        await writer.drain()
    if side == "c":
        await asyncio.sleep(max(0.0, t0 + conv[-1][0] / speed + 1.0 - loop.time()))
    else:
        await reads
    writer.close()
    try:
        await writer.wait_closed()
    except (ssl.SSLError, ConnectionError):
        pass
    reads.cancel()


async def _replay_session(conv, client_ip: str, port: int, tls_version: str, cert: Path, key: Path,
                          speed: float) -> None:
    import asyncio
    import ssl

    version = getattr(ssl.TLSVersion, tls_version.replace(".", "_"))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.minimum_version = server_ctx.maximum_version = version
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cert)
    client_ctx.check_hostname = False
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def serve(reader, writer):
        await _replay_side(conv, "s", reader, writer, t0, speed)
        done.set()

    server = await asyncio.start_server(serve, REPLAY_SERVER_IP, port, ssl=server_ctx)
    reader, writer = await asyncio.open_connection(
        REPLAY_SERVER_IP, port, ssl=client_ctx, local_addr=(client_ip, 0),
        server_hostname="pool.replay.invalid")
    await _replay_side(conv, "c", reader, writer, t0, speed)
    await done.wait()
    server.close()
    await server.wait_closed()


def replay_sessions(convs: dict, out: Path, speed: float = 1.0) -> list[dict]:
    """Replay every conversation over TLS 1.3 and TLS 1.2 on loopback, concurrently,
    capturing to `out`. Returns one label row per replayed session."""
    import asyncio
    import tempfile

    plan = []
    clients: dict[tuple[str, str], str] = {}  # (real client, TLS version) -> loopback client
    for i, (key, conv) in enumerate(sorted(convs.items())):
        for j, version in enumerate(TLS_VERSIONS):
            n = len(plan) + 1
            # one real host stays one replayed host: its backup pool beside its mining session
            client_ip = clients.setdefault((key[0], version), f"127.0.1.{len(clients) + 1}")
            plan.append({"client_ip": client_ip, "server_ip": REPLAY_SERVER_IP,
                         "server_port": 13300 + n, "tls": version, "from": "%s -> %s:%d" % key,
                         "conv": conv})
    with tempfile.TemporaryDirectory() as tmp:
        cert, key_file = self_signed_cert(Path(tmp))

        async def run_all():
            await asyncio.gather(*(
                _replay_session(p["conv"], p["client_ip"], p["server_port"], p["tls"], cert, key_file, speed)
                for p in plan))

        with LoopbackCapture({p["server_port"] for p in plan}) as cap:
            asyncio.run(run_all())
        cap.write_pcap(out, speed)
    return [{k: v for k, v in p.items() if k != "conv"} for p in plan]


# --- scoring ----------------------------------------------------------------------------

def argus_flows() -> pa.Table | None:
    """The Slips Argus `*.binetflow` exports (real third-party flow records, read as
    ingest reads them: reverse counts = totals less the source's), or None without them."""
    from minewatch.sources._records import SourceStats
    from minewatch.sources.tabular import read_tabular

    tables = []
    for path in sorted(glob.glob(str(CORPUS / "slips" / "*.binetflow"))):
        batches = [b for _, b in read_tabular(path, None, stats=SourceStats(path))]
        if batches:
            tables.append(pa.Table.from_batches(batches).cast(FLOWS))
    return pa.concat_tables(tables) if tables else None


def label_and_score(flows: pa.Table, positive_sessions: set[tuple[str, str, str, int]],
                    params: dict | None = None) -> dict:
    """Confusion counts per flow record, per conversation and per host. A flow is positive
    when its (file name, client, server, server port) is a labelled mining session; a
    conversation is all flows of one (file, client, server, server port), nDPI's unit; a
    host is (file, client ip), positive when any of its flows is, flagged when any
    evidence names it."""
    from minewatch.detect.behaviour import flagged_flows, run

    con = duckdb.connect()
    con.register("flows", flows)
    con.register("flagged", flagged_flows(con, params))
    con.register("hits", run(con, params))
    con.register("positive", pa.table({
        "pcap": [p[0] for p in positive_sessions], "client": [p[1] for p in positive_sessions],
        "server": [p[2] for p in positive_sessions], "port": [p[3] for p in positive_sessions]}))
    rows = con.sql("""
        WITH f AS (
            SELECT source_file, flow_ref, regexp_extract(source_file, '[^/]+$') AS pcap,
                   CASE WHEN src_port < dst_port THEN dst_ip ELSE src_ip END AS client,
                   CASE WHEN src_port < dst_port THEN src_ip ELSE dst_ip END AS server,
                   CASE WHEN src_port < dst_port THEN src_port ELSE dst_port END AS port
            FROM flows
        ),
        labelled AS (
            SELECT f.*, p.pcap IS NOT NULL AS positive, g.flow_ref IS NOT NULL AS flagged
            FROM f
            LEFT JOIN positive p ON f.pcap = p.pcap AND f.client = p.client AND f.server = p.server AND f.port = p.port
            LEFT JOIN flagged g ON f.source_file = g.source_file AND f.flow_ref = g.flow_ref
        ),
        hosts AS (
            SELECT l.source_file, l.client, bool_or(l.positive) AS positive,
                   bool_or(l.flagged) OR bool_or(h.src_ip IS NOT NULL) AS flagged
            FROM labelled l LEFT JOIN hits h ON h.source_file = l.source_file AND h.src_ip = l.client
            GROUP BY 1, 2
        )
        SELECT 'flow' AS unit, positive, flagged, count(*) AS n FROM labelled GROUP BY ALL
        UNION ALL
        SELECT 'conversation', positive, flagged, count(*) FROM (
            SELECT bool_or(positive) AS positive, bool_or(flagged) AS flagged
            FROM labelled GROUP BY source_file, client, server, port) GROUP BY ALL
        UNION ALL
        SELECT 'host', positive, flagged, count(*) FROM hosts GROUP BY ALL
    """).fetchall()
    false_hits = con.sql("""
        SELECT regexp_extract(h.source_file, '[^/]+$') AS pcap, h.src_ip, h.dst_ip, h.dst_port, h.summary
        FROM hits h
        WHERE NOT EXISTS (SELECT 1 FROM positive p
                          WHERE p.pcap = regexp_extract(h.source_file, '[^/]+$') AND p.client = h.src_ip
                            AND p.server = h.dst_ip AND p.port = h.dst_port)
    """).fetchall()
    counts = {}
    for unit, positive, flagged, n in rows:
        key = ("tp" if flagged else "fn") if positive else ("fp" if flagged else "tn")
        counts.setdefault(unit, dict(tp=0, fp=0, fn=0, tn=0))[key] += n
    return {"counts": counts, "false_hits": false_hits, "evidence": con.sql("SELECT * FROM hits").fetchall()}


def rates(c: dict) -> dict:
    def div(a, b):
        return a / b if b else float("nan")

    return {"precision": div(c["tp"], c["tp"] + c["fp"]), "recall": div(c["tp"], c["tp"] + c["fn"]),
            "fpr": div(c["fp"], c["fp"] + c["tn"])}


def markdown_table(title: str, counts: dict) -> str:
    lines = [f"**{title}**", "", "| unit | positives | negatives | TP | FN | FP | precision | recall | FPR |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for unit in ("flow", "conversation", "host"):
        c = counts.get(unit, dict(tp=0, fp=0, fn=0, tn=0))
        r = rates(c)
        lines.append(f"| {unit} | {c['tp'] + c['fn']} | {c['fp'] + c['tn']} | {c['tp']} | {c['fn']} | {c['fp']} "
                     f"| {r['precision']:.3f} | {r['recall']:.3f} | {100 * r['fpr']:.3f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/minewatch_behaviour_corpus.parquet"))
    ap.add_argument("--replay-pcap", type=Path, default=Path("/tmp/minewatch_behaviour_replay.pcap"),
                    help="reuse this replay capture when it exists, else record it")
    ap.add_argument("--no-replay", action="store_true")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="replay time compression; capture times are stretched back by it")
    args = ap.parse_args(argv)

    real = corpus_flows(args.cache)
    labels = ndpi_mining_sessions()
    scored = label_and_score(real, labels)
    print(f"real corpus: {real.num_rows} flows from nDPI and Slips captures and Slips Zeek conn logs; "
          f"positives: the {len(labels)} sessions nDPI labels Mining, payload withheld\n")
    print(markdown_table("Real traffic", scored["counts"]))
    print("\nFalse positives (real):")
    for pcap, src, dst, port, summary in scored["false_hits"]:
        print(f"- {pcap}: {src} -> {dst}:{port}: {summary}")
    print("\nEvidence on the labelled mining sessions:")
    for row in scored["evidence"]:
        if (Path(row[0]).name, row[4], row[6], row[7]) in labels:
            print(f"- {Path(row[0]).name}: {row[4]} -> {row[6]}:{row[7]}: {row[12]}")

    print("\nMessage features of every session passing the other rules (message rules off; "
          "limits: client size CV <= 1.0, message IAT CV <= 1.5 each side):\n")
    print("| capture | session | labelled mining | client size CV | client IAT CV | server IAT CV |")
    print("|---|---|---|---:|---:|---:|")
    for pcap, src, dst, port, size_cv, c_iat, s_iat in message_features(real):
        mining = "yes" if (pcap, src, dst, port) in labels else ""
        print(f"| {pcap} | {src} -> {dst}:{port} | {mining} | {size_cv} | {c_iat} | {s_iat} |")

    older = label_and_score(without_messages(real), labels)
    print()
    print(markdown_table("Real traffic without the message view (payload counts and packet timing only: "
                         "the rules of v1 plus the held-connection rule)", older["counts"]))
    for pcap, src, dst, port, summary in older["false_hits"]:
        print(f"- false positive: {pcap}: {src} -> {dst}:{port}")

    exported = label_and_score(as_flow_export(real), labels)
    print()
    print(markdown_table("Real traffic as a flow exporter gives it (no payload counts, no inter-arrival times)",
                         exported["counts"]))
    for pcap, src, dst, port, summary in exported["false_hits"]:
        print(f"- false positive: {pcap}: {src} -> {dst}:{port}")

    argus = argus_flows()
    if argus is not None:
        in_argus = label_and_score(argus, set())
        print()
        print(markdown_table(f"Argus flow exports ({argus.num_rows:,} real flows of the Slips *.binetflow files; "
                             "no mining in them; packets and bytes only)", in_argus["counts"]))
        ports = {}
        for pcap, src, dst, port, summary in in_argus["false_hits"]:
            ports[port] = ports.get(port, 0) + 1
        print("- flagged sessions by server port: " + ", ".join(f"{p}: {n}" for p, n in sorted(ports.items(),
                                                                                           key=lambda x: -x[1])))

    if args.no_replay:
        return 0
    if not args.replay_pcap.exists():
        convs = stratum_conversations(CORPUS / "ndpi/pcap/mining.pcapng", {l[1:] for l in labels})
        print(f"\nrecording the TLS replay of {len(convs)} sessions x {len(TLS_VERSIONS)} TLS versions "
              f"at speed {args.speed} (about {1155 / args.speed:.0f} s)...", file=sys.stderr)
        replay_sessions(convs, args.replay_pcap, args.speed)
    replay = read_capture_flows(str(args.replay_pcap))
    name = args.replay_pcap.name
    replay_labels = {(name, r["client_ip"], r["server_ip"], r["server_port"])
                     for r in replay.select(["src_ip", "dst_ip", "dst_port"]).to_pylist()
                     if r["dst_ip"] == REPLAY_SERVER_IP
                     for r in [{"client_ip": r["src_ip"], "server_ip": r["dst_ip"], "server_port": r["dst_port"]}]}
    combined = pa.concat_tables([real, replay])
    rscored = label_and_score(combined, labels | replay_labels)
    rc = rscored["counts"]
    replay_only = {u: dict(tp=rc[u]["tp"] - scored["counts"][u]["tp"], fn=rc[u]["fn"] - scored["counts"][u]["fn"],
                           fp=rc[u]["fp"], tn=rc[u]["tn"]) for u in rc}
    print()
    print(markdown_table("Replayed stratum over TLS on loopback (positives), real negatives", replay_only))
    print("\nEvidence on the replayed sessions:")
    for row in rscored["evidence"]:
        if Path(row[0]).name == name:
            print(f"- {row[4]} -> {row[6]}:{row[7]}: {row[12]}")
    print("\nMessage features of the replayed sessions (message rules off):")
    for pcap, src, dst, port, size_cv, c_iat, s_iat in message_features(replay):
        print(f"- {src} -> {dst}:{port}: client size CV {size_cv}, client IAT CV {c_iat}, server IAT CV {s_iat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
