"""Holds a real ``kdtool`` process at a real mid-work point, so that a test's signal lands there on any machine.

Put this directory on ``PYTHONPATH`` with ``KDTOOL_TEST_PAUSE_TASK=NAME`` and ``KDTOOL_TEST_PAUSED=FILE``: the
first time task NAME reports progress with work done and work left (``kdtool.progress.count``, 0 < done < total),
the process creates FILE and waits there until a signal interrupts it. Without it, a Ctrl-C test races the command on busy
cores (the command can finish before the signal arrives); with it, the signal always finds the command mid-work.
"""

import os

if os.environ.get("KDTOOL_TEST_PAUSE_TASK"):
    import time

    import kdtool.progress as _progress

    _count, _task = _progress.count, os.environ["KDTOOL_TEST_PAUSE_TASK"]
    _held = []

    def count(progress, task, done, total=None, unit="it"):
        _count(progress, task, done, total, unit)
        if task == _task and total and 0 < done < total and not _held:
            _held.append(done)
            with open(os.environ["KDTOOL_TEST_PAUSED"], "w") as fh:
                fh.write(f"{done}/{total}\n")
            while True:  # a signal's exception (KeyboardInterrupt, the SIGTERM handler's) ends the wait
                time.sleep(0.05)

    _progress.count = count
