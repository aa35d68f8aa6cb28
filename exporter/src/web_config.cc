#include "web_config.h"

#include "log.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

namespace shmetrics::exporter {

namespace {

// ---- Reading the YAML ------------------------------------------------------

// The Go names exporter-toolkit accepts: Go 1.19's tls.CipherSuites(), the
// ones it does not call insecure. TLS 1.3 suites are accepted and unused.
constexpr std::array<std::string_view, 17> kGoCipherSuites = {
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
};

bool is_tls13_suite(std::string_view openssl_name) { return openssl_name.starts_with("TLS_"); }

// Go 1.19's default order for TLS 1.0-1.2, without 3DES.
constexpr std::string_view kGoDefaultCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:"
    "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA";
constexpr std::string_view kGoDefaultCurves = "X25519:P-256:P-384:P-521";

struct NamedValue {
  std::string_view name;
  std::string_view openssl_name;
  int value;
};
constexpr std::array<NamedValue, 4> kCurves = {{
    {"CurveP256", "P-256", 0}, {"CurveP384", "P-384", 0},
    {"CurveP521", "P-521", 0}, {"X25519", "X25519", 0},
}};
constexpr std::array<NamedValue, 4> kVersions = {{
    {"TLS10", "", TLS1_VERSION}, {"TLS11", "", TLS1_1_VERSION},
    {"TLS12", "", TLS1_2_VERSION}, {"TLS13", "", TLS1_3_VERSION},
}};
constexpr std::array<std::pair<std::string_view, ClientAuth>, 6> kClientAuths = {{
    {"NoClientCert", ClientAuth::kNoClientCert},
    {"RequestClientCert", ClientAuth::kRequestClientCert},
    {"RequireAnyClientCert", ClientAuth::kRequireAnyClientCert},
    {"RequireClientCert", ClientAuth::kRequireAnyClientCert},  // the toolkit's old name
    {"VerifyClientCertIfGiven", ClientAuth::kVerifyClientCertIfGiven},
    {"RequireAndVerifyClientCert", ClientAuth::kRequireAndVerifyClientCert},
}};

// The costliest bcrypt hash taken (Go's bcrypt takes up to 31).
constexpr int kMaxBcryptCost = 16;

// The longest value a configured header may have (a long
// Content-Security-Policy is a few hundred bytes).
constexpr std::size_t kMaxHeaderValueBytes = 4096;

// The headers the toolkit lets a file set, and their allowed values (empty:
// any value).
const std::map<std::string_view, std::vector<std::string_view>>& allowed_headers() {
  static const std::map<std::string_view, std::vector<std::string_view>> headers = {
      {"Content-Security-Policy", {}},
      {"Strict-Transport-Security", {}},
      {"X-Content-Type-Options", {"nosniff"}},
      {"X-Frame-Options", {"deny", "sameorigin"}},
      {"X-XSS-Protection", {}},
  };
  return headers;
}

template <typename Range, typename Project>
std::string join(const Range& range, Project project) {
  std::string out;
  for (const auto& item : range) {
    if (!out.empty()) out += ", ";
    out += project(item);
  }
  return out;
}

// Walks the document the way yaml.v2's UnmarshalStrict fills the toolkit's
// structs, with errors that name the file, the key and its line.
class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const YAML::Node& node, std::string_view key, std::string_view what) const {
    std::string message = "web config " + path_ + ": ";
    if (!key.empty()) message += "\"" + std::string(key) + "\" ";
    message += what;
    if (node.Mark().line >= 0) message += " (line " + std::to_string(node.Mark().line + 1) + ")";
    throw WebConfigError(message);
  }

