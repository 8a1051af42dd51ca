"""Runs a command on a pseudo-terminal and drives it like a person at the keyboard.

Usage: python3 pty-session.py STEPS -- COMMAND [ARG...]

STEPS is a JSON list; each step is one of
  ["expect", REGEX, SECONDS]  wait until REGEX matches output after the previous match
  ["send", TEXT]              type TEXT ("hi\\r" for a line, "\\u0003" Ctrl-C, "\\u0004" Ctrl-D)
  ["exit", SECONDS]           wait until the command ends

Prints one JSON object: {"failed": index of the step that failed or null,
"why": what went wrong, "status": the exit status or null, "output": all output}.
Waits only for output or for the deadline of the step at hand: no fixed sleeps.
"""
import json
import os
import pty
import re
import select
import signal
import sys
import time


def main():
    sep = sys.argv.index("--")
    steps = json.loads(sys.argv[1])
    command = sys.argv[sep + 1 :]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)

    output = b""
    matched = 0  # output before this offset was matched already
    ended = False

    def read_until(deadline):
        """Reads what arrives before `deadline`; False when nothing more will come."""
        nonlocal output, ended
        wait = deadline - time.monotonic()
        if wait <= 0 or ended:
            return False
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return False
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side of the terminal closed
            chunk = b""
        if not chunk:
            ended = True
            return False
        output += chunk
        return True

    result = {"failed": None, "why": None, "status": None}
    for index, step in enumerate(steps):
        kind = step[0]
        if kind == "send":
            os.write(fd, step[1].encode())
        elif kind == "expect":
            pattern = re.compile(step[1].encode())
            deadline = time.monotonic() + step[2]
            while True:
                m = pattern.search(output, matched)
                if m:
                    matched = m.end()
                    break
                if not read_until(deadline):
                    why = "the command ended" if ended else f"nothing matched within {step[2]} s"
                    result.update(failed=index, why=f"{why}, waiting for {step[1]!r}")
                    break
            if result["failed"] is not None:
                break
        elif kind == "exit":
            deadline = time.monotonic() + step[1]
            while not ended and time.monotonic() < deadline:
                read_until(deadline)
            if not ended:
                result.update(failed=index, why=f"still running after {step[1]} s")
                break
        else:
            raise ValueError(f"unknown step {step!r}")

    if result["failed"] is not None:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    result["status"] = os.waitstatus_to_exitcode(status)
    result["output"] = output.decode("utf-8", "replace")
    print(json.dumps(result))


main()
