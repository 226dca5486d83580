"""The embedded broker never shows a consumer half a message (config/broker.py).

kombu's own filesystem transport writes each message in place, so a consumer
polling the folder can read a file before it is filled and die on
``JSONDecodeError``. These tests drive our transport the way Celery does,
through kombu, with a real producer racing a real consumer.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
import uuid

import pytest
from kombu import Connection

from config.broker import Transport


@pytest.fixture
def folder(tmp_path):
    return tmp_path


@pytest.fixture
def queue_name():
    """A queue of its own per test: kombu keeps declared bindings per process, whatever the folder."""
    return f"units-{uuid.uuid4().hex[:8]}"


def connection(folder) -> Connection:
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        "control_folder": str(folder),
    }
    return Connection("filesystem://localhost//", transport="config.broker:Transport", transport_options=options)


def test_the_transport_celery_uses_is_ours(settings):
    from config.celery import app

    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("the embedded broker is not configured (CELERY_BROKER_URL is a server)")
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)


def test_a_message_being_written_is_invisible_to_the_consumer(folder, queue_name):
    with connection(folder) as conn:
        queue = conn.SimpleQueue(queue_name)
        (folder / "partial-0123.partial").write_bytes(b"")  # a write in progress, as the producer leaves it
        with pytest.raises(queue.Empty):
            queue.get(block=False)
        queue.put({"unit": 1})
        assert queue.get(timeout=2).payload == {"unit": 1}
        assert (folder / "partial-0123.partial").exists(), "the consumer must not touch a file being written"
        queue.close()


IN_CREATE, IN_MOVED_TO = 0x100, 0x80


def folder_events(folder, action) -> list[tuple[int, str]]:
    """(mask, name) of every file created in or renamed into ``folder`` while ``action()`` runs (Linux inotify)."""
    libc = ctypes.CDLL(None, use_errno=True)
    watcher = libc.inotify_init1(os.O_NONBLOCK)
    assert watcher >= 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.inotify_add_watch(watcher, str(folder).encode(), IN_CREATE | IN_MOVED_TO) >= 0
        action()
        data = os.read(watcher, 65536)
    finally:
        os.close(watcher)
    events, offset = [], 0
    while offset < len(data):
        _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
        name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
        events.append((mask, name))
        offset += 16 + length
    return events


def test_a_message_file_appears_only_by_rename_never_empty(folder, queue_name):
    """The stock transport creates the .msg file empty and fills it; ours renames a full file into place."""
    with connection(folder) as conn:
        queue = conn.SimpleQueue(queue_name)
        events = folder_events(folder, lambda: queue.put({"unit": 1}))
        queue.close()
    messages = [(mask, name) for mask, name in events if name.endswith(f"{queue_name}.msg")]
    assert len(messages) == 1, events
    assert messages[0][0] & IN_MOVED_TO and not messages[0][0] & IN_CREATE, events


def test_a_producer_racing_a_consumer_delivers_every_large_message_whole(folder, queue_name):
    count, padding = 150, "x" * 400_000  # large files: each write takes long enough to be caught half-done
    received: list[int] = []

    def produce() -> None:
        with connection(folder) as conn:
            queue = conn.SimpleQueue(queue_name)
            for number in range(count):
                queue.put({"unit": number, "padding": padding})
            queue.close()

    producer = threading.Thread(target=produce)
    with connection(folder) as conn:
        queue = conn.SimpleQueue(queue_name)
        producer.start()
        while len(received) < count:
            message = queue.get(timeout=30)  # a half-written file would raise JSONDecodeError here
            assert message.payload["padding"] == padding
            received.append(message.payload["unit"])
            message.ack()
        queue.close()
    producer.join()
    assert sorted(received) == list(range(count))
    assert not [name for name in os.listdir(folder) if name.endswith(".partial")]


def test_consumers_claim_by_rename_in_the_broker_folder_never_by_copy(folder, queue_name):
    """A claim is one rename into ``processed`` (same filesystem), not kombu's move into the system temp folder."""
    (folder / "processed").mkdir()
    with connection(folder) as conn:
        queue = conn.SimpleQueue(queue_name)
        queue.put({"unit": 1})
        events = folder_events(folder / "processed", lambda: queue.get(timeout=2).ack())
        queue.close()
    claims = [(mask, name) for mask, name in events if name.endswith(f"{queue_name}.msg")]
    assert len(claims) == 1 and claims[0][0] & IN_MOVED_TO and not claims[0][0] & IN_CREATE, events
    assert not os.listdir(folder / "processed"), "a claimed message is removed once read (store_processed off)"


def test_two_consumers_racing_take_each_message_exactly_once(folder, queue_name):
    (folder / "processed").mkdir()
    count = 400
    with connection(folder) as conn:
        queue = conn.SimpleQueue(queue_name)
        for number in range(count):
            queue.put({"unit": number})
        queue.close()
    taken: list[list[int]] = [[], []]

    def consume(index: int) -> None:
        with connection(folder) as conn:
            queue = conn.SimpleQueue(queue_name)
            while True:
                try:
                    message = queue.get(timeout=1)
                except queue.Empty:
                    break
                taken[index].append(message.payload["unit"])
                message.ack()
            queue.close()

    consumers = [threading.Thread(target=consume, args=(index,)) for index in (0, 1)]
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        consumer.join()
    together = taken[0] + taken[1]
    assert sorted(together) == list(range(count)), "every message taken once: none lost, none twice"
    assert taken[0] and taken[1], "both consumers took part in the race"
