"""Run one notebook top to bottom with nbclient, then one extra cell, in a fresh process.

Usage: python tests/nb_runner.py NOTEBOOK CHECK_FILE. Prints the extra cell's output and the
notebook's mode line; exits 1 with the failing cell's error when a cell fails.
"""
import sys
from pathlib import Path
from queue import Empty
from time import monotonic

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def _polling(get_msg, step: float = 1.0):
    """get_msg that wakes every ``step`` seconds: a reply whose socket event was missed is still read
    within a second instead of at the end of the cell timeout."""
    async def get(timeout=None):
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            wait = step if deadline is None else max(0.0, min(step, deadline - monotonic()))
            try:
                return await get_msg(timeout=wait)
            except Empty:
                if deadline is not None and monotonic() >= deadline:
                    raise
    return get


class Client(NotebookClient):
    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = _polling(channel.get_msg)
        return kc


def main(path: str, check_file: str) -> int:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(Path(check_file).read_text() + "\nprint('WIDGET-CHECK-OK')"))
    client = Client(nb, timeout=300, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(Path(path).parent)}})
    try:
        client.execute()
    except CellExecutionError as e:
        print(f"CELL-ERROR: {e}")
        return 1
    for i in (1, len(nb.cells) - 1):
        print("".join(o.get("text", "") for o in nb.cells[i].outputs if o.get("output_type") == "stream"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
