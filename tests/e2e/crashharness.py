"""Pieces of the crash harness (test_crash.py): the custodian's side, the shared event log, the store on disk.

Everything here observes the daemon from outside, through what a venue or a
custodian also has: the broker, the event log a display reads, the SD card.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from firmware.store.records import SealedRecord

QRGATE = str(Path(sys.executable).parent / "qrgate")


class Custodian:
    """The custodian: subscribed (QoS 1) to every device's visits, for the whole run, counting what arrives."""

    def __init__(self, port: int, client_id: str = "crash-custodian"):
        self._lock = threading.Lock()
        self.received: list[str] = []  # hex rids, in arrival order, duplicates kept
        self.disconnects = 0  # unexpected ones: not counting close()
        self._closing = False
        subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.on_connect = lambda client, *a: client.subscribe("qrgate/v1/+/+/visits", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._message
        c.on_disconnect = self._disconnected
        # A session the broker keeps across a reconnect, should one happen: nothing is lost in between.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=props)
        c.loop_start()
        self.client = c
        if not subscribed.wait(10):
            self.close()
            raise AssertionError("the custodian could not subscribe")

    def _message(self, client, userdata, message) -> None:
        rid = SealedRecord.from_wire(message.payload).rid.hex()
        with self._lock:
            self.received.append(rid)

    def _disconnected(self, *a) -> None:
        with self._lock:
            self.disconnects += not self._closing

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def rids(self) -> set[str]:
        with self._lock:
            return set(self.received)

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class EventFile:
    """The one events file every daemon instance appends to, cut into each instance's byte range.

    A SIGKILL may tear an instance's last line; the next instance then appends
    after the fragment. Parsing each instance's range on its own keeps that
    fragment from swallowing the next instance's first line.
    """

    path: Path
    segments: list[tuple[int, int]] = field(default_factory=list)
    _open: int | None = None

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def begin(self) -> int:
        self._open = self.size()
        return self._open

    def end(self) -> None:
        """After the instance is gone (reaped): everything it wrote is in the file."""
        assert self._open is not None
        self.segments.append((self._open, self.size()))
        self._open = None

    def parse(self) -> tuple[list[list[dict]], int]:
        """Each instance's events, and how many torn last lines were left out.

        Only an instance's unterminated last line may be unparseable; any other
        bad line is a failure (the log is written one whole line at a time).
        """
        data = self.path.read_bytes() if self.path.exists() else b""
        instances, torn = [], 0
        for n, (a, b) in enumerate(self.segments):
            *lines, tail = data[a:b].split(b"\n")
            events = []
            for i, line in enumerate(lines):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    raise AssertionError(f"instance {n}: line {i} of its events is not JSON") from None
            if tail:
                try:
                    events.append(json.loads(tail))  # complete but for its newline: the kill came in between
                except ValueError:
                    torn += 1
            instances.append(events)
        return instances, torn


class LatencyProxy:
    """A TCP relay that delays each direction, as a venue's uplink would: the device's network path to the broker.

    Bytes keep their order. The delay is what keeps a published record
    unacknowledged for a while, so that kills land between PUBLISH and PUBACK.
    When the device's side closes (the daemon was killed), what it sent and the
    relay still holds is dropped, as a power cut would lose what had not left
    the device yet; the broker's side is then closed. When the broker's side
    closes, what it sent is delivered first.
    """

    def __init__(self, target_port: int, up_s: float, down_s: float):
        self.target_port, self.up_s, self.down_s = target_port, up_s, down_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="latency-proxy", daemon=True)
        self._thread.start()
        start = asyncio.start_server(self._relay, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            down_w.close()
            return
        pipes = [asyncio.create_task(self._pipe(down_r, up_w, self.up_s, drop_at_end=True)),
                 asyncio.create_task(self._pipe(up_r, down_w, self.down_s, drop_at_end=False))]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            for w in (up_w, down_w):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                    drop_at_end: bool) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get())[1]:
                await asyncio.sleep(item[0] - loop.time())
                writer.write(item[1])
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + delay, data))
        except OSError:
            pass
        if drop_at_end:
            sender.cancel()
            return
        queue.put_nowait((loop.time(), b""))  # end: after what is queued
        try:
            await sender
        except OSError:
            pass
        finally:
            sender.cancel()

    def close(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _wal_checksum(data: bytes, s0: int, s1: int, fmt: str) -> tuple[int, int]:
    words = struct.unpack(f"{fmt}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def unpublished_wal_frames(db: Path) -> tuple[int, bool] | None:
    """What a killed writer left in the -wal file past the last commit the -shm index published.

    Returns (frames, ends_in_commit): frames with the current salts and an
    unbroken checksum chain after the index's last frame; ends_in_commit when
    the last of them is a commit frame (the process died between writing its
    commit and publishing it: during the fsync). (0, False) when the WAL ends
    where the index says; None when the files cannot be read consistently (no
    WAL, or an index header caught mid-update). Read from the raw files, as
    SQLite's recovery would (sqlite3 wal.c formats, on a little-endian host).
    """
    try:
        wal = Path(f"{db}-wal").read_bytes()
        shm = Path(f"{db}-shm").read_bytes()[:96]
    except FileNotFoundError:
        return None
    if len(wal) < 32 or len(shm) < 96 or shm[:48] != shm[48:96] or not shm[12]:
        return None
    big, page = shm[13], struct.unpack_from("<H", shm, 14)[0]
    page = 65536 if page == 1 else page
    mx_frame = struct.unpack_from("<I", shm, 16)[0]
    cksum, salt = struct.unpack_from("<2I", shm, 24), shm[32:40]
    fmt = ">" if big else "<"
    if mx_frame == 0:  # a WAL just (re)started: the chain begins at its header
        cksum, salt = struct.unpack_from(">2I", wal, 24), wal[16:24]
    frame_size = 24 + page
    frames, commit = 0, False
    at = 32 + mx_frame * frame_size
    while at + frame_size <= len(wal):
        head = wal[at:at + 24]
        if head[8:16] != salt or struct.unpack_from(">I", head, 0)[0] == 0:
            break
        cksum = _wal_checksum(wal[at + 24:at + frame_size], *_wal_checksum(head[:8], *cksum, fmt), fmt)
        if cksum != struct.unpack_from(">2I", head, 16):
            break
        frames += 1
        commit = struct.unpack_from(">I", head, 4)[0] != 0
        at += frame_size
    return frames, commit


def open_store(db: Path) -> sqlite3.Connection:
    """Read-only, but not immutable: SQLite reads the -wal file too, as the next daemon will."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def inspect_store(db: Path) -> tuple[str, set[str]]:
    """PRAGMA integrity_check's answer, and the hex rids the records table holds."""
    con = open_store(db)
    try:
        check = "\n".join(row[0] for row in con.execute("PRAGMA integrity_check"))
        rids = {row[0].hex() for row in con.execute("SELECT rid FROM records")}
        return check, rids
    finally:
        con.close()


class Daemon:
    """`qrgate run --config FILE` as a subprocess, its stderr appended to a log file."""

    def __init__(self, config: Path, log: Path):
        self.log = log
        with open(log, "ab") as err:
            self._log_start = err.tell()
            self.proc = subprocess.Popen([QRGATE, "run", "--config", str(config)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no handler, no flush, no goodbye
        self.proc.wait()

    def own_log(self) -> str:
        """What this instance wrote to stderr (the journal, on a device)."""
        with open(self.log, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.own_log().splitlines()[-lines:])

    def failure(self, lines: int = 30) -> str | None:
        """The first traceback this instance logged (a dead thread, a crash), if any."""
        text = self.own_log()
        at = text.find("Traceback")
        if at < 0:
            return None
        start = text.rfind("\n", 0, at - 1) + 1  # with the line that logged it
        return "\n".join(text[start:].splitlines()[:lines])


def wait_for(predicate, timeout: float, what: str, poll_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(poll_s)  # polling an observable condition, bounded by the deadline
