"""Putting the agent on a board: the bundle (bundle.py), flashing and the console over mpremote
(flash.py), and the virtual board of CI (virtual_board.py). ``python -m host_tools.deploy``."""
