"""The fast paths of the record readers (issue 3): threaded pieces for CSV, pyarrow.csv
plus vectorised conversion for Zeek TSV. They must give what the line readers give,
row for row and reject for reject, on real logs and on big files with bad lines inside."""

import gzip

import pyarrow as pa
import pytest

from minewatch.sources import _records, zeek
from minewatch.sources._records import ArrowBatcher, SourceStats, collect_tables, line_pieces
from minewatch.sources.nfdump import read_nfdump
from minewatch.sources.zeek import read_zeek

from conftest import DATA

HERE = DATA / "sources"


def fast(path, **options):
    stats = SourceStats(str(path))
    return collect_tables(read_zeek(path, stats=stats, **options)), stats


def by_line(path):
    """The line-by-line Zeek reader (the reference the fast path must match)."""
    stats = SourceStats(str(path))
    return collect_tables(zeek._read_by_line(path, str(path), stats, _records.BATCH_ROWS)), stats


def assert_same(path):
    tables, stats = fast(path)
    expected, expected_stats = by_line(path)
    assert sorted(tables) == sorted(expected), path
    for name, table in tables.items():
        assert table.equals(expected[name]), (path, name)
    assert [(r.line, r.reason, r.raw) for r in stats.rejects] == [(r.line, r.reason, r.raw) for r in expected_stats.rejects]
    assert stats.notes == expected_stats.notes and stats.ignored == expected_stats.ignored
    assert stats.accepted == expected_stats.accepted and stats.reader == expected_stats.reader
    return tables, stats


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of 64 KiB, so that even small files are cut in many, read by several threads."""
    monkeypatch.setattr(_records, "CHUNK_BYTES", 64 << 10)
    monkeypatch.setattr(_records, "WORKERS", 2)


# ---------------------------------------------------------------- Zeek TSV


def test_every_slips_zeek_tsv_log_matches_the_line_reader(corpus, small_pieces):
    compared = 0
    for path in sorted((corpus / "slips").rglob("*.log*")):
        if path.read_bytes()[:1] != b"#":
            continue  # JSON logs go through the line reader anyway
        assert_same(path)
        compared += 1
    assert compared >= 18


def test_fixtures_match_the_line_reader(small_pieces):
    for name in ("zeek_conn.log", "conn.log.labeled", "zeek_dns.log", "zeek_ssl.log", "x509.log"):
        assert_same(HERE / name)


def test_clean_conn_stretch_takes_the_vectorised_path(corpus):
    path = corpus / "slips/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"
    state = {"closed": False, "fields": False}
    with _records.open_input(path) as stream:
        stretches = [s for s in zeek._stretches(stream, str(path), state, []) if not s.directive]
    assert stretches and stretches[0].kind == "conn"
    result = zeek._fast_stretch(stretches[0], str(path))
    assert result is not None and result.tables[0][1].num_rows == 766


def _big_conn_log(tmp_path, copies: int = 2500):
    """The conn fixture's 10 rows many times over (25,000 data lines), one header."""
    lines = (HERE / "zeek_conn.log").read_text().splitlines()
    header = [line for line in lines if line.startswith("#") and not line.startswith("#close")]
    rows = [line for line in lines if not line.startswith("#")]
    body = rows * copies
    return header, body, lines[-1]


