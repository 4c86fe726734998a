"""Small real workloads the daemon tests start inside their namespace (run as a script).

    python3 workloads.py nagle PORT     request/response with split writes (the Nagle/delayed-ACK trap)
    python3 workloads.py churn PORT     a client opening and closing connections (~50/s): TIME_WAIT
                                        accumulates on the client, which closes first

Each runs until killed. Loopback only, inside the namespace the test created.
"""

from __future__ import annotations

import socket
import sys
import threading
import time


def _server(port: int, handler) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(128)

    def accept_loop() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()


def _echo(conn: socket.socket) -> None:
    with conn:
        while True:
            data = b""
            while len(data) < 100:
                chunk = conn.recv(100 - len(data))
                if not chunk:
                    return
                data += chunk
            conn.sendall(b"r" * 100)


def _drain(conn: socket.socket) -> None:
    with conn:
        while conn.recv(4096):
            pass


def nagle(port: int) -> None:
    _server(port, _echo)

    def client() -> None:
        c = socket.create_connection(("127.0.0.1", port))
        while True:
            c.sendall(b"h" * 50)  # header ...
            c.sendall(b"b" * 50)  # ... then body: the second write waits for the delayed ACK
            got = 0
            while got < 100:
                got += len(c.recv(100))

    for _ in range(4):
        threading.Thread(target=client, daemon=True).start()


def churn(port: int) -> None:
    _server(port, _drain)
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"x" * 100)
            c.close()
        except OSError:
            pass  # e.g. no ephemeral port left: exactly the harm a bad port range does
        time.sleep(0.02)


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    {"nagle": nagle, "churn": churn}[kind](port)
    while True:
        time.sleep(3600)
