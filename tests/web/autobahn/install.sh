#!/usr/bin/env bash
# Install the Autobahn testsuite for tests/web/test_autobahn.py (skipped without it).
#
# wstest runs on Python 2.7 only: this uses pyenv's 2.7.18 (or $AUTOBAHN_PYTHON) and
# installs the pinned packages of requirements-py27.txt into $AUTOBAHN_HOME (default
# ~/.cache/channelstream/autobahn-py27), apart from any other Python. Idempotent: a
# stamp per requirements file makes a second run a no-op. Needs PyPI (a few minutes the
# first time: wsaccel and ujson are compiled).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py2="${AUTOBAHN_PYTHON:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/2.7.18/bin/python}"
target="${AUTOBAHN_HOME:-$HOME/.cache/channelstream/autobahn-py27}"
stamp="$target/.stamp-$(sha1sum "$here/requirements-py27.txt" | cut -c1-12)"
[ -f "$stamp" ] && exit 0
if [ ! -x "$py2" ]; then
    echo "no Python 2.7 at $py2 (set AUTOBAHN_PYTHON): Autobahn cannot be installed" >&2
    exit 1
fi
rm -rf "$target"
"$py2" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$target" -r "$here/requirements-py27.txt"
touch "$stamp"
echo "Autobahn testsuite installed in $target"
