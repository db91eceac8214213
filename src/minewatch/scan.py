"""`minewatch scan`: packet captures (files, folders, live interfaces) -> flows -> evidence.

Each input is read by the compiled reader (minewatch.sources.pcap); link types it does
not handle, live interfaces and `--reader nfstream` go through nfstream (nDPI labels).
A bad input is reported in one line and the scan goes on with the rest.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from minewatch.detect import Context, load_all
from minewatch.errors import InputError, UsageError
from minewatch.evidence import detect_flows
from minewatch.sources import ReadStats, sha256_file

READERS = ("auto", "fast", "nfstream")


@dataclass
class ScanOptions:
    reader: str = "auto"
    payload_bytes: int = 2048
    payload_packets: int = 16
    idle_timeout: float = 600.0  # mining connections idle for minutes between jobs stay one flow
    active_timeout: float = 1800.0
    hash_inputs: bool = True


@dataclass
class ScanReport:
    """What a scan read, rejected and found; the CLI prints it as the summary."""

    files: list[ReadStats] = field(default_factory=list)
    skipped_paths: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not scanned
    detector_errors: list[str] = field(default_factory=list)
    evidence_rows: int = 0

    @property
    def failed(self) -> list[ReadStats]:
        return [s for s in self.files if s.failed]


def expand_inputs(paths: list[str], report: ScanReport) -> list[str]:
    """Files named, and capture files found (recursively, sorted) under folders named."""
    from minewatch.sources.pcap import is_capture_file

    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if is_capture_file(full):
                        out.append(full)
                    else:
                        report.skipped_paths.append((full, "not a pcap/pcapng file"))
        else:
            out.append(p)  # a named file that is not a capture is reported as failed when read
    return out


class Scanner:
    def __init__(self, ctx: Context, options: ScanOptions | None = None):
        self.ctx = ctx
        self.options = options or ScanOptions()
        if self.options.reader not in READERS:
            raise UsageError(f"--reader must be one of {', '.join(READERS)}")
        self.detectors = list(load_all().values())
        self.report = ScanReport()

    def _reader_options(self) -> dict:
        o = self.options
        return dict(payload_bytes=o.payload_bytes, payload_packets=o.payload_packets,
                    idle_timeout=o.idle_timeout, active_timeout=o.active_timeout)

    def _flow_batches(self, path: str, stats: ReadStats, on_progress) -> Iterator[pa.RecordBatch]:
        from minewatch.sources.pcap import UnsupportedCapture, read_pcap

        o = self.options
        common = self._reader_options()
        if o.reader in ("auto", "fast"):
            try:
                yield from read_pcap(path, stats=stats, on_progress=on_progress, **common)
                return
            except UnsupportedCapture:
                if o.reader == "fast":
                    raise
                stats.packets_skipped.clear()  # nfstream starts the file again
        from minewatch.sources.nfstream_source import read_nfstream

        yield from read_nfstream(path, stats=stats, on_progress=on_progress, **common)

    def scan_file(self, path: str, on_progress: Callable[[int], None] | None = None) -> Iterator[pa.Table]:
        """Evidence tables for one capture file; failures are recorded in its ReadStats."""
        stats = ReadStats(path)
        self.report.files.append(stats)
        # The file is hashed on the other core while it is read and scanned; its evidence
        # (small) is held until the hash is known.
        held: list[pa.Table] = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            hashing = pool.submit(sha256_file, path) if self.options.hash_inputs else None
            try:
                for batch in self._flow_batches(path, stats, on_progress):
                    table = detect_flows(batch, self.detectors, self.ctx, None, self.report.detector_errors)
                    self.report.evidence_rows += table.num_rows
                    held.append(table)
                sha = hashing.result() if hashing else None
            except InputError as exc:
                stats.error = exc.reason if exc.position is None else f"{exc.reason} (at {exc.position})"
                sha = _hash_or_none(hashing)
            except OSError as exc:  # from hashing: the file vanished or cannot be read
                stats.error = f"cannot read: {exc.strerror or exc}"
                sha = None
        for table in held:
            yield _with_sha(table, sha)

    def scan_interface(self, interface: str, duration: float | None, save_path: str | None = None) -> Iterator[pa.Table]:
        """Live capture: the compiled reader fed by a packet socket, or nfstream (nDPI labels;
        flows still open when a --duration capture ends are lost there). With `save_path`
        the packets are kept in that pcap and the evidence, held back until the capture
        ends, carries the file's name and SHA-256."""
        stats = ReadStats(f"interface:{interface}")
        self.report.files.append(stats)
        o = self.options
        common = self._reader_options()
        if o.reader == "nfstream":
            from minewatch.sources.nfstream_source import read_nfstream

            batches = read_nfstream(interface, stats=stats, live=True, duration=duration, **common)
        else:
            from minewatch.sources.live import capture_interface

            batches = capture_interface(interface, stats=stats, duration=duration, save_path=save_path, **common)
        held: list[pa.Table] = []
        try:
            for batch in batches:
                table = detect_flows(batch, self.detectors, self.ctx, None, self.report.detector_errors)
                self.report.evidence_rows += table.num_rows
                if save_path:
                    held.append(table)
                else:
                    yield table
        except InputError as exc:
            stats.error = exc.reason
        if held:
            sha = sha256_file(save_path)
            for table in held:
                yield _with_sha(table, sha)


def _with_sha(table: pa.Table, sha: str | None) -> pa.Table:
    column = pa.array([sha] * table.num_rows, pa.string())
    return table.set_column(table.schema.get_field_index("source_sha256"), "source_sha256", column)


def _hash_or_none(hashing) -> str | None:
    try:
        return hashing.result() if hashing else None
    except OSError:
        return None