  // The map's entries after checking that it is a map (null: none) whose keys
  // are all known and given once.
  std::vector<std::pair<std::string, YAML::Node>> entries(
      const YAML::Node& node, std::string_view key,
      std::initializer_list<std::string_view> known) const {
    std::vector<std::pair<std::string, YAML::Node>> out;
    if (node.IsNull()) return out;
    if (!node.IsMap()) fail(node, key, "is " + kind(node) + ", expected a map");
    for (const auto& entry : node) {
      std::string name = scalar_key(entry.first, key);
      std::string full = key.empty() ? name : std::string(key) + "." + name;
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        fail(entry.first, "",
             "unknown key \"" + full + "\": expected one of " +
                 join(known, [](std::string_view k) { return std::string(k); }));
      }
      if (std::any_of(out.begin(), out.end(), [&](const auto& e) { return e.first == name; })) {
        fail(entry.first, full, "is given twice");
      }
      out.emplace_back(name, entry.second);
    }
    return out;
  }

  // A map of strings to strings, keys once each (null: empty).
  std::vector<std::pair<std::string, std::string>> string_map(const YAML::Node& node,
                                                              std::string_view key) const {
    std::vector<std::pair<std::string, std::string>> out;
    if (node.IsNull()) return out;
    if (!node.IsMap()) fail(node, key, "is " + kind(node) + ", expected a map");
    for (const auto& entry : node) {
      std::string name = scalar_key(entry.first, key);
      std::string full = std::string(key) + "." + name;
      if (std::any_of(out.begin(), out.end(), [&](const auto& e) { return e.first == name; })) {
        fail(entry.first, full, "is given twice");
      }
      out.emplace_back(name, string(entry.second, full));
    }
    return out;
  }

  // yaml.v2 puts any scalar's text into a string; null is "".
  std::string string(const YAML::Node& node, std::string_view key) const {
    if (node.IsNull()) return "";
    if (!node.IsScalar()) fail(node, key, "is " + kind(node) + ", expected a string");
    return node.Scalar();
  }

  // YAML 1.1 booleans, unquoted; null is false (Go's zero value).
  bool boolean(const YAML::Node& node, std::string_view key) const {
    if (node.IsNull()) return false;
    if (node.IsScalar() && node.Tag() != "!") {
      static const std::set<std::string_view> yes = {"y", "Y", "yes", "Yes", "YES", "true",
                                                     "True", "TRUE", "on", "On", "ON"};
      static const std::set<std::string_view> no = {"n", "N", "no", "No", "NO", "false",
                                                    "False", "FALSE", "off", "Off", "OFF"};
      if (yes.contains(node.Scalar())) return true;
      if (no.contains(node.Scalar())) return false;
    }
    fail(node, key, "is " + kind(node) + ", expected true or false");
  }

  std::vector<std::string> strings(const YAML::Node& node, std::string_view key) const {
    std::vector<std::string> out;
    if (node.IsNull()) return out;
    if (!node.IsSequence()) fail(node, key, "is " + kind(node) + ", expected a list of strings");
    for (const auto& item : node) out.push_back(string(item, key));
    return out;
  }

 private:
  std::string scalar_key(const YAML::Node& node, std::string_view parent) const {
    if (!node.IsScalar()) fail(node, parent, "has a key that is " + kind(node) + ", expected a string");
    return node.Scalar();
  }

  static std::string kind(const YAML::Node& node) {
    if (node.IsMap()) return "a map";
    if (node.IsSequence()) return "a list";
    if (node.IsNull()) return "empty";
    return "\"" + node.Scalar() + "\"";
  }

  std::string path_;
};

template <std::size_t N>
const NamedValue& named(const Reader& reader, const YAML::Node& node, std::string_view key,
                        const std::array<NamedValue, N>& table, std::string_view what) {
  std::string name = reader.string(node, key);
  for (const auto& entry : table) {
    if (entry.name == name) return entry;
  }
  reader.fail(node, key, "is an unknown " + std::string(what) + " \"" + name + "\": expected one of " +
                             join(table, [](const NamedValue& v) { return std::string(v.name); }));
}

// config_util.JoinDir: relative paths are joined with the file's directory.
std::string join_dir(const std::string& config_path, const std::string& file) {
  if (file.empty() || file.front() == '/') return file;
  return (std::filesystem::path(config_path).parent_path() / file).lexically_normal().string();
}

// What crypt_r verifies in the way Go's bcrypt does: a well-formed hash, every
// version taken as $2b$ (Go ignores the minor version). Empty when malformed.
std::string normalized_bcrypt(std::string_view hash, std::string* why) {
  static constexpr std::string_view kAlphabet =
      "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string_view rest;
  for (std::string_view prefix : {"$2$", "$2a$", "$2b$", "$2x$", "$2y$"}) {
    if (hash.starts_with(prefix)) rest = hash.substr(prefix.size());
  }
  if (rest.empty()) {
    *why = "is not a bcrypt hash: expected $2a$, $2b$ or $2y$, a cost and 53 characters";
    return "";
  }
  if (rest.size() != 3 + 53 || rest[2] != '$' || rest.substr(3).find_first_not_of(kAlphabet) != std::string_view::npos ||
      !std::isdigit(static_cast<unsigned char>(rest[0])) || !std::isdigit(static_cast<unsigned char>(rest[1]))) {
    *why = "is not a well-formed bcrypt hash: expected $2y$NN$ and 53 characters of [./A-Za-z0-9]";
    return "";
  }
  int cost = (rest[0] - '0') * 10 + (rest[1] - '0');
  if (cost < 4 || cost > kMaxBcryptCost) {
    *why = "has bcrypt cost " + std::to_string(cost) + ": expected 04 to " + std::to_string(kMaxBcryptCost) +
           " (each step doubles the time of a check, one check runs at a time: cost 16 takes seconds, 31 days)";
    return "";
  }
  return "$2b$" + std::string(rest);
}

}  // namespace

