#!/usr/bin/env bash
# Server tests: the official openai client, the agent clients (@anthropic-ai/sdk, the
# Vercel AI SDK, @langchain/openai) and ajv (structured.mjs and agents.mjs validate JSON
# output against its schema), at the versions pinned in
# tests/server/package-lock.json, into tests/server/node_modules.
set -euo pipefail
cd "$(dirname "$0")/../../tests/server"
npm ci --no-audit --no-fund --loglevel=error
node -e "import('openai').then(m => console.log('openai client', m.VERSION ?? 'installed'))"
