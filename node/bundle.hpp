// Offline bundles: one file carrying a site's latest complete version, its signed pointer, the
// torrent metadata and the publisher's recent notices, for USB sticks and email when networks
// are cut. Everything in it is verified against the publisher's key on import.
//
// Layout: one section per version, oldest first (one section unless exported with --all). A
// section: the line "outlast-bundle 1\n", the manifest's length in decimal and "\n", the manifest
// (a bencoded dict), then the bytes of every file of the version, in the torrent's file order
// (pad files left out). Every section names the same key and site, with rising seqs; the
// newest carries the notices. Manifest:
//   {"key": 32 bytes, "site": name, "records": [self-contained records: the pointer first, then
//    notices], "version": {"seq": n, "torrent": the .torrent with piece layers}}
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/records.hpp"
#include "crypto/result.hpp"

namespace outlast::node {

inline constexpr std::string_view bundle_magic = "outlast-bundle 1\n";
inline constexpr std::size_t max_bundle_manifest = 40 << 20;  // the torrent's metadata dominates
inline constexpr std::size_t max_bundle_records = 128;
inline constexpr std::size_t max_bundle_sections = 64;

struct bundle_manifest {
  crypto::public_key key;
  std::string site;
  std::vector<crypto::signed_item> records;
  std::int64_t seq = 0;
  std::string torrent;
};

std::string encode_bundle_manifest(bundle_manifest const& m);
// Structure and bounds only; the caller verifies signatures and the torrent.
// Errors: invalid_argument naming what is wrong.
result<bundle_manifest> decode_bundle_manifest(std::string_view data);

// Reads the magic line and the manifest from the start of a bundle; `data_offset` is set to
// where the file bytes begin. Errors: invalid_argument (not a bundle, newer format, bounds).
result<bundle_manifest> read_bundle_head(std::string_view head, std::size_t& data_offset);

}  // namespace outlast::node
