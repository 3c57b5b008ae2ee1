"""Launching the test scripts under ``torchrun``: free ports, a clean environment, timeouts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "trial_script.py")
LAUNCH_TIMEOUT = 120  # seconds per try; a healthy launch takes 10 to 25 on two busy cores


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


def torchrun_command(launcher_args: Sequence[str], script_args: Sequence[str], script: str = SCRIPT) -> list[str]:
    """``python -m torch.distributed.run LAUNCHER_ARGS SCRIPT SCRIPT_ARGS`` (by default ``trial_script.py``)."""
    return [sys.executable, "-m", "torch.distributed.run", *launcher_args, script, *script_args]


ABORTED = "Signal 6 (SIGABRT)"
"""In torchrun's report of a worker that died inside PyTorch's C++ runtime ("terminate called without an
active exception"). About one launch in thirty does so on the 2-core VM, not because of the library; a
launch like that, or one that hangs, is run once more. Any other failure, or the same one twice, stands."""


def _run_launchers(commands: list[list[str]], timeout: float) -> list[tuple[int, str, str]]:
    """Start every launcher at once and wait for all; each one's exit code, stdout and stderr.

    Raises:
        subprocess.TimeoutExpired: the launchers had not all finished after ``timeout`` seconds (they and
            their workers are ended first).
    """
    launchers = [
        subprocess.Popen(command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    results = []
    try:
        for process in launchers:
            stdout, stderr = process.communicate(timeout=timeout)
            results.append((process.returncode, stdout, stderr))
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


def _launch_twice_if_flaky(make_commands, timeout: float) -> list[tuple[int, str, str]]:
    """Run the launchers from ``make_commands()``; once more if the first try hung or a worker aborted."""
    try:
        results = _run_launchers(make_commands(), timeout)
    except subprocess.TimeoutExpired:
        warnings.warn(f"a torchrun launch hung for {timeout} s; it runs once more", stacklevel=3)
        return _run_launchers(make_commands(), timeout)
    aborted = [stdout + stderr for code, stdout, stderr in results if code != 0 and ABORTED in stdout + stderr]
    if aborted:  # the warning keeps the first try's output (faulthandler's stacks) for whoever looks into it
        tail = aborted[0][-4000:]
        warnings.warn(f"a torchrun worker aborted; the launch runs once more. Its output ends:\n{tail}", stacklevel=3)
        return _run_launchers(make_commands(), timeout)
    return results


def torchrun(
    nproc: int, script_args: Sequence[str], timeout: float = LAUNCH_TIMEOUT, script: str = SCRIPT
) -> subprocess.CompletedProcess:
    """Run ``script`` on ``nproc`` local processes and wait for the job to end (see :data:`ABORTED`)."""

    def commands() -> list[list[str]]:
        launcher = [f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1", f"--master-port={free_port()}"]
        return [torchrun_command(launcher, script_args, script)]

    ((code, stdout, stderr),) = _launch_twice_if_flaky(commands, timeout)
    return subprocess.CompletedProcess(["torchrun", *script_args], code, stdout, stderr)


def torchrun_nodes(nodes: int, script_args: Sequence[str], timeout: float = LAUNCH_TIMEOUT) -> list[tuple[int, str]]:
    """Run the script as ``nodes`` one-process torchrun "nodes" meeting at a c10d rendezvous on this machine.

    Returns:
        Each node's exit code and output (see :data:`ABORTED`).
    """

    def commands() -> list[list[str]]:
        endpoint = f"127.0.0.1:{free_port()}"
        return [
            torchrun_command(
                [
                    f"--nnodes={nodes}", "--nproc-per-node=1", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
                    f"--rdzv-endpoint={endpoint}", "--rdzv-id=torchbearer-test",
                ],
                script_args,
            )
            for node_rank in range(nodes)
        ]  # fmt: skip

    return [(code, stdout + stderr) for code, stdout, stderr in _launch_twice_if_flaky(commands, timeout)]


def torchrun_elastic(
    script: str, script_args: Sequence[str], max_restarts: int, timeout: float = LAUNCH_TIMEOUT
) -> subprocess.CompletedProcess:
    """Run ``script`` on 2 processes as ``docs/scaling-out.md`` recommends for restarts: ``--standalone`` (a c10d
    rendezvous on this machine) with ``--max-restarts``. Run once: a fault injected on purpose is not a flake."""
    launcher = ["--nproc-per-node=2", "--standalone", f"--max-restarts={max_restarts}"]
    ((code, stdout, stderr),) = _run_launchers([torchrun_command(launcher, script_args, script)], timeout)
    return subprocess.CompletedProcess(["torchrun", *script_args], code, stdout, stderr)
