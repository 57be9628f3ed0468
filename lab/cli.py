"""The lab's commands, added to `qrgate` (an entry point): argument parsing only, the work imported when one runs.

The lab is the tooling beside the device: the demo, benchmarks, fuzzing, the
DCC conformance and CertLogic runners, test issuers and signers, and the authority's key and
trust-list tools. None of it runs at a door.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from firmware.argtypes import positive_int
from firmware.cli import Groups, lazy
from firmware.store import seal

FUZZ_TARGETS = ("certlogic", "dcc", "ingest", "kc1", "kp1", "passback", "revocation", "trustlist")  # lab.fuzz.targets.TARGETS (a test holds them equal)


def add_commands(sub: argparse._SubParsersAction, groups: Groups) -> None:
    s = sub.add_parser("demo", help="the daemon on a replay camera, mock pins and a local broker")
    s.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    s.set_defaults(func=lazy("lab.commands:cmd_demo"))
    tok = sub.add_parser("token", help="mint and verify KP1 tokens").add_subparsers(dest="sub", required=True)
    s = tok.add_parser("mint", help="a test issuer: print one KP1 token")
    s.add_argument("--issuer", required=True, type=Path, help="issuer folder (qrgate issuer new)")
    s.add_argument("--ttl", type=int, default=15, help="seconds of validity (1..300, default 15)")
    s.add_argument("--att", action="append", default=[], choices=("age14", "age19", "vax"))
    s.add_argument("--png", type=Path, help="also write the token as a QR image")
    s.set_defaults(func=lazy("lab.commands:cmd_token_mint"))
    s = tok.add_parser("verify", help="verify tokens: one JSON line each")
    s.add_argument("--trust", required=True, type=Path, help="signed trust list file")
    s.add_argument("--root", type=Path, help="root public key (folder or PEM) to check the trust list with")
    s.add_argument("--at", type=float, help="judge at this Unix time (default: now)")
    s.add_argument("--require", action="append", default=[], choices=("age14", "age19", "vax"))
    s.add_argument("--skew", type=int, default=5, help="clock skew allowed, seconds")
    s.add_argument("--rules-country", default="", metavar="CC",
                   help="also hold DCCs to this country's business rules in the trust list (as dcc.rules_country)")
    s.add_argument("text", help="a token, or - to read one per line from stdin")
    s.set_defaults(func=lazy("lab.commands:cmd_token_verify"))
    for name, what in (("issuer", "an issuer's signing key"), ("root", "the key that signs trust lists"),
                       ("authority", "the health authority's HPKE key pair")):
        s = sub.add_parser(name, help=what).add_subparsers(dest="sub", required=True).add_parser("new", help=what)
        if name == "issuer":
            s.add_argument("--name", required=True, help="its iss, 1 to 64 characters (a card issuer's: printable "
                           "ASCII, as it is printed on its cards)")
            s.add_argument("--card-days", type=int, metavar="N",
                           help="make a card issuer, whose key signs printed entry cards (`qrgate card issue`) "
                                "living up to N days (1..1830), and no phone token; without it, a phone-token issuer")
        if name == "authority":
            s.add_argument("--suite", choices=tuple(seal.BY_ALG), default=seal.DEFAULT.alg,
                           help=f"the HPKE KEM visits are sealed with (default {seal.DEFAULT.alg}: post-quantum "
                                "hybrid; X25519 for what devices of version 1 sealed to)")
        s.add_argument("--out", required=True, type=Path)
        s.set_defaults(func=lazy(f"lab.commands:cmd_{name}_new"))
    card = sub.add_parser("card", help="a card issuer's printed entry cards (KC1), for visitors without a "
                          "smartphone").add_subparsers(dest="sub", required=True)
    s = card.add_parser("issue", help="sign one card, add it to the issuer's register, write it to print: one JSON "
                        "line (its number, kid, expiry, file)")
    s.add_argument("--issuer", required=True, type=Path, help="a card issuer's folder (qrgate issuer new --card-days)")
    s.add_argument("--days", type=positive_int, metavar="N", help="the card's life in days (default: the "
                   "issuer's card days, its longest)")
    s.add_argument("--att", action="append", default=[], choices=("age14", "age19", "vax"),
                   help="an attribute signed into the card for the door's [policy] require; never printed on it "
                        "(repeatable)")
    s.add_argument("--out", required=True, type=Path, metavar="FILE.pdf|FILE.png",
                   help="the card, 85.6 x 54 mm: a vector PDF of that page size, or a 600 dpi PNG; print at 100%%")
    s.add_argument("--register", required=True, type=Path, metavar="FILE.csv",
                   help="the issuer's register, one line a card, created (mode 0600) if missing: number, card id, "
                        "kid, dates, attributes, and no name (keep who holds a number in your own files)")
    s.set_defaults(func=lazy("lab.cards.commands:cmd_card_issue"))
    s = card.add_parser("revoke", help="revoke a lost or stolen card by the number printed on it: its "
                        "kid:card_id:last_day is added to FILE, which the centre sends to the health authority; the card is refused "
                        "at the doors once a trust list built with `qrgate trust build --revoked-cards FILE` "
                        "reaches them")
    s.add_argument("--register", required=True, type=Path, metavar="FILE.csv", help="the issuer's register")
    s.add_argument("number", help="the card's number, e.g. \"1234 5678 9012\" (spaces and dashes allowed; its "
                   "last digit is checked)")
    s.add_argument("--out", required=True, type=Path, metavar="FILE",
                   help="the revoked-cards file to append to (created 0600 if missing); send all of it each time")
    s.set_defaults(func=lazy("lab.cards.commands:cmd_card_revoke"))
    s = sub.add_parser("venue-secret", help="a venue's anti-passback secret").add_subparsers(
        dest="sub", required=True).add_parser("new", help="32 random bytes, mode 0600, for `qrgate provision "
                                              "--venue-secret` on each of the venue's devices (never replaced)")
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=lazy("lab.commands:cmd_venue_secret_new"))
    s = groups["trust"].add_parser("build", help="a trust list signed with the root key")
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--issuer", action="append", default=[], type=Path,
                   help="an issuer folder, phone-token (KP1) or card (KC1): its issuer.json and issuer.pub (repeatable)")
    s.add_argument("--dsc", action="append", default=[], type=Path, metavar="CERT",
                   help="an EU DCC document signer certificate, PEM or DER, or a `qrgate dcc signer new` folder")
    s.add_argument("--authority-key", action="append", default=[], metavar="PUB[@TIME]",
                   help="a health authority public key (authority.pub) devices may seal to (repeatable; at least one); "
                        "@TIME (2026-12-08T00:00:00Z) makes it valid from then: devices seal to the valid key that "
                        "became valid last, so this rotates the key at TIME")
    s.add_argument("--dcc-rules", action="append", default=[], type=Path, metavar="JSON",
                   help="EU DCC business rules as the gateway publishes them: one rule, or an array (repeatable)")
    s.add_argument("--valuesets", action="append", default=[], type=Path, metavar="JSON",
                   help="the value sets the rules name: an EU value set file, an array of them, or "
                        "{id: [code, …]} (repeatable)")
    s.add_argument("--seq", required=True, type=int)
    s.add_argument("--revoke", action="append", default=[], metavar="KID_HEX", help="a revoked issuer key")
    s.add_argument("--revoked-cards", action="append", default=[], type=Path, metavar="FILE",
                   help="a card issuer's revoked cards, as `qrgate card revoke` writes them: one kid:card_id:last_day "
                        "a line (hex, hex, YYYY-MM-DD; a card past its last day is left out), blank lines and # "
                        "comments allowed (repeatable: a file from each centre)")
    s.add_argument("--valid-days", type=int, default=30, help="the list's own validity (default 30)")
    s.add_argument("--issuer-valid-days", type=int, default=365, help="each issuer key's validity (default 365)")
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=lazy("lab.commands:cmd_trust_build"))
    rev = groups["trust revocation"]
    s = rev.add_parser("build", help="a DCC revocation list signed with the root key, from the EU's entries: a "
                       "folder of its manifest and bodies")
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--entries", required=True, type=Path, metavar="FILE",
                   help='JSON lines, one EU entry each: {"kid": 16 hex digits or base64, "type": "UCI" | '
                        '"COUNTRYCODEUCI" | "SIGNATURE", "hash": 32 hex digits or base64}; - reads stdin')
    s.add_argument("--seq", required=True, type=positive_int)
    s.add_argument("--valid-days", type=positive_int, default=7, help="the list's not_after, days after its issue "
                   "(default 7; devices with [dcc] revocation = true want one issued within max_list_age_h)")
    s.add_argument("--bits", type=int, choices=range(9), metavar="0..8",
                   help="split the keys into 2^bits buckets (default: the fewest that leave each half a body)")
    s.add_argument("--out", required=True, type=Path, metavar="DIR")
    s.set_defaults(func=lazy("lab.commands:cmd_revocation_build"))
    s = rev.add_parser("publish", help="a built list to the broker, retained: bodies, then the manifest, then the "
                       "previous list's bodies cleared")
    s.add_argument("folder", type=Path, metavar="DIR")
    s.add_argument("--broker", required=True, metavar="URL", help="mqtts://HOST[:PORT] (8883) or mqtt://HOST[:PORT] "
                   "(1883, a lab only)")
    s.add_argument("--ca", type=Path, help="the custodian CA's certificate (PEM)")
    s.add_argument("--cert", type=Path, help="the publisher's certificate (CN authority:trustlist)")
    s.add_argument("--key", type=Path, help="its key")
    s.set_defaults(func=lazy("lab.commands:cmd_revocation_publish"))
    bench = sub.add_parser("bench", help="benchmarks, printing JSON").add_subparsers(dest="sub", required=True)
    s = bench.add_parser("verify", help="tokens verified per second on one core, against bare Ed25519 checks")
    s.add_argument("--rounds", type=int, default=15, help="measurement rounds (the median is reported)")
    s.add_argument("--tokens", type=int, default=300, help="distinct valid tokens per round")
    s.set_defaults(func=lazy("lab.commands:cmd_bench_verify"))
    s = bench.add_parser("seal", help="a visit sealed per suite: time on one core, bytes on the wire")
    s.add_argument("--rounds", type=positive_int, default=15, help="measurement rounds (the median is reported)")
    s.add_argument("--seals", type=positive_int, default=200, help="visits sealed per round and suite (default 200)")
    s.set_defaults(func=lazy("lab.commands:cmd_bench_seal"))
    s = bench.add_parser("drain", help="a store of sealed records drained to a local Mosquitto, against bare paho")
    s.add_argument("--records", type=int, default=100_000, help="sealed records in the store (default 100000)")
    s.add_argument("--window", type=int, default=16, help="QoS 1 messages in flight, both sides (default 16)")
    s.add_argument("--rounds", type=int, default=1, help="drains, each between two bare runs (default 1)")
    s.add_argument("--folder", type=Path, help="where the store and broker go (default: a temporary folder); "
                   "on a device, a folder on the card the store lives on")
    s.add_argument("--profile", action="store_true", help="add an instrumented drain: where its time goes")
    s.add_argument("--suite", choices=tuple(seal.BY_ALG), default=seal.DEFAULT.alg,
                   help=f"what the records are sealed with (default {seal.DEFAULT.alg}, 1,380 bytes; X25519: 290)")
    s.set_defaults(func=lazy("lab.commands:cmd_bench_drain"))
    s = bench.add_parser("scan", help="the scan loop over a frame set, against bare zxing-cpp and pyzbar")
    s.add_argument("frames_from", type=Path, nargs="?", help="a folder of images (expected texts in NAME.txt "
                   "beside them, where known) or a video; default: a built-in set of phone screens and printed cards")
    s.add_argument("--frames", type=int, help="frames through the loop (default: two passes over the set)")
    s.add_argument("--fps", type=float, default=30.0, help="the replay camera's rate; 0: as fast as the loop "
                   "goes (default 30)")
    s.add_argument("--visitors", type=int, default=70, help="built-in set: visitors in each of its two parts of "
                   "phones, each with a token of their own (default 70: ten per condition, 140 in all), and half as "
                   "many, five at least, holding up printed cards (35: seven per condition)")
    s.add_argument("--decoder", choices=("zxing", "zbar"), default="zxing", help="the loop's decoder")
    s.add_argument("--folder", type=Path, help="where the store and frames go (default: a temporary folder); "
                   "on a device, a folder on the card")
    s.add_argument("--seed", type=int, default=0, help="built-in set: the random seed")
    s.add_argument("--workers", type=int, help="the loop's [decoder] workers (default: the daemon's, the "
                   "machine's cores minus one); a second run with 0 follows unless --no-compare")
    s.add_argument("--no-compare", dest="compare", action="store_false", help="skip the run without workers")
    s.set_defaults(func=lazy("lab.commands:cmd_bench_scan"))
    s = bench.add_parser("passback", help="door-1's green to door-2 knowing the token, through a local Mosquitto")
    s.add_argument("--tokens", type=int, default=300, help="tokens, one after the other (default 300)")
    s.add_argument("--gap-ms", type=float, default=20.0, help="pause after door-2 knew one, before the next "
                   "(default 20)")
    s.add_argument("--folder", type=Path, help="where the broker and the doors' stores go (default: a temporary "
                   "folder)")
    s.set_defaults(func=lazy("lab.commands:cmd_bench_passback"))
    s = bench.add_parser("revocation", help="a DCC revocation list of 10,000,000 entries: build, install, lookups "
                         "and resident memory, pread against mmap")
    s.add_argument("--entries", type=positive_int, default=10_000_000, help="entries in the list (default 10000000)")
    s.add_argument("--lookups", type=positive_int, default=100_000, help="lookups timed (default 100000)")
    s.add_argument("--folder", type=Path, help="where the list and the device's state go (default: a temporary "
                   "folder); on a device, a folder on the card")
    s.set_defaults(func=lazy("lab.commands:cmd_bench_revocation"))
    s = bench.add_parser("start", help="`qrgate run` from its spawn to READY=1 (systemd's notify), first boot and "
                         "warm, with where the time goes")
    s.add_argument("--runs", type=positive_int, default=5, help="rounds, each a first and a warm start (default 5)")
    s.add_argument("--folder", type=Path, help="where the state folders go (default: a temporary folder); on a "
                   "device, a folder on the card")
    s.set_defaults(func=lazy("lab.commands:cmd_bench_start"))
    s = bench.add_parser("gil", help="whether each native call of the decoder (zxing-cpp, zbar, OpenCV) releases "
                         "the GIL: one thread against two, a counter's progress, a waking thread's wait")
    s.add_argument("--calls", type=positive_int, help="calls per measurement (default: as many as take about 0.5 s)")
    s.add_argument("--repeats", type=positive_int, default=3, help="measurements of each call (the median is "
                   "reported; default 3)")
    s.add_argument("--image", type=Path, help="the frame: an image, grayscaled and resized to 640x480 (default: a "
                   "photograph from the checkout's tests/data/qr-samples, or a rendered phone screen)")
    s.set_defaults(func=lazy("lab.commands:cmd_bench_gil"))

    s = sub.add_parser("fuzz", help="mutated inputs against what reads them: one JSON result, exit 1 on a finding")
    s.add_argument("target", choices=FUZZ_TARGETS, help="a token kind (kp1, kc1 cards, dcc), the trust list, the "
                   "ingest, the venue's passback note, CertLogic, or the DCC revocation list")
    s.add_argument("--count", type=positive_int, default=1_000_000, metavar="N", help="mutated inputs (default 1,000,000)")
    s.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, metavar="W",
                   help="forked processes (default: the CPU count)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the keys and every mutation (default 0)")
    s.add_argument("--out", type=Path, metavar="DIR", help="write each crashing, falsely accepted or too slow input here")
    s.set_defaults(func=lazy("lab.fuzz.targets:main"))

    d = sub.add_parser("dcc", help="EU Digital COVID Certificates").add_subparsers(dest="sub", required=True)
    s = d.add_parser("conformance", help="run the dgc-testdata vectors: one JSON line per case, exit 1 on a failure")
    s.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="the dgc-testdata root or country folders (`<CC>/2DCode/raw/*.json`)")
    s.set_defaults(func=lazy("lab.dcc_commands:cmd_conformance"))
    s = d.add_parser("certlogic", help="run CertLogic test-suite files: a JSON line per failing assertion, exit 1 "
                     "on a failure")
    s.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="evaluator (testSuite/) or validation (validation-testSuite/) suite files, or folders of them")
    s.set_defaults(func=lazy("lab.dcc_commands:cmd_certlogic"))

    s = d.add_parser("revocation-hashes", help="the EU revocation entries of a DCC, one JSON line per hash type, as "
                     "`qrgate trust revocation build --entries` reads them (its signature is not checked)")
    s.add_argument("text", help="an HC1: text, or - to read one per line from stdin")
    s.set_defaults(func=lazy("lab.dcc_commands:cmd_revocation_hashes"))

    s = d.add_parser("signer", help="a test document signer").add_subparsers(dest="signer_sub", required=True)
    s = s.add_parser("new", help="a P-256 key and self-signed certificate, for `qrgate trust build --dsc`")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--country", default="XX", help="two capital letters (default XX)")
    s.add_argument("--types", default="vtr", help="the DCC types it may sign: letters of vtr (default vtr)")
    s.add_argument("--days", type=int, default=365, help="the certificate's validity (default 365)")
    s.set_defaults(func=lazy("lab.dcc_commands:cmd_signer_new"))

    s = d.add_parser("mint", help="a test DCC, signed by a test signer: print its HC1: text")
    s.add_argument("--signer", required=True, type=Path, help="a `qrgate dcc signer new` folder")
    s.add_argument("--type", choices=("v", "t", "r"), default="v", help="vaccination, test or recovery")
    s.add_argument("--doses", help="vaccination: N/M, dose N of M (default 2/2)")
    s.add_argument("--positive", action="store_true", help="test: a positive result")
    s.add_argument("--png", type=Path, help="also write the QR code as a PNG")
    s.set_defaults(func=lazy("lab.dcc_commands:cmd_mint"))
