// Component tests for outlast::storage: a real LMDB store in a temporary directory.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <random>

#include "storage/store.hpp"
#include "tests/support/temp_dir.hpp"

using namespace outlast;
using namespace outlast::storage;

namespace {

std::unique_ptr<store> open_store(std::filesystem::path const& dir, store::options o = {}) {
  auto s = store::open(dir, o);
  INFO((s ? "" : s.err().message));
  REQUIRE(s);
  return std::move(*s);
}

crypto::signed_item pointer_item(crypto::key_pair const& kp, std::string const& site, std::int64_t seq, std::int64_t size = 1) {
  auto item = crypto::sign_item(kp, site, seq, crypto::encode_pointer({{}, 1700000000 + seq, size}));
  REQUIRE(item);
  return *item;
}

}  // namespace

TEST_CASE("store round-trips settings, keys, sites, versions and blobs", "[storage]") {
  test::temp_dir dir;
  auto kp = crypto::key_pair::generate();
  site_record site{kp.public_half(), "blog", site_role::followed, 3, 1700000000};
  version_record v1{kp.public_half(), "blog", 1, {}, 100, 1700000001, true};
  version_record v2{kp.public_half(), "blog", 2, {9}, 200, 1700000002, false};
  {
    auto s = open_store(dir.path());
    CHECK(s->schema() == schema_version);
    REQUIRE(s->put_setting("greeting", "hello"));
    REQUIRE(s->write([&](txn& t) -> status {
      if (auto st = t.put_key("default", kp.public_half()); !st) return st;
      if (auto st = t.put_site(site); !st) return st;
      if (auto st = t.put_version(v2); !st) return st;
      if (auto st = t.put_version(v1); !st) return st;
      return t.put_blob("resume", "abc", std::string("\0binary\xff", 8));
    }));
  }
  auto s = open_store(dir.path());  // reopened: everything must be there
  auto g = s->get_setting("greeting");
  REQUIRE(g);
  CHECK(*g == std::optional<std::string>("hello"));
  CHECK(*s->get_setting("absent") == std::nullopt);
  REQUIRE(s->read([&](txn& t) -> status {
    CHECK(**t.get_key("default") == kp.public_half());
    CHECK(t.list_keys()->size() == 1);
    auto got = t.get_site(kp.public_half(), "blog");
    REQUIRE(got);
    REQUIRE(*got);
    CHECK(**got == site);
    CHECK(t.list_sites()->size() == 1);
    auto versions = t.list_versions(kp.public_half(), "blog");
    REQUIRE(versions);
    REQUIRE(versions->size() == 2);
    CHECK((*versions)[0] == v1);  // ordered by seq
    CHECK((*versions)[1] == v2);
    CHECK(**t.get_blob("resume", "abc") == std::string("\0binary\xff", 8));
    return {};
  }));

  SECTION("erasing one version keeps the others") {
    REQUIRE(s->write([&](txn& t) { return t.erase_version(kp.public_half(), "blog", 1); }));
    REQUIRE(s->read([&](txn& t) -> status {
      auto versions = t.list_versions(kp.public_half(), "blog");
      REQUIRE(versions->size() == 1);
      CHECK((*versions)[0] == v2);
      return {};
    }));
  }
  SECTION("erasing a site drops its versions") {
    REQUIRE(s->write([&](txn& t) { return t.erase_site(kp.public_half(), "blog"); }));
    REQUIRE(s->read([&](txn& t) -> status {
      CHECK_FALSE(*t.get_site(kp.public_half(), "blog"));
      CHECK(t.list_versions(kp.public_half(), "blog")->empty());
      return {};
    }));
  }
  SECTION("a failed write leaves nothing behind") {
    auto st = s->write([&](txn& t) -> status {
      (void)t.put_setting("half", "done");
      return make_error(errc::internal, "changed my mind");
    });
    REQUIRE_FALSE(st);
    CHECK(*s->get_setting("half") == std::nullopt);
  }
  SECTION("writes are refused in a read transaction") {
    auto st = s->read([&](txn& t) { return t.put_setting("x", "y"); });
    CHECK_FALSE(st);
  }
}

