"""Crash-safe storage: a power loss at any byte of a save leaves the previous generation loadable.

A small in-memory file system (MemFS) stands in for the board's flash so a power loss can be
injected after any number of bytes or before the rename, with littlefs/POSIX rename semantics
(replace) or FAT's (refuse an existing target). The real file system is used too: a temporary
directory on CPython, MEMFS inside the MicroPython VM.
"""

import os

from relaypump import storage
from support import ON_MICROPYTHON

VM_HEAP_KIB = 128


class PowerLoss(Exception):
    pass


class _File:
    def __init__(self, fs, path, mode):
        self.fs = fs
        self.path = path
        self.mode = mode
        self.pos = 0

    def write(self, data):
        fs = self.fs
        budget = fs.bytes_before_crash
        if budget is not None and len(data) > budget:
            fs.files[self.path] = fs.files[self.path] + bytes(data[:budget])
            fs.bytes_before_crash = 0
            raise PowerLoss("power lost while writing " + self.path)
        if budget is not None:
            fs.bytes_before_crash = budget - len(data)
        fs.files[self.path] = fs.files[self.path] + bytes(data)
        return len(data)

    def read(self):
        return self.fs.files[self.path]

    def flush(self):
        pass

    def close(self):
        pass


class MemFS:
    """Files in a dict; rename replaces (littlefs, POSIX) unless fat=True."""

    def __init__(self, fat=False):
        self.files = {}
        self.fat = fat
        self.bytes_before_crash = None  # None: no crash; n: power lost after n more bytes
        self.crash_before_rename = False
        self.renames = 0

    def open(self, path, mode):
        if "w" in mode:
            self.files[path] = b""
        elif path not in self.files:
            raise OSError(2, "ENOENT " + path)
        return _File(self, path, mode)

    def rename(self, old, new):
        if self.crash_before_rename:
            raise PowerLoss("power lost before rename")
        if old not in self.files:
            raise OSError(2, "ENOENT " + old)
        if self.fat and new in self.files:
            raise OSError(17, "EEXIST " + new)
        self.files[new] = self.files.pop(old)
        self.renames += 1

    def remove(self, path):
        if path not in self.files:
            raise OSError(2, "ENOENT " + path)
        del self.files[path]


def _save(fs, base, data, seq):
    storage.save(fs, base, data, seq, fs.open)


def _latest(fs, base, accept=None):
    return storage.read_latest(fs, base, accept, fs.open)


def test_frame_round_trip_and_corruption_is_detected():
    data = b'{"starts": [1, 2, 3]}'
    framed = storage.frame(7, data)
    assert storage.unframe(framed) == (7, data)
    assert storage.unframe(framed[:-1]) is None  # truncated
    assert storage.unframe(framed + b"x") is None  # trailing bytes
    flipped = bytearray(framed)
    flipped[-3] ^= 0x10
    assert storage.unframe(bytes(flipped)) is None  # bit flip
    assert storage.unframe(b"") is None
    assert storage.unframe(None) is None
    assert storage.unframe(b"RPS1 x 1 0\n1") is None
    assert storage.unframe(b"junk" * 40) is None
    assert storage.unframe(b"RPS2" + framed[4:]) is None


def test_crc32_fallback_matches_binascii():
    assert storage.crc32(b"123456789") == 0xCBF43926
    assert storage.crc32(b"\xff" * 7) == 4282505709  # above 2**31: unsigned
    saved = storage._crc32
    storage._crc32 = None
    try:
        assert storage.crc32(b"123456789") == 0xCBF43926
        assert storage.crc32(b"") == 0
        assert storage.crc32(b"\xff" * 7) == 4282505709
    finally:
        storage._crc32 = saved


def test_generations_alternate_and_the_newest_wins():
    fs = MemFS()
    assert _latest(fs, "/state") is None
    for seq in range(1, 6):
        _save(fs, "/state", b"gen%d" % seq, seq)
    assert _latest(fs, "/state") == (5, b"gen5")
    assert sorted(fs.files) == ["/state.a", "/state.b"]  # no .tmp left behind
    assert storage.unframe(fs.files["/state.a"])[0] == 4
    assert storage.unframe(fs.files["/state.b"])[0] == 5