namespace {

// The web config and the files it names are read on the threads that serve
// connections when they change: only regular files of bounded size are
// read, so a FIFO, a device or a huge file cannot stall them.
constexpr off_t kMaxFileBytes = 1 << 20;

// Why `path` cannot be read as a regular file of at most kMaxFileBytes, or
// "" when it can; `content` gets its bytes when asked for.
std::string read_small_regular_file(const std::string& path, std::string* content = nullptr) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return std::strerror(errno);
  struct stat st {};
  std::string why;
  if (::fstat(fd, &st) != 0) {
    why = std::string("cannot stat it: ") + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    why = "it is not a regular file";
  } else if (st.st_size > kMaxFileBytes) {
    why = "it has " + std::to_string(st.st_size) + " bytes, more than the " + std::to_string(kMaxFileBytes) +
          " allowed";
  } else if (content != nullptr) {
    content->clear();
    char buffer[16384];
    for (;;) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        why = std::string("cannot read it: ") + std::strerror(errno);
        break;
      }
      if (n == 0) break;
      content->append(buffer, static_cast<std::size_t>(n));
      if (content->size() > static_cast<std::size_t>(kMaxFileBytes)) {
        why = "it grew past " + std::to_string(kMaxFileBytes) + " bytes while being read";
        break;
      }
    }
  }
  ::close(fd);
  return why;
}

}  // namespace

