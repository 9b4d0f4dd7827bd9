// Gateway tier: a real node, real HTTP over loopback.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <fstream>
#include <random>
#include <regex>

#include "tests/support/http.hpp"
#include "tests/support/swarm.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace outlast;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

struct fixture {
  test::temp_dir base;
  test::swarm_node node;
  std::string address, key, host;
  int port = 0;
  std::string big = random_bytes(3 * 1024 * 1024 + 123, 7);

  explicit fixture(std::vector<std::string> flags = {}) : node("g", base.path(), with_timeout(std::move(flags))) {
    auto site = base / "site";
    test::write_file(site / "index.html", "<!doctype html><h1>Front page</h1>");
    test::write_file(site / "css" / "a.css", "body{color:#111}");
    test::write_file(site / "img" / "logo.png", random_bytes(2000, 1));
    test::write_file(site / "articles" / "index.html", "<h1>Articles</h1>");
    test::write_file(site / "articles" / "one.html", "<h1>One</h1>");
    test::write_file(site / "404.html", "<h1>Custom not found</h1>");
    test::write_file(site / "data.weird", "x");
    test::write_file(site / "big.bin", big);
    node.start({});
    auto pub = node.cli_json({"publish", site.string(), "--site", "news"});
    address = pub["address"].get<std::string>();
    key = address.substr(0, address.find('/'));
    auto status = node.cli_json({"status"});
    auto gw = status["gateway"].get<std::string>();
    port = std::stoi(gw.substr(gw.rfind(':') + 1));
    host = "news." + key + ".localhost:" + std::to_string(port);
  }
  ~fixture() { node.stop(); }

  static std::vector<std::string> with_timeout(std::vector<std::string> flags) {
    flags.insert(flags.end(), {"--gateway-timeout", "2"});
    return flags;
  }

  test::http_answer site(std::string const& target, std::string const& extra = "", std::string const& method = "GET") {
    return test::http_get(port, host, target, extra, method);
  }
  test::http_answer bare(std::string const& target) { return test::http_get(port, "127.0.0.1:" + std::to_string(port), target); }
};

}  // namespace

TEST_CASE("gateway: kept-alive connections get small files whole: cached, many, and to a slow reader", "[gateway]") {
  // Two gateway threads: connections are dealt to them in turn, so the two connections below
  // are served by different threads, each with its own cache.
  fixture f({"--gateway-threads", "2"});
  CHECK(f.node.log().find("/ with 2 threads") != std::string::npos);
  // Small files go out from the gateway's per-thread cache (header built once, body by
  // sendfile from the open file): the same file twice, other files between, one connection.
  test::kept_alive c(f.port);
  for (int round = 0; round < 2; ++round) {
    auto page = c.get(f.host, "/articles/one.html");
    CHECK(page.status == 200);
    CHECK(page.body == "<h1>One</h1>");
    auto logo = c.get(f.host, "/img/logo.png");
    CHECK(logo.status == 200);
    CHECK(logo.body == random_bytes(2000, 1));
    CHECK(logo.header("content-type") == "image/png");
    CHECK(logo.header("etag").size() == 42);
  }

  // More files than the cache keeps open (256 per thread): each is still served whole, the first
  // ones again after they were pushed out.
  auto many = f.base / "many";
  for (int i = 0; i < 300; ++i) test::write_file(many / ("p" + std::to_string(i) + ".txt"), "page " + std::to_string(i) + "\n");
  test::write_file(many / "tail.bin", random_bytes(64 * 1024, 9));  // the largest file the cache holds
  f.node.cli_json({"publish", many.string(), "--site", "many"});
  auto many_host = "many." + f.key + ".localhost:" + std::to_string(f.port);
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < 300; i += round == 0 ? 1 : 37) {
      auto page = c.get(many_host, "/p" + std::to_string(i) + ".txt");
      INFO(i);
      REQUIRE(page.status == 200);
      REQUIRE(page.body == "page " + std::to_string(i) + "\n");
    }

  // A reader with a 4 KB receive buffer that reads nothing until the answer has started to
  // arrive: the gateway cannot hand all 64 KiB to the kernel at once, finishes the answer as the
  // reader drains it, and then serves the next request on the same connection.
  auto tail = random_bytes(64 * 1024, 9);
  test::kept_alive slow(f.port, 4096);
  for (int round = 0; round < 2; ++round) {
    slow.send(many_host, "/tail.bin");
    REQUIRE(test::wait_until([&] { return slow.queued() > 0; }, 10s));
    auto answer = slow.receive();
    CHECK(answer.status == 200);
    CHECK(answer.body == tail);
  }
  CHECK(slow.get(many_host, "/p1.txt").body == "page 1\n");
}

