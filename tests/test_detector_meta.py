"""Meta-tests over the registry: every flow detector has a positive example that survives the
whole pipeline (vectorised prefilter included) and shared negatives that must stay silent."""

import struct
from pathlib import Path

import pyarrow as pa
import pytest

from minewatch.detect import Context, load_all
from minewatch.evidence import detect_flows
from minewatch.intel import IntelSet
from minewatch.schema import FLOWS

DATA = Path(__file__).parent / "data" / "protocols"


def _dns_query(name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)


def _dns_response(name: str, address: str) -> bytes:
    query = _dns_query(name)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(int(x) for x in address.split("."))
    return query[:2] + b"\x81\x80" + query[4:6] + b"\x00\x01" + query[8:] + answer


def _pair(case: str) -> tuple[bytes, bytes]:
    def read(*names):
        return next(((DATA / n).read_bytes() for n in names if (DATA / n).exists()), b"")

    return read(f"{case}.miner.txt", f"{case}.client.txt", f"{case}.src.bin"), read(
        f"{case}.pool.txt", f"{case}.server.txt", f"{case}.dst.bin")


def _batch(rows: list[dict]) -> pa.RecordBatch:
    full = []
    for i, r in enumerate(rows):
        src, dst = r.get("src", b""), r.get("dst", b"")
        proto = r.get("proto", 6)
        full.append({
            "source_file": "meta.pcap", "flow_ref": i, "ts_start": 1_600_000_000_000_000 + i,
            "ts_end": 1_600_000_060_000_000 + i, "src_ip": r.get("src_ip", "10.0.0.7"),
            "src_port": r.get("src_port", 50123), "dst_ip": r.get("dst_ip", "203.0.113.9"),
            "dst_port": r.get("dst_port", 3333), "ip_proto": proto, "l4": {6: "TCP", 17: "UDP"}[proto],
            "src_packets": 10, "dst_packets": 10, "src_bytes": len(src) + 400, "dst_bytes": len(dst) + 400,
            "src_payload_packets": r.get("src_pkts", max(1, src.count(b"\n"))) if src else 0,
            "dst_payload_packets": r.get("dst_pkts", max(1, dst.count(b"\n"))) if dst else 0,
            "src_payload_bytes": len(src), "dst_payload_bytes": len(dst),
            "src_payload_head": src[:2048], "dst_payload_head": dst[:2048],
        })
    return pa.RecordBatch.from_pylist(full, schema=FLOWS)


def _flow(case: str, **kw) -> dict:
    src, dst = _pair(case)
    return {"src": src, "dst": dst, **kw}


# detector id -> flows (as the capture would give them) that must produce its evidence
POSITIVES = {
    "proto.stratum_v1": [_flow("stratum_btc"), _flow("stratum_midconv")],
    "proto.cryptonote": [_flow("xmrig", dst_port=443)],
    "proto.eth_stratum": [_flow("ethproxy", dst_port=8008), _flow("es1")],
    "proto.getwork": [_flow("getwork", dst_port=8332)],
    "p2p.bitcoin": [_flow("bitcoin_55317", dst_port=8333)],
    "p2p.ethereum": [_flow("ethereum_rlpx_56610", dst_port=30303),
                     {"src": (DATA / "ethereum_discv4.src.bin").read_bytes(), "proto": 17,
                      "src_port": 30303, "dst_port": 30303, "src_pkts": 1}],
    "p2p.monero": [_flow("monero_48882", dst_port=18080)],
    "p2p.nano": [_flow("nano", dst_port=7075)],
    "intel.pool_domain": [
        {"src": _dns_query("pool.supportxmr.com"), "proto": 17, "dst_port": 53},
        {"src": b"GET / HTTP/1.1\r\nHost: xmr.pool.minergate.com\r\n\r\n", "dst_port": 80},
    ],
    "intel.pool_ip": [{"src": b"\x17\x03\x03\x00\x20" + bytes(32), "dst_ip": "198.51.100.77", "dst_port": 443}],
    # a batch: the DNS answer first, then an encrypted connection to the address it gave
    "intel.pool_resolved_ip": [[
        {"dst": _dns_response("pool.supportxmr.com", "203.0.113.5"), "proto": 17, "dst_port": 53},
        {"src": b"\x17\x03\x03\x00\x20" + bytes(32), "dst_ip": "203.0.113.5", "dst_port": 443},
    ]],
}
NEGATIVE_CASES = ["neg_echo", "neg_eth_node", "neg_lsp", "neg_lsp_bare", "neg_wallet", "neg_weblogin"]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    ips = tmp_path_factory.mktemp("intel") / "pool-ips.txt"
    ips.write_text("# test list\n198.51.100.77:443\n")
    return Context(intel=IntelSet.load(extra_files=[str(ips)]))


def test_every_flow_detector_has_a_positive_example():
    assert set(load_all()) == set(POSITIVES)


@pytest.mark.parametrize("detector_id", sorted(POSITIVES))
def test_positive_examples_survive_the_pipeline(detector_id, ctx):
    detectors = list(load_all().values())
    for example in POSITIVES[detector_id]:
        rows = example if isinstance(example, list) else [example]
        evidence = detect_flows(_batch(rows), detectors, Context(intel=ctx.intel))
        found = set(evidence.column("detector").to_pylist())
        assert detector_id in found, (detector_id, rows[-1].get("dst_port"), found)


def test_negatives_give_no_evidence_at_all(ctx):
    batch = _batch([_flow(case, dst_port=8545) for case in NEGATIVE_CASES])
    evidence = detect_flows(batch, list(load_all().values()), ctx)
    assert evidence.num_rows == 0, evidence.column("summary").to_pylist()


def test_prefilter_keeps_python_work_small(ctx):
    """Binary noise (TLS application data, random bytes) reaches no detector."""
    import numpy as np

    from minewatch.detect.heads import Heads

    rng = np.random.default_rng(1)
    noise = [{"src": b"\x17\x03\x03" + rng.bytes(500), "dst": rng.bytes(500), "dst_port": 443} for _ in range(200)]
    heads = Heads(_batch(noise))
    detectors = [d for d in load_all().values() if d.id != "intel.pool_ip"]
    wanted = sum(int(d.prefilter(heads, ctx).sum()) for d in detectors if d.prefilter)
    assert wanted <= 2  # a chance byte pattern at most
