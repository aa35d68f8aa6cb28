// The exporter's --web.config.file against exporter-toolkit 0.8.2's
// behaviour: what the file may say and how an error reads, that the TLS
// context really handshakes (over a socket pair, with certificates made at
// run time by the openssl command) as each client auth mode demands, basic
// auth and its cache, and the watcher's reloads.
#include "log.h"
#include "web_config.h"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <crypt.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

// GCC 12 warns about the members a designated initializer leaves to their
// defaults, which is what Client{.max_version = ...} means here.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace {

using namespace shmetrics::exporter;
namespace fs = std::filesystem;
namespace asio = boost::asio;

// A directory removed at the end of its scope.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "test_web_config-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { fs::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

// Sets the file's mtime to `seconds` past the epoch: a change the watcher
// sees without sleeping past a timestamp granularity.
void set_mtime(const std::string& path, long seconds) {
  timespec times[2] = {{seconds, 0}, {seconds, 0}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}

void run(const std::string& dir, const std::string& command) {
  std::string line = "cd '" + dir + "' && (" + command + ") >/dev/null 2>&1";
  INFO(line);
  REQUIRE(std::system(line.c_str()) == 0);
}

// Two CAs, certificates signed by them, made once per test run with P-256 keys.
struct Pki {
  TempDir dir;
  std::string file(const std::string& name) const { return dir / name; }

  Pki() {
    std::string d = dir.path().string();
    auto ca = [&](const std::string& name) {
      run(d, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout " + name +
                 ".key -out " + name + ".pem -subj /CN=" + name +
                 " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign");
    };
    auto leaf = [&](const std::string& name, const std::string& ca_name, const std::string& sans) {
      run(d, "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + name + ".key -out " +
                 name + ".csr -subj /CN=" + name + " && printf 'subjectAltName=" + sans + "\\n' > " + name +
                 ".ext && openssl x509 -req -days 2 -in " + name + ".csr -CA " + ca_name + ".pem -CAkey " +
                 ca_name + ".key -CAcreateserial -extfile " + name + ".ext -out " + name + ".pem");
    };
    ca("ca");
    ca("other_ca");
    leaf("server", "ca", "DNS:localhost");
    leaf("server2", "ca", "DNS:localhost");
    leaf("client", "ca", "DNS:client.example,IP:10.1.2.3,email:ops@example.org,URI:spiffe://example.org/scraper");
    leaf("stranger", "ca", "DNS:stranger.example");
    leaf("other_client", "other_ca", "DNS:client.example");
    run(d, "openssl pkey -in server.key -aes128 -passout pass:secret -out encrypted.key");
  }
};

const Pki& pki() {
  static Pki instance;
  return instance;
}

// A config file in its own directory.
struct ConfigFile {
  TempDir dir;
  std::string path = dir / "web.yml";
  explicit ConfigFile(const std::string& text) { write_file(path, text); }
};

std::string tls_yaml(const std::string& extra = "") {
  return "tls_server_config:\n  cert_file: " + pki().file("server.pem") + "\n  key_file: " + pki().file("server.key") +
         "\n" + extra;
}

// The message load_web_config throws for `text`, which must be an error.
std::string load_error(const std::string& text, std::string* path_out = nullptr) {
  ConfigFile config(text);
  if (path_out != nullptr) *path_out = config.path;
  try {
    load_web_config(config.path);
  } catch (const WebConfigError& e) {
    std::string message = e.what();
    CHECK(message.starts_with("web config " + config.path + ": "));
    return message;
  }
  FAIL("no error for:\n" << text);
  return "";
}

// ---- TLS over a socket pair ------------------------------------------------

struct Client {
  int min_version = TLS1_2_VERSION, max_version = TLS1_3_VERSION;
  std::string cert;  // a name in pki(): NAME.pem and NAME.key
  std::string groups;
  std::string ciphers;
};

struct Outcome {
  bool server_ok = false;  // the server's handshake succeeded
  bool client_ok = false;  // the client read the server's first bytes
  std::string version, cipher, server_error;
};

// `drop`, when given, is released once the server's stream exists: the
// connection must outlive the last shared_ptr to its context.
Outcome handshake(asio::ssl::context& server_context, const Client& options,
                  std::shared_ptr<asio::ssl::context>* drop = nullptr) {
  asio::ssl::context client_context(asio::ssl::context::tls_client);
  SSL_CTX* c = client_context.native_handle();
  SSL_CTX_set_security_level(c, 0);
  SSL_CTX_set_min_proto_version(c, options.min_version);
  SSL_CTX_set_max_proto_version(c, options.max_version);
  if (!options.groups.empty()) REQUIRE(SSL_CTX_set1_groups_list(c, options.groups.c_str()) == 1);
  if (!options.ciphers.empty()) REQUIRE(SSL_CTX_set_cipher_list(c, options.ciphers.c_str()) == 1);
  if (!options.cert.empty()) {
    client_context.use_certificate_chain_file(pki().file(options.cert + ".pem"));
    client_context.use_private_key_file(pki().file(options.cert + ".key"), asio::ssl::context::pem);
  }
  asio::io_context io;
  asio::ssl::stream<asio::local::stream_protocol::socket> server(io, server_context), client(io, client_context);
  asio::local::connect_pair(server.next_layer(), client.next_layer());
  if (drop != nullptr) drop->reset();

  Outcome out;
  std::thread server_thread([&] {
    boost::system::error_code ec;
    server.handshake(asio::ssl::stream_base::server, ec);
    if (!ec) {
      out.server_ok = true;
      asio::write(server, asio::buffer("ok", 2), ec);
    } else {
      out.server_error = ec.message();
    }
    server.next_layer().close();
  });
  boost::system::error_code ec;
  client.handshake(asio::ssl::stream_base::client, ec);
  if (!ec) {
    out.version = SSL_get_version(client.native_handle());
    out.cipher = SSL_get_cipher_name(client.native_handle());
    char reply[2];
    asio::read(client, asio::buffer(reply), ec);
    out.client_ok = !ec && std::string_view(reply, 2) == "ok";
  }
  client.next_layer().close();
  server_thread.join();
  return out;
}

std::shared_ptr<asio::ssl::context> context_for(const std::string& yaml) {
  ConfigFile config(yaml);
  WebConfig loaded = load_web_config(config.path);
  REQUIRE(loaded.tls);
  return make_tls_context(*loaded.tls);
}

bool connects(const std::string& yaml, const Client& client) {
  auto context = context_for(yaml);
  Outcome out = handshake(*context, client);
  INFO("server error: " << out.server_error);
  return out.server_ok && out.client_ok;
}

// ---- Basic auth helpers ----------------------------------------------------

std::string bcrypt(const std::string& password, int cost = 4) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn("$2b$", cost, nullptr, 0, setting, sizeof setting) != nullptr);
  crypt_data data{};
  const char* hash = crypt_r(password.c_str(), setting, &data);
  REQUIRE(hash != nullptr);
  REQUIRE(std::string_view(hash).starts_with("$2b$"));
  return hash;
}

