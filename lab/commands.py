"""The work of the lab's commands: demo, keys and test tokens, trust lists, benchmarks."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

from firmware import keys
from firmware.errors import QrgateError
from firmware.logs import setup_logging
from firmware.store import seal
from firmware.store.seal import SealingKey
from firmware.technician.commands import describe_trust_list
from lab import signers


def cmd_demo(args) -> int:
    from lab import demo

    setup_logging(args.verbose)
    return demo.main(keep=args.keep)


def cmd_issuer_new(args) -> int:
    """A phone-token issuer, or with --card-days a card issuer (lab.cards: its name is printed on its cards)."""
    if args.card_days is not None:
        from firmware.tokens.trustlist import MAX_CARD_DAYS
        from lab.cards import fonts

        if not 1 <= args.card_days <= MAX_CARD_DAYS:
            raise QrgateError(f"--card-days is the longest a card of this issuer lives: 1 to {MAX_CARD_DAYS} days "
                              f"(five years), not {args.card_days}")
        if not fonts.printable(args.name):
            raise QrgateError(f"--name {args.name!r}: a card issuer's name is printed on its cards in the standard "
                              "PDF fonts, so it is printable ASCII (letters, digits, spaces, punctuation)")
    issuer = signers.new_issuer(args.name, args.out, card_days=args.card_days or 0)
    print(json.dumps({"iss": issuer.iss, "kid": issuer.kid.hex(), "out": str(args.out),
                      **({"card_days": issuer.card_days} if issuer.card_days else {})}))
    return 0


def cmd_root_new(args) -> int:
    key = signers.new_root(args.out)
    print(json.dumps({"kid": keys.kid_of(key.public_key()).hex(), "out": str(args.out)}))
    return 0


def cmd_authority_new(args) -> int:
    key = signers.new_authority(args.out, seal.BY_ALG[args.suite])
    print(json.dumps({"out": str(args.out), "alg": args.suite, "kid": key.public_key().kid.hex(),
                      "fingerprint": keys.fingerprint(key.public_key())}))
    return 0


def cmd_venue_secret_new(args) -> int:
    """A venue's secret for anti-passback: made once, copied to each of its devices (`provision --venue-secret`)."""
    from firmware.passback import secret

    try:
        secret.write_new(args.out)
    except FileExistsError:
        raise QrgateError(f"{args.out} exists: a venue keeps one secret (every door must hold the same)") from None
    print(json.dumps({"out": str(args.out), "bytes": secret.SECRET_BYTES}))
    return 0


def cmd_trust_build(args) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding

    from firmware.store.statefiles import write_atomic
    from firmware.tokens import trustlist
    from lab.dcc_issuer import load_certificate

    root = signers.load_root(args.root)
    issuers = [signers.load_listed(d) for d in args.issuer]
    dsc = [load_certificate(p).public_bytes(Encoding.DER) for p in args.dsc]
    revoked = [_kid(k) for k in args.revoke]
    cards = _revoked_cards(args.revoked_cards, issuers, revoked)
    authority = [_authority_key(spec) for spec in args.authority_key]
    if not issuers and not dsc:
        raise QrgateError("a trust list needs at least one --issuer or --dsc")
    if not authority:
        raise QrgateError("a trust list needs at least one --authority-key: devices seal visits only to a key "
                          "the list vouches for")
    if args.seq < 1 or args.valid_days < 1 or args.issuer_valid_days < 1:
        raise QrgateError("--seq, --valid-days and --issuer-valid-days must be 1 or more")
    data = signers.build_trust_list(root, issuers, args.seq, int(time.time()), valid_days=args.valid_days, revoked=revoked,
                           issuer_valid_days=args.issuer_valid_days, dsc=dsc, authority=authority,
                           dcc_rules=[r for p in args.dcc_rules for r in _rules_file(p)],
                           valuesets={k: v for p in args.valuesets for k, v in _valuesets_file(p).items()},
                           card_revoked=cards)
    write_atomic(args.out, data)
    print(json.dumps(describe_trust_list(trustlist.parse(data, root.public_key()), time.time())))
    return 0