TEST_CASE("gateway: node pages, API and metrics on the bare address", "[gateway]") {
  fixture f;
  auto dash = f.bare("/");
  CHECK(dash.status == 200);
  CHECK(dash.header("content-type").find("text/html") == 0);
  CHECK(dash.body.find("Outlast node") != std::string::npos);
  CHECK(dash.body.find(f.address) != std::string::npos);
  CHECK(dash.header("content-security-policy").find("default-src 'none'") != std::string::npos);
  CHECK(dash.header("x-frame-options") == "DENY");
  CHECK(dash.header("access-control-allow-origin").empty());

  auto status = json::parse(f.bare("/api/v1/status").body);
  CHECK(status["gateway"] == "127.0.0.1:" + std::to_string(f.port));
  auto sites = json::parse(f.bare("/api/v1/sites").body);
  REQUIRE(sites.size() == 1);
  CHECK(sites[0]["address"] == f.address);
  auto one = f.bare("/api/v1/sites/" + f.address);
  CHECK(one.status == 200);
  CHECK(json::parse(one.body)["version"] == 1);
  CHECK(f.bare("/api/v1/sites/" + f.key + "/other").status == 404);
  CHECK(f.bare("/nothing-here").status == 404);

  f.site("/");
  auto metrics = f.bare("/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.body.find("outlast_gateway_requests_total{code=\"200\"}") != std::string::npos);
  CHECK(metrics.body.find("outlast_sites 1") != std::string::npos);
  CHECK(metrics.body.find("outlast_dht_nodes") != std::string::npos);
  CHECK(metrics.body.find("outlast_payload_uploaded_bytes_total") != std::string::npos);

  // The gateway is read-only and answers only to its own names.
  CHECK(test::http_get(f.port, "127.0.0.1", "/", "", "POST").status == 405);
  CHECK(test::http_get(f.port, "127.0.0.1", "/api/v1/status", "", "DELETE").status == 405);
  CHECK(test::http_get(f.port, "evil.example:" + std::to_string(f.port), "/").status == 421);
}

TEST_CASE("gateway: a site on its own origin, with redirects, MIME types and safety headers", "[gateway]") {
  fixture f;
  auto front = f.site("/");
  CHECK(front.status == 200);
  CHECK(front.body == "<!doctype html><h1>Front page</h1>");
  CHECK(front.header("content-type") == "text/html; charset=utf-8");
  CHECK(front.header("content-security-policy").find("connect-src 'self'") != std::string::npos);
  CHECK(front.header("x-content-type-options") == "nosniff");
  CHECK(front.header("referrer-policy") == "no-referrer");
  CHECK(front.header("cross-origin-resource-policy") == "same-origin");
  CHECK(front.header("access-control-allow-origin").empty());
  CHECK(front.header("etag").size() == 42);
  CHECK(front.header("cache-control") == "no-cache");

  CHECK(f.site("/css/a.css").header("content-type") == "text/css; charset=utf-8");
  CHECK(f.site("/img/logo.png").header("content-type") == "image/png");
  CHECK(f.site("/data.weird").header("content-type") == "application/octet-stream");

  auto redirect = f.bare("/s/" + f.key + "/news/css/a.css");
  CHECK(redirect.status == 301);
  CHECK(redirect.header("location") == "http://" + f.host + "/css/a.css");
  CHECK(f.bare("/s/" + f.key + "/news").header("location") == "http://" + f.host + "/");
  CHECK(f.bare("/s/notakey/news/").status == 404);

  auto dir = f.site("/articles");
  CHECK(dir.status == 301);
  CHECK(dir.header("location") == "/articles/");
  CHECK(f.site("/articles/").body == "<h1>Articles</h1>");
  CHECK(f.site("/articles/one.html").body == "<h1>One</h1>");
  auto missing = f.site("/no/such/page.html");
  CHECK(missing.status == 404);
  CHECK(missing.body == "<h1>Custom not found</h1>");
  CHECK(f.site("/ind%65x.html").body == "<!doctype html><h1>Front page</h1>");  // decoded once, legitimately
  CHECK(f.site("/index.html?utm=1#frag").status == 200);

  // Another site's origin that this node does not hold.
  CHECK(test::http_get(f.port, "blog." + f.key + ".localhost", "/").status == 404);
}

