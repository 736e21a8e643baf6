"""The durable embedded backends keep every acknowledged write when their process is SIGKILLed.

They have no server to kill, so the writer runs in a child process that is killed mid-stream,
as a crashed application would be; the parent then reopens the files and looks for every write
the child reported as acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prism_testkit.backends.localfs import open_localfs
from prism_testkit.backends.sqlite import open_sqlite
from prism_testkit.driver import Driver

WRITER = {
    "sqlite": """
        from prism_testkit.backends.sqlite import open_sqlite
        async def open_(path): return await open_sqlite(path)
        async def write(driver, i):
            await driver.keyvalue().put(f"k{i}", str(i).encode())
            async with driver.transactions().transaction() as t:
                await t.put(f"t{i}", b"x")
                await t.append("log", Message(str(i).encode()))
    """,
    "localfs": """
        from prism_testkit.backends.localfs import open_localfs
        async def open_(path):
            driver = open_localfs(path)
            await driver.objects().create_bucket("b")
            return driver
        async def write(driver, i):
            await driver.objects().put("b", f"o{i}", str(i).encode() * 100)
    """,
}

LOOP = """
import asyncio, sys
from pathlib import Path
from prism_testkit import Message
{writer}
async def main():
    driver = await open_(Path(sys.argv[1]))
    i = 0
    while True:
        await write(driver, i)
        print(i, flush=True)  # acknowledged
        i += 1
asyncio.run(main())
"""


def run_writer_and_kill(backend: str, path: Path, at_least: int) -> int:
    source = LOOP.format(writer=textwrap.dedent(WRITER[backend]))
    last = -1
    # The context closes the stdout pipe and waits (an open pipe is a ResourceWarning, an error here).
    with subprocess.Popen([sys.executable, "-c", source, str(path)], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            last = int(line)
            if last >= at_least:
                break
        os.kill(child.pid, signal.SIGKILL)
    assert last >= at_least, "the writer died before acknowledging enough writes"
    return last


@pytest.mark.parametrize("backend", ["sqlite", "localfs"])
def test_acknowledged_writes_survive_sigkill(tmp_path: Path, backend: str) -> None:
    last = run_writer_and_kill(backend, tmp_path, at_least=150)

    async def verify() -> None:
        if backend == "sqlite":
            driver: Driver = await open_sqlite(tmp_path)
            for i in range(last + 1):
                assert await driver.keyvalue().get(f"k{i}") == str(i).encode(), i
                assert await driver.keyvalue().get(f"t{i}") == b"x", i
            records = await driver.log().read("log", 0, limit=100_000)
            assert [r.offset for r in records] == list(range(len(records)))
            assert [r.message.payload for r in records[: last + 1]] == [str(i).encode() for i in range(last + 1)]
        else:
            driver = open_localfs(tmp_path)
            for i in range(last + 1):
                assert await driver.objects().get("b", f"o{i}") == str(i).encode() * 100, i
        await driver.close()

    asyncio.run(verify())
