"""`qrgate card issue|revoke`, `issuer new --card-days` and `trust build --revoked-cards`, run as a community centre
and the authority would: through the real command line, the cards read back by the door's decoder and judged by the
door's verifier."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp

from firmware import keys
from firmware.scanner.decode import ZxingDecoder
from firmware.tokens import kc1, trustlist
from firmware.tokens.verdict import Kind, Reason
from lab import render
from lab.cards import number, register
from lab.world import World
from tests.test_cli import qrgate

@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    """The lab's world: `centre` is a card issuer (365 days), `naver` a phone-token issuer, each in its folder."""
    return World.create(tmp_path_factory.mktemp("cards") / "world")


def issue(world: World, out: Path, reg: Path, *extra: str) -> dict:
    proc = qrgate("card", "issue", "--issuer", world.dir / "centre", "--out", out, "--register", reg, *extra)
    shown = json.loads(proc.stdout)
    assert set(shown) == {"number", "kid", "expires", "valid_until", "out"}
    return shown


def sent_to_the_authority(world: World, name: str, out: Path) -> Path:
    """What an issuer sends the authority: its issuer.json and issuer.pub, never its private key."""
    out.mkdir(parents=True, exist_ok=True)
    for sent in ("issuer.json", "issuer.pub"):
        shutil.copy(world.dir / name / sent, out / sent)
    return out


def trust(world: World, out: Path, *extra: str | Path) -> trustlist.TrustList:
    """A trust list from the authority's command naming the card issuer (and naver), as devices would get it,
    built from the folders the issuers sent (no private key among them)."""
    held = out.parent / "held-by-the-authority"
    proc = qrgate("trust", "build", "--root", world.root_dir, "--authority-key", world.authority_dir,
                  "--issuer", sent_to_the_authority(world, "centre", held / "centre"),
                  "--issuer", sent_to_the_authority(world, "naver", held / "naver"), "--seq", "2", "--out", out, *extra)
    shown = json.loads(proc.stdout)
    assert {i["iss"]: i["card_days"] for i in shown["issuers"]} == {"centre": 365, "naver": 0}
    return trustlist.parse(out.read_bytes(), keys.load_root_public(world.root_dir))


def png_text(path: Path) -> str:
    [read] = zxingcpp.read_barcodes(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    return read.text


def at_the_door(card_gray: np.ndarray) -> list[list[str]]:
    """What the door's decoder reads in four frames of the card held about 25 cm from the camera (f = 530 px:
    2.0 to 2.2 px/mm as the card moves in the hand), over the entrance, with sensor noise."""
    decoder, reads = ZxingDecoder(), []
    for i, px_mm in enumerate((2.0, 2.06, 2.12, 2.18)):
        w, h = round(85.6 * px_mm), round(54 * px_mm)
        frame = render.background(seed=i).astype(np.float32)
        y, x = (480 - h) // 2 + 2 * i, (640 - w) // 2 - 3 * i
        frame[y:y + h, x:x + w] = cv2.resize(card_gray, (w, h), interpolation=cv2.INTER_AREA)
        frame += np.random.default_rng(i).normal(0, 3, frame.shape)
        reads.append(decoder.decode(np.clip(frame, 0, 255).astype(np.uint8)))
    return reads


def rows(reg: Path) -> list[list[str]]:
    with open(reg, newline="") as f:
        return list(csv.reader(f))


def test_issuer_new_makes_a_card_issuer_within_bounds_and_says_why_not(tmp_path):
    shown = json.loads(qrgate("issuer", "new", "--name", "Mapo Centre", "--out", tmp_path / "c", "--card-days",
                              "30").stdout)
    assert shown["card_days"] == 30 and json.loads((tmp_path / "c" / "issuer.json").read_text())["card_days"] == 30
    assert "card_days" not in json.loads(qrgate("issuer", "new", "--name", "app", "--out", tmp_path / "p").stdout)
    for args, reason in [(("--card-days", "0"), "1 to 1830 days"), (("--card-days", "1831"), "1 to 1830 days"),
                         (("--card-days", "30", "--name", "마포 센터"), "printable ASCII")]:
        proc = qrgate("issuer", "new", "--name", "x", "--out", tmp_path / "bad", *args, ok=False)
        assert proc.returncode == 2 and reason in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "bad" / "issuer.key").exists()


