"""CPython client for the MicroPython VM server (vm.mjs): start it, send requests, read replies.

Rules:
- One Node process per MicroPythonVM; requests are strictly lockstep (one line out, one line in).
- Every request has a wall-clock deadline. A VM that misses it is killed (SIGKILL) and VMTimeout is
  raised; the VM is then closed and later requests raise VMCrashed until restart().
- A Python exception inside the VM becomes VMError carrying the MicroPython type name and traceback.
- Heap figures come from gc.mem_alloc() inside the VM, before and after the user code of a request.
  The GC does not collect inside one request, so "after" is that request's peak.
- The VM is the pinned npm package (1.27.0) unless `package` names another node module; `romfs`
  (an image made by `mpremote romfs build`) boots it with that image at /rom, in the pinned
  ROMFS-capable package (ROMFS_PACKAGE) unless another is named.
"""

from __future__ import annotations

import json
import os
import select
import selectors
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).resolve().with_name("vm.mjs")

DEFAULT_MOUNTS: dict[str, str] = {
    "firmware": "/firmware",
    "tests/firmware": "/tests",
    "protocol/vectors": "/vectors",
}
DEFAULT_PATHS: tuple[str, ...] = ("/tests", "/firmware")
DEFAULT_HEAP_KIB = 192
DEFAULT_TIMEOUT = 30.0
DEFAULT_PACKAGE = "@micropython/micropython-webassembly-pyscript"  # 1.27.0, package.json
# MicroPython 1.29.0-6 (package.json's alias): its port has ROMFS (vfs.rom_ioctl, VfsRom, /rom).
ROMFS_PACKAGE = "micropython-romfs"


class VMError(Exception):
    """A request failed inside the VM. `type` is the MicroPython exception type name."""

    def __init__(self, type_name: str, traceback: str, out: str = "") -> None:
        self.type = type_name
        self.traceback = traceback
        self.out = out
        super().__init__(f"{type_name} in MicroPython VM\n{traceback}".rstrip())


class VMTimeout(VMError):
    """The VM did not answer in time; it has been killed."""


class VMCrashed(VMError):
    """The VM process is gone (exited, killed earlier, or never started)."""


class MemFigures(NamedTuple):
    """gc.mem_alloc() at the start of a request and at the end of its user code (= its peak)."""

    before: int
    peak: int

    @property
    def used(self) -> int:
        """Bytes allocated by the request (nothing is collected inside one request)."""
        return self.peak - self.before