def test_bad_lines_inside_a_big_block_keep_their_line_and_reason(tmp_path, small_pieces):
    header, body, close = _big_conn_log(tmp_path)
    first_data_line = len(header) + 1
    bad = {  # index in body -> (the broken line, expected reason start)
        7: (body[7].replace("\t53\t", "\t99999\t", 1), "bad port in id.resp_p"),
        12_345: ("\t".join(body[12_345].split("\t")[:5]), "wrong number of fields (5, expected 21)"),
        20_001: (body[20_001].replace(body[20_001].split("\t")[0], "yesterday", 1), "bad time in ts"),
        24_998: (body[24_998].replace(body[24_998].split("\t")[2], "-", 1), "missing id.orig_h"),
    }
    for index, (line, _) in bad.items():
        body[index] = line
    body[16_000] = body[16_000].replace("\tdns\t", "\t(empty)\t", 1)  # valid, but only the line reader knows it
    path = tmp_path / "conn.log"
    path.write_text("\n".join(header + body + [close]) + "\n")
    tables, stats = assert_same(path)
    reasons = {r.line: r.reason for r in stats.rejects}
    assert sorted(reasons) == [first_data_line + index for index in sorted(bad)]
    for index, (_, reason) in bad.items():
        assert reasons[first_data_line + index].startswith(reason)
    flows = tables["flows"]
    assert flows.num_rows == len(body) - len(bad)
    refs = flows.column("flow_ref").to_pylist()
    expected = [first_data_line + i for i in range(len(body)) if i not in bad]
    assert refs == expected
    assert flows.slice(refs.index(first_data_line + 16_000), 1).to_pylist()[0]["app_protocol"] is None


def test_big_gzip_log_in_many_pieces_with_bounded_batches(tmp_path, small_pieces):
    header, body, close = _big_conn_log(tmp_path, copies=1000)
    path = tmp_path / "conn.log.gz"
    path.write_bytes(gzip.compress(("\n".join(header + body + [close]) + "\n").encode()))
    batches = list(read_zeek(path, stats=SourceStats(str(path)), batch_rows=4096))
    sizes = [b.num_rows for _, b in batches]
    assert sum(sizes) == 10_000 and max(sizes) <= 4096
    assert min(sizes[:-1]) >= 1024  # small pieces are gathered: no stream of tiny batches
    assert_same(path)


def test_two_logs_in_one_file_and_directives_between(tmp_path, small_pieces):
    """A second header in the middle (concatenated logs): the new #fields applies from there."""
    conn = (HERE / "zeek_conn.log").read_text()
    dns = (HERE / "zeek_dns.log").read_text()
    path = tmp_path / "mixed.log"
    path.write_text(conn + "\n" + dns)
    tables, stats = assert_same(path)
    assert tables["flows"].num_rows == 10 and tables["dns"].num_rows > 0


# ---------------------------------------------------------------- nfdump / CSV pieces


def test_nfdump_csv_in_many_pieces_keeps_lines_of_bad_rows_and_flow_refs(tmp_path, small_pieces):
    lines = (HERE / "nfdump17.csv").read_text().splitlines()
    header, rows, trailer = lines[0], [l for l in lines[1:] if l.count(",") > 40], lines[-3:]
    body = (rows * 4000)[:20_000]
    bad = {
        3: ",".join(body[3].split(",")[:3] + ["not-an-ip"] + body[3].split(",")[4:]),
        9_999: "2018-01-12 15:37:30,2018-01-12 15:37:30,0.000,147.32.80.119",
        17_777: body[17_777].replace(",TCP,", ",XYZ,", 1),
    }
    for index, line in bad.items():
        body[index] = line
    body[12_000] = ""  # a blank line: not a record, not a reject
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([header, *body, *trailer]) + "\n")
    stats = SourceStats(str(path))
    flows = collect_tables(read_nfdump(path, stats=stats))["flows"]
    assert {r.line: r.reason for r in stats.rejects} == {
        2 + 3: "bad address in sa: 'not-an-ip'",
        2 + 9_999: "wrong number of fields (4, expected 48)",
        2 + 17_777: "bad protocol in pr",
    }
    skipped = set(bad) | {12_000}
    assert flows.column("flow_ref").to_pylist() == [2 + i for i in range(len(body)) if i not in skipped]
    assert stats.accepted["flows"] == flows.num_rows == len(body) - len(skipped)
    assert stats.ignored["empty rows"] == 1


