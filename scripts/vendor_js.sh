#!/usr/bin/env bash
# Vendor the book's third-party JavaScript into book/_static/vendor/ (ignored by git).
#
#   require.js                     requirejs            (AMD loader the widget bundle needs)
#   html-manager/embed-amd.js      @jupyter-widgets/html-manager (renders stored widget state)
#   mathjax/tex-chtml.js + parts   mathjax@3            (math rendering)
#
# _config.yml points MyST-NB's nb_ipywidgets_js and Sphinx's mathjax_path at these paths, so the
# built HTML renders sliders and math with no network, from http://localhost and from file://.
# The packages are fetched with `npm pack` (tarballs only, no dependencies, no install scripts)
# at pinned versions and checked against pinned SHA-256 sums.
#
# Without npm the same paths get small loader shims that pull the same versions from the
# jsDelivr CDN: the book then works ONLY ONLINE, and the offline browser test fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$ROOT/book/_static/vendor"
WORK="$ROOT/.build/npm"
CDN="https://cdn.jsdelivr.net/npm"

REQUIREJS=requirejs@2.3.8
HTML_MANAGER=@jupyter-widgets/html-manager@1.0.15   # ipywidgets 8.1 (widget protocol 2)
MATHJAX=mathjax@3.2.2
# Pinned SHA-256 of each tarball (a function, not an associative array: stock macOS has bash 3.2).
sha256_of() {
  case $1 in
    requirejs-2.3.8.tgz) echo 777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec ;;
    jupyter-widgets-html-manager-1.0.15.tgz) echo 2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638 ;;
    mathjax-3.2.2.tgz) echo 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09 ;;
    *) echo "vendor_js: no pinned SHA-256 for $1" >&2; return 1 ;;
  esac
}

# sha256sum on Linux, shasum -a 256 on macOS (which has no sha256sum)
if command -v sha256sum >/dev/null 2>&1; then SHA256SUM="sha256sum"; else SHA256SUM="shasum -a 256"; fi

fetch() {  # fetch <spec> <tarball>: npm pack into $WORK unless a verified copy is there
  local spec=$1 tgz=$2
  local sum; sum="$(sha256_of "$tgz")"
  if [[ -f "$WORK/$tgz" ]] && echo "$sum  $WORK/$tgz" | $SHA256SUM -c --status; then
    return
  fi
  (cd "$WORK" && npm pack --silent "$spec" >/dev/null)
  echo "$sum  $WORK/$tgz" | $SHA256SUM -c --status \
    || { echo "vendor_js: SHA-256 of $tgz does not match the pinned sum" >&2; exit 1; }
}

unpack() {  # unpack <tarball> <dir>
  rm -rf "$WORK/$2" && mkdir -p "$WORK/$2"
  tar -xzf "$WORK/$1" -C "$WORK/$2" --strip-components=1
}

expected="$(printf 'mode=offline\nrequirejs=%s\nhtml-manager=%s\nmathjax=%s\n' "$REQUIREJS" "$HTML_MANAGER" "$MATHJAX")"
if [[ -f "$VENDOR/require.js" && -f "$VENDOR/html-manager/embed-amd.js" && -f "$VENDOR/mathjax/tex-chtml.js" \
      && "$(cat "$VENDOR/VERSIONS.txt" 2>/dev/null)" == "$expected" ]]; then
  echo "vendor_js: book/_static/vendor/ is up to date (offline)"
  exit 0
fi

rm -rf "$VENDOR"
# Sphinx copies static files only when it writes pages, and keeps stale ones: drop the built HTML
# so the next build writes every page and copies these files afresh.
rm -rf "$ROOT/_build/html"
mkdir -p "$VENDOR/html-manager" "$VENDOR/mathjax"

if command -v npm >/dev/null 2>&1; then
  mkdir -p "$WORK"
  fetch "$REQUIREJS" requirejs-2.3.8.tgz
  fetch "$HTML_MANAGER" jupyter-widgets-html-manager-1.0.15.tgz
  fetch "$MATHJAX" mathjax-3.2.2.tgz
  unpack requirejs-2.3.8.tgz requirejs
  unpack jupyter-widgets-html-manager-1.0.15.tgz html-manager
  unpack mathjax-3.2.2.tgz mathjax

  cp "$WORK/requirejs/require.js" "$VENDOR/require.js"
  # embed-amd.js is self-contained for the core widgets; its CSS loads the icon fonts next to it.
  cp "$WORK/html-manager/dist/embed-amd.js" "$WORK"/html-manager/dist/*.woff2 \
     "$WORK"/html-manager/dist/*.woff "$VENDOR/html-manager/"
  # MathJax: the TeX-to-CHTML component, its fonts, and what it loads on demand
  # (TeX extensions such as \boldsymbol, the menu, accessibility). Not the speech engine (sre).
  mj="$WORK/mathjax/es5"
  cp "$mj/tex-chtml.js" "$VENDOR/mathjax/"
  for part in input/tex/extensions output/chtml/fonts/woff-v2 a11y ui adaptors; do
    mkdir -p "$VENDOR/mathjax/$part" && cp -R "$mj/$part/." "$VENDOR/mathjax/$part/"
  done
  for pkg in requirejs html-manager mathjax; do
    cp "$WORK/$pkg/LICENSE"* "$VENDOR/LICENSE.$pkg.txt" 2>/dev/null || true
  done
  mode=offline
else
  cat >&2 <<'EOF'
========================================================================================
WARNING: npm is not installed, so the book's JavaScript cannot be vendored.
The HTML will load require.js, the widget manager and MathJax from the jsDelivr CDN:
the book works ONLY ONLINE, sliders and math stay blank offline, and the offline browser
test (tests/test_book_html.py) fails. Install Node.js/npm and run `make setup` again.
========================================================================================
EOF
  # Parser-inserted scripts may document.write the next script in order; MathJax is deferred,
  # so its shim appends a script element instead.
  echo "document.write('<script src=\"$CDN/$REQUIREJS/require.js\"><\/script>');" > "$VENDOR/require.js"
  echo "document.write('<script src=\"$CDN/$HTML_MANAGER/dist/embed-amd.js\"><\/script>');" \
    > "$VENDOR/html-manager/embed-amd.js"
  cat > "$VENDOR/mathjax/tex-chtml.js" <<EOF
(function () { var s = document.createElement("script");
  s.src = "$CDN/$MATHJAX/es5/tex-chtml.js"; s.async = true; document.head.appendChild(s); })();
EOF
  mode=cdn
fi

printf 'mode=%s\nrequirejs=%s\nhtml-manager=%s\nmathjax=%s\n' \
  "$mode" "$REQUIREJS" "$HTML_MANAGER" "$MATHJAX" > "$VENDOR/VERSIONS.txt"
echo "vendor_js: $mode, $(du -sh "$VENDOR" | cut -f1) in book/_static/vendor/"
