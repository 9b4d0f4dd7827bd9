// The push path's wire format: an extension message ("outlast_push" in the BitTorrent extension
// handshake, BEP 10) that carries signed records between the peers of one publisher's swarms.
// Pure functions; any thread. The plugin that speaks it lives in session.cpp.
//
// A payload is one bencoded dict, either
//   d1:r<item>e                      a signed record (crypto::encode_item form)
//   d1:hl l<salt>i<seq>e ... ee      "have": the newest seq held per salt, for the swarm's
//                                    publisher, sent once when two nodes connect
// decode_push checks structure and bounds only; records are verified by the receiver's store.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/records.hpp"
#include "crypto/result.hpp"

namespace outlast::net {

inline constexpr char push_extension_name[] = "outlast_push";
// Bigger payloads are refused before they are read in full and the peer is disconnected.
inline constexpr std::size_t max_push_payload = 8 * 1024;
inline constexpr std::size_t max_push_have = 256;

struct have_entry {
  std::string salt;
  std::int64_t seq = 0;
  bool operator==(have_entry const&) const = default;
};

struct push_message {
  enum class kind { record, have };
  kind type = kind::record;
  crypto::signed_item record;   // kind::record
  std::vector<have_entry> have;  // kind::have
};

std::string encode_push_record(crypto::signed_item const& item);
std::string encode_push_have(std::vector<have_entry> const& have);
// Errors: invalid_argument naming what is wrong.
result<push_message> decode_push(std::string_view payload);

}  // namespace outlast::net