def test_csv_pieces_stop_at_the_trailer_even_mid_piece(tmp_path, small_pieces):
    lines = (HERE / "nfdump17.csv").read_text().splitlines()
    rows = [l for l in lines[1:] if l.count(",") > 40]
    # a trailer line that is a valid row by shape after Summary must not be read either
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([lines[0], *rows * 500, "Summary", rows[0], "flows,bytes"]) + "\n")
    stats = SourceStats(str(path))
    flows = collect_tables(read_nfdump(path, stats=stats))["flows"]
    assert flows.num_rows == len(rows) * 500 and stats.rejected_total == 0


def test_line_pieces_cut_only_at_line_ends():
    import io

    text = b"".join(b"line %d with some text\n" % i for i in range(5000)) + b"last without newline"
    pieces = [bytes(p) for p in line_pieces(io.BytesIO(text), chunk_bytes=1000)]
    assert b"".join(pieces) == text and len(pieces) > 50
    assert all(p.endswith(b"\n") for p in pieces[:-1])


def test_recycled_pieces_cut_at_line_ends_and_survive_a_long_line():
    import io

    long_line = b"x" * 5000 + b"\n"  # longer than a piece: carried over into a bigger buffer
    text = b"".join(b"row %d,a,b\n" % i for i in range(3000)) + long_line + b"row end,a,b"
    pieces = [bytes(p) for p in line_pieces(io.BytesIO(text), chunk_bytes=1000, slots=3)]
    assert b"".join(pieces) == text and len(pieces) > 20
    assert all(p.endswith(b"\n") for p in pieces[:-1])


def test_recycled_pieces_are_intact_while_ordered_map_workers_hold_them():
    """The ring has two buffers more than ordered_map keeps in flight: no worker ever sees
    its piece overwritten, however the threads are scheduled."""
    import io
    import random
    import time

    text = b"".join(b"%d,%s\n" % (i, b"y" * (i % 50)) for i in range(20_000))

    def slow_copy(piece):
        time.sleep(random.random() / 500)
        first = bytes(piece)
        time.sleep(random.random() / 500)
        assert bytes(piece) == first  # unchanged while the worker held it
        return first

    pieces = line_pieces(io.BytesIO(text), chunk_bytes=2000, slots=5)
    assert b"".join(_records.ordered_map(slow_copy, pieces, workers=2, ahead=3)) == text


def test_arrow_batcher_bounds_and_gathers():
    stats = SourceStats("x")
    batcher = ArrowBatcher("t", stats, batch_rows=8)
    out = []
    for size in (1, 1, 10, 1, 0, 20):
        out += batcher.add(pa.record_batch({"a": list(range(size))}))
    out += batcher.flush()
    assert [b.num_rows for _, b in out] == [2, 8, 2, 8, 8, 5]  # the two 1s gathered, 1 + 20 gathered
    assert sum((b.column(0).to_pylist() for _, b in out), []) == [0, 0] + list(range(10)) + [0] + list(range(20))
    assert stats.accepted["t"] == 33


