#!/usr/bin/env bash
# Installs, from Debian's packages, what building and testing cellm need and the machine
# lacks: the compiler and libraries (cJSON, cmocka, libmicrohttpd; libcurl and OpenSSL for
# `cellm pull`), and the test tools
# (Node.js and npm for the reference tokenizer and the openai client, Python 3 with Jinja2
# for the chat-template reference, curl). Tools that may come from outside Debian (a newer
# Node.js, pyenv's Python) are installed only when the command or module is absent.
#   scripts/deps.sh [extra Debian packages...]
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
missing=""
for p in cmake make gcc libcjson-dev libcmocka-dev libmicrohttpd-dev libcurl4-openssl-dev libssl-dev \
         curl ca-certificates "$@"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
python3 -c 'import jinja2' >/dev/null 2>&1 || missing="$missing python3-jinja2"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  echo "deps: installing$missing"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
