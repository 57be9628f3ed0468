"""The sealed SQLite store on the card: one-time-use memory, durability settings, retention."""

import os
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from firmware.errors import StorageError
from lab.signers import new_authority
from firmware.store.buffer import (RETENTION_S, CorruptStore, SqliteRecordStore, inspect, kept_aside, local_day,
                                   set_aside)
from firmware.store.records import SealedRecord, Visit
from firmware.tokens.verdict import Claims

NOW = 1_750_000_000


def cti(n: int) -> bytes:
    return bytes([0xC7, n]) * 8


@pytest.fixture
def store_setup(tmp_path):
    authority = new_authority(tmp_path / "authority")
    path = tmp_path / "visits.db"
    store = SqliteRecordStore(path)
    made = []

    def record(token: bytes, ts: int = NOW):
        def make() -> SealedRecord:
            sealed = Visit.of(Claims("naver", ts, ts + 15, token), "cafe-1", "door-a", ts).seal(authority.public_key())
            made.append(sealed)
            return sealed

        return make

    def admit(token: bytes, now: int = NOW, seen_until: int = NOW + 20, ts: int | None = None) -> bool:
        return store_setup.store.admit(token, seen_until=seen_until, now=now, make_record=record(token, now if ts is None else ts))

    store_setup = SimpleNamespace(authority=authority, path=path, store=store, made=made, record=record, admit=admit)
    yield store_setup
    try:
        store_setup.store.close()
    except sqlite3.ProgrammingError:
        pass


def reopen(store_setup) -> SqliteRecordStore:
    store_setup.store.close()
    store_setup.store = SqliteRecordStore(store_setup.path)
    return store_setup.store


def test_admit_records_a_new_token_once_within_its_window(store_setup):
    assert store_setup.admit(cti(1)) is True
    assert store_setup.admit(cti(1), now=NOW + 5) is False
    assert store_setup.admit(cti(1), now=NOW + 20) is False  # the last second of the window still counts
    assert len(store_setup.made) == 1  # no record was even built for the repeat
    assert store_setup.store.depth() == (1, NOW)
    [(_, rid, wire)] = store_setup.store.after(None, 10)
    assert rid == store_setup.made[0].rid and wire == store_setup.made[0].wire()


def test_admitted_record_opens_to_the_visit(store_setup):
    store_setup.admit(cti(1))
    [(_, _, wire)] = store_setup.store.after(None, 1)
    plain = SealedRecord.from_wire(wire).open(store_setup.authority)
    assert plain["cti"] == cti(1) and plain["venue"] == "cafe-1" and plain["ts"] == NOW


def test_token_is_new_again_after_seen_until(store_setup):
    assert store_setup.admit(cti(1), seen_until=NOW + 20) is True
    assert store_setup.admit(cti(1), now=NOW + 21, seen_until=NOW + 41) is True
    assert store_setup.store.depth()[0] == 2
    assert store_setup.admit(cti(1), now=NOW + 30) is False


def test_other_tokens_are_independent(store_setup):
    assert store_setup.admit(cti(1)) is True
    assert store_setup.admit(cti(2)) is True
    assert store_setup.store.depth()[0] == 2


def test_records_and_seen_memory_survive_reopening(store_setup):
    store_setup.admit(cti(1))
    rid = store_setup.made[0].rid
    store = reopen(store_setup)
    assert rids(store) == [rid]
    assert store_setup.admit(cti(1), now=NOW + 1) is False
    assert store_setup.admit(cti(2), now=NOW + 1) is True
    assert store.depth()[0] == 2


