#!/usr/bin/env python3
"""One CRI RuntimeService call, as a kubelet makes it, for the shim's CRI test.

    cri_call.py GENERATED SOCKET METHOD REQUEST_JSON

GENERATED is the directory where `python3 -m grpc_tools.protoc` compiled
api.proto (api_pb2.py). REQUEST_JSON is the request message
in protobuf's JSON mapping. Prints the response in the same mapping (field
names as in api.proto, defaults included) and exits 0; a gRPC error prints
its status code and details on stderr and exits 1.
"""
import sys

import grpc
from google.protobuf import json_format


def main() -> int:
    generated, socket, method, request_json = sys.argv[1:5]
    sys.path.insert(0, generated)
    import api_pb2  # noqa: E402 (generated at test time)

    service = api_pb2.DESCRIPTOR.services_by_name["RuntimeService"]
    described = service.methods_by_name[method]
    request_type = getattr(api_pb2, described.input_type.name)
    response_type = getattr(api_pb2, described.output_type.name)
    request = json_format.Parse(request_json, request_type())
    with grpc.insecure_channel("unix:" + socket) as channel:
        call = channel.unary_unary(
            f"/{service.full_name}/{method}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            response = call(request, timeout=120)
        except grpc.RpcError as error:
            print(f"{method}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    print(to_json(response))
    return 0


def to_json(message) -> str:
    # The keyword for printing default values was renamed in protobuf 5.26.
    try:
        return json_format.MessageToJson(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    except TypeError:
        return json_format.MessageToJson(message, preserving_proto_field_name=True,
                                         including_default_value_fields=True)


if __name__ == "__main__":
    sys.exit(main())
