"""`qrgate demo`: the real daemon on a replay camera, mock pins and a local Mosquitto.

It sets up a world from nothing (`lab.world`: issuers, a root, a trust list,
the health authority), renders a queue of visitors' phones as camera frames
(valid tokens, an expired one, a forged one, one shown twice, a menu QR, two
EU vaccination passes, empty frames between visitors), starts Mosquitto on a
free loopback port when it can, runs `firmware.app.run` exactly as
`qrgate run` does, and prints what happened.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Visitor:
    label: str
    app: str
    token: str
    dark: bool = False


def _visitors(world: World, start: int) -> list[Visitor]:
    slot = (CODE_FRAMES + GAP_FRAMES) / FPS
    t = lambda i: start + 2 + i * slot  # noqa: E731 - when visitor i is in front of the camera

    def token(name: str, i: int, **kw) -> str:
        # Minted as the phone app does, a moment before the visitor reaches the camera.
        return world.mint(name, at=int(t(i)) - 1, **kw)

    first = token("naver", 0)
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
    ]


def _render_frames(visitors: list[Visitor], folder: Path) -> int:
    folder.mkdir()
    rng = np.random.default_rng(7)
    bg = render.background(seed=3)
    n = 0

    def put(frame: np.ndarray) -> None:
        nonlocal n
        render.write_png(folder / f"{n:05d}.png", frame)
        n += 1

    for _ in range(GAP_FRAMES):
        put(render.scene(None, rng, bg=bg))
    for v in visitors:
        phone = render.phone_screen(v.token, v.app, dark=v.dark)
        for k in range(CODE_FRAMES):
            put(render.scene(phone, rng, angle=rng.uniform(-8, 8), blur=rng.uniform(0, 1.0),
                             glare=k % 4 == 1, bg=bg))
        for _ in range(GAP_FRAMES):
            put(render.scene(None, rng, bg=bg))
    return n


def _write_config(world: World, port: int, require_sync: bool) -> Path:
    path = world.dir / "qrgate.toml"
    path.write_text(world.config_toml(
        world.dir / "state", world.dir / "frames", port, device='venue = "demo-cafe"', camera=f"fps = {FPS}",
        policy='accept = ["KP1", "DCC"]', clock=f"require_sync = {str(require_sync).lower()}",
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
    start = int(time.time())
    world = World.create(folder, issued_at=start)
    visitors = _visitors(world, start)
    n_frames = _render_frames(visitors, folder / "frames")
    print(f"camera: replaying {n_frames} frames at {FPS:g} fps — {len(visitors)} visitors: "
          + ", ".join(v.label for v in visitors))

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

    synced = ClockSync().synchronised()
    if not synced:
        print("clock: this machine's clock is not NTP-synchronised (common in containers); the demo runs "
              "as a device with a real-time clock would (clock.require_sync = false)")
    cfg = config.load(_write_config(world, port, require_sync=synced))
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
