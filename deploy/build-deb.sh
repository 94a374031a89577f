#!/usr/bin/env bash
# Builds the Debian package into target/debian/ (see deploy/README.md):
#
#   deploy/build-deb.sh                    # the release build, as plain `cargo deb`
#   deploy/build-deb.sh --profile cross    # any cargo deb options pass through
#
# The man pages and shell completions are written by the built binary
# itself (`gproc man`, `gproc completions`), so they match its --help.
# cargo deb has no step between building and packaging, so this builds,
# writes them into target/gproc-assets/ (where the [package.metadata.deb]
# assets point), then runs `cargo deb --no-build`.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --profile) profile=${args[i + 1]:?--profile needs a value} ;;
        --profile=*) profile=${args[i]#--profile=} ;;
    esac
done
target=${CARGO_TARGET_DIR:-target}

cargo build --profile "$profile" --bin gproc
dir=$profile
[ "$profile" = dev ] && dir=debug
bin=$target/$dir/gproc
assets=$target/gproc-assets
rm -rf "$assets"
mkdir -p "$assets/completions"
"$bin" man --dir "$assets/man" 2>/dev/null
"$bin" completions bash >"$assets/completions/gproc.bash"
"$bin" completions zsh >"$assets/completions/_gproc"
"$bin" completions fish >"$assets/completions/gproc.fish"
cargo deb --no-build "$@"
