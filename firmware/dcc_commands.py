"""`qrgate dcc …`: the EU DCC tools: the conformance vectors, and a test document signer with its certificates.

`signer new` and `mint` are for tests, the demo and a technician's dry run
(a DCC shown to a device whose trust list names the test signer); real
certificates come from a member state. `qrgate token verify` reads DCCs too.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from firmware.errors import QrgateError


def cmd_conformance(args) -> int:
    from firmware import dcc_conformance

    return dcc_conformance.main(args)


def cmd_signer_new(args) -> int:
    from firmware.tokens import dcc_issuer

    signer = dcc_issuer.new_signer(args.out, country=args.country, types=args.types, days=args.days)
    print(json.dumps({"kid": signer.kid.hex(), "country": signer.country, "types": args.types,
                      "certificate": str(args.out / "dsc.pem")}))
    return 0


def cmd_mint(args) -> int:
    from firmware.tokens import dcc_issuer

    signer = dcc_issuer.load_signer(args.signer)
    fields = {}
    if args.doses is not None:
        m = re.fullmatch(r"(\d{1,2})/(\d{1,2})", args.doses)
        if m is None or args.type != "v":
            raise QrgateError("--doses is N/M (dose N of a series of M), for a vaccination (--type v)")
        fields.update(dn=int(m[1]), sd=int(m[2]))
    if args.positive:
        if args.type != "t":
            raise QrgateError("--positive is for a test (--type t)")
        fields.update(tr=dcc_issuer.POSITIVE)
    text = dcc_issuer.mint(signer, time.time(), kind=args.type, **fields)
    if args.png:
        from firmware import render

        render.write_png(args.png, render.qr_image(text))
    print(text)
    return 0


def register(subparsers) -> None:
    d = subparsers.add_parser("dcc", help="EU Digital COVID Certificates").add_subparsers(dest="sub", required=True)
    s = d.add_parser("conformance", help="run the dgc-testdata vectors: one JSON line per case, exit 1 on a failure")
    s.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="the dgc-testdata root or country folders (`<CC>/2DCode/raw/*.json`)")
    s.set_defaults(func=cmd_conformance)

    s = d.add_parser("signer", help="a test document signer").add_subparsers(dest="signer_sub", required=True)
    s = s.add_parser("new", help="a P-256 key and self-signed certificate, for `qrgate trust build --dsc`")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--country", default="XX", help="two capital letters (default XX)")
    s.add_argument("--types", default="vtr", help="the DCC types it may sign: letters of vtr (default vtr)")
    s.add_argument("--days", type=int, default=365, help="the certificate's validity (default 365)")
    s.set_defaults(func=cmd_signer_new)

    s = d.add_parser("mint", help="a test DCC, signed by a test signer: print its HC1: text")
    s.add_argument("--signer", required=True, type=Path, help="a `qrgate dcc signer new` folder")
    s.add_argument("--type", choices=("v", "t", "r"), default="v", help="vaccination, test or recovery")
    s.add_argument("--doses", help="vaccination: N/M, dose N of M (default 2/2)")
    s.add_argument("--positive", action="store_true", help="test: a positive result")
    s.add_argument("--png", type=Path, help="also write the QR code as a PNG")
    s.set_defaults(func=cmd_mint)
