#!/usr/bin/env bash
# npm run build: compiles the controller, the agent and the CLI to
# JavaScript in dist/ (tsc, incremental: a second build takes seconds), so
# that they run as in production, with plain node and no TypeScript loader
# (faster to start, less memory):
#
#   node dist/controller/main.js --help
#   node dist/agent/main.js --help
set -euo pipefail
cd "$(dirname "$0")/.."
echo "build: compiling TypeScript to dist/"
npx tsc -p tsconfig.build.json
# What the programs read beside their code: the API's descriptor set (server
# reflection, the CLI's views) and the libvirt binding's addon, built in place
# (npm run build:libvirt) and found through a link.
mkdir -p dist/gen dist/agent/drivers/libvirt/binding
cp gen/novamesh.binpb dist/gen/novamesh.binpb
ln -sfn ../../../../../agent/drivers/libvirt/binding/build dist/agent/drivers/libvirt/binding/build
echo "build: done (node dist/controller/main.js, node dist/agent/main.js)"
