"""Non-normative: running decoder commands that may misbehave (spec clause 11.5.3).

A decoder under test is someone else's program. Whatever it does, one vector costs bounded time
and bounded memory of the checker:

* it runs without a shell, in a session (process group) of its own, with stdin closed;
* its standard output and error are read through pipes, by this process, with a deadline: the
  first CAPTURE_HEAD bytes and the last CAPTURE_TAIL bytes of each are kept, the rest is counted
  and dropped (512 MB of output costs 128 KiB);
* at its timeout its process group is killed (SIGKILL); once it has exited, whatever it left in
  its group is killed as well, and the pipes are read for at most DRAIN_SECONDS more, so that a
  process that escaped into a session of its own and holds the pipes open cannot hold the run;
* every process the checker starts carries TAG_VAR=<run>-<n> in its environment; on Linux the
  processes that still carry the tag of a finished vector (or, on an interrupt, of the run) are
  found in /proc and killed, wherever they moved.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

CAPTURE_HEAD = 4 * 1024
CAPTURE_TAIL = 64 * 1024
DRAIN_SECONDS = 2.0
TAG_VAR = "REFDEC_CHECK_TAG"

# Process groups started and not yet ended, for kill_all() (an interrupt, from any thread).
_LIVE: set = set()
_LOCK = threading.Lock()


class Capture:
    """The head and the tail of a byte stream of any length, in bounded memory."""

    def __init__(self, head: int = CAPTURE_HEAD, tail: int = CAPTURE_TAIL):
        self.head_limit, self.tail_limit = head, tail
        self.head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if len(self.head) < self.head_limit:
            self.head += data[: self.head_limit - len(self.head)]
        self._tail += data
        if len(self._tail) > 2 * self.tail_limit:
            del self._tail[: len(self._tail) - self.tail_limit]

    @property
    def tail(self) -> bytes:
        return bytes(self._tail[-self.tail_limit:])

    def text_tail(self, chars: int) -> str:
        return self.tail.decode("utf-8", errors="replace")[-chars:]

    def first_line(self) -> str:
        """The first non-empty line (of the head), without its line end."""
        for line in bytes(self.head).decode("utf-8", errors="replace").splitlines():
            if line.strip():
                return line.strip()
        return ""


@dataclass
class Completed:
    """Non-normative: how one command ended."""

    returncode: int | None            # None: ended at its timeout
    seconds: float
    stdout: Capture = field(default_factory=Capture)
    stderr: Capture = field(default_factory=Capture)
    timed_out: bool = False
    leftovers: int = 0                # processes it left behind that had to be killed
    held_pipes: bool = False          # a leftover kept its output open after it exited

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _killpg(pid: int) -> None:
    if os.name != "posix":
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _tagged(prefix: str, exact: bool):
    """Pids of this user's processes whose environment holds TAG_VAR=<prefix> (exact) or
    TAG_VAR=<prefix>... (not exact). Linux only; elsewhere none."""
    if not os.path.isdir("/proc/self"):
        return []
    want = f"{TAG_VAR}={prefix}".encode()
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read(1 << 20)
        except OSError:
            continue
        for item in env.split(b"\0"):
            if item == want if exact else item.startswith(want):
                found.append(int(entry))
                break
    return found


def kill_tagged(prefix: str, exact: bool = True) -> int:
    """Kill every process tagged `prefix` (see the module docstring); returns how many."""
    n = 0
    for _ in range(3):  # a process may fork while we look
        pids = _tagged(prefix, exact)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                n += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)
    return n


def kill_all(run_tag: str | None = None) -> None:
    """End every process group started through run_command and not yet ended, and every
    process carrying the run's tag (an interrupt)."""
    with _LOCK:
        groups = list(_LIVE)
    for pid in groups:
        _killpg(pid)
    if run_tag:
        kill_tagged(run_tag + "-", exact=False)


def run_command(argv: list, timeout: float | None, env: dict | None = None, tag: str | None = None,
                cwd=None) -> Completed:
    """Run one command as the module docstring says; OSError if it cannot be started."""
    env = dict(os.environ if env is None else env)
    if tag:
        env[TAG_VAR] = tag
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, start_new_session=(os.name == "posix"), close_fds=True)
    with _LOCK:
        _LIVE.add(proc.pid)
    res = Completed(None, 0.0)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, res.stdout)
    sel.register(proc.stderr, selectors.EVENT_READ, res.stderr)
    deadline = start + timeout if timeout else None
    exited_at = None
    try:
        while True:
            now = time.monotonic()
            rc = proc.poll()
            if rc is not None:
                if exited_at is None:
                    exited_at = now
                    _killpg(proc.pid)              # children it left in its group
                if not sel.get_map():
                    break
                if now >= exited_at + DRAIN_SECONDS:
                    res.held_pipes = True
                    break
            elif deadline is not None and now >= deadline:
                res.timed_out = True
                _killpg(proc.pid)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                    break
                continue
            waits = [0.25]
            if rc is None and deadline is not None:
                waits.append(deadline - now)
            if exited_at is not None:
                waits.append(exited_at + DRAIN_SECONDS - now)
            wait = max(0.0, min(waits))
            if sel.get_map():
                for key, _ in sel.select(wait):
                    try:
                        data = os.read(key.fd, 65536)
                    except OSError:
                        data = b""
                    if data:
                        key.data.feed(data)
                    else:
                        sel.unregister(key.fileobj)
            else:
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    pass
    finally:
        sel.close()
        if proc.poll() is None:
            _killpg(proc.pid)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        for pipe in (proc.stdout, proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        with _LOCK:
            _LIVE.discard(proc.pid)
        if tag:
            res.leftovers = kill_tagged(tag)
    res.returncode = None if res.timed_out else proc.returncode
    res.seconds = time.monotonic() - start
    return res
