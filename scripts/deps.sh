# Sourced by the other scripts: installs the Debian packages Tessera needs when any is missing.
TESSERA_APT_PACKAGES="libopenblas-dev libomp-dev pkg-config zlib1g-dev libpng-dev libjpeg62-turbo-dev libopenmpi-dev openmpi-bin dataset-fashion-mnist"

# Unpacks Debian's libdnnl2 (and the OpenCL loader it links) into DIR once, without installing it;
# prints the folder that holds libdnnl.so.2. Fails when the packages cannot be downloaded.
unpack_onednn() {
    local dir=$1 lib="$1/root/usr/lib/x86_64-linux-gnu"
    if [ ! -e "$lib/libdnnl.so.2" ]; then
        mkdir -p "$dir/debs" || return 1
        (cd "$dir/debs" && apt-get download -qq libdnnl2 ocl-icd-libopencl1 >/dev/null 2>&1) || return 1
        for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root" || return 1; done
    fi
    [ -e "$lib/libdnnl.so.2" ] && (cd "$lib" && pwd)
}

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
