"""`qrgate dcc …`: the EU DCC tools: the conformance vectors, CertLogic's test suites, a DCC's revocation
hashes, and a test document signer with its certificates.

`signer new` and `mint` are for tests, the demo and a technician's dry run
(a DCC shown to a device whose trust list names the test signer); real
certificates come from a member state. `qrgate token verify` reads DCCs too.
"""

from __future__ import annotations

import json
import re
import time

from firmware.errors import QrgateError


def cmd_conformance(args) -> int:
    from lab import dcc_conformance

    return dcc_conformance.main(args)


def cmd_certlogic(args) -> int:
    from lab import dcc_certlogic

    return dcc_certlogic.main(args)

def cmd_revocation_hashes(args) -> int:
    import sys

    from lab import revocation

    texts = (line.strip() for line in sys.stdin if line.strip()) if args.text == "-" else [args.text.strip()]
    for text in texts:
        for entry in revocation.entries_of_dcc(text):
            print(json.dumps(entry.as_json()))
    return 0


def cmd_signer_new(args) -> int:
    from lab import dcc_issuer

    signer = dcc_issuer.new_signer(args.out, country=args.country, types=args.types, days=args.days)
    print(json.dumps({"kid": signer.kid.hex(), "country": signer.country, "types": args.types,
                      "certificate": str(args.out / "dsc.pem")}))
    return 0


def cmd_mint(args) -> int:
    from lab import dcc_issuer

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
        from lab import render

        render.write_png(args.png, render.qr_image(text))
    print(text)
    return 0
