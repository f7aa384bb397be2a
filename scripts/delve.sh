#!/usr/bin/env bash
# Debug netstack's TCP code with Delve while a real program runs on the
# stack: builds ustack without optimisations or inlining, starts
#   dlv exec bin/ustack-debug -- run -- curl URL
# stops at the first time the TCP sender sends data, prints the backtrace
# and the connection's sender state, then lets the transfer finish and
# leaves you at Delve's prompt (see docs/debugging.md).
#
#   scripts/delve.sh [URL [OUTFILE]]
#       URL      what curl fetches over the stack (default http://10.0.2.2:8000/,
#                the host's loopback port 8000 under the nat attachment)
#       OUTFILE  where curl writes the body (default /dev/null)
#   DELVE_BATCH=1 scripts/delve.sh ...   exit Delve when the program ends
#                                       (no prompt; what the test uses)
set -euo pipefail

cd "$(dirname "$0")/.."
url=${1:-http://10.0.2.2:8000/}
out=${2:-/dev/null}

if ! command -v dlv >/dev/null 2>&1; then
	echo "delve.sh: dlv is not installed (go install github.com/go-delve/delve/cmd/dlv@latest)" >&2
	exit 1
fi
if ! command -v curl >/dev/null 2>&1; then
	echo "delve.sh: curl is not installed (apt-get install curl)" >&2
	exit 1
fi

# The patched netstack the build uses (and Delve shows the source of).
./scripts/netstack.sh sync
mkdir -p bin
# -N -l: no optimisation, no inlining, so every local and argument of
# netstack's functions can be printed.
go build -gcflags='all=-N -l' -o bin/ustack-debug ./cmd/ustack

init=$(mktemp)
trap 'rm -f "$init"' EXIT
cat >"$init" <<'DLV'
break tcpsend gvisor.dev/gvisor/pkg/tcpip/transport/tcp.(*sender).sendData
continue
bt 8
print s.ep.TransportEndpointInfo.ID
print s.SndUna
print s.SndNxt
print s.SndWnd
print s.SndCwnd
print s.Ssthresh
print s.RTO
clear tcpsend
continue
DLV
args=(exec --init "$init")
if [[ ${DELVE_BATCH:-} == 1 ]]; then
	echo exit >>"$init"
	args+=(--allow-non-terminal-interactive=true)
fi
exec dlv "${args[@]}" bin/ustack-debug -- run -- curl -sS -o "$out" -w 'curl: HTTP %{http_code}, %{size_download} bytes\n' "$url"
