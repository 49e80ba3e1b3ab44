"""convpress.core.cpu: keeping freed memory (glibc's mallopt), measured by page faults in child processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from convpress.core.cpu import KEEP_MEMORY_ENV, keep_freed_memory
from convpress.core.errors import ConfigError

# a child that sets up its malloc as argv[1] says, runs a chain of float32 activations of mixed sizes (4 to
# 36 MB; three alive at a time, like a transform's forward pass) twenty times and prints what the set-up
# returned and the minor page faults of the last ten chains. The kept heap grows over the first chains (the
# aligned blocks fragment it; measured: it stops growing after 2 to 5 chains, one CI run needed more than one)
# and then faults no page at all, so ten chains warm it up before the count
_CHILD = """
import resource, sys, torch
from convpress.core.cpu import keep_freed_memory
kept = None
if sys.argv[1] == "keep":
    kept = keep_freed_memory()
elif sys.argv[1] == "cli":  # the convpress program: main() with no argv, a quick command
    from convpress.cli.main import main
    sys.argv = ["convpress", "codec", "qualities"]
    assert main() == 0
def chain():
    alive = []
    for n in (9 << 20, 4 << 20, 2 << 20, 9 << 20, 1 << 20, 5 << 20, 9 << 20):
        alive = [*alive[-2:], torch.empty(n).fill_(1.0)]
for _ in range(10):
    chain()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    chain()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

PAGES = 10 * (39 << 20) * 4 // 4096  # the ten chains fill 39 Mi floats each: in 4 KiB pages
# Measured (8 runs or more of each): a warm kept heap faults no page; glibc's default faults 268k-282k pages and after
# the program has run (its dynamic mmap threshold raised by earlier frees) 184k-379k, of PAGES = 399k. So a
# heap that keeps memory faults fewer than a twentieth of PAGES, and one that does not more than a quarter.
KEPT_MAX, FREED_MIN = PAGES // 20, PAGES // 4
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux")


def _faults(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", KEEP_MEMORY_ENV)}
    run = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True, env={**clean, **env})
    out = run.stdout.split()
    return out[-2], int(out[-1])


def test_glibcs_default_faults_the_freed_blocks_in_again() -> None:
    _, faults = _faults("default")
    assert faults > FREED_MIN  # glibc unmaps each block above its mmap threshold on free: the fills fault again


def test_kept_memory_is_reused_without_page_faults() -> None:
    kept, faults = _faults("keep")
    if kept == "False":
        pytest.skip("not glibc: keep_freed_memory() reports that it changed nothing")
    assert kept == "True"
    assert faults < KEPT_MAX  # kept in the heap: reused (measured: no fault at all)


def test_the_convpress_program_keeps_freed_memory_unless_told_not_to() -> None:
    _, faults = _faults("cli")
    assert faults < KEPT_MAX
    _, faults = _faults("cli", **{KEEP_MEMORY_ENV: "0"})
    assert faults > FREED_MIN


@pytest.mark.parametrize("value", ["yes", "2", "off"])
def test_a_typo_in_the_switch_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEEP_MEMORY_ENV, value)  # refused before any mallopt: this process is unchanged
    with pytest.raises(ConfigError, match="CONVPRESS_KEEP_MEMORY must be 0"):
        keep_freed_memory()


def test_the_program_reports_a_typo_in_one_line() -> None:
    env = {**os.environ, KEEP_MEMORY_ENV: "yes"}
    run = subprocess.run([sys.executable, "-m", "convpress", "codec", "qualities"], capture_output=True, text=True, env=env)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and "CONVPRESS_KEEP_MEMORY must be 0" in run.stderr


@pytest.mark.parametrize(
    "env",
    [{"MALLOC_TRIM_THRESHOLD_": "131072"}, {"MALLOC_MMAP_THRESHOLD_": "65536"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}],
)
def test_the_users_own_malloc_settings_win(env: dict[str, str]) -> None:
    kept, faults = _faults("keep", **env)
    assert kept == "False"
    if "MALLOC_MMAP_THRESHOLD_" not in env:  # glibc's default behaviour, as asked
        assert faults > FREED_MIN


def test_a_process_that_keeps_freed_memory_asks_the_memory_check_for_a_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    from convpress.core import cpu, memory

    monkeypatch.setenv(memory.ENV_LIMIT, "1000M")
    memory.check_fits(1000 << 20, "a request", "a fix")  # fits exactly
    monkeypatch.setattr(cpu, "_kept", True)
    assert cpu.keeps_freed_memory()
    with pytest.raises(ConfigError, match=r"needs about 1\.2 GB .* only 1000\.0 MB is available"):
        memory.check_fits(1000 << 20, "a request", "a fix")
    memory.check_fits(int((1000 << 20) / memory.KEPT_MARGIN), "a request", "a fix")
