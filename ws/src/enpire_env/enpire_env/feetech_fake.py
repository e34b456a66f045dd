"""Feetech STS servos behind a pseudo-terminal, speaking the bus protocol byte by byte — for
tests and for a dry run of the driver without an arm.

    with FakeServoBus(ids=range(1, 7)) as bus:
        arm = So101Arm(bus.port)          # the pty's path, as if it were /dev/ttyACM0
        ...
        bus.silence(3)                     # servo 3 stops answering
        bus.memory(2)[40]                  # torque-enable register of servo 2

Packets: ``FF FF id len instr params... checksum`` (checksum = ~sum(id..params) & 0xFF); a
servo answers PING, READ and WRITE with a status packet ``FF FF id len error params checksum``
and applies SYNC_WRITE silently. A goal position written with torque on becomes the present
position (an ideal servo), clipped to the servo's angle limits.
"""

from __future__ import annotations

import os
import pty
import select
import threading
import tty

from enpire_env.feetech import (
    ADDR_GOAL,
    ADDR_MAX_LIMIT,
    ADDR_MIN_LIMIT,
    ADDR_PRESENT,
    ADDR_TEMPERATURE,
    ADDR_TORQUE,
    ADDR_VOLTAGE,
    MODEL_STS3215,
)

PING, READ, WRITE, SYNC_WRITE = 1, 2, 3, 0x83


class FakeServoBus:
    def __init__(self, ids=range(1, 7), limits: dict[int, tuple[int, int]] | None = None):
        self.master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        tty.setraw(self.master)
        self.port = os.ttyname(self._slave)
        self._mem: dict[int, bytearray] = {}
        for sid in ids:
            m = bytearray(256)
            m[3:5] = MODEL_STS3215.to_bytes(2, "little")
            m[5] = sid
            lo, hi = (limits or {}).get(sid, (0, 4095))
            self._put(m, ADDR_MIN_LIMIT, lo)
            self._put(m, ADDR_MAX_LIMIT, hi)
            self._put(m, ADDR_PRESENT, 2048)
            self._put(m, ADDR_GOAL, 2048)
            self._put(m, ADDR_VOLTAGE, 121)  # 12.1 V
            self._put(m, ADDR_TEMPERATURE, 31)
            self._mem[sid] = m
        self._silent: set[int] = set()
        self.packets: list[tuple[int, int]] = []  # (id, instruction) received
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def _put(m: bytearray, addr: tuple[int, int], value: int) -> None:
        m[addr[0] : addr[0] + addr[1]] = int(value).to_bytes(addr[1], "little")

    @staticmethod
    def _get(m: bytearray, addr: tuple[int, int]) -> int:
        return int.from_bytes(m[addr[0] : addr[0] + addr[1]], "little")

    # --- test controls ---------------------------------------------------------------------
    def memory(self, sid: int) -> bytearray:
        with self._lock:
            return bytearray(self._mem[sid])

    def register(self, sid: int, addr: tuple[int, int]) -> int:
        with self._lock:
            return self._get(self._mem[sid], addr)

    def set_present(self, sid: int, ticks: int) -> None:
        self.set_register(sid, ADDR_PRESENT, ticks)

    def set_register(self, sid: int, addr: tuple[int, int], value: int) -> None:
        """What a servo reports, e.g. its voltage or temperature (``feetech.ADDR_*``)."""
        with self._lock:
            self._put(self._mem[sid], addr, value)

    def silence(self, sid: int, silent: bool = True) -> None:
        with self._lock:
            (self._silent.add if silent else self._silent.discard)(sid)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> FakeServoBus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the bus ---------------------------------------------------------------------------
    def _serve(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                buf += os.read(self.master, 1024)
            except OSError:
                return
            while True:
                start = buf.find(b"\xff\xff")
                if start < 0 or len(buf) < start + 4:
                    break
                del buf[:start]
                length = buf[3]
                if len(buf) < 4 + length:
                    break
                packet, buf = bytes(buf[: 4 + length]), buf[4 + length :]
                if (~sum(packet[2:-1])) & 0xFF != packet[-1]:
                    continue  # corrupt: a real servo ignores it too
                self._handle(packet[2], packet[4], packet[5:-1])

    def _reply(self, sid: int, params: bytes = b"", error: int = 0) -> None:
        body = bytes([sid, len(params) + 2, error]) + params
        os.write(self.master, b"\xff\xff" + body + bytes([(~sum(body)) & 0xFF]))

    def _apply(self, m: bytearray, addr: int, data: bytes) -> None:
        m[addr : addr + len(data)] = data
        if addr <= ADDR_GOAL[0] < addr + len(data) and m[ADDR_TORQUE[0]]:
            goal = self._get(m, ADDR_GOAL)
            lo, hi = self._get(m, ADDR_MIN_LIMIT), self._get(m, ADDR_MAX_LIMIT)
            self._put(m, ADDR_PRESENT, min(max(goal, lo), hi))

    def _handle(self, sid: int, instr: int, params: bytes) -> None:
        with self._lock:
            self.packets.append((sid, instr))
            if instr == SYNC_WRITE:
                addr, n = params[0], params[1]
                for k in range(2, len(params), n + 1):
                    target = params[k]
                    if target in self._mem and target not in self._silent:
                        self._apply(self._mem[target], addr, params[k + 1 : k + 1 + n])
                return
            if sid not in self._mem or sid in self._silent:
                return
            m = self._mem[sid]
            if instr == PING:
                reply: tuple = ()
            elif instr == READ:
                addr, n = params[0], params[1]
                reply = (bytes(m[addr : addr + n]),)
            elif instr == WRITE:
                self._apply(m, params[0], params[1:])
                reply = ()
            else:
                return
        self._reply(sid, *reply)
