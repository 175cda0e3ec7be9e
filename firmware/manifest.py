# Freezes the station agent into a board's MicroPython firmware (micropython-lib style manifest):
#
#   cd micropython/ports/esp32 && make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/relaypump/firmware/manifest.py
#   cd micropython/ports/rp2   && make BOARD=RPI_PICO      FROZEN_MANIFEST=/path/to/relaypump/firmware/manifest.py
#
# Frozen code runs from flash: its bytecode, strings and constant tuples take no heap (see `make
# bench`: vm_heap_data against vm_heap_boot). A frozen main.py runs at boot in place of any
# /main.py on the filesystem; the board then needs only /station.json there. Do not also copy the
# .mpy bundle (make flash) to a frozen board: the filesystem comes first on sys.path and would
# shadow the frozen package. Paths are relative to this file. README.md, "Firmware with the
# agent frozen in", has the whole procedure.
# ruff: noqa: F821 - include, metadata, package and module are given by the manifest's reader

include("$(PORT_DIR)/boards/manifest.py")  # type: ignore[name-defined]  # the port's own (asyncio ...)

metadata(  # type: ignore[name-defined]
    version="0.1.0",
    description="relaypump: edge agent for district-heating relay pump stations",
)

package("relaypump", opt=1)  # type: ignore[name-defined]
package("boards", files=("__init__.py", "rs485.py", "esp32.py", "rp2.py"), opt=1)  # type: ignore[name-defined]
module("main.py", opt=1)  # type: ignore[name-defined]
