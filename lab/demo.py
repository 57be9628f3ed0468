"""`qrgate demo`: the real daemon on a replay camera, mock pins and a local Mosquitto.

It sets up a world from nothing (`lab.world`: issuers, a root, a trust list,
the health authority), renders a queue of visitors' phones as camera frames
(valid tokens, an expired one, a forged one, one shown twice, a menu QR, two
EU vaccination passes, a printed entry card from a community centre, empty
frames between visitors), starts Mosquitto on a
free loopback port when it can, runs `firmware.app.run` exactly as
`qrgate run` does, and prints what happened.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from firmware import app, config, keys
from lab import render
from lab.broker import Mosquitto, MosquittoError, free_port
from firmware.clock import ClockSync
from firmware.events import console_line
from firmware.store.records import SealedRecord
from lab.world import World

FPS = 15.0
CODE_FRAMES = 12  # 0.8 s of a phone held up
GAP_FRAMES = 9  # 0.6 s of nobody between visitors
PLANNING_MARGIN = 2.0  # drawing the queue is planned at half the pace its first frames were drawn at


@dataclass(frozen=True)
class Visitor:
    label: str
    app: str
    token: str
    dark: bool = False
    card_id: bytes | None = None  # a printed entry card's, held up instead of a phone


def _visitors(world: World, start: int) -> list[Visitor]:
    """The queue, for a replay that starts at `start`."""
    slot = (CODE_FRAMES + GAP_FRAMES) / FPS
    t = lambda i: start + 2 + i * slot  # noqa: E731 - when visitor i is in front of the camera

    def token(name: str, i: int, **kw) -> str:
        # Minted as the phone app does, a moment before the visitor reaches the camera.
        return world.mint(name, at=int(t(i)) - 1, **kw)

    first = token("naver", 0)
    card_id = os.urandom(16)
    return [
        Visitor("valid, Naver", "NAVER", first),
        Visitor("valid, Kakao (vax)", "kakaotalk", token("kakao", 1, att=["vax"]), dark=True),
        Visitor("expired, PASS", "PASS", world.mint("pass", at=start - 120)),
        Visitor("valid, PASS", "PASS", token("pass", 3)),
        Visitor("forged, 'Naver'", "NAVER", world.forge(at=int(t(4)) - 1)),
        Visitor("a menu QR", "menu", "https://example.com/menu"),
        Visitor("valid, Naver", "NAVER", token("naver", 6)),
        Visitor("shown twice", "NAVER", first),
        Visitor("valid, Kakao", "kakaotalk", token("kakao", 8)),
        Visitor("EU vaccination pass", "DCC", world.mint_dcc(start)),
        Visitor("EU pass, 1st dose of 2", "DCC", world.mint_dcc(start, dn=1, sd=2)),
        Visitor("printed card, community centre", "centre", world.mint_card(at=start, cti=card_id),
                card_id=card_id),
    ]


def _frames(folder: Path) -> Callable[[np.ndarray], None]:
    """A writer of numbered camera frames into `folder`, in the order the replay shows them."""
    folder.mkdir(exist_ok=True)
    written = len(list(folder.iterdir()))

    def put(frame: np.ndarray) -> None:
        nonlocal written
        render.write_png(folder / f"{written:05d}.png", frame)
        written += 1

    return put


def _render_visitors(visitors: list[Visitor], put: Callable[[np.ndarray], None]) -> None:
    rng = np.random.default_rng(7)
    bg = render.background(seed=3)
    for v in visitors:
        phone = (_card(v.token, v.app, v.card_id) if v.card_id else
                 render.phone_screen(v.token, v.app, dark=v.dark))
        for k in range(CODE_FRAMES):
            put(render.scene(phone, rng, angle=rng.uniform(-8, 8), blur=rng.uniform(0, 1.0),
                             glare=k % 4 == 1, bg=bg))
        for _ in range(GAP_FRAMES):
            put(render.scene(None, rng, bg=bg))


def _card(token: str, iss: str, card_id: bytes) -> np.ndarray:
    """The card as `qrgate card issue` prints it, as the camera sees it about 20 cm away (2.6 px/mm)."""
    import cv2

    from lab.cards import layout, number, png

    drawn = png.raster(layout.card(token, iss, number.of_card(card_id), dt.date.today()), dpi=200)
    return cv2.resize(drawn, (round(85.6 * 2.6), round(54 * 2.6)), interpolation=cv2.INTER_AREA)


def prepare(world: World, folder: Path, clock: Callable[[], float] = time.time) -> tuple[list[Visitor], int]:
    """The queue's frames in `folder`, and the time (`clock`'s) the replay is to start at.

    A phone token lives 15 s and must be in its frames before they are drawn,
    and on a slow machine (a Pi Zero 2 W, an emulated arm64 root) drawing them
    outlasts it. So the empty frames before the first visitor are drawn first
    and timed; the replay is planned to start once the rest would be drawn at
    PLANNING_MARGIN times that pace; each token is minted for the moment its
    visitor will be in front of the camera then; and if drawing was slower
    still, the visitors are drawn again, planned on the pace just seen.
    """
    shutil.rmtree(folder, ignore_errors=True)
    t0 = clock()
    lead = _frames(folder)
    rng, bg = np.random.default_rng(3), render.background(seed=3)
    for _ in range(GAP_FRAMES):
        lead(render.scene(None, rng, bg=bg))
    pace = (clock() - t0) / GAP_FRAMES
    queue_frames = len(_visitors(world, 0)) * (CODE_FRAMES + GAP_FRAMES)  # only how many: these tokens go
    for _attempt in range(3):
        start = math.ceil(clock() + pace * queue_frames * PLANNING_MARGIN)
        visitors = _visitors(world, start)
        for old in sorted(folder.iterdir())[GAP_FRAMES:]:
            old.unlink()
        began = clock()
        _render_visitors(visitors, _frames(folder))
        if clock() <= start:
            return visitors, start
        pace = (clock() - began) / queue_frames
    raise SystemExit("qrgate demo: this machine drew the camera frames slower each time than planned; "
                     "the tokens in them would expire before they are shown")


def _write_config(world: World, port: int, require_sync: bool) -> Path:
    path = world.dir / "qrgate.toml"
    path.write_text(world.config_toml(
        world.dir / "state", world.dir / "frames", port, device='venue = "demo-cafe"', camera=f"fps = {FPS}",
        policy='accept = ["KP1", "KC1", "DCC"]', clock=f"require_sync = {str(require_sync).lower()}",
        mqtt="status_interval_s = 5\ndrain_on_exit_s = 5", events=f'path = "{world.dir / "events.jsonl"}"'))
    return path


class _Receiver:
    """Plays custodian and authority for the summary: counts records arriving and opens them."""

    def __init__(self, port: int, authority: Path):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.rids: set[bytes] = set()
        self.opened = 0
        self._key = keys.load_authority_private(authority)
        self._ready = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-custodian", protocol=mqtt.MQTTv5)
        c.on_connect = lambda client, *a: (client.subscribe("qrgate/v1/+/+/visits", qos=1), self._ready.set())
        c.on_message = self._message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self._client = c
        self._ready.wait(5)

    def _message(self, client, userdata, message) -> None:
        record = SealedRecord.from_wire(message.payload)
        self.rids.add(record.rid)
        if record.open(self._key)["rid"] == record.rid:
            self.opened += 1

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def main(keep: Path | None = None) -> int:
    folder = Path(tempfile.mkdtemp(prefix="qrgate-demo-")) if keep is None else Path(keep)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"qrgate demo — a venue entrance, in {folder}")
    world = World.create(folder, issued_at=int(time.time()))
    broker, receiver = None, None
    try:
        broker = Mosquitto(folder / "mosquitto")
        broker.start()
        port = broker.port
        print(f"broker: Mosquitto on 127.0.0.1:{port}")
        receiver = _Receiver(port, world.authority_dir)
    except MosquittoError as exc:
        port = free_port()
        print(f"broker: Mosquitto could not start ({exc}); carrying on offline — visits will wait in the store")
    # Drawn last, just before the replay, whose start its tokens are minted for.
    visitors, start = prepare(world, folder / "frames")
    n_frames = len(list((folder / "frames").iterdir()))
    print(f"camera: replaying {n_frames} frames at {FPS:g} fps — {len(visitors)} visitors: "
          + ", ".join(v.label for v in visitors))

    synced = ClockSync().synchronised()
    if not synced:
        print("clock: this machine's clock is not NTP-synchronised (common in containers); the demo runs "
              "as a device with a real-time clock would (clock.require_sync = false)")
    cfg = config.load(_write_config(world, port, require_sync=synced))
    time.sleep(max(0.0, start - time.time()))  # the moment the tokens in the frames were minted for
    print("daemon: scanning (the LED column is what the mock pins were driven to show)\n")
    t0 = time.monotonic()
    try:
        stats = app.run(cfg, on_decision=lambda d: print(console_line(d), flush=True))
    finally:
        if receiver:
            receiver.close()
        if broker:
            broker.stop()
    depth = _store_depth(cfg)
    accepted = stats.decisions["accepted"]
    repeat = stats.decisions["already_checked_in"]
    rejected = sum(n for k, n in stats.decisions.items() if k.startswith("rejected"))
    lat = stats.latency()
    summary = {
        "frames processed": stats.frames,
        "frames dropped": stats.dropped,
        "visitors accepted": accepted,
        "already checked in": repeat,
        "visitors rejected": rejected,
        "visits sealed": stats.sealed,
        "visits acknowledged by the broker": stats.acked,
        "visits waiting in the store": depth,
        "frame to verdict median ms": lat["median"],
        "frame to verdict p95 ms": lat["p95"],
    }
    if receiver:
        summary["records received by the custodian"] = len(receiver.rids)
        summary["records the authority key opened"] = receiver.opened
    print("\nsummary (%.1f s):" % (time.monotonic() - t0))
    for k, v in summary.items():
        print(f"  {k:<36} {v}")
    print(json.dumps({k.replace(" ", "_"): v for k, v in summary.items()}))
    if keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _store_depth(cfg: config.Config) -> int:
    from firmware.store.buffer import SqliteRecordStore

    store = SqliteRecordStore(cfg.device.state_dir / "visits.db")
    try:
        return store.depth()[0]
    finally:
        store.close()
