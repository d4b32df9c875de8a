#!/usr/bin/env bash
# Makes the fuzz targets' fixtures (fuzz/fixtures/) and seed corpora (fuzz/seeds/TARGET/) with
# openssl: CA certificates, client chains and CRLs, public material only. The private keys
# live in a temporary directory and are deleted at the end; nothing here needs them later
# (a target that must sign generates its own key at run time). Run from anywhere; it
# overwrites what is committed, so run it only to change the fixtures (the certificates are
# valid for ten years from the day it runs; fuzz/src/lib.rs's NOW must fall inside).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fx=fixtures
mkdir -p "$fx" seeds/{upload,decide,crl,filter,request_body,gateway_rules,wsframe,authz_cert}

ca_ext() { # $1 = file; a CA that may sign certificates and CRLs
  printf '%s\n' "basicConstraints=critical,CA:TRUE${2:+,pathlen:$2}" \
    "keyUsage=critical,keyCertSign,cRLSign" "subjectKeyIdentifier=hash" \
    "authorityKeyIdentifier=keyid:always" > "$1"
}
leaf_ext() { # $1 = file, $2 = extendedKeyUsage
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=$2" "subjectAltName=DNS:client.test,email:client@example.com,URI:spiffe://example.com/client" \
    "authorityKeyIdentifier=keyid:always" > "$1"
}
ec_key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

# Root (P-256), an intermediate under it (P-384), an unrelated root (RSA 2048).
ec_key "$work/root.key"
ca_ext "$work/ca.ext"
openssl req -new -x509 -key "$work/root.key" -subj "/C=DE/O=Fuzz Org/OU=Platform+CN=Fuzz Root CA" -multivalue-rdn \
  -days 3650 -sha256 -extensions v3_ca -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\n'; cat "$work/ca.ext") \
  -out "$fx/root.pem"
openssl ecparam -name secp384r1 -genkey -noout -out "$work/intermediate.key" 2>/dev/null
openssl req -new -key "$work/intermediate.key" -subj "/O=Fuzz Org/CN=Fuzz Intermediate CA, \"quoted\"" -out "$work/intermediate.csr"
ca_ext "$work/int.ext" 0
openssl x509 -req -in "$work/intermediate.csr" -CA "$fx/root.pem" -CAkey "$work/root.key" -set_serial 0x1001 \
  -days 3650 -sha384 -extfile "$work/int.ext" -out "$fx/intermediate.pem" 2>/dev/null
openssl genrsa -out "$work/other.key" 2048 2>/dev/null
openssl req -new -x509 -key "$work/other.key" -subj "/CN=Other Root CA/emailAddress=ca@example.org" \
  -days 3650 -sha256 -extensions v3_ca -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\n'; cat "$work/ca.ext") \
  -out "$fx/other.pem"

# Client leaves: name, issuer, serial, extendedKeyUsage, days.
leaf() {
  local name=$1 issuer=$2 serial=$3 eku=$4 days=$5
  ec_key "$work/$name.key"
  openssl req -new -key "$work/$name.key" -subj "/O=Fuzz Org/OU=clients/CN=$name" -out "$work/$name.csr"
  leaf_ext "$work/$name.ext" "$eku"
  openssl x509 -req -in "$work/$name.csr" -CA "$fx/$issuer.pem" -CAkey "$work/$issuer.key" -set_serial "$serial" \
    -days "$days" -sha256 -extfile "$work/$name.ext" -outform DER -out "$work/$name.der" 2>/dev/null
}
leaf good root 0x2001 clientAuth 3650
leaf revoked root 0x2002 clientAuth 3650
leaf denied root 0x2003 clientAuth 3650
leaf serveronly root 0x2004 serverAuth 3650
leaf shortlived root 0x2005 clientAuth 1
leaf viaintermediate intermediate 0x3001 clientAuth 3650
leaf filteredout intermediate 0x3002 clientAuth 3650
leaf stranger other 0x4001 clientAuth 3650
sha256sum "$work/denied.der" | cut -c1-64 | tr -d '\n' > "$fx/denied.sha256"

