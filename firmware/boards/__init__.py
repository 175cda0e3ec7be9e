"""Board support: the hardware under the runtime (relaypump/runtime.py), one thin module per target.

- rs485.py    ``Rs485Board``: what ESP32 and RP2 share (machine.UART, the DE pin, machine.WDT)
- esp32.py    ESP32 DevKitC wiring            (main.py picks it when sys.platform == "esp32")
- rp2.py      Raspberry Pi Pico wiring        ("rp2")
- virtual.py  the virtual board of CI: the runtime in the MicroPython WebAssembly VM, its UART a
              pty on the host (host_tools/deploy/virtual_board.py)   ("webassembly")

This file imports nothing, so a board module loads only what its target has (the VM has no
``machine``). The interface every board offers is documented at the top of relaypump/runtime.py;
main.py also calls ``board.run(runtime)``, which on hardware is ``runtime.run_forever()``.
"""
