#!/usr/bin/env bash
# web_config_diff_test.sh EXPORTER DEMO_WRITER
#
# The exporter-toolkit web config, differentially: Debian's
# prometheus-node-exporter 1.5.0 (exporter-toolkit 0.8.2), the reference, and
# shmetrics-exporter are started with the same --web.config.file, one config
# at a time, and must answer the same matrix of requests with the same
# outcome. Each config is one row "both started" or "both refused (exit
# status non-zero)"; each request on a config both started is one row "same
# outcome". An outcome is a class, never raw bytes (web_config_client.py):
# handshake failed, closed without an answer, timeout, or the HTTP status
# with the TLS version, "basic" for a 401 with WWW-Authenticate: Basic,
# "metrics" for a 200 whose body is an exposition, and the toolkit's security
# headers the answer carries.
#
# The configs: none (an empty file), TLS only, TLS with min_version TLS13 /
# TLS10 / max_version TLS12, one cipher suite and one curve, mutual TLS with
# each client_auth_type that asks for a certificate, basic auth over HTTP
# ($2b$, $2y$ and $2a$ bcrypt hashes), basic auth over TLS, the toolkit's
# response headers; and invalid files both must refuse. The requests: plain
# HTTP (also to a TLS port), TLS 1.0 to 1.3 (the client runs at OpenSSL
# security level 0, so refusing an old version is the server's answer),
# no / the right / another CA's / another SAN's client certificate, no
# credentials, a wrong password, an unknown user, the right user, a
# malformed Authorization header. Certificates (ECDSA P-256) and bcrypt
# hashes are made by the test.
#
# client_allowed_sans came with exporter-toolkit 0.10: the reference refuses
# the key (a row pins that), so that config's rows compare shmetrics with
# outcomes written here, from the toolkit's documented behaviour.
#
# Ends with the table: config, request, reference outcome, shmetrics outcome.
# Prints "ok: ..." / "FAIL: ..." per row and "N passed, N failed"; exits 0
# only when nothing failed.
#
# Env (to check the harness itself, where shmetrics has no web config yet):
#   DIFF_SELF_TEST=1         the reference on both sides: every row must agree
#   DIFF_SELF_TEST=mismatch  the same, but the second side's tls-min13 file
#                            says TLS12: the tls1.2 row of it must fail
#   DIFF_VERBOSE=1           also print each outcome's detail (TLS alert,
#                            error text) and the reference's refusal reasons
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=script_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
take_script_args "$@"
EXPORTER=$(realpath -e "$EXPORTER" 2>/dev/null || echo "$EXPORTER") # the run changes directory
REFERENCE=/usr/bin/prometheus-node-exporter # Debian's prometheus-node-exporter
# Only the cheap loadavg collector: quick to start, quick to scrape.
REFERENCE_FLAGS=(--collector.disable-defaults --collector.loadavg)
CLIENT=$HERE/web_config_client.py
CLIENT_SECONDS=5   # the client's own deadline for one request
SELF_TEST=${DIFF_SELF_TEST:-}
VERBOSE=${DIFF_VERBOSE:-}

begin_test_run webcfg

case "$SELF_TEST" in
  '') OTHER=shmetrics ;;
  1 | mismatch) OTHER=reference ;;
  *) die "DIFF_SELF_TEST must be 1 or mismatch, not '$SELF_TEST'" ;;
esac

# ---------------------------------------------------------------- preconditions
# scripts/test.sh installs both (SHMETRICS_PACKAGES): missing is a failure.
[ -x "$REFERENCE" ] ||
  die "$REFERENCE not found: install Debian's prometheus-node-exporter (scripts/test.sh does)"
command -v openssl >/dev/null || die "openssl not found (Debian package openssl)"
command -v timeout >/dev/null || die "timeout not found (coreutils)"
"$PYTHON" -W ignore::DeprecationWarning -c 'import crypt, ssl' 2>"$WORK/python.err" ||
  die "$PYTHON cannot import crypt and ssl: $(cat "$WORK/python.err")"

# ----------------------------------------------------------------- certificates
# server-ca signs the server's certificate (IP SAN 127.0.0.1); client-ca signs
# the client certificates (SAN allowed.client.test or other.client.test);
# other-ca signs a client certificate no config trusts.
PKI=$WORK/pki
CONF=$WORK/conf # configs name the PKI files relative to themselves: ../pki/...
mkdir -p "$PKI" "$CONF"