std::string basic(const std::string& credentials) {
  std::string out(4 * ((credentials.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(credentials.data()), static_cast<int>(credentials.size()));
  out.resize(static_cast<std::size_t>(n));
  return "Basic " + out;
}

// Captures log_event's lines while alive.
class LogCapture {
 public:
  LogCapture() : file_(std::tmpfile()) { set_log_output(file_); }
  ~LogCapture() {
    set_log_output(stderr);
    std::fclose(file_);
  }
  std::string text() const {
    std::fflush(file_);
    std::rewind(file_);
    std::string out;
    char buffer[4096];
    while (std::size_t n = std::fread(buffer, 1, sizeof buffer, file_)) out.append(buffer, n);
    std::fseek(file_, 0, SEEK_END);
    return out;
  }
  int count(const std::string& needle) const {
    std::string all = text();
    int n = 0;
    for (auto at = all.find(needle); at != std::string::npos; at = all.find(needle, at + 1)) ++n;
    return n;
  }

 private:
  std::FILE* file_;
};

}  // namespace

// ---- Reading the file ------------------------------------------------------

TEST_CASE("every_key_is_read", "[web_config]") {
  TempDir dir;
  fs::create_directories(dir.path() / "conf");
  std::string path = dir / "conf/web.yml";
  write_file(path, R"(
tls_server_config:
  cert_file: server.pem
  key_file: /abs/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ../cas/ca.pem
  min_version: TLS11
  max_version: TLS12
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_256_CBC_SHA, TLS_AES_128_GCM_SHA256,
                  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]
  curve_preferences: [CurveP384, X25519, CurveP256, CurveP521]
  prefer_server_cipher_suites: false
  client_allowed_sans: [a.example, 10.0.0.1]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: sameorigin
    Strict-Transport-Security: max-age=31536000
    X-Content-Type-Options: nosniff
    Content-Security-Policy: default-src 'self'
    X-XSS-Protection: 1; mode=block
basic_auth_users:
  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi
  bob: $2b$04$abcdefghijklmnopqrstuuJ0pp8AyOG.jl0sbTbKvT1hHYx5LZqIW
)");
  WebConfig config = load_web_config(path);
  REQUIRE(config.tls);
  const TlsServerConfig& tls = *config.tls;
  CHECK(tls.cert_file == dir / "conf/server.pem");
  CHECK(tls.key_file == "/abs/server.key");
  CHECK(tls.client_ca_file == dir / "cas/ca.pem");
  CHECK(tls.client_auth == ClientAuth::kRequireAndVerifyClientCert);
  CHECK(tls.min_version == TLS1_1_VERSION);
  CHECK(tls.max_version == TLS1_2_VERSION);
  CHECK(tls.cipher_suites == std::vector<std::string>{"ECDHE-RSA-AES128-GCM-SHA256", "AES256-SHA",
                                                      "TLS_AES_128_GCM_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"});
  CHECK(tls.curve_preferences == std::vector<std::string>{"P-384", "X25519", "P-256", "P-521"});
  CHECK_FALSE(tls.prefer_server_cipher_suites);
  CHECK(tls.client_allowed_sans == std::vector<std::string>{"a.example", "10.0.0.1"});
  CHECK_FALSE(config.http2);
  using Headers = std::vector<std::pair<std::string, std::string>>;
  CHECK(config.headers == Headers{{"X-Frame-Options", "sameorigin"},
                                  {"Strict-Transport-Security", "max-age=31536000"},
                                  {"X-Content-Type-Options", "nosniff"},
                                  {"Content-Security-Policy", "default-src 'self'"},
                                  {"X-XSS-Protection", "1; mode=block"}});
  REQUIRE(config.users.size() == 2);
  CHECK(config.users.at("alice").starts_with("$2y$10$QOau"));
  CHECK(config.users.at("bob").starts_with("$2b$04$"));
}

