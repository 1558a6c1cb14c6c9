#!/bin/bash
#
# build-deb.sh [OUTDIR] -- build the koha-gateway Debian package.
#
# Builds with "dpkg-buildpackage -us -uc -b" in a scratch copy of the source
# tree (the working tree stays clean: no debian/koha-gateway/, .pybuild/ or
# build/), then moves the .deb, .changes and .buildinfo to OUTDIR (default:
# dist/ at the top of the tree). Prints the path of the .deb on the last line.
#
# Needs: debhelper dh-python python3-all python3-setuptools build-essential
# (see .ci/deb-test, which installs them).

set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$top/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/koha-gateway-deb.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
mkdir "$work/src"

# Copy what git knows about (committed, staged and new, not ignored files), or
# the whole tree minus build products when this is not a git checkout.
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$top" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do
            [ -e "$f" ] && printf '%s\0' "$f"
        done | tar --null --no-recursion -T - -cf -) | tar -C "$work/src" -xf -
else
    tar -C "$top" --exclude=./.git --exclude=./.venv --exclude=./dist --exclude=./build \
        --exclude=./var --exclude='*.egg-info' --exclude=__pycache__ \
        --exclude=./debian/koha-gateway --exclude=./debian/.debhelper -cf - . |
        tar -C "$work/src" -xf -
fi

version=$(cd "$work/src" && dpkg-parsechangelog -S Version)
echo "Building koha-gateway $version in $work/src" >&2

# Debian's own interpreter and tools only: a Python first on PATH (pyenv,
# virtualenv) must not take part in the build.
(cd "$work/src" && env -u PYTHONPATH -u VIRTUAL_ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    dpkg-buildpackage -us -uc -b) >&2

for f in "$work"/koha-gateway_"$version"_*; do
    mv -f -- "$f" "$out/"
done
deb="$out/koha-gateway_${version}_all.deb"
[ -f "$deb" ] || {
    echo "build-deb.sh: $deb was not produced" >&2
    exit 1
}
echo "$deb"
