#!/usr/bin/env bash
# Builds the previous release from its commit (sql/install/RELEASES) and installs it into a copy of
# the embedded PostgreSQL, for the upgrade test in tests/operations.rs: the old library and its SQL
# serve a database, then this build's files replace them under the running server. Prints the
# copy's bin directory. Kept in target/previous-release/<version>-pg<major>: the build only when
# missing, the copy made anew on every run.
#   bash scripts/previous_release.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

current="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
read -r version commit < <(grep -Ev '^(#|$)' sql/install/RELEASES | awk -v c="$current" '$1 != c' | sort -V | tail -1)
[ -n "${version:-}" ] || { echo "previous_release: no release before $current in sql/install/RELEASES" >&2; exit 1; }
out="$ROOT/target/previous-release/$version-pg$PG_MAJOR"
# The wheel's binaries find their shared libraries through an $ORIGIN-relative rpath into the
# site-packages directory two levels above the installation: the copy keeps that layout.
root="$(cd "$PGBIN/.." && pwd -P)" site="$(cd "$PGBIN/../../.." && pwd -P)"
tree="$out/site/${root#"$site"/}"
pkglibdir="$("$PG_CONFIG" --pkglibdir)" sharedir="$("$PG_CONFIG" --sharedir)"
if [ ! -f "$out/built-from" ] || [ "$(cat "$out/built-from")" != "$commit $PG_CONFIG" ]; then
  if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
    say "release $version's commit is not in this clone; fetching it from origin"
    git fetch --quiet origin "$commit" 2>/dev/null || git fetch --quiet --unshallow origin 2>/dev/null || true
    git cat-file -e "$commit^{commit}" 2>/dev/null \
      || { echo "previous_release: commit $commit of release $version is not in this clone's history, nor could it be fetched from origin" >&2; exit 1; }
  fi
  say "building release $version (commit ${commit:0:10}) for the upgrade test"
  rm -rf "$out"
  mkdir -p "$out/src"
  git archive "$commit" | tar -x -C "$out/src"
  # A target directory of its own: both builds make deps/libagent_boundary.so (a cdylib's name
  # has no hash), and cargo would not notice this build's library replaced by the release's.
  # shellcheck disable=SC2086  # PG_FEATURES is a list of cargo arguments
  (cd "$out/src" && CARGO_TARGET_DIR="$ROOT/target/previous-release/target" \
    cargo pgrx package --profile dev $PG_FEATURES --pg-config "$PG_CONFIG" --out-dir "$out/package" >"$out/build.log" 2>&1) \
    || { tail -30 "$out/build.log" >&2; echo "previous_release: building $version failed; see $out/build.log" >&2; exit 1; }
  # The build is the release: it generates the install script committed for it.
  bash "$ROOT/scripts/schema.sh" --built "$version" "$out/package$sharedir/extension/agent_boundary--$version.sql" >&2
  echo "$commit $PG_CONFIG" > "$out/built-from"
fi

# A copy of the server without this build's files, with the release's instead, and links to the
# wheel's shared libraries; made anew on every run, since the upgrade test replaces its files.
rm -rf "$out/site"
mkdir -p "$(dirname "$tree")"
for libs in "$site"/*.libs; do
  [ ! -d "$libs" ] || ln -s "$libs" "$out/site/$(basename "$libs")"
done
cp -a "$root" "$tree"
rm -f "$tree/${pkglibdir#"$root"/}/agent_boundary.so" "$tree/${sharedir#"$root"/}"/extension/agent_boundary*
cp "$out/package$pkglibdir/agent_boundary.so" "$tree/${pkglibdir#"$root"/}/"
cp "$out/package$sharedir"/extension/agent_boundary* "$tree/${sharedir#"$root"/}/extension/"
echo "$tree/bin"
