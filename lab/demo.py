"""`qrgate demo`: the real daemon on a replay camera, mock pins and a local Mosquitto.

It sets up a world from nothing (issuers, a root, a trust list, the health
authority), renders a queue of visitors' phones as camera frames (valid tokens,
an expired one, a forged one, one shown twice, a menu QR, two EU vaccination
passes, empty frames between visitors), starts Mosquitto on a free loopback
port when it can, runs
`firmware.app.run` exactly as `qrgate run` does, and prints what happened.
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
from lab import dcc_issuer
from lab import signers

FPS = 15.0
CODE_FRAMES = 12  # 0.8 s of a phone held up
GAP_FRAMES = 9  # 0.6 s of nobody between visitors


@dataclass(frozen=True)
class Visitor:
    label: str
    app: str
    token: str
    dark: bool = False


def _visitors(world: Path, start: int) -> list[Visitor]:
    issuers = {name: signers.new_issuer(name, world / f"issuer-{name}") for name in ("naver", "kakao", "pass")}
    rogue = signers.new_issuer("rogue", world / "rogue")  # a key nobody trusts
    root = signers.new_root(world / "root")
    authority = signers.new_authority(world / "authority")
    # A test document signer for EU DCCs (vaccination passes), trusted by the same list.
    signer = dcc_issuer.new_signer(world / "dsc-KR", country="KR")
    (world / "trustlist.cose").write_bytes(signers.build_trust_list(root, issuers.values(), seq=1, issued_at=start,
                                                           dsc=[signer.der], authority=[authority.public_key()]))

    def token(name: str, at: float, **kw) -> str:
        # Minted as the phone app does, a moment before the visitor reaches the camera.
        return signers.mint(issuers[name], now=int(at) - 1, **kw)

    slot = (CODE_FRAMES + GAP_FRAMES) / FPS
    t = lambda i: start + 2 + i * slot  # noqa: E731 - when visitor i is in front of the camera
    first = token("naver", t(0))
    # Signed by the rogue key under naver's kid: a forgery that must fail the signature check.
    forged = signers.mint(signers.Issuer("naver", rogue.key), now=int(t(4)) - 1, kid=issuers["naver"].kid)
    return [
        Visitor("valid, Naver", "NAVER", first),
        Visitor("valid, Kakao (vax)", "kakaotalk", token("kakao", t(1), att=["vax"]), dark=True),
        Visitor("expired, PASS", "PASS", signers.mint(issuers["pass"], now=start - 120)),
        Visitor("valid, PASS", "PASS", token("pass", t(3))),
        Visitor("forged, 'Naver'", "NAVER", forged),
        Visitor("a menu QR", "menu", "https://example.com/menu"),
        Visitor("valid, Naver", "NAVER", token("naver", t(6))),
        Visitor("shown twice", "NAVER", first),
        Visitor("valid, Kakao", "kakaotalk", token("kakao", t(8))),
        Visitor("EU vaccination pass", "DCC", dcc_issuer.mint(signer, start)),
        Visitor("EU pass, 1st dose of 2", "DCC", dcc_issuer.mint(signer, start, dn=1, sd=2)),
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


def _write_config(world: Path, port: int, require_sync: bool) -> Path:
    path = world / "qrgate.toml"
    path.write_text(f"""\
[device]
venue = "demo-cafe"
id = "door-1"
state_dir = "state"
runtime_dir = "run"

[camera]
source = "replay"
path = "frames"
fps = {FPS}

[gpio]
backend = "mock"

[policy]
accept = ["KP1", "DCC"]

[trust]
root_key = "root/root.pub"
list = "trustlist.cose"

[authority]
public_key = "authority/authority.pub"

[clock]
require_sync = {str(require_sync).lower()}

[mqtt]
host = "127.0.0.1"
port = {port}
tls = false
status_interval_s = 5
drain_on_exit_s = 5

[events]
path = "events.jsonl"
""")
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
    world = Path(tempfile.mkdtemp(prefix="qrgate-demo-")) if keep is None else Path(keep)
    world.mkdir(parents=True, exist_ok=True)
    print(f"qrgate demo — a venue entrance, in {world}")
    start = int(time.time())
    visitors = _visitors(world, start)
    n_frames = _render_frames(visitors, world / "frames")
    print(f"camera: replaying {n_frames} frames at {FPS:g} fps — {len(visitors)} visitors: "
          + ", ".join(v.label for v in visitors))

    broker, receiver = None, None
    try:
        broker = Mosquitto(world / "mosquitto")
        broker.start()
        port = broker.port
        print(f"broker: Mosquitto on 127.0.0.1:{port}")
        receiver = _Receiver(port, world / "authority")
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
        shutil.rmtree(world, ignore_errors=True)
    return 0


def _store_depth(cfg: config.Config) -> int:
    from firmware.store.buffer import SqliteRecordStore

    store = SqliteRecordStore(cfg.device.state_dir / "visits.db")
    try:
        return store.depth()[0]
    finally:
        store.close()
