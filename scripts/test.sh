#!/usr/bin/env bash
# Installs the Debian packages the tests use (only those missing), then
# vets and tests every package. Run from anywhere in the repository.
#
#   ./scripts/test.sh              install what is missing, go vet, go test
#   CI=true ./scripts/test.sh      the same, never asking questions
#   TEST_FLAGS='-run TestFetch' ./scripts/test.sh   extra go test flags
#   go test -short ./...           the quick inner loop: no end-to-end suites
set -euo pipefail

cd "$(dirname "$0")/.."
# say prints a step with the time since the start, so that a slow run shows
# which step grew.
say() { printf 'test.sh: [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

# What is installed is asked of dpkg by package, not guessed from a
# command's name: another package may own the name (nc is also nmap's ncat
# and netcat-traditional's; ping is also inetutils'). internal/testprog
# names the package of every program a test runs, and its
# TestScriptInstallsEveryPackage keeps this list the same as its table.
packages=(
	# Go itself: module downloads over HTTPS; cgo for the race detector.
	ca-certificates gcc libc6-dev
	# The patched netstack's copy is a git repository (scripts/netstack.sh).
	git
	# The shell and tools of the tests' scripts, namespaces and users.
	dash coreutils grep mount util-linux libc-bin procps iproute2
	# Readers and clients of the tests.
	curl python3 tshark tcpdump tmux
	# Graphviz's dot draws ustack lab graph's pictures.
	graphviz
	# ethtool turns off checksum offload on the kernel's vxlan test device.
	ethtool
	# Programs run under 'ustack run' by ./programs (nc.openbsd is
	# netcat-openbsd's own name for nc).
	iputils-ping wget netcat-openbsd socat bind9-dnsutils redis-server
	redis-tools nginx iperf3 openssh-client openssh-server sockperf
	# Programs that read the network's view under 'ustack run' (netview).
	hostname default-jdk-headless default-jre-headless
)

installed() {
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
	say "not a Debian system: install the equivalents of ${packages[*]} yourself;" \
		"tests whose program is missing skip" >&2
else
	missing=()
	for pkg in "${packages[@]}"; do
		installed "$pkg" || missing+=("$pkg")
	done
	if ((${#missing[@]} > 0)); then
		say "installing ${missing[*]}"
		sudo=()
		if [[ $(id -u) -ne 0 ]]; then
			if ! command -v sudo >/dev/null 2>&1; then
				say "need root or sudo to install ${missing[*]}" >&2
				exit 1
			fi
			sudo=(sudo)
			# In CI nobody can type a password.
			if [[ ${CI:-} == true ]]; then sudo+=(-n); fi
		fi
		# tshark asks whether non-root users may capture; answer no, unasked.
		echo "wireshark-common wireshark-common/install-setuid boolean false" |
			"${sudo[@]}" debconf-set-selections
		"${sudo[@]}" apt-get update -q
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
		for pkg in "${missing[@]}"; do
			if ! installed "$pkg"; then
				say "$pkg is still not installed" >&2
				exit 1
			fi
		done
	else
		say "every package the tests use is installed"
	fi
fi

# The debugging recipe's test (docs/debugging.md) drives Delve, which
# go install puts in GOBIN (by default GOPATH/bin), often not on PATH.
gobin=$(go env GOBIN)
PATH="$PATH:${gobin:-$(go env GOPATH)/bin}"
export PATH
if ! command -v dlv >/dev/null 2>&1; then
	say "installing dlv"
	go install github.com/go-delve/delve/cmd/dlv@v1.27.2
fi

# The build uses the pinned netstack with ustack's patches, made from the
# module cache (or the Go proxy) into the git-ignored .netstack/ here.
say "scripts/netstack.sh sync"
./scripts/netstack.sh sync

say "go vet ./..."
go vet ./...

# Two passes: the full sizes (256 MiB each way over a pair, 100 MiB
# fetches) at normal speed, then everything again under the race detector,
# where the bulk tests move less data so the run stays short.
#
# The congestion-control behaviour tests (./cc, ./cc/sidebyside) measure
# algorithms through an emulated link in real time, and run after the
# rest, one package at a time (-p 1), with no other test binary beside
# them: next to the root package's bulk transfers, or to each other, they
# failed now and then (a Reno flow starved beside TCP-LP, a CUBIC flow
# stalled for a whole window after waiting 43 s for the other package's
# real-time turn), while alone they pass. Under the race detector they
# skip.
realtime_pkgs=(github.com/ustack/ustack/cc github.com/ustack/ustack/cc/sidebyside)
mapfile -t other_pkgs < <(go list ./... | grep -vxF "${realtime_pkgs[@]/#/-e}")
say "go test ./... (all but ${realtime_pkgs[*]})"
# shellcheck disable=SC2086 # TEST_FLAGS is a list of flags
go test -count=1 -timeout 15m ${TEST_FLAGS:-} "${other_pkgs[@]}"
say "go test ${realtime_pkgs[*]}"
# shellcheck disable=SC2086
go test -p 1 -count=1 -timeout 15m ${TEST_FLAGS:-} "${realtime_pkgs[@]}"
say "go test -race ./..."
# shellcheck disable=SC2086
go test -race -count=1 -timeout 20m ${TEST_FLAGS:-} ./...

# Fuzz targets of what ustack reads from others (frames at portd, control
# API requests, ping queries, ICMP echo requests at the gateway, programs'
# netlink requests, intercepted calls' arguments, mutation rules and the
# frames they rewrite), each under the race detector, from the corpus in
# its testdata and the seeds in its test. Each runs a number of inputs
# (about 15 s on a 2-CPU machine), not a duration: Go 1.26's fuzzer may
# report "context deadline exceeded" as a failure when a -fuzztime
# duration ends while a worker is busy (golang/go#75804, fixed in 1.27).
# FUZZTIME=0 skips them; FUZZTIME=30s (or 5000x) gives every target that.
fuzztime=${FUZZTIME:-}
if [[ $fuzztime != 0 ]]; then
	fuzz_targets=(
		"./portd/server FuzzFrameCheck 10000x"
		"./serve FuzzControlRequest 1500x"
		"./control/api FuzzPingQuery 80000x"
		"./nat FuzzParseEchoRequest 4000x"
		"./netview FuzzHandle 14000x"
		"./sockets FuzzCallArguments 5000x"
		"./mutate FuzzParse 18000x"
		"./mutate FuzzFrames 20000x"
	)
	for t in "${fuzz_targets[@]}"; do
		read -r pkg name budget <<<"$t"
		budget=${fuzztime:-$budget}
		say "fuzzing $name in $pkg for $budget"
		go test -race -run '^$' -fuzz "^${name}\$" -fuzztime "$budget" "$pkg"
	done
fi
say "every step passed"