TEST_CASE("gateway: ranges, conditional requests, HEAD and large files", "[gateway]") {
  fixture f;
  auto size = std::to_string(f.big.size());
  auto whole = f.site("/big.bin");
  CHECK(whole.status == 200);
  CHECK(whole.body == f.big);
  CHECK(whole.header("accept-ranges") == "bytes");

  auto first = f.site("/big.bin", "Range: bytes=0-9\r\n");
  CHECK(first.status == 206);
  CHECK(first.header("content-range") == "bytes 0-9/" + size);
  CHECK(first.body == f.big.substr(0, 10));
  auto middle = f.site("/big.bin", "Range: bytes=1000000-2999999\r\n");  // streamed: over 1 MiB
  CHECK(middle.status == 206);
  CHECK(middle.body == f.big.substr(1000000, 2000000));
  auto tail = f.site("/big.bin", "Range: bytes=-5\r\n");
  CHECK(tail.body == f.big.substr(f.big.size() - 5));
  auto open_end = f.site("/big.bin", "Range: bytes=3145700-\r\n");
  CHECK(open_end.body == f.big.substr(3145700));
  auto beyond = f.site("/big.bin", "Range: bytes=" + size + "-\r\n");
  CHECK(beyond.status == 416);
  CHECK(beyond.header("content-range") == "bytes */" + size);
  CHECK(f.site("/big.bin", "Range: bytes=0-1,5-6\r\n").status == 200);  // several ranges: the whole file
  CHECK(f.site("/big.bin", "Range: lines=1-2\r\n").status == 200);

  auto etag = whole.header("etag");
  auto again = f.site("/big.bin", "If-None-Match: " + etag + "\r\n");
  CHECK(again.status == 304);
  CHECK(again.body.empty());
  CHECK(f.site("/big.bin", "If-None-Match: \"other\"\r\n").status == 200);

  auto head = f.site("/big.bin", "", "HEAD");
  CHECK(head.status == 200);
  CHECK(head.header("content-length") == size);
  CHECK(head.body.empty());
}

TEST_CASE("gateway: path escapes, oversized requests and slow clients are refused without harm", "[gateway]") {
  fixture f;
  std::vector<std::string> attacks = {
      "/../../../../etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd", "/%2E%2E/%2E%2E/etc/passwd",
      "/..%5c..%5cetc%5cpasswd", "/%2e%2e%5c%2e%2e%5cetc/passwd", "/....//....//etc/passwd", "/..;/..;/etc/passwd",
      "/%252e%252e/%252e%252e/etc/passwd", "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", "/%e0%80%ae%e0%80%ae/etc/passwd",
      "/.%2e/.%2e/etc/passwd", "/%2e./%2e./etc/passwd", "/./../etc/passwd", "/index.html/../../etc/passwd",
      "/%00/etc/passwd", "/index.html%00.css", "/..\\..\\etc\\passwd", "//etc/passwd", "/%2fetc%2fpasswd",
      "/..%00/etc/passwd", "/%u002e%u002e/etc/passwd", "/..%252f..%252fetc/passwd", "/.../.../etc/passwd",
      "/%2e%2e%2f%2e%2e%2fkeys/default.key", "/../keys/default.key", "/../../../../../../../../../../etc/shadow",
      "/%%32%65%%32%65/etc/passwd", "/%ZZ/etc", "/%", "/%2", "/..%c0%af..%c0%afetc/passwd", "/%2e%2e%c0%afetc/passwd",
      "/%2e%2e/%2e%2e/%2e%2e/outlast.conf", "/css/../../store/data.mdb", "/css/%2e%2e/%2e%2e/node.lock",
  };
  for (auto const& a : attacks) {
    INFO(a);
    auto r = f.site(a);
    CHECK((r.status == 400 || r.status == 404));
    CHECK(r.body.find("root:") == std::string::npos);
    CHECK(r.body.find("outlast-secret-key") == std::string::npos);
    CHECK(r.body.find("listen") == std::string::npos);
  }
  CHECK(f.site("/").status == 200);  // and it still serves

  auto long_url = f.site("/" + std::string(10 * 1024, 'a'));
  CHECK(long_url.status == 414);
  auto huge_header = f.site("/", "X-Junk: " + std::string(20 * 1024, 'j') + "\r\n");
  CHECK(huge_header.status == 431);
  CHECK(f.site("/").status == 200);

  // A client that never finishes its request is dropped after the timeout (2 s here), while
  // others are served at once.
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket slow(ioc);
  slow.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(f.port)});
  boost::asio::write(slow, boost::asio::buffer(std::string("GET / HTTP/1.1\r\nHost: ") + f.host + "\r\n"));
  auto t0 = std::chrono::steady_clock::now();
  CHECK(f.site("/").status == 200);
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  char byte;
  boost::system::error_code ec;
  boost::asio::read(slow, boost::asio::buffer(&byte, 1), ec);  // returns when the gateway closes it
  auto held = std::chrono::steady_clock::now() - t0;
  CHECK(ec == boost::asio::error::eof);
  CHECK(held < 10s);
  CHECK(f.site("/").status == 200);
}