def test_cut_gzip_keeps_what_was_read_and_says_where(tmp_path, small_pieces):
    header, body, close = _big_conn_log(tmp_path, copies=1000)
    packed = gzip.compress(("\n".join(header + body + [close]) + "\n").encode())
    path = tmp_path / "conn.log.gz"
    path.write_bytes(packed[: len(packed) // 2])
    tables, stats = fast(path)
    assert 0 < tables["flows"].num_rows < len(body)
    assert stats.rejects[-1].reason == "compressed file cut short or corrupt"
    # the reject names the line after the last one read
    assert stats.rejects[-1].line > tables["flows"].column("flow_ref").to_pylist()[-1]


# ---------------------------------------------------------------- Suricata EVE


def suricata_both(path):
    from minewatch.sources import suricata

    stats = SourceStats(str(path))
    tables = collect_tables(suricata.read_suricata(path, stats=stats))
    expected_stats = SourceStats(str(path))
    expected = collect_tables(suricata._read_by_line(path, str(path), expected_stats, _records.BATCH_ROWS))
    assert sorted(tables) == sorted(expected)
    for name, table in tables.items():
        assert table.equals(expected[name]), name
    assert [(r.line, r.reason, r.raw) for r in stats.rejects] == [(r.line, r.reason, r.raw) for r in expected_stats.rejects]
    assert stats.ignored == expected_stats.ignored and stats.accepted == expected_stats.accepted
    return tables, stats


def test_suricata_pieces_match_the_line_reader(corpus, small_pieces):
    for path in (corpus / "slips/test6-malicious.suricata.json", HERE / "suricata_eve.json", HERE / "suricata_versions.json"):
        suricata_both(path)


def test_suricata_flow_alert_dns_tls_http_events_take_the_vectorised_path(corpus):
    from minewatch.sources import suricata

    counts = {}
    data = (corpus / "slips/test6-malicious.suricata.json").read_bytes()
    lines = data.count(b"\n")
    table = suricata._parse_json(memoryview(data), lines)
    assert table is not None and table.num_rows == 5000
    kinds = table.column("event_type").to_pylist()
    for kind, (name, builder) in suricata.FAST_EVENTS.items():
        rows = [i for i, k in enumerate(kinds) if k == kind]
        import numpy as np

        batch = builder(table.take(rows), "x", np.asarray(rows) + 1)
        assert batch is not None and batch.num_rows == len(rows), kind
        counts[kind] = len(rows)
    assert counts == {"flow": 3512, "alert": 745, "dns": 680, "tls": 1, "http": 56}


def test_suricata_bad_lines_inside_a_big_block(corpus, tmp_path, small_pieces):
    good = (corpus / "slips/test6-malicious.suricata.json").read_text().splitlines()
    body = good * 4  # 20,000 lines
    flow = next(i for i, line in enumerate(body) if '"event_type":"flow"' in line)
    alert = next(i for i, line in enumerate(body) if '"event_type":"alert"' in line and i > 9000)
    bad = {
        flow: body[flow].replace('"src_ip":', '"src_ip_gone":', 1),  # -> missing src_ip or dest_ip
        alert: body[alert].replace('"timestamp":"', '"timestamp":"x', 1),  # -> bad time
        13_000: body[13_000][:90],  # cut: malformed JSON
        17_500: "[1, 2]",
    }
    for index, line in bad.items():
        body[index] = line
    body[15_000] = ""  # a blank line: skipped, not counted
    path = tmp_path / "eve.json"
    path.write_text("\n".join(body) + "\n")
    tables, stats = suricata_both(path)
    reasons = {r.line: r.reason for r in stats.rejects}
    assert sorted(reasons) == sorted(index + 1 for index in bad)
    assert reasons[flow + 1] == "missing src_ip or dest_ip"
    assert reasons[alert + 1].startswith("bad time in timestamp")
    assert reasons[13_001].startswith("malformed JSON") and reasons[17_501] == "JSON line is not an object"
    refs = tables["flows"].column("flow_ref").to_pylist()
    assert refs == sorted(refs) and flow + 1 not in refs


# ---------------------------------------------------------------- Zeek JSON (conn)


def test_zeek_json_conn_logs_match_the_line_reader(corpus, small_pieces):
    for path in (corpus / "slips/test9-mixed-zeek-dir/conn.log", corpus / "slips/test13-malicious-dhcpscan-zeek-dir/conn.log",
                 HERE / "conn.json.log", HERE / "http.json.log", HERE / "dns.json.log"):
        assert_same(path)
    data = (corpus / "slips/test9-mixed-zeek-dir/conn.log").read_bytes()
    result = zeek._json_piece(memoryview(data), "conn.log")
    assert result.stats is None and result.tables[0][1].num_rows == 576  # the vectorised path took it all


def test_zeek_json_bad_lines_inside_a_big_block(corpus, tmp_path, small_pieces):
    body = (corpus / "slips/test9-mixed-zeek-dir/conn.log").read_text().splitlines() * 40  # 23,040 lines
    bad = {
        100: body[100].replace('"id.orig_p":', '"id.orig_p":70000,"x":', 1),  # port out of range
        9_000: body[9_000][:50],  # cut line
        21_000: body[21_000].replace('"ts":', '"ts":"later","was":', 1),
    }
    for index, line in bad.items():
        body[index] = line
    path = tmp_path / "conn.log"
    path.write_text("\n".join(body) + "\n")
    tables, stats = assert_same(path)
    reasons = {r.line: r.reason for r in stats.rejects}
    assert sorted(reasons) == [101, 9_001, 21_001]
    assert reasons[101].startswith("bad port in id.orig_p") and reasons[9_001].startswith("malformed JSON")
    assert reasons[21_001].startswith("bad time in ts")
    assert tables["flows"].num_rows == len(body) - 3


# ---------------------------------------------------------------- Zeek dns, ssl, http TSV

def _zeek_tsv(path, kind: str, fields: list[str], types: list[str], rows: list[str]):
    head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-",
            f"#path\t{kind}", "#fields\t" + "\t".join(fields), "#types\t" + "\t".join(types)]
    path.write_text("\n".join(head + rows + ["#close\t2024-01-02-00-00-00"]) + "\n")
    return path


DNS_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id query qtype qtype_name "
              "rcode rcode_name answers").split()