WebConfig load_web_config(const std::string& path) {
  Reader reader(path);
  YAML::Node root;
  std::string text;
  if (std::string why = read_small_regular_file(path, &text); !why.empty())
    throw WebConfigError("web config " + path + ": cannot read the file: " + why);
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw WebConfigError("web config " + path + ": not valid YAML: " + e.what());
  }

  WebConfig config;
  if (!root.IsNull() && !root.IsMap()) {
    reader.fail(root, "", "is not a map of tls_server_config, http_server_config and basic_auth_users");
  }
  TlsServerConfig tls;
  std::string client_auth_name, client_ca_file;
  for (const auto& [name, node] :
       reader.entries(root, "", {"tls_server_config", "http_server_config", "basic_auth_users"})) {
    if (name == "tls_server_config") {
      // yaml.v2 zeroes a struct given as null: Go's zero values then.
      if (node.IsNull()) {
        tls.min_version = TLS1_VERSION;
        tls.prefer_server_cipher_suites = false;
      }
      for (const auto& [key, value] : reader.entries(
               node, name,
               {"cert_file", "key_file", "client_auth_type", "client_ca_file", "cipher_suites",
                "curve_preferences", "min_version", "max_version", "prefer_server_cipher_suites",
                "client_allowed_sans"})) {
        std::string full = name + "." + key;
        if (key == "cert_file") tls.cert_file = reader.string(value, full);
        if (key == "key_file") tls.key_file = reader.string(value, full);
        if (key == "client_ca_file") client_ca_file = reader.string(value, full);
        if (key == "client_auth_type") {
          client_auth_name = reader.string(value, full);
          auto it = std::find_if(kClientAuths.begin(), kClientAuths.end(),
                                 [&](const auto& e) { return e.first == client_auth_name; });
          if (!client_auth_name.empty() && it == kClientAuths.end()) {
            reader.fail(value, full,
                        "is \"" + client_auth_name + "\": expected one of NoClientCert, RequestClientCert, "
                        "RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert");
          }
          if (it != kClientAuths.end()) tls.client_auth = it->second;
        }
        if (key == "min_version" || key == "max_version") {
          // Go's zero value: the default minimum of a Go 1.19 server, the maximum it knows.
          int version = key == "min_version" ? TLS1_VERSION : TLS1_3_VERSION;
          if (!value.IsNull()) version = named(reader, value, full, kVersions, "TLS version").value;
          (key == "min_version" ? tls.min_version : tls.max_version) = version;
        }
        if (key == "cipher_suites") {
          tls.cipher_suites.clear();
          reader.strings(value, full);  // the type check first
          for (const auto& item : value) {
            std::string go_name = reader.string(item, full);
            const char* openssl_name = OPENSSL_cipher_name(go_name.c_str());
            if (std::find(kGoCipherSuites.begin(), kGoCipherSuites.end(), go_name) == kGoCipherSuites.end() ||
                openssl_name == nullptr || std::string_view(openssl_name) == "(NONE)") {
              reader.fail(item, full,
                          "names an unknown cipher suite \"" + go_name + "\": expected Go names, one of " +
                              join(kGoCipherSuites, [](std::string_view n) { return std::string(n); }));
            }
            tls.cipher_suites.emplace_back(openssl_name);
          }
        }
        if (key == "curve_preferences") {
          tls.curve_preferences.clear();
          reader.strings(value, full);
          for (const auto& item : value) {
            tls.curve_preferences.emplace_back(named(reader, item, full, kCurves, "curve").openssl_name);
          }
        }
        if (key == "prefer_server_cipher_suites") tls.prefer_server_cipher_suites = reader.boolean(value, full);
        if (key == "client_allowed_sans") tls.client_allowed_sans = reader.strings(value, full);
      }
    }
    if (name == "http_server_config") {
      if (node.IsNull()) config.http2 = false;  // Go's zero value
      for (const auto& [key, value] : reader.entries(node, name, {"http2", "headers"})) {
        std::string full = name + "." + key;
        if (key == "http2") config.http2 = reader.boolean(value, full);
        if (key != "headers") continue;
        config.headers = reader.string_map(value, full);
        for (const auto& [header, header_value] : config.headers) {
          const auto& table = allowed_headers();
          auto allowed = table.find(header);
          if (allowed == table.end()) {
            reader.fail(value, full + "." + header,
                        "is a header that can not be configured: expected one of " +
                            join(table, [](const auto& e) { return std::string(e.first); }));
          }
          // Written into every answer as they are: a CR or LF would end the
          // header (and the head) early, letting the file forge headers or a
          // body; a value past Beast's field limit would fail every answer.
          if (header_value.size() > kMaxHeaderValueBytes)
            reader.fail(value, full + "." + header,
                        "is " + std::to_string(header_value.size()) + " bytes long: expected at most " +
                            std::to_string(kMaxHeaderValueBytes));
          for (std::size_t i = 0; i < header_value.size(); ++i) {
            const auto c = static_cast<unsigned char>(header_value[i]);
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
              char byte[8];
              std::snprintf(byte, sizeof byte, "0x%02x", c);
              reader.fail(value, full + "." + header,
                          "has the control character " + std::string(byte) + " at byte " + std::to_string(i) +
                              ": expected visible characters, spaces and tabs only (a CR or LF would split the "
                              "answer)");
            }
          }
          const auto& values = allowed->second;
          if (!values.empty() && std::find(values.begin(), values.end(), header_value) == values.end()) {
            reader.fail(value, full + "." + header,
                        "is \"" + header_value + "\": expected one of " +
                            join(values, [](std::string_view v) { return std::string(v); }));
          }
        }
      }
    }
    if (name == "basic_auth_users") {
      for (auto& [user, hash] : reader.string_map(node, name)) {
        std::string why;
        if (normalized_bcrypt(hash, &why).empty()) reader.fail(node, name + "." + user, why);
        config.users.emplace(user, hash);
      }
    }
  }

  if (tls.cert_file.empty() && tls.key_file.empty() && client_auth_name.empty() && client_ca_file.empty()) {
    return config;  // plain HTTP
  }
  if (tls.cert_file.empty()) reader.fail(YAML::Node(), "tls_server_config.cert_file", "is missing: TLS needs a certificate");
  if (tls.key_file.empty()) reader.fail(YAML::Node(), "tls_server_config.key_file", "is missing: TLS needs a key");
  if (!client_ca_file.empty() && tls.client_auth == ClientAuth::kNoClientCert) {
    reader.fail(YAML::Node(), "tls_server_config.client_ca_file",
                "is given without a client_auth_type that asks for client certificates "
                "(the toolkit: \"Client CA's have been configured without a Client Auth Policy\")");
  }
  if (tls.min_version > tls.max_version) {
    reader.fail(YAML::Node(), "tls_server_config.min_version", "is above max_version: no TLS version is left");
  }
  if (!tls.cipher_suites.empty() &&
      std::all_of(tls.cipher_suites.begin(), tls.cipher_suites.end(),
                  [](const std::string& n) { return is_tls13_suite(n); })) {
    reader.fail(YAML::Node(), "tls_server_config.cipher_suites",
                "names only TLS 1.3 suites, which are not configurable: list TLS 1.2 suites or remove the key");
  }
  tls.cert_file = join_dir(path, tls.cert_file);
  tls.key_file = join_dir(path, tls.key_file);
  tls.client_ca_file = join_dir(path, client_ca_file);
  config.tls = std::move(tls);
  return config;
}

