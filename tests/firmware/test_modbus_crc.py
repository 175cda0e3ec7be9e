"""The CRC-16/MODBUS tables of modbus.py (literals) against the polynomial, byte by byte.

Runs on CPython and inside the MicroPython VM."""

from relaypump import modbus


def _table_entry(i):
    crc = i
    for _ in range(8):
        crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_crc_tables_are_the_polynomials():
    assert len(modbus._CRC_LOW) == 256
    assert len(modbus._CRC_HIGH) == 256
    for i in range(256):
        crc = _table_entry(i)
        assert modbus._CRC_LOW[i] == crc & 0xFF, i
        assert modbus._CRC_HIGH[i] == crc >> 8, i


def test_crc16_of_a_known_frame():
    # read holding registers, unit 1, address 0, count 10: CRC C5 CD (low byte first on the wire)
    assert modbus.crc16(b"\x01\x03\x00\x00\x00\x0a") == 0xCDC5