DNS_TYPES = "time string addr port addr port enum count string count string count string vector[string]".split()
SSL_FIELDS = "ts uid id.orig_h id.orig_p id.resp_h id.resp_p version server_name established subject issuer ja3".split()
SSL_TYPES = "time string addr port addr port string string bool string string string".split()
HTTP_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p method host uri user_agent status_code "
               "request_body_len response_body_len resp_mime_types").split()
HTTP_TYPES = "time string addr port addr port string string string string count count count vector[string]".split()


def _dns_rows(n: int) -> list[str]:
    rows = []
    for i in range(n):
        query = ["pool.SupportXMR.com.", "xmr.example.org", "-", "münchen.example"][i % 4]
        answers = ["1.2.3.4,5.6.7.8", "-", "(empty)", "a.example\\x2cb,9.9.9.9"][i % 4]
        rcode = ["0\tNOERROR", "-\t-", "3\tNXDOMAIN", "0\t-"][i % 4]
        rows.append(f"{1700000000 + i}.{i % 1000:06d}\tC{i}\t10.0.{i % 250}.1\t{1024 + i}\t8.8.8.8\t53\tudp\t"
                    f"{i % 65536}\t{query}\t1\t{'A' if i % 3 else '-'}\t{rcode}\t{answers}")
    return rows


def test_dns_ssl_http_logs_match_the_line_reader_and_take_the_vectorised_path(tmp_path, small_pieces, monkeypatch):
    taken = []
    real = zeek._fast_stretch
    monkeypatch.setattr(zeek, "_fast_stretch", lambda s, src: taken.append(real(s, src) is not None) or real(s, src))
    ssl_rows = [f"{1700000000 + i}.5\tC{i}\t10.0.0.{i % 250}\t{2000 + i % 60000}\t1.1.1.1\t443\tTLSv13\t"
                f"{['Eth.2miners.com', '-', 'x.example.'][i % 3]}\t{'TF'[i % 2]}\t"
                f"CN=pool.example\\x2cO=Miner Co\t-\t{'%032x' % i}" for i in range(6000)]
    http_rows = [f"{1700000000 + i}.25\tC{i}\t10.0.0.{i % 250}\t{3000 + i % 60000}\t2.2.2.2\t80\tPOST\t"
                 f"pool.example\t/json_rpc?id={i}\\x09tab\txmrig/6.{i % 20}\t{[200, 404, '-'][i % 3]}\t{i}\t"
                 f"{i * 2}\t{['application/json,text/plain', '(empty)', '-'][i % 3]}" for i in range(6000)]
    logs = [_zeek_tsv(tmp_path / "dns.log", "dns", DNS_FIELDS, DNS_TYPES, _dns_rows(8000)),
            _zeek_tsv(tmp_path / "ssl.log", "ssl", SSL_FIELDS, SSL_TYPES, ssl_rows),
            _zeek_tsv(tmp_path / "http.log", "http", HTTP_FIELDS, HTTP_TYPES, http_rows)]
    for path in logs:
        taken.clear()
        tables, stats = assert_same(path)
        assert sum(stats.accepted.values()) == {"dns.log": 8000}.get(path.name, 6000)
        assert taken and all(taken), (path.name, taken)  # every stretch vectorised, none sent back
    dns = collect_tables(read_zeek(logs[0], stats=SourceStats("x")))["dns"].slice(0, 4).to_pylist()
    assert [r["query"] for r in dns] == ["pool.supportxmr.com", "xmr.example.org", None, "münchen.example"]
    assert [r["answers"] for r in dns] == [["1.2.3.4", "5.6.7.8"], [], [], ["a.example,b", "9.9.9.9"]]
    assert [r["response"] for r in dns] == [True, False, True, True]