// ---- The TLS context -------------------------------------------------------

namespace {

std::string openssl_reason() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    if (!out.empty()) out += "; ";
    out += buffer;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

[[noreturn]] void tls_fail(std::string_view what, const std::string& file) {
  std::string message = std::string(what);
  if (!file.empty()) message += " " + file;
  throw WebConfigError(message + ": " + openssl_reason());
}

// The client checks that OpenSSL's verify mode cannot express: verifying or
// not, and the allowed SANs of the leaf. Owned by the SSL_CTX (ex_data), so it
// lives as long as any connection made from the context.
struct ClientPolicy {
  bool verify_chain = false;
  std::vector<std::string> allowed_sans;
};

int client_policy_index() {
  static const int index = SSL_CTX_get_ex_new_index(
      0, nullptr, nullptr, nullptr,
      [](void*, void* policy, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<ClientPolicy*>(policy); });
  return index;
}

// Go's text for an IP address: dotted for IPv4 and IPv4-mapped IPv6.
std::string ip_text(const ASN1_OCTET_STRING* ip) {
  char text[INET6_ADDRSTRLEN] = "";
  const unsigned char* bytes = ASN1_STRING_get0_data(ip);
  int length = ASN1_STRING_length(ip);
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (length == 16 && std::memcmp(bytes, kMapped, 12) == 0) {
    bytes += 12;
    length = 4;
  }
  if (length == 4) inet_ntop(AF_INET, bytes, text, sizeof text);
  if (length == 16) inet_ntop(AF_INET6, bytes, text, sizeof text);
  return text;
}

bool has_allowed_san(X509* leaf, const std::vector<std::string>& allowed) {
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return false;
  bool found = false;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && !found; ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    std::string value;
    if (name->type == GEN_DNS || name->type == GEN_EMAIL || name->type == GEN_URI) {
      const ASN1_IA5STRING* text = name->d.ia5;
      value.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)), ASN1_STRING_length(text));
    } else if (name->type == GEN_IPADD) {
      value = ip_text(name->d.ip);
    } else {
      continue;
    }
    found = !value.empty() && std::find(allowed.begin(), allowed.end(), value) != allowed.end();
  }
  GENERAL_NAMES_free(names);
  return found;
}

// Replaces OpenSSL's chain verification of a client certificate.
int verify_client(X509_STORE_CTX* store, void* arg) {
  const auto* policy = static_cast<const ClientPolicy*>(arg);
  if (policy->verify_chain && X509_verify_cert(store) != 1) return 0;
  if (!policy->allowed_sans.empty() && !has_allowed_san(X509_STORE_CTX_get0_cert(store), policy->allowed_sans)) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  return 1;
}

int refuse_passphrase(char*, int, int, void*) { return -1; }

}  // namespace

