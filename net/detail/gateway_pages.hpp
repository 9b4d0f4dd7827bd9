// The gateway's own pages on the bare address: dashboard, read-only JSON API, metrics.
#pragma once

#include <optional>
#include <string>

#include "net/gateway.hpp"

namespace outlast::net::detail {

struct page {
  std::string content_type;
  std::string body;
};

// nullopt: no such page.
std::optional<page> render_node_page(std::string const& path, gateway_view const& view, gateway_counters const& counters);

std::string html_escape(std::string_view s);

}  // namespace outlast::net::detail
