#!/usr/bin/env python3
"""Drives a command through a real pseudo-terminal, as a person at a terminal would, for the
attach tests. Usage: ptydrive.py STEPS_JSON COMMAND [ARGS...]

The command gets a new session whose controlling terminal is the pty's slave (stdin, stdout and
stderr). STEPS_JSON is a list of steps:
  ["size", ROWS, COLS]   set the window size on the master; the kernel sends SIGWINCH to the
                         terminal's foreground process group, as a terminal emulator's resize does
  ["send", TEXT]         type TEXT (JSON escapes: "\\r" is Enter, "\\u0003" is Ctrl-C)
  ["expect", TEXT]       wait until TEXT appears in the output after the previous match
  ["proc", CMDLINE]      wait until a process whose /proc/PID/cmdline is CMDLINE (NUL-separated,
                         as in /proc) exists, e.g. "sleep\\u0000100\\u0000"
  ["wait"]               wait for the command to exit
Prints one JSON line: the output, the command's exit status, the terminal's settings (stty -g of
the slave) before the command started and after it ended, and the failed step if one failed (a
step that does not complete within 30 s fails; the command is then killed)."""
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import fcntl
import time

steps = json.loads(sys.argv[1])
cmd = sys.argv[2:]
master, slave = os.openpty()
slave_name = os.ttyname(slave)


def stty_g():
    fd = os.open(slave_name, os.O_RDWR | os.O_NOCTTY)
    try:
        return subprocess.run(["stty", "-g"], stdin=fd, capture_output=True, text=True).stdout.strip()
    finally:
        os.close(fd)


def set_size(rows, cols):
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


set_size(24, 80)
before = stty_g()


def make_ctty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


child = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=make_ctty, close_fds=True)
os.close(slave)
out = b""
cursor = 0
status = None
failed = None


def pump(timeout):
    """Reads what the terminal has; False once the slave side is closed for good."""
    global out
    r, _, _ = select.select([master], [], [], timeout)
    if not r:
        return True
    try:
        d = os.read(master, 65536)
    except OSError:  # EIO: no process has the slave open any more
        return False
    if not d:
        return False
    out += d
    return True


def cmdlines():
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    yield f.read()
            except OSError:
                pass


for step in steps:
    end = time.time() + 30
    kind = step[0]
    ok = False
    if kind == "size":
        set_size(step[1], step[2])
        ok = True
    elif kind == "send":
        os.write(master, step[1].encode())
        ok = True
    elif kind == "expect":
        want = step[1].encode()
        while time.time() < end:
            i = out.find(want, cursor)
            if i >= 0:
                cursor = i + len(want)
                ok = True
                break
            if not pump(0.1) and out.find(want, cursor) < 0:
                break
    elif kind == "proc":
        want = step[1].encode()
        while time.time() < end:
            if any(c == want for c in cmdlines()):
                ok = True
                break
            pump(0.05)
    elif kind == "wait":
        while time.time() < end:
            status = child.poll()
            if status is not None:
                ok = True
                break
            pump(0.05)
    if not ok:
        failed = step
        break

if failed is not None:
    child.kill()
status = child.wait()
# What the command wrote last (after its exit, a closed slave reads as EIO).
while pump(0):
    if not select.select([master], [], [], 0)[0]:
        break
after = stty_g()
print(json.dumps({"out": out.decode(errors="replace"), "status": status, "before": before, "after": after, "failed": failed}))
