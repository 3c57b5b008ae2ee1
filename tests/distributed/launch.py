"""Launching ``trial_script.py`` under ``torchrun`` from the tests: free ports, a clean environment, timeouts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trial_script.py")
LAUNCH_TIMEOUT = 180  # seconds; a healthy launch takes 10 to 25 on two busy cores


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment() -> dict[str, str]:
    """This process's environment without any torchrun variables (a test run may itself be distributed)."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")
    environment = {name: value for name, value in os.environ.items() if name not in names}
    environment["OMP_NUM_THREADS"] = "1"
    return environment


def torchrun_command(launcher_args: Sequence[str], script_args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run LAUNCHER_ARGS trial_script.py SCRIPT_ARGS``."""
    return [sys.executable, "-m", "torch.distributed.run", *launcher_args, SCRIPT, *script_args]


def torchrun(nproc: int, script_args: Sequence[str], timeout: float = LAUNCH_TIMEOUT) -> subprocess.CompletedProcess:
    """Run the script on ``nproc`` local processes and wait for the job to end."""
    launcher = [f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1", f"--master-port={free_port()}"]
    return subprocess.run(
        torchrun_command(launcher, script_args), env=_environment(), capture_output=True, text=True, timeout=timeout
    )


def torchrun_nodes(nodes: int, script_args: Sequence[str], timeout: float = LAUNCH_TIMEOUT) -> list[tuple[int, str]]:
    """Run the script as ``nodes`` one-process torchrun "nodes" meeting at a c10d rendezvous on this machine.

    Returns:
        Each node's exit code and output.
    """
    endpoint = f"127.0.0.1:{free_port()}"
    launchers = []
    for node_rank in range(nodes):
        launcher = [
            f"--nnodes={nodes}", "--nproc-per-node=1", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", "--rdzv-id=torchbearer-test",
        ]  # fmt: skip
        command = torchrun_command(launcher, script_args)
        launchers.append(
            subprocess.Popen(command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    results = []
    try:
        for process in launchers:
            output, _ = process.communicate(timeout=timeout)
            results.append((process.returncode, output))
    finally:
        for process in launchers:
            if process.poll() is None:
                process.terminate()  # on SIGTERM torchrun's agent ends its workers too (SIGKILL would orphan them)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    return results
