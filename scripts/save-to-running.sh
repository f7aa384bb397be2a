#!/usr/bin/env bash
# Measures "save to running": the time from a change to netstack's TCP
# (a new statement in sender.updateRTO, tcp/snd.go, in the editable copy)
# to an unmodified program (curl) having run on the rebuilt ustack. Runs
# RUNS edits in a row (default 3), each followed by the build and the run,
# prints each time and the hash `ustack version` names, and then puts the
# copy back (scripts/netstack.sh reset). Run it from the repository's root
# in a checkout of your own: it changes .netstack/.
#
#   scripts/save-to-running.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
port=8731
snd=.netstack/gvisor/pkg/tcpip/transport/tcp/snd.go

./scripts/netstack.sh edit >/dev/null
trap './scripts/netstack.sh reset >/dev/null' EXIT
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$PWD" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; ./scripts/netstack.sh reset >/dev/null' EXIT
mkdir -p bin
# The build after edit, so that each run below measures one change.
go build -o bin/ustack ./cmd/ustack
for ((i = 1; i <= runs; i++)); do
	sed -i '/save-to-running marker/d' "$snd"
	start=$(date +%s%N)
	sed -i "/^func (s \*sender) updateRTO(/a\\\t_ = $i$(date +%N) // save-to-running marker" "$snd"
	go build -o bin/ustack ./cmd/ustack
	bin/ustack run -- curl -sS --fail --retry 5 --retry-connrefused -o /dev/null "http://10.0.2.2:$port/go.mod"
	end=$(date +%s%N)
	hash=$(bin/ustack version | grep -o 'modified [0-9a-f]*' || true)
	printf 'run %d: %d.%02d s (%s; load average %s)\n' "$i" $(((end - start) / 1000000000)) $(((end - start) / 10000000 % 100)) \
		"${hash:-NOT modified}" "$(cut -d' ' -f1 /proc/loadavg)"
done