TEST_CASE("defaults_match_the_toolkit", "[web_config]") {
  SECTION("an empty file is plain HTTP without auth") {
    ConfigFile config("");
    WebConfig loaded = load_web_config(config.path);
    CHECK_FALSE(loaded.tls);
    CHECK(loaded.users.empty());
    CHECK(loaded.headers.empty());
    CHECK(loaded.http2);
  }
  SECTION("TLS with only the files given") {
    WebConfig loaded = load_web_config(ConfigFile(tls_yaml()).path);
    REQUIRE(loaded.tls);
    CHECK(loaded.tls->min_version == TLS1_2_VERSION);
    CHECK(loaded.tls->max_version == TLS1_3_VERSION);
    CHECK(loaded.tls->prefer_server_cipher_suites);
    CHECK(loaded.tls->client_auth == ClientAuth::kNoClientCert);
    CHECK(loaded.tls->cipher_suites.empty());
  }
  SECTION("keys without a value take Go's zero values") {
    WebConfig loaded = load_web_config(
        ConfigFile(tls_yaml("  min_version:\n  max_version: ~\n  prefer_server_cipher_suites:\n"
                            "http_server_config:\n  http2:\n"))
            .path);
    REQUIRE(loaded.tls);
    CHECK(loaded.tls->min_version == TLS1_VERSION);  // a Go 1.19 server's default minimum
    CHECK(loaded.tls->max_version == TLS1_3_VERSION);
    CHECK_FALSE(loaded.tls->prefer_server_cipher_suites);
    CHECK_FALSE(loaded.http2);
  }
  SECTION("YAML 1.1 booleans and scalars as strings") {
    WebConfig loaded =
        load_web_config(ConfigFile("tls_server_config:\n  cert_file: 123\n  key_file: true\n"
                                   "  prefer_server_cipher_suites: off\nhttp_server_config:\n  http2: yes\n")
                            .path);
    REQUIRE(loaded.tls);
    CHECK(fs::path(loaded.tls->cert_file).filename() == "123");
    CHECK(fs::path(loaded.tls->key_file).filename() == "true");
    CHECK_FALSE(loaded.tls->prefer_server_cipher_suites);
    CHECK(loaded.http2);
  }
  SECTION("the old RequireClientCert name") {
    WebConfig loaded = load_web_config(ConfigFile(tls_yaml("  client_auth_type: RequireClientCert\n")).path);
    CHECK(loaded.tls->client_auth == ClientAuth::kRequireAnyClientCert);
  }
}

TEST_CASE("errors_name_the_file_and_the_key", "[web_config]") {
  struct Case {
    std::string yaml;
    std::vector<std::string> expected;  // substrings of the message
  };
  const std::string head = tls_yaml();
  const std::vector<Case> cases = {
      {"tls_server_config:\n  cert: x\n",
       {"unknown key \"tls_server_config.cert\"", "expected one of cert_file, key_file", "line 2"}},
      {"tls_config: {}\n", {"unknown key \"tls_config\"", "tls_server_config, http_server_config, basic_auth_users"}},
      {"http_server_config:\n  http3: true\n", {"unknown key \"http_server_config.http3\"", "http2, headers"}},
      {head + "  cert_file: other.pem\n", {"\"tls_server_config.cert_file\" is given twice"}},
      {"tls_server_config:\n  cert_file: [a]\n", {"\"tls_server_config.cert_file\" is a list, expected a string"}},
      {"tls_server_config:\n  key_file: {a: b}\n", {"\"tls_server_config.key_file\" is a map, expected a string"}},
      {"tls_server_config: [a]\n", {"\"tls_server_config\" is a list, expected a map"}},
      {head + "  prefer_server_cipher_suites: \"true\"\n",
       {"\"tls_server_config.prefer_server_cipher_suites\"", "expected true or false"}},
      {head + "  client_auth_type: Foo\n",
       {"\"tls_server_config.client_auth_type\" is \"Foo\"", "RequireAndVerifyClientCert"}},
      {head + "  min_version: TLS14\n", {"\"tls_server_config.min_version\"", "\"TLS14\"", "TLS10, TLS11, TLS12, TLS13"}},
      {head + "  max_version: [TLS13]\n", {"\"tls_server_config.max_version\" is a list, expected a string"}},
      {head + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
       {"\"tls_server_config.cipher_suites\"", "unknown cipher suite \"TLS_RSA_WITH_RC4_128_SHA\""}},
      {head + "  cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]\n", {"unknown cipher suite \"ECDHE-RSA-AES128-GCM-SHA256\""}},
      {head + "  cipher_suites: TLS_RSA_WITH_AES_128_CBC_SHA\n", {"\"tls_server_config.cipher_suites\"", "expected a list"}},
      {head + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", {"\"tls_server_config.cipher_suites\"", "only TLS 1.3"}},
      {head + "  curve_preferences: [P256]\n", {"\"tls_server_config.curve_preferences\"", "unknown curve \"P256\"", "CurveP256"}},
      {head + "  min_version: TLS13\n  max_version: TLS12\n", {"\"tls_server_config.min_version\" is above max_version"}},
      {"tls_server_config:\n  client_auth_type: NoClientCert\n", {"\"tls_server_config.cert_file\" is missing"}},
      {"tls_server_config:\n  cert_file: a.pem\n", {"\"tls_server_config.key_file\" is missing"}},
      {"tls_server_config:\n  key_file: a.key\n", {"\"tls_server_config.cert_file\" is missing"}},
      {head + "  client_ca_file: ca.pem\n",
       {"\"tls_server_config.client_ca_file\"", "Client CA's have been configured without a Client Auth Policy"}},
      {head + "  client_ca_file: ca.pem\n  client_auth_type: NoClientCert\n", {"without a Client Auth Policy"}},
      {"http_server_config:\n  headers:\n    X-Foo: bar\n",
       {"\"http_server_config.headers.X-Foo\"", "can not be configured", "X-Frame-Options"}},
      {"http_server_config:\n  headers:\n    X-Frame-Options: DENY\n",
       {"\"http_server_config.headers.X-Frame-Options\" is \"DENY\"", "deny, sameorigin"}},
      {"http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n", {"nosniff"}},
      {"http_server_config:\n  headers: [a]\n", {"\"http_server_config.headers\" is a list, expected a map"}},
      // Header values go into every answer as they are: no CR, LF or other
      // control character (response splitting), nothing past 4096 bytes.
      {"http_server_config:\n  headers:\n    X-XSS-Protection: \"0\\r\\nContent-Length: 5\\r\\n\\r\\nHELLO\"\n",
       {"\"http_server_config.headers.X-XSS-Protection\" has the control character 0x0d at byte 1",
        "expected visible characters, spaces and tabs only"}},
      {"http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\nX-Injected: yes\"\n",
       {"\"http_server_config.headers.Content-Security-Policy\" has the control character 0x0a at byte 1"}},
      {"http_server_config:\n  headers:\n    X-XSS-Protection: \"a\\0b\"\n", {"control character 0x00 at byte 1"}},
      {"http_server_config:\n  headers:\n    Content-Security-Policy: " + std::string(4097, 'a') + "\n",
       {"\"http_server_config.headers.Content-Security-Policy\" is 4097 bytes long: expected at most 4096"}},
      {"basic_auth_users:\n  alice: notahash\n", {"\"basic_auth_users.alice\"", "not a bcrypt hash"}},
      {"basic_auth_users:\n  alice: $2y$03$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n",
       {"\"basic_auth_users.alice\"", "cost 3"}},
      // Go takes costs up to 31; past 16 one check holds the bcrypt thread for minutes to days.
      {"basic_auth_users:\n  alice: $2b$17$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n",
       {"\"basic_auth_users.alice\"", "has bcrypt cost 17: expected 04 to 16"}},
      {"basic_auth_users:\n  alice: $2b$31$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n",
       {"has bcrypt cost 31: expected 04 to 16"}},
      {"basic_auth_users:\n  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeS\n",
       {"\"basic_auth_users.alice\"", "not a well-formed bcrypt hash"}},
      {"basic_auth_users:\n  alice:\n", {"\"basic_auth_users.alice\"", "not a bcrypt hash"}},
      {"basic_auth_users: alice\n", {"\"basic_auth_users\" is \"alice\", expected a map"}},
      {"foo\n", {"is not a map of tls_server_config"}},
      {"tls_server_config: {cert_file: [\n", {"not valid YAML"}},
  };
  for (const auto& c : cases) {
    std::string path;
    std::string message = load_error(c.yaml, &path);
    INFO("yaml:\n" << c.yaml << "message: " << message);
    for (const auto& expected : c.expected) CHECK(message.find(expected) != std::string::npos);
  }
}

