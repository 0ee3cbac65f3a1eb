"""Free ports of 127.0.0.1 for the suites' servers."""

import socket

_HANDED_OUT: set[int] = set()


def free_port_number() -> int:
    """A port of 127.0.0.1 free now and not handed out before in this run: a test that asks
    for several ports before starting its servers must not get the same one twice (the
    kernel may give a just-closed port again)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh free port on 127.0.0.1")
