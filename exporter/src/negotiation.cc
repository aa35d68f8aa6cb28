#include "negotiation.h"

#include <charconv>
#include <vector>

namespace shmetrics::exporter {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// Splits `s` at `sep` outside double-quoted strings.
std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  bool quoted = false;
  std::size_t begin = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '"') quoted = !quoted;
    else if (s[i] == '\\' && quoted) ++i;
    else if (s[i] == sep && !quoted) {
      out.push_back(trim(s.substr(begin, i - begin)));
      begin = i + 1;
    }
  }
  if (begin <= s.size()) out.push_back(trim(s.substr(begin)));
  return out;
}

std::string_view unquote(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return v.substr(1, v.size() - 2);
  return v;
}

// A qvalue (RFC 9110 §12.4.2): 0 to 1 with at most three decimals; -1 when
// malformed (the element is then ignored).
int parse_q(std::string_view v) {
  v = unquote(v);
  if (v.empty() || (v[0] != '0' && v[0] != '1')) return -1;
  int thousandths = (v[0] - '0') * 1000;
  if (v.size() > 1) {
    if (v[1] != '.' || v.size() > 5) return -1;
    int scale = 100;
    for (char c : v.substr(2)) {
      if (c < '0' || c > '9') return -1;
      thousandths += (c - '0') * scale;
      scale /= 10;
    }
  }
  return thousandths > 1000 ? -1 : thousandths;
}

struct Element {
  std::string_view value;  // the media range or coding
  std::vector<std::pair<std::string_view, std::string_view>> params;  // but q
  int q = 1000;
};

// The elements of a list header, malformed ones left out.
std::vector<Element> parse_list(std::string_view header) {
  std::vector<Element> out;
  for (std::string_view item : split(header, ',')) {
    if (item.empty()) continue;
    std::vector<std::string_view> parts = split(item, ';');
    Element e{parts[0], {}, 1000};
    bool ok = !e.value.empty();
    for (std::size_t i = 1; i < parts.size() && ok; ++i) {
      const std::size_t eq = parts[i].find('=');
      if (eq == std::string_view::npos) continue;  // a bare parameter: ignored
      std::string_view name = trim(parts[i].substr(0, eq)), value = unquote(trim(parts[i].substr(eq + 1)));
      if (iequals(name, "q")) {
        e.q = parse_q(value);
        ok = e.q >= 0;
      } else {
        e.params.emplace_back(name, value);
      }
    }
    if (ok) out.push_back(std::move(e));
  }
  return out;
}

std::string_view param(const Element& e, std::string_view name) {
  for (const auto& [n, v] : e.params)
    if (iequals(n, name)) return v;
  return {};
}

// How well `e` matches a format: -1 not at all, else its specificity
// (0 */*, 1 type/*, 2 type/subtype, 3 type/subtype with a version).
int match(const Element& e, std::string_view type, std::string_view subtype,
          std::initializer_list<std::string_view> versions) {
  const std::size_t slash = e.value.find('/');
  if (slash == std::string_view::npos) return -1;
  std::string_view t = trim(e.value.substr(0, slash)), s = trim(e.value.substr(slash + 1));
  if (t == "*" && s == "*") return 0;
  if (!iequals(t, type)) return -1;
  if (s == "*") return 1;
  if (!iequals(s, subtype)) return -1;
  std::string_view version = param(e, "version");
  if (version.empty()) return 2;
  for (std::string_view v : versions)
    if (version == v) return 3;
  return -1;
}

struct Best {
  int specificity = -1;
  int q = 0;
  const Element* element = nullptr;
};

void consider(Best& best, const Element& e, int specificity) {
  if (specificity < 0) return;
  if (specificity > best.specificity || (specificity == best.specificity && e.q > best.q))
    best = {specificity, e.q, &e};
}

std::string_view escaping_of(const Element* e) {
  if (e == nullptr) return {};
  std::string_view v = param(*e, "escaping");
  if (v == "allow-utf-8" || v == "allow-utf8") return "allow-utf-8";
  if (v == "underscores" || v == "dots" || v == "values") return v;
  return {};
}

}  // namespace

Negotiated negotiate(std::string_view accept, std::string_view accept_encoding) {
  Negotiated out;
  const std::vector<Element> ranges = parse_list(accept);
  // Each OpenMetrics version is weighed on its own: a range naming one
  // says nothing of the other (a q=0 for 0.0.1 does not refuse 1.0.0).
  // So is each text version: both are answered with the same body (valid
  // text 1.0.0 too, since every name served is a legacy one), labelled with
  // the version preferred.
  Best text4, text1, om1, om0;
  for (const Element& e : ranges) {
    consider(text4, e, match(e, "text", "plain", {"0.0.4"}));
    consider(text1, e, match(e, "text", "plain", {"1.0.0"}));
    consider(om1, e, match(e, "application", "openmetrics-text", {"1.0.0"}));
    consider(om0, e, match(e, "application", "openmetrics-text", {"0.0.1"}));
  }
  std::string_view escaping;
  // Text 1.0.0 only when preferred to 0.0.4 (0.0.4 on a tie: every
  // Prometheus reads it); OpenMetrics only when preferred to text, 1.0.0 on
  // a tie with 0.0.1.
  const Best& text = text1.q > text4.q ? text1 : text4;
  const Best& om = om0.q > om1.q ? om0 : om1;
  if (om.q > 0 && om.q > text.q) {
    out.exposition.format = Format::kOpenMetrics;
    out.content_type = &om == &om0 ? "application/openmetrics-text; version=0.0.1; charset=utf-8"
                                   : "application/openmetrics-text; version=1.0.0; charset=utf-8";
    if (om.specificity >= 2) escaping = escaping_of(om.element);
  } else {
    out.content_type = &text == &text1 ? "text/plain; version=1.0.0; charset=utf-8"
                                       : "text/plain; version=0.0.4; charset=utf-8";
    if (text.specificity >= 2) escaping = escaping_of(text.element);
  }
  if (!escaping.empty()) {
    out.content_type += "; escaping=";
    out.content_type += escaping;
  }

  int gzip = -1, any = -1, identity = -1;
  for (const Element& e : parse_list(accept_encoding)) {
    if (iequals(e.value, "gzip") || iequals(e.value, "x-gzip")) gzip = std::max(gzip, e.q);
    else if (e.value == "*") any = e.q;
    else if (iequals(e.value, "identity")) identity = e.q;
  }
  if (gzip < 0) gzip = any;
  if (gzip > 0 && gzip >= identity) out.exposition.encoding = Encoding::kGzip;
  return out;
}

}  // namespace shmetrics::exporter