def test_journal_is_wal(store_setup):
    other = sqlite3.connect(store_setup.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_commits_are_synchronous_full_and_deletes_are_secure(store_setup):
    assert store_setup.store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store_setup.store._db.execute("PRAGMA secure_delete").fetchone()[0] == 1


def rids(store, position=None, limit=10) -> list[bytes]:
    return [rid for _, rid, _ in store.after(position, limit)]


def test_after_reads_in_arrival_order_from_a_position(store_setup):
    for n, ts in [(1, NOW + 30), (2, NOW + 10), (3, NOW + 20), (4, NOW + 10)]:  # a clock stepped back and forth
        store_setup.admit(cti(n), ts=ts)
    first, second, third, fourth = (r.rid for r in store_setup.made)
    assert rids(store_setup.store) == [first, second, third, fourth]
    assert rids(store_setup.store, limit=2) == [first, second]
    position = store_setup.store.after(None, 2)[-1][0]
    assert rids(store_setup.store, position) == [third, fourth]
    last = store_setup.store.after(position, 2)[-1][0]
    store_setup.admit(cti(5), ts=NOW)  # a new visit comes after any position read so far, whatever its time
    assert rids(store_setup.store, last) == [store_setup.made[-1].rid]
    assert store_setup.store.depth() == (5, NOW)


def test_delete_removes_a_record(store_setup):
    store_setup.admit(cti(1))
    store_setup.admit(cti(2))
    gone, kept = store_setup.made[0].rid, store_setup.made[1].rid
    store_setup.store.delete([gone])
    assert rids(store_setup.store) == [kept]
    store_setup.store.delete([gone, gone])  # a second acknowledgement is harmless
    assert store_setup.store.depth()[0] == 1


def test_purge_drops_records_older_than_28_days_and_keeps_newer(store_setup):
    later = NOW + RETENTION_S + 100
    for n, ts in [(1, NOW), (2, later - RETENTION_S - 1), (3, later - RETENTION_S), (4, later - 1)]:
        store_setup.admit(cti(n), ts=ts)
    by_ts = {r.ts: r.rid for r in store_setup.made}
    assert store_setup.store.purge(later) == 2
    assert rids(store_setup.store) == [by_ts[later - RETENTION_S], by_ts[later - 1]]


def test_purge_forgets_seen_tokens_past_their_window(store_setup):
    store_setup.admit(cti(1), seen_until=NOW + 20)
    store_setup.admit(cti(2), seen_until=NOW + 200)
    store_setup.store.purge(NOW + 100)
    assert store_setup.store._db.execute("SELECT count(*) FROM seen").fetchone()[0] == 1
    assert store_setup.admit(cti(2), now=NOW + 100) is False


def test_card_holds_no_token_id(store_setup):
    tokens = [cti(n) for n in range(1, 6)]
    for t in tokens:
        store_setup.admit(t)
    store_setup.store.delete([store_setup.made[0].rid])

    def assert_card_clean():
        data = b"".join(p.read_bytes() for p in store_setup.path.parent.glob(store_setup.path.name + "*"))  # db, -wal, -shm
        assert store_setup.made[1].rid in data  # the records are there ...
        for t in tokens:
            assert t not in data and t.hex().encode() not in data  # ... but not the token ids

    assert_card_clean()  # while open (the commits sit in the WAL)
    reopen(store_setup)
    assert_card_clean()  # after a checkpoint
    hashes = {h for (h,) in store_setup.store._db.execute("SELECT h FROM seen")}
    assert hashes == {store_setup.store.seen_hash(t) for t in tokens}


def test_seen_hash_is_keyed_per_device(store_setup, tmp_path):
    other = SqliteRecordStore(tmp_path / "other.db")
    try:
        assert other.seen_hash(cti(1)) != store_setup.store.seen_hash(cti(1))
        assert store_setup.store.seen_hash(cti(1)) == store_setup.store.seen_hash(cti(1))
    finally:
        other.close()


def test_opening_in_a_missing_directory_raises_storage_error(tmp_path):
    with pytest.raises(StorageError):
        SqliteRecordStore(tmp_path / "no" / "such" / "dir" / "visits.db")


def test_duplicate_rid_raises_storage_error_and_records_nothing(store_setup):
    store_setup.admit(cti(1))
    dup = store_setup.made[0]
    with pytest.raises(StorageError):
        store_setup.store.admit(cti(2), seen_until=NOW + 20, now=NOW, make_record=lambda: dup)
    assert store_setup.store.depth()[0] == 1
    assert store_setup.admit(cti(2)) is True  # the token was not marked seen by the failed attempt


def test_failing_make_record_leaves_the_store_usable(store_setup):
    def boom():
        raise RuntimeError("sealing failed")

    with pytest.raises(RuntimeError):
        store_setup.store.admit(cti(1), seen_until=NOW + 20, now=NOW, make_record=boom)
    assert store_setup.admit(cti(2)) is True


def test_a_new_visit_forgets_seen_tokens_past_their_window_at_once(store_setup):
    store_setup.admit(cti(1), seen_until=NOW + 20)
    store_setup.admit(cti(2), now=NOW + 21, seen_until=NOW + 41)  # cti(1)'s window is over
    db = sqlite3.connect(store_setup.path)
    assert [row[0] for row in db.execute("SELECT expires FROM seen")] == [NOW + 41]


def card_bytes(store_setup) -> bytes:
    """Everything on the card for this store: the database, its WAL and shared-memory files."""
    return b"".join(p.read_bytes() for p in store_setup.path.parent.glob(store_setup.path.name + "*"))


@pytest.mark.parametrize("how", ["delivered", "purged"])
def test_deleted_records_are_not_left_readable_on_the_card(store_setup, how):
    for n in range(1, 4):
        store_setup.admit(cti(n), ts=NOW - RETENTION_S - 10 if how == "purged" else NOW)
    gone = store_setup.made[0]
    assert gone.wire() in card_bytes(store_setup)
    if how == "delivered":
        store_setup.store.delete([gone.rid])
        store_setup.store.scrub()  # the daemon's periodic check does this every few seconds
    else:
        assert store_setup.store.purge(NOW) == 3
    # Neither in the database's free pages (secure_delete) nor in old WAL frames.
    data = card_bytes(store_setup)
    assert gone.wire() not in data and gone.wire()[-64:] not in data


# --- a store that is not sound (issue 15, finding 7) ------------------------------------------------------

@pytest.mark.parametrize("content", [b"not a database at all" * 100, b"SQLite format 3\x00" + bytes(4096)])
def test_a_corrupt_file_is_named_corrupt(tmp_path, content):
    (tmp_path / "visits.db").write_bytes(content)
    with pytest.raises(CorruptStore):
        SqliteRecordStore(tmp_path / "visits.db")


def test_a_store_that_fails_its_integrity_check_is_named_corrupt(tmp_path):
    path = tmp_path / "visits.db"
    store = SqliteRecordStore(path)
    store.close()
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE filler (x BLOB); INSERT INTO filler VALUES (randomblob(20000));"
                     "PRAGMA wal_checkpoint(TRUNCATE);")
    db.close()
    data = bytearray(path.read_bytes())
    data[-4096 : -4096 + 8] = b"\xff" * 8  # the filler's last page overwritten, as a dying card might
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStore) as caught:
        SqliteRecordStore(path)
    assert str(path) in str(caught.value)  # the fault names the file, and it is closed (as for a garbled one below)
    assert _open_fds_on(path) == []


