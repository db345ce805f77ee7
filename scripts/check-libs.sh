#!/usr/bin/env bash
# Fails unless each binary needs only libc, libm and libgcc_s (and the loader, linux-vdso) at run
# time, so that it starts on any glibc Linux machine or minimal container: no fontconfig,
# freetype, libpng, zlib, OpenSSL... (the plots' font is embedded, PNGs are encoded in Rust).
#
#   scripts/check-libs.sh BIN...
set -euo pipefail
ALLOWED='^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1)$'
[ $# -gt 0 ] || { echo "usage: scripts/check-libs.sh BIN..."; exit 2; }
status=0
for bin in "$@"; do
    libs=$(ldd "$bin" | awk '{print $1}') || { echo "$bin: ldd failed"; status=1; continue; }
    extra=$(grep -vE "$ALLOWED" <<< "$libs" | tr '\n' ' ' || true)
    if [ -n "$extra" ]; then
        echo "$bin links more than libc, libm and libgcc_s: $extra"
        status=1
    else
        echo "$bin: only $(tr '\n' ' ' <<< "$libs")"
    fi
done
exit $status
