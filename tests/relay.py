"""A device's network path to the broker, in the test's hands: a TCP relay it can freeze, cut, or (in a subclass)
make lose what passes through."""

from __future__ import annotations

import socket
import threading


class Relay:
    """Relays both ways. `frozen`: still connected, nothing gets through (a broker that no longer answers);
    `cut()`: both sides closed without a word, and no one let in again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self.frozen = False
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def admit(self) -> bool:
        """Whether a new connection from the device is relayed (else it is closed at once)."""
        return True

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._server.accept()
            except OSError:
                return
            if not self.admit():
                down.close()
                continue
            up = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [down, up]
            threading.Thread(target=self._upward, args=(down, up), daemon=True).start()
            threading.Thread(target=self._copy, args=(up, down), daemon=True).start()

    def _upward(self, down: socket.socket, up: socket.socket) -> None:
        """From the device to the broker; a subclass may look at what passes."""
        self._copy(down, up)

    def _copy(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.frozen:
                    dst.sendall(data)
        except OSError:
            pass
        self.drop(src, dst)

    @staticmethod
    def drop(*sockets: socket.socket) -> None:
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self._server.close()
        self.drop(*self._sockets)
        for s in self._sockets:
            s.close()
