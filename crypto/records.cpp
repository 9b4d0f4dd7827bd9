#include "crypto/records.hpp"

#include <libtorrent/bdecode.hpp>
#include <libtorrent/bencode.hpp>
#include <libtorrent/entry.hpp>

#include <iterator>

namespace outlast::crypto {

namespace {

error invalid(std::string what) { return make_error(errc::invalid_argument, std::move(what)); }

std::string bencode(lt::entry const& e) {
  std::string out;
  lt::bencode(std::back_inserter(out), e);
  return out;
}

// Parses one complete bencoded object with tight limits (records are small).
result<lt::bdecode_node> parse_bencoded(std::string_view data, std::string_view what) {
  lt::error_code ec;
  int error_pos = 0;
  auto node = lt::bdecode({data.data(), static_cast<std::ptrdiff_t>(data.size())}, ec, &error_pos,
                          /*depth_limit=*/16, /*token_limit=*/256);
  if (ec) return invalid(std::string(what) + " is not valid bencoding (" + ec.message() + " at byte " + std::to_string(error_pos) + ")");
  if (node.data_section().size() != static_cast<std::ptrdiff_t>(data.size()))
    return invalid(std::string(what) + " has trailing bytes after the bencoded object");
  return node;
}

status check_bounds(std::string_view salt, std::int64_t seq, std::string_view value) {
  if (salt.size() > max_salt_size)
    return invalid("salt is " + std::to_string(salt.size()) + " bytes, the limit is " + std::to_string(max_salt_size));
  if (value.size() > max_value_size)
    return invalid("value is " + std::to_string(value.size()) + " bytes, the limit is " + std::to_string(max_value_size));
  if (seq < 0) return invalid("sequence number is negative");
  auto parsed = parse_bencoded(value, "value");
  if (!parsed) return parsed.err();
  return {};
}

std::string_view str(lt::bdecode_node const& n) {
  auto v = n.string_value();
  return {v.data(), v.size()};
}

}  // namespace

std::string signing_buffer(std::string_view salt, std::int64_t seq, std::string_view value) {
  std::string buf;
  buf.reserve(value.size() + salt.size() + 40);
  if (!salt.empty()) {
    buf += "4:salt";
    buf += std::to_string(salt.size());
    buf += ':';
    buf += salt;
  }
  buf += "3:seqi";
  buf += std::to_string(seq);
  buf += "e1:v";
  buf += value;
  return buf;
}

result<signed_item> sign_item(key_pair const& kp, std::string salt, std::int64_t seq, std::string value) {
  if (auto ok = check_bounds(salt, seq, value); !ok) return ok.err();
  signed_item item;
  item.key = kp.public_half();
  item.salt = std::move(salt);
  item.seq = seq;
  item.value = std::move(value);
  item.sig = kp.sign(as_bytes(signing_buffer(item.salt, item.seq, item.value)));
  return item;
}

status verify_item(signed_item const& item) {
  if (auto ok = check_bounds(item.salt, item.seq, item.value); !ok) return ok.err();
  if (!verify(item.key, as_bytes(signing_buffer(item.salt, item.seq, item.value)), item.sig))
    return make_error(errc::bad_signature, "signature does not verify for key " + item.key.to_text());
  return {};
}

std::string encode_item(signed_item const& item) {
  lt::entry e(lt::entry::dictionary_t);
  e["k"] = std::string(item.key.bytes.begin(), item.key.bytes.end());
  e["salt"] = item.salt;
  e["seq"] = item.seq;
  e["sig"] = std::string(item.sig.bytes.begin(), item.sig.bytes.end());
  e["v"] = lt::entry::preformatted_type(item.value.begin(), item.value.end());
  return bencode(e);
}

result<signed_item> decode_item(std::string_view data) {
  if (data.size() > max_value_size + max_salt_size + 200) return invalid("signed record is too large");
  auto parsed = parse_bencoded(data, "signed record");
  if (!parsed) return parsed.err();
  auto const& d = *parsed;
  if (d.type() != lt::bdecode_node::dict_t) return invalid("signed record is not a dictionary");
  auto k = d.dict_find_string("k");
  auto salt = d.dict_find_string("salt");
  auto seq = d.dict_find_int("seq");
  auto sig = d.dict_find_string("sig");
  auto v = d.dict_find("v");
  if (!k || k.string_length() != public_key::size) return invalid("signed record: 'k' is not a 32-byte key");
  if (!sig || sig.string_length() != signature::size) return invalid("signed record: 'sig' is not a 64-byte signature");
  if (!seq) return invalid("signed record: 'seq' is missing");
  if (!v) return invalid("signed record: 'v' is missing");
  signed_item item;
  std::copy(str(k).begin(), str(k).end(), item.key.bytes.begin());
  std::copy(str(sig).begin(), str(sig).end(), item.sig.bytes.begin());
  if (salt) item.salt = std::string(str(salt));
  item.seq = seq.int_value();
  auto section = v.data_section();
  item.value.assign(section.data(), static_cast<std::size_t>(section.size()));
  if (auto ok = check_bounds(item.salt, item.seq, item.value); !ok) return ok.err();
  return item;
}

bool valid_site_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (!first && c == '-');
  };
  for (std::size_t i = 0; i < name.size(); ++i)
    if (!ok(name[i], i == 0)) return false;
  return true;
}

