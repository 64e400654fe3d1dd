#!/usr/bin/env python3
"""A novamesh client in Python, on code generated from the protos (docs/sdk.md).

    PYTHONPATH=<generated dir> python3 client.py ADDRESS TOKEN IMAGE_ID [FLAVOR]

The controller is reached over TLS, its certificate verified with the CA in
the file NOVAMESH_TLS_CA names (default: the system's CAs); with
NOVAMESH_PLAINTEXT=1 without TLS (a controller run with --plaintext).

Creates a server, waits on its operation until the server is ACTIVE, then
sends a CreateServer with an empty name and prints the field that the
error's google.rpc.BadRequest names. Exits non-zero when something is not
as expected.
"""
import os
import sys
import time
import uuid

import grpc

from google.rpc import error_details_pb2, status_pb2
from novamesh.compute.v1 import operation_pb2, operation_pb2_grpc, server_pb2, server_pb2_grpc


def status_details(err: grpc.RpcError) -> status_pb2.Status:
    """The google.rpc.Status a failed call carries in its trailers."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return status_pb2.Status()


def channel_to(address: str) -> grpc.Channel:
    """A TLS channel verifying the controller with NOVAMESH_TLS_CA, or plaintext when asked."""
    if os.environ.get("NOVAMESH_PLAINTEXT") in ("1", "true", "yes"):
        return grpc.insecure_channel(address)
    ca = os.environ.get("NOVAMESH_TLS_CA")
    root = None
    if ca:
        with open(ca, "rb") as f:
            root = f.read()
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root))


def main() -> int:
    address, token, image_id = sys.argv[1:4]
    flavor = sys.argv[4] if len(sys.argv) > 4 else "m1.tiny"
    md = [("authorization", f"Bearer {token}")]
    with channel_to(address) as channel:
        servers = server_pb2_grpc.ServerServiceStub(channel)
        operations = operation_pb2_grpc.OperationServiceStub(channel)

        # Create a server; the call returns at once with the server in BUILD
        # and the operation that follows the build.
        created = servers.CreateServer(
            server_pb2.CreateServerRequest(name="sdk-python", flavor_id=flavor, image_id=image_id, request_id=f"sdk-python-{uuid.uuid4()}"),
            metadata=md,
            timeout=10,
        )
        server_id, op = created.server.id, created.operation
        print(f"created {server_id} {server_pb2.ServerStatus.Name(created.server.status)}")
        print(f"operation {op.name}")

        # Wait on the operation (each WaitOperation call waits up to 10 s).
        deadline = time.monotonic() + 60
        while not op.done:
            if time.monotonic() > deadline:
                print(f"operation still {operation_pb2.OperationState.Name(op.state)} after 60 s", file=sys.stderr)
                return 1
            op = operations.WaitOperation(operation_pb2.WaitOperationRequest(name=op.name, timeout_seconds=10), metadata=md, timeout=20).operation
        print(f"operation {operation_pb2.OperationState.Name(op.state)}")
        if op.state != operation_pb2.OPERATION_STATE_SUCCEEDED:
            print(f"operation failed: {op.error.code} {op.error.message}", file=sys.stderr)
            return 1

        server = servers.GetServer(server_pb2.GetServerRequest(id=server_id), metadata=md, timeout=10).server
        print(f"server {server.id} {server_pb2.ServerStatus.Name(server.status)} on {server.host}")
        if server.status != server_pb2.SERVER_STATUS_ACTIVE:
            return 1

        # A bad request: the error's trailers carry a google.rpc.Status whose
        # details hold an ErrorInfo and a BadRequest naming the field.
        try:
            servers.CreateServer(server_pb2.CreateServerRequest(name="", flavor_id=flavor, image_id=image_id), metadata=md, timeout=10)
            print("CreateServer with an empty name succeeded", file=sys.stderr)
            return 1
        except grpc.RpcError as err:
            st = status_details(err)
            print(f"error {err.code().name} {err.details()}")
            fields = []
            for detail in st.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    print(f"error info {info.reason} {info.domain}")
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    for v in bad.field_violations:
                        fields.append(v.field)
                        print(f"bad request field {v.field}: {v.description}")
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT or "name" not in fields:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
