// Component tests for what publishing reads and makes: site directories, v2 torrents, reuse of
// unchanged files, and site addresses.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <random>
#include <fstream>

#include "crypto/key_file.hpp"
#include "net/gateway.hpp"
#include "net/torrents.hpp"
#include "node/detail/node_impl.hpp"
#include "node/site_dir.hpp"
#include "tests/support/temp_dir.hpp"

using namespace outlast;
namespace fs = std::filesystem;

namespace {
std::string message_of(fs::path const& dir) {
  auto r = node::scan_site_dir(dir);
  REQUIRE_FALSE(r);
  return r.err().message;
}
}  // namespace

TEST_CASE("site directories: what is published and what is refused", "[publish]") {
  test::temp_dir t;
  auto site = t / "site";
  test::write_file(site / "index.html", "<h1>hi</h1>");
  test::write_file(site / "css" / "a.css", "body{}");
  test::write_file(site / ".git" / "HEAD", "ref: x");
  test::write_file(site / ".well-known" / "security.txt", "Contact: x");
  fs::create_directories(site / "empty");
  fs::create_symlink("index.html", site / "home.html");  // inside: published as a copy

  auto scan = node::scan_site_dir(site);
  REQUIRE(scan);
  std::vector<std::string> names;
  for (auto const& f : scan->files) names.push_back(f.relative.string());
  CHECK(names == std::vector<std::string>{".well-known/security.txt", "css/a.css", "home.html", "index.html"});
  CHECK(scan->bytes == 10 + 6 + 11 + 11);
  // Each file carries the stamp a later publish compares to link it unchanged (the symlink's:
  // its target's).
  for (auto const& f : scan->files) {
    struct stat st {};
    REQUIRE(::stat(f.source.c_str(), &st) == 0);
    CHECK(f.inode == static_cast<std::int64_t>(st.st_ino));
    CHECK(f.device == static_cast<std::int64_t>(st.st_dev));
    CHECK(f.mtime_ns == std::int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
    CHECK(f.ctime_ns == std::int64_t(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec);
  }
  bool noted_git = false, noted_empty = false;
  for (auto const& n : scan->notes) {
    noted_git |= n.find(".git") != std::string::npos;
    noted_empty |= n.find("empty") != std::string::npos;
  }
  CHECK(noted_git);
  CHECK(noted_empty);

  SECTION("copying makes a private snapshot") {
    std::int64_t last = 0;
    REQUIRE(net::copy_and_make_torrent(scan->files, t.path(), "copy", [&](std::int64_t d, std::int64_t) { last = d; }));
    CHECK(last == scan->bytes);
    CHECK(fs::is_regular_file(t / "copy" / "home.html"));
    CHECK_FALSE(fs::is_symlink(t / "copy" / "home.html"));
    CHECK_FALSE(fs::exists(t / "copy" / ".git"));
  }
  SECTION("a symlink leading outside") {
    test::write_file(t / "secret.txt", "password");
    fs::create_symlink(t / "secret.txt", site / "leak.txt");
    auto m = message_of(site);
    CHECK(m.find("leak.txt") != std::string::npos);
    CHECK(m.find("outside") != std::string::npos);
  }
  SECTION("a broken symlink") {
    fs::create_symlink("nowhere", site / "dangling");
    CHECK(message_of(site).find("broken symlink") != std::string::npos);
  }
  SECTION("a name that is not UTF-8") {
    test::write_file(site / "caf\xe9.html", "x");
    CHECK(message_of(site).find("not valid UTF-8") != std::string::npos);
  }
  SECTION("an unreadable file") {
    if (::geteuid() == 0) {
      SUCCEED("root reads every file: permission refusal cannot be shown");
    } else {
      test::write_file(site / "private.html", "x");
      fs::permissions(site / "private.html", fs::perms::none);
      CHECK(message_of(site).find("private.html") != std::string::npos);
    }
  }
  SECTION("a FIFO") {
    REQUIRE(::mkfifo((site / "pipe").c_str(), 0600) == 0);
    CHECK(message_of(site).find("not a regular file") != std::string::npos);
  }
}

TEST_CASE("site directories: empty or missing ones are refused", "[publish]") {
  test::temp_dir t;
  fs::create_directories(t / "empty" / "sub");
  CHECK(message_of(t / "empty").find("no files") != std::string::npos);
  CHECK(message_of(t / "missing").find("not a directory") != std::string::npos);
  test::write_file(t / "file.txt", "x");
  CHECK(message_of(t / "file.txt").find("not a directory") != std::string::npos);
}

TEST_CASE("v2 torrents: deterministic, checked, and unchanged files are reused", "[publish]") {
  test::temp_dir t;
  test::write_file(t / "v1" / "blog" / "index.html", std::string(100000, 'a'));
  test::write_file(t / "v1" / "blog" / "img" / "logo.png", std::string(3 << 20, 'b'));
  auto one = net::make_torrent(t / "v1", "blog", nullptr);
  REQUIRE(one);
  CHECK(one->files == 2);
  CHECK(one->size == 100000 + (3 << 20));
  auto again = net::make_torrent(t / "v1", "blog", nullptr);
  REQUIRE(again);
  CHECK(again->ih2 == one->ih2);  // same content, same info-hash: "unchanged" is detectable

  auto summary = net::check_torrent(one->torrent, std::int64_t(1) << 30);
  REQUIRE(summary);
  CHECK(summary->ih2 == one->ih2);
  CHECK(summary->size == one->size);
  CHECK(summary->name == "blog");
  auto too_big = net::check_torrent(one->torrent, 1000);
  REQUIRE_FALSE(too_big);
  CHECK(too_big.err().message.find("over the limit") != std::string::npos);
  CHECK_FALSE(net::check_torrent("d4:infod4:name1:xee", 1000));
  CHECK_FALSE(net::check_torrent("garbage", 1000));

  // Version 2 changes index.html and renames the logo: the logo is placed, not fetched.
  test::write_file(t / "v2" / "blog" / "index.html", std::string(100000, 'c'));
  test::write_file(t / "v2" / "blog" / "logo-renamed.png", std::string(3 << 20, 'b'));
  auto two = net::make_torrent(t / "v2", "blog", nullptr);
  REQUIRE(two);
  CHECK(two->ih2 != one->ih2);
  auto placed = net::place_unchanged_files(one->torrent, t / "v1", two->torrent, t / "follower");
  REQUIRE(placed);
  CHECK(*placed == (3 << 20));
  CHECK(fs::file_size(t / "follower" / "blog" / "logo-renamed.png") == (3u << 20));
  CHECK_FALSE(fs::exists(t / "follower" / "blog" / "index.html"));  // changed: must come from peers
}

TEST_CASE("v2 torrents: a one-file site is a single-file torrent, laid out where libtorrent looks", "[publish]") {
  test::temp_dir t;
  test::write_file(t / "v1" / "note" / "only.txt", "just me");
  auto one = net::make_torrent(t / "v1", "note", nullptr);
  REQUIRE(one);
  CHECK(one->single_file);
  CHECK(one->files == 1);
  CHECK(fs::exists(t / "v1" / "only.txt"));
  CHECK_FALSE(fs::exists(t / "v1" / "note"));
  auto idx = net::index_version(one->torrent);
  REQUIRE(idx);
  CHECK(idx->root_dir.empty());
  REQUIRE(idx->files.count("only.txt") == 1);
  CHECK(idx->files.at("only.txt").size == 7);

  test::write_file(t / "v2" / "news" / "a.html", "a");
  test::write_file(t / "v2" / "news" / "b" / "c.html", "c");
  auto two = net::make_torrent(t / "v2", "news", nullptr);
  REQUIRE(two);
  CHECK_FALSE(two->single_file);
  auto idx2 = net::index_version(two->torrent);
  REQUIRE(idx2);
  CHECK(idx2->root_dir == "news");
  CHECK(idx2->files.count("b/c.html") == 1);
}

TEST_CASE("publishing in one pass (copy and hash together) gives the torrent libtorrent makes of the copy", "[publish]") {
  test::temp_dir t;
  std::mt19937 rng(42);
  auto bytes = [&](std::size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  };
  // Every edge of BEP 52's trees: empty, under a block, a block, over it, one piece, over it,
  // several pieces with a short last one. And of the copy: files of a piece or more are written
  // with O_DIRECT in whole sectors and cut back to size; one longer than a run of 32 pieces is
  // copied by both threads at once, a run each.
  std::vector<std::pair<std::string, std::size_t>> shapes = {
      {"empty.txt", 0},        {"one.txt", 1},           {"a/block-1.bin", 16383}, {"a/block.bin", 16384}, {"a/block+1.bin", 16385},
      {"b/c/mid.bin", 100000}, {"piece.bin", 1u << 20}, {"piece+1.bin", (1u << 20) + 1}, {"big.bin", (7u << 19) + 12345},
      {"runs.bin", (65u << 19) + 4097}};
  std::vector<net::source_file> files;
  for (auto const& [rel, size] : shapes) {
    test::write_file(t / "src" / rel, bytes(size));
    files.push_back({t / "src" / rel, rel, static_cast<std::int64_t>(size)});
  }
  std::int64_t last_done = -1, total_seen = 0;
  auto one_pass = net::copy_and_make_torrent(files, t / "fast", "site", [&](std::int64_t d, std::int64_t total) {
    last_done = d;
    total_seen = total;
  });
  REQUIRE(one_pass);
  CHECK(last_done == total_seen);
  CHECK(one_pass->files == int(shapes.size()));
  for (auto const& [rel, size] : shapes) {
    CHECK(fs::file_size(t / "fast" / "site" / rel) == size);
    CHECK(crypto::read_small_file(t / "fast" / "site" / rel, 64 << 20).value() == crypto::read_small_file(t / "src" / rel, 64 << 20).value());
  }
  // The reference: libtorrent hashing a plain copy.
  fs::create_directories(t / "ref");
  fs::copy(t / "src", t / "ref" / "site", fs::copy_options::recursive);
  auto reference = net::make_torrent(t / "ref", "site", nullptr);
  REQUIRE(reference);
  CHECK(one_pass->ih2 == reference->ih2);
  CHECK(one_pass->size == reference->size);
  // Piece layers included: the copy checks against the one-pass torrent, file by file.
  auto verified = net::verify_files(one_pass->torrent, t / "fast");
  INFO((verified ? std::string() : verified.err().message));
  CHECK(verified);

  SECTION("hashed where the files are (publish --no-copy): the same torrent, on any number of threads, nothing written") {
    auto entries = [&] {
      std::vector<fs::path> all;
      for (auto const& e : fs::recursive_directory_iterator(t.path())) all.push_back(e.path());
      return all;
    };
    auto before = entries();
    for (int threads : {0, 1, 3}) {
      INFO("threads " << threads);
      last_done = -1;
      auto in_place = net::hash_and_make_torrent(files, "site", [&](std::int64_t d, std::int64_t) { last_done = d; }, nullptr, threads);
      REQUIRE(in_place);
      CHECK(in_place->ih2 == reference->ih2);
      CHECK(in_place->size == reference->size);
      CHECK(in_place->files == int(shapes.size()));
      CHECK(last_done == total_seen);
      // Its piece layers check the source files themselves.
      CHECK(net::verify_files(in_place->torrent, t / "ref"));
    }
    CHECK(entries() == before);
  }
  SECTION("a one-file site is a single-file torrent, as make_torrent makes it") {
    test::write_file(t / "solo" / "only.txt", "just me");
    auto solo = net::copy_and_make_torrent({{t / "solo" / "only.txt", "only.txt", 7}}, t / "solo-out", "note", nullptr);
    REQUIRE(solo);
    CHECK(solo->single_file);
    CHECK(fs::exists(t / "solo-out" / "only.txt"));
    test::write_file(t / "solo-ref" / "note" / "only.txt", "just me");
    auto ref = net::make_torrent(t / "solo-ref", "note", nullptr);
    REQUIRE(ref);
    CHECK(solo->ih2 == ref->ih2);
  }
  SECTION("files given as unchanged are hard-linked from the earlier copy with its hashes; one that cannot be is copied") {
    auto hashes = net::piece_hashes(one_pass->torrent);
    REQUIRE(hashes);
    CHECK(hashes->size() == shapes.size() - 1);  // the empty file has no hashes
    CHECK((*hashes)["big.bin"].size() == 4 * 32);
    CHECK((*hashes)["b/c/mid.bin"].size() == 32);  // one piece: its root
    auto again = files;
    for (auto& f : again)
      if (hashes->count(f.relative.string())) {
        f.reuse = t / "fast" / "site" / f.relative;
        f.reuse_pieces = (*hashes)[f.relative.string()];
      }
    again[5].reuse = t / "gone.bin";  // mid.bin: nothing there to link
    auto linked = net::copy_and_make_torrent(again, t / "linked", "site", nullptr);
    REQUIRE(linked);
    CHECK(linked->ih2 == one_pass->ih2);
    auto inode = [](fs::path const& p) {
      struct stat st {};
      return ::stat(p.c_str(), &st) == 0 ? st.st_ino : ino_t{0};
    };
    CHECK(inode(t / "linked" / "site" / "big.bin") == inode(t / "fast" / "site" / "big.bin"));
    CHECK(inode(t / "linked" / "site" / "b/c/mid.bin") != inode(t / "fast" / "site" / "b/c/mid.bin"));
    CHECK(net::verify_files(linked->torrent, t / "linked"));
  }
  SECTION("a file that changed size since the scan is an error, not a wrong torrent") {
    // Shorter than scanned, longer, and longer by bytes after a whole number of pieces (which
    // a reader of whole pieces sees only by asking for one more byte).
    for (auto [index, delta] : {std::pair{5, 1}, {5, -1}, {8, -12345 - (1 << 19)}, {9, 1}, {9, -1}}) {
      auto wrong = files;
      wrong[static_cast<std::size_t>(index)].size += delta;
      auto dir = t / ("changed-" + std::to_string(index) + "-" + std::to_string(delta));
      auto r = net::copy_and_make_torrent(wrong, dir, "site", nullptr);
      INFO(wrong[static_cast<std::size_t>(index)].relative << " scanned as " << wrong[static_cast<std::size_t>(index)].size);
      REQUIRE_FALSE(r);
      CHECK(r.err().message.find("changed while it was being published") != std::string::npos);
      auto in_place = net::hash_and_make_torrent(wrong, "site", nullptr);
      REQUIRE_FALSE(in_place);
      CHECK(in_place.err().message.find("changed while it was being published") != std::string::npos);
    }
  }
  SECTION("cancelled") {
    std::atomic<bool> cancel{true};
    auto r = net::copy_and_make_torrent(files, t / "cancelled", "site", nullptr, &cancel);
    REQUIRE_FALSE(r);
    CHECK(r.err().code == errc::unavailable);
    auto in_place = net::hash_and_make_torrent(files, "site", nullptr, &cancel);
    REQUIRE_FALSE(in_place);
    CHECK(in_place.err().code == errc::unavailable);
  }
}

TEST_CASE("site addresses", "[unit][publish]") {
  auto key = crypto::key_pair::generate().public_half().to_text();
  auto ok = node::parse_address(key + "/news");
  REQUIRE(ok);
  CHECK(ok->site == "news");
  CHECK(ok->address() == key + "/news");
  std::string upper = key;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK(node::parse_address(upper + "/news/"));
  CHECK(node::parse_address(key).err().message.find("KEY/SITE") != std::string::npos);
  CHECK(node::parse_address(key + "/News").err().message.find("site name") != std::string::npos);
  CHECK(node::parse_address("abc/news").err().message.find("52") != std::string::npos);
  CHECK_FALSE(node::parse_address(key + "/.notice"));
}
