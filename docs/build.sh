#!/usr/bin/env bash
# Build the documentation site into docs/_build/html with warnings as errors; the notebooks of
# notebooks/ are executed by myst-nb during the build.  With --check, then look at the pages in
# headless Chromium (docs/browser_check.py: math rendered, no console errors, screenshots).
#
# Installs what is missing: Debian's MathJax 2 (libjs-mathjax; no CDN: the site works offline) and,
# for --check, Chromium, with apt-get when run as root; the Python side (.[docs,test]) with pip.
#
# Environment: JBP_FAST=1 (default) runs the training notebook in its fast mode;
# JBP_NB_EXECUTION=force re-executes every notebook (default: cache, in docs/_build/.jupyter_cache).
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    *) echo "usage: docs/build.sh [--check]" >&2; exit 2 ;;
  esac
done

apt_install() {  # apt_install PACKAGE...: install Debian packages (root only)
  if [ "$(id -u)" != "0" ]; then
    echo "docs/build.sh: please install the Debian packages: $*" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

[ -f /usr/share/javascript/mathjax/MathJax.js ] || [ -n "${JBP_MATHJAX_DIR:-}" ] || apt_install libjs-mathjax fonts-mathjax
if [ "$check" = 1 ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  apt_install chromium
fi
if ! python -c "import sphinx, myst_nb, nbclient, ipykernel, matplotlib, sklearn" >/dev/null 2>&1; then
  python -m pip install -q -e ".[docs,test]"
fi

export JBP_FAST="${JBP_FAST:-1}"
start=$(date +%s)
jobs=()  # executing every notebook (CI): read the pages in parallel, one kernel per core
[ "${JBP_NB_EXECUTION:-cache}" = "force" ] && jobs=(-j auto)
python -m sphinx -b html -W --keep-going -q "${jobs[@]}" docs docs/_build/html
echo "docs/build.sh: built docs/_build/html in $(( $(date +%s) - start )) s"
if [ "$check" = 1 ]; then
  python docs/browser_check.py docs/_build/html
fi
