"""Stopping a child process this program started, by its PID: politely, then firmly."""

from __future__ import annotations

import signal
import subprocess


def stop_child(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """SIGTERM, wait up to `grace_seconds`, then SIGKILL; always reaps the child."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