TEST_CASE("signed records: newer replaces, older and forks are refused and kept as evidence", "[storage]") {
  test::temp_dir dir;
  auto s = open_store(dir.path());
  auto kp = crypto::key_pair::generate();

  CHECK(*s->put_record(pointer_item(kp, "blog", 2)) == record_outcome::stored);
  CHECK(*s->put_record(pointer_item(kp, "blog", 2)) == record_outcome::duplicate);
  CHECK(*s->put_record(pointer_item(kp, "blog", 1)) == record_outcome::stale);
  CHECK(*s->put_record(pointer_item(kp, "blog", 2, 999)) == record_outcome::conflict);
  CHECK(*s->put_record(pointer_item(kp, "blog", 3)) == record_outcome::stored);
  CHECK(*s->put_record(pointer_item(kp, "other", 1)) == record_outcome::stored);

  auto held = s->get_record(kp.public_half(), "blog");
  REQUIRE(held);
  REQUIRE(*held);
  CHECK((*held)->seq == 3);

  SECTION("a bad signature is refused outright and not kept") {
    auto forged = pointer_item(kp, "blog", 10);
    forged.sig.bytes[0] ^= 1;
    auto r = s->put_record(forged);
    REQUIRE_FALSE(r);
    CHECK(r.err().code == errc::bad_signature);
    CHECK((*s->get_record(kp.public_half(), "blog"))->seq == 3);
  }

  REQUIRE(s->read([&](txn& t) -> status {
    auto refusals = t.list_refusals();
    REQUIRE(refusals);
    REQUIRE(refusals->size() == 2);
    CHECK(*t.count_refusals() == 2);
    CHECK((*refusals)[0].item.seq == 1);
    CHECK((*refusals)[0].reason.find("older") != std::string::npos);
    CHECK((*refusals)[1].reason.find("different content") != std::string::npos);
    CHECK(t.list_records(kp.public_half())->size() == 2);
    return {};
  }));
}

TEST_CASE("the store grows its map when it fills instead of failing", "[storage]") {
  test::temp_dir dir;
  store::options o;
  o.initial_map_size = 1 << 20;  // 1 MiB
  auto s = open_store(dir.path(), o);
  std::string value(64 * 1024, 'v');
  for (int i = 0; i < 200; ++i) {  // ~12.5 MiB in all
    INFO("write " << i);
    REQUIRE(s->put_setting("k" + std::to_string(i), value));
  }
  CHECK(s->map_size() > (std::size_t(12) << 20));
  for (int i = 0; i < 200; i += 37) CHECK((*s->get_setting("k" + std::to_string(i)))->size() == value.size());

  SECTION("a hard ceiling is a clear error, and the store stays usable") {
    store::options tiny;
    tiny.initial_map_size = 1 << 20;
    tiny.max_map_size = 2 << 20;
    test::temp_dir d2;
    auto t = open_store(d2.path(), tiny);
    status last;
    for (int i = 0; i < 100 && last; ++i) last = t->put_setting("k" + std::to_string(i), value);
    REQUIRE_FALSE(last);
    CHECK(last.err().message.find("full") != std::string::npos);
    CHECK(t->put_setting("small", "still works"));
  }
}

TEST_CASE("a store from a newer schema or a damaged file is refused with a clear message", "[storage]") {
  test::temp_dir dir;
  {
    auto s = open_store(dir.path());
    REQUIRE(s->put_setting("x", "y"));
  }
  SECTION("damaged file") {
    {
      std::fstream f(dir / "data.mdb", std::ios::in | std::ios::out | std::ios::binary);
      std::string junk(8192, '\x5a');
      f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    }
    auto s = store::open(dir.path());
    REQUIRE_FALSE(s);
    CHECK(s.err().code == errc::corrupt);
    CHECK(s.err().message.find("damaged") != std::string::npos);
  }
}

