"""The work of the device's small commands: `run` (the daemon, until a signal), `trust install|show`, `trust
revocation install|show`, `decode`."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware import keys
from firmware.errors import QrgateError
from firmware.logs import setup_logging
from firmware.utc import iso

if TYPE_CHECKING:
    from cryptography import x509

    from firmware.tokens.trustlist import TrustList
    from firmware.trust import TrustStore


def cmd_run(args: argparse.Namespace) -> int:
    from firmware import startup

    startup.pause()  # until READY: start-up builds what lives as long as the daemon (firmware/startup.py)
    from firmware import app, config

    setup_logging(args.verbose, daemon=True)
    cfg = config.load(args.config)
    if args.check:
        print(f"{args.config}: ok")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    app.run(cfg, stop=stop)
    return 0


def describe_trust_list(tl: TrustList, now: float) -> dict[str, Any]:
    """A trust list as a technician reads it: what is trusted, until when, what is revoked, what visits are sealed to."""
    sealing = tl.sealing_key(now)
    return {
        "seq": tl.seq,
        "issued_at": iso(tl.issued_at),
        "not_after": iso(tl.not_after),
        "expired": tl.expired(now),
        "issuers": [{"kid": i.kid.hex(), "iss": i.iss, "not_before": iso(i.not_before), "not_after": iso(i.not_after),
                     "valid_now": i.not_before <= now <= i.not_after and i.kid not in tl.revoked,
                     "card_days": i.card_days}  # a card issuer's (KC1), 0 for a phone-token issuer
                    for i in tl.issuers.values()],
        "revoked": sorted(k.hex() for k in tl.revoked),
        "card_revoked": len(tl.card_revoked),  # printed cards revoked: keyed hashes, a count is all they tell
        "dsc": [describe_signer(kid, cert, now) for kid, certs in tl.dcc_signers.items() for cert in certs],
        "authority": [{"fingerprint": keys.fingerprint(a.sealing_key), "kid": a.sealing_key.kid.hex(), "alg": a.alg,
                       "not_before": iso(a.not_before), "not_after": iso(a.not_after), "valid_now": a.valid(now),
                       "sealing_now": a.sealing_key == sealing}
                      for a in tl.authority],
        "dcc_rules": describe_rules(tl, now),
        "valuesets": {k: len(v) for k, v in sorted(tl.rules.valuesets.items())},
    }


def describe_rules(tl: TrustList, now: float) -> dict[str, Any]:
    """The business rules by country: how many the list carries, how many are in force now."""
    out: dict[str, Any] = {}
    for rule in tl.rules.rules:
        row = out.setdefault(rule.country, {"rules": 0, "in_force": 0})
        row["rules"] += 1
        row["in_force"] += rule.in_force(now)
    return dict(sorted(out.items()))


def describe_signer(kid: bytes, cert: x509.Certificate, now: float) -> dict[str, Any]:
    """An EU DCC document signer: its kid, subject, validity and the DCC types it may sign."""
    from firmware.tokens import dcc

    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    return {"kid": kid.hex(), "subject": cert.subject.rfc4514_string(), "not_before": iso(start),
            "not_after": iso(end), "types": dcc.signer_types(cert), "valid_now": start <= now <= end}


def _device_trust(config_path: Path) -> TrustStore:
    from firmware import config
    from firmware.trust import TrustStore

    cfg = config.load(config_path)
    return TrustStore(cfg.device.state_dir, keys.load_root_public(cfg.trust.root_key))


def cmd_trust_install(args: argparse.Namespace) -> int:
    from firmware.tokens import trustlist

    store = _device_trust(args.config)
    old = store.current()
    new = store.install(trustlist.read_file(args.file), time.time())
    print(json.dumps({"installed": describe_trust_list(new, time.time()), "replaced_seq": old.seq if old else None}))
    return 0


def cmd_trust_show(args: argparse.Namespace) -> int:
    from firmware.tokens import trustlist

    store = _device_trust(args.config)
    if args.file is None:
        current = store.current()
        if current is None:
            raise QrgateError(f"no trust list is installed in {store.path.parent}")
    else:
        current = trustlist.parse(trustlist.read_file(args.file), store.root)
    print(json.dumps(describe_trust_list(current, time.time()), indent=2))
    return 0


def cmd_revocation_install(args: argparse.Namespace) -> int:
    """A list from a folder into the state folder; the running daemon adopts it within 5 s (its housekeeping)."""
    from firmware import config
    from firmware.revocation.store import RevocationStore

    cfg = config.load(args.config)
    store = RevocationStore(cfg.device.state_dir, keys.load_root_public(cfg.trust.root_key))
    old = store.current()
    new = store.install(args.folder, time.time())
    m = new.manifest
    print(json.dumps({"installed": {"seq": m.seq, "entries": m.entries, "buckets": len(m.buckets),
                                    "issued_at": iso(m.issued_at), "not_after": iso(m.not_after)},
                      "replaced_seq": old.manifest.seq if old else None}))
    return 0


def cmd_revocation_show(args: argparse.Namespace) -> int:
    from firmware import config
    from firmware.revocation import store

    cfg = config.load(args.config)
    folder = args.folder if args.folder is not None else cfg.device.state_dir / store.FOLDER
    out = store.describe(folder, keys.load_root_public(cfg.trust.root_key), time.time())
    if args.folder is not None:
        out.pop("next")
    print(json.dumps(out, indent=2))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import cv2

    from firmware.scanner.decode import DECODERS

    decoder = DECODERS[args.backend]()
    status = 0
    for name in args.files:
        gray = cv2.imread(name, cv2.IMREAD_GRAYSCALE)
        if gray is None:
            print(json.dumps({"file": name, "texts": [], "error": "cannot read image"}))
            status = 1
            continue
        print(json.dumps({"file": name, "texts": decoder.decode(gray)}, ensure_ascii=False))
    return status