def test_a_png_card_reads_at_the_door_and_is_accepted(world, tmp_path):
    out, reg = tmp_path / "card.png", tmp_path / "register.csv"
    shown = issue(world, out, reg, "--att", "vax", "--att", "age19")
    data = out.read_bytes()
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == (2022, 1276)
    assert data[37:41] == b"pHYs" and struct.unpack(">IIB", data[41:50]) == (23622, 23622, 1)  # 600 dpi, per metre
    assert out.stat().st_mode & 0o077 == 0
    card = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    reads = at_the_door(card)
    text = png_text(out)
    assert text.startswith("KC1:") and sum(r == [text] for r in reads) >= 3, reads  # a door reads dozens a second
    tl = trust(world, tmp_path / "trust.cose")
    verdict = kc1.Kc1Verifier(lambda: tl, require=("vax",)).verify(text, time.time())
    assert verdict.kind is Kind.ACCEPTED and verdict.claims.iss == "centre"
    assert tuple(verdict.claims.att) == ("vax", "age19")
    header, line = rows(reg)
    assert header == list(register.COLUMNS)
    assert line == [shown["number"], verdict.claims.cti.hex(), world.centre.kid.hex(), line[3],
                    shown["valid_until"], "vax age19"]
    assert number.parse(shown["number"]) == number.of_card(verdict.claims.cti)
    assert shown["kid"] == world.centre.kid.hex() and shown["expires"].startswith(shown["valid_until"][:4])
    assert verdict.claims.cti.hex() not in json.dumps(shown)  # the card id stays in the register


def test_a_pdf_card_is_card_sized_and_poppler_renders_it_to_the_same_card(world, tmp_path):
    out, reg = tmp_path / "card.pdf", tmp_path / "register.csv"
    issue(world, out, reg, "--days", "30")
    assert b"/MediaBox [0 0 242.646 153.071]" in out.read_bytes()
    exe = shutil.which("pdftoppm")
    assert exe, "pdftoppm is missing: Debian's poppler-utils has it (./dev test installs it)"
    subprocess.run([exe, "-r", "600", "-gray", "-singlefile", str(out), str(tmp_path / "page")], check=True,
                   timeout=60)
    page = cv2.imread(str(tmp_path / "page.pgm"), cv2.IMREAD_GRAYSCALE)
    [read] = zxingcpp.read_barcodes(page)
    reads = at_the_door(page)
    assert sum(r == [read.text] for r in reads) >= 3, reads
    tl = trust(world, tmp_path / "trust.cose")
    verdict = kc1.Kc1Verifier(lambda: tl).verify(read.text, time.time())
    assert verdict.kind is Kind.ACCEPTED and verdict.claims.exp - verdict.claims.iat == 30 * 86400
    assert rows(reg)[1][1] == verdict.claims.cti.hex()


def test_a_phone_token_issuer_signs_no_card_and_a_card_issuer_no_phone_token(world, tmp_path):
    reg = tmp_path / "register.csv"
    issue(world, tmp_path / "first.pdf", reg)
    before = reg.read_bytes()
    proc = qrgate("card", "issue", "--issuer", world.dir / "naver", "--out", tmp_path / "card.pdf", "--register", reg,
                  ok=False)
    assert proc.returncode == 2 and "phone-token issuer" in proc.stderr and "Traceback" not in proc.stderr
    assert reg.read_bytes() == before and not (tmp_path / "card.pdf").exists()
    proc = qrgate("token", "mint", "--issuer", world.dir / "centre", ok=False)
    assert proc.returncode == 2 and "card issuer" in proc.stderr and proc.stdout == ""
    proc = qrgate("card", "issue", "--issuer", world.dir / "centre", "--days", "366", "--out", tmp_path / "c.png",
                  "--register", reg, ok=False)
    assert proc.returncode == 2 and "1 to 365 days" in proc.stderr and reg.read_bytes() == before
    proc = qrgate("card", "issue", "--issuer", world.dir / "centre", "--out", tmp_path / "c.jpg", "--register", reg,
                  ok=False)
    assert proc.returncode == 2 and ".pdf or a .png" in proc.stderr and reg.read_bytes() == before


