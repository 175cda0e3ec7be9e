"""Config as text, the way a board reads /station.json: duplicated keys are refused (JSON would keep
the last one silently) and a value of the wrong type is described in words."""

from relaypump.config import ConfigError, load_config
from support import station_json

VM_HEAP_KIB = 192  # each load_config() parses the whole file

TEXT = station_json()


def refused(text, expected):
    try:
        load_config(text)
    except ConfigError as err:
        assert str(err) == expected, (expected, str(err))
        return
    raise AssertionError("accepted: " + expected)


def test_the_shipped_text_loads():
    assert load_config(TEXT)["bus"]["baud"] == 19200


def test_a_duplicated_key_is_refused_with_its_path():
    tail = ": duplicate key (JSON would keep only the last)"
    refused(TEXT.replace('"baud": 19200,', '"baud": 19200, "baud": 9600,'), "bus.baud" + tail)
    refused(
        TEXT.replace('"unit": 2, "profile"', '"unit": 2, "unit": 4, "profile"'),
        "pumps[1].unit" + tail,
    )
    refused(
        TEXT.replace('"register": 2,', '"register": 2, "register": 2,'),
        "io.channels.remote_dp_kpa.register" + tail,
    )
    refused(TEXT.replace('"pid":', '"speed": {}, "pid":'), "speed" + tail)


def test_keys_inside_strings_and_escapes_are_not_keys():
    tricky = TEXT.replace(
        '"name": "Jia village relay pump station"', '"name": "a \\" \\"name\\": {[,\\\\ b"'
    )
    assert load_config(tricky)["station"]["name"] == 'a " "name": {[,\\ b'


def test_equal_keys_in_different_objects_are_fine():
    config = load_config(TEXT)  # "unit" appears once per pump and in io
    assert [p["unit"] for p in config["pumps"]] == [1, 2, 3]


def test_wrong_types_are_described_in_words():
    refused(
        TEXT.replace('"retries": 1', '"retries": 1.0'),
        "bus.retries: must be a whole number (an integer), not 1.0 (a decimal number)",
    )
    refused(
        TEXT.replace('"baud": 19200', '"baud": "19200"'),
        "bus.baud: must be one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, "
        'not the text "19200" (numbers and true/false are written without quotes)',
    )
    refused(
        TEXT.replace('"turnaround_ms": 5', '"turnaround_ms": "5"'),
        'bus.turnaround_ms: must be a whole number (an integer), not the text "5" '
        "(numbers and true/false are written without quotes)",
    )
