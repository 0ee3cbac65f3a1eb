"""Fixtures for the broker interoperability suite; the helpers live in brokertest.py."""

import pytest

from brokertest import ConfBroker, Peer, SubProc, tinsel_config


@pytest.fixture
def peers(request):
    """Factory: peers(server, **Peer kwargs) -> Peer (not yet connected). All closed at test end."""
    made = []

    def make(server, **kw):
        p = Peer(server.port, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def connected(peers):
    """Factory: connected(server, **Peer kwargs) -> connected Peer."""

    def make(server, **kw):
        p = peers(server, **kw)
        p.connect()
        return p

    return make


@pytest.fixture(params=["tinsel", "mosquitto"])
def broker_factory(request, start_tinsel, start_mosquitto):
    """Factory: start(sys_interval=None, max_keepalive=None) -> a broker of the param's kind
    with these settings (the same meaning in tinsel's TOML and mosquitto.conf)."""

    def start(sys_interval=None, max_keepalive=None):
        if request.param == "tinsel":
            top, limits = "", ""
            if sys_interval is not None:
                top += f"sys_interval = {sys_interval}\n"
            if max_keepalive is not None:
                limits += f"max_keep_alive = {max_keepalive}\n"
            body = top + (f"[limits]\n{limits}" if limits else "")
            return start_tinsel(config=tinsel_config("{port}", body))
        extra = ""
        if sys_interval is not None:
            extra += f"sys_interval {sys_interval}\n"
        if max_keepalive is not None:
            extra += f"max_keepalive {max_keepalive}\n"
        return start_mosquitto(extra)

    return start


@pytest.fixture
def sub_proc():
    made = []

    def start(args):
        s = SubProc(args)
        made.append(s)
        return s

    yield start
    for s in made:
        s.stop()


@pytest.fixture
def conf_broker(tinsel_bin, tmp_path):
    """Factory: conf_broker(kind, conf_text, ports, extra=()) -> ConfBroker: Mosquitto ("mosquitto")
    or tinsel ("tinsel") on the same mosquitto.conf, stopped at test end."""
    made = []

    def start(kind, conf_text, ports, extra=()):
        b = ConfBroker(kind, tinsel_bin, conf_text, ports, tmp_path, extra)
        made.append(b)
        return b

    yield start
    for b in made:
        b.stop()
