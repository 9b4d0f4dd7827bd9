#include <libtorrent/bdecode.hpp>
#include <libtorrent/bencode.hpp>
#include <libtorrent/entry.hpp>

#include "node/bundle.hpp"

namespace outlast::node {

namespace {
error invalid(std::string what) { return make_error(errc::invalid_argument, "not a valid bundle: " + std::move(what)); }
}  // namespace

std::string encode_bundle_manifest(bundle_manifest const& m) {
  lt::entry e;
  e["key"] = std::string(reinterpret_cast<char const*>(m.key.bytes.data()), m.key.bytes.size());
  e["site"] = m.site;
  auto& records = e["records"].list();
  for (auto const& r : m.records) {
    auto enc = crypto::encode_item(r);
    records.push_back(lt::bdecode({enc.data(), static_cast<std::ptrdiff_t>(enc.size())}));
  }
  e["version"]["seq"] = m.seq;
  e["version"]["torrent"] = m.torrent;
  std::string out;
  lt::bencode(std::back_inserter(out), e);
  return out;
}

result<bundle_manifest> decode_bundle_manifest(std::string_view data) {
  if (data.size() > max_bundle_manifest) return invalid("the manifest is too large");
  lt::error_code ec;
  int pos = 0;
  auto root = lt::bdecode({data.data(), static_cast<std::ptrdiff_t>(data.size())}, ec, &pos, 16, 100000);
  if (ec) return invalid("damaged manifest (" + ec.message() + " at byte " + std::to_string(pos) + ")");
  if (root.type() != lt::bdecode_node::dict_t) return invalid("the manifest is not a dictionary");
  bundle_manifest m;
  auto key = root.dict_find_string_value("key");
  if (key.size() != m.key.bytes.size()) return invalid("the publisher key is missing or not 32 bytes");
  std::copy(key.begin(), key.end(), m.key.bytes.begin());
  m.site = std::string(root.dict_find_string_value("site"));
  if (!crypto::valid_site_name(m.site)) return invalid("bad site name");
  auto records = root.dict_find_list("records");
  if (!records) return invalid("no records");
  if (static_cast<std::size_t>(records.list_size()) > max_bundle_records) return invalid("too many records");
  for (int i = 0; i < records.list_size(); ++i) {
    auto section = records.list_at(i).data_section();
    auto item = crypto::decode_item({section.data(), static_cast<std::size_t>(section.size())});
    if (!item) return invalid("record " + std::to_string(i) + ": " + item.err().message);
    m.records.push_back(std::move(*item));
  }
  auto version = root.dict_find_dict("version");
  if (!version) return invalid("no version");
  m.seq = version.dict_find_int_value("seq", 0);
  if (m.seq <= 0) return invalid("bad version number");
  m.torrent = std::string(version.dict_find_string_value("torrent"));
  if (m.torrent.empty()) return invalid("no torrent metadata");
  return m;
}

result<bundle_manifest> read_bundle_head(std::string_view head, std::size_t& data_offset) {
  if (head.substr(0, bundle_magic.size()) != bundle_magic) {
    if (head.substr(0, 15) == "outlast-bundle ") return invalid("made by a newer Outlast (format " + std::string(head.substr(15, 4)) + ")");
    return invalid("it does not start with '" + std::string(bundle_magic.substr(0, bundle_magic.size() - 1)) + "'");
  }
  auto rest = head.substr(bundle_magic.size());
  auto nl = rest.find('\n');
  if (nl == std::string_view::npos || nl == 0 || nl > 10) return invalid("damaged manifest length");
  auto digits = rest.substr(0, nl);
  if (digits.find_first_not_of("0123456789") != std::string_view::npos) return invalid("damaged manifest length");
  auto len = std::stoull(std::string(digits));
  if (len > max_bundle_manifest) return invalid("the manifest is too large");
  if (rest.size() < nl + 1 + len) return invalid("truncated manifest");
  data_offset = bundle_magic.size() + nl + 1 + len;
  return decode_bundle_manifest(rest.substr(nl + 1, len));
}

}  // namespace outlast::node
