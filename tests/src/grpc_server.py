# The gRPC server of tests/src/grpc.rs (and benches/grpc_cpu.py): see there.
# argv: plain|tls CERT KEY PROTOSET|- v1|v1alpha|v1,v1alpha; prints its port,
# then its counts as JSON for each line on stdin.
import json, sys, threading
from concurrent import futures
import grpc

tls, cert, key, protoset, reflect = sys.argv[1:6]
lock = threading.Lock()
calls, messages = {}, {}

def handler(name, fail):
    def h(req, ctx):
        with lock:
            calls[name] = calls.get(name, 0) + 1
            messages[req.hex()] = messages.get(req.hex(), 0) + 1
        if fail:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "asked to fail")
        return req
    # No (de)serializers: the handler sees and returns bytes.
    return grpc.unary_unary_rpc_method_handler(h)

echo = grpc.method_handlers_generic_handler(
    "loadgen.test.Echo", {"Say": handler("Say", False), "Fail": handler("Fail", True)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[echo])
if protoset != "-":
    from google.protobuf import descriptor_pb2, descriptor_pool
    from grpc_reflection.v1alpha import reflection, reflection_pb2
    fds = descriptor_pb2.FileDescriptorSet.FromString(open(protoset, "rb").read())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    names = [s.full_name for f in fds.file for s in pool.FindFileByName(f.name).services_by_name.values()]
    servicer = reflection.ReflectionServicer(names + ["grpc.reflection.v1alpha.ServerReflection"], pool=pool)
    handlers = {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)}
    for version in reflect.split(","):
        # v1's messages are v1alpha's, field for field.
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "grpc.reflection." + version + ".ServerReflection", handlers),))
if tls == "tls":
    creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
    port = server.add_secure_port("127.0.0.1:0", creds)
else:
    port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
for line in sys.stdin:
    with lock:
        print(json.dumps({"calls": calls, "messages": messages}), flush=True)
