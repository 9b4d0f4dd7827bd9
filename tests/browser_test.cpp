// Browser tier: headless Chromium (Debian's package) against a real node's gateway. A script on
// one site must not read another site, the dashboard or the API; the dashboard shows a
// followed site.
#include <catch2/catch.hpp>
#include <fstream>
#include <regex>

#include "tests/support/swarm.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace outlast;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Loads `url` in a fresh headless Chromium and returns the DOM after scripts ran.
std::string dump_dom(fs::path const& base, std::string const& url) {
  static int n = 0;
  auto profile = base / ("chromium-profile-" + std::to_string(n++));
  fs::create_directories(profile);
  test::process chromium({"/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                          "--user-data-dir=" + profile.string(), "--virtual-time-budget=5000", "--dump-dom", url},
                         base);
  auto code = chromium.wait(90s);
  INFO("chromium stderr:\n" << chromium.err());
  REQUIRE(code);
  REQUIRE(*code == 0);
  return chromium.out();
}

constexpr char const* probe_page = R"(<!doctype html><meta charset="utf-8"><title>probe</title>
<pre id="result">pending</pre>
<script>
const out = {};
async function probe(name, url) {
  try {
    const r = await fetch(url);
    const t = await r.text();
    out[name] = 'READ ' + t.slice(0, 30);
  } catch (e) {
    out[name] = 'blocked';
  }
}
(async () => {
  const rest = location.host.slice(location.host.indexOf('.') + 1);  // KEY.localhost:PORT
  const bare = location.protocol + '//127.0.0.1:' + location.port;
  await probe('self', '/own.txt');
  await probe('other_site', location.protocol + '//other.' + rest + '/secret.txt');
  await probe('dashboard', bare + '/');
  await probe('api', bare + '/api/v1/status');
  await probe('metrics', bare + '/metrics');
  document.getElementById('result').textContent = JSON.stringify(out);
})();
</script>)";

}  // namespace

TEST_CASE("browser: a site's script cannot read another site, the dashboard or the API", "[browser]") {
  REQUIRE(fs::exists("/usr/bin/chromium"));  // installed by scripts/install-deps.sh
  test::temp_dir base;
  test::write_file(base / "probe" / "index.html", probe_page);
  test::write_file(base / "probe" / "own.txt", "mine");
  test::write_file(base / "other" / "secret.txt", "the other site's secret");
  test::swarm_node publisher("p", base.path()), reader("r", base.path());
  publisher.start({});
  auto probe = publisher.cli_json({"publish", (base / "probe").string(), "--site", "probe"})["address"].get<std::string>();
  auto other = publisher.cli_json({"publish", (base / "other").string(), "--site", "other"})["address"].get<std::string>();
  auto key = probe.substr(0, probe.find('/'));
  auto gw = publisher.cli_json({"status"})["gateway"].get<std::string>();
  auto port = gw.substr(gw.rfind(':') + 1);

  auto dom = dump_dom(base.path(), "http://probe." + key + ".localhost:" + port + "/");
  std::smatch m;
  REQUIRE(std::regex_search(dom, m, std::regex(R"(<pre id="result">([^<]*)</pre>)")));
  auto text = m[1].str();
  for (auto const& [from, to] : std::vector<std::pair<std::string, std::string>>{{"&quot;", "\""}, {"&amp;", "&"}})
    for (std::size_t p; (p = text.find(from)) != std::string::npos;) text.replace(p, from.size(), to);
  INFO(text);
  auto result = json::parse(text);
  CHECK(result["self"] == "READ mine");  // the page works on its own origin
  CHECK(result["other_site"] == "blocked");
  CHECK(result["dashboard"] == "blocked");
  CHECK(result["api"] == "blocked");
  CHECK(result["metrics"] == "blocked");

  // A reader follows the site; its dashboard lists it.
  reader.start({publisher.endpoint()});
  REQUIRE(reader.cli({"follow", other}).code == 0);
  REQUIRE(test::wait_until([&] {
    auto s = reader.site(other);
    return !s.is_null() && s["complete"].get<bool>();
  }, 60s));
  auto rgw = reader.cli_json({"status"})["gateway"].get<std::string>();
  auto dashboard = dump_dom(base.path(), "http://" + rgw + "/");
  CHECK(dashboard.find(other) != std::string::npos);
  CHECK(dashboard.find("followed") != std::string::npos);
  CHECK(dashboard.find("complete") != std::string::npos);
  auto page = dump_dom(base.path(), "http://other." + key + ".localhost:" + rgw.substr(rgw.rfind(':') + 1) + "/secret.txt");
  CHECK(page.find("the other site's secret") != std::string::npos);  // served by the reader's own gateway
  publisher.stop();
  reader.stop();
}
