#!/usr/bin/env bash
# Installs what generating and building clients in other languages
# (docs/sdk.md, test/sdk.test.ts) needs from Debian's packages: protoc and the
# gRPC plugins (Python's among them), Python's gRPC and protobuf runtime for
# /usr/bin/python3, Go, protoc-gen-go, protoc-gen-go-grpc and the Go
# libraries' sources for GOPATH builds (golang-github-golang-protobuf-1-5-dev
# named, since apt would otherwise take the 1.3 series, which cannot decode
# today's generated code). Calls apt-get only when something is missing;
# quiet; safe to run again.
set -euo pipefail

packages=(
  protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf
  golang-go protoc-gen-go protoc-gen-go-grpc
  golang-google-grpc-dev golang-google-protobuf-dev golang-google-genproto-dev golang-github-golang-protobuf-1-5-dev
)

. "$(dirname "$0")/apt-missing.sh"
apt_install_missing setup-sdk "${packages[@]}"