// (log.cc, which every event of the web configuration goes through.)
TEST_CASE("log_values_escape_control_characters_and_stay_on_one_line", "[log]") {
  LogCapture log;
  log_event("warn", "test_event", {{"reason", "a\x1b[31mb\r\n\tc\"d\\e\x7f"}, {"plain", "word"}});
  const std::string text = log.text();
  INFO(text);
  CHECK(text.find(" event=test_event reason=\"a\\x1b[31mb\\r\\n\\tc\\\"d\\\\e\\x7f\" plain=word\n") != std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  CHECK(text.find('\x1b') == std::string::npos);
}

TEST_CASE("a_bcrypt_cost_of_16_is_taken", "[web_config]") {
  WebConfig loaded = load_web_config(
      ConfigFile("basic_auth_users:\n  alice: $2y$16$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n").path);
  REQUIRE(loaded.users.size() == 1);
}

TEST_CASE("a_header_value_of_4096_bytes_with_tabs_is_taken_as_written", "[web_config]") {
  const std::string policy = "default-src 'self';\t" + std::string(4096 - 20, 'a');
  REQUIRE(policy.size() == 4096);
  WebConfig loaded = load_web_config(
      ConfigFile("http_server_config:\n  headers:\n    Content-Security-Policy: \"" + policy + "\"\n").path);
  REQUIRE(loaded.headers.size() == 1);
  CHECK(loaded.headers[0].second == policy);
}

TEST_CASE("a_missing_file_is_an_error", "[web_config]") {
  TempDir dir;
  CHECK_THROWS_WITH(load_web_config(dir / "absent.yml"),
                    "web config " + (dir / "absent.yml") + ": cannot read the file: No such file or directory");
}

TEST_CASE("relative_paths_are_joined_with_the_files_directory", "[web_config]") {
  TempDir dir;
  fs::create_directories(dir.path() / "etc");
  fs::copy_file(pki().file("server.pem"), dir / "etc/server.pem");
  fs::copy_file(pki().file("server.key"), dir / "etc/server.key");
  write_file(dir / "etc/web.yml", "tls_server_config:\n  cert_file: ./server.pem\n  key_file: server.key\n");
  // From another working directory, as node_exporter resolves them.
  auto previous = fs::current_path();
  fs::current_path("/");
  WebConfig loaded = load_web_config(dir / "etc/web.yml");
  fs::current_path(previous);
  REQUIRE(loaded.tls);
  CHECK(loaded.tls->cert_file == dir / "etc/server.pem");
  CHECK(loaded.tls->key_file == dir / "etc/server.key");
  auto context = make_tls_context(*loaded.tls);
  CHECK(handshake(*context, {}).client_ok);
}

// ---- The TLS context -------------------------------------------------------

TEST_CASE("tls_context_handshakes_within_min_and_max_version", "[web_config][tls]") {
  SECTION("defaults: TLS 1.2 and 1.3, not 1.1") {
    auto context = context_for(tls_yaml());
    Outcome tls13 = handshake(*context, {});
    CHECK(tls13.client_ok);
    CHECK(tls13.version == "TLSv1.3");
    Outcome tls12 = handshake(*context, {.max_version = TLS1_2_VERSION});
    CHECK(tls12.client_ok);
    CHECK(tls12.version == "TLSv1.2");
    CHECK_FALSE(handshake(*context, {.min_version = TLS1_1_VERSION, .max_version = TLS1_1_VERSION}).server_ok);
  }
  SECTION("TLS 1.0 works when allowed, whatever openssl.cnf says") {
    auto context = context_for(tls_yaml("  min_version: TLS10\n  max_version: TLS10\n"));
    Outcome tls10 = handshake(*context, {.min_version = TLS1_VERSION, .max_version = TLS1_VERSION});
    INFO(tls10.server_error);
    CHECK(tls10.client_ok);
    CHECK(tls10.version == "TLSv1");
    CHECK_FALSE(handshake(*context, {}).server_ok);
  }
  SECTION("TLS 1.1 through 1.2") {
    auto context = context_for(tls_yaml("  min_version: TLS11\n  max_version: TLS12\n"));
    CHECK(handshake(*context, {.min_version = TLS1_1_VERSION, .max_version = TLS1_1_VERSION}).version == "TLSv1.1");
    CHECK(handshake(*context, {}).version == "TLSv1.2");
    CHECK_FALSE(handshake(*context, {.min_version = TLS1_3_VERSION}).server_ok);
  }
  SECTION("TLS 1.3 only refuses TLS 1.2") {
    auto context = context_for(tls_yaml("  min_version: TLS13\n"));
    CHECK_FALSE(handshake(*context, {.max_version = TLS1_2_VERSION}).server_ok);
    CHECK(handshake(*context, {}).client_ok);
  }
}

TEST_CASE("tls_context_uses_the_configured_ciphers_and_curves", "[web_config][tls]") {
  auto context = context_for(tls_yaml("  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"));
  Outcome out = handshake(*context, {.max_version = TLS1_2_VERSION});
  CHECK(out.client_ok);
  CHECK(out.cipher == "ECDHE-ECDSA-AES256-GCM-SHA384");
  CHECK_FALSE(handshake(*context, {.max_version = TLS1_2_VERSION, .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"}).server_ok);
  // The default list has Go's suites and not OpenSSL's others.
  auto defaults = context_for(tls_yaml());
  CHECK(handshake(*defaults, {.max_version = TLS1_2_VERSION, .ciphers = "ECDHE-ECDSA-AES128-SHA"}).client_ok);
  CHECK_FALSE(handshake(*defaults, {.max_version = TLS1_2_VERSION, .ciphers = "ECDHE-ECDSA-AES256-SHA384"}).server_ok);

  auto p384 = context_for(tls_yaml("  curve_preferences: [CurveP384]\n"));
  CHECK(handshake(*p384, {.groups = "P-384"}).client_ok);
  CHECK_FALSE(handshake(*p384, {.groups = "X25519:P-256"}).server_ok);
}

TEST_CASE("client_auth_modes_accept_and_refuse_as_go_does", "[web_config][tls]") {
  struct Row {
    std::string mode;
    bool no_cert, wrong_ca_cert, right_cert;
  };
  const std::vector<Row> rows = {
      {"NoClientCert", true, true, true},
      {"RequestClientCert", true, true, true},
      {"RequireAnyClientCert", false, true, true},
      {"VerifyClientCertIfGiven", true, false, true},
      {"RequireAndVerifyClientCert", false, false, true},
  };
  for (const auto& row : rows) {
    std::string ca = row.mode == "NoClientCert" ? "" : "  client_ca_file: " + pki().file("ca.pem") + "\n";
    std::string yaml = tls_yaml("  client_auth_type: " + row.mode + "\n" + ca);
    for (int max_version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
      INFO(row.mode << " TLS max " << std::hex << max_version);
      CHECK(connects(yaml, {.max_version = max_version}) == row.no_cert);
      CHECK(connects(yaml, {.max_version = max_version, .cert = "other_client"}) == row.wrong_ca_cert);
      CHECK(connects(yaml, {.max_version = max_version, .cert = "client"}) == row.right_cert);
    }
  }
  SECTION("verifying without client_ca_file uses the system's roots") {
    std::string yaml = tls_yaml("  client_auth_type: RequireAndVerifyClientCert\n");
    CHECK_FALSE(connects(yaml, {.cert = "client"}));
  }
}

TEST_CASE("client_allowed_sans_match_a_san_of_the_leaf_exactly", "[web_config][tls]") {
  auto yaml = [](const std::string& mode, const std::string& sans) {
    return tls_yaml("  client_auth_type: " + mode + "\n  client_ca_file: " + pki().file("ca.pem") +
                    "\n  client_allowed_sans: " + sans + "\n");
  };
  const std::string verify = "RequireAndVerifyClientCert";
  CHECK(connects(yaml(verify, "[client.example]"), {.cert = "client"}));
  CHECK(connects(yaml(verify, "[10.1.2.3]"), {.cert = "client"}));
  CHECK(connects(yaml(verify, "[ops@example.org]"), {.cert = "client"}));
  CHECK(connects(yaml(verify, "[\"spiffe://example.org/scraper\"]"), {.cert = "client"}));
  CHECK(connects(yaml(verify, "[nobody.example, client.example]"), {.cert = "client"}));
  CHECK_FALSE(connects(yaml(verify, "[client.example]"), {.cert = "stranger"}));
  CHECK_FALSE(connects(yaml(verify, "[Client.Example]"), {.cert = "client"}));
  CHECK_FALSE(connects(yaml(verify, "[example]"), {.cert = "client"}));
  CHECK_FALSE(connects(yaml(verify, "[client]"), {.cert = "client"}));  // the CN is not a SAN
  // The chain is still verified: a wrong CA's certificate with the name fails.
  CHECK_FALSE(connects(yaml(verify, "[client.example]"), {.cert = "other_client"}));
  // Not verifying the chain, the SANs are still checked, and a certificate is needed.
  CHECK(connects(yaml("RequestClientCert", "[client.example]"), {.cert = "other_client"}));
  CHECK_FALSE(connects(yaml("RequestClientCert", "[client.example]"), {.cert = "stranger"}));
  CHECK_FALSE(connects(yaml("VerifyClientCertIfGiven", "[client.example]"), {}));
  // Without client auth no certificate is asked for, and the SANs do not apply.
  CHECK(connects(tls_yaml("  client_allowed_sans: [client.example]\n"), {}));
}

TEST_CASE("a_connection_outlives_its_context", "[web_config][tls]") {
  auto context = context_for(tls_yaml("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: " +
                                      pki().file("ca.pem") + "\n  client_allowed_sans: [client.example]\n"));
  asio::ssl::context& raw = *context;
  CHECK(handshake(raw, {.cert = "client"}, &context).client_ok);
  CHECK(context == nullptr);
}

TEST_CASE("tls_context_errors_name_the_file_and_openssls_reason", "[web_config][tls]") {
  auto error_of = [](TlsServerConfig tls) {
    try {
      make_tls_context(tls);
    } catch (const WebConfigError& e) {
      return std::string(e.what());
    }
    FAIL("no error");
    return std::string();
  };
  TlsServerConfig tls;
  tls.cert_file = pki().file("server.pem");
  tls.key_file = pki().file("server.key");
  REQUIRE(make_tls_context(tls) != nullptr);

  TlsServerConfig missing = tls;
  missing.cert_file = pki().file("absent.pem");
  std::string message = error_of(missing);
  CHECK(message.find("cert_file") != std::string::npos);
  CHECK(message.find(missing.cert_file) != std::string::npos);
  CHECK(message.find("No such file") != std::string::npos);

  TlsServerConfig mismatch = tls;
  mismatch.key_file = pki().file("client.key");
  message = error_of(mismatch);
  CHECK(message.find("key_file") != std::string::npos);
  CHECK(message.find(mismatch.key_file) != std::string::npos);

  TlsServerConfig encrypted = tls;  // refused, not a passphrase prompt
  encrypted.key_file = pki().file("encrypted.key");
  message = error_of(encrypted);
  CHECK(message.find(encrypted.key_file) != std::string::npos);

  TlsServerConfig no_cas = tls;
  no_cas.client_auth = ClientAuth::kRequireAndVerifyClientCert;
  no_cas.client_ca_file = pki().file("server.key");
  message = error_of(no_cas);
  CHECK(message.find("client_ca_file") != std::string::npos);
  CHECK(message.find(no_cas.client_ca_file) != std::string::npos);
}

// ---- Basic auth ------------------------------------------------------------

TEST_CASE("basic_auth_checks_bcrypt_hashes", "[web_config][auth]") {
  std::string alice_hash = bcrypt("wonderland");
  std::string bob_hash = bcrypt("builder", 5);
  // Go's bcrypt ignores the minor version: $2y$ and $2a$ hashes check as $2b$.
  std::string carol_hash = "$2y$" + bcrypt("c:o:l").substr(4);
  BasicAuth auth({{"alice", alice_hash}, {"bob", bob_hash}, {"carol", carol_hash}});
  REQUIRE(auth.enabled());

  CHECK(auth.check(basic("alice:wonderland")));
  CHECK(auth.check(basic("bob:builder")));
  CHECK(auth.check(basic("carol:c:o:l")));  // split at the first colon
  CHECK(auth.check("basic " + basic("alice:wonderland").substr(6)));
  CHECK(auth.check("BASIC " + basic("alice:wonderland").substr(6)));

  CHECK_FALSE(auth.check(basic("alice:Wonderland")));
  CHECK_FALSE(auth.check(basic("alice:")));
  CHECK_FALSE(auth.check(basic("bob:wonderland")));
  CHECK_FALSE(auth.check(basic("mallory:wonderland")));
  CHECK_FALSE(auth.check(basic("Alice:wonderland")));
  CHECK_FALSE(auth.check(basic(std::string("alice:wonderland\0x", 18))));

  SECTION("malformed headers are refused without bcrypt") {
    std::string good = basic("alice:wonderland").substr(6);
    for (const std::string& header :
         {std::string(""), std::string("Basic"), std::string("Basic "), "Bearer " + good, "Basic  " + good,
          "Basic " + good + "=", "Basic " + good.substr(0, good.size() - 1), "Basic " + good + " ",
          "Basic !" + good.substr(1), basic("alicewonderland"), std::string("Basic YWxpY2U6d29uZGVybGFuZA=A")}) {
      INFO("header: " << header);
      CHECK(auth.cached(header) == std::optional<bool>(false));
      CHECK_FALSE(auth.check(header));
    }
  }
  SECTION("answers are cached, good and bad, per password") {
    CHECK(auth.cached(basic("alice:wonderland")) == std::optional<bool>(true));
    CHECK(auth.cached(basic("alice:Wonderland")) == std::optional<bool>(false));
    CHECK(auth.cached(basic("mallory:wonderland")) == std::optional<bool>(false));
    CHECK(auth.cached(basic("alice:never-tried")) == std::nullopt);
    CHECK(auth.cached(basic("mallory:never-tried")) == std::nullopt);
    // The cache is bounded: many wrong guesses evict, and never grow it past its size.
    for (std::size_t i = 0; i < BasicAuth::kCacheEntries + 10; ++i) {
      CHECK_FALSE(auth.check(basic("mallory:guess" + std::to_string(i))));
    }
    int remembered = 0;
    for (std::size_t i = 0; i < BasicAuth::kCacheEntries + 10; ++i) {
      remembered += auth.cached(basic("mallory:guess" + std::to_string(i))).has_value();
    }
    CHECK(remembered <= static_cast<int>(BasicAuth::kCacheEntries));
    CHECK(remembered >= static_cast<int>(BasicAuth::kCacheEntries) - 20);
    // ... but never a right password: a guessing flood leaves Prometheus's
    // scrapes free of bcrypt.
    CHECK(auth.cached(basic("alice:wonderland")) == std::optional<bool>(true));
  }
}

TEST_CASE("basic_auth_cache_hit_costs_no_bcrypt", "[web_config][auth]") {
  BasicAuth auth({{"alice", bcrypt("wonderland", 12)}});  // ~250 ms a bcrypt
  auto timed = [&](const std::string& header) {
    auto start = std::chrono::steady_clock::now();
    bool ok = auth.check(header);
    return std::pair(ok, std::chrono::steady_clock::now() - start);
  };
  auto [first_ok, first] = timed(basic("alice:wonderland"));
  auto [second_ok, second] = timed(basic("alice:wonderland"));
  CHECK(first_ok);
  CHECK(second_ok);
  CHECK(first > std::chrono::milliseconds(20));
  CHECK(second < first / 10);
  // An unknown user costs a bcrypt as a known one does.
  auto [unknown_ok, unknown] = timed(basic("mallory:wonderland"));
  CHECK_FALSE(unknown_ok);
  CHECK(unknown > first / 3);
}

TEST_CASE("basic_auth_without_users_is_disabled", "[web_config][auth]") {
  BasicAuth auth({});
  CHECK_FALSE(auth.enabled());
  CHECK_FALSE(auth.check(basic("alice:wonderland")));
}

// ---- The watcher -----------------------------------------------------------

TEST_CASE("watcher_reloads_on_change_and_keeps_the_last_good_config", "[web_config][watcher]") {
  TempDir dir;
  std::string path = dir / "web.yml";
  fs::copy_file(pki().file("server.pem"), dir / "server.pem");
  fs::copy_file(pki().file("server.key"), dir / "server.key");
  std::string alice = "basic_auth_users:\n  alice: " + bcrypt("a") + "\n";
  write_file(path, alice);
  set_mtime(path, 1000);
  LogCapture log;
  WebConfigWatcher watcher(path, std::chrono::milliseconds(0));
  auto first = watcher.current();
  REQUIRE(first->config.users.size() == 1);
  CHECK(first->tls == nullptr);
  CHECK(first->auth->enabled());
  CHECK(watcher.current() == first);  // unchanged: the same object

  SECTION("a good change is loaded and logged") {
    write_file(path, alice + "  bob: " + bcrypt("b") + "\n" + "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n");
    set_mtime(path, 2000);
    auto second = watcher.current();
    CHECK(second != first);
    CHECK(second->config.users.size() == 2);
    CHECK(second->auth->check(basic("bob:b")));
    REQUIRE(second->tls != nullptr);
    CHECK(handshake(*second->tls, {}).client_ok);
    CHECK(log.count("event=web_config_reloaded file=" + path) == 1);

    SECTION("a changed certificate is loaded") {
      fs::copy_file(pki().file("server2.pem"), dir / "server.pem", fs::copy_options::overwrite_existing);
      fs::copy_file(pki().file("server2.key"), dir / "server.key", fs::copy_options::overwrite_existing);
      set_mtime(dir / "server.pem", 3000);
      auto third = watcher.current();
      CHECK(third != second);
      REQUIRE(third->tls != nullptr);
      CHECK(third->tls != second->tls);
      CHECK(handshake(*third->tls, {}).client_ok);
      CHECK(log.count("event=web_config_reloaded") == 2);
    }
    SECTION("a certificate that no longer matches its key keeps the last good config") {
      fs::copy_file(pki().file("server2.pem"), dir / "server.pem", fs::copy_options::overwrite_existing);
      set_mtime(dir / "server.pem", 3000);
      CHECK(watcher.current() == second);
      CHECK(log.count("event=web_config_invalid") == 1);
      CHECK(log.text().find("key_file") != std::string::npos);
    }
  }
  SECTION("an invalid change keeps the last good config and logs once") {
    write_file(path, "basic_auth_users:\n  alice: plaintext\n");
    set_mtime(path, 2000);
    CHECK(watcher.current() == first);
    CHECK(watcher.current() == first);
    CHECK(log.count("level=error event=web_config_invalid file=" + path) == 1);
    CHECK(log.count("action=\"keeping the last good configuration\"") == 1);
    CHECK(log.count("basic_auth_users.alice") == 1);
    // Another invalid version is logged again; reload_now() logs every time.
    write_file(path, "tls_server_config:\n  cert: x\n");
    set_mtime(path, 3000);
    CHECK(watcher.current() == first);
    CHECK(log.count("event=web_config_invalid") == 2);
    watcher.reload_now();
    CHECK(log.count("event=web_config_invalid") == 3);
    // Fixed: loaded.
    write_file(path, "");
    set_mtime(path, 4000);
    auto fixed = watcher.current();
    CHECK(fixed != first);
    CHECK_FALSE(fixed->auth->enabled());
    CHECK(log.count("event=web_config_reloaded") == 1);
  }
  SECTION("reload_now reads an unchanged file again") {
    watcher.reload_now();
    CHECK(watcher.current() != first);
  }
}

TEST_CASE("watcher_checks_at_most_once_per_interval", "[web_config][watcher]") {
  TempDir dir;
  std::string path = dir / "web.yml";
  write_file(path, "");
  WebConfigWatcher watcher(path, std::chrono::hours(1));
  auto first = watcher.current();
  write_file(path, "basic_auth_users:\n  alice: " + bcrypt("a") + "\n");
  set_mtime(path, 1000);
  CHECK(watcher.current() == first);
  watcher.reload_now();
  CHECK(watcher.current()->auth->enabled());
}

TEST_CASE("watcher_throws_on_an_invalid_file_at_start", "[web_config][watcher]") {
  ConfigFile config("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n");
  CHECK_THROWS_WITH(WebConfigWatcher(config.path), Catch::Contains("/nonexistent.pem"));
  ConfigFile bad("nope: 1\n");
  CHECK_THROWS_WITH(WebConfigWatcher(bad.path), Catch::Contains("unknown key \"nope\""));
}

TEST_CASE("the_readmes_web_config_example_loads", "[web_config][readme]") {
  // The README's example, as written, with its files made here and its
  // elided bcrypt hash ("$2b$12$...") replaced by a real one.
  std::ifstream in(SHMETRICS_SOURCE_DIR "/README.md");
  REQUIRE(in.good());
  std::stringstream readme;
  readme << in.rdbuf();
  const std::string text = readme.str();
  const std::size_t section = text.find("### TLS and basic auth: `--web.config.file`");
  REQUIRE(section != std::string::npos);
  const std::size_t begin = text.find("```yaml\n", section);
  REQUIRE(begin != std::string::npos);
  const std::size_t end = text.find("```\n", begin + 8);
  REQUIRE(end != std::string::npos);
  std::string yaml = text.substr(begin + 8, end - begin - 8);
  const std::size_t elided = yaml.find("$2b$12$...");
  REQUIRE(elided != std::string::npos);
  yaml.replace(elided, std::string("$2b$12$...").size(), bcrypt("readme-password"));

  TempDir dir;
  fs::copy_file(pki().file("server.pem"), dir / "server.crt");
  fs::copy_file(pki().file("server.key"), dir / "server.key");
  fs::copy_file(pki().file("ca.pem"), dir / "clients-ca.crt");
  write_file(dir / "web.yml", yaml);
  WebConfig config = load_web_config(dir / "web.yml");
  REQUIRE(config.tls);
  CHECK(config.tls->client_auth == ClientAuth::kRequireAndVerifyClientCert);
  CHECK(config.tls->min_version == TLS1_2_VERSION);
  CHECK(config.tls->client_allowed_sans == std::vector<std::string>{"scraper.example.org"});
  CHECK(config.headers.size() == 2);
  CHECK(config.users.count("prometheus") == 1);
  CHECK(make_tls_context(*config.tls) != nullptr);
  BasicAuth auth(config.users);
  CHECK(auth.check(basic("prometheus:readme-password")));
}

TEST_CASE("only_regular_files_of_bounded_size_are_read", "[web_config]") {
  // A FIFO would block the thread reading it for ever; a huge file would
  // stall it: both are refused at once.
  TempDir dir;
  REQUIRE(::mkfifo((dir / "fifo.yml").c_str(), 0600) == 0);
  CHECK_THROWS_WITH(load_web_config(dir / "fifo.yml"),
                    "web config " + (dir / "fifo.yml") + ": cannot read the file: it is not a regular file");
  write_file(dir / "big.yml", "basic_auth_users: {}\n" + std::string(2 << 20, '#'));
  CHECK_THROWS_WITH(load_web_config(dir / "big.yml"), Catch::Contains("more than the 1048576 allowed"));
  REQUIRE(::mkfifo((dir / "cert.fifo").c_str(), 0600) == 0);
  TlsServerConfig tls;
  tls.cert_file = dir / "cert.fifo";
  tls.key_file = pki().file("server.key");
  CHECK_THROWS_WITH(make_tls_context(tls), "tls_server_config.cert_file: cannot read " + (dir / "cert.fifo") +
                                               ": it is not a regular file");
}

TEST_CASE("a_reload_with_the_same_users_keeps_the_password_cache", "[web_config][watcher]") {
  ConfigFile config("basic_auth_users:\n  alice: " + bcrypt("wonderland") + "\n");
  WebConfigWatcher watcher(config.path, std::chrono::milliseconds(0));
  auto before = watcher.current();
  REQUIRE(before->auth->check(basic("alice:wonderland")));
  watcher.reload_now();  // a SIGHUP, or a certificate rotated
  auto after = watcher.current();
  CHECK(after != before);
  CHECK(after->auth == before->auth);
  CHECK(after->auth->cached(basic("alice:wonderland")) == std::optional<bool>(true));
  // Other users: a cache of their own.
  write_file(config.path, "basic_auth_users:\n  bob: " + bcrypt("builder") + "\n");
  set_mtime(config.path, 1000);
  auto changed = watcher.current();
  CHECK(changed->auth != before->auth);
  CHECK(changed->auth->cached(basic("alice:wonderland")) == std::nullopt);
}
