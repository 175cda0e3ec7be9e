"""Crash-safe files on the board: the only module of the agent that touches a file system.

Every function takes the file system as arguments: ``fs`` is an ``os``-like module (``rename``,
``remove``, optionally ``sync``/``fsync``) and ``opener`` an ``open``-like function (the builtin by
default), so the same code runs on a board (littlefs or FAT), on CPython and in the VM's MEMFS, and
tests can inject a power loss at any byte.

Rules:
- ``atomic_write``: write ``path + ".tmp"``, flush, sync, close, then rename it over ``path``.
  littlefs (RP2, ESP32) and POSIX replace the target atomically. FAT refuses to rename onto an
  existing file; there we remove the target first, which is NOT atomic on its own: that is why
  persistent state is kept in two generations (below) and never relies on one file.
- Two generations (``save`` / ``read_latest``): generation ``seq`` goes to ``base + ".a"`` when seq
  is even and ``base + ".b"`` when odd, so a new generation always overwrites the OLDER copy and
  the newest valid one is never touched. Each copy is framed as
  ``RPS1 <seq> <length> <crc32 hex>\\n<payload>``. ``read_latest`` returns the valid copy with the
  highest seq; a torn, truncated or bit-flipped copy fails its length or CRC and is skipped.
  A power loss at any point of ``save`` therefore leaves the previous generation loadable.
- Errors: a copy that cannot be read or is corrupt is skipped (never raised); a write that fails
  raises the file system's OSError to the caller, the other generation still intact.
"""

try:
    from binascii import crc32 as _crc32
except ImportError:  # a port built without binascii.crc32
    _crc32 = None  # type: ignore[assignment]

_MAGIC = "RPS1"
_MAX_HEADER = 48


def crc32(data):
    """CRC-32 (IEEE 802.3, as zlib/binascii) of bytes."""
    if _crc32 is not None:
        # unsigned on MicroPython and CPython 3 (a mask made a second long int: 32 B a call)
        return _crc32(data)
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _sync(fs, f):
    f.flush()
    fsync = getattr(fs, "fsync", None)
    fileno = getattr(f, "fileno", None)
    if fsync is not None and fileno is not None:
        try:
            fsync(fileno())  # CPython: this file only
            return
        except (OSError, AttributeError, ValueError):
            pass
    sync = getattr(fs, "sync", None)  # MicroPython: os.sync() where the port has it
    if sync is not None:
        sync()


def atomic_write(fs, path, data, opener=open):
    """Replace the file at path with data (bytes) via path.tmp and a rename."""
    tmp = path + ".tmp"
    f = opener(tmp, "wb")
    try:
        f.write(data)
        _sync(fs, f)
    finally:
        f.close()
    try:
        fs.rename(tmp, path)
    except OSError:
        # FAT: rename does not replace. Not atomic; the caller's other generation covers the gap.
        try:
            fs.remove(path)
        except OSError:
            pass
        fs.rename(tmp, path)


def read_file(path, opener=open):
    """The bytes of a file, or None when it cannot be read."""
    try:
        f = opener(path, "rb")
    except OSError:
        return None
    try:
        return f.read()
    except OSError:
        return None
    finally:
        f.close()


def slot_path(base, seq):
    return base + (".a" if seq % 2 == 0 else ".b")


def frame(seq, data):
    """One generation's file content: header line + payload."""
    header = "%s %d %d %08x\n" % (_MAGIC, seq, len(data), crc32(data))
    return header.encode() + data


def unframe(content):
    """(seq, payload) of a generation file, or None when it is torn or corrupt."""
    if not content:
        return None
    end = content.find(b"\n", 0, _MAX_HEADER)
    if end < 0:
        return None
    try:
        parts = content[:end].decode().split(" ")
    except (UnicodeError, ValueError):
        return None
    if len(parts) != 4 or parts[0] != _MAGIC:
        return None
    try:
        seq = int(parts[1])
        length = int(parts[2])
        crc = int(parts[3], 16)
    except ValueError:
        return None
    payload = content[end + 1 :]
    if seq < 0 or length != len(payload) or crc32(payload) != crc:
        return None
    return seq, payload


def save(fs, base, data, seq, opener=open):
    """Write generation seq (bytes) over the older of the two copies."""
    atomic_write(fs, slot_path(base, seq), frame(seq, data), opener)


def read_latest(fs, base, accept=None, opener=open):
    """(seq, value) of the newest valid generation, or None when neither copy is valid.

    value is the payload bytes, or accept(payload) when accept is given: accept raises ValueError
    (or a subclass) to reject a copy whose CRC is fine but whose content is not, and the older
    copy is tried next. A leftover ``.tmp`` of an interrupted write is never read.
    """
    a = unframe(read_file(base + ".a", opener))
    b = unframe(read_file(base + ".b", opener))
    if a is None or (b is not None and b[0] > a[0]):
        a, b = b, a  # a: the newest valid copy, b: the other valid one (or None)
    for got in (a, b):
        if got is None:
            continue
        if accept is None:
            return got
        try:
            return got[0], accept(got[1])
        except ValueError:
            continue
    return None
