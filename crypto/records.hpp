// Signed records: BEP 44 mutable items, the one format for site pointers and notices.
// A signed_item is what travels (DHT, peer push, bundles) and what the store keeps; pointer and
// notice are the typed contents of its bencoded value. Pure functions; any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/keys.hpp"

namespace outlast::crypto {

inline constexpr std::size_t max_value_size = 1000;  // BEP 44
inline constexpr std::size_t max_salt_size = 64;     // BEP 44
inline constexpr std::size_t max_notice_text = 700;
inline constexpr std::string_view notice_salt = ".notice";

struct signed_item {
  public_key key;
  std::string salt;
  std::int64_t seq = 0;
  std::string value;  // the bencoded `v`
  signature sig;
  bool operator==(signed_item const&) const = default;
};

// BEP 44's signing buffer: 4:salt<len>:<salt>3:seqi<seq>e1:v<value> (the salt part only when
// the salt is not empty).
std::string signing_buffer(std::string_view salt, std::int64_t seq, std::string_view value);

// Errors: invalid_argument (salt over 64 bytes, value over 1000 bytes or not one bencoded
// object, negative seq).
result<signed_item> sign_item(key_pair const& kp, std::string salt, std::int64_t seq, std::string value);

// Checks bounds, the value's bencoding and the signature.
// Errors: invalid_argument (bounds, bencoding), bad_signature.
status verify_item(signed_item const& item);

// Self-contained form for storage, push and bundles: a bencoded dict
// {"k": 32 bytes, "salt": str, "seq": int, "sig": 64 bytes, "v": <value>}. decode_item checks
// structure and bounds only; call verify_item before trusting it.
std::string encode_item(signed_item const& item);
result<signed_item> decode_item(std::string_view data);

// Site names: [a-z0-9][a-z0-9-]{0,62}
bool valid_site_name(std::string_view name);

// "Version `seq` of site `salt` is the v2 torrent `ih2`." Unknown keys are kept out of the
// struct but tolerated on decode, so newer publishers can add fields.
struct pointer {
  std::array<std::uint8_t, 32> ih2{};
  std::int64_t time = 0;  // Unix seconds
  std::int64_t size = 0;  // total bytes of the version
  bool operator==(pointer const&) const = default;
};
std::string encode_pointer(pointer const& p);
result<pointer> decode_pointer(std::string_view value);  // Errors: invalid_argument

enum class severity { info, warning, critical };
std::string_view to_string(severity s);
result<severity> parse_severity(std::string_view text);

struct notice {
  std::int64_t time = 0;
  severity sev = severity::info;
  std::string msg;  // UTF-8, at most 700 bytes
  std::optional<std::int64_t> expires;
  std::optional<std::string> url;
  bool operator==(notice const&) const = default;
};
// Errors: invalid_argument (text too long or not UTF-8, value over 1000 bytes).
result<std::string> encode_notice(notice const& n);
result<notice> decode_notice(std::string_view value);

bool valid_utf8(std::string_view s);

}  // namespace outlast::crypto
