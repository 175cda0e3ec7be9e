"""The host's half of a link whose MQTT bytes come from inside the MicroPython VM (it has no socket).

The VM side is one function the test defines; ``call(news, received)`` runs it and returns its
reply: byte 0 = the session wants a link, byte 1 = the low byte of its link epoch, the rest = bytes
to send. ``news`` tells the session what became of the link: 0 nothing, 1 up, 2 down. The host
opens a blocking socket when the session wants a link for an epoch it has not served yet, closes
it when the session gives the link up or starts a new epoch, and hands the VM every byte read.
"""

import select
import socket
import time

NOTHING, UP, DOWN = 0, 1, 2


class VMSocketBridge:
    def __init__(self, call, port, poll_s=0.01):
        self.call = call
        self.port = port
        self.poll_s = poll_s
        self.sock = None
        self.epoch = -1

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def step(self, received=b"", news=NOTHING):
        """One VM call with what the socket read; a new link opened (and announced) if wanted."""
        while True:
            reply = self.call(news, received)
            want, epoch, out = reply[0], reply[1], reply[2:]
            if self.sock is not None and (not want or epoch != self.epoch):
                self.close()
            if out and self.sock is not None:
                self.sock.sendall(out)
            if not want or self.sock is not None or epoch == self.epoch:
                return
            self.epoch = epoch
            received = b""
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                news = UP
            except OSError:
                news = DOWN

    def run(self, until, timeout=30.0, what="the condition"):  # wall time, a loaded CI host
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            if self.sock is None:
                time.sleep(self.poll_s)
                self.step()
                continue
            received = b""
            readable, _, _ = select.select([self.sock], [], [], self.poll_s)
            if readable:
                try:
                    received = self.sock.recv(256)
                except OSError:
                    received = b""
                if not received:  # the broker is gone: tell the session
                    self.close()
                    self.step(news=DOWN)
                    continue
            self.step(received)
