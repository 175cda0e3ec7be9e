"""ESP32 (ESP32-WROOM-32 / -WROVER DevKitC): the station's RS-485 transceiver on UART2.

Pins (GPIO numbers; free on a DevKitC, not strapping pins, not the flash/PSRAM pins):
    UART2 TX  GPIO17 -> transceiver DI
    UART2 RX  GPIO16 <- transceiver RO
    DE        GPIO4  -> transceiver DE and /RE (high while sending)
UART0 stays the REPL / log console on USB. Change the class attributes for another wiring.
"""

from boards.rs485 import Rs485Board


class Board(Rs485Board):
    NAME = "esp32"
    UART_ID = 2
    TX = 17
    RX = 16
    DE = 4
