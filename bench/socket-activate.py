#!/usr/bin/env python3
"""Socket activation as a systemd socket unit does it, for bench/api.bench.mjs.

    socket-activate.py SOCKET PIDFILE COMMAND...

Listens on the unix SOCKET, writes its pid to PIDFILE, waits until the first connection is
pending, then becomes COMMAND (exec: same pid) with the listening socket as fd 3, LISTEN_FDS=1
and LISTEN_PID. (systemd-socket-activate starts its command at once, not on the first
connection, so it cannot show a service's start-up on the first request.)
"""
import os
import select
import socket
import sys

path, pidfile, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(128)
with open(pidfile, "w") as f:
    f.write(str(os.getpid()))
select.select([s], [], [])
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ.pop("LISTEN_FDNAMES", None)
os.execvp(argv[0], argv)
