"""What Envoy last ACKed (the newest ACKed response, by arrival), per type: kept in
memory and persisted, so a restarted relay can boot a restarted Envoy while the control
plane is down.

The disk is an input surface: a file is read with a size bound and without following
symlinks, framed with a magic line, a bounded JSON header and the payload's sha256, and
the payload must parse as a ``DiscoveryResponse`` of the type its name says. A file that
fails any check is ignored with one log line (the next ACK replaces it); it never stops
the relay. File names come from a fixed table of known types, never from the wire.

Format: ``A1RELAY1\\n`` + header length (4 bytes, big-endian) + header JSON
``{"type_url", "node_cluster", "version_info", "size", "sha256"}`` + payload (the
serialized ``DiscoveryResponse``). Written to a 0600 temporary file in the same
directory, fsynced, renamed over the old one, directory fsynced.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from control.xds.cache import short_type
from policies.core.xds.types import PUSH_ORDER, RESOURCE_WRAPPER

log = logging.getLogger("a1.control.relay")

MAGIC = b"A1RELAY1\n"
MAX_HEADER_BYTES = 4096
_LEN = 4
TMP_PREFIX = ".relay-"
FILE_NAMES = {t: f"{short_type(t)}.xds" for t in PUSH_ORDER}
_HEADER_FIELDS = {"type_url": str, "node_cluster": str, "version_info": str, "size": int,
                  "sha256": str}


class RecordError(Exception):
    """A recorded file that does not verify; the message says why, in one line."""


@dataclass(frozen=True)
class Record:
    """One type's newest ACKed response. ``response`` is shared: serve copies of it.

    ``seq`` is the relay's arrival number of that response (``Relay`` numbers every
    response read from the control plane, in order; 0 for one read from disk). Versions
    are content hashes with no order, so arrival is what "newer" means.
    """

    type_url: str
    response: discovery_pb2.DiscoveryResponse
    size: int
    seq: int = 0

    @property
    def version(self) -> str:
        return self.response.version_info


def encode_record(type_url: str, node_cluster: str,
                  response: discovery_pb2.DiscoveryResponse) -> bytes:
    payload = response.SerializeToString(deterministic=True)
    header = json.dumps({
        "type_url": type_url, "node_cluster": node_cluster,
        "version_info": response.version_info, "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest()},
        sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + len(header).to_bytes(_LEN, "big") + header + payload


def decode_record(data: bytes, type_url: str, node_cluster: str,
                  max_bytes: int) -> discovery_pb2.DiscoveryResponse:
    """The response in ``data`` if every check passes, else ``RecordError``."""
    if not data.startswith(MAGIC):
        raise RecordError("not a relay record (bad magic)")
    at = len(MAGIC)
    if len(data) < at + _LEN:
        raise RecordError("truncated header")
    header_len = int.from_bytes(data[at:at + _LEN], "big")
    if header_len > MAX_HEADER_BYTES:
        raise RecordError(f"header of {header_len} bytes is over {MAX_HEADER_BYTES}")
    at += _LEN
    raw_header = data[at:at + header_len]
    if len(raw_header) != header_len:
        raise RecordError("truncated header")
    try:
        header = json.loads(raw_header)
    except (ValueError, UnicodeDecodeError) as err:
        raise RecordError(f"header is not JSON: {err}") from None
    if not isinstance(header, dict) or set(header) != set(_HEADER_FIELDS):
        raise RecordError("header fields are not " + ", ".join(sorted(_HEADER_FIELDS)))
    for key, kind in _HEADER_FIELDS.items():
        if type(header[key]) is not kind:
            raise RecordError(f"header.{key}: must be {kind.__name__}")
    if header["type_url"] != type_url:
        raise RecordError(f"header.type_url is {header['type_url'][:200]!r}, not {type_url}")
    if header["node_cluster"] != node_cluster:
        raise RecordError(f"recorded for node cluster {header['node_cluster'][:200]!r}, "
                          f"not {node_cluster!r}")
    payload = data[at + header_len:]
    if header["size"] != len(payload):
        raise RecordError(f"payload is {len(payload)} bytes, header says {header['size']}")
    if len(payload) > max_bytes:
        raise RecordError(f"payload of {len(payload)} bytes is over {max_bytes}")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise RecordError("payload sha256 does not match the header")
    response = discovery_pb2.DiscoveryResponse()
    try:
        response.ParseFromString(payload)
    except DecodeError as err:
        raise RecordError(f"payload is not a DiscoveryResponse: {err}") from None
    if response.type_url != type_url:
        raise RecordError(f"response type_url is {response.type_url[:200]!r}")
    if response.version_info != header["version_info"]:
        raise RecordError("response version_info does not match the header")
    for i, resource in enumerate(response.resources):
        if resource.type_url not in (type_url, RESOURCE_WRAPPER):
            raise RecordError(f"resources[{i}] has type {resource.type_url[:200]!r}")
    return response


class RecordStore:
    """The last ACKed response per known type for one node cluster, bounded in bytes."""

    def __init__(self, state_dir: Path, node_cluster: str, *, max_record_bytes: int,
                 max_state_bytes: int) -> None:
        self.state_dir = Path(state_dir)
        self.node_cluster = node_cluster
        self.max_record_bytes = max_record_bytes
        self.max_state_bytes = max_state_bytes
        self._records: dict[str, Record] = {}
        self._newest: dict[str, int] = {}  # per type, the latest arrival number recorded
        self._locks: dict[str, asyncio.Lock] = {}

    # -- reading ----------------------------------------------------------------

    def path(self, type_url: str) -> Path:
        return self.state_dir / FILE_NAMES[type_url]

    def ensure_dir(self) -> None:
        """Create the state directory 0700; refuse one that is a symlink or not a directory."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(self.state_dir)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(f"relay: state dir {self.state_dir} is not a directory")

    def load(self) -> list[str]:
        """Read every known type's file; return the types loaded. Never raises on content."""
        self.ensure_dir()
        for leftover in self.state_dir.glob(TMP_PREFIX + "*.tmp"):
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(leftover).st_mode):
                    leftover.unlink()
        total = 0
        for type_url in PUSH_ORDER:
            path = self.path(type_url)
            try:
                response = self._read(path, type_url)
            except FileNotFoundError:
                continue
            except (OSError, RecordError) as err:
                log.warning("relay: ignoring recorded %s: %s", path, err)
                continue
            size = response.ByteSize()
            if total + size > self.max_state_bytes:
                log.warning("relay: ignoring recorded %s: the record would exceed %d bytes",
                            path, self.max_state_bytes)
                continue
            total += size
            self._records[type_url] = Record(type_url, response, size)
        return list(self._records)

    def _read(self, path: Path, type_url: str) -> discovery_pb2.DiscoveryResponse:
        limit = len(MAGIC) + _LEN + MAX_HEADER_BYTES + self.max_record_bytes
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise RecordError("not a regular file")
            if st.st_size > limit:
                raise RecordError(f"{st.st_size} bytes is over the bound of {limit}")
            data = f.read(limit + 1)
        if len(data) > limit:
            raise RecordError(f"over the bound of {limit} bytes")
        return decode_record(data, type_url, self.node_cluster, self.max_record_bytes)

    def get(self, type_url: str) -> Record | None:
        return self._records.get(type_url)

    def types(self) -> list[str]:
        return [t for t in PUSH_ORDER if t in self._records]

    def summary(self) -> str:
        """``Cluster@<version>, ...`` for log lines."""
        return ", ".join(f"{short_type(t)}@{r.version[:16]}" for t in PUSH_ORDER
                         if (r := self._records.get(t)) is not None) or "nothing"

    def total_bytes(self) -> int:
        return sum(r.size for r in self._records.values())

    # -- recording -----------------------------------------------------------------

    async def record(self, type_url: str, response: discovery_pb2.DiscoveryResponse,
                     seq: int = 0) -> None:
        """Make ``response`` (arrival number ``seq``) the record of ``type_url`` and persist
        it before returning, unless the record is already a response that arrived later: a
        late ACK of an older response (another Envoy's stream, a slow one) must not replace
        a newer record, or a restarted Envoy would boot from older config.

        Over a bound, the type's old record is dropped rather than kept: the record must
        never hold config that Envoy no longer holds. Disk errors are logged; the memory
        record still serves this process.
        """
        if type_url not in FILE_NAMES:
            return
        lock = self._locks.setdefault(type_url, asyncio.Lock())
        async with lock:  # FIFO: records land in the order the ACKs arrived
            if 0 < seq <= self._newest.get(type_url, 0):
                log.info("relay: not recording %s version %s: a response that arrived later "
                         "was recorded (or dropped for a bound)", short_type(type_url),
                         response.version_info[:16])
                return
            self._newest[type_url] = max(seq, self._newest.get(type_url, 0))
            size = response.ByteSize()
            others = self.total_bytes() - (self._records[type_url].size
                                           if type_url in self._records else 0)
            why = None
            if size > self.max_record_bytes:
                why = f"{size} bytes is over {self.max_record_bytes}"
            elif others + size > self.max_state_bytes:
                why = f"the record would exceed {self.max_state_bytes} bytes"
            if why is not None:
                log.warning("relay: not recording %s version %s: %s; dropping its record",
                            short_type(type_url), response.version_info[:64], why)
                self._records.pop(type_url, None)
                try:
                    await asyncio.to_thread(self._remove, type_url)
                except OSError as err:
                    log.warning("relay: cannot remove %s: %s", self.path(type_url), err)
                return
            kept = discovery_pb2.DiscoveryResponse()
            kept.CopyFrom(response)
            self._records[type_url] = Record(type_url, kept, size, seq)
            data = encode_record(type_url, self.node_cluster, kept)
            try:
                await asyncio.to_thread(self._write, type_url, data)
            except OSError as err:
                log.warning("relay: cannot persist %s: %s", self.path(type_url), err)

    def _write(self, type_url: str, data: bytes) -> None:
        self.ensure_dir()
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=TMP_PREFIX, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp: O_EXCL, mode 0600
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(type_url))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._sync_dir()

    def _remove(self, type_url: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(type_url))
            self._sync_dir()

    def _sync_dir(self) -> None:
        with contextlib.suppress(OSError):
            dfd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