def test_the_register_holds_the_listed_columns_only_and_belongs_to_one_issuer(world, tmp_path):
    reg = tmp_path / "register.csv"
    shown = [issue(world, tmp_path / f"{i}.pdf", reg, *a) for i, a in enumerate([(), ("--att", "age14")])]
    assert reg.stat().st_mode & 0o777 == 0o600
    table = rows(reg)
    assert table[0] == ["number", "card_id", "kid", "issued", "valid_until", "attributes"]
    assert [r[0] for r in table[1:]] == [s["number"] for s in shown] and all(len(r) == 6 for r in table)
    for r in table[1:]:
        assert re.fullmatch(r"\d{4} \d{4} \d{4}", r[0]) and re.fullmatch(r"[0-9a-f]{32}", r[1])
        assert r[2] == world.centre.kid.hex() and re.fullmatch(r"\d{4}-\d\d-\d\d", r[3]) and r[4] == shown[0]["valid_until"]
    assert [r[5] for r in table[1:]] == ["", "age14"]
    assert "centre" not in reg.read_text()  # not even the issuer's name: its kid is enough
    before = reg.read_bytes()
    qrgate("issuer", "new", "--name", "Other Centre", "--out", tmp_path / "other", "--card-days", "90")
    proc = qrgate("card", "issue", "--issuer", tmp_path / "other", "--out", tmp_path / "x.pdf", "--register", reg,
                  ok=False)
    assert proc.returncode == 2 and "another issuer" in proc.stderr and reg.read_bytes() == before
    assert not (tmp_path / "x.pdf").exists()


def test_a_revoked_card_is_refused_at_the_door_and_another_of_the_issuer_still_accepted(world, tmp_path):
    reg, revoked = tmp_path / "register.csv", tmp_path / "revoked.txt"
    lost, kept = (issue(world, tmp_path / f"{name}.png", reg) for name in ("lost", "kept"))
    lost_text, kept_text = png_text(tmp_path / "lost.png"), png_text(tmp_path / "kept.png")
    typed = lost["number"].replace(" ", "-")  # as read out over the phone and typed with dashes
    shown = json.loads(qrgate("card", "revoke", "--register", reg, typed, "--out", revoked).stdout)
    assert shown["added"] is True and shown["number"] == lost["number"]
    lines = [line for line in revoked.read_text().splitlines() if line and not line.startswith("#")]
    assert lines == [f"{world.centre.kid.hex()}:{rows(reg)[1][1]}:{lost['valid_until']}"]  # its last day, as printed
    again = json.loads(qrgate("card", "revoke", "--register", reg, lost["number"], "--out", revoked).stdout)
    assert again["added"] is False and len(revoked.read_text().splitlines()) == 2  # the header and one card
    tl = trust(world, tmp_path / "trust.cose", "--revoked-cards", revoked)
    assert len(tl.card_revoked) == 1
    verifier = kc1.Kc1Verifier(lambda: tl)
    now = time.time()
    assert verifier.verify(lost_text, now).reason is Reason.REVOKED
    assert verifier.verify(kept_text, now).kind is Kind.ACCEPTED
    assert kept["number"] != lost["number"]


