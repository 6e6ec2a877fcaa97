import socket

from accord.lib import ports


def test_a_free_port_is_below_the_ephemeral_range_and_can_be_bound_for_tcp_and_udp() -> None:
    start = ports._ephemeral_start()
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, ports.BOTH):
        seen = {ports.free_port(kind=kind) for _ in range(20)}
        assert all(10000 <= p < start for p in seen), seen
        assert len(seen) > 1  # chosen at random, not the same port each time
        port = seen.pop()
        for each in ((socket.SOCK_STREAM, socket.SOCK_DGRAM) if kind == ports.BOTH else (kind,)):
            with socket.socket(socket.AF_INET, each) as s:
                s.bind(("127.0.0.1", port))


def test_a_port_taken_for_udp_only_is_not_handed_out_for_both() -> None:
    held = []
    try:
        for _ in range(30):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", ports.free_port(kind=socket.SOCK_DGRAM)))
            held.append(s)
        taken = {s.getsockname()[1] for s in held}
        assert not {ports.free_port(kind=ports.BOTH) for _ in range(200)} & taken
    finally:
        for s in held:
            s.close()


def test_a_port_taken_below_the_range_is_never_handed_out() -> None:
    held = []
    try:
        for _ in range(30):  # hold 30 ports; each later pick must avoid all of them
            s = socket.socket()
            s.bind(("127.0.0.1", ports.free_port()))
            held.append(s)
        taken = {s.getsockname()[1] for s in held}
        assert len(taken) == 30
        assert not {ports.free_port() for _ in range(200)} & taken
    finally:
        for s in held:
            s.close()
