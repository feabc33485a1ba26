#!/usr/bin/env python3
"""docker-py (the Docker SDK for Python, from PyPI) against an Engine API service.

Run in docker-py's venv (test/harness/docker-clients.mjs dockerPyPython) with DOCKER_HOST set:
    python docker-py-ops.py '{"image": "lc-busybox", "registry": "127.0.0.1:PORT", "work": "DIR"}'
Each operation runs on its own and reports what it saw; one that raises reports
{"error": "..."} and the others still run. Prints one JSON object, the report, keyed by
operation, which test/integration/api-docker-py.test.ts asserts on.
"""
import io
import json
import socket
import sys
import tarfile
import threading
import time
import traceback

import docker
from docker.utils.socket import frames_iter

cfg = json.loads(sys.argv[1])
IMAGE = cfg["image"]
REGISTRY = cfg["registry"]
report = {}
client = docker.from_env(version="auto", timeout=120)
api = client.api


def op(name):
    def wrap(fn):
        try:
            report[name] = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, the others run
            report[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-1500:]}
        return fn

    return wrap


def remove(name):
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass


@op("ping")
def _():
    v = client.version()
    return {"ping": client.ping(), "ApiVersion": v.get("ApiVersion"), "negotiated": api.api_version, "Os": v.get("Os")}


@op("run")
def _():
    out = client.containers.run(IMAGE, ["sh", "-c", "echo hello-py; echo to-stderr >&2"], remove=True)
    both = client.containers.run(IMAGE, ["sh", "-c", "echo o; echo e >&2"], stdout=True, stderr=True, remove=True)
    try:
        client.containers.run(IMAGE, ["sh", "-c", "echo failing >&2; exit 3"], remove=True)
        failed = None
    except docker.errors.ContainerError as e:
        failed = {"exit_status": e.exit_status, "stderr": (e.stderr or b"").decode()}
    left = [c.name for c in client.containers.list(all=True)]
    return {"stdout": out.decode(), "both": sorted(both.decode().split()), "failed": failed, "left": left}