def _revoked_cards(files: list[Path], issuers: list[signers.ListedIssuer], revoked: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The (kid, card id) pairs of the centres' revoked-cards files (lab.cards.revoked) whose kid is a card issuer
    the list trusts; the others are left out, with a note."""
    from lab.cards import revoked as revoked_cards

    card_kids = {i.kid for i in issuers if i.card_days}
    today = dt.datetime.now(dt.UTC).date()
    pairs, left_out, expired = [], {}, 0
    for path in files:
        for card in revoked_cards.read(path):
            if card.expired(today):
                expired += 1  # refused at the door as expired anyway: no room taken in the list
            elif card.kid in card_kids and card.kid not in revoked:
                pairs.append((card.kid, card.card_id))
            else:
                left_out[card.kid] = left_out.get(card.kid, 0) + 1
    for kid, count in left_out.items():  # a retired or revoked key's cards are refused at the door already
        print(f"qrgate: note: {count} revoked card(s) of {kid.hex()} left out: the list trusts no card issuer "
              "with that kid (is its --issuer folder missing?)", file=sys.stderr)
    if expired:
        print(f"qrgate: note: {expired} revoked card(s) left out as expired (past their last day)", file=sys.stderr)
    return pairs


def _json_file(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QrgateError(f"{path}: not a readable JSON file ({exc})") from None


def _rules_file(path: Path) -> list[str]:
    """The rules of a file, one JSON text each (as the list carries them)."""
    rules = _json_file(path)
    rules = rules if isinstance(rules, list) else [rules]
    return [json.dumps(rule, ensure_ascii=False, separators=(",", ":")) for rule in rules]


def _valuesets_file(path: Path) -> dict[str, list[str]]:
    """Value sets by id: from the EU's files ({valueSetId, valueSetValues: {code: …}}) or {id: [code, …]}."""
    data = _json_file(path)
    sets = data if isinstance(data, list) else [data]
    out: dict[str, list[str]] = {}
    for vs in sets:
        if isinstance(vs, dict) and isinstance(vs.get("valueSetId"), str) and isinstance(vs.get("valueSetValues"), dict):
            out[vs["valueSetId"]] = list(vs["valueSetValues"])
        elif isinstance(vs, dict) and all(isinstance(v, list) for v in vs.values()):
            out.update({str(k): [str(c) for c in v] for k, v in vs.items()})
        else:
            raise QrgateError(f"{path}: neither EU value sets nor {{id: [code, …]}}")
    return out

def cmd_revocation_build(args) -> int:
    from firmware.revocation import manifest as manifests
    from lab import revocation

    root = signers.load_root(args.root)
    with (sys.stdin if str(args.entries) == "-" else open(args.entries, encoding="utf-8")) as lines:
        rl = revocation.build(root, revocation.read_entries(lines, str(args.entries)), args.seq, int(time.time()),
                              valid_days=args.valid_days, bits=args.bits)
    rl.write(args.out)
    m = manifests.parse(rl.manifest, root.public_key())
    print(json.dumps({"out": str(args.out), "seq": m.seq, "entries": m.entries, "bits": m.bits,
                      "bodies": len(rl.bodies), "bytes": sum(map(len, rl.bodies.values())) + len(rl.manifest)}))
    return 0


def cmd_revocation_publish(args) -> int:
    from urllib.parse import urlsplit

    from lab import revocation

    url = urlsplit(args.broker)
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        raise QrgateError(f"--broker is mqtts://HOST[:PORT] or mqtt://HOST[:PORT], not {args.broker!r}")
    tls = url.scheme == "mqtts"
    publisher = revocation.Publisher(url.hostname, url.port or (8883 if tls else 1883), args.ca, args.cert, args.key,
                                     tls=tls)
    try:
        print(json.dumps(revocation.publish(revocation.load(args.folder), publisher)))
    finally:
        publisher.close()
    return 0


def _authority_key(spec: str) -> SealingKey | tuple[SealingKey, int]:
    """PUB, or PUB@TIME: a key the devices move to at TIME (2026-12-08T00:00:00Z, or Unix seconds)."""
    path, _, since = spec.partition("@")
    key = keys.load_authority_public(Path(path))
    if not since:
        return key
    try:
        if since.isdigit():
            return key, int(since)
        return key, int(dt.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp())
    except ValueError:
        raise QrgateError(f"--authority-key {spec}: {since!r} is not a UTC time like 2026-12-08T00:00:00Z") from None


def _kid(text: str) -> bytes:
    try:
        kid = bytes.fromhex(text)
    except ValueError:
        kid = b""
    if len(kid) != 8:
        raise QrgateError(f"a kid is 16 hex digits (as `qrgate issuer new` prints it), not {text!r}")
    return kid


def cmd_token_mint(args) -> int:
    issuer = signers.load_issuer(args.issuer)
    if issuer.card_days:
        raise QrgateError(f"{args.issuer} is a card issuer ({issuer.iss}): its key signs printed cards "
                          "(`qrgate card issue`), not phone tokens")
    token = signers.mint(issuer, int(time.time()), ttl=args.ttl, att=args.att)
    if args.png:
        from lab import render

        render.write_png(args.png, render.qr_image(token))
    print(token)
    return 0


def cmd_token_verify(args) -> int:
    from firmware.config import DccConfig
    from firmware.tokens import kc1, kp1, trustlist
    from firmware.tokens.dcc_verifier import DccVerifier
    from firmware.tokens.verdict import KINDS, Kind, Verdict
    from firmware.tokens.verifier import TokenVerifier

    root = keys.load_root_public(args.root) if args.root else None
    if root is None:
        print("qrgate: note: no --root given, the trust list's own signature is not checked", file=sys.stderr)
    try:
        data = trustlist.read_file(args.trust)
    except OSError as exc:
        raise QrgateError(f"cannot read trust list {args.trust}: {exc.strerror}") from None
    trust = trustlist.parse(data, root)
    verifier = TokenVerifier(kp1.Kp1Verifier(lambda: trust, require=tuple(args.require), skew=args.skew),
                             DccVerifier(lambda: trust, DccConfig(rules_country=args.rules_country), args.skew),
                             kc1.Kc1Verifier(lambda: trust, require=tuple(args.require), skew=args.skew), KINDS)
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


def cmd_bench_verify(args) -> int:
    from lab.bench import verify

    if args.rounds < 1 or args.tokens < 1:
        raise QrgateError("--rounds and --tokens must be 1 or more")
    result = verify.run(rounds=args.rounds, n_tokens=args.tokens)
    print(json.dumps(result))
    return 0


def cmd_bench_seal(args) -> int:
    from lab.bench import seal as bench_seal

    print(json.dumps(bench_seal.run(rounds=args.rounds, seals=args.seals)))
    return 0


def cmd_bench_drain(args) -> int:
    from lab.bench import drain

    result = drain.run(records=args.records, window=args.window, rounds=args.rounds, folder=args.folder,
                       profile=args.profile, suite=args.suite)
    print(json.dumps(result))
    return 0


def cmd_bench_passback(args) -> int:
    from lab.bench import passback

    print(json.dumps(passback.run(tokens=args.tokens, gap_ms=args.gap_ms, folder=args.folder)))
    return 0


def cmd_bench_revocation(args) -> int:
    from lab.bench import revocation as bench_revocation

    print(json.dumps(bench_revocation.run(entries=args.entries, lookups=args.lookups, folder=args.folder)))
    return 0


def cmd_bench_start(args) -> int:
    from lab.bench import start

    print(json.dumps(start.run(runs=args.runs, folder=args.folder)))
    return 0


def cmd_bench_gil(args) -> int:
    from lab.bench import gil

    print(json.dumps(gil.run(calls=args.calls, image=args.image, repeats=args.repeats)))
    return 0


def cmd_bench_scan(args) -> int:
    from lab.bench import scan

    result = scan.run(frames_from=args.frames_from, frames=args.frames, fps=args.fps, visitors=args.visitors,
                      decoder=args.decoder, folder=args.folder, seed=args.seed, workers=args.workers,
                      compare=args.compare)
    print(json.dumps(result))
    return 0
