#!/bin/sh
# wrap-key-material.sh: wrap 32 bytes of key material for kmsd's
# ImportKeyMaterial with OpenSSL 3 alone, on a key-generation machine that
# will not run kmsctl. POSIX sh; needs only openssl and od.
#
#   wrap-key-material.sh ALGORITHM PUBLIC_KEY.der MATERIAL.bin OUT.bin
#
# ALGORITHM is the wrapping algorithm given to GetParametersForImport:
#   RSA_AES_KEY_WRAP_SHA_1 | RSA_AES_KEY_WRAP_SHA_256 |
#   RSAES_OAEP_SHA_1 | RSAES_OAEP_SHA_256
# PUBLIC_KEY.der is the public key kmsctl get-parameters-for-import wrote.
# OUT.bin is what kmsctl import-key-material --encrypted-key-material takes.
#
# RSA_AES_KEY_WRAP_*: a fresh AES-256 key (the ephemeral key) is encrypted
# with RSA-OAEP under the public key, and the material is wrapped under it
# with AES Key Wrap with Padding (RFC 5649); OUT is the two concatenated.
# The ephemeral key lives in a 0700 temporary directory and is overwritten
# and removed on exit. Note that it is passed to `openssl enc` as a command
# line argument (OpenSSL has no other way), so it is briefly visible to other
# users' `ps` on this machine: run this on a machine you control.
set -eu

usage() {
  echo "usage: $0 ALGORITHM PUBLIC_KEY.der MATERIAL.bin OUT.bin" >&2
  exit 2
}
[ $# -eq 4 ] || usage
algorithm=$1 public_key=$2 material=$3 out=$4

case $algorithm in
  RSAES_OAEP_SHA_1 | RSA_AES_KEY_WRAP_SHA_1) md=sha1 ;;
  RSAES_OAEP_SHA_256 | RSA_AES_KEY_WRAP_SHA_256) md=sha256 ;;
  *) echo "$0: unknown wrapping algorithm '$algorithm'" >&2; usage ;;
esac
size=$(wc -c < "$material")
if [ "$size" -ne 32 ]; then
  echo "$0: $material must hold exactly 32 bytes of key material, it holds $size" >&2
  exit 1
fi
if [ -e "$out" ]; then
  echo "$0: $out exists; not overwriting it" >&2
  exit 1
fi

# RSA-OAEP with the same hash for OAEP and MGF1, and an empty label.
oaep() {
  openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$public_key" -in "$1" -out "$2" \
    -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:$md -pkeyopt rsa_mgf1_md:$md
}

umask 077
case $algorithm in
  RSAES_OAEP_*)
    oaep "$material" "$out"
    ;;
  RSA_AES_KEY_WRAP_*)
    work=$(mktemp -d)
    trap 'dd if=/dev/zero of="$work/ephemeral.bin" bs=32 count=1 conv=notrunc 2>/dev/null; rm -rf "$work"' EXIT
    openssl rand -out "$work/ephemeral.bin" 32
    oaep "$work/ephemeral.bin" "$work/rsa-part.bin"
    openssl enc -id-aes256-wrap-pad -iv A65959A6 \
      -K "$(od -An -v -tx1 "$work/ephemeral.bin" | tr -d ' \n')" \
      -in "$material" -out "$work/kwp-part.bin"
    cat "$work/rsa-part.bin" "$work/kwp-part.bin" > "$out"
    ;;
esac
echo "wrapped $material with $algorithm into $out"
