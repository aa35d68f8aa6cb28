// The exporter's --web.config.file: node_exporter's web configuration format
// (Prometheus exporter-toolkit v0.8.2, the version in Debian 12's
// prometheus-node-exporter 1.5.0), so that an operator reuses their
// node_exporter file unchanged:
//
//   tls_server_config:
//     cert_file: server.crt            # relative paths: against the file's directory
//     key_file: server.key
//     client_auth_type: RequireAndVerifyClientCert
//     client_ca_file: clients-ca.crt
//     min_version: TLS12                # TLS10..TLS13
//     max_version: TLS13
//     cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]   # Go names
//     curve_preferences: [X25519, CurveP256]
//     prefer_server_cipher_suites: true
//     client_allowed_sans: [scraper.example.org]               # toolkit >= 0.10
//   http_server_config:
//     http2: true                       # accepted, ignored: we serve HTTP/1.1
//     headers: {X-Frame-Options: deny}
//   basic_auth_users:
//     alice: $2y$10$...                 # bcrypt hashes
//
// What the toolkit does and we do too: unknown and repeated keys are errors
// (yaml.v2 UnmarshalStrict); a scalar is taken as its text where a string goes
// (`cert_file: 123` names the file "123"); booleans are YAML 1.1 ones (yes/no/
// on/off/true/false), a quoted "true" is an error; a key with an empty value
// takes Go's zero value, not the default (an empty `min_version:` means Go's
// server minimum, TLS 1.0; an empty `http2:` means false); an empty file is a
// plain HTTP server without auth; TLS is on when any of cert_file, key_file,
// client_auth_type or client_ca_file is given, and then both files are needed;
// client_ca_file with NoClientCert is an error; the verifying client auth
// modes without client_ca_file verify against the system's roots; TLS 1.3
// cipher suite names are accepted and, as in Go, do not change the TLS 1.3
// suites; only the headers and values of the toolkit's table may be set;
// basic_auth_users hashes are checked when the file is loaded.
//
// Where we differ, on purpose:
// - client_allowed_sans is accepted (exporter-toolkit 0.10+, which node_exporter
//   1.5 rejects as an unknown key), with 0.10's semantics: the client's leaf
//   certificate must carry one of the names, compared exactly with its DNS
//   names, e-mail addresses, IP addresses (Go's text form) and URIs; checked
//   only when a client certificate is requested, and then a client without a
//   certificate is refused (the toolkit drops that connection too).
// - Errors that the toolkit meets only at handshake time are load errors here:
//   min_version above max_version, and cipher_suites naming only TLS 1.3
//   suites (node_exporter with http2 on refuses that list at start too).
// - A client_ca_file holding no certificate is an error (Go takes it as an
//   empty pool and refuses every client certificate).
// - A bcrypt hash must be well formed: $2$, $2a$, $2b$, $2x$ or $2y$, a cost of
//   04..16 and 53 characters of salt and hash; all versions are checked as
//   $2b$, as Go's bcrypt does. Go starts with some malformed hashes that can
//   never match, and takes costs up to 31: each step doubles a check's time
//   (cost 16 takes seconds, 31 a day and more), and one check at a time runs,
//   so one such hash lets any client hold every uncached login for hours.
// - A configured header value must be at most 4096 bytes of visible
//   characters, spaces and tabs: Go turns a CR or LF into a space; here it is
//   refused, as any value that would change the answer's framing.
// - The toolkit re-reads the file and the certificate on every connection and
//   request and fails them while the file is invalid; WebConfigWatcher keeps
//   the last good configuration instead and re-reads at most once a second.
// - TLS: the cipher list without cipher_suites is Go 1.19's default minus the
//   3DES suites (Go's insecure list and OpenSSL 3 lack them); curves default
//   to Go's X25519, P-256, P-384, P-521; prefer_server_cipher_suites (ignored
//   by Go since 1.17) sets SSL_OP_CIPHER_SERVER_PREFERENCE.
// - http2 is read and ignored, so net/http's HTTP/2 cipher requirement does not
//   apply.
//
// For the server: set the configured headers on every response, the 401 too;
// answer a failed basic auth with 401 and "WWW-Authenticate: Basic".
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <openssl/ssl.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace shmetrics::exporter {

// tls_server_config.client_auth_type, named as Go's tls.ClientAuthType.
// "RequireClientCert" is read as kRequireAnyClientCert, as the toolkit does.
enum class ClientAuth {
  kNoClientCert,
  kRequestClientCert,           // asks for a certificate, accepts any or none
  kRequireAnyClientCert,        // needs a certificate, does not verify it
  kVerifyClientCertIfGiven,     // none, or one that verifies
  kRequireAndVerifyClientCert,  // one that verifies
};

// tls_server_config, validated. A plain value: copy it freely.
struct TlsServerConfig {
  // Paths; relative ones already joined with the config file's directory.
  std::string cert_file, key_file, client_ca_file;
  ClientAuth client_auth = ClientAuth::kNoClientCert;
  int min_version = TLS1_2_VERSION, max_version = TLS1_3_VERSION;  // OpenSSL constants
  // OpenSSL names, translated from Go's (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  // -> ECDHE-RSA-AES128-GCM-SHA256; TLS 1.3 names stay as they are and are
  // not used). Empty: Go's default list.
  std::vector<std::string> cipher_suites;
  // OpenSSL group names (X25519, P-256, P-384, P-521). Empty: Go's default.
  std::vector<std::string> curve_preferences;
  std::vector<std::string> client_allowed_sans;
  bool prefer_server_cipher_suites = true;
};

// The whole file, validated. A plain value.
struct WebConfig {
  std::optional<TlsServerConfig> tls;  // nullopt: plain HTTP
  // http_server_config.headers, in the file's order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::map<std::string, std::string, std::less<>> users;  // user -> bcrypt hash
  bool http2 = true;  // read and ignored: we serve HTTP/1.1
};

// A file that cannot be used. The message names the file and the key, says
// what was wrong and what was expected.
class WebConfigError : public std::runtime_error {
  using runtime_error::runtime_error;
};

// Reads and validates the file at `path` (the files it names are read by
// make_tls_context). Throws WebConfigError, e.g.
//   web config /etc/x.yml: unknown key "tls_server_config.cert": expected one
//   of cert_file, key_file, ... (line 2)
//   web config /etc/x.yml: "tls_server_config.min_version" is an unknown TLS
//   version "TLS14": expected one of TLS10, TLS11, TLS12, TLS13 (line 4)
WebConfig load_web_config(const std::string& path);

// A server context for `tls`: the certificate chain and its key (checked to
// match; an encrypted key is an error, never a passphrase prompt), client
// auth, versions (TLS 1.0 and 1.1 work when allowed: security level 0 then,
// whatever /etc/ssl/openssl.cnf says), ciphers, curves, allowed SANs,
// no renegotiation, released buffers, stateless session tickets and no
// server-side session cache (like Go). Throws WebConfigError naming the file
// that failed and OpenSSL's reason. The context is immutable once returned:
// share it between threads and connections; a connection made from it stays
// valid after the last shared_ptr to it is gone.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const TlsServerConfig& tls);

// basic_auth_users checking. Thread-safe: check() and cached() may be called
// from any threads at once.
class BasicAuth {
 public:
  // `users` as load_web_config validated them (a malformed hash throws
  // WebConfigError).
  explicit BasicAuth(std::map<std::string, std::string, std::less<>> users);

  // Whether any user is configured. Without users the toolkit lets every
  // request through: the caller asks this first, check() then says false.
  bool enabled() const { return !users_.empty(); }

  // `authorization` is the Authorization header's value ("" when absent).
  // True only for "Basic base64(user:password)" (scheme case-insensitive, as
  // Go's Request.BasicAuth) of a configured user whose hash matches. Unknown
  // users cost a bcrypt against the costliest configured hash, so timing does
  // not tell which users exist. Answers, good and bad, are cached, each in
  // a bounded cache of its own (keyed by HMAC-SHA256 with a per-process
  // random key of user, hash and password, never the password itself), so
  // wrong guesses, however many, never evict a right password: Prometheus's
  // scrapes stay free of bcrypt during a guessing flood. Blocking: a bcrypt takes tens of
  // milliseconds and, as in the toolkit, one runs at a time, so run this off
  // the I/O threads.
  bool check(std::string_view authorization);

  // What check(authorization) would answer without a bcrypt: the cached
  // answer, false for a header that is not well-formed basic auth, nullopt
  // when check() would have to run bcrypt.
  std::optional<bool> cached(std::string_view authorization) const;

  static constexpr std::size_t kCacheEntries = 256;  // each of good and bad

 private:
  struct Lookup {
    bool well_formed = false;
    const std::string* hash = nullptr;  // the user's, or the dummy
    bool known_user = false;
    std::string password;
    std::string key;  // the cache key
  };
  Lookup look_up(std::string_view authorization) const;

  std::map<std::string, std::string, std::less<>> users_;
  std::string dummy_hash_;
  unsigned char hmac_key_[32];
  mutable std::mutex cache_mutex_;
  std::unordered_set<std::string> good_;  // right passwords
  std::unordered_set<std::string> bad_;   // wrong ones and unknown users
  std::mutex bcrypt_mutex_;
};

// What the server needs to serve one connection, built from one reading of
// the files. `tls` is null for plain HTTP; `auth` is never null (see
// BasicAuth::enabled).
struct LoadedWebConfig {
  WebConfig config;
  std::shared_ptr<boost::asio::ssl::context> tls;
  std::shared_ptr<BasicAuth> auth;
};

// The current configuration, re-read when the config file or any file it
// names (cert, key, client CA) changes. Thread-safe: current() and
// reload_now() may be called from any threads at once.
class WebConfigWatcher {
 public:
  // Loads the file and builds the TLS context; throws WebConfigError if
  // either fails.
  explicit WebConfigWatcher(std::string path,
                            std::chrono::milliseconds interval = std::chrono::seconds(1));

  // Cheap: at most once per interval (and never by two threads at once) it
  // stats the files (device, inode, size, mtime, ctime) and on a change
  // reloads. A configuration that fails keeps the last good one and logs
  // event=web_config_invalid once per change of the files; a good one logs
  // event=web_config_reloaded.
  std::shared_ptr<const LoadedWebConfig> current();

  // Re-reads now, changed or not (SIGHUP); logs as current() does, a failure
  // every time.
  void reload_now();

 private:
  // Each file with what stat says of it (or that it is missing).
  using Stamps = std::vector<std::pair<std::string, std::string>>;
  void reload(bool forced);

  const std::string path_;
  const std::chrono::milliseconds interval_;
  std::mutex check_mutex_;  // held while checking or reloading
  std::chrono::steady_clock::time_point next_check_;
  Stamps good_stamps_;    // of the current configuration
  Stamps failed_stamps_;  // of the last failed reading, if it failed
  mutable std::mutex current_mutex_;
  std::shared_ptr<const LoadedWebConfig> current_;
};

}  // namespace shmetrics::exporter