def test_an_unopenable_store_is_a_storage_error_but_not_corrupt(tmp_path):
    (tmp_path / "visits.db").mkdir()
    with pytest.raises(StorageError) as caught:
        SqliteRecordStore(tmp_path / "visits.db")
    assert not isinstance(caught.value, CorruptStore)


def test_set_aside_moves_the_store_and_its_journal_under_a_dated_name(tmp_path):
    path = tmp_path / "visits.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").write_bytes(suffix.encode() or b"db")
    aside = set_aside(path, now=1_750_000_000)
    assert aside.name == "visits.db.corrupt-20250615T150640Z"
    assert sorted(p.name for p in tmp_path.iterdir()) == [aside.name, aside.name + "-shm", aside.name + "-wal"]
    assert kept_aside(path) == [aside]


# --- the scrub's bookkeeping: every deleted record leaves the card, whatever came before ------------------

@pytest.mark.parametrize("steps", ["delivered_twice", "delivered_then_nothing_to_purge", "delivered_then_purged",
                                   "delivered_scrubbed_delivered_again"])
def test_every_deleted_record_leaves_the_card_whatever_deletions_came_before(store_setup, steps):
    store_setup.admit(cti(1))
    store_setup.admit(cti(2), ts=NOW - RETENTION_S - 10 if steps == "delivered_then_purged" else NOW)
    store_setup.admit(cti(3))
    first, second = store_setup.made[0], store_setup.made[1]
    store = store_setup.store
    store.delete([first.rid])
    if steps == "delivered_twice":
        store.delete([first.rid])  # the broker acknowledged it again (at least once): nothing more to delete
        store.scrub()
        gone = [first]
    elif steps == "delivered_then_nothing_to_purge":
        assert store.purge(NOW) == 0
        gone = [first]
    elif steps == "delivered_then_purged":
        assert store.purge(NOW) == 1
        gone = [first, second]
    else:
        store.scrub()
        store.delete([second.rid])
        store.scrub()
        gone = [first, second]
    data = card_bytes(store_setup)
    assert all(r.wire() not in data and r.wire()[-64:] not in data for r in gone)
    assert rids(store) == [r.rid for r in store_setup.made if r not in gone]


