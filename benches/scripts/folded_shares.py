#!/usr/bin/env python3
"""Shares of a folded profile (loadgen's --folded) by where the time went:
the kernel's sleep and wake-up, UDP send and receive, the rest of the
io_uring enter, packet crypto, quinn-proto, the allocator, histograms, and
loadgen's own code. Used for BENCHMARKS.md "Where loadgen's HTTP/3 client
CPU goes". Usage: folded_shares.py FILE.folded...
"""
import collections
import sys


def crypto(f):
    return (("decrypt" in f and "decrypted" not in f) or "encrypt" in f or "aes" in f
            or "gcm" in f or "HeaderProtection" in f or "xor_in_place" in f or "ring_core" in f)


QUINN_LEAVES = {"handle_decode", "process_payload", "poll_transmit", "on_ack_received",
                "on_packet_acked", "populate_packet", "handle_event", "finish_and_track",
                "process_decrypted_packet", "handle", "poll", "poll_timeout", "handle_timeout"}


def category(frames):
    s = ";".join(frames)
    if "finish_task_switch" in s or "__schedule" in s:
        return "kernel: sleep and wake-up"
    if "udp_sendmsg" in s or "io_sendmsg" in s:
        return "kernel: UDP send (with loopback delivery to the server)"
    if "io_recvmsg" in s or "udp_recvmsg" in s or "io_poll_task_func" in s:
        return "kernel: UDP receive"
    if any(f.endswith("_[k]") for f in frames):
        return "kernel: io_uring enter, other"
    if any(crypto(f) for f in frames):
        return "user: packet crypto (rustls/ring)"
    if any("quinn_proto" in f or f in QUINN_LEAVES for f in frames[-3:]):
        return "user: quinn-proto (QUIC state)"
    if any(k in f for f in frames[-2:] for k in ("malloc", "free", "realloc", "memmove", "memcpy", "memset")):
        return "user: allocator and copies"
    if any("record_n" in f or "hdrhistogram" in f for f in frames[-3:]):
        return "user: histograms"
    return "user: loadgen (core, HTTP/3, engine) and other"


for path in sys.argv[1:]:
    total, shares = 0, collections.Counter()
    with open(path) as f:
        for line in f:
            stack, n = line.rsplit(" ", 1)
            total += int(n)
            shares[category(stack.split(";"))] += int(n)
    print(f"{path}: {total} samples")
    for name, n in shares.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
