"""`qrgate custodian …`: the custodian's commands (ingest, purge, investigate), and the fleet, scale and backlog runs."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

from firmware.argtypes import positive_int
from firmware.cli import lazy
from firmware.errors import QrgateError
from firmware.logs import setup_logging


def _milliseconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be 0 to 10000 ms")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be over 0")
    return value


def _status_name(text: str) -> str:
    from firmware.uplink.topics import ID

    if not ID.fullmatch(text):
        raise argparse.ArgumentTypeError("must be 1-64 of A-Z a-z 0-9 . _ -")
    return text


def _db(text: str) -> str | Path:
    """A `postgresql://` URL as it is (a Path would fold its `//`), anything else a SQLite file."""
    from custodian.stores import is_url

    return text if is_url(text) else Path(text)


def bench_store(text: str) -> str:
    """A benchmark's store: `sqlite`, `postgresql` or a postgresql:// URL (custodian.bench_store)."""
    from custodian.bench_store import parse

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def certificate_cn(path: Path) -> str:
    """The certificate's Common Name: the client id a broker binding ids to identities gives this process."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        names = x509.load_pem_x509_certificate(path.read_bytes()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (OSError, ValueError) as exc:
        raise QrgateError(f"cannot read the certificate {path}: {exc}") from None
    if not names:
        raise QrgateError(f"the certificate {path} has no Common Name")
    return str(names[0].value)


def cmd_ingest(args) -> int:
    from custodian.ingest import Ingest
    from custodian.stores import open_storage
    from firmware.uplink.mqtt import Tls

    setup_logging(args.verbose, daemon=True)
    if (args.cert or args.key) and not args.ca:
        raise QrgateError("--cert and --key need --ca (TLS)")
    for path in (args.ca, args.cert, args.key):
        if path is not None and not path.is_file():
            raise QrgateError(f"no such file: {path}")
    tls = Tls(args.ca, args.cert, args.key) if args.ca else None
    client_id = args.client_id or (certificate_cn(args.cert) if args.cert else None)
    storage = open_storage(args.db)
    ingest = Ingest(args.host, args.port, args.group, storage, client_id=client_id, tls=tls,
                    batch=args.batch, batch_window_s=args.batch_ms / 1000,
                    device_rate_per_s=args.device_rate, device_burst=args.device_burst, status_name=args.status)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ingest.start(on_death=stop.set)
    try:
        stop.wait()
    finally:
        ingest.stop()
        storage.close()
    print(json.dumps(ingest.summary()), flush=True)
    return 1 if ingest.died.is_set() else 0


def cmd_purge(args) -> int:
    from custodian.storage import RETENTION_DAYS
    from custodian.stores import open_storage

    storage = open_storage(args.db, create=False)
    try:
        deleted = storage.purge(time.time(), RETENTION_DAYS)
        left = storage.count()
    finally:
        storage.close()
    print(json.dumps({"purged": deleted, "left": left, "days": RETENTION_DAYS}))
    return 0


def cmd_investigate(args) -> int:
    from custodian.investigate import investigate, parse_time
    from custodian.stores import open_storage
    from firmware import keys

    start, end = parse_time(args.start), parse_time(args.end)
    held = [keys.load_authority_private(path) for path in args.key]
    storage = open_storage(args.db, create=False)
    try:
        findings = investigate(storage, held, args.venue, start, end, args.investigator, args.case, args.audit_log)
    finally:
        storage.close()
    for visit in findings.visits:
        print(json.dumps(visit, ensure_ascii=False))
    print(json.dumps({"summary": {"venue": args.venue, "opened": len(findings.visits),
                                  "failed": dict(findings.failed), "audit_log": str(args.audit_log)}}))
    return 0


def _sealed_option(s: argparse.ArgumentParser) -> None:
    from custodian.fleet import RECORDS

    s.add_argument("--sealed", choices=tuple(RECORDS), default="v2-hybrid",
                   help="what the simulated devices send: records of version 2 sealed with the post-quantum hybrid "
                        "(default) or X25519, or of version 1")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of device counts, e.g. 10,100,1000") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("device counts must be 1 or more")
    return sizes


def add_commands(subparsers, groups) -> None:
    """Add `qrgate custodian …` (the `qrgate.commands` entry point)."""
    from custodian.ingest import DEVICE_BURST, DEVICE_RATE_PER_S

    cust = subparsers.add_parser("custodian",
                                 help="the reference custodian (ingest, purge, investigate; fleet, scale and backlog runs)")
    sub = cust.add_subparsers(dest="sub", required=True, metavar="COMMAND")

    s = sub.add_parser("ingest", help="store sealed visits from the broker, until SIGTERM or SIGINT; "
                       "several processes may share one group and one database")
    s.add_argument("--host", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--group", default="custodian", help="the shared subscription's group (default custodian)")
    s.add_argument("--db", required=True, type=_db, help="SQLite database (made if missing), or a "
                   "postgresql://USER@HOST:PORT/DBNAME URL (tables made if missing)")
    s.add_argument("--ca", type=Path, help="CA certificate: connect with TLS")
    s.add_argument("--cert", type=Path, help="client certificate (mTLS)")
    s.add_argument("--key", type=Path, help="client private key (mTLS)")
    s.add_argument("--client-id", help="a stable id per process, so a restart resumes its broker session (default: "
                   "the --cert's Common Name, which the shipped broker config makes the id anyway; without a "
                   "certificate GROUP-HOSTNAME: give each process on one host its own)")
    s.add_argument("--batch", type=positive_int, default=100, help="most records per commit (default 100)")
    s.add_argument("--batch-ms", type=_milliseconds, default=10.0, help="how long a batch gathers, ms (default 10)")
    s.add_argument("--device-rate", type=_positive_float, default=DEVICE_RATE_PER_S, metavar="PER_S",
                   help=f"records a second one device may add, beyond its burst, in this process "
                   f"(default {DEVICE_RATE_PER_S:g}); more are rejected as rate_limited")
    s.add_argument("--device-burst", type=positive_int, default=DEVICE_BURST, metavar="N",
                   help=f"records one device may add at once, e.g. its backlog after an outage "
                   f"(default {DEVICE_BURST:,})")
    s.add_argument("--status", metavar="NAME", type=_status_name,
                   help="publish this process's health, retained, on qrgate/v1/custodian/NAME/status, its last "
                   "will saying offline, for the fleet's monitoring (docs/monitoring.md); NAME as in its "
                   "certificate's CN custodian:NAME, one per process")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("purge", help="delete records the custodian received more than 28 days ago")
    s.add_argument("--db", required=True, type=_db, help="SQLite file or postgresql:// URL")
    s.set_defaults(func=cmd_purge)

    s = sub.add_parser("investigate", help="health authority only: open one venue's visits in a window, "
                       "audited; JSON lines")
    s.add_argument("--db", required=True, type=_db, help="SQLite file or postgresql:// URL")
    s.add_argument("--key", required=True, type=Path, action="append",
                   help="an authority private key (file or its folder); repeat it for every key the authority has "
                        "held: each record is opened with the key it names")
    s.add_argument("--venue", required=True)
    s.add_argument("--from", dest="start", required=True, help="Unix seconds or ISO 8601 with offset")
    s.add_argument("--to", dest="end", required=True, help="Unix seconds or ISO 8601 with offset (inclusive)")
    s.add_argument("--investigator", required=True, help="who opens the records (written to the audit log)")
    s.add_argument("--case", required=True, help="the case reference (written to the audit log)")
    s.add_argument("--audit-log", required=True, type=Path, help="append-only JSON lines file")
    s.set_defaults(func=cmd_investigate)

    s = sub.add_parser("fleet", help="simulated scanners publishing sealed visits to a broker; JSON summary")
    s.add_argument("--host", default="127.0.0.1", help="the broker (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=1883, help="the broker's port (default 1883)")
    s.add_argument("--devices", type=int, default=100, help="simulated scanners, one connection each (default 100)")
    s.add_argument("--rate", type=float, default=200.0, help="visits per second, the whole fleet (default 200)")
    s.add_argument("--seconds", type=float, default=10.0, help="how long the visits are offered (default 10)")
    s.add_argument("--devices-per-worker", type=int, default=None,
                   help="devices per worker process (default: fleet.DEVICES_PER_WORKER)")
    s.add_argument("--seed", type=int, default=0, help="seeds the schedule (default 0)")
    _sealed_option(s)
    s.set_defaults(func=lazy("custodian.fleet:command"))

    s = sub.add_parser("scale", help="a simulated fleet into ingest processes on a local Mosquitto: "
                              "stored/s, latency, losses; one JSON object per fleet size")
    s.add_argument("--devices", type=_sizes, default=[10, 100, 1000], metavar="N,N,...",
                   help="fleet sizes, one run each (default 10,100,1000)")
    s.add_argument("--rate", type=float, default=2200.0, help="offered visits per second, whole fleet (default 2200)")
    s.add_argument("--seconds", type=float, default=20.0, help="how long the visits are offered (default 20)")
    s.add_argument("--ingest", type=int, default=2, help="`qrgate custodian ingest` processes (default 2)")
    s.add_argument("--settle", type=float, default=15.0, dest="settle_s",
                   help="how long to wait for the last visits to be stored (default 15 s)")
    s.add_argument("--devices-per-worker", type=int, default=None,
                   help="simulated devices per simulator process (default: fleet.DEVICES_PER_WORKER)")
    s.add_argument("--db", type=bench_store, default="sqlite", metavar="STORE",
                   help="sqlite (default), postgresql (a throwaway local server) or a postgresql:// URL "
                   "(a database made on that server and dropped after)")
    s.add_argument("--folder", type=Path, help="where the temporary folder of brokers and databases goes, removed at the end "
                   "(default: the system's temporary folder)")
    _sealed_option(s)
    s.set_defaults(func=lazy("custodian.scale:command"))

    s = sub.add_parser("backlog", help="what an outage leaves: sealed records waiting in a local Mosquitto for the "
                       "ingest group, drained into each store in turn; one JSON object")
    s.add_argument("--records", type=positive_int, default=1_000_000, help="records in the backlog (default 1,000,000)")
    s.add_argument("--devices", type=positive_int, default=1000, help="devices that queued them (default 1000)")
    s.add_argument("--db", type=bench_store, action="append", metavar="STORE",
                   help="a store to drain into, repeatable, in this order (default: sqlite, then postgresql): "
                   "sqlite, postgresql (a throwaway local server) or a postgresql:// URL")
    s.add_argument("--ingest", type=positive_int, default=2, help="`qrgate custodian ingest` processes (default 2)")
    s.add_argument("--batch", type=positive_int, default=100, help="the ingest's --batch (default 100, its own default)")
    s.add_argument("--timeout", type=_positive_float, default=3600.0, dest="timeout_s",
                   help="longest wait for one store's drain, s (default 3600)")
    s.add_argument("--folder", type=Path, help="where the temporary folder goes, removed at the end "
                   "(default: the system's temporary folder)")
    _sealed_option(s)
    s.set_defaults(func=lazy("custodian.backlog:command"))
