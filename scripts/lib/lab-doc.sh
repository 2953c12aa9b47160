# shellcheck shell=bash
# Render a page of docs/ from the JSON document a lab run wrote; sourced by
# scripts/proof-matrix and scripts/zoo-matrix.
#
#   lab_doc MODULE SOURCE PAGE HINT
#
# runs "python -m MODULE SOURCE" into docs/PAGE (atomically). HINT says how
# to produce SOURCE when it does not exist.
lab_doc() {
	local module=$1 src=$2 page=$3 hint=$4 python
	cd "$(dirname "${BASH_SOURCE[0]}")/../.."
	[ -f "$src" ] || { echo "no lab run at $src: $hint" >&2; exit 2; }
	python=.venv/bin/python
	[ -x "$python" ] || python=python3
	mkdir -p docs
	"$python" -m "$module" "$src" > "docs/$page.tmp"
	mv "docs/$page.tmp" "docs/$page"
	echo "docs/$page written from $src"
}
