# aioquic's HTTP/3 client, the independent client that proves the HTTP/3 test
# peers (tests/src/aioquic.rs, tests/tests/h3_peers.rs). Opens --connections
# connections one after another to 127.0.0.1:PORT (SNI localhost), each
# doing --requests GETs of --path, --concurrency at a time, and prints one
# JSON object of what it saw from its side.
import argparse, asyncio, json, time

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived, StreamReset

SERVER_CONTROL_STREAM = 3  # the server's first unidirectional stream

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("ca")
p.add_argument("--connections", type=int, default=1)
p.add_argument("--requests", type=int, default=1)
p.add_argument("--concurrency", type=int, default=1)
p.add_argument("--path", default="/")
p.add_argument("--timeout", type=float, default=5.0)
args = p.parse_args()

out = {"status": {}, "resets": {}, "bodies": {}, "timed_out": 0, "connect_failed": 0,
       "goaway": [], "retried": 0, "peer_max_streams_bidi": [], "durations_ms": []}


def bump(field, key):
    out[field][key] = out[field].get(key, 0) + 1


class Client(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.h3 = H3Connection(self._quic)
        self.waiting = {}
        self.control = b""
        self.parsed = 0

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived) and event.stream_id == SERVER_CONTROL_STREAM:
            # aioquic skips GOAWAY's payload: read the control stream here too.
            self.control += event.data
            self.read_control()
        if isinstance(event, StreamReset) and event.stream_id in self.waiting:
            self.finish(event.stream_id, ("reset", event.error_code))
        for e in self.h3.handle_event(event):
            w = self.waiting.get(e.stream_id)
            if w is None:
                continue
            if isinstance(e, HeadersReceived):
                w["status"] = dict(e.headers).get(b":status", b"?").decode()
            elif isinstance(e, DataReceived):
                w["body"] += e.data
            if getattr(e, "stream_ended", False):
                self.finish(e.stream_id, ("ok", w["status"], w["body"]))

    def read_control(self):
        buf = Buffer(data=self.control)
        buf.seek(self.parsed)
        try:
            if self.parsed == 0:
                buf.pull_uint_var()  # the stream type: control
                self.parsed = buf.tell()
            while not buf.eof():
                kind, length = buf.pull_uint_var(), buf.pull_uint_var()
                payload = buf.pull_bytes(length)
                self.parsed = buf.tell()
                if kind == FrameType.GOAWAY:
                    out["goaway"].append(Buffer(data=payload).pull_uint_var())
        except BufferReadError:
            pass  # the rest of a frame has not arrived yet

    def finish(self, stream_id, result):
        w = self.waiting.pop(stream_id)
        if not w["done"].done():
            w["done"].set_result(result)

    async def get(self):
        stream_id = self._quic.get_next_available_stream_id()
        done = self._loop.create_future()
        self.waiting[stream_id] = {"done": done, "status": None, "body": b""}
        self.h3.send_headers(stream_id, [
            (b":method", b"GET"), (b":scheme", b"https"),
            (b":authority", b"localhost"), (b":path", args.path.encode())], end_stream=True)
        self.transmit()
        start = time.monotonic()
        try:
            result = await asyncio.wait_for(done, args.timeout)
        except asyncio.TimeoutError:
            out["timed_out"] += 1
            return
        out["durations_ms"].append(round((time.monotonic() - start) * 1000, 3))
        if result[0] == "reset":
            bump("resets", str(result[1]))
        else:
            bump("status", result[1])
            bump("bodies", result[2].decode(errors="replace"))


async def one_connection(config):
    left = [args.requests]

    async def worker(client):
        while left[0] > 0:
            left[0] -= 1
            await client.get()

    try:
        async with connect("127.0.0.1", args.port, configuration=config,
                           create_protocol=Client) as client:
            out["retried"] += client._quic._retry_count
            out["peer_max_streams_bidi"].append(client._quic._remote_max_streams_bidi)
            await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
            client.close()
    except (ConnectionError, asyncio.TimeoutError):
        out["connect_failed"] += 1


async def main():
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               server_name="localhost", idle_timeout=args.timeout)
    config.load_verify_locations(args.ca)
    start = time.monotonic()
    for _ in range(args.connections):
        try:
            await asyncio.wait_for(one_connection(config), args.timeout * (args.requests + 2))
        except asyncio.TimeoutError:
            out["connect_failed"] += 1
    out["elapsed_ms"] = round((time.monotonic() - start) * 1000, 3)
    print(json.dumps(out), flush=True)


asyncio.run(main())
