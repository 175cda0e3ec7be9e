"""Hypothesis strategies shared by the protocol and simulator tests (tests/ is on sys.path)."""

from hypothesis import strategies as st

from protocol import modbus

addresses = st.integers(0, 0xFFFF)
words = st.integers(0, 0xFFFF)
any_unit = st.integers(0, 255)


@st.composite
def modbus_requests(draw, units=any_unit):
    """(unit, function, request fields) of any valid Modbus request."""
    function = draw(st.sampled_from(modbus.FUNCTIONS))
    address = draw(addresses)
    if function in modbus.BIT_READS:
        fields = {"address": address, "count": draw(st.integers(1, modbus.MAX_READ_BITS))}
    elif function in modbus.REGISTER_READS:
        fields = {"address": address, "count": draw(st.integers(1, modbus.MAX_READ_REGISTERS))}
    elif function == modbus.WRITE_SINGLE_COIL:
        fields = {"address": address, "value": draw(st.booleans())}
    elif function == modbus.WRITE_SINGLE_REGISTER:
        fields = {"address": address, "value": draw(words)}
    elif function == modbus.WRITE_MULTIPLE_COILS:
        bits = draw(st.lists(st.booleans(), min_size=1, max_size=modbus.MAX_WRITE_BITS))
        fields = {"address": address, "bits": bits}
    else:
        registers = draw(st.lists(words, min_size=1, max_size=modbus.MAX_WRITE_REGISTERS))
        fields = {"address": address, "registers": registers}
    return draw(units), function, fields


@st.composite
def modbus_request_frames(draw):
    unit, function, fields = draw(modbus_requests())
    return modbus.build_request(unit, function, **fields)