def test_bad_values_in_a_dns_log_are_rejected_by_line(tmp_path, small_pieces):
    rows = _dns_rows(3000)
    rows[10] = rows[10].replace("\t53\tudp", "\t99999\tudp")
    rows[20] = rows[20].replace("\tudp\t20\t", "\tudp\t99999999999\t")
    rows[30] = "notatime" + rows[30][rows[30].index("\t"):]
    _, stats = assert_same(_zeek_tsv(tmp_path / "dns.log", "dns", DNS_FIELDS, DNS_TYPES, rows))
    assert [(r.line, r.reason.split(":")[0]) for r in stats.rejects] == [
        (18, "bad port in id.resp_p"), (28, "bad count in trans_id"), (38, "bad time in ts")]


def test_zeek_json_dns_ssl_http_match_the_line_reader(tmp_path, small_pieces, monkeypatch):
    import json as jsonlib

    taken = []
    real = zeek._json_typed
    monkeypatch.setattr(zeek, "_json_typed", lambda k, c, n: (lambda r: taken.append(r is not None) or r)(real(k, c, n)))
    ends = lambda i: {"ts": 1700000000 + i / 7, "uid": f"C{i}", "id.orig_h": f"10.0.0.{i % 250}",  # noqa: E731
                      "id.orig_p": 1024 + i, "id.resp_h": "8.8.8.8", "id.resp_p": 53}
    dns = [{**ends(i), "proto": "udp", "trans_id": i, "query": ["Pool.MineXMR.com.", "a.example"][i % 2],
            "qtype": 1, **({"qtype_name": "A"} if i % 3 else {}), **({"rcode": 0, "rcode_name": "NOERROR"} if i % 4 else {}),
            **({"answers": ["1.2.3.4", "b.example"]} if i % 5 else {})} for i in range(6000)]
    ssl = [{**ends(i), "server_name": "ETH.2miners.com", "version": "TLSv12", "established": bool(i % 2),
            **({"subject": "CN=x,O=y"} if i % 2 else {})} for i in range(6000)]
    http = [{**ends(i), "method": "GET", "host": "pool.example", "uri": "/x", "status_code": 200,
             "request_body_len": 0, "response_body_len": i, "resp_mime_types": [[], ["text/json"]][i % 2]}
            for i in range(6000)]
    for name, rows in (("dns.log", dns), ("ssl.log", ssl), ("http.log", http)):
        path = tmp_path / name
        path.write_text("".join(jsonlib.dumps(r) + "\n" for r in rows))
        taken.clear()
        _, stats = assert_same(path)
        assert sum(stats.accepted.values()) == 6000 and taken and all(taken), name
    path = tmp_path / "dns.log"  # a bad line sends its piece to the line reader, which says why
    lines = path.read_text().splitlines()
    lines[7] = lines[7].replace('"id.resp_p": 53', '"id.resp_p": 70000')
    path.write_text("\n".join(lines) + "\n")
    _, stats = assert_same(path)
    assert [(r.line, r.reason) for r in stats.rejects] == [(8, "bad port in id.resp_p: 70000")]


