#include <algorithm>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "net/detail/gateway_pages.hpp"
#include "net/format.hpp"

namespace outlast::net::detail {

using json = nlohmann::json;

namespace {

constexpr std::int64_t stale_after_s = 7 * 86400;  // a signed version older than a week is flagged

std::string rfc3339(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string notices_section(gateway_view const& v) {
  if (!v.notices.is_array() || v.notices.empty()) return {};
  std::ostringstream o;
  o << "<h2>Notices</h2>\n<ul class=notices>\n";
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (auto const& n : v.notices) {
    auto sev = n.value("severity", "info");
    o << "<li class=\"n-" << html_escape(sev) << "\"><strong>" << html_escape(sev) << "</strong> "
      << html_escape(n.value("text", "")) << "<br><small>" << human_age(now - n.value("time", now)) << " ago, from "
      << html_escape(n.value("key", "").substr(0, 12)) << "&hellip;";
    if (n.contains("url")) o << " &middot; " << html_escape(n["url"].get<std::string>());
    o << "</small></li>\n";
  }
  o << "</ul>\n";
  return o.str();
}

std::string atom_feed(gateway_view const& v) {
  std::int64_t newest = 0;
  if (v.notices.is_array())
    for (auto const& n : v.notices) newest = std::max(newest, n.value("time", std::int64_t(0)));
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n"
    << "  <id>urn:outlast:notices</id>\n  <title>Outlast notices</title>\n"
    << "  <updated>" << rfc3339(newest ? newest : static_cast<std::int64_t>(std::time(nullptr))) << "</updated>\n"
    << "  <author><name>Outlast node</name></author>\n  <generator>Outlast</generator>\n";
  if (v.notices.is_array()) {
    for (auto const& n : v.notices) {
      auto text = n.value("text", "");
      auto sev = n.value("severity", "info");
      auto title = text.size() > 80 ? text.substr(0, 80) + "..." : text;
      o << "  <entry>\n    <id>urn:outlast:notice:" << html_escape(n.value("key", "")) << ":" << n.value("seq", 0) << "</id>\n"
        << "    <title>[" << html_escape(sev) << "] " << html_escape(title) << "</title>\n"
        << "    <updated>" << rfc3339(n.value("time", std::int64_t(0))) << "</updated>\n"
        << "    <author><name>" << html_escape(n.value("key", "")) << "</name></author>\n"
        << "    <category term=\"" << html_escape(sev) << "\"/>\n";
      if (n.contains("url")) o << "    <link rel=\"related\" href=\"" << html_escape(n["url"].get<std::string>()) << "\"/>\n";
      o << "    <content type=\"text\">" << html_escape(text) << "</content>\n  </entry>\n";
    }
  }
  o << "</feed>\n";
  return o.str();
}

std::string dashboard(gateway_view const& v) {
  auto const& st = v.status;
  std::ostringstream o;
  o << R"(<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outlast node</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#222;background:#fafafa}
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin-top:1.5rem}
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
th{font-size:.85rem;color:#555}td.addr{word-break:break-all;font-family:ui-monospace,monospace;font-size:.85rem}
.ok{color:#176a2e}.warn{color:#8a4b00;font-weight:600}.bad{color:#a11;font-weight:600}
ul.notices{list-style:none;padding:0}ul.notices li{background:#fff;border-left:6px solid #999;margin:.4rem 0;padding:.5rem .7rem}
li.n-critical{border-color:#a11!important;background:#fdecec!important}li.n-warning{border-color:#c80!important}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;background:#fff;padding:.6rem;margin:0}dt{color:#555}
@media (max-width:40rem){table,thead,tbody,tr,td{display:block}thead{display:none}tr{border-bottom:2px solid #ccc;padding:.3rem 0}td{border:0;padding:.1rem .3rem}}
</style></head><body>
<h1>Outlast node</h1>
)";
  o << notices_section(v);
  o << "<h2>Sites</h2>\n";
  if (!v.site_list.is_array() || v.site_list.empty()) {
    o << "<p>No sites yet. Publish one with <code>outlast publish DIR --site NAME</code> or follow one with "
         "<code>outlast follow KEY/SITE</code>.</p>\n";
  } else {
    o << "<table><thead><tr><th>Site</th><th>Role</th><th>Version</th><th>Size</th><th>State</th><th>Peers</th><th>Signed</th></tr></thead><tbody>\n";
    for (auto const& s : v.site_list) {
      auto address = s.value("address", "");
      auto url = s.value("url", "");
      bool complete = s.value("complete", false);
      auto version = s.value("version", std::int64_t(0));
      auto latest = s.value("latest", version);
      o << "<tr><td class=addr>";
      if (version > 0) o << "<a href=\"" << html_escape(url) << "\">" << html_escape(address) << "</a>";
      else o << html_escape(address);
      o << "</td><td>" << html_escape(s.value("role", "")) << "</td><td>" << version;
      if (latest > version) o << " &rarr; " << latest;
      o << "</td><td>" << human_bytes(s.value("bytes", 0.0)) << "</td><td>";
      if (complete) o << "<span class=ok>complete</span>";
      else o << "<span class=warn>" << static_cast<int>(100 * s.value("progress", 0.0)) << "%</span>";
      if (s.contains("error")) o << "<br><span class=bad>" << html_escape(s["error"].get<std::string>()) << "</span>";
      o << "</td><td>" << s.value("peers", 0) << "</td><td>";
      if (s["age_s"].is_number()) {
        auto age = s["age_s"].get<std::int64_t>();
        if (age > stale_after_s) o << "<span class=warn>" << human_age(age) << " ago: stale, the publisher may be unable to publish</span>";
        else o << human_age(age) << " ago";
      } else {
        o << "&ndash;";
      }
      o << "</td></tr>\n";
    }
    o << "</tbody></table>\n";
  }
  o << "<h2>Node</h2>\n<dl>";
  auto row = [&](char const* k, std::string const& val) { o << "<dt>" << k << "</dt><dd>" << val << "</dd>"; };
  std::string listen;
  if (st.contains("listen"))
    for (auto const& l : st["listen"]) listen += (listen.empty() ? "" : ", ") + html_escape(l.get<std::string>());
  row("Version", html_escape(st.value("version", "?")));
  row("Listening", listen.empty() ? "<span class=warn>not yet</span>" : listen);
  auto dht = st.value("dht_nodes", 0);
  row("DHT", dht > 0 ? std::to_string(dht) + " nodes" : std::string("<span class=warn>no nodes: the node cannot find pointers</span>"));
  row("Peers", std::to_string(st.value("peers", 0)));
  row("Storage used", human_bytes(st.value("storage_bytes", 0.0)));
  if (st.contains("refused")) {
    auto const& r = st["refused"];
    auto n = r.value("rollbacks_and_forks", 0) + r.value("invalid", 0);
    row("Refused records", n ? "<span class=warn>" + std::to_string(n) + "</span> (last: " + html_escape(r.value("last", std::string())) + ")" : "0");
  }
  row("Uptime", human_age(st.value("uptime_s", std::int64_t(0))));
  o << "</dl>\n<p><a href=\"/api/v1/status\">status JSON</a> &middot; <a href=\"/api/v1/sites\">sites JSON</a> &middot; "
       "<a href=\"/metrics\">metrics</a></p>\n</body></html>\n";
  return o.str();
}

std::string metrics(gateway_view const& v, gateway_counters const& c) {
  auto const& st = v.status;
  std::ostringstream o;
  auto gauge = [&](char const* name, char const* help, char const* type, auto value) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << value << "\n";
  };
  gauge("outlast_peers", "Connected BitTorrent peers.", "gauge", st.value("peers", 0));
  gauge("outlast_dht_nodes", "Nodes in the DHT routing table.", "gauge", st.value("dht_nodes", 0));
  gauge("outlast_sites", "Sites published or followed.", "gauge", v.site_list.is_array() ? v.site_list.size() : 0);
  gauge("outlast_versions_served", "Complete versions the gateway serves.", "gauge", v.sites.size());
  gauge("outlast_payload_downloaded_bytes_total", "Payload bytes received from peers.", "counter", st.value("payload_down", std::int64_t(0)));
  gauge("outlast_payload_uploaded_bytes_total", "Payload bytes sent to peers.", "counter", st.value("payload_up", std::int64_t(0)));
  gauge("outlast_gateway_bytes_sent_total", "Body bytes the gateway sent.", "counter", c.bytes_sent);
  o << "# HELP outlast_gateway_requests_total Gateway requests by HTTP status.\n# TYPE outlast_gateway_requests_total counter\n";
  for (auto const& [code, n] : c.requests_by_status) o << "outlast_gateway_requests_total{code=\"" << code << "\"} " << n << "\n";
  return o.str();
}

}  // namespace

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::optional<page> render_node_page(std::string const& path, gateway_view const& view, gateway_counters const& counters) {
  if (path == "/") return page{"text/html; charset=utf-8", dashboard(view)};
  if (path == "/api/v1/status") return page{"application/json", view.status.dump()};
  if (path == "/api/v1/sites") return page{"application/json", view.site_list.dump()};
  if (path.rfind("/api/v1/sites/", 0) == 0) {
    auto address = path.substr(14);
    if (view.site_list.is_array())
      for (auto const& s : view.site_list)
        if (s.value("address", "") == address) return page{"application/json", s.dump()};
    return std::nullopt;
  }
  if (path == "/metrics") return page{"text/plain; version=0.0.4; charset=utf-8", metrics(view, counters)};
  if (path == "/api/v1/notices") return page{"application/json", view.notices.is_null() ? "[]" : view.notices.dump()};
  if (path == "/notices.atom") return page{"application/atom+xml; charset=utf-8", atom_feed(view)};
  return std::nullopt;
}

}  // namespace outlast::net::detail