def test_trust_build_leaves_out_cards_past_their_last_day_and_keeps_those_without_one(world, tmp_path):
    kid, today = world.centre.kid.hex(), dt.datetime.now(dt.UTC).date()
    days = {"long gone": today - dt.timedelta(days=2), "expiring today": today - dt.timedelta(days=1),
            "valid": today + dt.timedelta(days=30)}
    revoked = tmp_path / "revoked.txt"
    revoked.write_text("".join(f"{kid}:{'%02x' % i * 16}:{day.isoformat()}  # {why}\n"
                               for i, (why, day) in enumerate(days.items())) + f"{kid}:{'ee' * 16}\n")
    proc = qrgate("trust", "build", "--root", world.root_dir, "--authority-key", world.authority_dir, "--issuer",
                  world.dir / "centre", "--seq", "3", "--out", tmp_path / "t.cose", "--revoked-cards", revoked)
    assert json.loads(proc.stdout)["card_revoked"] == 3  # all but the one two days past its last day
    assert "1 revoked card(s) left out as expired" in proc.stderr
    revoked.write_text(f"{kid}:{'ab' * 16}:2026-02-30\n")  # no such day
    proc = qrgate("trust", "build", "--root", world.root_dir, "--authority-key", world.authority_dir, "--issuer",
                  world.dir / "centre", "--seq", "3", "--out", tmp_path / "t.cose", "--revoked-cards", revoked, ok=False)
    assert proc.returncode == 2 and f"{revoked} line 1" in proc.stderr


def test_revoking_an_unknown_or_mistyped_number_is_a_clear_error_and_writes_nothing(world, tmp_path):
    reg, revoked = tmp_path / "register.csv", tmp_path / "revoked.txt"
    shown = issue(world, tmp_path / "card.pdf", reg)
    digits = number.parse(shown["number"])
    unknown = number.of_card(b"\x01" * 16)
    mistyped = digits[:5] + str((int(digits[5]) + 1) % 10) + digits[6:]
    for typed, reason in [(number.display(unknown), "no card numbered"), (mistyped, "check digit"),
                          ("12345", "12 digits")]:
        proc = qrgate("card", "revoke", "--register", reg, typed, "--out", revoked, ok=False)
        assert proc.returncode == 2 and reason in proc.stderr and "Traceback" not in proc.stderr
    assert not revoked.exists()
    proc = qrgate("card", "revoke", "--register", tmp_path / "none.csv", shown["number"], "--out", revoked, ok=False)
    assert proc.returncode == 2 and "no such register" in proc.stderr


def test_trust_build_reads_revoked_cards_files_strictly_and_names_the_bad_line(world, tmp_path):
    kid = world.centre.kid.hex()
    good = tmp_path / "good.txt"
    good.write_text(f"# from the centre\n\n{kid}:{'ab' * 16}\n  {kid}:{'CD' * 16}  # lost on the bus\n"
                    f"{world.naver.kid.hex()}:{'00' * 16}\n")
    proc = qrgate("trust", "build", "--root", world.root_dir, "--authority-key", world.authority_dir, "--issuer",
                  world.dir / "centre", "--issuer", world.dir / "naver", "--seq", "3", "--out", tmp_path / "t.cose",
                  "--revoked-cards", good)
    assert json.loads(proc.stdout)["card_revoked"] == 2
    assert f"1 revoked card(s) of {world.naver.kid.hex()} left out" in proc.stderr  # naver issues no card
    for bad in (f"{kid}:{'ab' * 15}", f"{kid[:-2]}:{'ab' * 16}", f"{kid} {'ab' * 16}", f"{kid}:{'zz' * 16}"):
        path = tmp_path / "bad.txt"
        path.write_text(f"# ok\n{kid}:{'ab' * 16}\n{bad}\n")
        proc = qrgate("trust", "build", "--root", world.root_dir, "--authority-key", world.authority_dir,
                      "--issuer", world.dir / "centre", "--seq", "3", "--out", tmp_path / "t.cose",
                      "--revoked-cards", path, ok=False)
        assert proc.returncode == 2 and f"{path} line 3" in proc.stderr and "Traceback" not in proc.stderr
