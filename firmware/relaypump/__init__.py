"""The relay pump station agent (MicroPython): field bus, control, protection, uplink."""
