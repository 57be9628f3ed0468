"""`qrgate`: the one console command, with a subcommand per job (daemon, demo, technician and test tools)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from firmware import __version__, keys
from firmware.errors import QrgateError
from firmware.logs import setup_logging
from firmware.utc import iso


def positive_int(text: str) -> int:
    """An argparse type: a count of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def cmd_run(args) -> int:
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


def cmd_demo(args) -> int:
    from firmware import demo

    setup_logging(args.verbose)
    return demo.main(keep=args.keep)


def cmd_issuer_new(args) -> int:
    issuer = keys.new_issuer(args.name, args.out)
    print(json.dumps({"iss": issuer.iss, "kid": issuer.kid.hex(), "out": str(args.out)}))
    return 0


def cmd_root_new(args) -> int:
    key = keys.new_root(args.out)
    print(json.dumps({"kid": keys.kid_of(key.public_key()).hex(), "out": str(args.out)}))
    return 0


def cmd_authority_new(args) -> int:
    keys.new_authority(args.out)
    print(json.dumps({"out": str(args.out)}))
    return 0


def cmd_trust_build(args) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding

    from firmware.store.statefiles import write_atomic
    from firmware.tokens import trustlist
    from firmware.tokens.dcc_issuer import load_certificate

    root = keys.load_root(args.root)
    issuers = [keys.load_issuer(d) for d in args.issuer]
    dsc = [load_certificate(p).public_bytes(Encoding.DER) for p in args.dsc]
    revoked = [_kid(k) for k in args.revoke]
    authority = [keys.load_authority_public(p) for p in args.authority_key]
    if not issuers and not dsc:
        raise QrgateError("a trust list needs at least one --issuer or --dsc")
    if not authority:
        raise QrgateError("a trust list needs at least one --authority-key: devices seal visits only to a key "
                          "the list vouches for")
    if args.seq < 1 or args.valid_days < 1 or args.issuer_valid_days < 1:
        raise QrgateError("--seq, --valid-days and --issuer-valid-days must be 1 or more")
    data = trustlist.build(root, issuers, args.seq, int(time.time()), valid_days=args.valid_days, revoked=revoked,
                           issuer_valid_days=args.issuer_valid_days, dsc=dsc, authority=authority)
    write_atomic(args.out, data)
    print(json.dumps(_describe(trustlist.parse(data, root.public_key()), time.time())))
    return 0


def _kid(text: str) -> bytes:
    try:
        kid = bytes.fromhex(text)
    except ValueError:
        kid = b""
    if len(kid) != 8:
        raise QrgateError(f"a kid is 16 hex digits (as `qrgate issuer new` prints it), not {text!r}")
    return kid


def _describe(tl, now: float) -> dict:
    """A trust list as a technician reads it: what is trusted, until when, what is revoked."""
    return {
        "seq": tl.seq,
        "issued_at": iso(tl.issued_at),
        "not_after": iso(tl.not_after),
        "expired": tl.expired(now),
        "issuers": [{"kid": i.kid.hex(), "iss": i.iss, "not_before": iso(i.not_before), "not_after": iso(i.not_after),
                     "valid_now": i.not_before <= now <= i.not_after and i.kid not in tl.revoked}
                    for i in tl.issuers.values()],
        "revoked": sorted(k.hex() for k in tl.revoked),
        "dsc": [_describe_signer(kid, cert, now) for kid, certs in tl.dcc_signers.items() for cert in certs],
        "authority": [{"fingerprint": keys.fingerprint(X25519PublicKey.from_public_bytes(a.key)), "alg": a.alg,
                       "not_before": iso(a.not_before), "not_after": iso(a.not_after), "valid_now": a.valid(now)}
                      for a in tl.authority],
    }


def _describe_signer(kid: bytes, cert, now: float) -> dict:
    """An EU DCC document signer: its kid, subject, validity and the DCC types it may sign."""
    from firmware.tokens import dcc

    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    return {"kid": kid.hex(), "subject": cert.subject.rfc4514_string(), "not_before": iso(start),
            "not_after": iso(end), "types": dcc.signer_types(cert), "valid_now": start <= now <= end}


def _device_trust(config_path: Path):
    from firmware import config
    from firmware.trust import TrustStore

    cfg = config.load(config_path)
    return TrustStore(cfg.device.state_dir, keys.load_root_public(cfg.trust.root_key))


def cmd_trust_install(args) -> int:
    from firmware.tokens import trustlist

    store = _device_trust(args.config)
    old = store.current()
    new = store.install(trustlist.read_file(args.file), time.time())
    print(json.dumps({"installed": _describe(new, time.time()), "replaced_seq": old.seq if old else None}))
    return 0


