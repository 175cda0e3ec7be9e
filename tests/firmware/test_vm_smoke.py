"""Smoke tests of the firmware-test plumbing: stdlib basics and firmware imports behave the same on
CPython and in the MicroPython VM (where this module runs with a 96 KiB heap)."""

import binascii
import struct

VM_HEAP_KIB = 96


def test_struct_round_trip_little_and_big_endian():
    packed = struct.pack("<HhI", 0xBEEF, -2, 0x01020304)
    assert packed == b"\xef\xbe\xfe\xff\x04\x03\x02\x01"
    assert struct.unpack("<HhI", packed) == (0xBEEF, -2, 0x01020304)
    assert struct.pack(">f", 1.5) == b"\x3f\xc0\x00\x00"
    assert struct.calcsize("<BHI") == 7


def test_struct_pack_into_a_preallocated_buffer():
    buf = bytearray(6)
    struct.pack_into(">HI", buf, 0, 0x1234, 0xDEADBEEF)
    assert bytes(buf) == bytes.fromhex("1234deadbeef")
    assert struct.unpack_from(">I", buf, 2)[0] == 0xDEADBEEF


def test_binascii_hex_and_crc32():
    assert binascii.hexlify(b"\x00\x7f\xff") == b"007fff"
    assert binascii.unhexlify("00ff") == b"\x00\xff"
    assert binascii.crc32(b"123456789") == 0xCBF43926


def test_firmware_package_imports_from_the_firmware_tree():
    from relaypump import modbus

    assert modbus.crc16(b"123456789") == 0x4B37
