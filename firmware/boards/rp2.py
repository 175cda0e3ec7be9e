"""Raspberry Pi Pico / Pico W (RP2040, RP2350): the station's RS-485 transceiver on UART0.

Pins (GPIO numbers):
    UART0 TX  GP0 -> transceiver DI      (Pico pin 1)
    UART0 RX  GP1 <- transceiver RO      (Pico pin 2)
    DE        GP2 -> transceiver DE and /RE, high while sending (Pico pin 4)
The REPL / log console is USB CDC. The hardware watchdog allows at most 8388 ms (8 s used).
"""

from boards.rs485 import Rs485Board


class Board(Rs485Board):
    NAME = "rp2"
    UART_ID = 0
    TX = 0
    RX = 1
    DE = 2
