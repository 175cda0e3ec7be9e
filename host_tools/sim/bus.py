"""An RS-485 segment in virtual time: real RTU bytes, the wire's timing, and its faults.

Rules:
- Half duplex, one master. A character takes 11 bits on the wire (start, 8 data, parity or a
  second stop bit, stop), so a frame of n bytes takes n * 11 / baud seconds.
- A request is heard by the slaves when its last byte has arrived; the addressed device answers
  after its turnaround time (3.5 character times of silence plus the device's processing time);
  the response's bytes then arrive one character time apart. ``receive(now_s)`` hands the master
  the bytes that have arrived by then, so a master sees frames split as a real UART would show them.
- Faults: a unit can be cut off (its requests never reach it: the drive's comm-loss timer runs),
  and noise can corrupt a byte of a frame in either direction with a given probability (the
  corrupted frame fails its CRC: a slave stays silent, the master sees a CRC error).
"""

from __future__ import annotations

import random

from host_tools.sim.rtu_slave import RtuSlaves

BITS_PER_CHAR = 11


class SimulatedBus:
    def __init__(
        self,
        slaves: RtuSlaves,
        baud: int = 19200,
        turnaround_s: float = 0.003,
        seed: int = 0,
    ) -> None:
        self.slaves = slaves
        self.baud = baud
        self.char_s = BITS_PER_CHAR / baud
        self.turnaround_s = turnaround_s
        self.noise_probability = 0.0  # per frame, each direction
        self.cut_units: set[int] = set()
        self._random = random.Random(seed)
        self._response = b""
        self._response_start_s = 0.0
        self._delivered = 0
        self.sent_s = 0.0  # when the last request's last byte left the master
        self.busy_until_s = 0.0
        # Counters for KPIs and tests.
        self.requests = 0
        self.responses = 0
        self.corrupted_frames = 0
        self.wire_time_s = 0.0

    def frame_time_s(self, n_bytes: int) -> float:
        return n_bytes * self.char_s

    def send(self, frame: bytes, now_s: float) -> float:
        """The master starts sending at now_s; returns when the last byte has left. The response
        (if any) is then handed out by ``receive`` as its bytes arrive."""
        self.transact(frame, now_s)
        self._delivered = 0
        return self.sent_s

    def transact(self, frame: bytes, now_s: float) -> tuple[bytes, float] | None:
        """``send``, then the whole response at once: (response, the instant its last byte has
        arrived), or None when no response is coming. The same as send(frame, now_s), then
        receive(response_complete_at()), in one call (a board that hands a UART frame over whole).
        send's work is done here (send calls this): a board's every frame comes this way."""
        char_s = self.char_s
        busy = self.busy_until_s
        start = busy if busy > now_s else now_s  # max(now_s, busy), without the call
        end = start + len(frame) * char_s  # frame_time_s, inline (as below): every frame
        self.wire_time_s += end - start
        self.sent_s = self.busy_until_s = end
        if self.noise_probability > 0.0 or self.cut_units:
            response = self.exchange(frame, end)
        else:  # exchange on a healthy wire, inline
            self.requests += 1
            response = self.slaves.answer(frame, end)
            if response is not None:
                self.responses += 1
        if response is None:
            self._response, self._delivered = b"", 0
            return None
        n = len(response)
        self._response, self._delivered = response, n
        at = self._response_start_s = end + 3.5 * char_s + self.turnaround_s
        arrived = self.busy_until_s = at + n * char_s
        self.wire_time_s += n * char_s
        return response, arrived

    def exchange(self, frame: bytes, now_s: float) -> bytes | None:
        """The wire's faults around one request whose last byte arrived at now_s: the response
        as the master receives it, or None for silence. The serial server (serial_port.py) goes
        through here too, so a bench sees the same faults as an in-process run."""
        self.requests += 1
        noisy = self.noise_probability > 0.0  # (no draw from the generator without noise)
        if noisy:
            frame = self._noisy(frame)
        if self.cut_units and frame and frame[0] in self.cut_units:
            return None
        response = self.slaves.answer(frame, now_s)
        if response is None:
            return None
        self.responses += 1
        return self._noisy(response) if noisy else response

    def receive(self, now_s: float) -> bytes:
        """Response bytes that have fully arrived by now_s and were not handed out before."""
        if self._delivered >= len(self._response):
            return b""
        if now_s >= self._response_start_s + len(self._response) * self.char_s:
            arrived = len(self._response)
        else:
            arrived = int((now_s - self._response_start_s) / self.char_s)
            arrived = max(0, min(arrived, len(self._response)))
        chunk = self._response[self._delivered : arrived]
        self._delivered = max(self._delivered, arrived)
        return chunk

    def response_complete_at(self) -> float | None:
        """When the pending response's last byte arrives (None when no response is coming)."""
        if self._delivered >= len(self._response):
            return None
        return self._response_start_s + len(self._response) * self.char_s

    def _noisy(self, frame: bytes) -> bytes:
        if self.noise_probability <= 0.0 or self._random.random() >= self.noise_probability:
            return frame
        self.corrupted_frames += 1
        damaged = bytearray(frame)
        damaged[self._random.randrange(len(damaged))] ^= 1 << self._random.randrange(8)
        return bytes(damaged)
