#!/usr/bin/env bash
# The netstack ustack builds against: the pinned gvisor.dev/gvisor module
# with ustack's patches (netstack/patches/*.patch, applied in name order)
# in .netstack/gvisor, a git-ignored copy that go.mod's replace directive
# points at. The copy is a git repository: one commit for the pinned module,
# one per patch, one for ustack's stamp (what `ustack version` compares the
# built source with), so a developer's change shows as `git diff`.
#
#   scripts/netstack.sh sync     make or refresh the copy when the pin or the
#                                patches changed (quiet and quick otherwise;
#                                the test command and the README run it)
#   scripts/netstack.sh edit     make the copy writable and print its path:
#                                change netstack there, rebuild ustack
#   scripts/netstack.sh diff     the change made in the copy, and its hash
#                                (the one `ustack version` prints)
#   scripts/netstack.sh hash     only the hash ("" when unchanged)
#   scripts/netstack.sh save NAME
#                                keep the change as netstack/patches/NNNN-NAME.patch
#   scripts/netstack.sh reset    drop the change: back to pinned + patches
#   scripts/netstack.sh update VERSION
#                                pin gvisor.dev/gvisor@VERSION, re-apply the
#                                patches and name those that no longer apply
#
# NETSTACK_COPY=DIR works on another copy (the workflow's test uses one, so
# that builds of other packages never see its change).
set -euo pipefail

cd "$(dirname "$0")/.."
module=gvisor.dev/gvisor
copy=${NETSTACK_COPY:-.netstack/gvisor}
patches=netstack/patches
stampfile=$copy.fingerprint
sums=netstack/gvisor.sum
# The part of the copy whose change `ustack version` detects (it embeds
# these files; see stamp.go in the copy).
watched=pkg/tcpip

die() {
	echo "netstack.sh: $*" >&2
	exit 1
}

# badusage reports a usage error (exit status 2).
badusage() {
	echo "netstack.sh: $*" >&2
	exit 2
}

ingit() { git -C "$copy" -c user.name=ustack -c user.email=ustack@localhost -c commit.gpgsign=false "$@"; }

# pinned prints the version go.mod requires.
pinned() {
	awk -v m="$module" '($1 == m || ($1 == "require" && $2 == m)) && $NF ~ /^v/ { print $NF; exit }' go.mod
}