def test_a_scrub_held_back_by_a_reader_is_owed_until_it_succeeds(store_setup):
    """A reader (a technician's `qrgate records`, say) holding an old snapshot keeps the WAL's frames: the
    TRUNCATE checkpoint comes back busy, and the next scrub tries again."""
    store_setup.store.close()
    store_setup.store = SqliteRecordStore(store_setup.path, busy_timeout_s=0.05)
    store_setup.admit(cti(1))
    store_setup.admit(cti(2))
    gone = store_setup.made[0]
    reader = sqlite3.connect(store_setup.path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM records").fetchone() == (2,)  # its snapshot holds the record
    store_setup.store.delete([gone.rid])
    store_setup.store.scrub()  # busy: the reader's snapshot still needs the old frames
    assert gone.wire() in card_bytes(store_setup)
    reader.execute("COMMIT")
    reader.close()
    store_setup.store.scrub()
    assert gone.wire() not in card_bytes(store_setup) and gone.wire()[-64:] not in card_bytes(store_setup)


def test_the_loop_and_the_uplink_share_the_store_from_their_own_threads(store_setup):
    # The scan loop admits on its thread while the uplink reads and deletes on another: one connection for both.
    outcome = []
    loop = threading.Thread(target=lambda: outcome.append(store_setup.admit(cti(1))))
    loop.start()
    loop.join()
    assert outcome == [True]
    [(_, rid, _)] = store_setup.store.after(None, 10)
    store_setup.store.delete([rid])
    assert store_setup.store.depth() == (0, None)


# --- a store that is not sound, and what its error says ------------------------------------------------------

def _open_fds_on(path: Path) -> list[str]:
    named = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            named.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the descriptor listdir itself used, closed by now
            pass
    return [n for n in named if n.startswith(str(path))]


def _garble(path: Path, how: str) -> None:
    store = SqliteRecordStore(path)
    store.close()
    data = bytearray(path.read_bytes())
    if how == "schema_page":
        data[100:4096] = b"\xff" * (4096 - 100)  # SQLite's header intact, the schema behind it gone
    else:  # not a database at all
        data[:] = b"not a database at all" * 100
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["schema_page", "not_a_database"])
def test_a_garbled_store_is_named_corrupt_names_its_file_and_leaves_it_closed(tmp_path, how):
    # CorruptStore, not a mere StorageError: the daemon sets a corrupt store aside and starts a new one. The
    # error is the storage fault the status shows, so it names the file; and the file is closed by the time the
    # caller hears of it, or every retry would leave a descriptor behind.
    path = tmp_path / "visits.db"
    _garble(path, how)
    with pytest.raises(CorruptStore) as caught:
        SqliteRecordStore(path)
    assert str(path) in str(caught.value)
    assert _open_fds_on(path) == []


@pytest.mark.parametrize("operation", ["admit", "delete", "purge", "scrub"])
def test_a_storage_failure_carries_sqlites_reason(store_setup, operation):
    # The StorageError becomes the storage fault the status message shows: it says why, in SQLite's words.
    store = store_setup.store
    store_setup.admit(cti(1))
    store.delete([store_setup.made[0].rid])  # something for the scrub to do
    store.close()
    run = {"admit": lambda: store_setup.admit(cti(2)), "delete": lambda: store.delete([bytes(16)]),
           "purge": lambda: store.purge(NOW), "scrub": store.scrub}[operation]
    with pytest.raises(StorageError, match="closed database"):
        run()


# --- inspect: what a technician may know of a store ---------------------------------------------------------

def test_inspect_reads_depth_oldest_and_integrity_beside_the_running_store(store_setup):
    store_setup.admit(cti(1), ts=NOW + 5)
    store_setup.admit(cti(2), ts=NOW)
    assert inspect(store_setup.path) == {"queue_depth": 2, "oldest_ts": NOW, "integrity": "ok"}
    assert store_setup.admit(cti(3)) is True  # the daemon's store went on working
    assert inspect(store_setup.path)["queue_depth"] == 3


