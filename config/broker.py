"""The embedded broker: kombu's filesystem transport, with each message file written whole before it is visible.

kombu's ``filesystem`` transport writes a message by opening its final file
name and then writing into it (under a lock the reader never takes). A
consumer polling the folder can move and read the file in between, read an
empty payload and stop with ``Unrecoverable error: JSONDecodeError`` — the
worker is gone and its queue sits untouched. This transport writes the
payload to a name the consumer ignores and renames it into place, which is
atomic on one filesystem: a consumer sees a complete file or none.

The consumer side has a second hazard: with ``store_processed`` off, kombu
claims a message by ``shutil.move`` into the system temporary folder. When
that folder is on another filesystem the move is a copy and a delete, so two
consumers can both copy the same file and both deliver it, and a consumer
killed mid-copy leaves half a file. This transport claims by ``os.rename``
into the broker's own ``processed`` folder (same filesystem): exactly one
consumer's rename succeeds, and the claimed file is read and then removed.

Upstream: https://github.com/celery/kombu/issues/1551 (open: a filesystem
consumer dies on "Expecting value: line 1 column 1 (char 0)"); the race is
between ``Channel._put`` and ``Channel._get`` in
``kombu/transport/filesystem.py``, still there in kombu 5.7.0. Selected by ``CELERY_BROKER_TRANSPORT``
when ``CELERY_BROKER_URL`` is ``filesystem://``; Redis is unaffected.
"""

from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

# The consumer takes only names whose part after the first dot is "<queue>.msg".
_PARTIAL_SUFFIX = ".partial"


class Channel(filesystem.Channel):
    _claim_folder_ready = False

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Put ``payload`` onto ``queue``: written under a name the consumer skips, then renamed into place."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f"partial-{uuid.uuid4().hex}{_PARTIAL_SUFFIX}")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as error:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from error

    def _get(self, queue: str) -> Any:
        """Take the oldest message of ``queue``: claimed by one atomic rename, so no two consumers take the same one."""
        wanted = f"{queue}.msg"
        if not self._claim_folder_ready:
            os.makedirs(self.processed_folder, exist_ok=True)
            self._claim_folder_ready = True
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(self.processed_folder, filename)
            try:
                os.rename(os.path.join(self.data_folder_in, filename), claimed)
            except OSError:
                continue  # another consumer claimed it first
            try:
                with open(claimed, "rb") as handle:
                    payload = handle.read()
                if not self.store_processed:
                    os.remove(claimed)
            except OSError as error:
                raise ChannelError(f"Cannot read file {claimed!r} from queue.") from error
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