// A child writes in a loop and reports each acknowledged (committed) write on a pipe; the parent
// SIGKILLs it at random moments, then checks that every acknowledged write survived.
TEST_CASE("crash safety: every acknowledged write survives SIGKILL at random moments", "[storage][crash]") {
  test::temp_dir dir;
  std::mt19937 rng(std::random_device{}());
  std::int64_t next = 0;
  std::vector<std::int64_t> acked_total;
  constexpr int rounds = 50;
  for (int round = 0; round < rounds; ++round) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      store::options o;
      o.initial_map_size = 256 * 1024;  // small, so that map growth happens under the knife too
      auto s = store::open(dir.path(), o);
      if (!s) ::_exit(3);
      std::mt19937 crng(static_cast<unsigned>(::getpid()));
      for (std::int64_t i = next;; ++i) {
        std::string value(1 + crng() % 8192, static_cast<char>('a' + i % 26));
        auto st = (*s)->write([&](txn& t) -> status {
          if (auto a = t.put_setting("k" + std::to_string(i), value); !a) return a;
          return t.put_setting("last", std::to_string(i));
        });
        if (!st) ::_exit(4);
        if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(5);
      }
    }
    ::close(fds[1]);
    // Let it run for a random 1-40 ms, then kill it wherever it is.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(1000 + rng() % 39000);
    std::vector<std::int64_t> acked;
    while (std::chrono::steady_clock::now() < deadline) {
      std::int64_t i;
      ssize_t n = ::read(fds[0], &i, sizeof i);  // blocking is fine: the child writes constantly
      if (n != sizeof i) break;
      acked.push_back(i);
    }
    ::kill(pid, SIGKILL);
    int wstatus = 0;
    ::waitpid(pid, &wstatus, 0);
    REQUIRE(WIFSIGNALED(wstatus));
    std::int64_t i;
    while (::read(fds[0], &i, sizeof i) == sizeof i) acked.push_back(i);  // acks sent before death
    ::close(fds[0]);

    auto s = store::open(dir.path());
    INFO("round " << round << ": " << (s ? "" : s.err().message));
    REQUIRE(s);
    for (auto a : acked) {
      auto v = (*s)->get_setting("k" + std::to_string(a));
      REQUIRE(v);
      INFO("acknowledged write " << a << " lost in round " << round);
      REQUIRE(*v);
      CHECK((**v)[0] == static_cast<char>('a' + a % 26));
    }
    auto last = (*s)->get_setting("last");
    REQUIRE(last);
    if (!acked.empty()) {
      REQUIRE(*last);
      CHECK(std::stoll(**last) >= acked.back());
    }
    if (*last) next = std::stoll(**last) + 1;
    acked_total.insert(acked_total.end(), acked.begin(), acked.end());
  }
  CHECK(acked_total.size() >= rounds);  // the test really exercised writes
}

TEST_CASE("notice history keeps the newest 100 per publisher", "[storage]") {
  test::temp_dir dir;
  auto s = open_store(dir.path());
  auto a = crypto::key_pair::generate(), b = crypto::key_pair::generate();
  auto notice = [](crypto::key_pair const& kp, std::int64_t seq) {
    auto v = crypto::encode_notice({1700000000 + seq, crypto::severity::info, "n" + std::to_string(seq), {}, {}});
    return *crypto::sign_item(kp, std::string(crypto::notice_salt), seq, *v);
  };
  REQUIRE(s->write([&](txn& t) -> status {
    for (int i = 1; i <= 120; ++i)
      if (auto st = t.put_notice(notice(a, i)); !st) return st;
    return t.put_notice(notice(b, 1));
  }));
  REQUIRE(s->write([&](txn& t) { return t.put_notice(notice(a, 120)); }));  // again: no duplicate
  REQUIRE(s->read([&](txn& t) -> status {
    auto of_a = t.list_notices(a.public_half());
    REQUIRE(of_a->size() == 100);
    CHECK(of_a->front().seq == 21);
    CHECK(of_a->back().seq == 120);
    CHECK(t.list_notices(std::nullopt)->size() == 101);
    return {};
  }));
}
