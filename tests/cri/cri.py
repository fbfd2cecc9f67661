#!/usr/bin/env python3
"""A CRI client as the kubelet is one: calls one method of the CRI v1 RuntimeService
or ImageService on a containerd socket, with the request given as JSON (the protobuf
JSON mapping), and prints the response as JSON (ExecSync's stdout and stderr as text).

    cri.py unix:///run/x/containerd.sock RunPodSandbox '{"config": {...}, "runtimeHandler": "husk"}'

Exit status 0 on success; 1 with the gRPC status code and message on stderr when the
call fails; 2 on a usage error. The stubs come from the `container-runtime-interface-api`
package (PyPI), installed by tests/setup.sh in ~/.cache/husk/cri-venv.
"""

import base64
import json
import sys

import grpc
from google.protobuf import json_format

from cri_api.v1 import api_pb2, api_pb2_grpc

#: How long one call may take, seconds: a pod's VM boots under nested emulation (in
#: well under a minute), and a hung call must fail with containerd's log within the
#: suite's testbed timeout.
TIMEOUT = 300


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    address, method = argv[1], argv[2]
    body = json.loads(argv[3]) if len(argv) == 4 else {}
    channel = grpc.insecure_channel(address)
    for service in ("RuntimeService", "ImageService"):
        stub = getattr(api_pb2_grpc, service + "Stub")(channel)
        call = getattr(stub, method, None)
        if call is not None:
            break
    else:
        print(f"cri.py: no CRI method {method!r}", file=sys.stderr)
        return 2
    request_type = getattr(api_pb2, method + "Request")
    request = json_format.ParseDict(body, request_type())
    try:
        response = call(request, timeout=TIMEOUT)
    except grpc.RpcError as e:
        print(f"cri.py: {method}: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    # Defaults printed too: a READY state is the enum's zero.
    result = json_format.MessageToDict(response, always_print_fields_with_no_presence=True)
    if method == "ExecSync":
        # bytes come base64-encoded in protobuf's JSON; the callers want text.
        for field in ("stdout", "stderr"):
            raw = base64.b64decode(result.get(field, ""))
            result[field] = raw.decode("utf-8", errors="replace")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
