#!/usr/bin/env bash
# Builds the site and opens its math-heavy pages in headless Chromium with the network off, the
# way a reader offline sees them; fails if a rendered DOM shows raw TeX or holds no MathML.
#
#   bash docs/scripts/check_rendered.sh [OUTDIR]
#
# OUTDIR (default: a new temporary directory) receives the site, each page's dumped DOM (.html)
# and a screenshot (.png). Needs .venv (bash .ci/setup) and chromium; without chromium it exits
# 77 (the usual "skipped" status, which .ci/run reports as a skip).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

out=${1:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

browser=""
for candidate in chromium chromium-browser google-chrome; do
  if command -v "$candidate" >/dev/null 2>&1; then browser=$candidate; break; fi
done
if [ -z "$browser" ]; then
  echo "check_rendered: no chromium on PATH (CI installs it: CI=true bash .ci/setup, as root)" >&2
  exit 77
fi

start=$SECONDS
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q -f docs/mkdocs.yml -d "$out/site"

# Network off: a network namespace with nothing in it where one can be made (root), so that no
# request can leave whatever a page asks for; and Chromium told to resolve no host name at all,
# which also holds where no namespace can be made.
isolate=()
if unshare --net true 2>/dev/null; then
  isolate=(unshare --net)
  echo "check_rendered: chromium runs in an empty network namespace"
else
  echo "check_rendered: no network namespace here; host name resolution is off in chromium"
fi
flags=(
  --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions
  --disable-background-networking --disable-component-update --disable-sync
  "--host-resolver-rules=MAP * ~NOTFOUND"
  "--user-data-dir=$out/profile" --window-size=1280,2400 --hide-scrollbars
)

pages=(algorithms/setadam theory/invariants theory/stepsize-range numerics/tolerance)
doms=()
for page in "${pages[@]}"; do
  name=${page//\//_}
  url="file://$out/site/$page/index.html"
  [ -f "$out/site/$page/index.html" ] || { echo "check_rendered: $page was not built" >&2; exit 1; }
  # A bounded run: a headless browser that hangs must not hang CI.
  timeout 120 "${isolate[@]}" "$browser" "${flags[@]}" --dump-dom "$url" \
    >"$out/$name.html" 2>>"$out/chromium.log"
  timeout 120 "${isolate[@]}" "$browser" "${flags[@]}" "--screenshot=$out/$name.png" "$url" \
    >>"$out/chromium.log" 2>&1
  doms+=("$out/$name.html")
done

status=0
.venv/bin/python docs/hooks/mathml.py "${doms[@]}" || status=$?
echo "check_rendered: $("$browser" --version 2>/dev/null | head -n 1); ${#pages[@]} pages," \
  "$((SECONDS - start)) s; DOMs and screenshots in $out"
if [ "$status" -ne 0 ]; then
  echo "check_rendered: FAILED: raw TeX or no MathML in the rendered pages (above)" >&2
fi
exit "$status"
