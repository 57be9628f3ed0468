"""A printed entry card end to end (issue 23): issued by the centre's own command, photographed at the door by the
real daemon (firmware.app.run, as `qrgate run`) on a real Mosquitto, sealed, received and opened by the
authority; shown again within the venue's window and after it; then revoked through a new trust list on the wire.

The card is the PNG `qrgate card issue` prints, scaled to what the camera sees of a card held about 20 cm away.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from conftest import load, running_daemon, wait_until
from custodian.investigate import investigate
from custodian.storage import SqliteStorage
from firmware import health, keys
from lab import render
from tests.e2e.test_daemon import Custodian
from tests.e2e.test_key_rotation import _publish_retained
from tests.test_cli import qrgate


def run(*args: str | Path) -> dict:
    """A `qrgate` command as the centre or the authority runs it, and the JSON line it prints."""
    return json.loads(qrgate(*args).stdout.splitlines()[-1])


def card_frames(folder: Path, card_png: Path, px_per_mm: float = 2.6, code_frames: int = 4,
                gap_frames: int = 6) -> Path:
    """A replay camera folder: nobody, then the printed card held up for a few frames (moving a little in the
    hand), then nobody. 2.6 px/mm is a card about 20 cm from the camera (f = 530 px)."""
    folder.mkdir(parents=True, exist_ok=True)
    card = cv2.imread(str(card_png), cv2.IMREAD_GRAYSCALE)
    rng = np.random.default_rng(5)
    bg = render.background(seed=5)
    frames = [None] * gap_frames + [card] * code_frames
    for n, shown in enumerate(frames):
        frame = bg.astype(np.float32)
        if shown is not None:
            w, h = round(85.6 * px_per_mm), round(54 * px_per_mm)
            x, y = (640 - w) // 2 + int(rng.integers(-12, 12)), (480 - h) // 2 + int(rng.integers(-9, 9))
            frame[y:y + h, x:x + w] = cv2.resize(shown, (w, h), interpolation=cv2.INTER_AREA) * 0.92  # matte paper
        frame += rng.normal(0, 3, frame.shape)
        render.write_png(folder / f"{n:05d}.png", np.clip(frame, 0, 255).astype(np.uint8))
    return folder


class Door:
    def __init__(self):
        self.decisions: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def __call__(self, decision) -> None:
        with self._lock:
            self.decisions.append((decision.verdict, decision.reason))

    def seen(self) -> list[tuple[str, str | None]]:
        with self._lock:
            return list(self.decisions)


def test_a_card_from_the_centres_command_is_sealed_received_and_opened_then_revoked_on_the_wire(
        tmp_path, world, pins, broker):
    register = tmp_path / "centre-register.csv"
    issued = run("card", "issue", "--issuer", world.dir / "centre", "--out", tmp_path / "card.png",
                    "--register", register)
    [line] = list(csv.DictReader(register.open()))
    frames = card_frames(tmp_path / "frames", tmp_path / "card.png")
    status = tmp_path / "run" / health.FILE
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=broker.port, camera="loop = true",
                                           decoder="hold_s = 0.2", mqtt="status_interval_s = 1.0",
                                           cards="recheck_s = 2\ndaily_visits_alert = 1"))
    custodian, door = Custodian(broker.port), Door()
    try:
        with running_daemon(cfg, pins, on_decision=door):
            # Within the window the card is already checked in; after it, a new visit.
            wait_until(lambda: door.seen().count(("accepted", None)) >= 2, timeout=30)
            assert ("already_checked_in", None) in door.seen()
            # Status counts the card's visits of the day by its keyed hash, and calls it out over the alert.
            wait_until(lambda: (json.loads(status.read_text()).get("cards_today") or {}).get("visits", 0) >= 2)
            today = json.loads(status.read_text())["cards_today"]
            assert (today["cards"], today["over_alert"]) == (1, 1) and line["card_id"] not in status.read_text()

            # The holder reports the card lost: the centre revokes it, the authority signs a new list.
            run("card", "revoke", "--register", register, issued["number"], "--out", tmp_path / "revoked.txt")
            run("trust", "build", "--root", world.root_dir, "--authority-key", world.authority_dir,
                   "--issuer", world.dir / "centre", "--seq", "2", "--revoked-cards", tmp_path / "revoked.txt",
                   "--out", tmp_path / "trustlist-2.cose")
            _publish_retained(broker.port, "qrgate/v1/trustlist", (tmp_path / "trustlist-2.cose").read_bytes())
            wait_until(lambda: door.seen().count(("rejected", "revoked")) >= 3, timeout=30)
            decided = door.seen()
        accepted = decided.count(("accepted", None))
        records = custodian.wait_for(accepted)
    finally:
        custodian.close()

    # Red and no record from the first revoked answer on; green only before it, and each green was received.
    first_revoked = decided.index(("rejected", "revoked"))
    assert ("accepted", None) not in decided[first_revoked:]
    assert set(decided[:first_revoked]) <= {("accepted", None), ("already_checked_in", None)}
    assert len(records) == accepted and len({r.rid for r in records}) == accepted
    # Only the authority opens them: the card's id, its issuer, and the kind of token.
    storage = SqliteStorage(tmp_path / "custodian.db")
    storage.add([(r, r.wire()) for r in records], received_at=time.time())
    found = investigate(storage, [keys.load_authority_private(world.authority_dir)], "cafe-1",
                        min(r.ts for r in records), max(r.ts for r in records), "dr-kim", "C", tmp_path / "audit.jsonl")
    assert found.failed == {} and len(found.visits) == accepted
    assert {(v["kind"], v["iss"], v["cti"]) for v in found.visits} == {("KC1", "centre", line["card_id"])}