TEST_CASE("gateway: a new version replaces the old one for readers at once", "[gateway]") {
  fixture f;
  auto before = f.site("/");
  test::write_file(f.base / "site" / "index.html", "<h1>Second edition</h1>");
  REQUIRE(f.node.cli({"publish", (f.base / "site").string(), "--site", "news"}).code == 0);
  auto after = f.site("/");
  CHECK(after.body == "<h1>Second edition</h1>");
  CHECK(after.header("etag") != before.header("etag"));
  CHECK(f.site("/css/a.css").status == 200);  // unchanged files are still there
}

TEST_CASE("gateway: notices on the dashboard, in the API and as a valid Atom feed", "[gateway]") {
  fixture f;
  REQUIRE(f.node.cli({"notice", "post", "Routine maintenance <tonight> & more", "--severity", "info"}).code == 0);
  REQUIRE(f.node.cli({"notice", "post", "Our host is down", "--severity", "critical", "--url", "https://example.org/a?b=1&c=2"}).code == 0);
  auto api = json::parse(f.bare("/api/v1/notices").body);
  REQUIRE(api.size() == 2);
  CHECK(api[0]["severity"] == "critical");

  auto dash = f.bare("/").body;
  auto critical = dash.find("Our host is down"), info = dash.find("Routine maintenance &lt;tonight&gt; &amp; more");
  REQUIRE(critical != std::string::npos);
  REQUIRE(info != std::string::npos);
  CHECK(critical < info);                              // critical on top
  CHECK(critical < dash.find("<h2>Sites</h2>"));      // notices come first

  auto feed = f.bare("/notices.atom");
  CHECK(feed.status == 200);
  CHECK(feed.header("content-type").find("application/atom+xml") == 0);
  test::write_file(f.base / "feed.xml", feed.body);
  auto xpath = [&](std::string const& expr) {
    auto r = test::run({"/usr/bin/xmllint", "--xpath", expr, (f.base / "feed.xml").string()}, f.base.path());
    while (!r.out.empty() && (r.out.back() == '\n' || r.out.back() == ' ')) r.out.pop_back();
    return r.out;
  };
  // Well-formed XML, and RFC 4287's rules for a feed and its entries.
  CHECK(test::run({"/usr/bin/xmllint", "--noout", (f.base / "feed.xml").string()}, f.base.path()).code == 0);
  std::string atom = "*[local-name()='feed' and namespace-uri()='http://www.w3.org/2005/Atom']";
  CHECK(xpath("count(/" + atom + ")") == "1");
  for (auto const* one : {"id", "title", "updated"})
    CHECK(xpath("count(/" + atom + "/*[local-name()='" + one + "'])") == "1");
  CHECK(xpath("count(/" + atom + "/*[local-name()='author']/*[local-name()='name'])") == "1");
  CHECK(xpath("count(/" + atom + "/*[local-name()='entry'])") == "2");
  for (auto const* one : {"id", "title", "updated", "content"})
    CHECK(xpath("count(/" + atom + "/*[local-name()='entry'][count(*[local-name()='" + one + "'])=1])") == "2");
  std::regex date(R"(<updated>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ</updated>)");
  CHECK(std::distance(std::sregex_iterator(feed.body.begin(), feed.body.end(), date), std::sregex_iterator()) == 3);
  CHECK(feed.body.find("href=\"https://example.org/a?b=1&amp;c=2\"") != std::string::npos);
}
