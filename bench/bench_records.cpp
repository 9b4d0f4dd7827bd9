// bench_records: the cost of trusting nothing. Every signed record from the network is verified
// and stored; this measures sign, verify and store rates, each beside a reference measured in
// the same run (libtorrent's bundled ed25519, which is what the DHT itself uses).
#include <libtorrent/kademlia/ed25519.hpp>
#include <libtorrent/kademlia/item.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "bench/summary.hpp"
#include "crypto/records.hpp"
#include "storage/store.hpp"

using namespace outlast;
using clk = std::chrono::steady_clock;

namespace {

template <class F>
double per_second(int n, F f) {
  auto t0 = clk::now();
  for (int i = 0; i < n; ++i) f(i);
  double s = std::chrono::duration<double>(clk::now() - t0).count();
  return n / s;
}

void row(char const* workload, double ours, double reference, char const* ref_name) {
  std::printf("%-28s %12.0f /s   %-26s %12.0f /s   ratio %.2f\n", workload, ours, ref_name, reference, ours / reference);
  outlast::bench::summary_row("records", workload, ours, reference, "/s", ref_name, true);
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 5000;
  crypto::init();
  auto kp = crypto::key_pair::generate();
  std::array<char, 32> seed;
  std::copy(kp.seed().begin(), kp.seed().end(), seed.begin());
  auto [lt_pk, lt_sk] = lt::dht::ed25519_create_keypair(seed);
  std::string value = crypto::encode_pointer({{}, 1700000000, 1 << 20});
  std::string salt = "blog";

  std::printf("bench_records: %d operations each, pointer value of %zu bytes\n", n, value.size());
  std::size_t sink = 0;  // consumed below so the work is not optimised away
  double sign_ours = per_second(n, [&](int i) { sink += crypto::sign_item(kp, salt, i, value)->sig.bytes[0]; });
  double sign_ref = per_second(n, [&](int i) {
    sink += static_cast<std::size_t>(lt::dht::sign_mutable_item({value.data(), (std::ptrdiff_t)value.size()}, {salt.data(), (std::ptrdiff_t)salt.size()},
                                                                 lt::dht::sequence_number(i), lt_pk, lt_sk).bytes[0]);
  });
  row("sign record", sign_ours, sign_ref, "libtorrent ed25519 sign");

  auto item = *crypto::sign_item(kp, salt, 1, value);
  lt::dht::signature lt_sig;
  std::copy(item.sig.bytes.begin(), item.sig.bytes.end(), lt_sig.bytes.begin());
  double verify_ours = per_second(n, [&](int) { sink += crypto::verify_item(item).ok(); });
  // Same work as ours: build the BEP 44 buffer, then verify it with libtorrent's ed25519.
  double verify_ref = per_second(n, [&](int) {
    auto buf = crypto::signing_buffer(salt, 1, value);
    sink += lt::dht::ed25519_verify(lt_sig, {buf.data(), (std::ptrdiff_t)buf.size()}, lt_pk);
  });
  row("verify record", verify_ours, verify_ref, "libtorrent ed25519 verify");

  auto dir = std::filesystem::temp_directory_path() / ("outlast-bench-" + std::to_string(::getpid()));
  {
    auto s = *storage::store::open(dir);
    std::vector<crypto::signed_item> items;
    for (int i = 0; i < n; ++i) items.push_back(*crypto::sign_item(kp, "s" + std::to_string(i % 64), i + 1, value));
    double put = per_second(n, [&](int i) { sink += s->put_record(items[static_cast<std::size_t>(i)]).ok(); });
    double setting = per_second(n, [&](int i) { sink += s->put_setting("k" + std::to_string(i), value).ok(); });
    row("store: verify+put record", put, setting, "store: plain put (fsync)");
  }
  std::filesystem::remove_all(dir);
  std::printf("(checksum %zu)\n", sink);
  return 0;
}