@op("detach")
def _():
    c = client.containers.run(IMAGE, ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 1; done'], detach=True, name="py-detach", labels={"burrow.test": "py"})
    c.reload()
    listed = [x.name for x in client.containers.list(filters={"label": "burrow.test=py"})]
    attrs = {"status": c.status, "name": c.name, "image": c.attrs["Config"]["Image"], "labels": c.attrs["Config"]["Labels"], "listed": listed}
    c.stop(timeout=10)
    c.reload()
    attrs["after_stop"] = c.status
    attrs["exit_code"] = c.attrs["State"]["ExitCode"]
    c.remove()
    return attrs


@op("logs_stream")
def _():
    c = client.containers.run(IMAGE, ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 1; done"], detach=True, name="py-logs")
    lines = []
    for chunk in c.logs(stream=True, follow=True):
        lines.append(chunk.decode())
    status = c.wait()
    c.remove()
    return {"text": "".join(lines), "wait": status}


@op("attach_socket")
def _():
    c = client.containers.create(IMAGE, ["sh", "-c", "cat; echo end-of-input"], stdin_open=True, name="py-attach")
    s = c.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    c.start()
    sock = s._sock
    sock.sendall(b"through the attach socket\n")
    sock.shutdown(socket.SHUT_WR)
    out = {1: b"", 2: b""}
    for stream, data in frames_iter(s, tty=False):
        out[stream] = out.get(stream, b"") + data
    s.close()
    status = c.wait(timeout=60)
    c.remove()
    return {"stdout": out[1].decode(), "wait": status}


@op("exec_run")
def _():
    c = client.containers.run(IMAGE, ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 1; done'], detach=True, name="py-exec")
    code, out = c.exec_run(["sh", "-c", "echo exec-out; echo exec-err >&2; exit 4"], demux=True)
    env_code, env_out = c.exec_run(["sh", "-c", "echo $FOO; pwd"], environment={"FOO": "bar"}, workdir="/tmp")
    c.remove(force=True)
    return {"code": code, "stdout": (out[0] or b"").decode(), "stderr": (out[1] or b"").decode(), "env": env_out.decode(), "env_code": env_code}


@op("archive")
def _():
    c = client.containers.run(IMAGE, ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 1; done'], detach=True, name="py-archive")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"put by docker-py\n"
        info = tarfile.TarInfo("py/put.txt")
        info.size = len(data)
        info.mode = 0o640
        t.addfile(info, io.BytesIO(data))
    put = c.put_archive("/tmp", buf.getvalue())
    _, cat = c.exec_run(["cat", "/tmp/py/put.txt"])
    c.exec_run(["sh", "-c", "mkdir -p /out && echo got-by-docker-py > /out/get.txt"])
    bits, stat = c.get_archive("/out/get.txt")
    got = io.BytesIO(b"".join(bits))
    with tarfile.open(fileobj=got) as t:
        member = t.getmembers()[0]
        content = t.extractfile(member).read().decode()
    c.remove(force=True)
    return {"put": put, "cat": cat.decode(), "stat": {"name": stat.get("name"), "size": stat.get("size")}, "member": member.name, "content": content}


@op("images")
def _():
    ref = f"{REGISTRY}/api/py"
    img = client.images.get(IMAGE)
    img.tag(ref, "v1")
    push = [json.dumps(x) for x in client.images.push(ref, tag="v1", stream=True, decode=True)]
    push_errors = [p for p in push if '"error"' in p]
    client.images.remove(f"{ref}:v1")
    try:
        client.images.get(f"{ref}:v1")
        gone = False
    except docker.errors.ImageNotFound:
        gone = True
    pulled = client.images.pull(ref, tag="v1")
    tags = pulled.tags
    saved = b"".join(client.images.get(f"{ref}:v1").save(named=True))
    client.images.remove(f"{ref}:v1")
    loaded = client.images.load(saved)
    loaded_tags = [t for i in loaded for t in i.tags]
    ran = client.containers.run(f"{ref}:v1", ["echo", "from-loaded"], remove=True).decode()
    client.images.remove(f"{ref}:v1")
    listed = [t for i in client.images.list() for t in i.tags]
    return {"push_errors": push_errors, "pushed": any("digest" in p for p in push), "gone_after_remove": gone, "pulled_tags": tags, "saved_bytes": len(saved), "loaded_tags": loaded_tags, "ran": ran, "listed_after": listed}


@op("events")
def _():
    since = time.time()
    seen = []
    done = threading.Event()
    stream = client.events(decode=True, since=since, filters={"container": "py-events"})

    def reader():
        for ev in stream:
            seen.append(f"{ev.get('Type')} {ev.get('Action')} {ev.get('Actor', {}).get('Attributes', {}).get('exitCode', '')}".strip())
            if ev.get("Action") == "die":
                done.set()
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    c = client.containers.run(IMAGE, ["sh", "-c", "sleep 1; exit 6"], detach=True, name="py-events")
    done.wait(60)
    stream.close()
    c.wait(timeout=60)
    until = time.time() + 1
    bounded = [f"{e.get('Type')} {e.get('Action')}" for e in client.events(decode=True, since=since, until=until, filters={"container": "py-events"})]
    c.remove()
    return {"streamed": seen, "bounded": bounded}


@op("df")
def _():
    d = client.df()
    return {"keys": sorted(d.keys()), "images": len(d.get("Images") or []), "LayersSize": d.get("LayersSize")}


@op("volumes")
def _():
    v = client.volumes.create(name="py-vol", labels={"burrow.test": "py"})
    names = [x.name for x in client.volumes.list()]
    got = client.volumes.get("py-vol")
    out = client.containers.run(IMAGE, ["sh", "-c", "echo in-volume > /v/f && cat /v/f"], volumes={"py-vol": {"bind": "/v", "mode": "rw"}}, remove=True).decode()
    again = client.containers.run(IMAGE, ["cat", "/v/f"], volumes={"py-vol": {"bind": "/v", "mode": "ro"}}, remove=True).decode()
    attrs = {"name": got.name, "driver": got.attrs.get("Driver"), "labels": got.attrs.get("Labels"), "mountpoint": bool(got.attrs.get("Mountpoint"))}
    v.remove()
    after = [x.name for x in client.volumes.list()]
    return {"listed": "py-vol" in names, "attrs": attrs, "out": out, "again": again, "after": "py-vol" in after}


for leftover in ["py-detach", "py-logs", "py-attach", "py-exec", "py-archive", "py-events"]:
    try:
        remove(leftover)
    except Exception:  # noqa: BLE001 - a service that cannot answer was already reported
        pass
print(json.dumps(report))
