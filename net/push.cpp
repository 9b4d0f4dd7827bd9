#include "net/push.hpp"

#include <libtorrent/bdecode.hpp>

namespace outlast::net {

namespace {

error invalid(std::string what) { return make_error(errc::invalid_argument, "push message: " + std::move(what)); }

std::string bstr(std::string_view s) { return std::to_string(s.size()) + ":" + std::string(s); }

}  // namespace

std::string encode_push_record(crypto::signed_item const& item) { return "d1:r" + crypto::encode_item(item) + "e"; }

std::string encode_push_have(std::vector<have_entry> const& have) {
  std::string out = "d1:hl";
  for (auto const& h : have) out += "l" + bstr(h.salt) + "i" + std::to_string(h.seq) + "ee";
  return out + "ee";
}

result<push_message> decode_push(std::string_view payload) {
  if (payload.size() > max_push_payload)
    return invalid(std::to_string(payload.size()) + " bytes, the limit is " + std::to_string(max_push_payload));
  lt::error_code ec;
  int pos = 0;
  auto root = lt::bdecode({payload.data(), static_cast<std::ptrdiff_t>(payload.size())}, ec, &pos,
                          /*depth_limit=*/8, /*token_limit=*/4 * static_cast<int>(max_push_have) + 64);
  if (ec) return invalid("not valid bencoding (" + ec.message() + " at byte " + std::to_string(pos) + ")");
  if (root.type() != lt::bdecode_node::dict_t) return invalid("not a dictionary");
  if (root.dict_size() != 1) return invalid("exactly one of 'r' or 'h' expected");
  push_message out;
  if (auto r = root.dict_find("r")) {
    auto section = r.data_section();
    auto item = crypto::decode_item({section.data(), static_cast<std::size_t>(section.size())});
    if (!item) return invalid(item.err().message);
    out.type = push_message::kind::record;
    out.record = std::move(*item);
    return out;
  }
  auto h = root.dict_find_list("h");
  if (!h) return invalid("exactly one of 'r' or 'h' expected");
  if (static_cast<std::size_t>(h.list_size()) > max_push_have)
    return invalid("'have' lists " + std::to_string(h.list_size()) + " records, the limit is " + std::to_string(max_push_have));
  out.type = push_message::kind::have;
  for (int i = 0; i < h.list_size(); ++i) {
    auto e = h.list_at(i);
    if (e.type() != lt::bdecode_node::list_t || e.list_size() != 2 || e.list_at(0).type() != lt::bdecode_node::string_t ||
        e.list_at(1).type() != lt::bdecode_node::int_t)
      return invalid("'have' entries are [salt, seq]");
    auto salt = e.list_at(0).string_value();
    if (salt.size() > crypto::max_salt_size) return invalid("a salt over " + std::to_string(crypto::max_salt_size) + " bytes");
    auto seq = e.list_at(1).int_value();
    if (seq < 0) return invalid("a negative seq");
    out.have.push_back({std::string(salt), seq});
  }
  return out;
}

}  // namespace outlast::net