make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$PKI/$1.key" -out "$PKI/$1.crt" -subj "/CN=shmetrics test $1" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    >>"$WORK/openssl.log" 2>&1 || die "openssl could not make CA $1: $(tail -n 3 "$WORK/openssl.log")"
}

# make_leaf NAME CA SAN EXTENDED_KEY_USAGE
make_leaf() {
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4" >"$PKI/$1.ext"
  if ! openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "/CN=shmetrics test $1" >>"$WORK/openssl.log" 2>&1 ||
    ! openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.crt" -CAkey "$PKI/$2.key" -CAcreateserial \
      -days 2 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" >>"$WORK/openssl.log" 2>&1; then
    die "openssl could not make certificate $1: $(tail -n 3 "$WORK/openssl.log")"
  fi
}

make_ca server-ca
make_ca client-ca
make_ca other-ca
make_leaf server server-ca IP:127.0.0.1 serverAuth
make_leaf client client-ca DNS:allowed.client.test clientAuth
make_leaf client-other-san client-ca DNS:other.client.test clientAuth
make_leaf client-other-ca other-ca DNS:allowed.client.test clientAuth

# --------------------------------------------------------------------- users
# Cost 4, bcrypt's least: the outcome does not depend on the cost, the run
# time does. Python makes $2b$; the same hash as $2y$ and $2a$ is what
# htpasswd and older tools write.
ALICE_PASSWORD='correct horse:battery' # a colon: only the first one splits
YVES_PASSWORD='yves password'
ADAM_PASSWORD='adam password'
bcrypt_hash() {
  "$PYTHON" -W ignore::DeprecationWarning -c \
    'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))' "$1"
}
ALICE_HASH=$(bcrypt_hash "$ALICE_PASSWORD")
YVES_HASH=$(bcrypt_hash "$YVES_PASSWORD")
ADAM_HASH=$(bcrypt_hash "$ADAM_PASSWORD")
# shellcheck disable=SC2016 # literal dollars: the bcrypt prefixes
[[ $ALICE_HASH == '$2b$04$'* && $YVES_HASH == '$2b$04$'* && $ADAM_HASH == '$2b$04$'* ]] ||
  die "python's crypt made '$ALICE_HASH', want a \$2b\$04\$ bcrypt hash"