# The root's CRL (revoking `revoked`), and an empty CRL of the other root, with openssl ca.
crl() { # $1 = CA name, $2 = serial to revoke (or empty), $3 = output
  local db="$work/db-$1"; mkdir -p "$db"; : > "$db/index.txt"; echo 01 > "$db/crlnumber"
  printf '%s\n' "[ca]" "default_ca=c" "[c]" "database=$db/index.txt" "crlnumber=$db/crlnumber" \
    "default_md=sha256" "default_crl_days=3650" "crl_extensions=ext" "[ext]" "authorityKeyIdentifier=keyid:always" > "$db/cnf"
  if [[ -n $2 ]]; then
    openssl x509 -in "$work/$2.der" -inform DER -out "$work/$2.pem"
    openssl ca -config "$db/cnf" -keyfile "$work/$1.key" -cert "$fx/$1.pem" -revoke "$work/$2.pem" \
      -crl_reason keyCompromise 2>/dev/null
  fi
  openssl ca -config "$db/cnf" -keyfile "$work/$1.key" -cert "$fx/$1.pem" -gencrl -out "$work/crl.pem" 2>/dev/null
  openssl crl -in "$work/crl.pem" -outform DER -out "$3"
}
crl root revoked "$fx/root.crl.der"
crl other "" "$work/other.crl.der"
crl intermediate "" "$work/intermediate.crl.der"

der() { openssl x509 -in "$1" -outform DER; }

