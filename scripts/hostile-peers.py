#!/usr/bin/env python3
"""Measures what hostile peers cost an allocate-http binary (BENCHMARKS.md, "Hostile peers
(issue 14, part 1)").

Starts the binary in memory on a free loopback port, then:
1. slowloris: opens CONNS connections that send a request head one header line every
   2 seconds and never finish it; after HOLD seconds, counts those the server still keeps;
2. unread answers: registers RESOURCES static resources, then opens UNREAD connections that
   each ask for GET /inventory/ PIPELINED times in a row and never read (the kernel's send
   buffer, up to 4 MiB on loopback, takes the first answers; the server holds the next);
   prints the server's open file descriptors and resident memory, and the kernel's TCP
   buffer memory (all sockets of the machine), before, 5 s after, and HOLD seconds after.

Usage: scripts/hostile-peers.py BINARY [--conns 500] [--hold 30] [--resources 3000]
       [--unread 50] [--pipelined 8] [-- FLAGS...]
Only the standard library; the agent's registration is sent over a minimal websocket.
"""

import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import uuid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_mem_mib():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") >> 20
    return 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_healthy(port, deadline=20.0):
    start = time.time()
    while time.time() - start < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("the server did not start")


def register(port, count):
    """Registers `count` static resources over a websocket; returns the open socket."""
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET /agent/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    resources = [
        {"labels": ["nvidia", f"rack-{i % 50}"], "cpu_count": 8, "memory_gb": 32,
         "gpu": [{"label": "GeForce RTX 2080", "memory_gb": 8}], "type": "VM",
         "connection": {"host": f"10.0.{i // 250}.{i % 250}", "username": "lab", "password": "pw"}}
        for i in range(count)
    ]
    payload = json.dumps({"agent_id": str(uuid.uuid4()), "resources": resources}).encode()
    mask = os.urandom(4)
    header = b"\x81" + (bytes([0x80 | 127]) + struct.pack(">Q", len(payload)))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(header + mask + masked)
    s.settimeout(30)
    reply = s.recv(4096)
    if b'"inventory_ids"' not in reply:
        sys.exit(f"the registration was refused: {reply[:200]!r}")
    return s


def slowloris(port, conns, hold):
    opened = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        opened.append(s)
    start = time.time()
    while time.time() - start < hold:
        time.sleep(2)
        for s in opened:
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                pass
    kept = 0
    for s in opened:
        try:
            kept += s.recv(1) != b""
        except BlockingIOError:
            kept += 1
        except OSError:
            pass
        s.close()
    return kept


def unread(pid, port, conns, pipelined, hold):
    def looks():
        return f"{fds(pid)} fds, RSS {rss_kib(pid) >> 10} MiB, kernel TCP {tcp_mem_mib()} MiB"

    seen = [looks()]
    opened = []
    for _ in range(conns):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /inventory/ HTTP/1.1\r\nHost: x\r\n\r\n" * pipelined)
        opened.append(s)
    time.sleep(5)
    seen.append(looks())
    time.sleep(max(hold - 5, 0))
    seen.append(looks())
    for s in opened:
        s.close()
    return seen


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--conns", type=int, default=500)
    parser.add_argument("--hold", type=int, default=30)
    parser.add_argument("--resources", type=int, default=3000)
    parser.add_argument("--unread", type=int, default=50)
    parser.add_argument("--pipelined", type=int, default=8)
    parser.add_argument("flags", nargs="*")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [args.binary, "--listen", f"127.0.0.1:{port}", "--in-memory", "--log-level", "warn",
         *args.flags],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(port)
        kept = slowloris(port, args.conns, args.hold)
        print(f"slowloris: {kept} of {args.conns} trickling connections still open after {args.hold} s")
        agent = register(port, args.resources)
        before, after_5, after_hold = unread(
            server.pid, port, args.unread, args.pipelined, args.hold)
        print(f"unread answers ({args.unread} connections, {args.pipelined} GET /inventory/ "
              f"each, {args.resources} resources): before: {before}; 5 s after: {after_5}; "
              f"{args.hold} s after: {after_hold}")
        agent.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
