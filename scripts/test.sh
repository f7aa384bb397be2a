#!/usr/bin/env bash
# Installs the Debian programs the tests use (only those missing), then
# vets and tests every package. Run from anywhere in the repository.
#
#   ./scripts/test.sh              install what is missing, go vet, go test
#   CI=true ./scripts/test.sh      the same, never asking questions
#   TEST_FLAGS='-run TestFetch' ./scripts/test.sh   extra go test flags
set -euo pipefail

cd "$(dirname "$0")/.."

# Debian package -> a program it provides, to tell whether it is installed.
packages=(
	"curl:curl"
	"tshark:tshark"
	"tcpdump:tcpdump"
	"python3:python3"
	"dnsutils:dig"
	"iproute2:ip"
	"iputils-ping:ping"
	"tmux:tmux"
	# Programs run under 'ustack run' by ./programs.
	"wget:wget"
	"netcat-openbsd:nc"
	"socat:socat"
	"redis-server:redis-server"
	"redis-tools:redis-benchmark"
	"nginx:nginx"
	"iperf3:iperf3"
	"openssh-server:sshd"
	"openssh-client:ssh"
	"libc-bin:getent"
)

missing=()
for entry in "${packages[@]}"; do
	pkg=${entry%%:*} prog=${entry#*:}
	# sshd and nginx live in /usr/sbin, which a user's PATH may lack.
	if ! command -v "$prog" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$prog ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} > 0)); then
	echo "test.sh: installing ${missing[*]}"
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "test.sh: need root or sudo to install ${missing[*]}" >&2
			exit 1
		fi
		sudo=(sudo)
		# In CI nobody can type a password.
		if [[ ${CI:-} == true ]]; then sudo+=(-n); fi
	fi
	export DEBIAN_FRONTEND=noninteractive
	# tshark asks whether non-root users may capture; answer no, unasked.
	echo "wireshark-common wireshark-common/install-setuid boolean false" |
		"${sudo[@]}" debconf-set-selections
	"${sudo[@]}" apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	echo "test.sh: every program the tests use is installed"
fi

# The debugging recipe's test (docs/debugging.md) drives Delve.
if ! command -v dlv >/dev/null 2>&1; then
	echo "test.sh: installing dlv"
	go install github.com/go-delve/delve/cmd/dlv@v1.27.2
	PATH="$PATH:$(go env GOPATH)/bin"
	export PATH
fi

echo "test.sh: go vet ./..."
go vet ./...

# Two passes: the full sizes (256 MiB each way over a pair, 100 MiB
# fetches) at normal speed, then everything again under the race detector,
# where the bulk tests move less data so the run stays short.
echo "test.sh: go test ./..."
# shellcheck disable=SC2086 # TEST_FLAGS is a list of flags
go test -count=1 -timeout 15m ${TEST_FLAGS:-} ./...
echo "test.sh: go test -race ./..."
# shellcheck disable=SC2086
go test -race -count=1 -timeout 20m ${TEST_FLAGS:-} ./...