std::string encode_pointer(pointer const& p) {
  lt::entry e(lt::entry::dictionary_t);
  e["ih2"] = std::string(p.ih2.begin(), p.ih2.end());
  e["t"] = p.time;
  e["sz"] = p.size;
  return bencode(e);
}

result<pointer> decode_pointer(std::string_view value) {
  auto parsed = parse_bencoded(value, "pointer");
  if (!parsed) return parsed.err();
  auto const& d = *parsed;
  if (d.type() != lt::bdecode_node::dict_t) return invalid("pointer is not a dictionary");
  auto ih2 = d.dict_find_string("ih2");
  auto t = d.dict_find_int("t");
  auto sz = d.dict_find_int("sz");
  if (!ih2 || ih2.string_length() != 32) return invalid("pointer: 'ih2' is not a 32-byte info-hash");
  if (!t || !sz) return invalid("pointer: 't' or 'sz' is missing");
  if (sz.int_value() < 0) return invalid("pointer: negative size");
  pointer p;
  std::copy(str(ih2).begin(), str(ih2).end(), p.ih2.begin());
  p.time = t.int_value();
  p.size = sz.int_value();
  return p;
}

std::string_view to_string(severity s) {
  switch (s) {
    case severity::info: return "info";
    case severity::warning: return "warning";
    case severity::critical: return "critical";
  }
  return "info";
}

result<severity> parse_severity(std::string_view text) {
  if (text == "info") return severity::info;
  if (text == "warning") return severity::warning;
  if (text == "critical") return severity::critical;
  return invalid("severity must be info, warning or critical, not '" + std::string(text) + "'");
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > s.size()) return false;
    for (std::size_t j = 1; j < len; ++j) {
      auto cc = static_cast<unsigned char>(s[i + j]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return false;
    i += len;
  }
  return true;
}

result<std::string> encode_notice(notice const& n) {
  if (n.msg.size() > max_notice_text)
    return invalid("notice text is " + std::to_string(n.msg.size()) + " bytes, the limit is " + std::to_string(max_notice_text));
  if (!valid_utf8(n.msg)) return invalid("notice text is not valid UTF-8");
  lt::entry e(lt::entry::dictionary_t);
  e["t"] = n.time;
  e["sev"] = std::string(to_string(n.sev));
  e["msg"] = n.msg;
  if (n.expires) e["exp"] = *n.expires;
  if (n.url) e["url"] = *n.url;
  auto out = bencode(e);
  if (out.size() > max_value_size) return invalid("notice is " + std::to_string(out.size()) + " bytes encoded, the limit is 1000");
  return out;
}

result<notice> decode_notice(std::string_view value) {
  auto parsed = parse_bencoded(value, "notice");
  if (!parsed) return parsed.err();
  auto const& d = *parsed;
  if (d.type() != lt::bdecode_node::dict_t) return invalid("notice is not a dictionary");
  auto t = d.dict_find_int("t");
  auto sev = d.dict_find_string("sev");
  auto msg = d.dict_find_string("msg");
  if (!t || !sev || !msg) return invalid("notice: 't', 'sev' or 'msg' is missing");
  auto s = parse_severity(str(sev));
  if (!s) return s.err();
  notice n;
  n.time = t.int_value();
  n.sev = *s;
  n.msg = std::string(str(msg));
  if (n.msg.size() > max_notice_text || !valid_utf8(n.msg)) return invalid("notice text is too long or not UTF-8");
  if (auto exp = d.dict_find_int("exp")) n.expires = exp.int_value();
  if (auto url = d.dict_find_string("url")) n.url = std::string(str(url));
  return n;
}

}  // namespace outlast::crypto