def _eve_app_events(n: int) -> list[dict]:
    """dns (versions 1-3, both directions, answer lists with and without rdata), tls and
    http events as Suricata writes them, in a fixed mix."""
    events = []
    for i in range(n):
        ts = f"2024-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:06d}+0800"
        client = {"src_ip": f"10.0.{i % 200}.5", "src_port": 40000 + i % 20000, "dest_ip": "10.0.0.1", "dest_port": 53}
        server = {"src_ip": "10.0.0.1", "src_port": 53, "dest_ip": f"10.0.{i % 200}.5", "dest_port": 40000 + i % 20000}
        name = ["Pool.SupportXMR.com.", "xmr.example.net", "münchen.example"][i % 3]
        dns = [
            {"type": "query", "id": i % 65536, "rrname": name, "rrtype": "A"},
            {"type": "answer", "id": i % 65536, "rcode": "NOERROR", "rrname": name, "rrtype": "A", "rdata": "192.0.2.7"},
            {"version": 2, "type": "answer", "id": 9, "rcode": "NOERROR", "rrname": name, "rrtype": "A",
             "answers": [{"rrname": name, "rdata": "192.0.2.8"}, {"rrname": name, "rrtype": "SOA"},
                         {"rdata": "192.0.2.9"}]},
            {"version": 2, "type": "answer", "id": 9, "rcode": "NOERROR", "rrname": name, "rrtype": "A",
             "grouped": {"A": ["192.0.2.8"]}},
            {"version": 3, "type": "response", "id": 8, "rcode": "NXDOMAIN", "queries": [{"rrname": name, "rrtype": "AAAA"}],
             "answers": []},
            {"version": 3, "type": "request", "id": 8, "queries": []},
        ][i % 6]
        kind = ["dns", "dns", "tls", "http"][i % 4]
        event = {"timestamp": ts, "flow_id": i, "event_type": kind, "proto": ["UDP", "TCP", "17"][i % 3]}
        if kind == "dns":
            event.update(server if i % 5 == 1 else client, dns=dns)
        elif kind == "tls":
            event.update(client, dest_port=443, proto="TCP",
                         tls={"sni": name, "version": "TLS 1.3", **({"ja3": {"hash": "ab", "string": "x"}} if i % 3 else {}),
                              **({"subject": "CN=pool", "issuerdn": "CN=ca"} if i % 2 else {})})
        else:
            event.update(client, dest_port=80, proto="TCP",
                         http={"hostname": "pool.example", "url": f"/x{i}", "http_method": "POST",
                               "http_user_agent": "xmrig/6", **({"status": 200, "length": i} if i % 3 else {})})
        events.append(event)
    return events


def test_suricata_dns_tls_http_events_match_the_line_reader_and_are_vectorised(tmp_path, small_pieces, monkeypatch):
    import json as jsonlib

    from minewatch.sources import suricata

    taken = {}
    for kind, (name, builder) in list(suricata.FAST_EVENTS.items()):
        def counting(events, source, refs, builder=builder, kind=kind):
            batch = builder(events, source, refs)
            taken.setdefault(kind, []).append(batch is not None)
            return batch
        monkeypatch.setitem(suricata.FAST_EVENTS, kind, (name, counting))
    path = tmp_path / "eve.json"
    path.write_text("".join(jsonlib.dumps(e) + "\n" for e in _eve_app_events(12000)))
    tables, stats = suricata_both(path)
    assert stats.accepted == {"dns": 6000, "tls": 3000, "http": 3000}
    assert {k: all(v) for k, v in taken.items()} == {"dns": True, "tls": True, "http": True}
    dns = tables["dns"].to_pylist()
    assert dns[0]["query"] == "pool.supportxmr.com" and dns[0]["client_ip"] == "10.0.0.5"
    assert [r["answers"] for r in dns[:6]] == [[], ["192.0.2.7"], [], [], ["192.0.2.8", "192.0.2.9"], []]


