#!/usr/bin/env python3
"""A console-socket receiver for tests (like runc's contrib/recvtty): listens on a unix socket,
receives the pty master sent with SCM_RIGHTS, copies everything the container writes to it to
stdout until the container closes it. Usage: recvtty.py SOCKET_PATH [INPUT]"""
import os
import socket
import sys

path = sys.argv[1]
data_in = sys.argv[2].encode() if len(sys.argv) > 2 else b""
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
print("ready", flush=True)
conn, _ = srv.accept()
msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
if not fds:
    sys.exit("recvtty: no descriptor received")
master = fds[0]
sys.stderr.write("recvtty: got pty %s\n" % msg.decode(errors="replace").strip("\0"))
if data_in:
    os.write(master, data_in)
out = sys.stdout.buffer
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:  # EIO once the slave side is closed
        break
    if not chunk:
        break
    out.write(chunk)
    out.flush()
