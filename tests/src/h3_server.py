# The HTTP/3 server of tests/src/aioquic.rs (aioquic's own stack): see there.
# Prints its UDP port, then its counts as one JSON line for each line on stdin.
import argparse, asyncio, json, os, sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, encode_frame
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, ProtocolNegotiated
from aioquic.quic.packet import QuicProtocolVersion

REQUEST_REJECTED = 0x10B  # H3_REQUEST_REJECTED, RFC 9114 section 8.1
BODY = b"hello from aioquic"

p = argparse.ArgumentParser()
p.add_argument("cert")
p.add_argument("key")
p.add_argument("--delay-ms", type=float, default=0)
p.add_argument("--goaway-after", type=int, default=0)
p.add_argument("--reject-every", type=int, default=0)
p.add_argument("--silent-after", type=int, default=0)
p.add_argument("--max-streams", type=int, default=0)
p.add_argument("--retry", action="store_true")
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--idle-timeout", type=float, default=0)
p.add_argument("--reset-after", type=int, default=0)
p.add_argument("--only-v2", action="store_true")
p.add_argument("--alpn", help="offer only this ALPN protocol (not h3)")
args = p.parse_args()

# answered: 200s by path. received: every request's headers (answered,
# rejected or ignored). peak_streams: most requests open at once on one
# connection (received, not yet answered).
# closes: connections the client closed (CONNECTION_CLOSE), by error code
# in hex; idle_timeouts: connections that ended by the idle timeout;
# resets: stateless resets sent to forgotten connections.
counts = {"answered": {}, "received": 0, "rejected": 0, "unanswered": 0,
          "connections": 0, "goaways": 0, "peak_streams": 0,
          "closes": {}, "idle_timeouts": 0, "resets": 0}
silent = False
server = None
# --reset-after: the connection ids of forgotten connections and their
# stateless reset tokens.
forgotten = {}


class Handler(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        if args.max_streams:
            # aioquic has no setting for it. Set before the handshake, it goes
            # out as initial_max_streams_bidi and grows by one per closed stream;
            # "sent" too, or it never grants more (it thinks 128 are out).
            limit = self._quic._local_max_streams_bidi
            limit.value = limit.sent = args.max_streams
        self.h3 = None
        self.requests = 0
        self.open = 0
        self.answered = 0
        self.goaway_id = None
        self.forgotten = False

    def transmit(self):
        if silent or self.forgotten:
            # Whatever the connection wants to send is dropped: no answers,
            # no ACKs, no handshakes.
            for _ in self._quic.datagrams_to_send(now=self._loop.time()):
                pass
        super().transmit()

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = H3Connection(self._quic)
        if isinstance(event, HandshakeCompleted):
            counts["connections"] += 1
        if isinstance(event, ConnectionTerminated) and not self.forgotten:
            if event.reason_phrase == "Idle timeout":
                counts["idle_timeouts"] += 1
            else:
                code = hex(event.error_code)
                counts["closes"][code] = counts["closes"].get(code, 0) + 1
        if self.h3 is not None:
            for e in self.h3.handle_event(event):
                if isinstance(e, HeadersReceived):
                    self.request(e)

    def request(self, e):
        counts["received"] += 1
        path = dict(e.headers).get(b":path", b"").decode()
        if silent:
            counts["unanswered"] += 1
            return
        beyond_goaway = self.goaway_id is not None and e.stream_id >= self.goaway_id
        if beyond_goaway or (args.reject_every and counts["received"] % args.reject_every == 0):
            counts["rejected"] += 1
            self._quic.reset_stream(e.stream_id, REQUEST_REJECTED)
            if not e.stream_ended:
                self._quic.stop_stream(e.stream_id, REQUEST_REJECTED)
            self.transmit()
            return
        self.requests += 1
        self.open += 1
        counts["peak_streams"] = max(counts["peak_streams"], self.open)
        if args.goaway_after and self.requests == args.goaway_after:
            # The last request this connection will take is this one.
            self.goaway_id = e.stream_id + 4
            counts["goaways"] += 1
            self._quic.send_stream_data(
                self.h3._local_control_stream_id,
                encode_frame(FrameType.GOAWAY, encode_uint_var(self.goaway_id)))
        if args.delay_ms:
            self._loop.call_later(args.delay_ms / 1000, self.answer, e.stream_id, path)
        else:
            self.answer(e.stream_id, path)

    def answer(self, stream_id, path):
        global silent
        self.open -= 1
        if silent:
            counts["unanswered"] += 1
            return
        self.h3.send_headers(stream_id, [
            (b":status", b"200"), (b"content-length", str(len(BODY)).encode())])
        self.h3.send_data(stream_id, BODY, end_stream=True)
        counts["answered"][path] = counts["answered"].get(path, 0) + 1
        self.transmit()
        self.answered += 1
        if args.reset_after and self.answered == args.reset_after:
            self.forget()
        if args.silent_after and sum(counts["answered"].values()) >= args.silent_after:
            silent = True


    def forget(self):
        # As if the server had restarted: the connection is gone, and what
        # arrives for it gets a stateless reset (RFC 9000 section 10.3).
        # What it answered leaves first: aioquic's pacer may hold some of
        # it, so it is asked for as if later.
        for data, addr in self._quic.datagrams_to_send(now=self._loop.time() + 1):
            self._transport.sendto(data, addr)
        self.forgotten = True
        for c in self._quic._host_cids:
            forgotten[c.cid] = c.stateless_reset_token
        server._connection_terminated(self)


def reset_forgotten(datagram_received):
    def received(data, addr):
        # A short header: 0b01 and the 8-byte connection id aioquic issues.
        if data and data[0] & 0xC0 == 0x40 and data[1:9] in forgotten:
            token = forgotten[data[1:9]]
            # Unpredictable bits, then the token: 41 bytes, no longer than
            # what the client sends on a connection (no reset loops).
            head = bytes([0x40 | (os.urandom(1)[0] & 0x3F)]) + os.urandom(24)
            server._transport.sendto(head + token, addr)
            counts["resets"] += 1
            return
        datagram_received(data, addr)
    return received


async def main():
    global server
    alpn = [args.alpn] if args.alpn else H3_ALPN
    config = QuicConfiguration(is_client=False, alpn_protocols=alpn)
    config.load_cert_chain(args.cert, args.key)
    if args.idle_timeout:
        config.idle_timeout = args.idle_timeout
    if args.only_v2:
        # quinn speaks version 1 only: a client gets version negotiation.
        config.supported_versions = [QuicProtocolVersion.VERSION_2]
    server = await serve(args.host, 0, configuration=config,
                         create_protocol=Handler, retry=args.retry)
    if args.reset_after:
        server.datagram_received = reset_forgotten(server.datagram_received)
    print(server._transport.get_extra_info("sockname")[1], flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def command():
        if sys.stdin.readline():
            print(json.dumps(counts), flush=True)
        elif not done.done():
            done.set_result(None)  # stdin closed: the harness is gone

    loop.add_reader(sys.stdin.fileno(), command)
    await done


asyncio.run(main())
