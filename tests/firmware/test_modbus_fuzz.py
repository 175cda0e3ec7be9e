"""A bounded fuzz of the Modbus master codec that runs inside the MicroPython VM too.

Every round ends in an exception object; this VM reclaims garbage only between tests, so the module
asks for a bigger heap than a board would need (a board collects mid-run).
"""

from relaypump import modbus as mb

VM_HEAP_KIB = 192


def test_random_bytes_only_ever_give_typed_errors():
    # A bounded fuzz that also runs inside the VM: the ZX81 LCG keeps every value a small int
    # (no big-int garbage, which this VM cannot collect mid-test), reproducible everywhere.
    seed = 12345
    m = mb.RtuMaster(timeout_ms=10)
    buf = bytearray(64)
    outcomes = [0, 0]
    for round_ in range(300):
        unit = 1 + round_ % 3
        if round_ & 1:
            m.read_holding_registers(unit, 0, 1 + round_ % 4)
        else:
            m.write_register(unit, 7, round_)
        m.poll(0)
        for k in range(len(buf)):
            seed = (seed * 75 + 74) % 65537
            buf[k] = seed & 0xFF
        buf[0] = unit  # give the decoder frames that start plausibly
        m.receive(buf[: 4 + round_ % 60])
        try:
            if m.poll(10) == mb.DONE:
                m.values()
                outcomes[0] += 1
        except mb.ModbusError:
            outcomes[1] += 1
    assert outcomes[1] > 250
