#!/bin/bash
# test_sdk.sh BUILD_DIR PREFIX LIBDIR BINDIR EXAMPLE_DIR
#
# The plugin SDK end to end, as a third party meets it: install qhost into a DESTDIR, build the
# out-of-tree example plugin with nothing but `pkg-config qhost-plugin` (pointed into the DESTDIR
# with PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR), then let the installed qhost load it.
set -euo pipefail

build=$1 prefix=$2 libdir=$3 bindir=$4 example=$5
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
case $bindir in /*) ;; *) bindir=$prefix/$bindir ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest

fail() { echo "test_sdk: $*" >&2; exit 1; }

# 1. install (the test harness already built everything)
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "meson install failed"; }
pc=$dest$libdir/pkgconfig/qhost-plugin.pc
[ -f "$pc" ] || fail "no qhost-plugin.pc at $pc"
[ -n "$(find "$dest" -path '*/include/qhost/qh_plugin.h')" ] || fail "qh_plugin.h not installed"

# 2. the flags point into the DESTDIR, not at the build tree or the system
export PKG_CONFIG_PATH=$dest$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
cflags=$(pkg-config --cflags qhost-plugin)
libs=$(pkg-config --libs qhost-plugin)
[[ $cflags == *"-I$dest"* ]] || fail "cflags do not point into the destdir: $cflags"
[[ $libs == *"-L$dest"* ]] || fail "libs do not point into the destdir: $libs"
# the advertised ABI version is the installed header's
header=$(find "$dest" -path '*/include/qhost/qh_plugin.h')
for part in major minor; do
    want=$(sed -n "s/^#define QH_ABI_${part^^} \([0-9]*\)$/\1/p" "$header")
    got=$(pkg-config --variable=abi_$part qhost-plugin)
    [ -n "$want" ] && [ "$got" = "$want" ] || fail "qhost-plugin.pc says abi_$part=$got, qh_plugin.h says $want"
done

# 3. build the example out of tree (a copy, so the source tree stays clean)
cp -r "$example/pow2" "$tmp/pow2"
make -C "$tmp/pow2" --no-print-directory >"$tmp/make.log" 2>&1 ||
    { cat "$tmp/make.log" >&2; fail "the example did not build"; }
so=$tmp/pow2/qh-quantizer-pow2.so
[ -f "$so" ] || fail "no $so"
nm -D --defined-only "$so" | grep -q ' qh_plugin_entry$' || fail "qh_plugin_entry is not exported"

# 4. the installed qhost loads it
qhost=$dest$bindir/qhost
[ -x "$qhost" ] || fail "no installed qhost at $qhost (the CLI is not built yet?)"
unset QHOST_PLUGIN_PATH
LD_LIBRARY_PATH=$dest$libdir "$qhost" --plugin-dir "$tmp/pow2" --list-plugins >"$tmp/list.txt" 2>&1 ||
    { cat "$tmp/list.txt" >&2; fail "qhost --list-plugins failed"; }
grep -Eq '(^|[[:space:]])pow2([[:space:]]|$)' "$tmp/list.txt" && grep -qF "$so" "$tmp/list.txt" ||
    { cat "$tmp/list.txt" >&2; fail "pow2 from $so is not listed"; }
if grep -q 'qh-quantizer-pow2.so:' "$tmp/list.txt"; then
    cat "$tmp/list.txt" >&2
    fail "pow2 was rejected"
fi
# 5. a pipeline uses it: installed in-tree plugins (model, dataset) + the out-of-tree quantizer
LD_LIBRARY_PATH=$dest$libdir "$qhost" -q --plugin-dir "$dest$libdir/qhost/plugins" --plugin-dir "$tmp/pow2" \
    -o "$tmp/run" "$example/pow2.ini" >"$tmp/run.log" 2>&1 ||
    { cat "$tmp/run.log" >&2; fail "the pow2 pipeline failed"; }
[ -f "$tmp/run/metrics.json" ] || fail "the pow2 pipeline wrote no metrics.json"
grep -q '"name": "pow2"' "$tmp/run/metrics.json" || fail "no pow2 stage in metrics.json"
grep -q '"top1"' "$tmp/run/metrics.json" || fail "the pipeline did not evaluate"
grep -q 'qh-quantizer-pow2.so' "$tmp/run/manifest.json" || fail "the manifest does not name the pow2 plugin file"
echo "test_sdk: ok"