std::shared_ptr<boost::asio::ssl::context> make_tls_context(const TlsServerConfig& tls) {
  auto context = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  SSL_CTX* ctx = context->native_handle();
  ERR_clear_error();
  SSL_CTX_set_default_passwd_cb(ctx, refuse_passphrase);
  for (auto [key, file] : {std::pair{"cert_file", &tls.cert_file}, std::pair{"key_file", &tls.key_file},
                           std::pair{"client_ca_file", &tls.client_ca_file}}) {
    if (file->empty()) continue;
    if (std::string why = read_small_regular_file(*file); !why.empty())
      throw WebConfigError("tls_server_config." + std::string(key) + ": cannot read " + *file + ": " + why);
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1) {
    tls_fail("tls_server_config.cert_file: cannot load the certificate chain", tls.cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    tls_fail("tls_server_config.key_file: cannot load the private key", tls.key_file);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    tls_fail("tls_server_config.key_file: the key does not match the certificate in " + tls.cert_file + ":",
             tls.key_file);
  }

  // Versions: what the file says, also below what openssl.cnf allows; TLS 1.0
  // and 1.1 sign with MD5-SHA1 and SHA-1, which only security level 0 allows.
  SSL_CTX_set_min_proto_version(ctx, tls.min_version);
  SSL_CTX_set_max_proto_version(ctx, tls.max_version);
  std::string ciphers;
  for (const auto& name : tls.cipher_suites) {
    if (is_tls13_suite(name)) continue;
    if (!ciphers.empty()) ciphers += ':';
    ciphers += name;
  }
  if (ciphers.empty()) ciphers = kGoDefaultCiphers;
  if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
    tls_fail("tls_server_config.cipher_suites: OpenSSL accepts none of " + ciphers, "");
  }
  SSL_CTX_set_security_level(ctx, tls.min_version < TLS1_2_VERSION ? 0 : 1);
  std::string curves;
  for (const auto& name : tls.curve_preferences) curves += (curves.empty() ? "" : ":") + name;
  if (curves.empty()) curves = kGoDefaultCurves;
  if (SSL_CTX_set1_groups_list(ctx, curves.c_str()) != 1) {
    tls_fail("tls_server_config.curve_preferences: OpenSSL accepts none of " + curves, "");
  }

  long options = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;
  if (tls.prefer_server_cipher_suites) options |= SSL_OP_CIPHER_SERVER_PREFERENCE;
  SSL_CTX_set_options(ctx, options);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // Like Go: stateless tickets (this context's random key), no session cache.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  static constexpr unsigned char kSessionContext[] = "shmetrics-exporter";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);

  // Client certificates.
  auto owned_policy = std::make_unique<ClientPolicy>();
  ClientPolicy& policy = *owned_policy;
  if (SSL_CTX_set_ex_data(ctx, client_policy_index(), owned_policy.release()) != 1) {
    delete &policy;
    tls_fail("tls_server_config: cannot attach the client policy", "");
  }
  int mode = SSL_VERIFY_PEER;
  switch (tls.client_auth) {
    case ClientAuth::kNoClientCert: mode = SSL_VERIFY_NONE; break;
    case ClientAuth::kRequestClientCert: break;
    case ClientAuth::kRequireAnyClientCert: mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT; break;
    case ClientAuth::kVerifyClientCertIfGiven: policy.verify_chain = true; break;
    case ClientAuth::kRequireAndVerifyClientCert:
      policy.verify_chain = true;
      mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
      break;
  }
  if (mode != SSL_VERIFY_NONE) {
    policy.allowed_sans = tls.client_allowed_sans;
    // The toolkit checks the SANs of a certificate that is not there and drops
    // the connection.
    if (!policy.allowed_sans.empty()) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    if (!tls.client_ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, tls.client_ca_file.c_str(), nullptr) != 1) {
        tls_fail("tls_server_config.client_ca_file: cannot load CA certificates from", tls.client_ca_file);
      }
      // The CA names in the certificate request, as Go sends them.
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str());
      if (names == nullptr) {
        tls_fail("tls_server_config.client_ca_file: cannot read CA names from", tls.client_ca_file);
      }
      SSL_CTX_set_client_CA_list(ctx, names);
    } else if (policy.verify_chain && SSL_CTX_set_default_verify_paths(ctx) != 1) {
      tls_fail("tls_server_config: cannot load the system's CA certificates", "");
    }
    SSL_CTX_set_verify(ctx, mode, nullptr);
    SSL_CTX_set_cert_verify_callback(ctx, verify_client, &policy);
  }
  return context;
}

// ---- Basic auth ------------------------------------------------------------