class MicroPythonVM:
    """A MicroPython WebAssembly VM (1.27; 1.29 with ROMFS) with a capped heap, run by Node in a
    child process.

    >>> with MicroPythonVM(heap_kib=128) as vm:
    ...     vm.exec("import binascii")
    ...     vm.eval("1 + 1")
    2
    """

    def __init__(
        self,
        heap_kib: int = DEFAULT_HEAP_KIB,
        mounts: Mapping[str | os.PathLike[str], str] | None = None,
        paths: Sequence[str] = DEFAULT_PATHS,
        timeout: float = DEFAULT_TIMEOUT,
        node: str = "node",
        package: str | None = None,
        romfs: str | os.PathLike[str] | None = None,
    ) -> None:
        if mounts is None:
            mounts = {REPO_ROOT / host: vm for host, vm in DEFAULT_MOUNTS.items()}
        self.heap_kib = heap_kib
        self.mounts = {Path(host).resolve(): vm for host, vm in mounts.items()}
        self.paths = tuple(paths)
        self.timeout = timeout
        self.node = node
        self.romfs = None if romfs is None else Path(romfs).resolve()
        self.package = package or (DEFAULT_PACKAGE if romfs is None else ROMFS_PACKAGE)
        self.last_mem: MemFigures | None = None
        self.last_out = ""
        self.heap_total = 0
        self.start_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        self._inbox = b""
        self._selector: selectors.BaseSelector | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> MicroPythonVM:
        if self._proc is not None:
            return self
        argv = [self.node, str(SERVER), "--heap-kib", str(self.heap_kib)]
        for host, vm in self.mounts.items():
            if host.is_dir():
                argv += ["--mount", f"{host}:{vm}"]
        for p in self.paths:
            argv += ["--path", p]
        argv += ["--package", self.package]
        if self.romfs is not None:
            argv += ["--romfs", str(self.romfs)]
        started = time.perf_counter()
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        os.set_blocking(self._proc.stdin.fileno(), False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._proc.stdout.fileno(), selectors.EVENT_READ)
        self._inbox = b""
        self._receive(time.monotonic() + max(self.timeout, 30.0))
        self.start_seconds = time.perf_counter() - started
        stats = self.stats()
        self.heap_total = stats["alloc"] + stats["free"]
        return self

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            self._release(proc)

    def restart(self) -> MicroPythonVM:
        self.close()
        return self.start()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> MicroPythonVM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------

    def exec(self, src: str, *, gc: bool = False, timeout: float | None = None) -> None:
        """Run statements in the VM's persistent namespace."""
        self._request({"op": "exec", "src": src, "gc": gc, "mem": True}, timeout)

    def eval(self, expr: str, *, gc: bool = False, timeout: float | None = None) -> Any:
        """Evaluate an expression in the VM; its value comes back through JSON."""
        return self._request({"op": "eval", "src": expr, "gc": gc, "mem": True}, timeout)["value"]

    def call(
        self,
        fn: str,
        data: bytes | bytearray | memoryview | None = None,
        *,
        gc: bool = False,
        measure: bool = False,
        timeout: float | None = None,
    ) -> bytes:
        """Call `fn` (a name in the namespace or a dotted module path) with `data`, or with no
        argument when data is None. The function returns bytes-like or None (-> b"")."""
        req: dict[str, Any] = {"op": "call", "fn": fn, "gc": gc, "mem": measure}
        if data is not None:
            req["data"] = bytes(data).hex()
        return bytes.fromhex(self._request(req, timeout)["data"])

    def reset(self) -> None:
        """Forget everything defined by exec/eval (imported modules stay in sys.modules)."""
        self._request({"op": "reset", "gc": True}, None)

    def sync(self, vm_dir: str, host_dir: str | os.PathLike[str], skip: Sequence[str] = ()) -> None:
        """Mirror the VM directory `vm_dir` onto `host_dir` (written by Node, no Python runs):
        files that differ are written, host entries the VM lacks are removed; top-level names in
        `skip` are left alone on both sides."""
        req = {
            "op": "sync",
            "src": vm_dir,
            "host": str(Path(host_dir).resolve()),
            "skip": list(skip),
        }
        self._request(req, None)

    def stats(self) -> dict[str, int]:
        """Live heap figures after a collection: {"alloc": bytes, "free": bytes}."""
        return self._request({"op": "stats", "gc": True}, None)["value"]

    # -- channel ---------------------------------------------------------------------------------

    def _request(self, req: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        if self._proc is None:
            raise VMCrashed("VMCrashed", "the VM is not running (closed, killed or never started)")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._send(json.dumps(req).encode() + b"\n", deadline)
        resp = self._receive(deadline)
        self.last_out = resp.get("out", "")
        mem = resp.get("mem")
        self.last_mem = MemFigures(mem[0], mem[1]) if mem else None
        if not resp.get("ok"):
            raise VMError(resp.get("type", "RunnerError"), resp.get("traceback", ""), self.last_out)
        return resp

    def _send(self, frame: bytes, deadline: float) -> None:
        assert self._proc is not None and self._proc.stdin is not None and self._selector
        fd = self._proc.stdin.fileno()
        view = memoryview(frame)
        while view:
            try:
                view = view[os.write(fd, view) :]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                self._crashed("the VM closed its input")
            self._wait(fd, selectors.EVENT_WRITE, deadline)

    def _receive(self, deadline: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            nl = self._inbox.find(b"\n")
            if nl >= 0:
                line, self._inbox = self._inbox[:nl], self._inbox[nl + 1 :]
                return json.loads(line)
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                self._wait(fd, selectors.EVENT_READ, deadline)
                continue
            if not chunk:
                self._crashed("the VM exited")
            self._inbox += chunk

    def _wait(self, fd: int, event: int, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            if event == selectors.EVENT_READ:
                assert self._selector is not None  # stdout stays registered for reading
                ready = bool(self._selector.select(remaining))
            else:
                ready = bool(select.select([], [fd], [], remaining)[1])
            if ready:
                return
        self._kill()
        raise VMTimeout("VMTimeout", "no answer within the deadline; the VM was killed")

    def _crashed(self, why: str) -> None:
        detail = self._kill()
        raise VMCrashed("VMCrashed", f"{why}\n{detail}".rstrip())

    def _kill(self) -> str:
        """Kill the Node process and return the tail of its stderr."""
        proc, self._proc = self._proc, None
        if proc is None:
            return ""
        proc.kill()
        proc.wait()
        return self._release(proc)

    def _release(self, proc: subprocess.Popen[bytes]) -> str:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        tail = ""
        if self._stderr is not None:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 4000))
            tail = self._stderr.read().decode("utf-8", "replace")
            self._stderr.close()
            self._stderr = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        return tail