# shellcheck disable=SC2016
YVES_HASH='$2y$'${YVES_HASH#'$2b$'}
# shellcheck disable=SC2016
ADAM_HASH='$2a$'${ADAM_HASH#'$2b$'}

# ---------------------------------------------------------------- the configs
TLS_FILES="  cert_file: ../pki/server.crt
  key_file: ../pki/server.key"
USERS="basic_auth_users:
  alice: '$ALICE_HASH'
  yves: '$YVES_HASH'
  adam: '$ADAM_HASH'"

# config NAME: the file $CONF/NAME.yml from stdin.
config() { cat >"$CONF/$1.yml"; }

# Valid configs, in the order they run, each with its requests (names from
# request_args below).
VALID_CONFIGS=()
declare -A REQUESTS
valid() {
  VALID_CONFIGS+=("$1")
  REQUESTS[$1]=$2
}
AUTH_REQUESTS='no-credentials wrong-password unknown-user alice yves-2y adam-2a bad-authorization'
CERT_REQUESTS='tls1.2-no-cert tls1.2-cert tls1.2-other-san tls1.2-other-ca tls1.3-no-cert tls1.3-cert tls1.3-other-san tls1.3-other-ca'

config empty </dev/null
valid empty 'plain-http tls-any'

config tls <<EOF
tls_server_config:
$TLS_FILES
EOF
valid tls 'plain-http tls1.0 tls1.1 tls1.2 tls1.3 tls-any tls1.3-cert'

config tls-min13 <<EOF
tls_server_config:
$TLS_FILES
  min_version: TLS13
EOF
valid tls-min13 'tls1.1 tls1.2 tls1.3'

config tls-min10 <<EOF
tls_server_config:
$TLS_FILES
  min_version: TLS10
EOF
valid tls-min10 'tls1.0 tls1.1 tls1.2 tls1.3'

config tls-max12 <<EOF
tls_server_config:
$TLS_FILES
  max_version: TLS12
EOF
valid tls-max12 'tls1.1 tls1.2 tls1.3 tls-any'

config tls-cipher-curve <<EOF
tls_server_config:
$TLS_FILES
  max_version: TLS12
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: true
  curve_preferences: [CurveP256]
EOF
valid tls-cipher-curve 'tls1.2 tls1.2-aes128-gcm tls1.2-chacha20 tls1.2-p256 tls1.2-p384'

for auth in RequireAndVerifyClientCert VerifyClientCertIfGiven RequireAnyClientCert RequestClientCert; do
  config "mtls-$auth" <<EOF
tls_server_config:
$TLS_FILES
  client_auth_type: $auth
  client_ca_file: ../pki/client-ca.crt
EOF
  valid "mtls-$auth" "$CERT_REQUESTS"
done
REQUESTS[mtls-RequireAndVerifyClientCert]+=' plain-http'

config mtls-allowed-sans <<EOF
tls_server_config:
$TLS_FILES
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ../pki/client-ca.crt
  client_allowed_sans: [allowed.client.test]
EOF
# What exporter-toolkit >= 0.10 answers (its VerifyPeerCertificate); the
# reference, 0.8.2, refuses the key. Compared with shmetrics only.
declare -A ALLOWED_SANS_EXPECTED=(
  [tls1.2-no-cert]=handshake-failed [tls1.2-cert]='TLSv1.2 http-200 metrics'
  [tls1.2-other-san]=handshake-failed [tls1.2-other-ca]=handshake-failed
  [tls1.3-no-cert]=handshake-failed [tls1.3-cert]='TLSv1.3 http-200 metrics'
  [tls1.3-other-san]=handshake-failed [tls1.3-other-ca]=handshake-failed)
REQUESTS[mtls-allowed-sans]=$CERT_REQUESTS # not in VALID_CONFIGS: it runs apart

config basic-auth <<EOF
$USERS
EOF
valid basic-auth "$AUTH_REQUESTS tls-any"

config tls-basic-auth <<EOF
tls_server_config:
$TLS_FILES
http_server_config:
  http2: false
$USERS
EOF
TLS_AUTH_REQUESTS='tls-no-credentials tls-wrong-password tls-unknown-user tls-alice tls-yves-2y tls-adam-2a'
valid tls-basic-auth "$TLS_AUTH_REQUESTS tls-bad-authorization plain-http"

config headers <<EOF
http_server_config:
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: default-src 'none'
    X-XSS-Protection: 1; mode=block
$USERS
EOF
valid headers 'headers-no-credentials headers-alice'

# Invalid configs: both must refuse to start.
INVALID_CONFIGS=()
invalid() { INVALID_CONFIGS+=("$1"); config "$1"; }
invalid bad-unknown-key <<EOF
tls_server_config:
$TLS_FILES
  no_such_key: 1
EOF
invalid bad-unknown-top-key <<EOF
basic_auth_user:
  alice: '$ALICE_HASH'
EOF
invalid bad-ca-without-client-auth <<EOF
tls_server_config:
$TLS_FILES
  client_auth_type: NoClientCert
  client_ca_file: ../pki/client-ca.crt
EOF
invalid bad-client-auth-type <<EOF
tls_server_config:
$TLS_FILES
  client_auth_type: RequireSomeClientCert
  client_ca_file: ../pki/client-ca.crt
EOF
invalid bad-missing-key-file <<EOF
tls_server_config:
  cert_file: ../pki/server.crt
EOF
invalid bad-cert-file-absent <<EOF
tls_server_config:
  cert_file: ../pki/no-such.crt
  key_file: ../pki/server.key
EOF
invalid bad-key-not-matching <<EOF
tls_server_config:
  cert_file: ../pki/server.crt
  key_file: ../pki/client.key
EOF
invalid bad-bcrypt-hash <<EOF
basic_auth_users:
  alice: 'not-a-bcrypt-hash'
EOF
invalid bad-cipher-name <<EOF
tls_server_config:
$TLS_FILES
  cipher_suites: [TLS_NO_SUCH_CIPHER]
EOF
invalid bad-tls-version <<EOF
tls_server_config:
$TLS_FILES
  min_version: TLS14
EOF
invalid bad-curve-name <<EOF
tls_server_config:
$TLS_FILES
  curve_preferences: [P-256]
EOF
invalid bad-header-name <<EOF
http_server_config:
  headers:
    Server: shmetrics
EOF
invalid bad-header-value <<EOF
http_server_config:
  headers:
    X-Frame-Options: allowall
EOF
invalid bad-yaml <<EOF
tls_server_config: [
EOF

# In mismatch mode the second side gets its own tls-min13 that allows 1.2.
if [ "$SELF_TEST" = mismatch ]; then
  sed 's/TLS13/TLS12/' "$CONF/tls-min13.yml" >"$CONF/tls-min13.other.yml"
fi

# --------------------------------------------------------------- the requests
# request_args NAME: the client's arguments for request NAME in $REQUEST_ARGS.
request_args() {
  local name=$1 tls=()
  local ca=(--ca "$PKI/server-ca.crt")
  case "$name" in
    tls-*) tls=(--tls any "${ca[@]}") name=${name#tls-} ;;
    headers-*) tls=(--report-headers) name=${name#headers-} ;;
  esac
  case "$name" in
    plain-http | no-credentials) REQUEST_ARGS=("${tls[@]}") ;;
    any) REQUEST_ARGS=(--tls any "${ca[@]}") ;;
    tls1.[0-3]) REQUEST_ARGS=(--tls "${name#tls}" "${ca[@]}") ;;
    tls1.[0-3]-no-cert) REQUEST_ARGS=(--tls "${name:3:3}" "${ca[@]}") ;;
    tls1.[0-3]-cert) REQUEST_ARGS=(--tls "${name:3:3}" "${ca[@]}" --cert "$PKI/client.crt" --key "$PKI/client.key") ;;
    tls1.[0-3]-other-san)
      REQUEST_ARGS=(--tls "${name:3:3}" "${ca[@]}" --cert "$PKI/client-other-san.crt" --key "$PKI/client-other-san.key") ;;
    tls1.[0-3]-other-ca)
      REQUEST_ARGS=(--tls "${name:3:3}" "${ca[@]}" --cert "$PKI/client-other-ca.crt" --key "$PKI/client-other-ca.key") ;;
    tls1.2-aes128-gcm) REQUEST_ARGS=(--tls 1.2 "${ca[@]}" --ciphers ECDHE-ECDSA-AES128-GCM-SHA256) ;;
    tls1.2-chacha20) REQUEST_ARGS=(--tls 1.2 "${ca[@]}" --ciphers ECDHE-ECDSA-CHACHA20-POLY1305) ;;
    tls1.2-p256) REQUEST_ARGS=(--tls 1.2 "${ca[@]}" --curve prime256v1) ;;
    tls1.2-p384) REQUEST_ARGS=(--tls 1.2 "${ca[@]}" --curve secp384r1) ;;
    wrong-password) REQUEST_ARGS=("${tls[@]}" --user alice --password 'correct horse') ;;
    unknown-user) REQUEST_ARGS=("${tls[@]}" --user mallory --password "$ALICE_PASSWORD") ;;
    alice) REQUEST_ARGS=("${tls[@]}" --user alice --password "$ALICE_PASSWORD") ;;
    yves-2y) REQUEST_ARGS=("${tls[@]}" --user yves --password "$YVES_PASSWORD") ;;
    adam-2a) REQUEST_ARGS=("${tls[@]}" --user adam --password "$ADAM_PASSWORD") ;;
    bad-authorization) REQUEST_ARGS=("${tls[@]}" --authorization 'Basic %%%not-base64') ;;
    *) die "request_args: no request named $1" ;;
  esac
}