namespace {

struct Credentials {
  std::string user, password;
};

// Go's Request.BasicAuth: "Basic " (any case), standard base64 with padding,
// user and password split at the first ':'.
std::optional<Credentials> parse_basic_auth(std::string_view header) {
  constexpr std::string_view kPrefix = "basic ";
  if (header.size() < kPrefix.size()) return std::nullopt;
  for (std::size_t i = 0; i < kPrefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kPrefix[i]) return std::nullopt;
  }
  std::string_view encoded = header.substr(kPrefix.size());
  // EVP_DecodeBlock skips blanks and does not report padding: check first.
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (encoded.size() % 4 != 0) return std::nullopt;
  std::size_t padding = encoded.size() - std::min(encoded.size(), encoded.find_last_not_of('=') + 1);
  if (padding > 2 || encoded.substr(0, encoded.size() - padding).find_first_not_of(kAlphabet) != std::string_view::npos) {
    return std::nullopt;
  }
  std::string decoded(encoded.size() / 4 * 3, '\0');
  int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                               reinterpret_cast<const unsigned char*>(encoded.data()), static_cast<int>(encoded.size()));
  if (length < 0) return std::nullopt;
  decoded.resize(static_cast<std::size_t>(length) - padding);
  std::size_t colon = decoded.find(':');
  if (colon == std::string::npos) {
    OPENSSL_cleanse(decoded.data(), decoded.size());
    return std::nullopt;
  }
  Credentials out{decoded.substr(0, colon), decoded.substr(colon + 1)};
  OPENSSL_cleanse(decoded.data(), decoded.size());
  return out;
}

int bcrypt_cost(std::string_view normalized) { return std::stoi(std::string(normalized.substr(4, 2))); }

}  // namespace

BasicAuth::BasicAuth(std::map<std::string, std::string, std::less<>> users) : users_(std::move(users)) {
  if (RAND_bytes(hmac_key_, sizeof hmac_key_) != 1) throw WebConfigError("basic auth: no random bytes: " + openssl_reason());
  // Unknown users are checked against the costliest configured hash: as slow
  // as a known one, and it never lets them in (check() also asks known_user).
  int max_cost = -1;
  for (auto& [user, hash] : users_) {
    std::string why;
    std::string normalized = normalized_bcrypt(hash, &why);
    if (normalized.empty()) throw WebConfigError("basic_auth_users." + user + " " + why);
    hash = normalized;
    if (bcrypt_cost(normalized) > max_cost) {
      max_cost = bcrypt_cost(normalized);
      dummy_hash_ = normalized;
    }
  }
}

BasicAuth::Lookup BasicAuth::look_up(std::string_view authorization) const {
  Lookup out;
  auto credentials = parse_basic_auth(authorization);
  // crypt_r stops at NUL; Go's bcrypt does not: such a password never matches.
  if (!credentials || credentials->password.find('\0') != std::string::npos || users_.empty()) return out;
  out.well_formed = true;
  auto user = users_.find(credentials->user);
  out.known_user = user != users_.end();
  out.hash = out.known_user ? &user->second : &dummy_hash_;
  // HMAC over length-prefixed fields, so no two triples share a key.
  std::string message;
  for (const std::string* field : std::initializer_list<const std::string*>{&credentials->user, out.hash, &credentials->password}) {
    message += std::to_string(field->size()) + ':' + *field;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_length = 0;
  HMAC(EVP_sha256(), hmac_key_, sizeof hmac_key_, reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), digest, &digest_length);
  OPENSSL_cleanse(message.data(), message.size());
  out.key.assign(reinterpret_cast<const char*>(digest), digest_length);
  out.password = std::move(credentials->password);
  OPENSSL_cleanse(credentials->user.data(), credentials->user.size());
  return out;
}

std::optional<bool> BasicAuth::cached(std::string_view authorization) const {
  Lookup lookup = look_up(authorization);
  OPENSSL_cleanse(lookup.password.data(), lookup.password.size());
  if (!lookup.well_formed) return false;
  std::lock_guard lock(cache_mutex_);
  if (good_.count(lookup.key) != 0) return true;
  if (bad_.count(lookup.key) != 0) return false;
  return std::nullopt;
}

bool BasicAuth::check(std::string_view authorization) {
  Lookup lookup = look_up(authorization);
  if (!lookup.well_formed) return false;
  {
    std::lock_guard lock(cache_mutex_);
    bool good = good_.count(lookup.key) != 0;
    if (good || bad_.count(lookup.key) != 0) {
      OPENSSL_cleanse(lookup.password.data(), lookup.password.size());
      return good;
    }
  }
  bool matches = false;
  {
    // One bcrypt at a time, as in the toolkit: a flood of guesses costs one core.
    std::lock_guard lock(bcrypt_mutex_);
    auto data = std::make_unique<crypt_data>();
    const char* result = crypt_r(lookup.password.c_str(), lookup.hash->c_str(), data.get());
    matches = result != nullptr && std::strlen(result) == lookup.hash->size() &&
              CRYPTO_memcmp(result, lookup.hash->data(), lookup.hash->size()) == 0;
    OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  }
  OPENSSL_cleanse(lookup.password.data(), lookup.password.size());
  bool ok = matches && lookup.known_user;
  std::lock_guard lock(cache_mutex_);
  // Good and bad answers live apart: a flood of wrong guesses evicts only
  // other wrong guesses.
  std::unordered_set<std::string>& cache = ok ? good_ : bad_;
  if (cache.size() >= kCacheEntries) {
    // A random victim, so that no pattern of requests keeps an entry out.
    static thread_local std::minstd_rand random{std::random_device{}()};
    auto victim = cache.begin();
    std::advance(victim, std::uniform_int_distribution<std::size_t>(0, cache.size() - 1)(random));
    cache.erase(victim);
  }
  cache.insert(std::move(lookup.key));
  return ok;
}

