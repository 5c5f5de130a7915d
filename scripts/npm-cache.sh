# Shared by the scripts that keep npm packages (ONNX Runtime for Node, the
# face-api reference) in a cache directory outside node's search path.
# Source it; it defines three functions and runs nothing.

# npm_cache_get NAME DIR HAVE [--check] SPEC...
# Prints DIR when the shell function HAVE says the packages are there;
# otherwise installs SPEC... into DIR with npm (unless --check, which only
# reports) and checks HAVE again. --ignore-scripts: the packages we use
# ship what we need; their install scripts would only fetch optional
# binaries from outside the npm registry.
npm_cache_get() {
  _name=$1 _dir=$2 _have=$3
  shift 3
  if "$_have"; then
    echo "$_dir"
    return 0
  fi
  if [ "${1:-}" = --check ]; then
    echo "$_name: not installed in $_dir; run scripts/deps.sh test" >&2
    return 1
  fi
  command -v npm >/dev/null 2>&1 || {
    echo "$_name: npm not found; run scripts/deps.sh test" >&2
    return 1
  }
  mkdir -p "$_dir" || return 1
  # A package.json of our own keeps npm from walking up into the source tree.
  [ -f "$_dir/package.json" ] ||
    echo "{\"name\":\"pivot-$_name-cache\",\"private\":true}" >"$_dir/package.json"
  echo "$_name: installing $* into $_dir" >&2
  (cd "$_dir" && npm install --ignore-scripts --no-audit --no-fund \
    --loglevel=error "$@" >&2) || return 1
  "$_have" || {
    echo "$_name: installed $*, but the files we need are not there" >&2
    return 1
  }
  echo "$_dir"
}

# npm_cache_pick FETCH FALLBACK
# For the tests: sets and exports PIVOT_CACHE (as given, else
# <source>/.cache, else FALLBACK when the source tree is read-only, as
# under make distcheck) and creates it. FETCH is the fetch script, asked
# with --check whether the source tree's cache already has the packages.
npm_cache_pick() {
  if [ -z "${PIVOT_CACHE:-}" ]; then
    PIVOT_CACHE=$abs_top_srcdir/.cache
    if ! PIVOT_CACHE=$PIVOT_CACHE "$1" --check >/dev/null 2>&1 &&
       ! { mkdir -p "$PIVOT_CACHE" 2>/dev/null && [ -w "$PIVOT_CACHE" ]; }; then
      PIVOT_CACHE=$2
    fi
  fi
  export PIVOT_CACHE
  mkdir -p "$PIVOT_CACHE"
}
