#!/usr/bin/env bash
# Swagger UI for the switch's /docs, from the npm registry package
# swagger-ui-dist, embedded in the binary (src/http/openapi/swagger.rs):
# no CDN at run time. Stored gzipped (served as is to browsers that accept
# gzip, which is all of them; decompressed once for a client that does not).
#
#   assets/swagger-ui/update.sh           # re-fetch VERSION and rewrite the files
#   assets/swagger-ui/update.sh --check   # fail unless the files are VERSION's, byte for byte
#
# npm verifies the tarball against the registry's sha512 integrity.
set -euo pipefail
VERSION=5.35.0
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null && tar xzf "swagger-ui-dist-$VERSION.tgz")
pkg=$work/package
if [[ ${1:-} == --check ]]; then
  for f in swagger-ui-bundle.js swagger-ui.css; do
    gunzip -c "$here/$f.gz" | cmp -s - "$pkg/$f" || { echo "swagger-ui: $f.gz is not swagger-ui-dist@$VERSION's $f" >&2; exit 1; }
  done
  cmp -s "$here/LICENSE" "$pkg/LICENSE" && cmp -s "$here/favicon-32x32.png" "$pkg/favicon-32x32.png" ||
    { echo "swagger-ui: LICENSE or favicon differ from swagger-ui-dist@$VERSION" >&2; exit 1; }
  echo "swagger-ui: the embedded assets are swagger-ui-dist@$VERSION's"
  exit 0
fi
for f in swagger-ui-bundle.js swagger-ui.css; do
  gzip -9 -n -c "$pkg/$f" >"$here/$f.gz"
done
cp "$pkg/LICENSE" "$pkg/NOTICE" "$pkg/favicon-32x32.png" "$here/"
echo "swagger-ui: wrote swagger-ui-dist@$VERSION into $here"