# fingerprint names what the copy is made of: the pin, the patches and this
# script (which writes the stamp).
fingerprint() {
	{
		pinned
		cat "$0"
		for p in "$patches"/*.patch; do
			[[ -e $p ]] || continue
			basename "$p"
			cat "$p"
		done
	} | sha256sum | cut -d' ' -f1
}

# changed lists the watched files that differ from the last commit, each with
# its SHA-256 ("-" when deleted), sorted by path. Files whose path has a
# component starting with '.' or '_' are left out, as go:embed leaves them.
changed() {
	{
		ingit diff --name-only HEAD -- "$watched"
		ingit ls-files --others --exclude-standard -- "$watched"
	} | { grep -v -E '(^|/)[._]' || true; } | LC_ALL=C sort -u | while read -r f; do
		if [[ -f $copy/$f ]]; then
			echo "$f $(sha256sum "$copy/$f" | cut -d' ' -f1)"
		else
			echo "$f -"
		fi
	done
}

diffhash() {
	local c
	c=$(changed)
	[[ -n $c ]] || return 0
	printf '%s\n' "$c" | sha256sum | cut -c1-16
}

dirty() { [[ -d $copy/.git && -n $(ingit status --porcelain) ]]; }

# download prints the module cache directory of the pinned version,
# downloading it when it is not there, and checks it against the sum kept in
# netstack/gvisor.sum (go.sum has none: a replaced module needs none there).
download() {
	local v=$1 tmp json dir sum want
	tmp=$(mktemp -d)
	json=$(cd "$tmp" && GOFLAGS=-mod=mod GOWORK=off go mod download -json "$module@$v") || {
		rm -rf "$tmp"
		die "cannot download $module@$v: $json"
	}
	rm -rf "$tmp"
	dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
	sum=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
	want=$(awk -v m="$module" -v v="$v" '$1 == m && $2 == v { print $3 }' "$sums")
	[[ -n $dir && -d $dir ]] || die "go mod download gave no directory for $module@$v"
	if [[ -z $want ]]; then
		# A new pin (update): keep its sums for the next download.
		want=$sum
		sed -n 's/^[[:space:]]*"GoModSum": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" |
			{ read -r modsum; printf '%s %s %s\n%s %s/go.mod %s\n' "$module" "$v" "$sum" "$module" "$v" "$modsum" >"$sums"; }
	fi
	[[ $sum == "$want" ]] || die "$module@$v: the module cache holds $sum, $sums wants $want"
	echo "$dir"
}

# build makes the copy from scratch: pinned module, then each patch, then the
# stamp. It prints every patch that does not apply and fails if one does not.
build() {
	local v dir failed=() p name
	v=$(pinned)
	[[ -n $v ]] || die "go.mod does not require $module"
	dir=$(download "$v")
	# Made beside the old copy and swapped in at the end, so that a build
	# running meanwhile sees one or the other, not half of each.
	local final=$copy
	copy=$final.new
	if [[ -d $copy ]]; then
		chmod -R u+w "$copy"
		rm -rf "$copy"
	fi
	mkdir -p "$copy"
	for f in go.mod go.sum LICENSE AUTHORS pkg; do
		[[ -e $dir/$f ]] && cp -R "$dir/$f" "$copy/"
	done
	chmod -R u+w "$copy"
	ingit init -q
	ingit add -A
	ingit commit -q -m "$module@$v (pinned)"
	for p in "$patches"/*.patch; do
		[[ -e $p ]] || continue
		name=$(basename "$p")
		if ingit apply --index --whitespace=nowarn "$PWD/$p" 2>/dev/null; then
			ingit commit -q -m "ustack patch $name"
		else
			failed+=("$name")
		fi
	done
	stamp
	chmod -R a-w "$copy/pkg"
	copy=$final
	if [[ -d $copy ]]; then
		mv "$copy" "$copy.old"
	fi
	mv "$copy.new" "$copy"
	if [[ -d $copy.old ]]; then
		chmod -R u+w "$copy.old"
		rm -rf "$copy.old"
	fi
	if ((${#failed[@]} > 0)); then
		echo "netstack.sh: these patches no longer apply to $module@$v:" >&2
		printf '  %s\n' "${failed[@]}" >&2
		echo "netstack.sh: remake them: scripts/netstack.sh edit, change the copy, scripts/netstack.sh save NAME (and delete the old file)" >&2
		return 1
	fi
	fingerprint >"$stampfile"
	echo "netstack.sh: $copy is $module@$v with ustack's patches" >&2
}

# stamp writes the module-root package ustack's version command reads: the
# watched source, embedded, and each file's SHA-256 as built here. A build
# from a changed copy embeds the changed files, so the binary itself knows.
stamp() {
	ingit ls-files -- "$watched" | grep -v -E '(^|/)[._]' | LC_ALL=C sort | while read -r f; do
		echo "$f $(sha256sum "$copy/$f" | cut -d' ' -f1)"
	done >"$copy/ustack_manifest.txt"
	local list=""
	for p in "$patches"/*.patch; do
		[[ -e $p ]] && list+="\"$(basename "$p")\", "
	done
	cat >"$copy/ustack_stamp.go" <<EOF
// Package gvisor is ustack's stamp of this copy of the module (written by
// ustack's scripts/netstack.sh; not part of gVisor).
package gvisor

import "embed"

// Source is $watched as it was compiled.
//
//go:embed $watched
var Source embed.FS

// Manifest lists each file of $watched as the copy was made (pinned module
// plus ustack's patches): "path sha256" per line, sorted by path.
//
//go:embed ustack_manifest.txt
var Manifest string

// Root is the directory Source's paths are relative to.
const Root = "$watched"

// Patches are ustack's patches applied to the pinned module, in order.
var Patches = []string{${list%, }}
EOF
	ingit add ustack_manifest.txt ustack_stamp.go
	ingit commit -q -m "ustack stamp"
}

sync() {
	if [[ -f $stampfile && -d $copy/.git && $(cat "$stampfile") == "$(fingerprint)" ]]; then
		return 0
	fi
	if dirty; then
		die "the pin or the patches changed, but $copy has a change of its own: keep it with 'scripts/netstack.sh save NAME' or drop it with 'scripts/netstack.sh reset'"
	fi
	rm -f "$stampfile"
	build
}

cmd=${1:-}
case $cmd in
sync)
	sync
	;;
edit)
	sync
	chmod -R u+w "$copy/pkg"
	(cd "$copy" && pwd)
	echo "netstack.sh: change netstack there (e.g. $copy/pkg/tcpip/transport/tcp/snd.go), then rebuild: go build -o bin/ustack ./cmd/ustack" >&2
	;;
diff)
	sync
	ingit --no-pager diff HEAD
	ingit ls-files --others --exclude-standard | while read -r f; do ingit --no-pager diff --no-index /dev/null "$f" || true; done
	h=$(diffhash)
	if [[ -n $h ]]; then echo "netstack.sh: modified $h" >&2; else echo "netstack.sh: unmodified" >&2; fi
	;;
hash)
	diffhash
	;;
save)
	name=${2:-}
	[[ $name =~ ^[a-z0-9][a-z0-9-]*$ ]] || badusage "save NAME: NAME is lower-case letters, digits and '-' (got '${name}')"
	dirty || die "save: $copy has no change to keep"
	ingit add -A -- pkg
	last=0000
	for p in "$patches"/[0-9][0-9][0-9][0-9]-*.patch; do
		[[ -e $p ]] && last=$(basename "$p" | cut -c1-4)
	done
	next=$(printf '%04d' $((10#$last + 1)))
	out=$patches/$next-$name.patch
	mkdir -p "$patches"
	ingit diff --cached --binary HEAD -- pkg >"$out"
	ingit reset -q
	ingit checkout -q -- .
	ingit clean -q -fd
	rm -f "$stampfile"
	build
	echo "netstack.sh: kept as $out"
	;;
reset)
	if [[ -d $copy/.git ]]; then
		chmod -R u+w "$copy/pkg"
		ingit checkout -q -- .
		ingit clean -q -fd
		chmod -R a-w "$copy/pkg"
	fi
	sync
	;;
update)
	v=${2:-}
	[[ $v =~ ^v ]] || badusage "update VERSION: VERSION is a module version such as v0.0.0-20260701204157-69c2d17aea96 (got '${v}')"
	if dirty; then die "update: $copy has a change of its own: save or reset it first"; fi
	go mod edit -require="$module@$v"
	rm -f "$stampfile"
	status=0
	build || status=$?
	go mod tidy
	exit $status
	;;
*)
	sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
