"""The work of `qrgate card issue` and `qrgate card revoke`: a card issuer's two commands (docs/cards.md).

`issue` signs one card, adds its line to the issuer's register, and writes
the card to print; `revoke` finds a card in the register by the number printed
on it and adds it to the file the issuer sends the authority. Neither takes a
person's name, and neither prints a card id: those stay in the register and
the revocation file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

from firmware.errors import QrgateError
from firmware.store.statefiles import write_atomic
from firmware.utc import iso
from lab import signers
from lab.cards import layout, number, pdf, png, register, revoked

CTI_BYTES = 16
KINDS = (".pdf", ".png")


def phone_issuer_refused(folder: Path, issuer: signers.Issuer) -> QrgateError:
    return QrgateError(f"{folder} is a phone-token issuer ({issuer.iss}): its key signs KP1 tokens for phones, not "
                       "printed cards; a card issuer is made with `qrgate issuer new --card-days N`")


def valid_until(exp: int) -> dt.date:
    """The date printed as "valid until": the last UTC day the card is valid all day. A card expires at the time
    of day it was issued, so on the UTC date of its exp it is valid only until then, and the door would turn a
    visitor away on a day the card names; in Korea (UTC+9) the printed day is also valid all (local) day."""
    return dt.datetime.fromtimestamp(exp, dt.UTC).date() - dt.timedelta(days=1)


def cmd_card_issue(args: argparse.Namespace) -> int:
    out = Path(args.out)
    kind = out.suffix.lower()
    if kind not in KINDS:
        raise QrgateError(f"--out is where the card goes, a .pdf or a .png file, not {out}")
    if not out.parent.is_dir():
        raise QrgateError(f"--out {out}: no folder {out.parent}")
    issuer = signers.load_issuer(args.issuer)
    if not issuer.card_days:
        raise phone_issuer_refused(args.issuer, issuer)
    days = issuer.card_days if args.days is None else args.days
    if not 0 < days <= issuer.card_days:
        raise QrgateError(f"--days {days}: a card of {issuer.iss} lives 1 to {issuer.card_days} days (the issuer's "
                          "card_days, which the trust list holds it to)")
    taken = {e.number for e in register.check_issuer(args.register, issuer.kid)}
    cti = os.urandom(CTI_BYTES)
    while number.of_card(cti) in taken:  # a number is 11 digits of a hash: another card may have it already
        cti = os.urandom(CTI_BYTES)
    lookup = number.of_card(cti)
    now = int(time.time())
    attributes = tuple(dict.fromkeys(args.att))
    token = signers.mint_card(issuer, now, days=days, att=attributes, cti=cti)
    exp = now + days * 86400
    last_day = valid_until(exp)
    card = layout.card(token, issuer.iss, lookup, last_day)
    data = pdf.render(card) if kind == ".pdf" else png.render(card)
    # The register first: a card printed but not registered could not be revoked by its number.
    register.append(args.register, register.Entry(lookup, cti, issuer.kid, iso(now)[:10], last_day.isoformat(),
                                                  attributes))
    write_atomic(out, data, mode=0o600)  # the code is the card: whoever has the file can print another
    print(json.dumps({"number": number.display(lookup), "kid": issuer.kid.hex(), "expires": iso(exp),
                      "valid_until": last_day.isoformat(), "out": str(out)}))
    return 0


def cmd_card_revoke(args: argparse.Namespace) -> int:
    entry = register.find(args.register, number.parse(args.number))
    added = revoked.append(args.out, entry.kid, entry.card_id, dt.date.fromisoformat(entry.valid_until))
    print(json.dumps({"number": number.display(entry.number), "kid": entry.kid.hex(),
                      "valid_until": entry.valid_until, "out": str(args.out), "added": added}))
    return 0
