// Critical notices: posting them, accepting them from the network, listing them.
#include <ctime>

#include "node/detail/node_impl.hpp"
#include "node/keyring.hpp"

namespace outlast::node {

namespace {

std::int64_t now_s() { return static_cast<std::int64_t>(std::time(nullptr)); }

// http(s) URLs only, bounded, printable: a notice's link is shown to readers.
bool acceptable_url(std::string const& url) {
  if (url.size() > 300) return false;
  if (url.rfind("https://", 0) != 0 && url.rfind("http://", 0) != 0) return false;
  for (unsigned char c : url)
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>') return false;
  return url.find("://") + 3 < url.size();
}

}  // namespace

std::int64_t now_unix() { return now_s(); }

json notice_json(crypto::signed_item const& item) {
  auto n = crypto::decode_notice(item.value);
  if (!n) return nullptr;
  json j = {{"key", item.key.to_text()}, {"seq", item.seq}, {"severity", crypto::to_string(n->sev)},
            {"text", n->msg}, {"time", n->time}, {"expires", n->expires ? json(*n->expires) : json(nullptr)}};
  if (n->url) j["url"] = *n->url;
  j["expired"] = n->expires && *n->expires <= now_s();
  return j;
}

net::http_response node::impl::post_notice(json const& req) {
  auto text = req.value("text", "");
  auto key_name = req.value("key", "default");
  auto sev = crypto::parse_severity(req.value("severity", "info"));
  if (!sev) return json_error(400, sev.err().message);
  if (text.empty()) return json_error(400, "a notice needs some text");
  crypto::notice n;
  n.time = now_s();
  n.sev = *sev;
  n.msg = text;
  if (req.contains("expires_in") && req["expires_in"].is_number_integer()) {
    auto in = req["expires_in"].get<std::int64_t>();
    if (in <= 0 || in > 10LL * 365 * 86400) return json_error(400, "the expiry must be in the future and within ten years");
    n.expires = n.time + in;
  }
  if (req.contains("url") && req["url"].is_string()) {
    auto url = req["url"].get<std::string>();
    if (!acceptable_url(url)) return json_error(400, "the URL must be an http:// or https:// address of at most 300 printable characters");
    n.url = url;
  }
  auto value = crypto::encode_notice(n);
  if (!value) return json_error(400, value.err().message);
  std::optional<std::string> passphrase;
  if (req.contains("passphrase") && req["passphrase"].is_string()) passphrase = req["passphrase"].get<std::string>();
  auto kp = keyring(cfg.home).unlock(key_name, passphrase);
  if (!kp) return json_error(kp.err().code == errc::wrong_passphrase ? 401 : 400, kp.err().message);
  auto held = store->get_record(kp->public_half(), crypto::notice_salt);
  std::int64_t seq = (held && *held ? (*held)->seq : 0) + 1;
  auto item = crypto::sign_item(*kp, std::string(crypto::notice_salt), seq, *value);
  if (!item) return json_error(400, item.err().message);
  auto st = store->write([&](storage::txn& t) -> status {
    auto r = t.put_record(*item, now_s());
    if (!r) return r.err();
    if (*r != storage::record_outcome::stored) return make_error(errc::stale, "the store holds a newer notice for this key");
    return t.put_notice(*item);
  });
  if (!st) return json_error(500, "cannot store the notice: " + st.err().message);
  ensure_beacon(item->key);  // a publisher posting from a node that holds none of its sites joins its swarm
  note_arrival(*item, "local");
  forward(*item, 0);
  session->put_item(*item);
  log.info("notices", "posted " + std::string(crypto::to_string(n.sev)) + " notice " + std::to_string(seq) + " as " +
                          kp->public_half().to_text());
  refresh_view();
  return json_response(200, notice_json(*item));
}

json node::impl::notices_json(std::optional<crypto::public_key> const& key, bool include_expired) {
  std::vector<crypto::signed_item> items;
  (void)store->read([&](storage::txn& t) -> status {
    if (auto v = t.list_notices(key)) items = std::move(*v);
    return {};
  });
  std::vector<json> list;
  for (auto const& item : items) {
    auto j = notice_json(item);
    if (j.is_null() || (!include_expired && j["expired"].get<bool>())) continue;
    list.push_back(std::move(j));
  }
  // Critical first, then warnings, then the rest; newest first within each.
  auto rank = [](json const& j) {
    auto s = j["severity"].get<std::string>();
    return s == "critical" ? 0 : s == "warning" ? 1 : 2;
  };
  std::stable_sort(list.begin(), list.end(), [&](json const& a, json const& b) {
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    return a["time"].get<std::int64_t>() > b["time"].get<std::int64_t>();
  });
  return json(list);
}

// The publishers whose notices this node carries: its own keys and those of followed sites.
std::set<crypto::public_key> node::impl::notice_keys() {
  std::set<crypto::public_key> keys;
  for (auto const& rec : load_sites()) keys.insert(rec.key);
  (void)store->read([&](storage::txn& t) -> status {
    if (auto k = t.list_keys())
      for (auto const& [name, key] : *k) keys.insert(key);
    return {};
  });
  return keys;
}

}  // namespace outlast::node