def _power_loss_at_every_byte(fat):
    base = "/state"
    previous = b'{"v": 1, "starts": [10, 20, 30]}'
    new = b'{"v": 1, "starts": [11, 20, 30], "more": "a longer payload than before"}'
    length = len(storage.frame(8, new))
    # every byte on CPython; the VM collects no garbage inside one test, so there every 4th byte
    # of the payload (all of the header) and the last ones
    for cut in range(length + 1):
        if ON_MICROPYTHON and 30 < cut < length - 3 and cut % 4:
            continue
        fs = MemFS(fat=fat)
        _save(fs, base, b"old", 6)
        _save(fs, base, previous, 7)
        fs.bytes_before_crash = cut
        try:
            _save(fs, base, new, 8)
        except PowerLoss:
            pass
        fs.bytes_before_crash = None
        got = _latest(fs, base)
        if cut < length:
            assert got == (7, previous), (cut, got)
        else:
            assert got == (8, new), (cut, got)


def test_power_loss_at_any_byte_keeps_the_previous_state_littlefs():
    _power_loss_at_every_byte(fat=False)


def test_power_loss_at_any_byte_keeps_the_previous_state_fat():
    _power_loss_at_every_byte(fat=True)


def test_power_loss_before_the_rename_keeps_the_previous_state():
    for fat in (False, True):
        fs = MemFS(fat=fat)
        _save(fs, "/s", b"first", 1)
        _save(fs, "/s", b"second", 2)
        fs.crash_before_rename = True
        try:
            _save(fs, "/s", b"third", 3)
        except PowerLoss:
            pass
        assert _latest(fs, "/s") == (2, b"second")
        assert "/s.b.tmp" in fs.files  # the interrupted write is left aside, never read
        fs.crash_before_rename = False
        _save(fs, "/s", b"third", 3)  # the next save just overwrites the leftover
        assert _latest(fs, "/s") == (3, b"third")


def test_fat_rename_removes_the_target_first():
    fs = MemFS(fat=True)
    storage.atomic_write(fs, "/cfg", b"one", fs.open)
    storage.atomic_write(fs, "/cfg", b"two", fs.open)
    assert fs.files == {"/cfg": b"two"}


def test_a_copy_rejected_by_accept_falls_back_to_the_older_one():
    fs = MemFS()
    _save(fs, "/s", b"good", 4)
    _save(fs, "/s", b"bad", 5)

    def accept(payload):
        if payload == b"bad":
            raise ValueError("content")
        return payload.decode()

    assert _latest(fs, "/s", accept) == (4, "good")

    def reject_all(payload):
        raise ValueError("no")

    assert _latest(fs, "/s", reject_all) is None


def test_one_missing_copy_is_fine():
    fs = MemFS()
    _save(fs, "/s", b"only", 3)
    assert _latest(fs, "/s") == (3, b"only")


def _scratch_dir():
    try:
        import tempfile

        return tempfile.mkdtemp()
    except ImportError:  # MicroPython: MEMFS
        path = "/scratch_storage"
        try:
            os.mkdir(path)
        except OSError:
            pass
        return path


def _cleanup(directory):
    for name in os.listdir(directory):
        os.remove(directory + "/" + name)
    os.rmdir(directory)


def test_the_real_file_system_with_a_torn_write():
    directory = _scratch_dir()
    base = directory + "/state"
    try:
        storage.save(os, base, b"one", 1)
        storage.save(os, base, b"two", 2)
        assert storage.read_latest(os, base) == (2, b"two")
        # a torn write of generation 3 into slot .b's tmp file, then power lost before the rename
        with open(base + ".b.tmp", "wb") as f:
            f.write(storage.frame(3, b"three")[:9])
        assert storage.read_latest(os, base) == (2, b"two")
        # torn content in the slot itself (a file system that wrote in place)
        with open(base + ".b", "wb") as f:
            f.write(storage.frame(3, b"three")[:-2])
        assert storage.read_latest(os, base) == (2, b"two")
        storage.save(os, base, b"three", 3)
        assert storage.read_latest(os, base) == (3, b"three")
        assert sorted(os.listdir(directory)) == ["state.a", "state.b"]
        storage.atomic_write(os, directory + "/plain", b"x")
        storage.atomic_write(os, directory + "/plain", b"y")
        assert storage.read_file(directory + "/plain") == b"y"
        assert storage.read_file(directory + "/missing") is None
    finally:
        _cleanup(directory)
