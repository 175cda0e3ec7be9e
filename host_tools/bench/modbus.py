"""Modbus RTU master codec throughput: a transaction is one request built + one response decoded.

The same loop runs on CPython (`modbus_master_codec`) and inside the MicroPython VM
(`modbus_master_codec_vm`, in calls of 100 transactions: the VM reclaims garbage only between calls,
as a board's main loop would between ticks; the call overhead is included and small).
"""

import time

# Poll cycle of one drive: read 6 registers (status + actuals), write 2 (control word + reference).
LOOP = """
from relaypump import modbus as mb

def _frame(body):
    crc = mb.crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))

READ_RESPONSE = _frame(bytes([3, 3, 12]) + bytes(range(12)))
WRITE_RESPONSE = _frame(bytes([3, 16, 0, 0, 0, 2]))
MASTER = mb.RtuMaster()

def transactions(n):
    m = MASTER
    for k in range(n // 2):
        m.read_holding_registers(3, 0, 6)
        m.poll(k)
        m.receive(READ_RESPONSE)
        if m.poll(k) != mb.DONE:
            raise AssertionError('read not decoded')
        m.register(5)
        m.write_registers(3, 0, (0x047F, k & 0x3FFF))
        m.poll(k)
        m.receive(WRITE_RESPONSE)
        if m.poll(k) != mb.DONE:
            raise AssertionError('write not decoded')
    return n
"""


def _cpython_rate(n: int) -> float:
    scope: dict = {}
    exec(LOOP, scope)
    scope["transactions"](1000)
    start = time.perf_counter()
    scope["transactions"](n)
    return n / (time.perf_counter() - start)


def _vm_rate(n: int) -> float:
    from host_tools.mpvm import MicroPythonVM

    with MicroPythonVM(heap_kib=128) as vm:
        vm.exec(LOOP)
        vm.eval("transactions(100)")
        start = time.perf_counter()
        for _ in range(n // 100):
            vm.eval("transactions(100)")
        return n / (time.perf_counter() - start)


def run(report) -> None:
    report("modbus_master_codec", _cpython_rate(100_000), "transactions/s")
    report("modbus_master_codec_vm", _vm_rate(20_000), "transactions/s")