// ---- Watching the files ----------------------------------------------------

namespace {

std::string stat_summary(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::string("missing: ") + std::strerror(errno);
  return std::to_string(st.st_dev) + ' ' + std::to_string(st.st_ino) + ' ' + std::to_string(st.st_size) + ' ' +
         std::to_string(st.st_mtim.tv_sec) + '.' + std::to_string(st.st_mtim.tv_nsec) + ' ' +
         std::to_string(st.st_ctim.tv_sec) + '.' + std::to_string(st.st_ctim.tv_nsec);
}

}  // namespace

WebConfigWatcher::WebConfigWatcher(std::string path, std::chrono::milliseconds interval)
    : path_(std::move(path)), interval_(interval) {
  std::lock_guard lock(check_mutex_);
  reload(true);
  next_check_ = std::chrono::steady_clock::now() + interval_;
}

void WebConfigWatcher::reload(bool forced) {
  // Stamp before reading: a change while reading is seen at the next check.
  Stamps stamps = {{path_, stat_summary(path_)}};
  std::optional<WebConfig> parsed;
  auto add_stamps = [&stamps](const WebConfig& config) {
    if (!config.tls) return;
    for (const auto* file : {&config.tls->cert_file, &config.tls->key_file, &config.tls->client_ca_file}) {
      if (!file->empty()) stamps.emplace_back(*file, stat_summary(*file));
    }
  };
  try {
    parsed = load_web_config(path_);
    add_stamps(*parsed);
    auto loaded = std::make_shared<LoadedWebConfig>();
    if (parsed->tls) loaded->tls = make_tls_context(*parsed->tls);
    // The same users keep their BasicAuth and its cache: a certificate
    // rotation or a SIGHUP must not send every scraper back to bcrypt.
    if (current_ != nullptr && current_->config.users == parsed->users)
      loaded->auth = current_->auth;
    else
      loaded->auth = std::make_shared<BasicAuth>(parsed->users);
    loaded->config = std::move(*parsed);
    bool first = current_ == nullptr;
    {
      std::lock_guard lock(current_mutex_);
      current_ = std::move(loaded);
    }
    good_stamps_ = std::move(stamps);
    failed_stamps_.clear();
    if (!first) log_event("info", "web_config_reloaded", {{"file", path_}});
  } catch (const WebConfigError& e) {
    if (current_ == nullptr) throw;  // the constructor: the caller reports it
    // Watch the files the failed configuration names, or, when it could not
    // be read, those of the last good one.
    if (!parsed) add_stamps(current_->config);
    if (forced || stamps != failed_stamps_) {
      log_event("error", "web_config_invalid",
                {{"file", path_}, {"reason", e.what()}, {"action", "keeping the last good configuration"}});
    }
    failed_stamps_ = std::move(stamps);
  }
}

std::shared_ptr<const LoadedWebConfig> WebConfigWatcher::current() {
  auto now = std::chrono::steady_clock::now();
  std::unique_lock check(check_mutex_, std::try_to_lock);
  if (check && now >= next_check_) {
    next_check_ = now + interval_;
    Stamps stamps = {{path_, stat_summary(path_)}};
    const Stamps& watched = failed_stamps_.empty() ? good_stamps_ : failed_stamps_;
    for (std::size_t i = 1; i < watched.size(); ++i) stamps.emplace_back(watched[i].first, stat_summary(watched[i].first));
    if (stamps != watched) reload(false);
  }
  if (check) check.unlock();
  std::lock_guard lock(current_mutex_);
  return current_;
}

void WebConfigWatcher::reload_now() {
  std::lock_guard lock(check_mutex_);
  reload(true);
  next_check_ = std::chrono::steady_clock::now() + interval_;
}

}  // namespace shmetrics::exporter
