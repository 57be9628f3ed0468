"""A world made from nothing: the keys a venue's door trusts, and the configuration that points a daemon at them.

The demo, the benchmarks and the test suite all start from one, so that what
they run is one wiring, not three copies of it. `World.create` makes, in one
folder, the phone-token issuers (`naver`, `kakao`, `pass`, each in its own
folder as `qrgate issuer new` makes it), the card issuer `centre` (a community
centre signing printed cards that live a year), a `rogue` key nobody trusts, the
root, the health authority's pair, an EU DCC document signer for `KR`, and
a trust list (seq 1) that the root signed and that names them all but the
rogue, and the venue secret its doors share tokens' hashes under (`venue.secret`,
as `qrgate venue-secret new` makes it); `revocation_list` signs a DCC revocation
list with its root. `World.load` reads the same folder back,
in another process.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from firmware import keys
from firmware.passback import secret as venue_secret
from lab import dcc_issuer, revocation, signers

APPS = ("naver", "kakao", "pass")
CARD_DAYS = 365


@dataclass
class World:
    dir: Path
    issuers: dict[str, signers.Issuer]  # by name: every one of APPS, all trusted
    rogue: signers.Issuer
    dsc: dcc_issuer.Signer
    centre: signers.Issuer  # the card issuer, trusted for cards of up to CARD_DAYS

    @classmethod
    def create(cls, folder: Path, issued_at: int | None = None) -> World:
        folder = Path(folder)
        world = cls(folder, {name: signers.new_issuer(name, folder / name) for name in APPS},
                    signers.new_issuer("rogue", folder / "rogue"), dcc_issuer.new_signer(folder / "dsc", country="KR"),
                    signers.new_issuer("centre", folder / "centre", card_days=CARD_DAYS))
        signers.new_root(world.root_dir)
        signers.new_authority(world.authority_dir)
        world.trust_file.write_bytes(world.trust_list(world.trusted, seq=1, issued_at=issued_at))
        venue_secret.write_new(world.venue_secret)
        return world

    @classmethod
    def load(cls, folder: Path) -> World:
        folder = Path(folder)
        return cls(folder, {name: signers.load_issuer(folder / name) for name in APPS},
                   signers.load_issuer(folder / "rogue"), dcc_issuer.load_signer(folder / "dsc"),
                   signers.load_issuer(folder / "centre"))

    @property
    def trusted(self) -> list[signers.Issuer]:
        """Every issuer the world's first trust list names: the phone apps and the card issuer."""
        return [*self.issuers.values(), self.centre]

    @property
    def naver(self) -> signers.Issuer:
        return self.issuers["naver"]

    @property
    def kakao(self) -> signers.Issuer:
        return self.issuers["kakao"]

    @property
    def root_dir(self) -> Path:
        return self.dir / "root"

    @property
    def authority_dir(self) -> Path:
        return self.dir / "authority"

    @property
    def trust_file(self) -> Path:
        return self.dir / "trustlist.cose"

    @property
    def venue_secret(self) -> Path:
        """The venue's shared secret: a daemon's config names it as `[passback] secret` to take part."""
        return self.dir / "venue.secret"

    def trust_list(self, issuers: Iterable[signers.Issuer], seq: int, issued_at: int | None = None, **kw) -> bytes:
        """A list from the world's root naming these issuers, the world's document signer and authority key."""
        kw.setdefault("dsc", [self.dsc.der])
        kw.setdefault("authority", [keys.load_authority_public(self.authority_dir)])
        return signers.build_trust_list(signers.load_root(self.root_dir), issuers, seq=seq,
                                        issued_at=int(time.time()) if issued_at is None else issued_at, **kw)

    def revocation_list(self, entries: Iterable[revocation.Entry], seq: int, issued_at: int | None = None,
                        **kw) -> revocation.RevocationList:
        """A DCC revocation list from the world's root naming `entries` (revocation.entries_of_dcc makes them)."""
        return revocation.build(signers.load_root(self.root_dir), entries, seq,
                                int(time.time()) if issued_at is None else issued_at, **kw)

    def mint(self, issuer: signers.Issuer | str | None = None, at: float | None = None, **kw) -> str:
        """A phone token from `issuer` (an Issuer or a name; naver by default), issued at `at` (now)."""
        chosen = self.issuers[issuer] if isinstance(issuer, str) else issuer or self.naver
        return signers.mint(chosen, int(at if at is not None else time.time()), **kw)

    def mint_card(self, at: float | None = None, **kw) -> str:
        """A printed card (KC1) from the card issuer, issued at `at` (now), for its longest life by default."""
        return signers.mint_card(self.centre, int(at if at is not None else time.time()), **kw)

    def mint_dcc(self, at: float | None = None, **kw) -> str:
        """An EU DCC (a vaccination by default) signed by the trusted document signer."""
        return dcc_issuer.mint(self.dsc, at if at is not None else time.time(), **kw)

    def forge(self, at: float | None = None) -> str:
        """Signed by the rogue key under naver's kid: a forgery that must fail the signature check."""
        return signers.mint(signers.Issuer("naver", self.rogue.key), int(at if at is not None else time.time()),
                            kid=self.naver.kid)

    def config_toml(self, state: Path, frames: Path, mqtt_port: int | None = None, **sections: str) -> str:
        """A daemon's configuration: a replay camera over `frames`, mock pins, this world's keys, the broker on
        loopback at `mqtt_port` (none: the uplink is off). Each keyword names a section; its `key = value` lines
        replace the section's own keys or are added to it, and a section it does not have is added."""
        mqtt = f"host = \"127.0.0.1\"\nport = {mqtt_port}\ntls = false\n" if mqtt_port else "enabled = false\n"
        text = f"""
[device]
venue = "cafe-1"
id = "door-1"
state_dir = "{state}"
runtime_dir = "{state.parent / 'run'}"
[camera]
source = "replay"
path = "{frames}"
fps = 30.0
[gpio]
backend = "mock"
[trust]
root_key = "{self.root_dir / 'root.pub'}"
list = "{self.trust_file}"
[clock]
# This machine's kernel clock may well be unsynchronised (containers, CI): a
# daemon that must trust it says require_sync = true.
require_sync = false
[mqtt]
{mqtt}"""
        for name, body in sections.items():
            text = _merged(text, name, body)
        return text


def _merged(text: str, section: str, body: str) -> str:
    header = f"[{section}]\n"
    if header not in text:
        return text + header + body + "\n"
    start = text.index(header) + len(header)
    end = text.find("\n[", start - 1)  # from the header's own newline: the section may be empty
    end = len(text) if end < 0 else end + 1
    own = text[start:end]
    added = []
    for line in body.splitlines():
        key = line.partition("=")[0].strip()
        pattern = re.compile(rf"^{re.escape(key)}\s*=.*$", re.M)
        if key and not key.startswith("#") and pattern.search(own):
            own = pattern.sub(lambda _: line, own, count=1)
        else:
            added.append(line)
    return text[:start] + "".join(f"{line}\n" for line in added) + own + text[end:]