def cmd_trust_show(args) -> int:
    from firmware.tokens import trustlist

    store = _device_trust(args.config)
    if args.file is None:
        current = store.current()
        if current is None:
            raise QrgateError(f"no trust list is installed in {store.path.parent}")
    else:
        current = trustlist.parse(trustlist.read_file(args.file), store.root)
    print(json.dumps(_describe(current, time.time()), indent=2))
    return 0


def cmd_token_mint(args) -> int:
    from firmware.tokens import kp1

    issuer = keys.load_issuer(args.issuer)
    token = kp1.mint(issuer, int(time.time()), ttl=args.ttl, att=args.att)
    if args.png:
        from firmware import render

        render.write_png(args.png, render.qr_image(token))
    print(token)
    return 0


def cmd_token_verify(args) -> int:
    from firmware.config import DccConfig
    from firmware.tokens import kp1, trustlist
    from firmware.tokens.dcc_verifier import DccVerifier
    from firmware.tokens.verdict import Kind, Verdict
    from firmware.tokens.verifier import KINDS, TokenVerifier

    root = keys.load_root_public(args.root) if args.root else None
    if root is None:
        print("qrgate: note: no --root given, the trust list's own signature is not checked", file=sys.stderr)
    try:
        data = trustlist.read_file(args.trust)
    except OSError as exc:
        raise QrgateError(f"cannot read trust list {args.trust}: {exc.strerror}") from None
    trust = trustlist.parse(data, root)
    verifier = TokenVerifier(kp1.Verifier(lambda: trust, require=tuple(args.require), skew=args.skew),
                             DccVerifier(lambda: trust, DccConfig(), args.skew), KINDS)
    seen: set[bytes] = set()  # one-time use within this run, as on a device
    lines = (line.rstrip("\r\n") for line in sys.stdin) if args.text == "-" else [args.text]
    for text in lines:
        if args.text == "-" and not text.strip():
            continue
        verdict = verifier.verify(text.strip(), args.at if args.at is not None else time.time())
        if verdict.kind is Kind.ACCEPTED and verdict.claims is not None:
            if verdict.claims.seen_key in seen:
                verdict = Verdict(Kind.ALREADY_CHECKED_IN, None, verdict.claims)
            seen.add(verdict.claims.seen_key)
        print(json.dumps(verdict.as_json()), flush=True)
    return 0


def cmd_decode(args) -> int:
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


def cmd_bench_verify(args) -> int:
    from firmware.bench import verify

    if args.rounds < 1 or args.tokens < 1:
        raise QrgateError("--rounds and --tokens must be 1 or more")
    result = verify.run(rounds=args.rounds, n_tokens=args.tokens)
    print(json.dumps(result))
    return 0


def cmd_bench_drain(args) -> int:
    from firmware.bench import drain

    result = drain.run(records=args.records, window=args.window, rounds=args.rounds, folder=args.folder,
                       profile=args.profile)
    print(json.dumps(result))
    return 0