def test_suricata_odd_app_object_costs_only_its_piece_the_fast_path(tmp_path, small_pieces):
    import json as jsonlib

    events = _eve_app_events(4000)
    events[7]["http"] = events[7]["http"] | {"status": "200 OK"}  # a string where a number was expected
    events[9]["dns"] = "not an object"
    path = tmp_path / "eve.json"
    path.write_text("".join(jsonlib.dumps(e) + "\n" for e in events))
    _, stats = suricata_both(path)
    assert [(r.line, r.reason.split(":")[0]) for r in stats.rejects] == [(8, "bad http event"), (10, "dns event without a dns object")]


def test_bad_addresses_are_rejected_by_every_log_reader_with_their_value(tmp_path, small_pieces):
    import json as jsonlib

    rows = _dns_rows(3000)
    rows[5] = rows[5].replace("\t10.0.5.1\t", "\t999.0.5.1\t")
    rows[2500] = rows[2500].replace("\t8.8.8.8\t", "\t8.8.8\t")
    _, stats = assert_same(_zeek_tsv(tmp_path / "dns.log", "dns", DNS_FIELDS, DNS_TYPES, rows))
    assert [(r.line, r.reason) for r in stats.rejects] == [
        (13, "bad address in id.orig_h: '999.0.5.1'"), (2508, "bad address in id.resp_h: '8.8.8'")]
    assert stats.rejected == {"bad address in id.orig_h": 1, "bad address in id.resp_h": 1}

    conn = (HERE / "zeek_conn.log").read_text().splitlines()
    first = next(i for i, line in enumerate(conn) if not line.startswith("#"))
    conn[first] = "\t".join(v if k != 2 else "fe80::1%eth0" for k, v in enumerate(conn[first].split("\t")))
    (tmp_path / "conn.log").write_text("\n".join(conn) + "\n")
    _, stats = assert_same(tmp_path / "conn.log")
    assert [r.reason for r in stats.rejects] == ["bad address in id.orig_h: 'fe80::1%eth0'"]

    events = _eve_app_events(3000)
    events[4]["src_ip"] = "10.0.0.256"
    events[2999]["dest_ip"] = "2001:db8::1::2"
    path = tmp_path / "eve.json"
    path.write_text("".join(jsonlib.dumps(e) + "\n" for e in events))
    _, stats = suricata_both(path)
    assert [(r.line, r.reason) for r in stats.rejects] == [
        (5, "bad address in src_ip: '10.0.0.256'"), (3000, "bad address in dest_ip: '2001:db8::1::2'")]


def test_suricata_times_without_a_zone_are_read_as_utc_and_said(tmp_path):
    import json as jsonlib

    from minewatch.sources import suricata

    event = {"timestamp": "2024-01-01T08:00:00.000000", "event_type": "flow", "src_ip": "10.0.0.1", "src_port": 1,
             "dest_ip": "1.1.1.1", "dest_port": 443, "proto": "TCP",
             "flow": {"pkts_toserver": 1, "pkts_toclient": 1, "bytes_toserver": 60, "bytes_toclient": 60,
                      "start": "2024-01-01T08:00:00.000000", "end": "2024-01-01T08:00:05.000000"}}
    path = tmp_path / "eve.json"
    path.write_text(jsonlib.dumps(event) + "\n")
    tables, stats = suricata_both(path)
    assert suricata.NAIVE_NOTE in stats.notes
    assert tables["flows"].column("ts_start").to_pylist()[0].isoformat() == "2024-01-01T08:00:00+00:00"
    line_stats = SourceStats(str(path))
    collect_tables(suricata._read_by_line(path, str(path), line_stats, _records.BATCH_ROWS))
    assert suricata.NAIVE_NOTE in line_stats.notes
    zoned = tmp_path / "zoned.json"
    zoned.write_text(jsonlib.dumps(event | {"timestamp": "2024-01-01T08:00:00.000000+0800"}) + "\n")
    assert suricata.NAIVE_NOTE not in suricata_both(zoned)[1].notes
