#!/usr/bin/env bash
# Builds the DocC documentation of TesseraEngine, TesseraData and TesseraModels into .build/docs/
# with swift-docc-plugin (added to the package only for this command, from the package mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps
export TESSERA_DOCS=1
mkdir -p .build/docs
for t in TesseraEngine TesseraData TesseraModels; do
    swift package --allow-writing-to-directory .build/docs generate-documentation --target "$t" \
        --output-path ".build/docs/$t" --disable-indexing --transform-for-static-hosting
done
echo "documentation in .build/docs/{TesseraEngine,TesseraData,TesseraModels} (static HTML)"