def cmd_bench_scan(args) -> int:
    from firmware.bench import scan

    result = scan.run(frames_from=args.frames_from, frames=args.frames, fps=args.fps, visitors=args.visitors,
                      decoder=args.decoder, folder=args.folder, seed=args.seed)
    print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qrgate", description="qrgate entrance scanner firmware and tools")
    p.add_argument("--version", action="version", version=f"qrgate {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("run", help="the daemon")
    s.add_argument("--config", required=True, type=Path, help="TOML configuration file")
    s.add_argument("--check", action="store_true", help="only load and check the configuration")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("demo", help="the daemon on a replay camera, mock pins and a local broker")
    s.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("decode", help="decode QR codes in image files, one JSON line per file")
    s.add_argument("files", nargs="+")
    s.add_argument("--backend", choices=("zxing", "zbar"), default="zxing")
    s.set_defaults(func=cmd_decode)

    tok = sub.add_parser("token", help="mint and verify KP1 tokens").add_subparsers(dest="sub", required=True)
    s = tok.add_parser("mint", help="a test issuer: print one KP1 token")
    s.add_argument("--issuer", required=True, type=Path, help="issuer folder (qrgate issuer new)")
    s.add_argument("--ttl", type=int, default=15, help="seconds of validity (1..300, default 15)")
    s.add_argument("--att", action="append", default=[], choices=("age14", "age19", "vax"))
    s.add_argument("--png", type=Path, help="also write the token as a QR image")
    s.set_defaults(func=cmd_token_mint)
    s = tok.add_parser("verify", help="verify tokens: one JSON line each")
    s.add_argument("--trust", required=True, type=Path, help="signed trust list file")
    s.add_argument("--root", type=Path, help="root public key (folder or PEM) to check the trust list with")
    s.add_argument("--at", type=float, help="judge at this Unix time (default: now)")
    s.add_argument("--require", action="append", default=[], choices=("age14", "age19", "vax"))
    s.add_argument("--skew", type=int, default=5, help="clock skew allowed, seconds")
    s.add_argument("text", help="a token, or - to read one per line from stdin")
    s.set_defaults(func=cmd_token_verify)

    for name, func, what in (("issuer", cmd_issuer_new, "an issuer's signing key"),
                             ("root", cmd_root_new, "the key that signs trust lists"),
                             ("authority", cmd_authority_new, "the health authority's HPKE key pair")):
        s = sub.add_parser(name, help=what).add_subparsers(dest="sub", required=True).add_parser("new", help=what)
        if name == "issuer":
            s.add_argument("--name", required=True)
        s.add_argument("--out", required=True, type=Path)
        s.set_defaults(func=func)

    trust = sub.add_parser("trust", help="build and install trust lists").add_subparsers(dest="sub", required=True)
    s = trust.add_parser("build", help="a trust list signed with the root key")
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--issuer", action="append", default=[], type=Path, help="a KP1 issuer folder (repeatable)")
    s.add_argument("--dsc", action="append", default=[], type=Path, metavar="CERT",
                   help="an EU DCC document signer certificate, PEM or DER, or a `qrgate dcc signer new` folder")
    s.add_argument("--authority-key", action="append", default=[], type=Path, metavar="PUB",
                   help="a health authority public key (authority.pub) devices may seal to (repeatable; at least one)")
    s.add_argument("--seq", required=True, type=int)
    s.add_argument("--revoke", action="append", default=[], metavar="KID_HEX", help="a revoked issuer key")
    s.add_argument("--valid-days", type=int, default=30, help="the list's own validity (default 30)")
    s.add_argument("--issuer-valid-days", type=int, default=365, help="each issuer key's validity (default 365)")
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_trust_build)
    s = trust.add_parser("install", help="install a trust list on this device (refuses rollback)")
    s.add_argument("file", type=Path)
    s.add_argument("--config", type=Path, default=Path("/etc/qrgate/qrgate.toml"))
    s.set_defaults(func=cmd_trust_install)
    s = trust.add_parser("show", help="the installed trust list (or FILE), checked against the device's root key")
    s.add_argument("file", type=Path, nargs="?")
    s.add_argument("--config", type=Path, default=Path("/etc/qrgate/qrgate.toml"))
    s.set_defaults(func=cmd_trust_show)

    bench = sub.add_parser("bench", help="benchmarks, printing JSON").add_subparsers(dest="sub", required=True)
    s = bench.add_parser("verify", help="tokens verified per second on one core, against bare Ed25519 checks")
    s.add_argument("--rounds", type=int, default=15, help="measurement rounds (the median is reported)")
    s.add_argument("--tokens", type=int, default=300, help="distinct valid tokens per round")
    s.set_defaults(func=cmd_bench_verify)
    s = bench.add_parser("drain", help="a store of sealed records drained to a local Mosquitto, against bare paho")
    s.add_argument("--records", type=int, default=100_000, help="sealed records in the store (default 100000)")
    s.add_argument("--window", type=int, default=16, help="QoS 1 messages in flight, both sides (default 16)")
    s.add_argument("--rounds", type=int, default=1, help="drains, each between two bare runs (default 1)")
    s.add_argument("--folder", type=Path, help="where the store and broker go (default: a temporary folder); "
                   "on a device, a folder on the card the store lives on")
    s.add_argument("--profile", action="store_true", help="add an instrumented drain: where its time goes")
    s.set_defaults(func=cmd_bench_drain)
    s = bench.add_parser("scan", help="the scan loop over a frame set, against bare zxing-cpp and pyzbar")
    s.add_argument("frames_from", type=Path, nargs="?", help="a folder of images (expected texts in NAME.txt "
                   "beside them, where known) or a video; default: a built-in set of phone screens")
    s.add_argument("--frames", type=int, help="frames through the loop (default: two passes over the set)")
    s.add_argument("--fps", type=float, default=30.0, help="the replay camera's rate; 0: as fast as the loop "
                   "goes (default 30)")
    s.add_argument("--visitors", type=int, default=70, help="built-in set: visitors, each a distinct token "
                   "(default 70, ten per condition)")
    s.add_argument("--decoder", choices=("zxing", "zbar"), default="zxing", help="the loop's decoder")
    s.add_argument("--folder", type=Path, help="where the store and frames go (default: a temporary folder); "
                   "on a device, a folder on the card")
    s.add_argument("--seed", type=int, default=0, help="built-in set: the random seed")
    s.set_defaults(func=cmd_bench_scan)

    from firmware import config_commands, dcc_commands, fuzz
    from firmware.technician import aim, provision, selftest, status

    config_commands.register(sub)
    provision.register(sub)
    status.register(sub)
    selftest.register(sub)
    aim.register(sub)
    fuzz.register(sub)
    dcc_commands.register(sub)

    from custodian import cli as custodian_cli

    custodian_cli.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except QrgateError as exc:
        print(f"qrgate: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing or unreadable file named on the command line
        print(f"qrgate: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