# outcomes PORT REQUEST...: the client's class for each REQUEST in
# $OUTCOMES, its detail in $DETAILS (one client process for all of them).
outcomes() {
  local port=$1 req line i
  shift
  : >"$WORK/requests"
  for req in "$@"; do
    request_args "$req"
    { [ ${#REQUEST_ARGS[@]} -eq 0 ] || printf '%q ' "${REQUEST_ARGS[@]}"; echo; } >>"$WORK/requests"
  done
  OUTCOMES=()
  DETAILS=()
  timeout $((($# + 1) * (CLIENT_SECONDS + 1))) "$PYTHON" "$CLIENT" "$port" --batch --timeout "$CLIENT_SECONDS" \
    <"$WORK/requests" >"$WORK/outcomes" 2>"$WORK/client.err" || true
  while IFS= read -r line; do
    OUTCOMES+=("${line%%$'\t'*}")
    DETAILS+=("${line#*$'\t'}")
  done <"$WORK/outcomes"
  for ((i = ${#OUTCOMES[@]}; i < $#; i++)); do
    OUTCOMES+=(client-error)
    DETAILS+=("$(tail -n 1 "$WORK/client.err")")
  done
}

# -------------------------------------------------------------------- servers
# start_side SIDE KIND FILE: KIND (reference or shmetrics) with FILE as its
# web config, logs in $WORK/SIDE.err; its pid in PID_<SIDE>.
start_side() {
  local side=$1 kind=$2 file=$3
  if [ "$kind" = reference ]; then
    start_bg "$side" "$REFERENCE" "${REFERENCE_FLAGS[@]}" --web.listen-address=127.0.0.1:0 \
      "--web.config.file=$file"
  else
    start_bg "$side" "$EXPORTER" --instance "$INSTANCE" --ops-listen 127.0.0.1:0 \
      --judge-listen 127.0.0.1:0 --web.config.file "$file"
  fi
  printf -v "PID_$side" %s "$BG_PID"
}

# side_port SIDE KIND: the port it serves on, "" until it said so. The
# reference logs "Listening on" before it reads the file, then "TLS is
# enabled."/"TLS is disabled." once it serves; shmetrics logs
# event=listening for each role (the ops role is the one asked here).
side_port() {
  if [ "$2" = reference ]; then
    { grep -o 'msg="TLS is [a-z]*\." .*address=127\.0\.0\.1:[1-9][0-9]*' "$WORK/$1.err" 2>/dev/null || true; } |
      head -n 1 | sed 's/.*://'
  else
    EXPORTER_LOG=$WORK/$1.err listening_port ops
  fi
}

side_settled() {
  local pid_var=PID_$1
  [ -n "$(side_port "$1" "$2")" ] || ! alive "${!pid_var}"
}

# settle SIDE KIND: waits until it serves or exits; $START is "started" or
# "refused" (exited non-zero) or what else happened, $PORT its port.
settle() {
  local side=$1 kind=$2 pid_var=PID_$1
  PORT=
  if ! poll_until "$POLL_SECONDS" side_settled "$side" "$kind"; then
    START="no-port-after-${POLL_SECONDS}s"
    return
  fi
  PORT=$(side_port "$side" "$kind")
  if [ -n "$PORT" ] && alive "${!pid_var}"; then
    START=started
    return
  fi
  stop_process "${!pid_var}" "$STOP_SECONDS"
  if [ "$STOP_RC" = 0 ]; then START=exited-0; else START=refused; fi
  START_RC=$STOP_RC
}

# refusal_reason SIDE: the first error line it logged.
refusal_reason() {
  { grep -m 1 -E 'level=error|error|invalid|cannot' "$WORK/$1.err" || tail -n 1 "$WORK/$1.err"; } 2>/dev/null | cut -c1-300
}

# ---------------------------------------------------------------- the matrix
TABLE=$WORK/table.tsv
: >"$TABLE"
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TABLE"; }
say() { [ -z "$VERBOSE" ] || echo "  $*"; }

# run_config NAME VALID: both sides on NAME's file; VALID is yes or no.
run_config() {
  local name=$1 valid=$2 file=$CONF/$1.yml other_file=$CONF/$1.yml
  [ ! -e "$CONF/$name.other.yml" ] || other_file=$CONF/$name.other.yml
  start_side ref reference "$file"
  start_side other "$OTHER" "$other_file"
  local ref_start ref_port ref_rc other_start other_port other_rc
  START_RC=
  settle ref reference
  ref_start=$START ref_port=$PORT ref_rc=$START_RC
  START_RC=
  settle other "$OTHER"
  other_start=$START other_port=$PORT other_rc=$START_RC
  [ "$ref_start" != refused ] || say "$name: reference refused (exit $ref_rc): $(refusal_reason ref)"
  [ "$other_start" != refused ] || say "$name: $OTHER refused (exit $other_rc): $(refusal_reason other)"

  local expected_ref=started
  [ "$valid" = yes ] || expected_ref=refused
  [ "$name" != mtls-allowed-sans ] || expected_ref=refused
  if [ "$ref_start" != "$expected_ref" ]; then
    fail "$name: the reference $ref_start, the test expects it $expected_ref ($(refusal_reason ref))"
  fi
  if [ "$name" = mtls-allowed-sans ] && [ "$OTHER" = shmetrics ]; then
    row "$name" start "$ref_start; started (toolkit 0.10)" "$other_start" \
      "$([ "$other_start" = started ] && echo same || echo DIFFERENT)"
    check "$name: shmetrics starts (client_allowed_sans, exporter-toolkit 0.10; got $other_start)" \
      [ "$other_start" = started ]
  else
    row "$name" start "$ref_start" "$other_start" "$([ "$ref_start" = "$other_start" ] && echo same || echo DIFFERENT)"
    check "$name: both $ref_start ($OTHER $other_start)" [ "$ref_start" = "$other_start" ]
  fi
  if [ "$valid" = no ] && [ "$OTHER" = shmetrics ] && [ "$other_start" = refused ]; then
    check "$name: shmetrics names the file in its error ($(refusal_reason other))" \
      grep -qF "$file" "$WORK/other.err"
  fi

  local compare=no # the requests, when one side serves or there is an expectation for them
  if [ "$ref_start" = started ] || [ "$other_start" = started ]; then compare=$valid; fi
  if [ "$name" = mtls-allowed-sans ] && [ "$OTHER" = shmetrics ]; then compare=yes; fi
  if [ "$compare" = yes ]; then
    local reqs=() ref_outs=() ref_details=() other_outs=() other_details=() i req ref_out other_out verdict
    read -r -a reqs <<<"${REQUESTS[$name]}" # one line: read takes only the first
    if [ "$ref_start" = started ]; then
      outcomes "$ref_port" "${reqs[@]}"
      ref_outs=("${OUTCOMES[@]}") ref_details=("${DETAILS[@]}")
    fi
    if [ "$other_start" = started ]; then
      outcomes "$other_port" "${reqs[@]}"
      other_outs=("${OUTCOMES[@]}") other_details=("${DETAILS[@]}")
    fi
    for i in "${!reqs[@]}"; do
      req=${reqs[$i]}
      ref_out="not started" other_out="not started"
      if [ "$ref_start" = started ]; then
        ref_out=${ref_outs[$i]}
        say "$name $req reference: $ref_out (${ref_details[$i]})"
      fi
      if [ "$name" = mtls-allowed-sans ] && [ "$OTHER" = shmetrics ]; then
        ref_out="${ALLOWED_SANS_EXPECTED[$req]} (toolkit 0.10)"
      fi
      if [ "$other_start" = started ]; then
        other_out=${other_outs[$i]}
        say "$name $req $OTHER: $other_out (${other_details[$i]})"
      fi
      verdict=DIFFERENT # a client that failed proves nothing, even on both sides
      [ "${ref_out% (toolkit 0.10)}" != "$other_out" ] || [ "$other_out" = client-error ] || verdict=same
      row "$name" "$req" "$ref_out" "$other_out" "$verdict"
      check "$name $req: same outcome (reference '$ref_out', $OTHER '$other_out')" [ "$verdict" = same ]
    done
  fi
  local pid_var
  for pid_var in PID_ref PID_other; do
    if alive "${!pid_var}"; then stop_process "${!pid_var}" "$STOP_SECONDS"; fi
  done
}

cd "$WORK" # relative paths in the files must resolve against the file, not here
for name in "${VALID_CONFIGS[@]}"; do run_config "$name" yes; done
run_config mtls-allowed-sans yes
for name in "${INVALID_CONFIGS[@]}"; do run_config "$name" no; done

# -------------------------------------------------------------------- the table
other_title=shmetrics-exporter
[ "$OTHER" = shmetrics ] || other_title="node_exporter again (DIFF_SELF_TEST=$SELF_TEST)"
echo
printf '%-34s %-18s %-42s %-42s %s\n' config request "node_exporter 1.5.0" "$other_title" ""
while IFS=$'\t' read -r c r a b v; do
  printf '%-34s %-18s %-42s %-42s %s\n' "$c" "$r" "$a" "$b" "$v"
done <"$TABLE"
echo
