#!/usr/bin/env python3
"""Client CPU per gRPC call: loadgen --grpc against h2load sending the same
pre-encoded call, the same server, alternating in one run (BENCHMARKS.md,
'gRPC: client CPU per call'). The server is tests/src/grpc_server.py (Python
grpcio: pip install grpcio grpcio-reflection) on CPU 0; each client on CPU 1.
Run from the workspace root after cargo build --release -p loadgen --bin loadgen.
Arguments: [seconds per run (8)] [rounds (3)]."""
import json, os, re, resource, subprocess, sys

B = os.environ.get('LOADGEN_BIN', 'target/release/loadgen')
secs = sys.argv[1] if len(sys.argv) > 1 else '8'
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
server = subprocess.Popen(['taskset', '-c', '0', 'python3', 'tests/src/grpc_server.py', 'plain', '-', '-', '-', 'v1'],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
port = server.stdout.readline().strip()
url = f'http://127.0.0.1:{port}'
body = '/tmp/loadgen-grpc-body.bin'
# EchoRequest {name: "hi"}, framed: what h2load's -d sends as it is.
open(body, 'wb').write(bytes([0, 0, 0, 0, 4, 0x0a, 0x02, ord('h'), ord('i')]))
common = ['-c', '8', '-t', '1', '--streams', '4', '-d', secs + 's', '--json', '-']
path = url + '/loadgen.test.Echo/Say'
clients = {
    'loadgen --grpc --body-file': [B, '--grpc', 'loadgen.test.Echo/Say', '--body-file', body] + common + [url],
    # A JSON template, rendered and encoded per call (prost-reflect).
    'loadgen --grpc -b JSON template': [B, '--grpc', 'loadgen.test.Echo/Say', '--protoset', '/tmp/loadgen-grpc.protoset',
                                        '-b', '{"name": "u{{seq}}"}'] + common + [url],
    'loadgen --http2 (same bytes)': [B, '--http2', '-m', 'POST', '--body-file', body, '-H', 'content-type: application/grpc',
                                     '-H', 'te: trailers'] + common + [path],
    'h2load': ['h2load', '-c', '8', '-m', '4', '-t', '1', '-D', secs, '-d', body, '-H', 'content-type: application/grpc',
               '-H', 'te: trailers', path],
}
# The test schema as a FileDescriptorSet, written by hand: one message with
# `string name = 1`, and the service.
from google.protobuf import descriptor_pb2
fds = descriptor_pb2.FileDescriptorSet()
f = fds.file.add(name='echo.proto', package='loadgen.test', syntax='proto3')
m = f.message_type.add(name='EchoRequest')
m.field.add(name='name', number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name='name')
s = f.service.add(name='Echo')
s.method.add(name='Say', input_type='.loadgen.test.EchoRequest', output_type='.loadgen.test.EchoRequest')
open('/tmp/loadgen-grpc.protoset', 'wb').write(fds.SerializeToString())
res = {k: [] for k in clients}
print(f'# Python grpcio server (4 threads) on CPU 0, client on CPU 1, 8 connections x 4 streams, {secs} s, {rounds} rounds')
print(f'# kernel {os.uname().release}')
for r in range(rounds):
    for name, cmd in clients.items():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(['taskset', '-c', '1'] + cmd, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if name == 'h2load':
            n = int(re.search(r'requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded', out.stdout).group(1))
        else:
            j = json.loads(out.stdout)
            n = j['grpc']['status'].get('OK', 0) if 'grpc' in j else j['status']['codes'].get('200', 0)
        res[name].append((n, cpu))
        print(f'{r + 1:<4} {name:34} {n:>8} calls {cpu / n * 1e6:8.1f} us CPU/call', flush=True)
server.kill()
med = lambda xs: sorted(xs)[len(xs) // 2]
base = med([c / n for n, c in res['h2load']])
print("# medians; ratio = client CPU per call / h2load's")
for name, v in res.items():
    per = med([c / n for n, c in v])
    print(f'{name:34} {med([n for n, _ in v]) / float(secs):8.0f} calls/s {per * 1e6:8.1f} us CPU/call  ratio {per / base:.2f}')