def test_inspect_of_a_missing_store_says_there_is_none_yet(tmp_path):
    with pytest.raises(StorageError, match="no store") as caught:
        inspect(tmp_path / "visits.db")
    assert str(tmp_path / "visits.db") in str(caught.value)
    assert not (tmp_path / "visits.db").exists()  # a look creates nothing


def test_inspect_of_a_file_that_is_no_store_says_why(tmp_path):
    path = tmp_path / "visits.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageError, match="not a database") as caught:
        inspect(path)
    assert str(path) in str(caught.value)


def test_records_of_every_kind_and_issuer_have_one_length_on_the_card(store_setup):
    """Issue 20: the card (and so a stolen card) tells no issuer, kind or UVCI length by a record's size."""
    shown = [("pass", cti(1), "KP1"), ("toss-app", cti(2), "KP1"), ("i" * 64, cti(3), "KP1"),
             ("DE", "URN:UVCI:01:DE:ABC/1#Q", "DCC"), ("XX", "U" * 80, "DCC")]
    for i, (iss, token, kind) in enumerate(shown):
        claims = Claims(iss, NOW, NOW + 15, token, kind=kind)
        visit = Visit.of(claims, "cafe-1", "door-a", NOW + i)
        assert store_setup.store.admit(claims.seen_key, seen_until=NOW + 20, now=NOW + i,
                                       make_record=lambda v=visit: v.seal(store_setup.authority.public_key()))
    store_setup.store.close()
    with sqlite3.connect(store_setup.path) as db:
        lengths = [n for (n,) in db.execute("SELECT length(wire) FROM records")]
    assert len(lengths) == len(shown) and len(set(lengths)) == 1


def test_a_cards_new_visits_are_counted_per_day_and_repeats_within_the_window_are_not(store_setup):
    day = local_day(NOW)

    def card(token: bytes, now: int, on: int | None = day) -> bool:
        return store_setup.store.admit(token, seen_until=now + 60, now=now, make_record=store_setup.record(token, now),
                                       day=on)

    assert card(cti(1), NOW) and not card(cti(1), NOW + 30)  # already checked in: not a second visit
    assert card(cti(1), NOW + 61) and card(cti(1), NOW + 200) and card(cti(2), NOW + 5)
    assert card(cti(3), NOW + 6, on=None)  # a phone token is not counted
    assert card(cti(2), NOW + 86400, on=day + 1)
    assert store_setup.store.card_visits(day) == [3, 1] and store_setup.store.card_visits(day + 1) == [1]
    assert reopen(store_setup).card_visits(day) == [3, 1]  # a restart forgets nothing
    store_setup.store.purge(NOW + 86400)  # the next day: yesterday's counts go
    assert store_setup.store.card_visits(day) == [] and store_setup.store.card_visits(day + 1) == [1]


def test_a_cards_daily_count_is_kept_under_its_keyed_hash_never_its_id(store_setup):
    store_setup.store.admit(cti(9), seen_until=NOW + 60, now=NOW, make_record=store_setup.record(cti(9)),
                            day=local_day(NOW))
    db = sqlite3.connect(store_setup.path)
    [(h,)] = db.execute("SELECT h FROM card_visits").fetchall()
    db.close()
    on_card = b"".join(p.read_bytes() for p in store_setup.path.parent.glob(store_setup.path.name + "*"))
    assert h == store_setup.store.seen_hash(cti(9)) and cti(9) not in on_card


@pytest.mark.parametrize("utc, local_date", [
    ("2026-07-01T22:30:00+00:00", "2026-07-02"),  # 00:30 summer time in Berlin: the next day already
    ("2026-12-01T23:30:00+00:00", "2026-12-02"),  # 00:30 winter time
    ("2026-12-01T22:30:00+00:00", "2026-12-01"),  # 23:30 winter time: still the day before
])
def test_a_cards_day_is_the_devices_local_date_at_the_visit_whatever_the_season(monkeypatch, utc, local_date):
    import datetime as dt
    import time

    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")  # Berlin's rule, as POSIX spells it: no tzdata needed
    time.tzset()
    try:
        day = local_day(dt.datetime.fromisoformat(utc).timestamp())
    finally:
        monkeypatch.undo()
        time.tzset()
    assert day == dt.date.fromisoformat(local_date).toordinal() - dt.date(1970, 1, 1).toordinal()
