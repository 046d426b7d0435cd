#!/usr/bin/env python3
"""Memory and connects of 30 000 connections through three source addresses
(BENCHMARKS.md, 'Many connections through several source addresses')."""
import subprocess, sys, json, threading, time, os, socket
# Run from the workspace root after cargo build --release -p loadgen --bin loadgen.
B = os.environ.get('LOADGEN_BIN', 'target/release/loadgen')
def free_port():
    s = socket.socket(); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; s.close(); return p
def sockstat():
    for l in open('/proc/net/sockstat'):
        if l.startswith('TCP:'):
            f = l.split(); return int(f[f.index('inuse')+1]), int(f[f.index('mem')+1])
def hwm(pid):
    for l in open(f'/proc/{pid}/status'):
        if l.startswith('VmHWM'): return int(l.split()[1])
for conns in (1000, 30000):
    port = free_port()
    tg = [subprocess.Popen([B, 'target', '--listen', f'127.0.0.1:{port}', '--threads', '1'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(2)]
    for t in tg: t.stdout.readline()
    base = sockstat()
    peak = [0, 0]
    stop = False
    def watch():
        while not stop:
            i, m = sockstat()
            if i > peak[0]: peak[0], peak[1] = i, m
            time.sleep(0.2)
    th = threading.Thread(target=watch); th.start()
    t0 = time.time()
    cmd = lambda k: ['/usr/bin/time', '-f', '%M', B, '-t1', '-c', str(conns), '--part', f'{k}/2', '-d', '5s', '--timeout', '10s', '--engine', 'uring', '--bind', '127.0.0.2-127.0.0.4', '--json', '-', f'http://127.0.0.1:{port}/']
    ps = [subprocess.Popen(cmd(k), stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in (1, 2)]
    outs = [p.communicate() for p in ps]
    stop = True; th.join()
    th_kib = [hwm(t.pid) for t in tg]
    for t in tg: t.kill()
    for (o, e) in outs:
        d = json.loads(o); rss = int(e.decode().strip().splitlines()[-1])
        print(f'fleet -c {conns}: part {d["part"]["index"]}/2 {d["connections"]} conns, {d["requests"]} requests, {d["rps"]:.0f} req/s, connect errors {d["errors"]["connect"]}, connect p99 {d["connect_us"]["p99"]} us, max RSS {rss} KiB')
    print(f'  targets VmHWM {th_kib} KiB; kernel TCP sockets in use {peak[0]} (before {base[0]}), TCP memory {peak[1]} pages = {peak[1]*4} KiB; wall {time.time()-t0:.1f}s')