# upload: [flags][certificate] (see fuzz_targets/upload.rs): CA certificates as DER (flag bit
# 0 clear: the target wraps them in PEM), with a name (bit 1) or a client filter (bit 3), a
# client leaf, and one PEM text as uploaded (bit 0 set).
upload_seed() { { printf "\\x$1"; cat; } > "seeds/upload/$2"; }
rm -f seeds/upload/*
der "$fx/root.pem" | upload_seed 00 root
der "$fx/intermediate.pem" | upload_seed 02 intermediate-named
der "$fx/other.pem" | upload_seed 08 other-filtered
upload_seed 00 leaf-not-a-ca < "$work/good.der"
upload_seed 01 root-pem-text < "$fx/root.pem"

# crl: DER.
cp "$fx/root.crl.der" seeds/crl/root.der
cp "$work/other.crl.der" seeds/crl/other-empty.der
cp "$work/intermediate.crl.der" seeds/crl/intermediate-empty.der

# decide: [scope byte][u16 length][DER]… (see fuzz_targets/decide.rs); scope 1 = the
# organization with no project, 2 = with its project.
python3 - "$work" "$fx" seeds/decide <<'PY'
import os, subprocess, sys
work, fx, out = sys.argv[1:]
def der_of_pem(p):
    return subprocess.run(["openssl", "x509", "-in", p, "-outform", "DER"], check=True, capture_output=True).stdout
inter = der_of_pem(os.path.join(fx, "intermediate.pem"))
def chain(*certs):
    return b"".join(len(c).to_bytes(2, "big") + c for c in certs)
leaf = lambda n: open(os.path.join(work, n + ".der"), "rb").read()
seeds = {
    "good": (1, [leaf("good")]),
    "revoked": (1, [leaf("revoked")]),
    "denied": (1, [leaf("denied")]),
    "serveronly": (1, [leaf("serveronly")]),
    "shortlived": (1, [leaf("shortlived")]),
    "intermediate-project": (2, [leaf("viaintermediate"), inter]),
    "intermediate-no-project": (1, [leaf("viaintermediate"), inter]),
    "filteredout": (2, [leaf("filteredout"), inter]),
    "stranger": (1, [leaf("stranger")]),
}
for name, (scope, certs) in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([scope]) + chain(*certs))
PY

# filter: a CEL source, a NUL byte, then a leaf's DER.
filt() { { printf '%s' "$2"; printf '\0'; cat "$work/$3.der"; } > "seeds/filter/$1"; }
filt cn 'cert.subject_cn == "good"' good
filt san 'cert.san_dns.exists(d, d.endsWith(".test")) && "client@example.com" in cert.san_email' good
filt uri 'cert.san_uri.all(u, u.startsWith("spiffe://example.com/")) || cert.issuer.contains("Fuzz")' viaintermediate
filt dates 'cert.not_after - cert.not_before > 86400 && size(cert.serial) > 0' shortlived
filt matches 'cert.subject.matches("^.*OU=clients.*$") && !(cert.subject_cn in ["revoked", "denied"])' stranger

# request_body: [request type byte][JSON body] (see fuzz_targets/request_body.rs).
python3 - seeds/request_body "$fx/root.pem" <<'PY'
import json, os, sys
out, pem = sys.argv[1], open(sys.argv[2]).read()
bodies = [
    (0, {"certificate": pem, "name": "Fuzz Root", "client_filter": 'cert.subject_cn == "x"'}),
    (0, {"content": pem}),
    (1, {"name": None, "client_filter": "true"}),
    (2, {"certificate": pem, "project_id": "proj_abc"}),
    (3, {"from": "cert_a", "to": "cert_b", "retire_from": True}),
    (4, {"certificate": pem, "reason": "key compromise"}),
    (5, {"crl": "MIIB"}),
    (6, {"certificate_ids": ["cert_a", "cert_b"]}),
    (6, {"data": ["cert_a"]}),
    (7, {"name": "Project X", "external_key_id": "k"}),
    (8, {"name": "Renamed", "external_key_id": None}),
    (9, {"name": "ci key", "expires_in_seconds": 3600}),
    (10, {}),
]
for i, (kind, body) in enumerate(bodies):
    with open(os.path.join(out, f"{i:02}-type{kind}"), "wb") as f:
        f.write(bytes([kind]) + json.dumps(body).encode())
PY

# gateway_rules: the request target on the first line, then header lines (see
# fuzz_targets/gateway_rules.rs).
printf '%s\n' '/v1/chat/completions?stream=true' 'openai-organization: org-abc' 'openai-project: proj_1' \
  'connection: keep-alive, x-drop-me' 'x-drop-me: 1' 'X_Certgate_Project: spoofed' 'x-forwarded-client-cert: Hash=00' \
  'content-length: 0' > seeds/gateway_rules/ordinary
printf '%s\n' '/v1/%2e%2e/admin;x=1' 'openai-organization: a' 'openai-organization: b' 'upgrade: websocket' \
  'connection: Upgrade' 'transfer-encoding: chunked' > seeds/gateway_rules/refused
printf '%s\n' '/v1/files/caf%C3%A9/..%252f' 'ssl-client-verify: SUCCESS' 'te: trailers' 'openai-project:  ' \
  > seeds/gateway_rules/encodings

# wsframe: [chunk size byte][the stream of frames] (see fuzz_targets/wsframe.rs).
python3 - seeds/wsframe <<'PY'
import os, sys
out = sys.argv[1]
text = bytes([0x81, 5]) + b"hello"
masked = bytes([0x82, 0x80 | 126, 0x01, 0x2C, 1, 2, 3, 4]) + bytes(300)
long = bytes([0x82, 127]) + (70000).to_bytes(8, "big") + bytes(16)
close = bytes([0x88, 0x80 | 2, 9, 9, 9, 9, 0x03 ^ 9, 0xE8 ^ 9])
ping = bytes([0x89, 0])
for name, chunk, stream in [("text", 1, text + ping), ("masked", 7, text + masked + close), ("long", 64, long)]:
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([chunk]) + stream)
PY

# authz_cert: certificate headers as proxies pass them (see fuzz_targets/authz_cert.rs): the
# text itself, or `[u16 length][DER]…` for the target to encode. Made from the fixtures alone.
python3 - "$fx" seeds/authz_cert <<'PY'
import base64, os, subprocess, sys, urllib.parse
fx, out = sys.argv[1:]
pems = [open(os.path.join(fx, n + ".pem")).read() for n in ("intermediate", "root", "other")]
ders = [subprocess.run(["openssl", "x509", "-outform", "DER"], input=p.encode(), check=True,
                       capture_output=True).stdout for p in pems]
esc = lambda t: urllib.parse.quote(t, safe="")
chain = pems[0] + pems[1]
seeds = {
    "pem": pems[1],
    "pem-escaped-chain": esc(chain),
    "pem-spaces": chain.replace("\n", " "),
    "pem-tabs": pems[2].replace("\n", "\t"),
    "traefik-commas": esc(",".join(base64.b64encode(d).decode() for d in ders)),
    "haproxy-base64": base64.b64encode(ders[2]).decode(),
    "xfcc": 'By=spiffe://a;Hash=00;Chain="%s";Subject="CN=a,O=\\"b;c\\""' % esc(chain),
    "short-percent": esc(pems[1])[:40] + "%2",
}
for name, text in seeds.items():
    with open(os.path.join(out, name), "w") as f:
        f.write(text)
with open(os.path.join(out, "der-chain"), "wb") as f:
    f.write(b"".join(len(d).to_bytes(2, "big") + d for d in ders))
PY
