#!/usr/bin/env bash
# Makes the certificates the TLS tests use, in DIR (short-lived, EC P-256, test-only):
#   ca.crt/.key          the test CA
#   server.crt/.key      localhost / 127.0.0.1 / ::1, signed by the test CA
#   client.crt/.key      CN=dev1, O=Example, C=GB, signed by the test CA
#   foreign-ca.crt/.key  another CA; foreign-client.crt/.key (CN=intruder) signed by it;
#   foreign-server.crt/.key  localhost signed by the other CA (for reload tests)
#   expired.crt/.key     localhost, signed by the test CA, valid only in January 2020
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

ca() { # name subject
  openssl req -x509 "${ec[@]}" -keyout "$1.key" -out "$1.crt" -days 2 -subj "$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # name subject ca extensions
  openssl req -new "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -set_serial "0x$(openssl rand -hex 8)" \
    -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
server_ext=$'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE'
client_ext=$'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE'

ca ca "/CN=Tinsel Test CA"
ca foreign-ca "/CN=Foreign CA"
leaf server "/CN=localhost" ca "$server_ext"
leaf client "/C=GB/O=Example/CN=dev1" ca "$client_ext"
leaf foreign-client "/CN=intruder" foreign-ca "$client_ext"
leaf foreign-server "/CN=localhost" foreign-ca "$server_ext"

# An expired certificate needs `openssl ca` (OpenSSL 3.0's `x509 -req` cannot date one).
openssl req -new "${ec[@]}" -keyout expired.key -out expired.csr -subj "/CN=localhost" 2>/dev/null
mkdir -p ca-db && : > ca-db/index.txt && echo 01 > ca-db/serial
cat > ca-db/ca.cnf <<CNF
[ ca ]
default_ca = test
[ test ]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = any
[ any ]
commonName = supplied
CNF
openssl ca -batch -config ca-db/ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr -out expired.crt \
  -startdate 20200101000000Z -enddate 20200102000000Z -notext 2>/dev/null
rm -rf ca-db expired.csr
