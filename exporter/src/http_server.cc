#include "http_server.h"

#include <algorithm>
#include <string>

namespace shmetrics::exporter {

std::unique_ptr<httplib::Server> make_metrics_server(std::shared_ptr<RoleSource> source) {
  auto server = std::make_unique<httplib::Server>();
  server->Get("/metrics", [source](const httplib::Request&, httplib::Response& res) {
    auto body = std::make_shared<std::string>(source->scrape());
    res.set_content_provider(
        body->size(), kTextContentType,
        [body](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
          if (offset > body->size()) return false;
          return sink.write(body->data() + offset, std::min(length, body->size() - offset));
        });
  });
  return server;
}

}  // namespace shmetrics::exporter
