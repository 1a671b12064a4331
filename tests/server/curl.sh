#!/usr/bin/env bash
# curl.sh BIN FIXTURE: drives `cellm serve` with curl on a fixture checkpoint (ids only):
# health, models, metrics, non-streaming and streaming completions (SSE framing, usage,
# [DONE]), max_tokens, the status codes of each error (401 without or with a wrong key,
# 404, 405, 400 for malformed JSON, refused fields and wrong types, 413 for a body over
# 1 MiB, 400 for a prompt beyond the context), and a clean exit on SIGINT.
set -uo pipefail
bin=$1
fixture=$2
tmp=$(mktemp -d)
log=$tmp/server.log
key=sk-curl
"$bin" serve -m "$fixture" --port 0 --threads 2 --parallel 2 --api-key "$key" 2>"$log" &
pid=$!
cleanup() { kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- server log"; cat "$log"; exit 1; }
for _ in $(seq 1200); do
  url=$(grep -o 'http://[^ ]*' "$log" | head -n1)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || fail "server exited"
  sleep 0.1
done
[ -n "$url" ] || fail "server did not start"

A=(-H "Authorization: Bearer $key" -H "Content-Type: application/json")
# code METHOD PATH [curl args...]: prints the HTTP status, the body goes to $tmp/body
code() {
  local m=$1 p=$2
  shift 2
  curl -s -o "$tmp/body" -w '%{http_code}' -X "$m" "$url$p" -H 'Content-Type: application/json' "$@"
}
expect() { # expect STATUS PARAM what METHOD PATH args...
  local want=$1 param=$2 what=$3
  shift 3
  local got
  got=$(code "$@")
  [ "$got" = "$want" ] || fail "$what: HTTP $got, expected $want: $(cat "$tmp/body")"
  if [ -n "$param" ]; then
    grep -q "\"param\":\"$param\"" "$tmp/body" || fail "$what: param $param not named: $(cat "$tmp/body")"
    grep -q '"type":"invalid_request_error"' "$tmp/body" || fail "$what: type: $(cat "$tmp/body")"
  fi
}

expect 200 "" health GET /health
expect 200 "" models GET /v1/models "${A[@]}"
grep -q '"object":"list"' "$tmp/body" || fail "models body"
expect 401 "" "no key" GET /v1/models
grep -q '"error"' "$tmp/body" || fail "401 body"
expect 401 "" "wrong key" POST /v1/completions -H "Authorization: Bearer nope" -d '{"prompt_ids":[1]}'
expect 404 "" "unknown route" GET /v2/everything "${A[@]}"
expect 404 "" "unknown route, no key" POST /v1/embeddings -d '{}'
expect 405 "" "wrong method" GET /v1/chat/completions "${A[@]}"

# non-streaming: max_tokens is honoured
expect 200 "" completion POST /v1/completions "${A[@]}" \
  -d '{"prompt_ids":[1,2,3,4,5],"max_tokens":7,"temperature":0,"return_ids":true}'
grep -q '"completion_tokens":7' "$tmp/body" || grep -q '"finish_reason":"stop"' "$tmp/body" \
  || fail "max_tokens: $(cat "$tmp/body")"
grep -q '"object":"text_completion"' "$tmp/body" || fail "completion object"
ids=$(grep -o '"token_ids":\[[0-9,]*\]' "$tmp/body")

# streaming: SSE events, the same ids, usage, [DONE] last
curl -sN "${A[@]}" "$url/v1/completions" -o "$tmp/sse" \
  -d '{"prompt_ids":[1,2,3,4,5],"max_tokens":7,"temperature":0,"return_ids":true,"stream":true,"stream_options":{"include_usage":true}}'
grep -q '^data: \[DONE\]$' "$tmp/sse" || fail "no [DONE]: $(cat "$tmp/sse")"
[ "$(grep -v '^$' "$tmp/sse" | tail -n1)" = "data: [DONE]" ] || fail "[DONE] is not last"
grep -v '^$' "$tmp/sse" | grep -v '^data: ' && fail "a line that is not an event"
grep -q '"usage":{"prompt_tokens":5' "$tmp/sse" || fail "no usage chunk: $(cat "$tmp/sse")"
sids=$(grep -o '"token_ids":\[[0-9,]*\]' "$tmp/sse" | sed 's/.*\[//; s/\]//' | grep -v '^$' | paste -sd, -)
[ "\"token_ids\":[$sids]" = "$ids" ] || fail "streamed ids [$sids] differ from $ids"
grep -q 'text/event-stream' <(curl -sN -D - -o /dev/null "${A[@]}" "$url/v1/completions" \
  -d '{"prompt_ids":[1],"max_tokens":2,"stream":true}') || fail "content type of a stream"

# refusals, wrong types, malformed bodies
P='"prompt_ids":[1,2]'
expect 400 logprobs logprobs POST /v1/completions "${A[@]}" -d "{$P,\"logprobs\":21}"
expect 400 top_logprobs top_logprobs POST /v1/chat/completions "${A[@]}" -d '{"messages":[],"top_logprobs":2}'
expect 400 'tools\[0\]' tools POST /v1/chat/completions "${A[@]}" -d '{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}'
expect 400 tool_choice tool_choice POST /v1/chat/completions "${A[@]}" -d '{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}'
expect 400 response_format response_format POST /v1/chat/completions "${A[@]}" -d '{"messages":[],"response_format":{"type":"json_schema","json_schema":{"schema":{}}}}'
expect 400 n "n > 64" POST /v1/completions "${A[@]}" -d "{$P,\"n\":65}"
expect 400 grammar grammar POST /v1/completions "${A[@]}" -d "{$P,\"grammar\":\"root ::= x\"}"
expect 400 temperature "wrong type" POST /v1/completions "${A[@]}" -d "{$P,\"temperature\":\"0\"}"
expect 400 max_tokens "wrong type" POST /v1/completions "${A[@]}" -d "{$P,\"max_tokens\":1.5}"
expect 400 stop "stop without a tokenizer" POST /v1/completions "${A[@]}" -d "{$P,\"stop\":\"x\"}"
expect 400 prompt "text without a tokenizer" POST /v1/completions "${A[@]}" -d '{"prompt":"hello"}'
expect 400 messages "chat without a tokenizer" POST /v1/chat/completions "${A[@]}" -d '{"messages":[{"role":"user","content":"x"}]}'
expect 400 "" "malformed JSON" POST /v1/completions "${A[@]}" -d '{"prompt_ids":[1,'
grep -q '"code":"invalid_json"' "$tmp/body" || fail "malformed JSON code"
expect 400 max_tokens "beyond the context" POST /v1/completions "${A[@]}" -d "{$P,\"max_tokens\":100000}"
grep -q '2 tokens' "$tmp/body" && grep -q '100000' "$tmp/body" || fail "context lengths: $(cat "$tmp/body")"
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' >"$tmp/big"
expect 413 "" "oversized body" POST /v1/completions "${A[@]}" --data-binary @"$tmp/big"
expect 413 "" "oversized chunked body" POST /v1/completions "${A[@]}" -H "Transfer-Encoding: chunked" --data-binary @"$tmp/big"
# exactly at the limit is fine (and then malformed: 400, not 413)
head -c $((1024 * 1024)) /dev/zero | tr '\0' ' ' >"$tmp/edge"
expect 400 "" "body at the limit" POST /v1/completions "${A[@]}" --data-binary @"$tmp/edge"

# metrics
expect 200 "" metrics GET /metrics "${A[@]}"
for k in cellm_requests_total cellm_prompt_tokens_total cellm_generated_tokens_total \
  cellm_queue_depth cellm_active_slots cellm_prefill_tokens_per_second cellm_decode_tokens_per_second; do
  grep -q "^$k" "$tmp/body" || fail "metric $k missing"
done

# SIGINT: a clean exit
kill -INT "$pid"
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "server still running 30 s after SIGINT"
wait "$pid"
rc=$?
[ "$rc" = 0 ] || fail "exit status $rc after SIGINT"
grep -q -e Sanitizer -e 'runtime error' "$log" && fail "sanitizer report"
echo "ok: curl tests"
