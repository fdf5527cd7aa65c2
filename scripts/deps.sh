# Sourced by the other scripts: installs the Debian packages Tessera needs when any is missing.
TESSERA_APT_PACKAGES="libopenblas-dev libomp-dev pkg-config zlib1g-dev libpng-dev libjpeg62-turbo-dev libopenmpi-dev openmpi-bin dataset-fashion-mnist"

install_deps() {
    local missing=()
    for p in $TESSERA_APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! command -v swift >/dev/null; then
        echo "error: swift not found on PATH; install a Swift 6.2+ toolchain (swift.org) and retry" >&2
        exit 1
    fi
}
