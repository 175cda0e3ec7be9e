"""The `gc` module as firmware sees it inside the VM: the built-in one, with mem_free() corrected.

agent.setup() replaces mem_free with a version that leaves out the port's split-heap headroom and
installs this module as sys.modules["gc"]. Everything else is the built-in gc.
"""

from gc import collect, disable, enable, isenabled, mem_alloc, mem_free, threshold  # noqa: F401
